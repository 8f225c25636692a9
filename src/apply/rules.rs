//! What a restore into a live cluster does with each selected object, decided without the
//! cluster (pure): the phase it is applied in, whether it is skipped because the cluster
//! recreates it or because restoring it would do harm, and which fields are removed because they
//! would make the apply fail or break the live cluster. The apply and its `--dry-run` report
//! exactly these decisions, with the reason for each.
//!
//! The order, and why (docs/RESTORE.md repeats it):
//! 1. CustomResourceDefinitions, then wait until they are Established: a custom resource of an
//!    unknown type is refused.
//! 2. Namespaces: every namespaced object needs its namespace.
//! 3. Cluster-wide policy: ClusterRoles and their bindings (what service accounts may do),
//!    StorageClasses (a claim made without its class stays Pending or gets the default class),
//!    PriorityClasses (admission refuses a pod whose class is missing), RuntimeClasses,
//!    IngressClasses.
//! 4. Namespace policy: ResourceQuotas, LimitRanges, NetworkPolicies, Roles, RoleBindings, so no
//!    workload starts unrestricted or without its permissions.
//! 5. ServiceAccounts (admission refuses a pod whose service account is missing), then Secrets,
//!    then ConfigMaps (a pod that mounts a missing one does not start).
//! 6. PersistentVolumes, then PersistentVolumeClaims, so claims bind to the restored volumes
//!    instead of provisioning new, empty ones.
//! 7. Services (pods get environment variables only for services that exist when they start).
//! 8. Workloads: Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs, Pods.
//! 9. Everything else: custom resources, Ingresses, autoscalers, disruption budgets, webhooks...
//!
//! Webhook configurations come last on purpose: a restored admission webhook whose service is
//! not running yet would refuse every later object.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::select::ObjectRef;

/// When an object is applied; earlier phases first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// CustomResourceDefinitions (then wait for Established).
    Definitions,
    /// Namespaces.
    Namespaces,
    /// ClusterRoles, ClusterRoleBindings, StorageClasses, PriorityClasses, RuntimeClasses,
    /// IngressClasses.
    ClusterPolicy,
    /// ResourceQuotas, LimitRanges, NetworkPolicies, Roles, RoleBindings.
    NamespacePolicy,
    /// ServiceAccounts.
    ServiceAccounts,
    /// Secrets.
    Secrets,
    /// ConfigMaps.
    ConfigMaps,
    /// PersistentVolumes.
    Volumes,
    /// PersistentVolumeClaims.
    Claims,
    /// Services.
    Services,
    /// Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs,
    /// CronJobs, Pods.
    Workloads,
    /// Everything else, custom resources included.
    Rest,
}

/// The phase an object of `group`/`kind` is applied in.
pub fn phase(group: &str, kind: &str) -> Phase {
    match (group, kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Phase::Definitions,
        ("", "Namespace") => Phase::Namespaces,
        ("rbac.authorization.k8s.io", "ClusterRole" | "ClusterRoleBinding")
        | ("storage.k8s.io", "StorageClass")
        | ("scheduling.k8s.io", "PriorityClass")
        | ("node.k8s.io", "RuntimeClass")
        | ("networking.k8s.io", "IngressClass") => Phase::ClusterPolicy,
        ("", "ResourceQuota" | "LimitRange")
        | ("networking.k8s.io", "NetworkPolicy")
        | ("rbac.authorization.k8s.io", "Role" | "RoleBinding") => Phase::NamespacePolicy,
        ("", "ServiceAccount") => Phase::ServiceAccounts,
        ("", "Secret") => Phase::Secrets,
        ("", "ConfigMap") => Phase::ConfigMaps,
        ("", "PersistentVolume") => Phase::Volumes,
        ("", "PersistentVolumeClaim") => Phase::Claims,
        ("", "Service") => Phase::Services,
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("", "ReplicationController" | "Pod")
        | ("batch", "Job" | "CronJob") => Phase::Workloads,
        _ => Phase::Rest,
    }
}

