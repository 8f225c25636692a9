//! Test data: `seed_standard(n)` fills the server with a realistic spread of objects (three
//! application namespaces; ConfigMaps, Secrets with recognizable plaintext, Services,
//! Deployments with status, ServiceAccounts, Events, RBAC, Nodes, Leases, the
//! `widgets.example.com` CRD and its Widgets) and reports exactly what the store now holds.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::format::{base64_encode, now_rfc3339};
use super::store::State;
use super::writes::{create_internal, set_status_internal};

/// The plaintext every seeded Secret value starts with; a backup that leaks Secrets unencrypted
/// contains it (base64-decoded) or [`SeedSummary::secret_marker_base64`] (as stored).
/// 18 bytes, so its base64 form is a stable prefix of every encoded value.
pub const SECRET_MARKER: &str = "lifeboat-plaintext";

/// The application namespaces `seed_standard` creates.
pub const SEED_NAMESPACES: [&str; 3] = ["alpha", "beta", "gamma"];

const COLORS: [&str; 3] = ["red", "green", "blue"];

/// What the store holds after seeding (system objects included), for exact assertions.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedSummary {
    /// The namespaces created by the seeder.
    pub namespaces: Vec<String>,
    /// Object count per resource, keyed as tests name resources (`configmaps`,
    /// `deployments.apps`, `widgets.example.com`); resources with no objects are absent.
    pub counts: BTreeMap<String, usize>,
    /// The sum of `counts`.
    pub total: usize,
    /// [`SECRET_MARKER`].
    pub secret_marker: &'static str,
    /// The base64 prefix every seeded Secret `data` value starts with.
    pub secret_marker_base64: String,
}

/// The CRD the seeder installs: `widgets.example.com`, kind `Widget`, namespaced, served as
/// `v1` (storage, with a status subresource and printer columns) and `v1beta1`.
pub fn widget_crd() -> Value {
    let schema = json!({ "openAPIV3Schema": { "type": "object",
        "x-kubernetes-preserve-unknown-fields": true } });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.example.com" },
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget",
                       "listKind": "WidgetList", "shortNames": ["wd"], "categories": ["all"] },
            "versions": [
                { "name": "v1", "served": true, "storage": true, "schema": schema,
                  "subresources": { "status": {} },
                  "additionalPrinterColumns": [
                      { "name": "Size", "type": "integer", "jsonPath": ".spec.size" },
                      { "name": "Color", "type": "string", "jsonPath": ".spec.color" } ] },
                { "name": "v1beta1", "served": true, "storage": false, "schema": schema }
            ]
        }
    })
}

fn add(state: &mut State, obj: Value) -> Value {
    let what = format!("{} {}", obj["kind"], obj["metadata"]["name"]);
    create_internal(state, obj, "lifeboat-seed")
        .unwrap_or_else(|e| panic!("seeding {what} failed: {e}"))
}

/// Seeds `n` ConfigMaps, Secrets and Widgets per application namespace and `max(1, n/10)` of
/// the other namespaced kinds;
/// about `10.5 * n` objects in all (`n = 300` gives ~3,100).
pub(super) fn seed_standard(state: &mut State, n: usize) -> SeedSummary {
    let few = (n / 10).max(1);
    let now = now_rfc3339();
    if state.resolve("widgets.example.com").is_none() {
        add(state, widget_crd());
    }
    for i in 1..=3 {
        let node = format!("node-{i}");
        let obj = add(
            state,
            json!({ "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": node, "labels": { "kubernetes.io/hostname": node } },
            "spec": { "podCIDR": format!("10.244.{i}.0/24") } }),
        );
        let status = json!({ "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady" }],
            "nodeInfo": { "kubeletVersion": "v1.32.0" } });
        set_status_internal(state, &obj, status).expect("node status");
        add(
            state,
            json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": node, "namespace": "kube-node-lease" },
            "spec": { "holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": format!("{}.000000Z", now.trim_end_matches('Z')) } }),
        );
    }
    for i in 0..few.max(5) {
        let name = format!("seed:clusterrole-{i:03}");
        add(
            state,
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": name, "labels": { "lifeboat.test/seed": "standard" } },
            "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"] }] }),
        );
        add(
            state,
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": format!("seed:clusterrolebinding-{i:03}") },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name },
            "subjects": [{ "kind": "ServiceAccount", "name": "default", "namespace": "alpha" }] }),
        );
    }
    for ns in SEED_NAMESPACES {
        seed_namespace(state, ns, n, few, &now);
    }
    summarize(state)
}

