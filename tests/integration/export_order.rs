//! The resource export against lists that do not come in etcd key order (aggregated API
//! servers, proxies, a server that changes its order), pages that repeat objects, and 410 Gone
//! in the middle of a list: every object is exported exactly once, and a list whose completeness
//! cannot be shown makes the backup partial with the reason.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use crate::resources::{EXPORTED, exporter_paged};
use crate::support::kube_api::{Fault, KubeApi, ListOrder, Seed};
use crate::support::lifeboat::Lifeboat;

/// The newest resource export: its manifest (from `list`), archive paths and index.json.
pub(crate) struct Export {
    pub manifest: serde_json::Value,
    pub paths: Vec<String>,
    pub index: serde_json::Value,
}

pub(crate) fn newest_export(lb: &Lifeboat, store: &std::path::Path) -> Export {
    let listing: serde_json::Value =
        serde_json::from_str(&lb.ok(&["list", "--kind", "resources", "--output", "json"])).unwrap();
    let manifest = listing["backups"][0].clone();
    let id = manifest["id"].as_str().unwrap();
    let archive = store.join(format!("test-cluster/resources/{id}/resources.tar.zst"));
    let plain = zstd::decode_all(std::fs::File::open(&archive).unwrap()).unwrap();
    let mut paths = Vec::new();
    let mut index = serde_json::Value::Null;
    for entry in tar::Archive::new(plain.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        if path == "index.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            index = serde_json::from_str(&text).unwrap();
        }
        paths.push(path);
    }
    Export {
        manifest,
        paths,
        index,
    }
}

/// The archive path prefix and suffix of a resource's objects.
fn path_of(resource: &str, obj: &serde_json::Value) -> String {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, "core"));
    let suffix = if resource == "secrets" {
        ".yaml.age"
    } else {
        ".yaml"
    };
    let name = obj["metadata"]["name"].as_str().unwrap();
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("namespaces/{ns}/{group}/{plural}/{name}{suffix}"),
        None => format!("cluster/{group}/{plural}/{name}{suffix}"),
    }
}

/// Asserts that the archive holds every object of the API server exactly once, and that
/// index.json counts each resource's objects right.
fn assert_every_object_exactly_once(api: &KubeApi, export: &Export) {
    let mut seen = HashSet::new();
    for p in &export.paths {
        assert!(seen.insert(p.as_str()), "{p} is in the archive twice");
    }
    let mut expected = 1; // index.json
    for resource in EXPORTED {
        for obj in api.list(resource) {
            let path = path_of(resource, &obj);
            assert!(seen.contains(path.as_str()), "{path} is missing");
            expected += 1;
        }
    }
    assert_eq!(export.paths.len(), expected, "nothing but the objects");
    let counted: BTreeMap<&str, u64> = export.index["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resource"].as_str().unwrap(),
                r["objects"].as_u64().unwrap(),
            )
        })
        .collect();
    for resource in EXPORTED {
        assert_eq!(
            counted[resource] as usize,
            api.count(resource),
            "index.json's count of {resource}"
        );
    }
}

/// Regression: objects sorting at or before the last one written were skipped on every page,
/// so namespaces listed in reverse order exported only the first one, with no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_in_any_order_export_every_object_exactly_once() {
    let api = KubeApi::start(Seed::Standard(20));
    api.list_order("namespaces", ListOrder::Reversed);
    api.list_order("secrets", ListOrder::Shuffled);
    api.list_order("configmaps", ListOrder::Shuffled);
    api.repeat_across_pages("configmaps");
    api.repeat_across_pages("serviceaccounts");
    let store = crate::support::tempdir();
    let lb = exporter_paged(&api, store.path(), 3, "");
    let out = lb.ok(&["backup", "resources"]);
    assert!(out.contains("complete"), "{out}");
    let export = newest_export(&lb, store.path());
    assert_eq!(export.manifest["resources"]["partial"], false);
    assert_every_object_exactly_once(&api, &export);
    let repeats: u64 = export.index["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repeats_skipped"].as_u64().unwrap())
        .sum();
    assert!(repeats > 0, "the repeated objects were seen and skipped");
}

