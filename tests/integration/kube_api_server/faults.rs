//! Injected faults and seeding: one resource's LIST fails (403, 500, transient, on later pages
//! only) while others keep working, and `seed_standard` reports exactly what it stored.

use crate::support::kube_api::{Fault, KubeApi, SECRET_MARKER, Seed};

use super::helpers::{assert_status, ok_json};

#[test]
fn a_forbidden_list_fails_only_that_resource() {
    let api = KubeApi::start(Seed::Standard(5));
    api.fail_list("secrets", Fault::forbidden());
    let s = assert_status(&api.get_raw("/api/v1/secrets?limit=500"), 403, "Forbidden");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("cannot list resource \"secrets\"")
    );
    assert_status(
        &api.get_raw("/api/v1/namespaces/alpha/secrets"),
        403,
        "Forbidden",
    );
    ok_json(&api.get_raw("/api/v1/configmaps?limit=500"));
    ok_json(&api.get_raw("/api/v1/namespaces/alpha/secrets/secret-00000"));
    api.clear_faults();
    ok_json(&api.get_raw("/api/v1/secrets"));
}

#[test]
fn transient_and_later_page_faults() {
    let api = KubeApi::start(Seed::Standard(30));
    api.fail_list("widgets.example.com", Fault::internal_error().times(2));
    assert_status(
        &api.get_raw("/apis/example.com/v1/widgets"),
        500,
        "InternalError",
    );
    assert_status(
        &api.get_raw("/apis/example.com/v1/widgets"),
        500,
        "InternalError",
    );
    ok_json(&api.get_raw("/apis/example.com/v1/widgets"));

    api.fail_list("configmaps", Fault::status(503).on_continue_only());
    let first = ok_json(&api.get_raw("/api/v1/configmaps?limit=10"));
    let token = first["metadata"]["continue"].as_str().unwrap();
    assert_status(
        &api.get_raw(&format!("/api/v1/configmaps?limit=10&continue={token}")),
        503,
        "ServiceUnavailable",
    );
}

#[test]
fn the_standard_seed_reports_what_it_stored() {
    let api = KubeApi::start(Seed::Standard(300));
    let summary = api.seed_summary().unwrap().clone();
    assert!(summary.total > 3000, "{summary:?}");
    assert_eq!(summary, api.summary());
    for (resource, count) in &summary.counts {
        assert_eq!(api.count(resource), *count, "{resource}");
    }
    assert_eq!(
        summary.counts["configmaps"],
        3 * 300 + 7,
        "300 per namespace + kube-root-ca.crt in each of 7"
    );
    assert_eq!(summary.counts["widgets.example.com"], 900);
    assert_eq!(
        summary.counts["customresourcedefinitions.apiextensions.k8s.io"],
        1
    );
    assert!(summary.counts["clusterroles.rbac.authorization.k8s.io"] >= 5);
    let secret = api.get("secrets", Some("beta"), "secret-00007").unwrap();
    let password = secret["data"]["password"].as_str().unwrap();
    assert!(password.starts_with(&summary.secret_marker_base64));
    assert_eq!(summary.secret_marker, SECRET_MARKER);
    let deploy = api
        .get("deployments.apps", Some("alpha"), "deploy-000")
        .unwrap();
    assert_eq!(deploy["status"]["readyReplicas"], 2);
}