/// Why an object is not applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Skip {
    /// Its controller is restored too and creates it again (Pods of a ReplicaSet, ReplicaSets
    /// of a Deployment, Jobs of a CronJob).
    RecreatedByOwner {
        /// The owner, `Kind name`.
        owner: String,
    },
    /// The cluster maintains it on its own; a restored copy would be stale or fight the
    /// component that owns it.
    MaintainedByCluster {
        /// What maintains it, and why it is not restored.
        why: &'static str,
    },
    /// The resource is in the configured skip list.
    Configured {
        /// The resource key that matched.
        resource: String,
    },
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::RecreatedByOwner { owner } => write!(f, "recreated by its owner {owner}"),
            Skip::MaintainedByCluster { why } => f.write_str(why),
            Skip::Configured { resource } => write!(f, "{resource} is in the skip list"),
        }
    }
}

/// A field removed before the apply, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    /// JSON path of the field, e.g. `spec.clusterIP`.
    pub field: String,
    /// Why it cannot be applied as it was.
    pub why: &'static str,
}

/// The decision for one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not applied.
    Skip(Skip),
    /// Applied in `phase`, as `object` (namespace mapped, fields removed).
    Apply {
        /// When.
        phase: Phase,
        /// The object to send.
        object: Value,
        /// What was taken out of it.
        removed: Vec<Removed>,
    },
}

/// What the whole restore selected, known before any object is decided: whether an object's
/// owner comes back with it.
#[derive(Debug, Default)]
pub struct Restored {
    owners: HashSet<(String, Option<String>, String)>,
}

impl Restored {
    /// Records a selected object (kind, namespace and name are what ownerReferences name).
    pub fn add(&mut self, r: &ObjectRef) {
        self.owners
            .insert((r.kind.clone(), r.namespace.clone(), r.name.clone()));
    }

    fn has(&self, kind: &str, namespace: Option<&str>, name: &str) -> bool {
        self.owners.contains(&(
            kind.to_string(),
            namespace.map(str::to_string),
            name.to_string(),
        ))
    }
}

/// Namespace renames (`--namespace-mapping old=new`).
#[derive(Debug, Clone, Default)]
pub struct NamespaceMapping(Vec<(String, String)>);

impl NamespaceMapping {
    /// Parses `old=new` pairs; a namespace may be mapped only once.
    pub fn parse(pairs: &[String]) -> Result<NamespaceMapping, String> {
        let mut out: Vec<(String, String)> = Vec::new();
        for pair in pairs {
            let Some((old, new)) = pair.split_once('=') else {
                return Err(format!(
                    "--namespace-mapping {pair:?}: write it as old=new, e.g. payments=payments-restored"
                ));
            };
            let (old, new) = (old.trim(), new.trim());
            if old.is_empty() || new.is_empty() || !is_dns_label(new) {
                return Err(format!(
                    "--namespace-mapping {pair:?}: both sides must be namespace names (lowercase letters, digits and '-', at most 63)"
                ));
            }
            if out.iter().any(|(o, _)| o == old) {
                return Err(format!(
                    "--namespace-mapping maps {old:?} twice: give each namespace one target"
                ));
            }
            if let Some((other, _)) = out.iter().find(|(_, n)| n == new) {
                return Err(format!(
                    "--namespace-mapping maps both {other:?} and {old:?} into {new:?}: objects of one would be compared with, or written over, the other's; give each its own target"
                ));
            }
            if old == new {
                return Err(format!(
                    "--namespace-mapping {pair:?} maps a namespace onto itself: leave it out"
                ));
            }
            out.push((old.to_string(), new.to_string()));
        }
        Ok(NamespaceMapping(out))
    }

