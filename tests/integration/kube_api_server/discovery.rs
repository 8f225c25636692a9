//! Discovery over raw HTTP: `/version`, the legacy documents, aggregated discovery (v2 and
//! v2beta1) with its Content-Type, OpenAPI v3's fieldValidation hint, and CRD resources that
//! appear and disappear with their CRD.

use crate::support::kube_api::{KubeApi, Seed, widget_crd};
use serde_json::{Value, json};

use super::helpers::{assert_status, ok_json, post};

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                          application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                          application/json";

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|v| v[field].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn version_reports_a_kubernetes_version() {
    let api = KubeApi::start(Seed::Empty);
    let v = ok_json(&api.get_raw("/version"));
    assert_eq!(v["major"], "1");
    assert!(v["gitVersion"].as_str().unwrap().starts_with("v1."));
}

#[test]
fn legacy_discovery_lists_groups_resources_and_subresources() {
    let api = KubeApi::start(Seed::Empty);
    api.create(widget_crd()).unwrap();
    let core = ok_json(&api.get_raw("/api"));
    assert_eq!(core["kind"], "APIVersions");
    assert_eq!(core["versions"], json!(["v1"]));

    let groups = ok_json(&api.get_raw("/apis"));
    assert_eq!(groups["kind"], "APIGroupList");
    let group_names = names(&groups["groups"], "name");
    for g in [
        "apps",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "coordination.k8s.io",
        "example.com",
    ] {
        assert!(
            group_names.contains(&g.to_string()),
            "{g} missing from {group_names:?}"
        );
    }
    let example = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "example.com")
        .unwrap();
    assert_eq!(
        example["preferredVersion"]["groupVersion"],
        "example.com/v1"
    );

    let v1 = ok_json(&api.get_raw("/api/v1"));
    assert_eq!(v1["kind"], "APIResourceList");
    assert_eq!(v1["groupVersion"], "v1");
    let cm = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "configmaps")
        .unwrap();
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["singularName"], "configmap");
    assert_eq!(cm["namespaced"], true);
    assert_eq!(cm["shortNames"], json!(["cm"]));
    assert!(cm["verbs"].as_array().unwrap().contains(&json!("list")));
    let resources = names(&v1["resources"], "name");
    for r in [
        "namespaces",
        "secrets",
        "services",
        "serviceaccounts",
        "events",
        "nodes",
        "nodes/status",
    ] {
        assert!(
            resources.contains(&r.to_string()),
            "{r} missing from {resources:?}"
        );
    }
    let node = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "nodes")
        .unwrap();
    assert_eq!(node["namespaced"], false);

    let apps = ok_json(&api.get_raw("/apis/apps/v1"));
    assert_eq!(
        names(&apps["resources"], "name"),
        ["deployments", "deployments/status"]
    );
    let apps_group = ok_json(&api.get_raw("/apis/apps"));
    assert_eq!(apps_group["kind"], "APIGroup");

    let rbac = ok_json(&api.get_raw("/apis/rbac.authorization.k8s.io/v1"));
    assert_eq!(
        names(&rbac["resources"], "name"),
        [
            "clusterrolebindings",
            "clusterroles",
            "rolebindings",
            "roles"
        ]
    );
    let leases = ok_json(&api.get_raw("/apis/coordination.k8s.io/v1"));
    assert_eq!(leases["resources"][0]["name"], "leases");
    let widgets = ok_json(&api.get_raw("/apis/example.com/v1"));
    assert_eq!(
        names(&widgets["resources"], "name"),
        ["widgets", "widgets/status"]
    );
    assert_eq!(widgets["resources"][0]["shortNames"], json!(["wd"]));
    ok_json(&api.get_raw("/apis/example.com/v1beta1"));
}

