//! Objects read straight out of an etcd snapshot (`--from-etcd`). No kube-apiserver runs here,
//! so the test writes values into a real etcd as the API server stores them: built-in types as
//! the `k8s\0` protobuf envelope, encoded with k8s-pb's prost types (generated from the
//! official protos, not by lifeboat's decoder); custom resources as JSON; Secrets encrypted by
//! an independent implementation (Python's cryptography and PyNaCl, support/k8s_encrypt.py)
//! with each provider. Objects are updated several times and deleted; the expected results
//! are the `kubectl get -o json` forms written out by hand, cleaned as an export cleans them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Value, json};

use crate::support::etcd::{Etcd, Version, require_version};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};

/// The keys of the encryption providers (base64), as an EncryptionConfiguration holds them.
const AESCBC_KEY: &str = "c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/IDMyYnk=";
const AESGCM_KEY: &str = "MTIzNDU2Nzg5MDEyMzQ1Ng==";
const SECRETBOX_KEY: &str = "cGFzc3dvcmRwYXNzd29yZHBhc3N3b3JkcGFzc3dvcmQ=";

fn encryption_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("encryption.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: {AESCBC_KEY}
      - aesgcm:
          keys:
            - name: key2
              secret: {AESGCM_KEY}
      - secretbox:
          keys:
            - name: key3
              secret: {SECRETBOX_KEY}
      - identity: {{}}
"
        ),
    )
    .unwrap();
    path
}

