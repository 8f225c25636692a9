//! Writes over raw HTTP: create/get/update/delete with their Status errors, resourceVersion
//! preconditions (the Lease path leader election takes), the status subresource and
//! generation, merge/strategic/JSON patches, dry run, finalizers and namespace deletion.

use crate::support::kube_api::{KubeApi, Seed};
use serde_json::json;

use super::helpers::{assert_status, ok_json, post, put, send};

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn create_get_update_delete_round_trip() {
    let api = KubeApi::start(Seed::Empty);
    let before = api.resource_version();
    let r = post(
        &api,
        CMS,
        &json!({ "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "one" }, "data": { "k": "v" } }),
    );
    assert_eq!(r.status, 201);
    let created = r.json();
    let meta = &created["metadata"];
    assert_eq!(meta["namespace"], "default");
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(
        meta["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > before
    );
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(meta["managedFields"][0]["operation"], "Update");
    assert!(
        meta.get("generation").is_none(),
        "ConfigMaps have no generation"
    );

    let got = ok_json(&api.get_raw(&format!("{CMS}/one")));
    assert_eq!(got["kind"], "ConfigMap");
    assert_eq!(got["data"]["k"], "v");

    let mut stale = got.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["data"]["k"] = json!("stale");
    let s = assert_status(&put(&api, &format!("{CMS}/one"), &stale), 409, "Conflict");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );

    let mut fresh = got.clone();
    fresh["data"]["k"] = json!("new");
    let updated = ok_json(&put(&api, &format!("{CMS}/one"), &fresh));
    assert_eq!(updated["data"]["k"], "new");
    assert_eq!(updated["metadata"]["uid"], got["metadata"]["uid"]);
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        got["metadata"]["resourceVersion"]
    );
    // A write that changes nothing keeps the resourceVersion.
    let same = ok_json(&put(&api, &format!("{CMS}/one"), &updated));
    assert_eq!(
        same["metadata"]["resourceVersion"],
        updated["metadata"]["resourceVersion"]
    );

    let r = api.request("DELETE", &format!("{CMS}/one"), &[], b"");
    let s = ok_json(&r);
    assert_eq!(
        (s["kind"].as_str(), s["status"].as_str()),
        (Some("Status"), Some("Success"))
    );
    assert_eq!(s["details"]["uid"], got["metadata"]["uid"]);
    let s = assert_status(&api.get_raw(&format!("{CMS}/one")), 404, "NotFound");
    assert_eq!(s["message"], "configmaps \"one\" not found");
    assert_eq!(s["details"], json!({ "name": "one", "kind": "configmaps" }));
    assert_status(
        &api.request("DELETE", &format!("{CMS}/one"), &[], b""),
        404,
        "NotFound",
    );
}

#[test]
fn creates_are_checked_like_a_real_server() {
    let api = KubeApi::start(Seed::Empty);
    let cm = json!({ "metadata": { "name": "dup" } });
    assert_eq!(post(&api, CMS, &cm).status, 201);
    let s = assert_status(&post(&api, CMS, &cm), 409, "AlreadyExists");
    assert_eq!(s["message"], "configmaps \"dup\" already exists");
    let s = assert_status(
        &post(&api, "/api/v1/namespaces/missing/configmaps", &cm),
        404,
        "NotFound",
    );
    assert_eq!(s["message"], "namespaces \"missing\" not found");
    let exported = json!({ "metadata": { "name": "exported", "resourceVersion": "12" } });
    assert_status(&post(&api, CMS, &exported), 500, "InternalError");
    assert_status(
        &post(&api, CMS, &json!({ "metadata": { "name": "Bad_Name" } })),
        422,
        "Invalid",
    );
    assert_status(
        &post(
            &api,
            CMS,
            &json!({ "apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": { "name": "x" } }),
        ),
        400,
        "BadRequest",
    );
    assert_status(
        &post(
            &api,
            CMS,
            &json!({ "metadata": { "name": "x", "namespace": "kube-system" } }),
        ),
        400,
        "BadRequest",
    );
    let generated = ok_json(&post(
        &api,
        CMS,
        &json!({ "metadata": { "generateName": "gen-" } }),
    ));
    assert!(
        generated["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("gen-")
    );
    assert_eq!(generated["metadata"]["name"].as_str().unwrap().len(), 9);
    let deploy = json!({ "metadata": { "name": "d" }, "spec": { "template": {} } });
    assert_status(
        &post(
            &api,
            "/apis/apps/v1/namespaces/default/deployments",
            &deploy,
        ),
        422,
        "Invalid",
    );
    assert_status(
        &api.request("POST", "/api/v1/configmaps", &[], b"{}"),
        405,
        "MethodNotAllowed",
    );
}

#[test]
fn leases_take_updates_with_resource_version_preconditions() {
    let api = KubeApi::start(Seed::Empty);
    let path = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
    let lease = json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "lifeboat" },
        "spec": { "holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "2024-01-01T00:00:00.000000Z" } });
    let created = ok_json(&post(&api, path, &lease));
    assert_status(&post(&api, path, &lease), 409, "AlreadyExists");
    let mut take = created.clone();
    take["spec"]["holderIdentity"] = json!("b");
    let taken = ok_json(&put(&api, &format!("{path}/lifeboat"), &take));
    assert_eq!(taken["spec"]["holderIdentity"], "b");
    // The loser still holds the old resourceVersion: its update conflicts.
    let mut late = created.clone();
    late["spec"]["holderIdentity"] = json!("c");
    let s = assert_status(
        &put(&api, &format!("{path}/lifeboat"), &late),
        409,
        "Conflict",
    );
    assert_eq!(s["details"]["group"], "coordination.k8s.io");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("leases.coordination.k8s.io \"lifeboat\"")
    );
    assert_status(
        &put(
            &api,
            &format!("{path}/missing"),
            &json!({ "metadata": { "name": "missing" } }),
        ),
        404,
        "NotFound",
    );
}

#[test]
fn status_is_a_subresource_and_generation_tracks_spec() {
    let api = KubeApi::start(Seed::Empty);
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let deploy = json!({ "metadata": { "name": "web", "labels": { "app": "web" } },
        "spec": { "selector": { "matchLabels": { "app": "web" } },
                  "template": { "metadata": { "labels": { "app": "web" } },
                                "spec": { "containers": [{ "name": "c", "image": "nginx:1" }] } } },
        "status": { "replicas": 99 } });
    let created = ok_json(&post(&api, path, &deploy));
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["spec"]["replicas"], 1, "defaulted");
    assert!(
        created.get("status").is_none(),
        "status is dropped on create"
    );

    let with_status = ok_json(&put(
        &api,
        &format!("{path}/web/status"),
        &json!({ "metadata": { "name": "web" }, "status": { "replicas": 1, "readyReplicas": 1 }, "spec": { "replicas": 5 } }),
    ));
    assert_eq!(with_status["status"]["readyReplicas"], 1);
    assert_eq!(
        with_status["spec"]["replicas"], 1,
        "a status write does not change spec"
    );
    assert_eq!(with_status["metadata"]["generation"], 1);

    let mut scaled = with_status.clone();
    scaled["spec"]["replicas"] = json!(3);
    scaled["status"] = json!({ "replicas": 0 });
    let scaled = ok_json(&put(&api, &format!("{path}/web"), &scaled));
    assert_eq!(scaled["metadata"]["generation"], 2);
    assert_eq!(
        scaled["status"]["readyReplicas"], 1,
        "a main-resource write does not change status"
    );

    let labelled = ok_json(&send(
        &api,
        "PATCH",
        &format!("{path}/web"),
        "application/merge-patch+json",
        &json!({ "metadata": { "labels": { "tier": "front" } } }),
    ));
    assert_eq!(
        labelled["metadata"]["generation"], 2,
        "metadata changes do not bump generation"
    );
    let status = ok_json(&api.get_raw(&format!("{path}/web/status")));
    assert_eq!(status["status"]["readyReplicas"], 1);
}

