//! The real kubectl against the test server: version, api-resources, `get -A` (Table output,
//! chunked), server-side apply creating and then updating objects, client-side apply with
//! `--dry-run=server`, and delete. Skipped with a printed reason when kubectl is missing,
//! failed instead under CI=true.

use crate::support::kube_api::{KubeApi, Seed};
use serde_json::json;

use super::helpers::Kubectl;

/// Data lines of a `kubectl get` table (the header dropped).
fn rows(table: &str) -> Vec<&str> {
    table
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn kubectl_version_and_api_resources() {
    let api = KubeApi::start(Seed::Standard(5));
    let Some(k) = Kubectl::for_server(&api) else {
        return;
    };
    let version = k.json(&["version", "-o", "json"]);
    eprintln!("kubectl client {}", version["clientVersion"]["gitVersion"]);
    assert_eq!(version["serverVersion"]["major"], "1");

    let out = k.ok(&["api-resources"]);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from kubectl api-resources:\n{out}"))
            .to_string()
    };
    assert!(line("configmaps").contains(" cm ") && line("configmaps").contains("ConfigMap"));
    assert!(line("nodes").contains("false"));
    assert!(line("deployments").contains("apps/v1"));
    assert!(line("clusterroles").contains("rbac.authorization.k8s.io/v1"));
    assert!(line("leases").contains("coordination.k8s.io/v1"));
    assert!(line("customresourcedefinitions").contains("apiextensions.k8s.io/v1"));
    let widgets = line("widgets");
    assert!(
        widgets.contains("example.com/v1") && widgets.contains("wd") && widgets.contains("Widget"),
        "{widgets}"
    );
    // kubectl asked for aggregated discovery and got it.
    let asked = api.requests();
    let discovery = asked
        .iter()
        .find(|r| r.path == "/apis")
        .expect("kubectl fetched /apis");
    assert!(
        discovery.accept.contains("as=APIGroupDiscoveryList"),
        "{discovery:?}"
    );
    assert!(
        !asked.iter().any(|r| r.path.starts_with("/apis/apps/v1")),
        "aggregated discovery made per-group requests unnecessary"
    );

    let listable = k.ok(&[
        "api-resources",
        "--verbs=list",
        "--namespaced=false",
        "-o",
        "name",
    ]);
    for name in [
        "namespaces",
        "nodes",
        "clusterroles.rbac.authorization.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
    ] {
        assert!(
            listable.lines().any(|l| l == name),
            "{name} missing from:\n{listable}"
        );
    }
}

#[test]
fn kubectl_get_all_namespaces_prints_every_object() {
    let api = KubeApi::start(Seed::Standard(40));
    let Some(k) = Kubectl::for_server(&api) else {
        return;
    };
    let cms = k.ok(&["get", "configmaps", "-A"]);
    assert!(
        cms.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["NAMESPACE", "NAME", "DATA", "AGE"]),
        "{cms}"
    );
    assert_eq!(rows(&cms).len(), api.count("configmaps"));
    assert!(
        rows(&cms)
            .iter()
            .any(|r| r.split_whitespace().take(3).eq(["gamma", "cm-00039", "2"])),
        "{cms}"
    );

    let widgets = k.ok(&["get", "widgets", "-A"]);
    assert!(
        widgets.lines().next().unwrap().split_whitespace().eq([
            "NAMESPACE",
            "NAME",
            "SIZE",
            "COLOR",
            "AGE"
        ]),
        "{widgets}"
    );
    assert_eq!(rows(&widgets).len(), 120);
    // Chunked: kubectl follows continue tokens across pages.
    let chunked = k.ok(&["get", "wd", "-A", "--chunk-size=7", "-o", "name"]);
    assert_eq!(chunked.lines().count(), 120);
    let pages = api
        .requests()
        .iter()
        .filter(|r| r.path == "/apis/example.com/v1/widgets" && r.query.contains("continue="))
        .count();
    assert_eq!(pages, 120 / 7, "kubectl asked for every further page");
    let json = k.json(&["get", "secrets", "-n", "alpha", "-o", "json"]);
    assert_eq!(json["items"].as_array().unwrap().len(), 40);
    assert_eq!(
        json["items"][0]["kind"], "Secret",
        "kubectl fills in item types"
    );
}

const MANIFEST: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-settings
  namespace: alpha
  labels:
    app: lifeboat
