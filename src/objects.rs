//! The stream of cleaned Kubernetes objects between object sources (a live LIST today; an
//! archive or an etcd snapshot next) and object sinks (the export archive, a directory; apply
//! and diff next). The rules every source and sink share live here and nowhere else: how an
//! object is cleaned, which resources and namespaces the configuration selects, which objects
//! are encrypted, and where an object lives in an export's layout (docs/FORMAT.md).

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;

use crate::config;

/// One kind of resource as the API server serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, "" for the core group.
    pub group: String,
    /// The version served (the preferred one).
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Plural resource name, e.g. `deployments`.
    pub plural: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
}

impl ResourceType {
    /// The resource as the Kubernetes client describes it, with its scope.
    pub fn of(ar: &kube::discovery::ApiResource, namespaced: bool) -> ResourceType {
        ResourceType {
            group: ar.group.clone(),
            version: ar.version.clone(),
            kind: ar.kind.clone(),
            plural: ar.plural.clone(),
            namespaced,
        }
    }

    /// The `plural.group` key (`plural` for the core group): the name used in the
    /// configuration, in messages and in index.json.
    pub fn key(&self) -> String {
        resource_key(&self.group, &self.plural)
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// The `plural.group` key of a resource (`plural` for the core group).
pub fn resource_key(group: &str, plural: &str) -> String {
    if group.is_empty() || group == CORE_DIR {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// One cleaned object, ready for any sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Its resource.
    pub resource: Arc<ResourceType>,
    /// Its namespace (`None` for cluster-scoped objects).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// The object, cleaned by [`clean`].
    pub value: Value,
}

impl Object {
    /// An object as a source read it (a LIST item, a decoded etcd value): cleaned here, with
    /// its name and namespace taken from its metadata. A namespaced object without a namespace
    /// is in `default`, as the API server treats it.
    pub fn new(resource: Arc<ResourceType>, raw: Value) -> Object {
        let meta = raw.get("metadata");
        let text = |field: &str| {
            meta.and_then(|m| m.get(field))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let name = text("name").unwrap_or_default();
        let namespace = resource
            .namespaced
            .then(|| text("namespace").unwrap_or_else(|| "default".into()));
        let value = clean(raw, &resource);
        Object {
            resource,
            namespace,
            name,
            value,
        }
    }

    /// Where the object lives in an export's layout.
    pub fn path(&self, encrypted: bool) -> String {
        object_path(
            self.namespace.as_deref(),
            &self.resource.group,
            &self.resource.plural,
            &self.name,
            encrypted,
        )
    }

    /// The object as the YAML an export stores.
    pub fn to_yaml(&self) -> Result<Vec<u8>, String> {
        serde_saphyr::to_string(&self.value)
            .map(String::into_bytes)
            .map_err(|e| e.to_string())
    }
}

/// Removes what must not be re-applied, as documented in docs/FORMAT.md: server-set metadata
/// (managedFields, resourceVersion, uid, creationTimestamp, generation, selfLink) and status;
/// sets apiVersion and kind, which LIST items may lack.
pub fn clean(mut obj: Value, resource: &ResourceType) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
        map.insert("apiVersion".into(), Value::String(resource.api_version()));
        map.insert("kind".into(), Value::String(resource.kind.clone()));
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "managedFields",
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "generation",
                "selfLink",
            ] {
                meta.remove(field);
            }
        }
    }
    obj
}

/// Which resources and namespaces the configuration exports, and which are encrypted: the
/// `resources` section's filters, applied the same way by every source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only these resource keys (all when empty).
    pub include_resources: Vec<String>,
    /// Never these resource keys.
    pub exclude_resources: Vec<String>,
    /// Only namespaced objects in these namespaces (all when empty).
    pub include_namespaces: Vec<String>,
    /// Never namespaced objects in these namespaces.
    pub exclude_namespaces: Vec<String>,
    /// Resource keys whose objects are stored as age files.
    pub encrypt_resources: Vec<String>,
}

impl From<&config::Resources> for Selection {
    fn from(cfg: &config::Resources) -> Selection {
        Selection {
            include_resources: cfg.include_resources.clone(),
            exclude_resources: cfg.exclude_resources.clone(),
            include_namespaces: cfg.include_namespaces.clone(),
            exclude_namespaces: cfg.exclude_namespaces.clone(),
            encrypt_resources: cfg.encrypt_resources.clone(),
        }
    }
}

impl Selection {
    /// Whether the resource `key` is exported at all.
    pub fn resource(&self, key: &str) -> bool {
        (self.include_resources.is_empty() || self.include_resources.iter().any(|k| k == key))
            && !self.exclude_resources.iter().any(|k| k == key)
    }

    /// Whether an object in `namespace` is exported (cluster-scoped objects always are).
    pub fn namespace(&self, namespace: Option<&str>) -> bool {
        let Some(ns) = namespace else { return true };
        (self.include_namespaces.is_empty() || self.include_namespaces.iter().any(|n| n == ns))
            && !self.exclude_namespaces.iter().any(|n| n == ns)
    }

