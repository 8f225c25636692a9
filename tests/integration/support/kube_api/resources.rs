//! The resource catalog: the built-in kinds the test server serves and the rules that turn a
//! CustomResourceDefinition object into a served resource. Discovery, routing and storage all
//! read from here, so a resource exists in one place.

use std::cmp::Ordering;

use serde_json::Value;

/// The verbs every served resource supports. `watch` is deliberately absent: the server does not
/// implement watches, and discovery says so rather than invite clients to try.
pub(super) const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
];

/// The verbs of a `status` subresource.
pub(super) const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// One column of `kubectl get` output (a CRD's `additionalPrinterColumns`).
#[derive(Clone, Debug)]
pub(super) struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub json_path: String,
    pub priority: i64,
}

/// A served resource: what discovery lists and what the routes resolve to.
#[derive(Clone, Debug)]
pub(super) struct ResourceDef {
    pub group: String,
    /// Served versions, preferred first.
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Whether `<plural>/status` is a subresource (and the main resource ignores status).
    pub status_subresource: bool,
    /// Whether `metadata.generation` is kept and bumped on spec changes.
    pub generation: bool,
    /// A custom resource served from a CRD (strategic merge patch is refused for these).
    pub custom: bool,
    pub printer_columns: Vec<PrinterColumn>,
}

impl ResourceDef {
    /// The storage key and the way tests name a resource: `configmaps`, `deployments.apps`.
    pub(super) fn key(&self) -> String {
        self.qualified()
    }

    /// `plural` or `plural.group`, as in error messages.
    pub(super) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `v1` or `group/version`.
    pub(super) fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// The preferred (first) served version.
    pub(super) fn preferred(&self) -> &str {
        &self.versions[0]
    }

    /// Whether `spec` names this resource by plural, singular, short name or kind, optionally
    /// group-qualified (`deployments.apps`, `deploy`, `Widget`).
    pub(super) fn answers_to(&self, spec: &str) -> bool {
        let (name, group) = match spec.split_once('.') {
            Some((n, g)) => (n, Some(g)),
            None => (spec, None),
        };
        if group.is_some_and(|g| g != self.group) {
            return false;
        }
        let name = name.to_ascii_lowercase();
        name == self.plural
            || name == self.singular
            || name == self.kind.to_ascii_lowercase()
            || self.short_names.contains(&name)
    }
}

/// Builds a built-in resource; `flags` are (namespaced, status subresource, generation).
#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    plural: &str,
    singular: &str,
    kind: &str,
    short_names: &[&str],
    categories: &[&str],
    (namespaced, status_subresource, generation): (bool, bool, bool),
) -> ResourceDef {
    ResourceDef {
        group: group.to_string(),
        versions: vec!["v1".to_string()],
        plural: plural.to_string(),
        singular: singular.to_string(),
        kind: kind.to_string(),
        namespaced,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        status_subresource,
        generation,
        custom: false,
        printer_columns: Vec::new(),
    }
}

/// The built-in resources, in discovery order.
pub(super) fn builtins() -> Vec<ResourceDef> {
    const NS: (bool, bool, bool) = (true, false, false);
    const CLUSTER: (bool, bool, bool) = (false, false, false);
    const RBAC: &str = "rbac.authorization.k8s.io";
    vec![
        builtin("", "configmaps", "configmap", "ConfigMap", &["cm"], &[], NS),
        builtin("", "events", "event", "Event", &["ev"], &[], NS),
        builtin(
            "",
            "namespaces",
            "namespace",
            "Namespace",
            &["ns"],
            &[],
            (false, true, false),
        ),
        builtin(
            "",
            "nodes",
            "node",
            "Node",
            &["no"],
            &[],
            (false, true, false),
        ),
        builtin("", "secrets", "secret", "Secret", &[], &[], NS),
        builtin(
            "",
            "serviceaccounts",
            "serviceaccount",
            "ServiceAccount",
            &["sa"],
            &[],
            NS,
        ),
        builtin(
            "",
            "services",
            "service",
            "Service",
            &["svc"],
            &["all"],
            (true, true, false),
        ),
        builtin(
            "apps",
            "deployments",
            "deployment",
            "Deployment",
            &["deploy"],
            &["all"],
            (true, true, true),
        ),
        builtin(
            RBAC,
            "clusterrolebindings",
            "clusterrolebinding",
            "ClusterRoleBinding",
            &[],
            &[],
            CLUSTER,
        ),
        builtin(
            RBAC,
            "clusterroles",
            "clusterrole",
            "ClusterRole",
            &[],
            &[],
            CLUSTER,
        ),
        builtin(
            RBAC,
            "rolebindings",
            "rolebinding",
            "RoleBinding",
            &[],
            &[],
            NS,
        ),
        builtin(RBAC, "roles", "role", "Role", &[], &[], NS),
        builtin(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "customresourcedefinition",
            "CustomResourceDefinition",
            &["crd", "crds"],
            &[],
            (false, true, true),
        ),
        builtin(
            "coordination.k8s.io",
            "leases",
            "lease",
            "Lease",
            &[],
            &[],
            NS,
        ),
    ]
}