/// Regression: after a 410 restart the export skipped objects up to the last key written,
/// which loses objects when the relist comes in another order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_in_the_middle_of_a_reordered_list_loses_nothing_and_writes_nothing_twice() {
    let api = KubeApi::start(Seed::Standard(20));
    // A new order for every list: the relist after 410 differs from the first pass.
    api.list_order("secrets", ListOrder::Shuffled);
    api.list_order("configmaps", ListOrder::Reversed);
    api.fail_list("secrets", Fault::expired().on_continue_only().times(2));
    api.fail_list("configmaps", Fault::expired().on_continue_only().times(1));
    let store = crate::support::tempdir();
    let lb = exporter_paged(&api, store.path(), 4, "");
    let out = lb.ok(&["backup", "resources"]);
    assert!(out.contains("complete"), "{out}");
    let export = newest_export(&lb, store.path());
    assert_eq!(export.manifest["resources"]["partial"], false);
    assert_every_object_exactly_once(&api, &export);
    let restarts: BTreeMap<&str, u64> = export.index["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resource"].as_str().unwrap(),
                r["restarts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(restarts["secrets"], 2, "{}", export.index);
    assert_eq!(restarts["configmaps"], 1, "{}", export.index);
}

/// A list that expires on every relist cannot be shown complete: the backup is partial, and
/// index.json and the manifest say why; what was written is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_that_expires_on_every_relist_makes_the_export_partial_with_the_reason() {
    let api = KubeApi::start(Seed::Standard(20));
    api.list_order("secrets", ListOrder::Shuffled);
    api.fail_list("secrets", Fault::expired().on_continue_only());
    let store = crate::support::tempdir();
    let lb = exporter_paged(&api, store.path(), 4, "");
    let err = lb.fails(&["backup", "resources"]);
    assert!(err.contains("is partial"), "{err}");
    let export = newest_export(&lb, store.path());
    let m = &export.manifest["resources"];
    assert_eq!(m["partial"], true, "{m}");
    let reason = m["errors"][0].as_str().unwrap();
    assert!(
        reason.starts_with("secrets:") && reason.contains("restarted 5 times after 410 Gone"),
        "{reason}"
    );
    assert_eq!(export.index["errors"][0].as_str().unwrap(), reason);
    let secrets: Vec<&String> = export
        .paths
        .iter()
        .filter(|p| p.contains("/core/secrets/"))
        .collect();
    let unique: HashSet<&&String> = secrets.iter().collect();
    assert_eq!(unique.len(), secrets.len(), "no Secret written twice");
    let record = export.index["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "secrets")
        .unwrap();
    assert_eq!(record["objects"].as_u64().unwrap() as usize, secrets.len());
    assert_eq!(record["restarts"], 5);
    assert!(
        secrets.len() < api.count("secrets"),
        "only first pages were listed"
    );
}

/// Regression: a server whose pages skip objects (it reorders between pages) gave a complete
/// backup missing objects; the first page's remainingItemCount shows the shortfall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_shorter_than_the_server_announced_makes_the_export_partial() {
    let api = KubeApi::start(Seed::Standard(20));
    api.list_order("secrets", ListOrder::ShuffledEveryPage);
    let store = crate::support::tempdir();
    let lb = exporter_paged(&api, store.path(), 4, "");
    let err = lb.fails(&["backup", "resources"]);
    assert!(err.contains("is partial"), "{err}");
    let export = newest_export(&lb, store.path());
    let m = &export.manifest["resources"];
    assert_eq!(m["partial"], true, "{m}");
    let reason = m["errors"][0].as_str().unwrap();
    assert!(
        reason.starts_with("secrets:")
            && reason.contains(&format!("announced {} objects", api.count("secrets"))),
        "{reason}"
    );
}
