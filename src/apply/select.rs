//! Which objects of a backup a restore or a diff works on: `--namespace`, `--resource`,
//! `--name` and `--selector`, decided per object from its cleaned JSON alone (pure), so that
//! `restore resources --apply`, `--to-dir` and `diff` select exactly the same objects.
//!
//! With `--namespace`, the namespaced objects of those namespaces are selected, and the
//! Namespace objects of the same names whatever `--resource`, `--name` and `--selector` say (a
//! deleted namespace must come back, with its labels and annotations, or its Pod Security level
//! is lost, before anything in it can be); other cluster-scoped objects only when `--resource`
//! names their resource explicitly.

use serde_json::Value;
use thiserror::Error;

/// A selector or filter given on the command line that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "--selector {selector:?}: {problem}; write it as kubectl does, e.g. app=web,tier!=db,release (equality, inequality, exists, !absent)"
    )]
    Selector { selector: String, problem: String },
}

/// Who an object is: enough to find it in a cluster and to order and report it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ObjectRef {
    /// API group, "" for the core group.
    pub group: String,
    /// The kind, e.g. `Deployment`.
    pub kind: String,
    /// The namespace, `None` for a cluster-scoped object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// metadata.name.
    pub name: String,
}

impl ObjectRef {
    /// Reads the reference from an object's `apiVersion`, `kind` and `metadata`; `None` when
    /// one of them is missing (not an object the API server would accept).
    pub fn of(obj: &Value) -> Option<ObjectRef> {
        let api_version = obj.get("apiVersion")?.as_str()?;
        let kind = obj.get("kind")?.as_str()?;
        let meta = obj.get("metadata")?;
        let name = meta.get("name")?.as_str()?;
        let group = match api_version.split_once('/') {
            Some((group, _)) => group,
            None => "",
        };
        Some(ObjectRef {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: meta
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .map(str::to_string),
            name: name.to_string(),
        })
    }

    /// `Kind namespace/name` (or `Kind name`), for messages.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// A label selector in kubectl's equality-based syntax: `app=web,tier!=db,release,!canary`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    /// Parses `app=web,tier!=db,release,!canary` (`==` is accepted for `=`).
    pub fn parse(text: &str) -> Result<Selector, Error> {
        let bad = |problem: &str| Error::Selector {
            selector: text.to_string(),
            problem: problem.to_string(),
        };
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(bad(
                    "it has an empty requirement (two commas, or a trailing comma)",
                ));
            }
            if part.contains(" in ") || part.contains(" notin ") || part.contains('(') {
                return Err(bad(
                    "set-based requirements (in, notin) are not supported; list the values as separate runs or use equality",
                ));
            }
            let requirement = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(label_key(k, text)?, label_value(v, text)?)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(label_key(k, text)?, label_value(v, text)?)
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::Absent(label_key(k, text)?)
            } else {
                Requirement::Exists(label_key(part, text)?)
            };
            requirements.push(requirement);
        }
        Ok(Selector(requirements))
    }

    /// Whether an object's labels satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            // As in Kubernetes: an object without the label satisfies `k!=v`.
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::Absent(k) => label(k).is_none(),
        })
    }
}

fn label_key(key: &str, text: &str) -> Result<String, Error> {
    let key = key.trim();
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
    });
    if name_ok && prefix_ok {
        Ok(key.to_string())
    } else {
        Err(Error::Selector {
            selector: text.to_string(),
            problem: format!("{key:?} is not a valid label key"),
        })
    }
}

fn label_value(value: &str, text: &str) -> Result<String, Error> {
    let value = value.trim();
    let ok = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && (value.is_empty()
            || (value.starts_with(|c: char| c.is_ascii_alphanumeric())
                && value.ends_with(|c: char| c.is_ascii_alphanumeric())));
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::Selector {
            selector: text.to_string(),
            problem: format!("{value:?} is not a valid label value"),
        })
    }
}

/// The objects a run works on. An empty list means "any".
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Namespaces (as named in the backup, before any mapping).
    pub namespaces: Vec<String>,
    /// Resource keys: `plural.group`, or `plural` for the core group.
    pub resources: Vec<String>,
    /// metadata.name.
    pub names: Vec<String>,
    /// Labels.
    pub selector: Selector,
}

impl Selection {
    /// Whether the object `obj`, of resource `resource_key`, is selected.
    pub fn accepts(&self, resource_key: &str, obj: &Value) -> bool {
        let Some(r) = ObjectRef::of(obj) else {
            return false;
        };
        let is_namespace = r.group.is_empty() && r.kind == "Namespace";
        match self.by_identity(resource_key, r.namespace.as_deref(), &r.name, is_namespace) {
            Some(always) => always,
            None => self.selector.matches(obj),
        }
    }

