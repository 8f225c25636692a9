//! Per-kind rules, as the real server's registry strategies and controllers apply them: name
//! validation, Secret `stringData`, Namespace labels and phase, Service cluster IPs, Deployment
//! defaults and selector checks, CRD establishment, and what follows a write (a namespace's
//! default ServiceAccount and CA ConfigMap, serving or dropping a CRD's resource).

use serde_json::{Value, json};

use super::format::{base64_encode, now_rfc3339};
use super::resources::{self, ResourceDef};
use super::status::ApiError;
use super::store::State;
use super::writes::{WriteOpts, create, metadata_mut};

/// An RFC 1123 label: lowercase alphanumerics and '-', at most 63, alphanumeric at both ends.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The name rules: DNS labels for namespaces, path segments for RBAC, DNS subdomains otherwise.
pub(super) fn validate_name(def: &ResourceDef, name: &str) -> Result<(), ApiError> {
    let problem = if def.group == "rbac.authorization.k8s.io" {
        (name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('%'))
            .then_some("may not be '.' or '..' and may not contain '/' or '%'")
    } else if def.plural == "namespaces" && def.group.is_empty() {
        (!is_dns_label(name)).then_some(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
             and must start and end with an alphanumeric character",
        )
    } else {
        (name.len() > 253 || !name.split('.').all(is_dns_label)).then_some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character",
        )
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(ApiError::invalid(
            def,
            name,
            &[(
                "metadata.name".into(),
                format!("Invalid value: \"{name}\": {p}"),
            )],
        )),
    }
}

/// Per-kind rules applied on every create and update (`old` is `None` on create).
pub(super) fn strategy(
    state: &mut State,
    def: &ResourceDef,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "secrets") => {
            if obj["type"].as_str().is_none_or(str::is_empty) {
                obj["type"] = json!("Opaque");
            }
            if let Some(Value::Object(plain)) =
                obj.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                if !obj["data"].is_object() {
                    obj["data"] = json!({});
                }
                for (k, v) in plain {
                    let text = v.as_str().unwrap_or_default().to_string();
                    obj["data"][k] = json!(base64_encode(text.as_bytes()));
                }
            }
        }
        ("", "namespaces") => {
            metadata_mut(obj)
                .entry("labels")
                .or_insert_with(|| json!({}))["kubernetes.io/metadata.name"] = json!(name);
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"] = json!({ "finalizers": ["kubernetes"] });
            }
            if old.is_none() {
                obj["status"] = json!({ "phase": "Active" });
            }
        }
        ("", "services") => {
            if obj["spec"]["type"].is_null() {
                obj["spec"]["type"] = json!("ClusterIP");
            }
            let inherited = old
                .map(|o| o["spec"]["clusterIP"].clone())
                .filter(|ip| ip.is_string());
            if obj["spec"]["clusterIP"].is_null() && obj["spec"]["type"] != "ExternalName" {
                let ip = inherited.unwrap_or_else(|| {
                    let n = state.next_serial();
                    json!(format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 2))
                });
                obj["spec"]["clusterIP"] = ip.clone();
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
        }
        ("apps", "deployments") => {
            let spec = &mut obj["spec"];
            if spec["replicas"].is_null() {
                spec["replicas"] = json!(1);
            }
            if spec["revisionHistoryLimit"].is_null() {
                spec["revisionHistoryLimit"] = json!(10);
            }
            if spec["progressDeadlineSeconds"].is_null() {
                spec["progressDeadlineSeconds"] = json!(600);
            }
            if spec["strategy"].is_null() {
                spec["strategy"] = json!({ "type": "RollingUpdate",
                    "rollingUpdate": { "maxUnavailable": "25%", "maxSurge": "25%" } });
            }
            let selector = spec["selector"]["matchLabels"].as_object().cloned();
            let labels = &spec["template"]["metadata"]["labels"];
            let cause = match selector {
                None => Some(("spec.selector", "Required value".to_string())),
                Some(sel) if sel.iter().any(|(k, v)| labels.get(k) != Some(v)) => Some((
                    "spec.template.metadata.labels",
                    "Invalid value: `selector` does not match template `labels`".to_string(),
                )),
                Some(_) => None,
            };
            if let Some((field, msg)) = cause {
                return Err(ApiError::invalid(def, &name, &[(field.into(), msg)]));
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            resources::from_crd(obj).map_err(|causes| ApiError::invalid(def, &name, &causes))?;
            let storage: Vec<Value> = obj["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["storage"].as_bool().unwrap_or(false))
                .map(|v| v["name"].clone())
                .collect();
            let now = now_rfc3339();
            let condition = |kind: &str, reason: &str, message: &str| {
                json!({ "type": kind, "status": "True", "lastTransitionTime": now,
                        "reason": reason, "message": message })
            };
            obj["status"] = json!({
                "acceptedNames": obj["spec"]["names"],
                "conditions": [
                    condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                    condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                ],
                "storedVersions": storage,
            });
            if old.is_some_and(|old| old["spec"]["group"] != obj["spec"]["group"]) {
                return Err(ApiError::invalid(
                    def,
                    &name,
                    &[(
                        "spec.group".into(),
                        "Invalid value: field is immutable".into(),
                    )],
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Work the controllers of a real cluster do right after a write.
pub(super) fn after_write(state: &mut State, def: &ResourceDef, obj: &Value, created: bool) {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match (def.group.as_str(), def.plural.as_str()) {
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            if let Ok(served) = resources::from_crd(obj) {
                state.register_crd(&name, served);
            }
        }
        ("", "namespaces") if created => {
            let opts = WriteOpts::internal("kube-controller-manager");
            let children = [
                json!({ "apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": { "name": "default", "namespace": name } }),
                json!({ "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": { "name": "kube-root-ca.crt", "namespace": name,
                                      "annotations": { "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters." } },
                        "data": { "ca.crt": "-----BEGIN CERTIFICATE-----\nTEST-CA-NOT-A-REAL-CERTIFICATE\n-----END CERTIFICATE-----\n" } }),
            ];
            for child in children {
                let kind = child["kind"].as_str().unwrap_or_default().to_string();
                if let Some((d, v)) = state.find_kind("v1", &kind) {
                    let _ = create(state, &d, &v, Some(&name), child, &opts);
                }
            }
        }
        _ => {}
    }
}

/// Drops what a deleted object served or contained (CRD resources, namespace contents).
pub(super) fn forget(state: &mut State, def: &ResourceDef, name: &str) {
    match (def.group.as_str(), def.plural.as_str()) {
        ("apiextensions.k8s.io", "customresourcedefinitions") => state.unregister_crd(name),
        ("", "namespaces") => state.purge_namespace(name),
        _ => {}
    }
}