/// `plain` as the API server stores it with `provider` (support/k8s_encrypt.py).
fn encrypt(provider: &str, key_name: &str, key: &str, etcd_key: &str, plain: &[u8]) -> Vec<u8> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/support/k8s_encrypt.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args([provider, key_name, key, etcd_key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(plain).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "k8s_encrypt.py {provider}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The API server's protobuf storage form of `message`.
fn stored(api_version: &str, kind: &str, message: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(message.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\x00".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// ObjectMeta as the API server fills it, with the non-pointer fields gogo always writes.
fn object_meta(namespace: &str, name: &str, labels: &[(&str, &str)]) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(namespace.into()),
        uid: Some(format!("uid-of-{name}")),
        resource_version: Some(String::new()),
        generation: Some(1),
        creation_timestamp: Some(meta::Time {
            seconds: Some(1_764_633_600),
            nanos: Some(0),
        }),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn quantity(s: &str) -> Quantity {
    Quantity {
        string: Some(s.into()),
    }
}

fn port_number(n: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(n),
        str_val: Some(String::new()),
    }
}

fn port_name(s: &str) -> IntOrString {
    IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: Some(s.into()),
    }
}

fn namespace(name: &str) -> Vec<u8> {
    stored(
        "v1",
        "Namespace",
        &core::Namespace {
            metadata: Some(object_meta(
                "",
                name,
                &[("kubernetes.io/metadata.name", name)],
            )),
            spec: Some(core::NamespaceSpec {
                finalizers: vec!["kubernetes".into()],
            }),
            status: Some(core::NamespaceStatus {
                phase: Some("Active".into()),
                conditions: vec![],
            }),
        },
    )
}

fn config_map(name: &str, a: &str) -> Vec<u8> {
    stored(
        "v1",
        "ConfigMap",
        &core::ConfigMap {
            metadata: Some(object_meta("team-a", name, &[("app", "web")])),
            immutable: None,
            data: [("a".to_string(), a.to_string())].into(),
            binary_data: [("blob".to_string(), vec![0u8, 1, 2, 255])].into(),
        },
    )
}

fn secret(name: &str) -> Vec<u8> {
    stored(
        "v1",
        "Secret",
        &core::Secret {
            metadata: Some(object_meta("team-a", name, &[])),
            immutable: None,
            data: [("password".to_string(), b"hunter2".to_vec())].into(),
            string_data: Default::default(),
            r#type: Some("Opaque".into()),
        },
    )
}

fn service() -> Vec<u8> {
    stored(
        "v1",
        "Service",
        &core::Service {
            metadata: Some(object_meta("team-a", "web", &[("app", "web")])),
            spec: Some(core::ServiceSpec {
                ports: vec![
                    core::ServicePort {
                        name: Some("http".into()),
                        protocol: Some("TCP".into()),
                        app_protocol: None,
                        port: Some(80),
                        target_port: Some(port_number(8080)),
                        node_port: Some(0),
                    },
                    core::ServicePort {
                        name: Some("metrics".into()),
                        protocol: Some("TCP".into()),
                        app_protocol: None,
                        port: Some(9090),
                        target_port: Some(port_name("metrics")),
                        node_port: Some(0),
                    },
                ],
                selector: [("app".to_string(), "web".to_string())].into(),
                cluster_ip: Some("10.96.0.10".into()),
                cluster_ips: vec!["10.96.0.10".into()],
                r#type: Some("ClusterIP".into()),
                session_affinity: Some("None".into()),
                ..Default::default()
            }),
            status: Some(core::ServiceStatus::default()),
        },
    )
}

fn deployment(image: &str) -> Vec<u8> {
    let labels = [("app".to_string(), "web".to_string())];
    stored(
        "apps/v1",
        "Deployment",
        &apps::Deployment {
            metadata: Some(object_meta("team-a", "web", &[("app", "web")])),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(0),
                selector: Some(meta::LabelSelector {
                    match_labels: labels.clone().into(),
                    match_expressions: vec![],
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta {
                        labels: labels.clone().into(),
                        creation_timestamp: Some(meta::Time::default()),
                        ..Default::default()
                    }),
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            name: Some("web".into()),
                            image: Some(image.into()),
                            resources: Some(core::ResourceRequirements {
                                requests: [
                                    ("cpu".to_string(), quantity("100m")),
                                    ("memory".to_string(), quantity("64Mi")),
                                ]
                                .into(),
                                limits: [("memory".to_string(), quantity("128Mi"))].into(),
                                claims: vec![],
                            }),
                            readiness_probe: Some(core::Probe {
                                handler: Some(core::ProbeHandler {
                                    http_get: Some(core::HttpGetAction {
                                        path: Some("/healthz".into()),
                                        port: Some(port_name("http")),
                                        host: Some(String::new()),
                                        scheme: Some("HTTP".into()),
                                        http_headers: vec![],
                                    }),
                                    ..Default::default()
                                }),
                                initial_delay_seconds: Some(0),
                                timeout_seconds: Some(1),
                                period_seconds: Some(10),
                                success_threshold: Some(1),
                                failure_threshold: Some(3),
                                termination_grace_period_seconds: None,
                            }),
                            security_context: Some(core::SecurityContext {
                                allow_privilege_escalation: Some(false),
                                run_as_user: Some(0),
                                ..Default::default()
                            }),
                            termination_message_path: Some("/dev/termination-log".into()),
                            termination_message_policy: Some("File".into()),
                            image_pull_policy: Some("IfNotPresent".into()),
                            stdin: Some(false),
                            tty: Some(false),
                            ..Default::default()
                        }],
                        volumes: vec![core::Volume {
                            name: Some("cfg".into()),
                            volume_source: Some(core::VolumeSource {
                                config_map: Some(core::ConfigMapVolumeSource {
                                    local_object_reference: Some(core::LocalObjectReference {
                                        name: Some("settings".into()),
                                    }),
                                    default_mode: Some(420),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                        }],
                        restart_policy: Some("Always".into()),
                        dns_policy: Some("ClusterFirst".into()),
                        host_network: Some(false),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: Some(apps::DeploymentStatus {
                observed_generation: Some(1),
                ..Default::default()
            }),
        },
    )
}

fn service_account() -> Vec<u8> {
    stored(
        "v1",
        "ServiceAccount",
        &core::ServiceAccount {
            metadata: Some(object_meta("team-a", "builder", &[])),
            ..Default::default()
        },
    )
}

fn cluster_role() -> Vec<u8> {
    stored(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        &rbac::ClusterRole {
            metadata: Some(object_meta("", "pod-reader", &[])),
            rules: vec![rbac::PolicyRule {
                verbs: vec!["get".into(), "list".into()],
                api_groups: vec![String::new()],
                resources: vec!["pods".into()],
                resource_names: vec![],
                non_resource_ur_ls: vec![],
            }],
            aggregation_rule: None,
        },
    )
}

fn crd() -> Vec<u8> {
    let string = ext::JsonSchemaProps {
        r#type: Some("string".into()),
        ..Default::default()
    };
    let spec_props = ext::JsonSchemaProps {
        r#type: Some("object".into()),
        properties: [
            (
                "size".to_string(),
                ext::JsonSchemaProps {
                    r#type: Some("integer".into()),
                    default: Some(ext::Json {
                        raw: Some(b"3".to_vec()),
                    }),
                    ..Default::default()
                },
            ),
            ("color".to_string(), string.clone()),
        ]
        .into(),
        ..Default::default()
    };
    stored(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &ext::CustomResourceDefinition {
            metadata: Some(object_meta("", "widgets.example.com", &[])),
            spec: Some(ext::CustomResourceDefinitionSpec {
                group: Some("example.com".into()),
                names: Some(ext::CustomResourceDefinitionNames {
                    plural: Some("widgets".into()),
                    singular: Some("widget".into()),
                    kind: Some("Widget".into()),
                    list_kind: Some("WidgetList".into()),
                    ..Default::default()
                }),
                scope: Some("Namespaced".into()),
                versions: vec![ext::CustomResourceDefinitionVersion {
                    name: Some("v1".into()),
                    served: Some(true),
                    storage: Some(true),
                    schema: Some(ext::CustomResourceValidation {
                        open_apiv3_schema: Some(ext::JsonSchemaProps {
                            r#type: Some("object".into()),
                            properties: [("spec".to_string(), spec_props)].into(),
                            x_kubernetes_preserve_unknown_fields: Some(true),
                            ..Default::default()
                        }),
                    }),
                    ..Default::default()
                }],
                conversion: Some(ext::CustomResourceConversion {
                    strategy: Some("None".into()),
                    webhook: None,
                }),
                preserve_unknown_fields: Some(false),
            }),
            status: Some(ext::CustomResourceDefinitionStatus::default()),
        },
    )
}

fn widget(name: &str, color: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": format!("uid-of-{name}"),
            "generation": 2,
            "creationTimestamp": "2025-12-02T00:00:00Z",
        },
        "spec": {"size": 3, "color": color},
    }))
    .unwrap()
}

/// What `restore resources --from-etcd --to-dir` must write, by archive path, cleaned.
fn expected_objects(configmap_a: &str, image: &str, color: &str) -> BTreeMap<String, Value> {
    let m = |ns: &str, name: &str, labels: Value| {
        let mut meta = json!({"name": name});
        if !ns.is_empty() {
            meta["namespace"] = json!(ns);
        }
        if labels.as_object().is_some_and(|l| !l.is_empty()) {
            meta["labels"] = labels;
        }
        meta
    };
    let secret = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": m("team-a", name, json!({})),
               "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"})
    };
    let mut want = BTreeMap::new();
    want.insert(
        "cluster/core/namespaces/team-a.yaml".to_string(),
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": m("", "team-a", json!({"kubernetes.io/metadata.name": "team-a"})),
               "spec": {"finalizers": ["kubernetes"]}}),
    );
    want.insert(
        "namespaces/team-a/core/configmaps/settings.yaml".to_string(),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": m("team-a", "settings", json!({"app": "web"})),
               "data": {"a": configmap_a}, "binaryData": {"blob": "AAEC/w=="}}),
    );
    for name in ["db-aescbc", "db-aesgcm", "db-secretbox", "db-plain"] {
        want.insert(
            format!("namespaces/team-a/core/secrets/{name}.yaml"),
            secret(name),
        );
    }
    want.insert(
        "namespaces/team-a/core/services/web.yaml".to_string(),
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": m("team-a", "web", json!({"app": "web"})),
        "spec": {
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": "metrics"},
            ],
            "selector": {"app": "web"},
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "type": "ClusterIP",
            "sessionAffinity": "None",
        }}),
    );
    want.insert(
        "namespaces/team-a/apps/deployments/web.yaml".to_string(),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": m("team-a", "web", json!({"app": "web"})),
               "spec": {
                   "replicas": 0,
                   "selector": {"matchLabels": {"app": "web"}},
                   "template": {
                       "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                       "spec": {
                           "containers": [{
                               "name": "web",
                               "image": image,
                               "resources": {
                                   "requests": {"cpu": "100m", "memory": "64Mi"},
                                   "limits": {"memory": "128Mi"},
                               },
                               "readinessProbe": {
                                   "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                                   "timeoutSeconds": 1,
                                   "periodSeconds": 10,
                                   "successThreshold": 1,
                                   "failureThreshold": 3,
                               },
                               "securityContext": {"allowPrivilegeEscalation": false, "runAsUser": 0},
                               "terminationMessagePath": "/dev/termination-log",
                               "terminationMessagePolicy": "File",
                               "imagePullPolicy": "IfNotPresent",
                           }],
                           "volumes": [{"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}}],
                           "restartPolicy": "Always",
                           "dnsPolicy": "ClusterFirst",
                       },
                   },
               }}),
    );
    want.insert(
        "namespaces/team-a/core/serviceaccounts/builder.yaml".to_string(),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": m("team-a", "builder", json!({}))}),
    );
    want.insert(
        "cluster/rbac.authorization.k8s.io/clusterroles/pod-reader.yaml".to_string(),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": m("", "pod-reader", json!({})),
               "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}),
    );
    want.insert(
        "cluster/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com.yaml".to_string(),
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": m("", "widgets.example.com", json!({})),
               "spec": {
                   "group": "example.com",
                   "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                   "scope": "Namespaced",
                   "versions": [{
                       "name": "v1", "served": true, "storage": true,
                       "schema": {"openAPIV3Schema": {
                           "type": "object",
                           "properties": {"spec": {
                               "type": "object",
                               "properties": {
                                   "size": {"type": "integer", "default": 3},
                                   "color": {"type": "string"},
                               },
                           }},
                           "x-kubernetes-preserve-unknown-fields": true,
                       }},
                   }],
                   "conversion": {"strategy": "None"},
               }}),
    );
    want.insert(
        "namespaces/team-a/example.com/widgets/w1.yaml".to_string(),
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
               "metadata": {"name": "w1", "namespace": "team-a"},
               "spec": {"size": 3, "color": color}}),
    );
    want
}