data:
  mode: blue
  retries: \"3\"
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: applied-widget
  namespace: alpha
spec:
  size: 5
  color: red
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: applied-deploy
  namespace: alpha
spec:
  replicas: 2
  selector:
    matchLabels: {app: applied}
  template:
    metadata:
      labels: {app: applied}
    spec:
      containers:
      - name: main
        image: registry.example/app:1
";

#[test]
fn kubectl_server_side_apply_creates_then_updates() {
    let api = KubeApi::start(Seed::Standard(3));
    let Some(k) = Kubectl::for_server(&api) else {
        return;
    };
    let file = k.write("manifest.yaml", MANIFEST);
    let file = file.to_str().unwrap();
    let out = k.ok(&["apply", "--server-side", "-f", file]);
    assert!(
        out.contains("configmap/app-settings serverside-applied"),
        "{out}"
    );
    assert!(
        out.contains("widget.example.com/applied-widget serverside-applied"),
        "{out}"
    );
    assert!(
        out.contains("deployment.apps/applied-deploy serverside-applied"),
        "{out}"
    );
    let created = k.json(&[
        "get",
        "configmap",
        "app-settings",
        "-n",
        "alpha",
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    assert_eq!(created["data"]["mode"], "blue");
    assert_eq!(
        created["metadata"]["managedFields"][0]["manager"],
        "kubectl"
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["operation"],
        "Apply"
    );
    let apply_request = api
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(apply_request.content_type, "application/apply-patch+yaml");
    assert!(
        apply_request.body.starts_with('{'),
        "kubectl sends JSON as the apply body: {}",
        apply_request.body
    );
    assert!(
        apply_request.query.contains("fieldManager=kubectl")
            && apply_request.query.contains("fieldValidation=Strict")
    );

    let changed = MANIFEST
        .replace("mode: blue", "mode: green")
        .replace("  retries: \"3\"\n", "")
        .replace("size: 5", "size: 6")
        .replace("replicas: 2", "replicas: 4");
    k.write("manifest.yaml", &changed);
    k.ok(&["apply", "--server-side", "-f", file]);
    let updated = k.json(&[
        "get",
        "configmap",
        "app-settings",
        "-n",
        "alpha",
        "-o",
        "json",
    ]);
    assert_eq!(
        updated["data"],
        json!({ "mode": "green" }),
        "applied fields change and dropped fields go"
    );
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    let widget = k.json(&[
        "get",
        "widget",
        "applied-widget",
        "-n",
        "alpha",
        "-o",
        "json",
    ]);
    assert_eq!(widget["spec"]["size"], 6);
    assert_eq!(widget["metadata"]["generation"], 2);
    let deploy = k.json(&[
        "get",
        "deploy",
        "applied-deploy",
        "-n",
        "alpha",
        "-o",
        "json",
    ]);
    assert_eq!(deploy["spec"]["replicas"], 4);

    // Another manager's change to the same field conflicts, and --force-conflicts takes it.
    k.ok(&[
        "patch",
        "configmap",
        "app-settings",
        "-n",
        "alpha",
        "--type=merge",
        "-p",
        r#"{"data":{"mode":"red"}}"#,
    ]);
    let out = k.run(&["apply", "--server-side", "-f", file]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("conflict"),
        "{stderr}"
    );
    k.ok(&["apply", "--server-side", "--force-conflicts", "-f", file]);
    let forced = k.json(&[
        "get",
        "configmap",
        "app-settings",
        "-n",
        "alpha",
        "-o",
        "json",
    ]);
    assert_eq!(forced["data"]["mode"], "green");
}

#[test]
fn kubectl_apply_dry_run_server_stores_nothing() {
    let api = KubeApi::start(Seed::Standard(3));
    let Some(k) = Kubectl::for_server(&api) else {
        return;
    };
    let file = k.write("manifest.yaml", MANIFEST);
    let file = file.to_str().unwrap();
    let rv = api.resource_version();
    let out = k.ok(&["apply", "--dry-run=server", "-f", file]);
    assert!(
        out.contains("configmap/app-settings created (server dry run)"),
        "{out}"
    );
    assert_eq!(api.resource_version(), rv);
    assert!(
        api.get("configmaps", Some("alpha"), "app-settings")
            .is_none()
    );
    let out = k.ok(&["apply", "--server-side", "--dry-run=server", "-f", file]);
    assert!(out.contains("serverside-applied (server dry run)"), "{out}");
    assert!(
        api.get("widgets.example.com", Some("alpha"), "applied-widget")
            .is_none()
    );

    // Client-side apply for real, then a dry-run change: the server computes it, keeps the old.
    k.ok(&["apply", "-f", file]);
    k.write(
        "manifest.yaml",
        &MANIFEST.replace("mode: blue", "mode: dry"),
    );
    let out = k.ok(&["apply", "--dry-run=server", "-f", file, "-o", "json"]);
    assert!(out.contains("\"mode\": \"dry\""), "{out}");
    let stored = api
        .get("configmaps", Some("alpha"), "app-settings")
        .unwrap();
    assert_eq!(stored["data"]["mode"], "blue");
    assert!(
        stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
}

#[test]
fn kubectl_create_delete_and_errors() {
    let api = KubeApi::start(Seed::Empty);
    let Some(k) = Kubectl::for_server(&api) else {
        return;
    };
    k.ok(&["create", "namespace", "team"]);
    k.ok(&[
        "create",
        "configmap",
        "c",
        "-n",
        "team",
        "--from-literal=a=1",
    ]);
    let out = k.run(&[
        "create",
        "configmap",
        "c",
        "-n",
        "team",
        "--from-literal=a=1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("configmaps \"c\" already exists"),
        "{stderr}"
    );
    // kubectl's generators POST protobuf; the server decodes these kinds.
    k.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "team",
        "--from-literal=password=hunter2",
        "--type=example.com/basic",
    ]);
    k.ok(&["create", "serviceaccount", "robot", "-n", "team"]);
    let secret = api.get("secrets", Some("team"), "s").unwrap();
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    assert_eq!(secret["type"], "example.com/basic");
    let cm = api.get("configmaps", Some("team"), "c").unwrap();
    assert_eq!(cm["data"], json!({ "a": "1" }));
    assert_eq!(
        cm["metadata"]["managedFields"][0]["manager"],
        "kubectl-create"
    );
    let out = k.run(&["create", "deployment", "web", "-n", "team", "--image=nginx"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("decodes protobuf only for"),
        "{stderr}"
    );
    let out = k.run(&["get", "configmap", "nope", "-n", "team"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Error from server (NotFound): configmaps \"nope\" not found"),
        "{stderr}"
    );
    assert_eq!(
        k.ok(&["get", "sa", "-n", "team", "-o", "name"]),
        "serviceaccount/default\nserviceaccount/robot\n"
    );
    k.ok(&["delete", "configmap", "c", "-n", "team"]);
    k.ok(&["delete", "namespace", "team"]);
    assert!(
        k.ok(&["get", "ns", "-o", "name"])
            .lines()
            .all(|l| l != "namespace/team")
    );
}

/// `restore resources --apply` waits for a restored CRD's Established condition before its
/// custom resources: the real kubectl must read the condition the way lifeboat does, and a
/// server-side-applied CRD must serve its resource at once.
#[test]
fn kubectl_sees_a_server_side_applied_crd_established_and_serving() {
    let api = KubeApi::start(Seed::Empty);
    let Some(k) = Kubectl::for_server(&api) else {
        return;
    };
    let crd = k.write(
        "crd.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: gadgets.example.org\nspec:\n  group: example.org\n  scope: Namespaced\n  names:\n    plural: gadgets\n    singular: gadget\n    kind: Gadget\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n",
    );
    let out = k.ok(&["apply", "--server-side", "-f", crd.to_str().unwrap()]);
    assert!(out.contains("serverside-applied"), "{out}");
    let established = k.ok(&[
        "get",
        "crd",
        "gadgets.example.org",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
    ]);
    assert_eq!(established.trim(), "True");
    let gadget = k.write(
        "gadget.yaml",
        "apiVersion: example.org/v1\nkind: Gadget\nmetadata:\n  name: g1\n  namespace: default\nspec:\n  size: 3\n",
    );
    let out = k.ok(&["apply", "--server-side", "-f", gadget.to_str().unwrap()]);
    assert!(
        out.contains("gadget.example.org/g1 serverside-applied"),
        "{out}"
    );
    let listed = k.ok(&["get", "gadgets", "-n", "default", "-o", "name"]);
    assert_eq!(listed.trim(), "gadget.example.org/g1");
}