/// Built-ins that only deploy/'s test needs (PodDisruptionBudget, NetworkPolicy), served on
/// request through [`super::KubeApi::serve_deploy_kinds`] so the export tests' catalog stays put.
pub(super) fn deploy_kinds() -> Vec<ResourceDef> {
    vec![
        builtin(
            "policy",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            "PodDisruptionBudget",
            &["pdb"],
            &[],
            (true, true, true),
        ),
        builtin(
            "networking.k8s.io",
            "networkpolicies",
            "networkpolicy",
            "NetworkPolicy",
            &["netpol"],
            &[],
            (true, false, true),
        ),
    ]
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first, anything
/// that does not look like a Kubernetes version last, alphabetically.
pub(super) fn version_order(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((3, major, 0));
        }
        let (stage, n) = if let Some(n) = tail.strip_prefix("beta") {
            (2, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (1, n)
        } else {
            return None;
        };
        Some((stage, major, n.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Turns a CRD object into the resource it serves, or the validation causes that make it
/// invalid (`(field, problem)` pairs, as in a 422 response).
pub(super) fn from_crd(crd: &Value) -> Result<ResourceDef, Vec<(String, String)>> {
    let mut causes = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default();
    let kind = names["kind"].as_str().unwrap_or_default();
    if group.is_empty() || !group.contains('.') {
        causes.push((
            "spec.group".into(),
            format!("Invalid value: \"{group}\": should be a domain with at least one dot"),
        ));
    }
    if plural.is_empty() {
        causes.push(("spec.names.plural".into(), "Required value".into()));
    }
    if kind.is_empty() {
        causes.push(("spec.names.kind".into(), "Required value".into()));
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if name != format!("{plural}.{group}") {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            causes.push((
                "spec.scope".into(),
                format!(
                    "Unsupported value: \"{}\": supported values: \"Cluster\", \"Namespaced\"",
                    other.unwrap_or_default()
                ),
            ));
            true
        }
    };
    let versions: Vec<&Value> = spec["versions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|v| v["served"].as_bool().unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push((
            "spec.versions".into(),
            "Invalid value: must have at least one served version".into(),
        ));
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    let mut served: Vec<String> = versions
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    served.sort_by(|a, b| version_order(a, b));
    let preferred = versions
        .iter()
        .find(|v| v["name"].as_str() == Some(&served[0]))
        .copied()
        .unwrap_or(versions[0]);
    let printer_columns = preferred["additionalPrinterColumns"]
        .as_array()
        .map(|cols| {
            cols.iter()
                .map(|c| PrinterColumn {
                    name: c["name"].as_str().unwrap_or_default().to_string(),
                    kind: c["type"].as_str().unwrap_or("string").to_string(),
                    json_path: c["jsonPath"].as_str().unwrap_or_default().to_string(),
                    priority: c["priority"].as_i64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ResourceDef {
        group: group.to_string(),
        versions: served,
        plural: plural.to_string(),
        singular: names["singular"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_ascii_lowercase()),
        kind: kind.to_string(),
        namespaced,
        short_names: strings(&names["shortNames"]),
        categories: strings(&names["categories"]),
        status_subresource: versions
            .iter()
            .any(|v| v["subresources"]["status"].is_object()),
        generation: true,
        custom: true,
        printer_columns,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v2beta1", "v1", "v1beta2", "foo", "v2"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(v, ["v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]);
    }

    #[test]
    fn crd_becomes_a_resource() {
        let crd = json!({
            "metadata": { "name": "widgets.example.com" },
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": { "plural": "widgets", "kind": "Widget", "shortNames": ["wd"] },
                "versions": [
                    { "name": "v1alpha1", "served": true, "storage": false },
                    { "name": "v1", "served": true, "storage": true,
                      "subresources": { "status": {} } }
                ]
            }
        });
        let def = from_crd(&crd).unwrap();
        assert_eq!(def.versions, ["v1", "v1alpha1"]);
        assert_eq!(def.singular, "widget");
        assert!(def.status_subresource && def.namespaced && def.custom);
        assert!(def.answers_to("wd") && def.answers_to("widgets.example.com"));
    }

    #[test]
    fn crd_name_must_match_plural_and_group() {
        let crd = json!({
            "metadata": { "name": "gadgets.example.com" },
            "spec": { "group": "example.com", "scope": "Namespaced",
                      "names": { "plural": "widgets", "kind": "Widget" },
                      "versions": [{ "name": "v1", "served": true, "storage": true }] }
        });
        let causes = from_crd(&crd).unwrap_err();
        assert_eq!(causes[0].0, "metadata.name");
    }
}