/// Every YAML file under `dir`, by path relative to it, as JSON values.
fn read_tree(dir: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                let text = std::fs::read_to_string(&path).unwrap();
                let value: Value = serde_saphyr::from_str(&text)
                    .unwrap_or_else(|e| panic!("{rel} is not YAML: {e}\n{text}"));
                out.insert(rel, value);
            }
        }
    }
    out
}

/// Compares two trees object by object, naming each one that differs.
fn assert_same(got: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>) {
    let got_paths: Vec<&String> = got.keys().collect();
    let want_paths: Vec<&String> = want.keys().collect();
    assert_eq!(got_paths, want_paths, "the files written differ");
    for (path, w) in want {
        assert_eq!(
            &got[path],
            w,
            "{path} differs:\n got {}\nwant {}",
            serde_json::to_string_pretty(&got[path]).unwrap(),
            serde_json::to_string_pretty(w).unwrap()
        );
    }
}

struct Written {
    /// The revision after the first round of writes (ConfigMap a=1, w2 alive, gone alive).
    early: i64,
}

/// Writes the cluster's objects into etcd as the API server would, updating and deleting some.
async fn write_cluster(client_url: &str) -> Written {
    let mut client = etcd_client::Client::connect([client_url], None)
        .await
        .unwrap();
    let r = "/registry";
    let put = |k: String, v: Vec<u8>| (k, v);
    let secrets = |name: &str| format!("{r}/secrets/team-a/{name}");
    let mut first = vec![
        put(format!("{r}/namespaces/team-a"), namespace("team-a")),
        put(
            format!("{r}/configmaps/team-a/settings"),
            config_map("settings", "1"),
        ),
        put(
            format!("{r}/configmaps/team-a/gone"),
            config_map("gone", "x"),
        ),
        put(format!("{r}/services/specs/team-a/web"), service()),
        put(format!("{r}/deployments/team-a/web"), deployment("web:1")),
        put(
            format!("{r}/serviceaccounts/team-a/builder"),
            service_account(),
        ),
        put(format!("{r}/clusterroles/pod-reader"), cluster_role()),
        put(
            format!("{r}/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com"),
            crd(),
        ),
        put(
            format!("{r}/example.com/widgets/team-a/w1"),
            widget("w1", "red"),
        ),
        put(
            format!("{r}/example.com/widgets/team-a/w2"),
            widget("w2", "blue"),
        ),
        put(secrets("db-plain"), secret("db-plain")),
        // Keys that are not objects, as the API server writes them.
        put(format!("{r}/ranges/serviceips"), b"range".to_vec()),
        put(format!("{r}/masterleases/10.0.0.1"), b"lease".to_vec()),
        put("compact_rev_key".to_string(), b"1".to_vec()),
    ];
    for (provider, key_name, key) in [
        ("aescbc", "key1", AESCBC_KEY),
        ("aesgcm", "key2", AESGCM_KEY),
        ("secretbox", "key3", SECRETBOX_KEY),
    ] {
        let name = format!("db-{provider}");
        let k = secrets(&name);
        let v = encrypt(provider, key_name, key, &k, &secret(&name));
        first.push((k, v));
    }
    let mut revision = 0;
    for (k, v) in first {
        revision = client
            .put(k, v, None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
    }
    let early = revision;
    // Updates, a deletion and a re-creation after it.
    client
        .put(
            format!("{r}/configmaps/team-a/settings"),
            config_map("settings", "2"),
            None,
        )
        .await
        .unwrap();
    client
        .put(
            format!("{r}/deployments/team-a/web"),
            deployment("web:2"),
            None,
        )
        .await
        .unwrap();
    client
        .put(
            format!("{r}/configmaps/team-a/settings"),
            config_map("settings", "3"),
            None,
        )
        .await
        .unwrap();
    client
        .put(
            format!("{r}/example.com/widgets/team-a/w1"),
            widget("w1", "green"),
            None,
        )
        .await
        .unwrap();
    client
        .delete(format!("{r}/configmaps/team-a/gone"), None)
        .await
        .unwrap();
    client
        .delete(format!("{r}/example.com/widgets/team-a/w2"), None)
        .await
        .unwrap();
    Written { early }
}

fn identity_args(lb: &Lifeboat) -> Vec<String> {
    vec!["--identity".into(), lb.identity.to_string_lossy().into()]
}

async fn extract(version: Version) {
    let Some(bin) = require_version(version) else {
        return;
    };
    let etcd = Etcd::start(version, &bin);
    let written = write_cluster(&etcd.client_url).await;
    let store = crate::support::tempdir();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(store.path().join("store")),
        &etcd.client_url,
    ));
    lb.ok(&["backup", "etcd"]);
    let enc = encryption_config(lb.dir.path());
    let enc = enc.to_str().unwrap();

    // Everything, newest state, from the backup, with the encryption config.
    let out_dir = lb.path("all");
    let mut args: Vec<String> = ["restore", "resources", "--from-etcd", "--backup", "latest"]
        .map(String::from)
        .to_vec();
    args.extend(identity_args(&lb));
    args.extend(["--encryption-config".into(), enc.into()]);
    args.extend(["--to-dir".into(), out_dir.to_string_lossy().into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lb.ok(&argv);
    assert!(out.contains("Wrote 12 objects"), "{out}");
    assert_same(
        &read_tree(&out_dir),
        &expected_objects("3", "web:2", "green"),
    );

    // The plain snapshot file, at the early revision: the first versions, and the objects
    // deleted since.
    let snap = lb.path("snap.db");
    let mut args: Vec<String> = ["restore", "etcd", "--to-file", snap.to_str().unwrap()]
        .map(String::from)
        .to_vec();
    args.extend(identity_args(&lb));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    lb.ok(&argv);
    let early_dir = lb.path("early");
    let early = written.early.to_string();
    lb.ok(&[
        "restore",
        "resources",
        "--from-etcd",
        "--snapshot",
        snap.to_str().unwrap(),
        "--encryption-config",
        enc,
        "--revision",
        &early,
        "--to-dir",
        early_dir.to_str().unwrap(),
    ]);
    let mut want = expected_objects("1", "web:1", "red");
    let mut gone = want["namespaces/team-a/core/configmaps/settings.yaml"].clone();
    gone["metadata"]["name"] = json!("gone");
    gone["data"]["a"] = json!("x");
    want.insert("namespaces/team-a/core/configmaps/gone.yaml".into(), gone);
    let mut w2 = want["namespaces/team-a/example.com/widgets/w1.yaml"].clone();
    w2["metadata"]["name"] = json!("w2");
    w2["spec"]["color"] = json!("blue");
    want.insert("namespaces/team-a/example.com/widgets/w2.yaml".into(), w2);
    assert_same(&read_tree(&early_dir), &want);

    // Without the encryption config: the encrypted Secrets are named, the rest is written,
    // and the command says it is incomplete.
    let plain_dir = lb.path("no-key");
    let out = lb.run(&[
        "restore",
        "resources",
        "--from-etcd",
        "--snapshot",
        snap.to_str().unwrap(),
        "--namespace",
        "team-a",
        "--resource",
        "secrets",
        "--to-dir",
        plain_dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for (provider, key) in [
        ("aescbc", "key1"),
        ("aesgcm", "key2"),
        ("secretbox", "key3"),
    ] {
        assert!(
            stderr.contains(&format!(
                "namespaces/team-a/core/secrets/db-{provider}.yaml: encrypted at rest with {provider} key \"{key}\""
            )),
            "{stderr}"
        );
    }
    // The plain Secret, and the selected namespace's Namespace, which always comes with it.
    let got = read_tree(&plain_dir);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        [
            "cluster/core/namespaces/team-a.yaml",
            "namespaces/team-a/core/secrets/db-plain.yaml"
        ],
        "{stderr}"
    );

    // One namespace's ConfigMaps, as JSON.
    let json_dir = lb.path("cm");
    let out = lb.ok(&[
        "-o",
        "json",
        "restore",
        "resources",
        "--from-etcd",
        "--snapshot",
        snap.to_str().unwrap(),
        "--namespace",
        "team-a",
        "--resource",
        "configmaps",
        "--to-dir",
        json_dir.to_str().unwrap(),
    ]);
    let doc: Value = serde_json::from_str(&out).unwrap();
    // The ConfigMap and its namespace's Namespace.
    assert_eq!(doc["written"], 2, "{doc}");
    assert_eq!(doc["source"], "etcd", "{doc}");
    assert!(doc["deleted"].as_u64().unwrap() >= 1, "{doc}");
    assert_eq!(doc["revision"], doc["current_revision"], "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd35_snapshot_objects_come_back_as_the_api_server_stored_them() {
    extract(Version::V35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd34_snapshot_objects_come_back_as_the_api_server_stored_them() {
    extract(Version::V34).await;
}

/// A revision compacted away, and one beyond the newest, are refused with the range held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_or_future_revision_is_refused_with_the_range_the_snapshot_holds() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    write_cluster(&etcd.client_url).await;
    let mut client = etcd_client::Client::connect([etcd.client_url.as_str()], None)
        .await
        .unwrap();
    let current = client
        .get("x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client.compact(current - 2, None).await.unwrap();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(crate::support::tempdir().path().join("store")),
        &etcd.client_url,
    ));
    let snap = lb.path("snap.db");
    let status = etcd
        .etcdctl()
        .args(["snapshot", "save", snap.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    for (revision, says) in [
        ((current - 3).to_string(), "compacted"),
        ((current + 5).to_string(), "newer than"),
    ] {
        let out = lb.run(&[
            "restore",
            "resources",
            "--from-etcd",
            "--snapshot",
            snap.to_str().unwrap(),
            "--revision",
            &revision,
            "--to-dir",
            lb.path("x").to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(says),
            "{revision}: {stderr}"
        );
        assert!(!lb.path("x").exists());
    }
}

/// Two etcd backups compared with each other, offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_between_two_etcd_backups_shows_what_changed() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    write_cluster(&etcd.client_url).await;
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(crate::support::tempdir().path().join("store")),
        &etcd.client_url,
    ));
    lb.ok(&["backup", "etcd"]);
    let first = lb.list()["backups"][0]["id"].as_str().unwrap().to_string();
    let mut client = etcd_client::Client::connect([etcd.client_url.as_str()], None)
        .await
        .unwrap();
    client
        .put(
            "/registry/configmaps/team-a/settings",
            config_map("settings", "4"),
            None,
        )
        .await
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lb.ok(&["backup", "etcd"]);
    let second = lb.list()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .find(|id| *id != first)
        .unwrap();
    let mut args: Vec<String> = [
        "-o",
        "json",
        "diff",
        "--from-etcd",
        "--backup",
        &first,
        "--against",
        &second,
        "--namespace",
        "team-a",
    ]
    .map(String::from)
    .to_vec();
    args.extend(identity_args(&lb));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let doc: Value = serde_json::from_str(&lb.ok(&argv)).unwrap();
    assert_eq!(doc["changed"], 1, "{doc}");
    assert_eq!(doc["added"], 0, "{doc}");
    assert_eq!(doc["removed"], 0, "{doc}");
    let diff = doc["entries"][0]["diff"].as_str().unwrap();
    assert!(
        diff.contains("-  a: '3'") || diff.contains("-  a: \"3\"") || diff.contains("a: '3'"),
        "{diff}"
    );
}

/// An etcd snapshot applied to a cluster with `--apply`, decrypted with the API server's
/// EncryptionConfiguration: the objects come back as they were stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_an_etcd_snapshot_are_applied_to_a_cluster() {
    use crate::support::kube_api::{KubeApi, Seed};
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    write_cluster(&etcd.client_url).await;
    let api = KubeApi::start(Seed::Empty);
    let store = crate::support::tempdir();
    let lb = crate::resources::exporter(&api, store.path(), "");
    let snap = lb.path("snap.db");
    let status = etcd
        .etcdctl()
        .args(["snapshot", "save", snap.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let enc = encryption_config(lb.dir.path());
    let out = lb.ok(&[
        "restore",
        "resources",
        "--from-etcd",
        "--snapshot",
        snap.to_str().unwrap(),
        "--encryption-config",
        enc.to_str().unwrap(),
        "--namespace",
        "team-a",
        "--resource",
        "configmaps",
        "--resource",
        "secrets",
        "--resource",
        "deployments.apps",
        "--apply",
    ]);
    let cm = api
        .get("configmaps", Some("team-a"), "settings")
        .unwrap_or_else(|| panic!("settings was not applied:\n{out}"));
    assert_eq!(cm["data"], json!({"a": "3"}), "{cm}");
    assert_eq!(cm["binaryData"], json!({"blob": "AAEC/w=="}), "{cm}");
    for name in ["db-aescbc", "db-aesgcm", "db-secretbox", "db-plain"] {
        let s = api
            .get("secrets", Some("team-a"), name)
            .unwrap_or_else(|| panic!("{name} was not applied:\n{out}"));
        assert_eq!(s["data"]["password"], "aHVudGVyMg==", "{s}");
    }
    let d = api
        .get("deployments.apps", Some("team-a"), "web")
        .unwrap_or_else(|| panic!("the Deployment was not applied:\n{out}"));
    assert_eq!(d["spec"]["replicas"], 0, "{d}");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["securityContext"],
        json!({"allowPrivilegeEscalation": false, "runAsUser": 0}),
        "{d}"
    );
    assert!(api.get("namespaces", None, "team-a").is_some(), "{out}");
    // The deleted ConfigMap stays deleted.
    assert!(
        api.get("configmaps", Some("team-a"), "gone").is_none(),
        "{out}"
    );
}