    /// Whether objects of the resource `key` are encrypted, given recipients to encrypt to.
    pub fn encrypts(&self, key: &str) -> bool {
        self.encrypt_resources.iter().any(|k| k == key)
    }
}

/// One object as an export stores it: its archive path and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The archive path ([`Object::path`]).
    pub path: String,
    /// YAML, or an age file of the YAML.
    pub data: Vec<u8>,
    /// Whether `data` is an age file.
    pub encrypted: bool,
}

/// Encodes `obj` for an export: YAML, encrypted to `recipients` when the selection encrypts
/// its resource and recipients are given (without them, `encryption.allow_unencrypted` is set
/// and the object is stored in the clear). The error says what failed, for the resource's
/// record in index.json.
pub fn encode(
    obj: &Object,
    selection: &Selection,
    recipients: Option<&[age::x25519::Recipient]>,
) -> Result<Encoded, String> {
    let yaml = obj
        .to_yaml()
        .map_err(|e| format!("cannot serialize {}: {e}", obj.name))?;
    match recipients.filter(|_| selection.encrypts(&obj.resource.key())) {
        Some(r) => Ok(Encoded {
            path: obj.path(true),
            data: crate::archive::encrypt(r, &yaml)
                .map_err(|e| format!("encrypting {} failed: {e}", obj.name))?,
            encrypted: true,
        }),
        None => Ok(Encoded {
            path: obj.path(false),
            data: yaml,
            encrypted: false,
        }),
    }
}

/// Why a sink did not take an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// This object could not be written (the reason names it); the source records it and
    /// stops this resource.
    Object(String),
    /// The sink is gone (a later stage failed or the run was cancelled): stop the source.
    Closed,
}

/// Where a source sends its objects.
pub trait Sink {
    /// Takes one object; returns whether it was stored encrypted.
    fn put(&mut self, obj: Object) -> impl Future<Output = Result<bool, Refused>> + Send;
}

/// The directory of the core group in an export's layout.
pub const CORE_DIR: &str = "core";

/// The archive path of one object: `namespaces/<ns>/<group>/<resource>/<name>.yaml` or
/// `cluster/<group>/<resource>/<name>.yaml` (the core group is `core`), `.yaml.age` when
/// encrypted.
pub fn object_path(
    namespace: Option<&str>,
    group: &str,
    resource: &str,
    name: &str,
    encrypted: bool,
) -> String {
    let group = if group.is_empty() { CORE_DIR } else { group };
    let suffix = if encrypted { ".yaml.age" } else { ".yaml" };
    match namespace {
        Some(ns) => format!("namespaces/{ns}/{group}/{resource}/{name}{suffix}"),
        None => format!("cluster/{group}/{resource}/{name}{suffix}"),
    }
}

/// The namespace and resource key of an object's archive path, or `None` for a path that is
/// not an object's (index.json): the inverse of [`object_path`].
pub fn resource_of(path: &str) -> Option<(Option<&str>, String)> {
    let parts: Vec<&str> = path.split('/').collect();
    let (namespace, group, resource) = match parts.as_slice() {
        ["namespaces", ns, group, resource, _] => (Some(*ns), *group, *resource),
        ["cluster", group, resource, _] => (None, *group, *resource),
        _ => return None,
    };
    Some((namespace, resource_key(group, resource)))
}

/// The namespace, resource key and name of an object's archive path (`None` for a path that
/// is not an object's): [`resource_of`] plus the file name without `.yaml` / `.yaml.age`.
pub fn identity_of(path: &str) -> Option<(Option<&str>, String, &str)> {
    let (namespace, key) = resource_of(path)?;
    let file = path.rsplit('/').next()?;
    let name = file
        .strip_suffix(".yaml.age")
        .or_else(|| file.strip_suffix(".yaml"))?;
    Some((namespace, key, name))
}

/// Which objects a restore (and later apply and diff) picks out of an export: a namespace and
/// a resource given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this namespace (cluster-scoped objects are then skipped).
    pub namespace: Option<String>,
    /// Only this resource: `plural.group`, or `plural` for the core group.
    pub resource: Option<String>,
}