#[test]
fn patches_merge_strategically_and_by_json_patch() {
    let api = KubeApi::start(Seed::Standard(2));
    let path = "/apis/apps/v1/namespaces/alpha/deployments/deploy-000";
    let smp = json!({ "spec": { "template": { "spec": {
        "$setElementOrder/containers": [{ "name": "main" }, { "name": "sidecar" }],
        "containers": [{ "name": "main", "image": "registry.example/app:2.0" }, { "name": "sidecar", "image": "envoy" }] } } } });
    let patched = ok_json(&send(
        &api,
        "PATCH",
        path,
        "application/strategic-merge-patch+json",
        &smp,
    ));
    let containers = &patched["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 2);
    assert_eq!(containers[0]["image"], "registry.example/app:2.0");
    assert_eq!(patched["metadata"]["generation"], 2);

    let merge = ok_json(&send(
        &api,
        "PATCH",
        "/api/v1/namespaces/alpha/configmaps/cm-00000",
        "application/merge-patch+json",
        &json!({ "data": { "index": null, "new": "x" } }),
    ));
    assert_eq!(
        merge["data"],
        json!({ "new": "x", "settings.yaml": "replicas: 0\nnamespace: alpha\n" })
    );
    let jp = ok_json(&send(
        &api,
        "PATCH",
        "/api/v1/namespaces/alpha/configmaps/cm-00000",
        "application/json-patch+json",
        &json!([{ "op": "replace", "path": "/data/new", "value": "y" }, { "op": "add", "path": "/metadata/labels/extra", "value": "1" }]),
    ));
    assert_eq!(jp["data"]["new"], "y");
    assert_eq!(jp["metadata"]["labels"]["extra"], "1");
    assert_status(
        &send(
            &api,
            "PATCH",
            "/api/v1/namespaces/alpha/configmaps/cm-00000",
            "application/json-patch+json",
            &json!([{ "op": "test", "path": "/data/new", "value": "z" }]),
        ),
        422,
        "Invalid",
    );
    assert_status(
        &send(
            &api,
            "PATCH",
            "/apis/example.com/v1/namespaces/alpha/widgets/widget-00000",
            "application/strategic-merge-patch+json",
            &json!({ "spec": { "size": 1 } }),
        ),
        415,
        "UnsupportedMediaType",
    );
    assert_status(
        &send(
            &api,
            "PATCH",
            "/api/v1/namespaces/alpha/configmaps/nope",
            "application/merge-patch+json",
            &json!({}),
        ),
        404,
        "NotFound",
    );
    assert_status(
        &send(
            &api,
            "PATCH",
            "/api/v1/namespaces/alpha/configmaps/cm-00000",
            "text/plain",
            &json!({}),
        ),
        415,
        "UnsupportedMediaType",
    );
    assert_status(
        &send(
            &api,
            "PATCH",
            "/api/v1/namespaces/alpha/configmaps/cm-00000",
            "application/merge-patch+json",
            &json!({ "metadata": { "resourceVersion": "1" }, "data": { "a": "b" } }),
        ),
        409,
        "Conflict",
    );
}

#[test]
fn dry_run_validates_without_storing() {
    let api = KubeApi::start(Seed::Empty);
    let rv = api.resource_version();
    let r = post(
        &api,
        &format!("{CMS}?dryRun=All"),
        &json!({ "metadata": { "name": "dry" }, "data": { "a": "1" } }),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["data"]["a"], "1");
    assert!(api.get("configmaps", Some("default"), "dry").is_none());
    assert_eq!(api.resource_version(), rv);
    assert_status(
        &post(
            &api,
            &format!("{CMS}?dryRun=All"),
            &json!({ "metadata": { "name": "Bad" } }),
        ),
        422,
        "Invalid",
    );
    post(&api, CMS, &json!({ "metadata": { "name": "kept" } }));
    assert_eq!(
        api.request("DELETE", &format!("{CMS}/kept?dryRun=All"), &[], b"")
            .status,
        200
    );
    let body =
        json!({ "kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"] }).to_string();
    assert_eq!(
        api.request(
            "DELETE",
            &format!("{CMS}/kept"),
            &[("Content-Type", "application/json")],
            body.as_bytes()
        )
        .status,
        200
    );
    assert!(api.get("configmaps", Some("default"), "kept").is_some());
}

