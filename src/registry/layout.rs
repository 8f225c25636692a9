//! Where the API server keeps each object in etcd (pure: no I/O). A key is
//! `<prefix>/<resource>/<namespace>/<name>` or `<prefix>/<resource>/<name>`, where `<prefix>`
//! is kube-apiserver's `--etcd-prefix` (`/registry` unless changed) and `<resource>` is
//! usually the plural resource name without its group. The exceptions are the API server's own
//! storage prefixes for a few built-in resources (services under `services/specs`, endpoints
//! under `services/endpoints`, nodes under `minions`, replication controllers under
//! `controllers`, ingresses under `ingress`), and resources whose prefix carries their group:
//! `apiextensions.k8s.io/customresourcedefinitions`, `apiregistration.k8s.io/apiservices` and
//! every custom resource (`<group>/<plural>`; a group always contains a dot).
//!
//! The group of a built-in resource is not in its key; the stored value names it
//! (apiVersion). [`builtin_group`] knows the groups of built-in resources for the objects whose
//! value cannot be read (encrypted at rest without the key), so they can still be named.

/// The API server's default `--etcd-prefix`.
pub const DEFAULT_PREFIX: &str = "/registry";

/// What one etcd key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    /// An object of a resource.
    Object(Location<'a>),
    /// Something the API server keeps that is not an object (allocation ranges, master
    /// leases, …): skipped, and counted under this name.
    NotObject(&'static str),
    /// A key outside the prefix, or of a shape no object has: skipped and counted.
    Foreign,
}

/// Who an object is, as its key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location<'a> {
    /// The group, when the key carries it (custom resources, CRDs, APIServices); `None` for
    /// built-in resources, whose group is in the stored value.
    pub group: Option<&'a str>,
    /// The plural resource name, e.g. `services` for keys under `services/specs`.
    pub plural: &'a str,
    /// The namespace, for namespaced objects.
    pub namespace: Option<&'a str>,
    /// The object's name.
    pub name: &'a str,
}

/// Storage prefixes that are not the resource's plural name: (prefix, plural).
const RENAMED: &[(&str, &str)] = &[
    ("services/specs", "services"),
    ("services/endpoints", "endpoints"),
    ("minions", "nodes"),
    ("controllers", "replicationcontrollers"),
    ("ingress", "ingresses"),
    ("podsecuritypolicy", "podsecuritypolicies"),
];

/// Keys the API server writes that are not objects: (first segment, what they are).
const NOT_OBJECTS: &[(&str, &str)] = &[
    ("ranges", "allocation ranges"),
    ("masterleases", "master leases"),
    ("health", "health checks"),
];

/// What `key` holds, under `prefix` (e.g. `/registry`).
pub fn parse<'a>(key: &'a str, prefix: &str) -> Key<'a> {
    let prefix = prefix.trim_end_matches('/');
    let Some(rest) = key
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .filter(|r| !r.is_empty())
    else {
        return Key::Foreign;
    };
    let segments: Vec<&'a str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Key::Foreign;
    }
    if let Some((_, what)) = NOT_OBJECTS.iter().find(|(first, _)| *first == segments[0]) {
        return Key::NotObject(what);
    }
    // A two-segment storage prefix of a built-in resource.
    if segments.len() >= 3 {
        let two = &rest[..segments[0].len() + 1 + segments[1].len()];
        if let Some((_, plural)) = RENAMED.iter().find(|(p, _)| *p == two) {
            return located(None, plural, &segments[2..]);
        }
    }
    // A prefix with its group: CRDs, APIServices and custom resources.
    if segments[0].contains('.') {
        return match segments.len() {
            3 | 4 => located(Some(segments[0]), segments[1], &segments[2..]),
            _ => Key::Foreign,
        };
    }
    let plural = RENAMED
        .iter()
        .find(|(p, _)| *p == segments[0])
        .map_or(segments[0], |(_, plural)| plural);
    located(None, plural, &segments[1..])
}

fn located<'a>(group: Option<&'a str>, plural: &'a str, rest: &[&'a str]) -> Key<'a> {
    match rest {
        [name] => Key::Object(Location {
            group,
            plural,
            namespace: None,
            name,
        }),
        [namespace, name] => Key::Object(Location {
            group,
            plural,
            namespace: Some(namespace),
            name,
        }),
        _ => Key::Foreign,
    }
}