    /// The namespaces renamed, as named in the backup.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(old, _)| old.as_str())
    }

    /// The namespace `ns` is restored into.
    pub fn map<'a>(&'a self, ns: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|(old, _)| old == ns)
            .map_or(ns, |(_, new)| new.as_str())
    }
}

fn is_dns_label(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Decides what happens to one selected, cleaned object of resource `resource_key`.
pub fn decide(
    resource_key: &str,
    obj: &Value,
    restored: &Restored,
    skip_resources: &[String],
    mapping: &NamespaceMapping,
) -> Decision {
    let Some(r) = ObjectRef::of(obj) else {
        return Decision::Skip(Skip::MaintainedByCluster {
            why: "it has no apiVersion, kind or metadata.name, so it is not an object",
        });
    };
    if let Some(skip) = skip_reason(resource_key, &r, obj, restored, skip_resources) {
        return Decision::Skip(skip);
    }
    let mut object = obj.clone();
    let mut removed = Vec::new();
    strip(&r, &mut object, &mut removed);
    map_namespace(&r, &mut object, mapping);
    Decision::Apply {
        phase: phase(&r.group, &r.kind),
        object,
        removed,
    }
}

fn skip_reason(
    resource_key: &str,
    r: &ObjectRef,
    obj: &Value,
    restored: &Restored,
    skip_resources: &[String],
) -> Option<Skip> {
    if skip_resources.iter().any(|k| k == resource_key) {
        return Some(Skip::Configured {
            resource: resource_key.to_string(),
        });
    }
    let maintained = |why| Some(Skip::MaintainedByCluster { why });
    match (r.group.as_str(), r.kind.as_str()) {
        ("", "Endpoints") | ("discovery.k8s.io", "EndpointSlice") => {
            return maintained(
                "kept up to date from its Service by the endpoints controller; a restored copy would point at pods that are gone",
            );
        }
        ("", "Event") | ("events.k8s.io", "Event") => {
            return maintained("an event is history, not state");
        }
        ("", "Node") => {
            return maintained(
                "registered by its kubelet; a restored Node without a kubelet behind it is a dead entry",
            );
        }
        ("coordination.k8s.io", "Lease") => {
            return maintained(
                "held by a running component (leader election, node heartbeat); a restored lease would hand out stale leadership",
            );
        }
        ("", "ConfigMap") if r.name == "kube-root-ca.crt" => {
            return maintained(
                "published into every namespace by kube-controller-manager with the cluster's current CA",
            );
        }
        ("", "Secret")
            if obj.get("type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token") =>
        {
            return maintained(
                "a service-account token: the token controller issues a new one for the restored service account",
            );
        }
        ("", "Pod")
            if obj
                .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                .is_some() =>
        {
            return maintained("a mirror of a static pod: the kubelet recreates it from its file");
        }
        _ => {}
    }
    let owners = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?;
    owners
        .iter()
        .filter(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .filter_map(|o| {
            Some((
                o.get("apiVersion")?.as_str()?,
                o.get("kind")?.as_str()?,
                o.get("name")?.as_str()?,
            ))
        })
        .find(|(api_version, kind, name)| {
            recreates(api_version, kind, &r.group, &r.kind)
                // Owners live in the object's namespace.
                && restored.has(kind, r.namespace.as_deref(), name)
        })
        .map(|(_, kind, name)| Skip::RecreatedByOwner {
            owner: format!("{kind} {name}"),
        })
}

/// Whether a controller of `owner_kind` (in `owner_api_version`) creates objects of
/// `group`/`kind` from its own spec, so a restored owner brings them back by itself. Only the
/// built-in controllers are known to: an object owned by anything else (a custom resource's
/// operator, a Deployment owning a ConfigMap by hand) is restored, never assumed recreated.
fn recreates(owner_api_version: &str, owner_kind: &str, group: &str, kind: &str) -> bool {
    let owner_group = owner_api_version.split_once('/').map_or("", |(g, _)| g);
    matches!(
        (owner_group, owner_kind, group, kind),
        (
            "apps",
            "ReplicaSet" | "StatefulSet" | "DaemonSet",
            "",
            "Pod"
        ) | ("", "ReplicationController", "", "Pod")
            | ("batch", "Job", "", "Pod")
            | ("apps", "Deployment", "apps", "ReplicaSet")
            | ("batch", "CronJob", "batch", "Job")
            | (
                "apps",
                "StatefulSet" | "DaemonSet",
                "apps",
                "ControllerRevision"
            )
    )
}

/// Removes what would make the apply fail or break the live cluster.
fn strip(r: &ObjectRef, obj: &mut Value, removed: &mut Vec<Removed>) {
    let mut take = |obj: &mut Value, path: &[&str], why: &'static str| {
        if remove_path(obj, path) {
            removed.push(Removed {
                field: path.join("."),
                why,
            });
        }
    };
    take(
        obj,
        &["metadata", "ownerReferences"],
        "the owners' uids change on restore, and the garbage collector deletes an object whose owner uid does not exist",
    );
    match (r.group.as_str(), r.kind.as_str()) {
        ("", "Service") => {
            let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
            if !headless {
                const WHY: &str = "the cluster assigns a new cluster IP; the old one may be taken or outside this cluster's service range";
                take(obj, &["spec", "clusterIP"], WHY);
                take(obj, &["spec", "clusterIPs"], WHY);
            }
        }
        ("", "Pod") => take(
            obj,
            &["spec", "nodeName"],
            "the scheduler picks the node; the old one may be gone or full",
        ),
        ("", "PersistentVolume") => {
            const WHY: &str = "the claim comes back with a new uid; a stale one leaves the volume Released instead of Bound";
            take(obj, &["spec", "claimRef", "uid"], WHY);
            take(obj, &["spec", "claimRef", "resourceVersion"], WHY);
        }
        ("batch", "Job") => {
            // A Job's generated selector names the old Job's uid: the API server refuses it.
            let manual = obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
            if !manual {
                const WHY: &str = "generated from the old Job's uid; the API server refuses it and generates a new one";
                take(obj, &["spec", "selector"], WHY);
                for label in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
                    take(obj, &["spec", "template", "metadata", "labels", label], WHY);
                }
            }
        }
        _ => {}
    }
}