impl Filter {
    /// Whether an object in `namespace` of resource `key` passes.
    pub fn accepts(&self, namespace: Option<&str>, key: &str) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|want| namespace == Some(want))
            && self.resource.as_deref().is_none_or(|want| want == key)
    }

    /// Whether an archive path passes the filter (index.json always does).
    pub fn accepts_path(&self, path: &str) -> bool {
        if path == "index.json" {
            return true;
        }
        resource_of(path).is_some_and(|(namespace, key)| self.accepts(namespace, &key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployments() -> Arc<ResourceType> {
        Arc::new(ResourceType {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            namespaced: true,
        })
    }

    fn secrets() -> Arc<ResourceType> {
        Arc::new(ResourceType {
            group: "".into(),
            version: "v1".into(),
            kind: "Secret".into(),
            plural: "secrets".into(),
            namespaced: true,
        })
    }

    #[test]
    fn paths_follow_the_documented_layout() {
        assert_eq!(
            object_path(Some("app"), "", "configmaps", "web", false),
            "namespaces/app/core/configmaps/web.yaml"
        );
        assert_eq!(
            object_path(Some("app"), "", "secrets", "db", true),
            "namespaces/app/core/secrets/db.yaml.age"
        );
        assert_eq!(
            object_path(
                None,
                "rbac.authorization.k8s.io",
                "clusterroles",
                "view",
                false
            ),
            "cluster/rbac.authorization.k8s.io/clusterroles/view.yaml"
        );
        for (path, want) in [
            (
                "namespaces/app/core/secrets/db.yaml.age",
                Some((Some("app"), "secrets".to_string())),
            ),
            (
                "cluster/rbac.authorization.k8s.io/clusterroles/view.yaml",
                Some((None, "clusterroles.rbac.authorization.k8s.io".to_string())),
            ),
            ("index.json", None),
        ] {
            assert_eq!(resource_of(path), want, "{path}");
        }
    }

    #[test]
    fn an_object_is_cleaned_and_placed_by_its_metadata() {
        let obj = Object::new(
            deployments(),
            json!({
                "metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "7",
                             "managedFields": [], "labels": {"app": "web"}},
                "spec": {"replicas": 2},
                "status": {"readyReplicas": 2},
            }),
        );
        assert_eq!(
            (obj.namespace.as_deref(), obj.name.as_str()),
            (Some("shop"), "web")
        );
        assert_eq!(
            obj.value,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
                "spec": {"replicas": 2},
            })
        );
        assert_eq!(obj.path(false), "namespaces/shop/apps/deployments/web.yaml");
        let bare = Object::new(deployments(), json!({"metadata": {"name": "x"}}));
        assert_eq!(bare.namespace.as_deref(), Some("default"));
    }

    #[test]
    fn the_selection_filters_resources_and_only_namespaced_objects() {
        let s = Selection {
            include_namespaces: vec!["shop".into()],
            exclude_resources: vec!["events".into()],
            ..Selection::default()
        };
        assert!(s.resource("deployments.apps") && !s.resource("events"));
        assert!(s.namespace(Some("shop")) && !s.namespace(Some("other")));
        assert!(s.namespace(None), "cluster-scoped objects are kept");
        let only = Selection {
            include_resources: vec!["secrets".into()],
            exclude_namespaces: vec!["kube-system".into()],
            ..Selection::default()
        };
        assert!(only.resource("secrets") && !only.resource("configmaps"));
        assert!(!only.namespace(Some("kube-system")) && only.namespace(Some("x")));
    }

    #[test]
    fn secrets_are_encrypted_only_with_recipients() {
        let identity = age::x25519::Identity::generate();
        let recipients = [identity.to_public()];
        let s = Selection {
            encrypt_resources: vec!["secrets".into()],
            ..Selection::default()
        };
        let secret = Object::new(
            secrets(),
            json!({"metadata": {"name": "db", "namespace": "app"}, "data": {"k": "dg=="}}),
        );
        let e = encode(&secret, &s, Some(&recipients)).unwrap();
        assert!(e.encrypted);
        assert_eq!(e.path, "namespaces/app/core/secrets/db.yaml.age");
        assert!(!e.data.windows(4).any(|w| w == b"dg=="), "no plain data");
        let plain = encode(&secret, &s, None).unwrap();
        assert!(!plain.encrypted);
        assert_eq!(plain.path, "namespaces/app/core/secrets/db.yaml");
        assert_eq!(plain.data, secret.to_yaml().unwrap());
        let web = Object::new(deployments(), json!({"metadata": {"name": "w"}}));
        assert!(!encode(&web, &s, Some(&recipients)).unwrap().encrypted);
    }

    #[test]
    fn the_filter_matches_namespaces_and_resource_keys() {
        let f = Filter {
            namespace: Some("app".into()),
            resource: Some("deployments.apps".into()),
        };
        assert!(f.accepts_path("namespaces/app/apps/deployments/web.yaml"));
        assert!(!f.accepts_path("namespaces/other/apps/deployments/web.yaml"));
        assert!(!f.accepts_path("namespaces/app/core/configmaps/web.yaml"));
        assert!(!f.accepts_path("cluster/rbac.authorization.k8s.io/clusterroles/view.yaml"));
        assert!(f.accepts_path("index.json"));
        let core = Filter {
            namespace: None,
            resource: Some("secrets".into()),
        };
        assert!(core.accepts_path("namespaces/app/core/secrets/db.yaml.age"));
        assert!(!core.accepts_path("namespaces/app/core/configmaps/db.yaml"));
    }
}