fn seed_namespace(state: &mut State, ns: &str, n: usize, few: usize, now: &str) {
    add(
        state,
        json!({ "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": ns, "labels": { "lifeboat.test/seed": "standard" } } }),
    );
    let mut config_uids = Vec::new();
    for i in 0..n {
        let labels = json!({ "app": format!("app-{}", i % 10), "lifeboat.test/seed": "standard" });
        let cm = add(
            state,
            json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": format!("cm-{i:05}"), "namespace": ns, "labels": labels },
            "data": { "index": i.to_string(), "settings.yaml": format!("replicas: {}\nnamespace: {ns}\n", i % 5) } }),
        );
        config_uids.push(cm["metadata"]["uid"].clone());
        let secret = format!("{SECRET_MARKER}-{ns}-{i:05}");
        let mut obj = json!({ "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": format!("secret-{i:05}"), "namespace": ns, "labels": labels },
            "type": "Opaque",
            "data": { "password": base64_encode(secret.as_bytes()),
                      "username": base64_encode(format!("user-{i}").as_bytes()) } });
        if i % 50 == 49 {
            obj["type"] = json!("kubernetes.io/tls");
            obj["data"] = json!({ "tls.crt": base64_encode(format!("{secret}-crt").as_bytes()),
                                  "tls.key": base64_encode(format!("{secret}-key").as_bytes()) });
        }
        add(state, obj);
        let widget = add(
            state,
            json!({ "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": { "name": format!("widget-{i:05}"), "namespace": ns, "labels": labels },
            "spec": { "size": i % 7, "color": COLORS[i % 3] } }),
        );
        if i % 10 == 0 {
            set_status_internal(state, &widget, json!({ "phase": "Ready" }))
                .expect("widget status");
        }
    }
    for i in 0..few {
        let app = format!("app-{}", i % 10);
        add(
            state,
            json!({ "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": format!("sa-{i:03}"), "namespace": ns } }),
        );
        add(
            state,
            json!({ "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": format!("svc-{i:03}"), "namespace": ns },
            "spec": { "selector": { "app": app },
                      "ports": [{ "name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP" }] } }),
        );
        let deploy = add(
            state,
            json!({ "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": format!("deploy-{i:03}"), "namespace": ns, "labels": { "app": app } },
            "spec": { "replicas": 2, "selector": { "matchLabels": { "app": app } },
                      "template": { "metadata": { "labels": { "app": app } },
                                    "spec": { "containers": [{ "name": "main", "image": "registry.example/app:1.0" }] } } } }),
        );
        set_status_internal(
            state,
            &deploy,
            json!({ "observedGeneration": 1, "replicas": 2,
            "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2 }),
        )
        .expect("deployment status");
        add(
            state,
            json!({ "apiVersion": "v1", "kind": "Event",
            "metadata": { "name": format!("cm-{i:05}.seed{i:04}"), "namespace": ns },
            "involvedObject": { "apiVersion": "v1", "kind": "ConfigMap", "name": format!("cm-{i:05}"),
                                "namespace": ns, "uid": config_uids.get(i).cloned().unwrap_or_default() },
            "reason": "Seeded", "message": "created by the lifeboat test seeder", "type": "Normal",
            "count": 1, "firstTimestamp": now, "lastTimestamp": now,
            "source": { "component": "lifeboat-seed" } }),
        );
    }
    for i in 0..2 {
        add(
            state,
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": format!("role-{i}"), "namespace": ns },
            "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] }] }),
        );
        add(
            state,
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": format!("rolebinding-{i}"), "namespace": ns },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role-{i}") },
            "subjects": [{ "kind": "ServiceAccount", "name": "default", "namespace": ns }] }),
        );
    }
}

/// Counts what the store holds now.
pub(super) fn summarize(state: &State) -> SeedSummary {
    let counts: BTreeMap<String, usize> = state
        .defs()
        .map(|d| (d.key(), state.count(d)))
        .filter(|(_, c)| *c > 0)
        .collect();
    SeedSummary {
        namespaces: SEED_NAMESPACES.iter().map(|s| s.to_string()).collect(),
        total: counts.values().sum(),
        counts,
        secret_marker: SECRET_MARKER,
        secret_marker_base64: base64_encode(SECRET_MARKER.as_bytes()),
    }
}
