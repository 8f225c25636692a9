//! Server-side apply over raw HTTP: create on first apply, merge and prune on later applies,
//! managedFields per manager, conflicts and `force`, YAML bodies, and `dryRun=All`.

use crate::support::kube_api::{KubeApi, Seed};
use serde_json::{Value, json};

use super::helpers::{assert_status, ok_json};

const CM: &str = "/api/v1/namespaces/default/configmaps/settings";

fn apply(
    api: &KubeApi,
    path: &str,
    query: &str,
    body: &str,
) -> crate::support::kube_api::RawResponse {
    let headers = [
        ("Accept", "application/json"),
        ("Content-Type", "application/apply-patch+yaml"),
    ];
    api.request(
        "PATCH",
        &format!("{path}?{query}"),
        &headers,
        body.as_bytes(),
    )
}

fn cm(data: Value) -> String {
    json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "settings", "namespace": "default" }, "data": data })
    .to_string()
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_string(),
                e["operation"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn apply_creates_then_merges_and_prunes() {
    let api = KubeApi::start(Seed::Empty);
    let r = apply(
        &api,
        CM,
        "fieldManager=deployer",
        &cm(json!({ "a": "1", "b": "2" })),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    assert_eq!(
        managers(&created),
        [("deployer".to_string(), "Apply".to_string())]
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"],
        json!({ "f:data": { "f:a": {}, "f:b": {} } })
    );

    // Another writer adds a field; the next apply keeps it and drops only what the applier left out.
    let headers = [("Content-Type", "application/merge-patch+json")];
    let r = api.request(
        "PATCH",
        &format!("{CM}?fieldManager=editor"),
        &headers,
        br#"{"data":{"c":"3"}}"#,
    );
    assert_eq!(r.status, 200);
    let r = apply(&api, CM, "fieldManager=deployer", &cm(json!({ "a": "10" })));
    let updated = ok_json(&r);
    assert_eq!(updated["data"], json!({ "a": "10", "c": "3" }));
    assert_eq!(
        managers(&updated),
        [
            ("deployer".to_string(), "Apply".to_string()),
            ("editor".to_string(), "Update".to_string())
        ]
    );
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    // Applying the same configuration again changes nothing.
    let again = ok_json(&apply(
        &api,
        CM,
        "fieldManager=deployer",
        &cm(json!({ "a": "10" })),
    ));
    assert_eq!(
        again["metadata"]["resourceVersion"],
        updated["metadata"]["resourceVersion"]
    );
}

#[test]
fn apply_conflicts_with_other_managers_unless_forced() {
    let api = KubeApi::start(Seed::Empty);
    ok_json(&apply(
        &api,
        CM,
        "fieldManager=one",
        &cm(json!({ "a": "1" })),
    ));
    let r = apply(&api, CM, "fieldManager=two", &cm(json!({ "a": "2" })));
    let s = assert_status(&r, 409, "Conflict");
    assert_eq!(
        s["message"],
        "Apply failed with 1 conflict: conflict with \"one\": .data.a"
    );
    assert_eq!(s["details"]["causes"][0]["reason"], "FieldManagerConflict");
    assert_eq!(s["details"]["causes"][0]["field"], ".data.a");
    let forced = ok_json(&apply(
        &api,
        CM,
        "fieldManager=two&force=true",
        &cm(json!({ "a": "2" })),
    ));
    assert_eq!(forced["data"]["a"], "2");
    assert_eq!(
        managers(&forced),
        [("two".to_string(), "Apply".to_string())]
    );
}

#[test]
fn apply_reads_yaml_and_requires_a_field_manager() {
    let api = KubeApi::start(Seed::Empty);
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  greeting: hello # a comment\n";
    let created = ok_json(&apply(&api, CM, "fieldManager=yaml", yaml));
    assert_eq!(created["data"]["greeting"], "hello");
    assert_status(&apply(&api, CM, "", yaml), 422, "Invalid");
    assert_status(
        &apply(&api, CM, "fieldManager=x", "data:\n  a: b\n"),
        400,
        "BadRequest",
    );
}

#[test]
fn apply_dry_run_returns_the_result_without_storing() {
    let api = KubeApi::start(Seed::Empty);
    let r = apply(
        &api,
        CM,
        "fieldManager=x&dryRun=All",
        &cm(json!({ "a": "1" })),
    );
    assert_eq!(r.status, 201);
    assert!(api.get("configmaps", Some("default"), "settings").is_none());
    ok_json(&apply(&api, CM, "fieldManager=x", &cm(json!({ "a": "1" }))));
    let dry = ok_json(&apply(
        &api,
        CM,
        "fieldManager=x&dryRun=All",
        &cm(json!({ "a": "2" })),
    ));
    assert_eq!(dry["data"]["a"], "2");
    assert_eq!(
        api.get("configmaps", Some("default"), "settings").unwrap()["data"]["a"],
        "1"
    );
}

#[test]
fn apply_to_a_custom_resource_and_its_status() {
    let api = KubeApi::start(Seed::Standard(1));
    let path = "/apis/example.com/v1/namespaces/alpha/widgets/applied";
    let w = json!({ "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "applied" },
                    "spec": { "size": 2 }, "status": { "phase": "Ignored" } });
    let created = ok_json(&apply(&api, path, "fieldManager=ctl", &w.to_string()));
    assert_eq!(created["spec"]["size"], 2);
    assert!(
        created.get("status").is_none(),
        "status is not written through the main resource"
    );
    let status = json!({ "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "applied" },
                         "status": { "phase": "Ready" } });
    let with_status = ok_json(&apply(
        &api,
        &format!("{path}/status"),
        "fieldManager=controller",
        &status.to_string(),
    ));
    assert_eq!(with_status["status"]["phase"], "Ready");
    assert_eq!(with_status["metadata"]["generation"], 1);
    let entries = managers(&with_status);
    assert!(entries.contains(&("controller".to_string(), "Apply".to_string())));
    let sub = with_status["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "controller")
        .unwrap();
    assert_eq!(sub["subresource"], "status");
}