#[test]
fn finalizers_keep_an_object_until_they_are_removed() {
    let api = KubeApi::start(Seed::Empty);
    post(
        &api,
        CMS,
        &json!({ "metadata": { "name": "held", "finalizers": ["example.com/hold"] } }),
    );
    let marked = ok_json(&api.request("DELETE", &format!("{CMS}/held"), &[], b""));
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert!(api.get("configmaps", Some("default"), "held").is_some());
    ok_json(&send(
        &api,
        "PATCH",
        &format!("{CMS}/held"),
        "application/merge-patch+json",
        &json!({ "metadata": { "finalizers": null } }),
    ));
    assert!(api.get("configmaps", Some("default"), "held").is_none());
}

#[test]
fn deleting_a_namespace_removes_its_contents() {
    let api = KubeApi::start(Seed::Standard(5));
    assert!(
        api.list("configmaps")
            .iter()
            .any(|o| o["metadata"]["namespace"] == "beta")
    );
    let gone = ok_json(&api.request("DELETE", "/api/v1/namespaces/beta", &[], b""));
    assert_eq!(gone["status"]["phase"], "Terminating");
    for resource in [
        "configmaps",
        "secrets",
        "widgets.example.com",
        "deployments.apps",
    ] {
        assert!(
            !api.list(resource)
                .iter()
                .any(|o| o["metadata"]["namespace"] == "beta"),
            "{resource}"
        );
    }
    assert_status(&api.get_raw("/api/v1/namespaces/beta"), 404, "NotFound");
}

#[test]
fn secrets_encode_string_data_and_collections_delete_by_label() {
    let api = KubeApi::start(Seed::Empty);
    let s = ok_json(&post(
        &api,
        "/api/v1/namespaces/default/secrets",
        &json!({ "metadata": { "name": "s", "labels": { "x": "1" } }, "stringData": { "password": "hunter2" } }),
    ));
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"]["password"], "aHVudGVyMg==");
    assert!(s.get("stringData").is_none());
    post(
        &api,
        "/api/v1/namespaces/default/secrets",
        &json!({ "metadata": { "name": "t" } }),
    );
    let deleted = ok_json(&api.request(
        "DELETE",
        "/api/v1/namespaces/default/secrets?labelSelector=x%3D1",
        &[],
        b"",
    ));
    assert_eq!(deleted["items"].as_array().unwrap().len(), 1);
    assert_eq!(api.list("secrets").len(), 1);
}
