//! LIST paging over raw HTTP: limit/continue covers every object exactly once (namespaced,
//! all namespaces, cluster-scoped, custom resources), pages are a snapshot of the first page,
//! and expired tokens get `410 Expired` that a client can recover from.

use std::collections::BTreeSet;

use crate::support::kube_api::{KubeApi, Seed};
use serde_json::{Value, json};

use super::helpers::{assert_status, ok_json, post};

/// Lists `path` in pages of `limit`, checking the list metadata on the way; returns each item's
/// `namespace/name` in order and the number of pages.
fn list_all(api: &KubeApi, path: &str, limit: usize) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    let mut first_rv = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &token {
            Some(t) => format!("{path}{sep}limit={limit}&continue={t}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let page = ok_json(&api.get_raw(&url));
        pages += 1;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= limit);
        let rv = page["metadata"]["resourceVersion"]
            .as_str()
            .expect("list resourceVersion")
            .to_string();
        assert_eq!(
            first_rv.get_or_insert(rv.clone()),
            &rv,
            "all pages are served at the first page's resourceVersion"
        );
        for item in items {
            let meta = &item["metadata"];
            keys.push(format!(
                "{}/{}",
                meta["namespace"].as_str().unwrap_or(""),
                meta["name"].as_str().unwrap()
            ));
        }
        match page["metadata"]["continue"].as_str() {
            Some(t) => {
                assert_eq!(items.len(), limit, "a page with a continue token is full");
                assert!(page["metadata"]["remainingItemCount"].as_u64().unwrap() > 0);
                token = Some(t.to_string());
            }
            None => {
                assert!(page["metadata"].get("remainingItemCount").is_none());
                return (keys, pages);
            }
        }
    }
}