/// Removes the field at `path`; whether it was there.
fn remove_path(obj: &mut Value, path: &[&str]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = obj;
    for p in parents {
        match cur.get_mut(*p) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    cur.as_object_mut()
        .and_then(|m: &mut Map<String, Value>| m.remove(*last))
        .is_some()
}

/// Renames the namespace of a namespaced object, a Namespace itself (and its
/// `kubernetes.io/metadata.name` label), and the namespace of ServiceAccount subjects of
/// RoleBindings.
fn map_namespace(r: &ObjectRef, obj: &mut Value, mapping: &NamespaceMapping) {
    if let Some(ns) = &r.namespace {
        let new = mapping.map(ns).to_string();
        obj["metadata"]["namespace"] = Value::String(new);
    }
    if r.group.is_empty() && r.kind == "Namespace" {
        let new = mapping.map(&r.name).to_string();
        // The API server sets this label to the name; a copy must not carry the old one.
        if let Some(labels) = obj
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
            && labels.contains_key("kubernetes.io/metadata.name")
        {
            labels.insert(
                "kubernetes.io/metadata.name".into(),
                Value::String(new.clone()),
            );
        }
        obj["metadata"]["name"] = Value::String(new);
    }
    // Only a RoleBinding's subjects follow its namespace: a ClusterRoleBinding is shared by the
    // cluster, and rewriting its subjects would take permissions away from the original
    // namespace.
    if r.group == "rbac.authorization.k8s.io"
        && r.kind == "RoleBinding"
        && let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut)
    {
        for s in subjects {
            if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                && let Some(ns) = s.get("namespace").and_then(Value::as_str)
            {
                let new = mapping.map(ns).to_string();
                s["namespace"] = Value::String(new);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_mapping() -> NamespaceMapping {
        NamespaceMapping::default()
    }

    fn decide_alone(key: &str, obj: Value) -> Decision {
        decide(key, &obj, &Restored::default(), &[], &no_mapping())
    }

    fn applied(d: Decision) -> (Phase, Value, Vec<Removed>) {
        match d {
            Decision::Apply {
                phase,
                object,
                removed,
            } => (phase, object, removed),
            Decision::Skip(s) => panic!("skipped: {s}"),
        }
    }

    #[test]
    fn definitions_come_before_namespaces_before_policy_before_workloads_before_the_rest() {
        let order = [
            phase("apiextensions.k8s.io", "CustomResourceDefinition"),
            phase("", "Namespace"),
            phase("rbac.authorization.k8s.io", "ClusterRole"),
            phase("rbac.authorization.k8s.io", "RoleBinding"),
            phase("", "ServiceAccount"),
            phase("", "Secret"),
            phase("", "ConfigMap"),
            phase("", "PersistentVolume"),
            phase("", "PersistentVolumeClaim"),
            phase("", "Service"),
            phase("apps", "Deployment"),
            phase("example.com", "Widget"),
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        // A custom resource that happens to share a core kind's name is not a core object.
        assert_eq!(phase("example.com", "Secret"), Phase::Rest);
        assert_eq!(
            phase(
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration"
            ),
            Phase::Rest
        );
    }

    #[test]
    fn what_the_cluster_maintains_is_skipped_with_the_reason() {
        let cases = [
            (
                "endpoints",
                json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "a"}}),
            ),
            (
                "endpointslices.discovery.k8s.io",
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-x", "namespace": "a"}}),
            ),
            (
                "events",
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "a"}}),
            ),
            (
                "events.events.k8s.io",
                json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "a"}}),
            ),
            (
                "leases.coordination.k8s.io",
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l", "namespace": "a"}}),
            ),
            (
                "configmaps",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": "a"}}),
            ),
            (
                "secrets",
                json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token", "metadata": {"name": "t", "namespace": "a"}}),
            ),
            (
                "pods",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "etcd-cp1", "namespace": "kube-system", "annotations": {"kubernetes.io/config.mirror": "abc"}}}),
            ),
        ];
        for (key, obj) in cases {
            match decide_alone(key, obj) {
                Decision::Skip(Skip::MaintainedByCluster { why }) => assert!(!why.is_empty()),
                other => panic!("{key}: {other:?}"),
            }
        }
        // An ordinary ConfigMap and Secret are restored.
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app", "namespace": "a"}});
        assert_eq!(applied(decide_alone("configmaps", cm)).0, Phase::ConfigMaps);
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "db", "namespace": "a"}});
        assert_eq!(applied(decide_alone("secrets", secret)).0, Phase::Secrets);
    }

    #[test]
    fn an_object_whose_controller_is_restored_is_left_to_the_controller() {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-7d", "namespace": "a",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "old", "controller": true}]}});
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "a"}});
        let mut restored = Restored::default();
        restored.add(&ObjectRef::of(&deployment).unwrap());
        assert_eq!(
            decide("replicasets.apps", &rs, &restored, &[], &no_mapping()),
            Decision::Skip(Skip::RecreatedByOwner {
                owner: "Deployment web".into()
            })
        );
        // Same name in another namespace is not its owner: restored, without the stale reference.
        let mut elsewhere = Restored::default();
        elsewhere.add(&ObjectRef {
            namespace: Some("b".into()),
            ..ObjectRef::of(&deployment).unwrap()
        });
        let (phase, object, removed) = applied(decide(
            "replicasets.apps",
            &rs,
            &elsewhere,
            &[],
            &no_mapping(),
        ));
        assert_eq!(phase, Phase::Workloads);
        assert!(object.pointer("/metadata/ownerReferences").is_none());
        assert_eq!(removed[0].field, "metadata.ownerReferences");
    }

    #[test]
    fn only_objects_a_built_in_controller_recreates_are_left_to_it() {
        // Regression: a ConfigMap with a controller reference to a Deployment was skipped as
        // "recreated by its owner", though no Deployment creates ConfigMaps: it was lost.
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-owned", "namespace": "a",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "old", "controller": true}]}});
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-7d-x", "namespace": "a",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d", "uid": "old", "controller": true}]}});
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "nightly-1", "namespace": "a",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "old", "controller": true}]}});
        let mut restored = Restored::default();
        for (group, kind, name) in [
            ("apps", "Deployment", "web"),
            ("apps", "ReplicaSet", "web-7d"),
            ("batch", "CronJob", "nightly"),
        ] {
            restored.add(&ObjectRef {
                group: group.into(),
                kind: kind.into(),
                namespace: Some("a".into()),
                name: name.into(),
            });
        }
        assert!(matches!(
            decide("configmaps", &cm, &restored, &[], &no_mapping()),
            Decision::Apply { .. }
        ));
        assert!(matches!(
            decide("pods", &pod, &restored, &[], &no_mapping()),
            Decision::Skip(Skip::RecreatedByOwner { .. })
        ));
        assert!(matches!(
            decide("jobs.batch", &job, &restored, &[], &no_mapping()),
            Decision::Skip(Skip::RecreatedByOwner { .. })
        ));
        // Nodes are registered by their kubelets.
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-3"}});
        assert!(matches!(
            decide("nodes", &node, &restored, &[], &no_mapping()),
            Decision::Skip(Skip::MaintainedByCluster { .. })
        ));
    }

    #[test]
    fn a_non_controller_owner_does_not_skip_but_its_stale_reference_is_removed() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "a",
            "ownerReferences": [{"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "old"}]}});
        let mut restored = Restored::default();
        restored.add(&ObjectRef {
            group: "example.com".into(),
            kind: "Widget".into(),
            namespace: Some("a".into()),
            name: "w".into(),
        });
        let (_, object, removed) =
            applied(decide("configmaps", &cm, &restored, &[], &no_mapping()));
        assert!(object.pointer("/metadata/ownerReferences").is_none());
        assert_eq!(removed.len(), 1);
    }

    #[test]
    fn a_service_loses_its_cluster_ip_unless_headless() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "a"},
            "spec": {"clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"], "ports": [{"port": 80}]}});
        let (_, object, removed) = applied(decide_alone("services", svc));
        assert!(object.pointer("/spec/clusterIP").is_none());
        assert!(object.pointer("/spec/clusterIPs").is_none());
        assert_eq!(object.pointer("/spec/ports/0/port"), Some(&json!(80)));
        assert_eq!(
            removed.iter().map(|r| r.field.as_str()).collect::<Vec<_>>(),
            ["spec.clusterIP", "spec.clusterIPs"]
        );
        let headless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "a"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        let (_, object, removed) = applied(decide_alone("services", headless));
        assert_eq!(object.pointer("/spec/clusterIP"), Some(&json!("None")));
        assert!(removed.is_empty());
    }

    #[test]
    fn pods_volumes_and_jobs_lose_what_ties_them_to_the_old_cluster() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a"}, "spec": {"nodeName": "n1", "containers": []}});
        let (_, object, _) = applied(decide_alone("pods", pod));
        assert!(object.pointer("/spec/nodeName").is_none());

        let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
            "spec": {"claimRef": {"name": "data", "namespace": "a", "uid": "old", "resourceVersion": "9"}}});
        let (phase, object, _) = applied(decide_alone("persistentvolumes", pv));
        assert_eq!(phase, Phase::Volumes);
        assert_eq!(
            object.pointer("/spec/claimRef"),
            Some(&json!({"name": "data", "namespace": "a"}))
        );

        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "a"},
            "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "old"}},
                     "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "old", "controller-uid": "old", "job-name": "j"}}}}});
        let (_, object, removed) = applied(decide_alone("jobs.batch", job));
        assert!(object.pointer("/spec/selector").is_none());
        assert_eq!(
            object.pointer("/spec/template/metadata/labels"),
            Some(&json!({"job-name": "j"}))
        );
        assert_eq!(removed.len(), 3);
        // A Job with a manual selector keeps it: the user chose it.
        let manual = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "a"},
            "spec": {"manualSelector": true, "selector": {"matchLabels": {"x": "y"}}}});
        assert!(
            applied(decide_alone("jobs.batch", manual))
                .0
                .eq(&Phase::Workloads)
        );
    }

    #[test]
    fn a_namespace_mapping_moves_objects_namespaces_and_service_account_subjects() {
        let mapping = NamespaceMapping::parse(&["payments=payments-restored".into()]).unwrap();
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "payments"}});
        let Decision::Apply { object, .. } =
            decide("deployments.apps", &d, &Restored::default(), &[], &mapping)
        else {
            panic!()
        };
        assert_eq!(object["metadata"]["namespace"], "payments-restored");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments"}});
        let Decision::Apply { object, .. } =
            decide("namespaces", &ns, &Restored::default(), &[], &mapping)
        else {
            panic!()
        };
        assert_eq!(object["metadata"]["name"], "payments-restored");
        // A RoleBinding's ServiceAccount subjects follow it into the new namespace.
        let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b", "namespace": "payments"},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "payments"}, {"kind": "User", "name": "alice"}]});
        let Decision::Apply { object, .. } = decide(
            "rolebindings.rbac.authorization.k8s.io",
            &rb,
            &Restored::default(),
            &[],
            &mapping,
        ) else {
            panic!()
        };
        assert_eq!(object["metadata"]["namespace"], "payments-restored");
        assert_eq!(object["subjects"][0]["namespace"], "payments-restored");
        assert_eq!(object["subjects"][1].get("namespace"), None);
        // Regression: a mapped restore rewrote a shared ClusterRoleBinding's subjects, taking
        // permissions away from the original namespace. It is left as it was.
        let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "b"},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "payments"}]});
        let Decision::Apply { object, .. } = decide(
            "clusterrolebindings.rbac.authorization.k8s.io",
            &crb,
            &Restored::default(),
            &[],
            &mapping,
        ) else {
            panic!()
        };
        assert_eq!(object["subjects"][0]["namespace"], "payments");
        // The mapped Namespace's own name label follows its name.
        let labelled = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "payments", "labels": {"kubernetes.io/metadata.name": "payments", "team": "a"}}});
        let Decision::Apply { object, .. } =
            decide("namespaces", &labelled, &Restored::default(), &[], &mapping)
        else {
            panic!()
        };
        assert_eq!(
            object["metadata"]["labels"],
            json!({"kubernetes.io/metadata.name": "payments-restored", "team": "a"})
        );
        assert_eq!(mapping.map("other"), "other");
    }

    #[test]
    fn bad_namespace_mappings_are_refused() {
        // Regression: two namespaces mapped into one were accepted, and one's objects were
        // compared with (or written over) the other's.
        for bad in [
            &["payments"][..],
            &["a=B"],
            &["a="],
            &["a=x", "a=y"],
            &["a=m", "b=m"],
            &["a=a"],
        ] {
            let pairs: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(NamespaceMapping::parse(&pairs).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_configured_skip_list_wins() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "a"}});
        assert_eq!(
            decide(
                "deployments.apps",
                &d,
                &Restored::default(),
                &["deployments.apps".into()],
                &no_mapping()
            ),
            Decision::Skip(Skip::Configured {
                resource: "deployments.apps".into()
            })
        );
    }
}