    /// Whether an object known only by its archive path (resource key, namespace, name; its
    /// labels unknown, an encrypted or unreadable entry) may be selected: the same rules as
    /// [`Selection::accepts`] without the label selector.
    pub fn accepts_identity(
        &self,
        resource_key: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        let is_namespace = resource_key == "namespaces" && namespace.is_none();
        self.by_identity(resource_key, namespace, name, is_namespace)
            .unwrap_or(true)
    }

    /// The rules on who an object is: `Some(true)` selected whatever its labels (a selected
    /// namespace's own Namespace object), `Some(false)` not selected, `None` selected if its
    /// labels match.
    fn by_identity(
        &self,
        resource_key: &str,
        namespace: Option<&str>,
        name: &str,
        is_namespace: bool,
    ) -> Option<bool> {
        // A selected namespace's own Namespace object comes along whatever the other filters
        // say: without it nothing in a deleted namespace can be restored.
        if is_namespace && self.namespaces.iter().any(|n| n == name) {
            return Some(true);
        }
        let named_resource = self.resources.iter().any(|k| k == resource_key);
        if !self.resources.is_empty() && !named_resource {
            return Some(false);
        }
        if !self.names.is_empty() && !self.names.iter().any(|n| n == name) {
            return Some(false);
        }
        if !self.namespaces.is_empty() {
            let in_namespaces = match namespace {
                Some(ns) => self.namespaces.iter().any(|n| n == ns),
                None => named_resource,
            };
            if !in_namespaces {
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(ns: &str, name: &str, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": ns, "labels": labels}})
    }

    #[test]
    fn an_object_ref_reads_group_kind_namespace_and_name() {
        let r = ObjectRef::of(&deployment("payments", "web", json!({}))).unwrap();
        assert_eq!(r.group, "apps");
        assert_eq!(r.describe(), "Deployment payments/web");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments"}});
        let r = ObjectRef::of(&ns).unwrap();
        assert_eq!((r.group.as_str(), r.namespace), ("", None));
        assert_eq!(ObjectRef::of(&json!({"kind": "Pod"})), None);
    }

    #[test]
    fn selectors_follow_kubectl_equality_semantics() {
        let web = deployment("a", "web", json!({"app": "web", "tier": "front"}));
        let bare = deployment("a", "bare", json!({}));
        let s = Selector::parse("app=web,tier!=db").unwrap();
        assert!(s.matches(&web));
        assert!(!s.matches(&bare));
        // Kubernetes: an object without the label satisfies `!=`.
        assert!(Selector::parse("tier!=db").unwrap().matches(&bare));
        assert!(Selector::parse("app==web").unwrap().matches(&web));
        assert!(Selector::parse("!canary,app").unwrap().matches(&web));
        assert!(!Selector::parse("!app").unwrap().matches(&web));
        assert!(Selector::parse("example.com/team=x").is_ok());
    }

    #[test]
    fn a_bad_selector_is_refused_with_the_syntax() {
        for bad in ["app=web,", "env in (a,b)", "a b=c", "app=-web", ""] {
            let e = Selector::parse(bad).unwrap_err();
            assert!(e.to_string().contains("app=web,tier!=db"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_namespace_selects_its_objects_and_its_namespace_but_no_other_cluster_objects() {
        let sel = Selection {
            namespaces: vec!["payments".into()],
            ..Selection::default()
        };
        assert!(sel.accepts(
            "deployments.apps",
            &deployment("payments", "web", json!({}))
        ));
        assert!(!sel.accepts("deployments.apps", &deployment("shop", "web", json!({}))));
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments"}});
        assert!(sel.accepts("namespaces", &ns));
        let cr = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "x"}});
        assert!(!sel.accepts("clusterroles.rbac.authorization.k8s.io", &cr));
        let sel = Selection {
            resources: vec!["clusterroles.rbac.authorization.k8s.io".into()],
            ..sel
        };
        assert!(sel.accepts("clusterroles.rbac.authorization.k8s.io", &cr));
    }

    #[test]
    fn a_selected_namespace_brings_its_namespace_object_whatever_the_other_filters() {
        // Regression: `--namespace gamma --selector app=web` after gamma was deleted failed
        // every object with "namespaces gamma not found", the Namespace having been filtered out.
        let sel = Selection {
            namespaces: vec!["gamma".into()],
            resources: vec!["configmaps".into()],
            names: vec!["cm-1".into()],
            selector: Selector::parse("app=web").unwrap(),
        };
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gamma"}});
        assert!(sel.accepts("namespaces", &ns));
        let other = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "delta"}});
        assert!(!sel.accepts("namespaces", &other));
    }

    #[test]
    fn names_and_resources_narrow_the_selection() {
        let sel = Selection {
            resources: vec!["deployments.apps".into()],
            names: vec!["web".into()],
            ..Selection::default()
        };
        assert!(sel.accepts("deployments.apps", &deployment("a", "web", json!({}))));
        assert!(!sel.accepts("deployments.apps", &deployment("a", "api", json!({}))));
        assert!(!sel.accepts("statefulsets.apps", &deployment("a", "web", json!({}))));
    }
}