fn assert_exactly_once(api: &KubeApi, path: &str, resource: &str, limit: usize) {
    let (keys, pages) = list_all(api, path, limit);
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "{path}: an object came twice");
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, keys, "{path}: items come in key order");
    let expected: BTreeSet<String> = api
        .list(resource)
        .iter()
        .filter(|o| !path.contains("/namespaces/alpha/") || o["metadata"]["namespace"] == "alpha")
        .map(|o| {
            format!(
                "{}/{}",
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{path}"
    );
    assert_eq!(pages, keys.len().div_ceil(limit).max(1), "{path}");
}

#[test]
fn paging_covers_every_object_exactly_once() {
    let api = KubeApi::start(Seed::Standard(120));
    assert_exactly_once(&api, "/api/v1/namespaces/alpha/configmaps", "configmaps", 7);
    assert_exactly_once(&api, "/api/v1/configmaps", "configmaps", 50);
    assert_exactly_once(&api, "/api/v1/secrets", "secrets", 500);
    assert_exactly_once(
        &api,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "clusterroles",
        2,
    );
    assert_exactly_once(
        &api,
        "/apis/example.com/v1/widgets",
        "widgets.example.com",
        33,
    );
    assert_exactly_once(
        &api,
        "/apis/example.com/v1/namespaces/alpha/widgets",
        "widgets.example.com",
        1000,
    );
}

#[test]
fn list_items_and_metadata_look_like_a_real_server() {
    let api = KubeApi::start(Seed::Standard(20));
    let page = ok_json(&api.get_raw("/api/v1/namespaces/beta/configmaps?limit=5"));
    assert_eq!(page["kind"], "ConfigMapList");
    assert_eq!(page["apiVersion"], "v1");
    assert_eq!(
        page["metadata"]["remainingItemCount"], 16,
        "20 seeded + kube-root-ca.crt - 5"
    );
    let item = &page["items"][0];
    assert!(
        item.get("kind").is_none() && item.get("apiVersion").is_none(),
        "built-in list items carry no type: {item}"
    );
    assert!(item["metadata"]["uid"].is_string() && item["metadata"]["resourceVersion"].is_string());
    let widgets =
        ok_json(&api.get_raw("/apis/example.com/v1beta1/namespaces/beta/widgets?limit=2"));
    assert_eq!(widgets["kind"], "WidgetList");
    assert_eq!(
        widgets["items"][0]["apiVersion"], "example.com/v1beta1",
        "custom resources keep their type"
    );
    assert_eq!(widgets["items"][0]["kind"], "Widget");
}

#[test]
fn later_pages_are_a_snapshot_of_the_first() {
    let api = KubeApi::start(Seed::Standard(30));
    let first = ok_json(&api.get_raw("/api/v1/namespaces/gamma/configmaps?limit=10"));
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    // Writes between pages are not seen by the rest of this list.
    post(
        &api,
        "/api/v1/namespaces/gamma/configmaps",
        &json!({ "metadata": { "name": "zz-late" } }),
    );
    api.request(
        "DELETE",
        "/api/v1/namespaces/gamma/configmaps/cm-00029",
        &[],
        b"",
    );
    let mut names = Vec::new();
    let mut token = Some(token);
    while let Some(t) = token {
        let page = ok_json(&api.get_raw(&format!(
            "/api/v1/namespaces/gamma/configmaps?limit=10&continue={t}"
        )));
        assert_eq!(
            page["metadata"]["resourceVersion"],
            first["metadata"]["resourceVersion"]
        );
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        token = page["metadata"]["continue"].as_str().map(str::to_string);
    }
    assert!(names.contains(&"cm-00029".to_string()));
    assert!(!names.contains(&"zz-late".to_string()));
}

fn first_token(api: &KubeApi, path: &str) -> String {
    let page = ok_json(&api.get_raw(&format!("{path}?limit=10")));
    page["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_string()
}

#[test]
fn an_expired_token_gets_410_expired_and_the_list_can_restart() {
    let api = KubeApi::start(Seed::Standard(40));
    let path = "/api/v1/secrets";
    let token = first_token(&api, path);
    api.expire_continue_tokens();
    let r = api.get_raw(&format!("{path}?limit=10&continue={token}"));
    let status = assert_status(&r, 410, "Expired");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("too old to display a consistent list result")
    );
    // The Status carries an inconsistent continuation, as the real server's does.
    let resume = status["metadata"]["continue"]
        .as_str()
        .expect("inconsistent continue token");
    let page = ok_json(&api.get_raw(&format!("{path}?limit=10&continue={resume}")));
    assert_eq!(page["items"].as_array().unwrap().len(), 10);
    // Restarting without a token lists everything again.
    let (keys, _) = list_all(&api, path, 10);
    assert_eq!(keys.len(), api.count("secrets"));
}

#[test]
fn tokens_expire_after_the_configured_number_of_other_lists() {
    let api = KubeApi::start(Seed::Standard(30));
    api.expire_continue_after(Some(1));
    let path = "/api/v1/namespaces/alpha/configmaps";
    let token = first_token(&api, path);
    ok_json(&api.get_raw(&format!("{path}?limit=10&continue={token}")));
    let token = first_token(&api, path);
    ok_json(&api.get_raw("/api/v1/namespaces"));
    assert_status(
        &api.get_raw(&format!("{path}?limit=10&continue={token}")),
        410,
        "Expired",
    );

    api.expire_continue_after(Some(0));
    let token = first_token(&api, path);
    assert_status(
        &api.get_raw(&format!("{path}?limit=10&continue={token}")),
        410,
        "Expired",
    );
    api.expire_continue_after(None);
    let token = first_token(&api, path);
    ok_json(&api.get_raw(&format!("{path}?limit=10&continue={token}")));
}

#[test]
fn bad_tokens_and_parameters_are_bad_requests() {
    let api = KubeApi::start(Seed::Standard(30));
    let token = first_token(&api, "/api/v1/namespaces/alpha/configmaps");
    assert_status(
        &api.get_raw("/api/v1/configmaps?limit=5&continue=not-a-token"),
        400,
        "BadRequest",
    );
    assert_status(
        &api.get_raw(&format!("/api/v1/secrets?limit=5&continue={token}")),
        400,
        "BadRequest",
    );
    assert_status(
        &api.get_raw(&format!(
            "/api/v1/namespaces/alpha/configmaps?limit=5&continue={token}&resourceVersion=5"
        )),
        400,
        "BadRequest",
    );
    assert_status(
        &api.get_raw("/api/v1/configmaps?resourceVersionMatch=NotOlderThan"),
        400,
        "BadRequest",
    );
    assert_status(
        &api.get_raw("/api/v1/configmaps?limit=x"),
        400,
        "BadRequest",
    );
    assert_status(
        &api.get_raw("/api/v1/configmaps?fieldSelector=data.x%3D1"),
        400,
        "BadRequest",
    );
}

#[test]
fn resource_version_zero_and_match_are_tolerated() {
    let api = KubeApi::start(Seed::Standard(10));
    let all = api.count("configmaps");
    for query in [
        "resourceVersion=0",
        "resourceVersion=0&resourceVersionMatch=NotOlderThan",
        "resourceVersion=1&resourceVersionMatch=NotOlderThan",
    ] {
        let list = ok_json(&api.get_raw(&format!("/api/v1/configmaps?{query}")));
        assert_eq!(list["items"].as_array().unwrap().len(), all, "{query}");
    }
    let rv = api.resource_version();
    ok_json(&api.get_raw(&format!(
        "/api/v1/configmaps?resourceVersion={rv}&resourceVersionMatch=Exact"
    )));
}

#[test]
fn selectors_filter_lists() {
    let api = KubeApi::start(Seed::Standard(40));
    let count = |query: &str| -> usize {
        let list: Value =
            ok_json(&api.get_raw(&format!("/api/v1/namespaces/alpha/configmaps?{query}")));
        list["items"].as_array().unwrap().len()
    };
    assert_eq!(count("labelSelector=app%3Dapp-3"), 4);
    assert_eq!(count("labelSelector=app+in+(app-1,app-2)"), 8);
    assert_eq!(count("labelSelector=app!%3Dapp-3,lifeboat.test/seed"), 36);
    assert_eq!(count("fieldSelector=metadata.name%3Dcm-00007"), 1);
    let page = ok_json(
        &api.get_raw("/api/v1/namespaces/alpha/configmaps?labelSelector=app%3Dapp-3&limit=2"),
    );
    assert!(page["metadata"]["continue"].is_string());
    assert!(
        page["metadata"].get("remainingItemCount").is_none(),
        "no count with a selector, as on a real server"
    );
    let events = ok_json(&api.get_raw("/api/v1/namespaces/alpha/events?fieldSelector=involvedObject.kind%3DConfigMap,involvedObject.name%3Dcm-00001"));
    assert_eq!(events["items"].as_array().unwrap().len(), 1);
}