#[test]
fn aggregated_discovery_answers_in_the_version_asked_for() {
    let api = KubeApi::start(Seed::Empty);
    api.create(widget_crd()).unwrap();
    for (accept, version) in [
        (AGGREGATED, "v2"),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
            "v2beta1",
        ),
    ] {
        for path in ["/api", "/apis"] {
            let r = api.request("GET", path, &[("Accept", accept)], b"");
            assert_eq!(r.status, 200);
            assert_eq!(
                r.header("content-type"),
                Some(format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList").as_str())
            );
            let doc = r.json();
            assert_eq!(doc["kind"], "APIGroupDiscoveryList");
            assert_eq!(doc["apiVersion"], format!("apidiscovery.k8s.io/{version}"));
            assert!(!doc["items"].as_array().unwrap().is_empty());
        }
    }
    let apis = api
        .request("GET", "/apis", &[("Accept", AGGREGATED)], b"")
        .json();
    let apps = apis["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "apps")
        .unwrap();
    let deploy = &apps["versions"][0]["resources"][0];
    assert_eq!(apps["versions"][0]["version"], "v1");
    assert_eq!(deploy["resource"], "deployments");
    assert_eq!(deploy["scope"], "Namespaced");
    assert_eq!(
        deploy["responseKind"],
        json!({ "group": "apps", "version": "v1", "kind": "Deployment" })
    );
    assert_eq!(deploy["subresources"][0]["subresource"], "status");
    let example = apis["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "example.com")
        .unwrap();
    assert_eq!(names(&example["versions"], "version"), ["v1", "v1beta1"]);

    let core = api
        .request("GET", "/api", &[("Accept", AGGREGATED)], b"")
        .json();
    let resources = names(&core["items"][0]["versions"][0]["resources"], "resource");
    assert!(
        resources.contains(&"configmaps".to_string()) && resources.contains(&"nodes".to_string())
    );
    // Without the aggregated media type, the legacy document comes back.
    assert_eq!(api.get_raw("/api").json()["kind"], "APIVersions");
}

#[test]
fn crd_resources_appear_and_disappear_with_their_crd() {
    let api = KubeApi::start(Seed::Empty);
    assert_status(&api.get_raw("/apis/example.org/v1"), 404, "NotFound");
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "gadgets.example.org" },
        "spec": { "group": "example.org", "scope": "Cluster",
                  "names": { "plural": "gadgets", "kind": "Gadget" },
                  "versions": [{ "name": "v1", "served": true, "storage": true }] }
    });
    let created = ok_json(&post(
        &api,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &crd,
    ));
    let conditions = names(&created["status"]["conditions"], "type");
    assert!(conditions.contains(&"Established".to_string()));
    let list = ok_json(&api.get_raw("/apis/example.org/v1"));
    assert_eq!(list["resources"][0]["name"], "gadgets");
    assert_eq!(list["resources"][0]["namespaced"], false);
    let gadget = json!({ "apiVersion": "example.org/v1", "kind": "Gadget", "metadata": { "name": "g1" }, "spec": { "x": 1 } });
    let g = ok_json(&post(&api, "/apis/example.org/v1/gadgets", &gadget));
    assert_eq!(g["metadata"]["generation"], 1);

    let r = api.request(
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.org",
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_status(&api.get_raw("/apis/example.org/v1"), 404, "NotFound");
    assert_status(
        &api.get_raw("/apis/example.org/v1/gadgets/g1"),
        404,
        "NotFound",
    );
    let groups = ok_json(&api.get_raw("/apis"));
    assert!(!names(&groups["groups"], "name").contains(&"example.org".to_string()));
}

#[test]
fn a_crd_whose_name_does_not_match_is_invalid() {
    let api = KubeApi::start(Seed::Empty);
    let mut crd = widget_crd();
    crd["metadata"]["name"] = json!("wrong.example.com");
    let r = post(
        &api,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &crd,
    );
    let s = assert_status(&r, 422, "Invalid");
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
}

#[test]
fn unknown_paths_and_watches_are_refused_with_status_objects() {
    let api = KubeApi::start(Seed::Empty);
    assert_status(&api.get_raw("/apis/nope.example/v1"), 404, "NotFound");
    assert_status(&api.get_raw("/api/v1/pods"), 404, "NotFound");
    assert_status(
        &api.get_raw("/api/v1/namespaces/default/configmaps/x/scale"),
        404,
        "NotFound",
    );
    assert_status(
        &api.get_raw("/api/v1/configmaps?watch=true"),
        405,
        "MethodNotAllowed",
    );
    assert_status(
        &api.request("POST", "/version", &[], b"{}"),
        405,
        "MethodNotAllowed",
    );
}

#[test]
fn openapi_v3_advertises_server_side_field_validation() {
    let api = KubeApi::start(Seed::Empty);
    let index = ok_json(&api.get_raw("/openapi/v3"));
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = ok_json(&api.get_raw(&url));
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
    assert!(names(&patch["parameters"], "name").contains(&"fieldValidation".to_string()));
}