/// The group of a built-in resource by its plural name (`""` for the core group), for naming
/// objects whose value cannot be read; `None` for a resource this table does not know.
pub fn builtin_group(plural: &str) -> Option<&'static str> {
    const GROUPS: &[(&str, &[&str])] = &[
        (
            "",
            &[
                "pods",
                "services",
                "endpoints",
                "nodes",
                "namespaces",
                "configmaps",
                "secrets",
                "serviceaccounts",
                "persistentvolumes",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "events",
                "limitranges",
                "resourcequotas",
                "podtemplates",
            ],
        ),
        (
            "apps",
            &[
                "deployments",
                "replicasets",
                "statefulsets",
                "daemonsets",
                "controllerrevisions",
            ],
        ),
        ("batch", &["jobs", "cronjobs"]),
        ("autoscaling", &["horizontalpodautoscalers"]),
        ("policy", &["poddisruptionbudgets", "podsecuritypolicies"]),
        (
            "rbac.authorization.k8s.io",
            &[
                "roles",
                "rolebindings",
                "clusterroles",
                "clusterrolebindings",
            ],
        ),
        (
            "networking.k8s.io",
            &[
                "ingresses",
                "ingressclasses",
                "networkpolicies",
                "ipaddresses",
                "servicecidrs",
            ],
        ),
        (
            "storage.k8s.io",
            &[
                "storageclasses",
                "volumeattachments",
                "csinodes",
                "csidrivers",
                "csistoragecapacities",
                "volumeattributesclasses",
            ],
        ),
        ("scheduling.k8s.io", &["priorityclasses"]),
        ("coordination.k8s.io", &["leases", "leasecandidates"]),
        ("discovery.k8s.io", &["endpointslices"]),
        ("node.k8s.io", &["runtimeclasses"]),
        (
            "certificates.k8s.io",
            &["certificatesigningrequests", "clustertrustbundles"],
        ),
        (
            "admissionregistration.k8s.io",
            &[
                "mutatingwebhookconfigurations",
                "validatingwebhookconfigurations",
                "validatingadmissionpolicies",
                "validatingadmissionpolicybindings",
                "mutatingadmissionpolicies",
                "mutatingadmissionpolicybindings",
            ],
        ),
        (
            "flowcontrol.apiserver.k8s.io",
            &["flowschemas", "prioritylevelconfigurations"],
        ),
        ("internal.apiserver.k8s.io", &["storageversions"]),
        (
            "resource.k8s.io",
            &[
                "resourceclaims",
                "resourceclaimtemplates",
                "deviceclasses",
                "resourceslices",
            ],
        ),
        ("storagemigration.k8s.io", &["storageversionmigrations"]),
    ];
    GROUPS
        .iter()
        .find(|(_, plurals)| plurals.contains(&plural))
        .map(|(group, _)| *group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object<'a>(
        group: Option<&'a str>,
        plural: &'a str,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> Key<'a> {
        Key::Object(Location {
            group,
            plural,
            namespace,
            name,
        })
    }

    #[test]
    fn plain_resources_are_namespaced_or_not_by_their_segments() {
        assert_eq!(
            parse("/registry/configmaps/team-a/settings", DEFAULT_PREFIX),
            object(None, "configmaps", Some("team-a"), "settings")
        );
        assert_eq!(
            parse("/registry/namespaces/team-a", DEFAULT_PREFIX),
            object(None, "namespaces", None, "team-a")
        );
        assert_eq!(
            parse("/registry/clusterroles/system:basic-user", DEFAULT_PREFIX),
            object(None, "clusterroles", None, "system:basic-user")
        );
    }

    #[test]
    fn the_api_servers_own_prefixes_map_to_their_resources() {
        assert_eq!(
            parse(
                "/registry/services/specs/default/kubernetes",
                DEFAULT_PREFIX
            ),
            object(None, "services", Some("default"), "kubernetes")
        );
        assert_eq!(
            parse(
                "/registry/services/endpoints/default/kubernetes",
                DEFAULT_PREFIX
            ),
            object(None, "endpoints", Some("default"), "kubernetes")
        );
        assert_eq!(
            parse("/registry/minions/node-1", DEFAULT_PREFIX),
            object(None, "nodes", None, "node-1")
        );
        assert_eq!(
            parse("/registry/controllers/ns/rc", DEFAULT_PREFIX),
            object(None, "replicationcontrollers", Some("ns"), "rc")
        );
        assert_eq!(
            parse("/registry/ingress/ns/web", DEFAULT_PREFIX),
            object(None, "ingresses", Some("ns"), "web")
        );
    }

    #[test]
    fn prefixes_with_a_group_are_crds_apiservices_and_custom_resources() {
        assert_eq!(
            parse(
                "/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com",
                DEFAULT_PREFIX
            ),
            object(
                Some("apiextensions.k8s.io"),
                "customresourcedefinitions",
                None,
                "widgets.example.com"
            )
        );
        assert_eq!(
            parse(
                "/registry/apiregistration.k8s.io/apiservices/v1.apps",
                DEFAULT_PREFIX
            ),
            object(
                Some("apiregistration.k8s.io"),
                "apiservices",
                None,
                "v1.apps"
            )
        );
        assert_eq!(
            parse("/registry/example.com/widgets/team-a/w1", DEFAULT_PREFIX),
            object(Some("example.com"), "widgets", Some("team-a"), "w1")
        );
        assert_eq!(
            parse("/registry/example.com/clusterwidgets/c1", DEFAULT_PREFIX),
            object(Some("example.com"), "clusterwidgets", None, "c1")
        );
    }

    #[test]
    fn keys_that_are_not_objects_are_named_or_foreign() {
        assert_eq!(
            parse("/registry/ranges/serviceips", DEFAULT_PREFIX),
            Key::NotObject("allocation ranges")
        );
        assert_eq!(
            parse("/registry/masterleases/10.0.0.1", DEFAULT_PREFIX),
            Key::NotObject("master leases")
        );
        for foreign in [
            "compact_rev_key",
            "/registry",
            "/registry/",
            "/registryx/pods/a/b",
            "/other/pods/a/b",
            "/registry/pods/a/b/c",
            "/registry/pods//b",
            "/registry/example.com/widgets",
        ] {
            assert_eq!(parse(foreign, DEFAULT_PREFIX), Key::Foreign, "{foreign}");
        }
    }

    #[test]
    fn another_etcd_prefix_is_honoured_with_or_without_a_trailing_slash() {
        for prefix in ["/k3s", "/k3s/"] {
            assert_eq!(
                parse("/k3s/secrets/kube-system/token", prefix),
                object(None, "secrets", Some("kube-system"), "token")
            );
            assert_eq!(parse("/registry/secrets/a/b", prefix), Key::Foreign);
        }
    }

    #[test]
    fn builtin_groups_name_unreadable_objects() {
        assert_eq!(builtin_group("secrets"), Some(""));
        assert_eq!(builtin_group("deployments"), Some("apps"));
        assert_eq!(
            builtin_group("clusterroles"),
            Some("rbac.authorization.k8s.io")
        );
        assert_eq!(builtin_group("widgets"), None);
    }
}
