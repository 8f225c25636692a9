//! Values encoded with k8s-pb's prost types (generated from the official protos, independent of
//! this decoder) as the API server stores them, compared with the JSON `kubectl get -o json`
//! shows, written out by hand. The full objects of a cluster (Deployment, Service, CRD, Secrets
//! with every encryption provider, …) are covered end to end by
//! tests/integration/registry_objects.rs.

use k8s_pb::api::certificates::v1 as certificates;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::json;

use super::*;

fn stored(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let mut out = b"k8s\x00".to_vec();
    out.extend(
        Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        }
        .encode_to_vec(),
    );
    out
}

fn meta(name: &str, namespace: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(namespace.into()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time {
            seconds: Some(1_764_633_600),
            nanos: Some(0),
        }),
        ..Default::default()
    }
}

#[test]
fn the_schema_names_its_official_sources() {
    let sources = protobuf::schema_sources();
    assert!(
        sources.iter().any(|s| s.starts_with("kubernetes+api@")),
        "{sources:?}"
    );
}

#[test]
fn zero_scalars_follow_go_json_pointer_and_omitempty_rules() {
    let pod = core::Pod {
        metadata: Some(meta("p", "ns")),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                image: Some(String::new()),
                stdin: Some(false),
                security_context: Some(core::SecurityContext {
                    run_as_user: Some(0),
                    allow_privilege_escalation: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(0),
            host_network: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&stored("v1", "Pod", pod.encode_to_vec())).unwrap();
    assert_eq!(
        got.value,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "creationTimestamp": "2025-12-02T00:00:00Z"},
            "spec": {
                "containers": [{
                    "name": "c",
                    "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": false},
                }],
                "terminationGracePeriodSeconds": 0,
            },
        })
    );
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
}

#[test]
fn micro_time_and_named_slices_have_their_json_forms() {
    let lease = coordination::Lease {
        metadata: Some(meta("l", "kube-system")),
        spec: Some(coordination::LeaseSpec {
            holder_identity: Some("node-1".into()),
            lease_duration_seconds: Some(40),
            renew_time: Some(meta::MicroTime {
                seconds: Some(1_764_633_600),
                nanos: Some(123_456_789),
            }),
            ..Default::default()
        }),
    };
    let got = decode(&stored(
        "coordination.k8s.io/v1",
        "Lease",
        lease.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(
        got.value["spec"],
        json!({"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2025-12-02T00:00:00.123456Z"})
    );

    let csr = certificates::CertificateSigningRequest {
        metadata: Some(meta("csr", "")),
        spec: Some(certificates::CertificateSigningRequestSpec {
            request: Some(b"PEM".to_vec()),
            signer_name: Some("kubernetes.io/kubelet-serving".into()),
            usages: vec!["server auth".into()],
            username: Some("system:node:n1".into()),
            extra: [(
                "scopes".to_string(),
                certificates::ExtraValue {
                    items: vec!["a".into(), "b".into()],
                },
            )]
            .into(),
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&stored(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        csr.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(got.value["spec"]["extra"], json!({"scopes": ["a", "b"]}));
    assert_eq!(got.value["spec"]["request"], json!("UEVN"));
    assert_eq!(got.value["metadata"].get("namespace"), None);
}

#[test]
fn json_schema_unions_take_their_json_forms() {
    let props = ext::JsonSchemaProps {
        r#type: Some("object".into()),
        additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
            allows: Some(false),
            schema: None,
        })),
        properties: [(
            "list".to_string(),
            ext::JsonSchemaProps {
                r#type: Some("array".into()),
                items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                    schema: Some(Box::new(ext::JsonSchemaProps {
                        r#type: Some("string".into()),
                        r#enum: vec![
                            ext::Json {
                                raw: Some(b"\"a\"".to_vec()),
                            },
                            ext::Json {
                                raw: Some(b"\"b\"".to_vec()),
                            },
                        ],
                        ..Default::default()
                    })),
                    j_son_schemas: vec![],
                })),
                max_items: Some(5),
                ..Default::default()
            },
        )]
        .into(),
        maximum: Some(10.0),
        ..Default::default()
    };
    let crd = ext::CustomResourceDefinition {
        metadata: Some(meta("things.example.com", "")),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: Some("example.com".into()),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: Some("v1".into()),
                served: Some(true),
                storage: Some(false),
                schema: Some(ext::CustomResourceValidation {
                    open_apiv3_schema: Some(props),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&stored(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(
        got.value["spec"]["versions"][0],
        json!({
            "name": "v1", "served": true, "storage": false,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "maximum": 10,
                "properties": {"list": {"type": "array", "maxItems": 5,
                    "items": {"type": "string", "enum": ["a", "b"]}}},
                "additionalProperties": false,
            }},
        })
    );
}

#[test]
fn a_field_from_a_newer_kubernetes_is_warned_about_not_dropped_silently() {
    let mut raw = core::ConfigMap {
        metadata: Some(meta("c", "ns")),
        data: [("a".to_string(), "1".to_string())].into(),
        ..Default::default()
    }
    .encode_to_vec();
    // Field 99, a string: a field this schema does not know.
    raw.extend([0x9a, 0x06, 0x02, b'h', b'i']);
    let got = decode(&stored("v1", "ConfigMap", raw)).unwrap();
    assert_eq!(got.value["data"], json!({"a": "1"}));
    assert_eq!(got.warnings.len(), 1, "{:?}", got.warnings);
    assert!(
        got.warnings[0].contains("field 99 of k8s.io.api.core.v1.ConfigMap"),
        "{:?}",
        got.warnings
    );
}

#[test]
fn unknown_kinds_garbage_and_other_encodings_are_errors_naming_what_they_are() {
    let err = decode(&stored("example.com/v1", "Widget", vec![])).unwrap_err();
    assert!(
        err.to_string().contains("no Widget of example.com/v1"),
        "{err}"
    );
    let err = decode(b"\x00\x01garbage").unwrap_err();
    assert!(err.to_string().contains("bytes 00 01"), "{err}");
    let err = decode(b"k8s\x00\x0a\x05\x0a\x01").unwrap_err();
    assert!(err.to_string().contains("protobuf is damaged"), "{err}");
    let err = decode(b"{\"kind\":").unwrap_err();
    assert!(err.to_string().contains("JSON"), "{err}");
    assert!(decode(b"").is_err());
}

#[test]
fn json_and_cbor_values_decode() {
    let got =
        decode(br#"  {"apiVersion":"example.com/v1","kind":"Widget","spec":{"n":1}}"#).unwrap();
    assert_eq!(got.value["spec"]["n"], 1);
    let mut cbor = vec![0xd9, 0xd9, 0xf7, 0xa2, 0x44];
    cbor.extend(b"kind");
    cbor.push(0x46);
    cbor.extend(b"Widget");
    cbor.push(0x44);
    cbor.extend(b"spec");
    cbor.extend([0xa1, 0x41, b'n', 0x01]);
    let got = decode(&cbor).unwrap();
    assert_eq!(got.value, json!({"kind": "Widget", "spec": {"n": 1}}));
}

#[test]
fn durations_print_as_go_does() {
    use protobuf::go_duration;
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(1_500_000_000), "1.5s");
    assert_eq!(go_duration(300_000_000), "300ms");
    assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
    assert_eq!(go_duration(60_000_000_000), "1m0s");
    assert_eq!(go_duration(-2_000_000_000), "-2s");
    assert_eq!(go_duration(1_500), "1.5µs");
}
