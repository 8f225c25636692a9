//! The Kubernetes resource export against the test API server (a few thousand objects across
//! core, apps, rbac, coordination and a CRD): every object lands at its path, paging survives an
//! expired continue token, no Secret value is stored in plaintext, `tar` and `age` read the
//! archive, the restored YAML applies to a fresh API server with the real kubectl and yields the
//! same objects, and a resource that fails to list makes the backup partial, not lost.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::kube_api::{Fault, KubeApi, SECRET_MARKER, Seed};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::support::{require, run_ok, which};

pub(crate) fn exporter(api: &KubeApi, store: &Path, extra: &str) -> Lifeboat {
    exporter_paged(api, store, 50, extra)
}

/// [`exporter`] with LIST pages of `page_size` objects.
pub(crate) fn exporter_paged(api: &KubeApi, store: &Path, page_size: u32, extra: &str) -> Lifeboat {
    let dir = crate::support::tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let mut setup = Setup::new(StoreAt::File(store.to_path_buf()), "http://127.0.0.1:1");
    setup.extra = format!(
        "kubernetes:\n  kubeconfig: {}\nresources:\n  page_size: {page_size}\n{extra}",
        kubeconfig.display()
    );
    let mut lb = Lifeboat::new(setup.clone());
    // Keep the kubeconfig alive with the lifeboat's own directory.
    let own = lb.path("kubeconfig");
    std::fs::copy(&kubeconfig, &own).unwrap();
    setup.extra = setup.extra.replace(
        &kubeconfig.display().to_string(),
        &own.display().to_string(),
    );
    lb.write_config(&setup);
    lb
}

/// Listable resources lifeboat exports by default (everything but events).
pub(crate) const EXPORTED: &[&str] = &[
    "namespaces",
    "configmaps",
    "secrets",
    "services",
    "serviceaccounts",
    "nodes",
    "deployments.apps",
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "clusterroles.rbac.authorization.k8s.io",
    "clusterrolebindings.rbac.authorization.k8s.io",
    "customresourcedefinitions.apiextensions.k8s.io",
    "leases.coordination.k8s.io",
    "widgets.example.com",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_cluster_exports_restores_and_applies_back() {
    let Some(kubectl) = require("kubectl", which("kubectl")) else {
        return;
    };
    for tool in ["age", "zstd", "tar"] {
        if require(tool, which(tool)).is_none() {
            return;
        }
    }
    let api = Arc::new(KubeApi::start(Seed::Standard(300)));
    let total: usize = EXPORTED.iter().map(|r| api.count(r)).sum();
    assert!(total > 2500, "a few thousand objects: {total}");
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");

    // Expire every continue token once, in the middle of the export: the list restarts.
    let fired = Arc::new(AtomicBool::new(false));
    let (a, f) = (api.clone(), fired.clone());
    let start_calls = api.list_calls();
    let watcher = std::thread::spawn(move || {
        for _ in 0..3000 {
            if a.list_calls() >= start_calls + 12 {
                a.expire_continue_tokens();
                f.store(true, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let out = lb.ok(&["backup", "resources"]);
    watcher.join().unwrap();
    assert!(
        fired.load(Ordering::SeqCst),
        "the export made enough LIST calls to expire a token mid-way"
    );
    assert!(
        out.contains("complete") && out.contains(&format!("{total} objects")),
        "{out}"
    );

    let listing = lb.ok(&["list", "--kind", "resources", "--output", "json"]);
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let m = &listing["backups"][0];
    assert_eq!(m["kind"], "resources");
    assert_eq!(m["resources"]["partial"], false);
    assert_eq!(m["resources"]["objects"].as_u64().unwrap() as usize, total);
    assert_eq!(
        m["resources"]["encrypted_objects"].as_u64().unwrap() as usize,
        api.count("secrets")
    );
    let id = m["id"].as_str().unwrap().to_string();
    let out = lb.ok(&["verify", "--kind", "resources", "latest"]);
    assert!(out.contains("is good"), "{out}");

    // Standard tools: tar lists it, age opens a Secret.
    let archive = store
        .path()
        .join(format!("test-cluster/resources/{id}/resources.tar.zst"));
    let listed = run_ok(Command::new("tar").arg("--zstd").arg("-tf").arg(&archive));
    assert_eq!(
        listed.lines().count(),
        total + 1,
        "every object and index.json"
    );
    let paths: std::collections::HashSet<&str> = listed.lines().collect();
    for (resource, group, plural, suffix) in [
        ("configmaps", "core", "configmaps", ".yaml"),
        ("secrets", "core", "secrets", ".yaml.age"),
        ("deployments.apps", "apps", "deployments", ".yaml"),
        ("widgets.example.com", "example.com", "widgets", ".yaml"),
        (
            "clusterroles.rbac.authorization.k8s.io",
            "rbac.authorization.k8s.io",
            "clusterroles",
            ".yaml",
        ),
        ("namespaces", "core", "namespaces", ".yaml"),
    ] {
        for obj in api.list(resource) {
            let name = obj["metadata"]["name"].as_str().unwrap();
            let path = match obj["metadata"]["namespace"].as_str() {
                Some(ns) => format!("namespaces/{ns}/{group}/{plural}/{name}{suffix}"),
                None => format!("cluster/{group}/{plural}/{name}{suffix}"),
            };
            assert!(
                paths.contains(path.as_str()),
                "{path} is missing from the archive"
            );
        }
    }
    let secret = listed
        .lines()
        .find(|l| l.starts_with("namespaces/alpha/core/secrets/") && l.ends_with(".yaml.age"))
        .unwrap();
    let shown = run_ok(Command::new("bash").arg("-c").arg(format!(
        "set -o pipefail; tar --zstd -xOf {} {secret} | age -d -i {}",
        archive.display(),
        lb.identity.display()
    )));
    assert!(shown.contains("kind: Secret"), "{shown}");

    // No Secret value in plaintext anywhere in the stored bytes (compressed or not).
    let stored = std::fs::read(&archive).unwrap();
    let plain = zstd::decode_all(stored.as_slice()).unwrap();
    let summary = api.seed_summary().unwrap();
    for haystack in [&stored, &plain] {
        for needle in [
            SECRET_MARKER.as_bytes(),
            summary.secret_marker_base64.as_bytes(),
        ] {
            assert!(
                !haystack.windows(needle.len()).any(|w| w == needle),
                "a Secret value is stored in plaintext"
            );
        }
    }
    let index: serde_json::Value = {
        let text = run_ok(
            Command::new("tar")
                .arg("--zstd")
                .arg("-xOf")
                .arg(&archive)
                .arg("index.json"),
        );
        serde_json::from_str(&text).unwrap()
    };
    assert!(
        index["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["restarts"].as_u64().unwrap() >= 1),
        "a list restarted after 410: {index}"
    );
    assert_eq!(index["discovery"], "aggregated");
    for r in index["resources"].as_array().unwrap() {
        let key = r["resource"].as_str().unwrap();
        assert_eq!(
            r["objects"].as_u64().unwrap() as usize,
            api.count(key),
            "{key} exported exactly once per object"
        );
    }

    // Restore to a directory, then apply to a fresh API server with the real kubectl.
    let out_dir = lb.path("restored");
    let out = lb.ok(&[
        "restore",
        "resources",
        "--to-dir",
        out_dir.to_str().unwrap(),
        "--identity",
        lb.identity.to_str().unwrap(),
    ]);
    assert!(out.contains(&format!("Wrote {} files", total + 1)), "{out}");
    let cleaned = std::fs::read_to_string(
        out_dir
            .join("namespaces/alpha/apps/deployments")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    for removed in [
        "managedFields",
        "resourceVersion",
        "uid:",
        "creationTimestamp",
        "generation",
        "status:",
    ] {
        assert!(
            !cleaned.contains(removed),
            "{removed} must be cleaned:\n{cleaned}"
        );
    }
    let fresh = KubeApi::start(Seed::Empty);
    let kubeconfig = lb.path("fresh-kubeconfig");
    std::fs::write(&kubeconfig, fresh.kubeconfig()).unwrap();
    for part in ["cluster", "namespaces"] {
        run_ok(
            Command::new(&kubectl)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["apply", "--server-side", "--force-conflicts", "-R", "-f"])
                .arg(out_dir.join(part)),
        );
    }
    for resource in EXPORTED {
        assert_eq!(
            fresh.count(resource),
            api.count(resource),
            "{resource} after applying the restore"
        );
    }
    let original = api
        .get("secrets", Some("alpha"), "secret-0000")
        .or_else(|| api.list("secrets").into_iter().next())
        .unwrap();
    let name = original["metadata"]["name"].as_str().unwrap();
    let ns = original["metadata"]["namespace"].as_str().unwrap();
    let restored = fresh.get("secrets", Some(ns), name).unwrap();
    assert_eq!(
        restored["data"], original["data"],
        "Secret data survives the encrypted round trip"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_resource_failing_to_list_gives_a_partial_backup_not_a_lost_one() {
    let api = KubeApi::start(Seed::Standard(30));
    api.fail_list("secrets", Fault::forbidden());
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    let err = lb.fails(&["backup", "resources"]);
    assert!(
        err.contains("is partial") && err.contains("secrets"),
        "{err}"
    );
    let listing: serde_json::Value =
        serde_json::from_str(&lb.ok(&["list", "--kind", "resources", "--output", "json"])).unwrap();
    let m = &listing["backups"][0];
    assert_eq!(m["resources"]["partial"], true, "{m}");
    assert!(
        m["resources"]["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("secrets:"),
        "{m}"
    );
    assert_eq!(
        m["resources"]["objects"].as_u64().unwrap() as usize,
        EXPORTED
            .iter()
            .filter(|r| **r != "secrets")
            .map(|r| api.count(r))
            .sum::<usize>()
    );

    // A namespace/resource filter on restore.
    let out_dir = lb.path("only-deployments");
    lb.ok(&[
        "restore",
        "resources",
        "--to-dir",
        out_dir.to_str().unwrap(),
        "--namespace",
        "alpha",
        "--resource",
        "deployments.apps",
    ]);
    let files: Vec<_> = walk(&out_dir);
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("namespaces/alpha/apps/deployments/") || f == "index.json"),
        "{files:?}"
    );
    assert_eq!(
        files.len(),
        api.list("deployments.apps")
            .iter()
            .filter(|d| d["metadata"]["namespace"] == "alpha")
            .count()
            + 1
    );
}

pub(crate) fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_resources_plan() {
    let api = KubeApi::start(Seed::Standard(20));
    let store = crate::support::tempdir();
    let port = crate::support::free_port();
    let lb = exporter(
        &api,
        store.path(),
        &format!(
            "schedules:\n  resources:\n    cron: \"@yearly\"\n    retention: {{ keep_last: 1 }}\nserver:\n  listen: 127.0.0.1:{port}\n"
        ),
    );
    let serve = crate::support::serve::Serve::start(&lb, port, "resources");
    serve
        .wait_for(
            "lifeboat_backup_runs_total{cluster=\"test-cluster\",plan=\"resources\",result=\"success\"}",
            Duration::from_secs(60),
            |v| v == 1.0,
        )
        .await;
    assert_eq!(serve.terminate(Duration::from_secs(30)).await, 0);
    let listing: serde_json::Value =
        serde_json::from_str(&lb.ok(&["list", "--kind", "resources", "--output", "json"])).unwrap();
    assert_eq!(listing["backups"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_export_never_counts_as_the_newest_good_backup() {
    let api = KubeApi::start(Seed::Standard(10));
    let store = crate::support::tempdir();
    let lb = exporter(
        &api,
        store.path(),
        "schedules:\n  resources:\n    cron: \"@daily\"\n    retention: { keep_last: 1 }\n",
    );
    lb.ok(&["backup", "resources"]);
    let full = lb.ok(&["list", "--kind", "resources", "--output", "json"]);
    let full: serde_json::Value = serde_json::from_str(&full).unwrap();
    let full_id = full["backups"][0]["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1100));
    api.fail_list("secrets", Fault::forbidden());
    lb.fails(&["backup", "resources"]);
    // keep_last: 1 keeps the full backup, not the newer partial one; the partial stays until a
    // newer full backup supersedes it.
    let out = lb.ok(&["prune"]);
    assert!(out.contains(&format!("KEEP   {full_id}")), "{out}");
    assert!(
        out.contains("partial export, no newer full backup yet"),
        "{out}"
    );
    api.clear_faults();
    std::thread::sleep(Duration::from_millis(1100));
    lb.ok(&["backup", "resources"]);
    let out = lb.ok(&["prune"]);
    assert!(
        out.contains("partial export, superseded by a newer full backup"),
        "{out}"
    );
    let listing: serde_json::Value =
        serde_json::from_str(&lb.ok(&["list", "--kind", "resources", "--output", "json"])).unwrap();
    let left = listing["backups"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{listing}");
    assert_eq!(left[0]["resources"]["partial"], false);
}

/// Regression: a server without aggregated discovery answered the legacy document, which parsed
/// as an empty aggregated list, and the export stored 0 objects as a complete backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_without_aggregated_discovery_is_exported_through_per_group_discovery() {
    let api = KubeApi::start(Seed::Standard(10));
    api.disable_aggregated_discovery();
    let total: usize = EXPORTED.iter().map(|r| api.count(r)).sum();
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    let out = lb.ok(&["backup", "resources"]);
    assert!(out.contains(&format!("{total} objects")), "{out}");
    let listing: serde_json::Value =
        serde_json::from_str(&lb.ok(&["list", "--kind", "resources", "--output", "json"])).unwrap();
    assert_eq!(listing["backups"][0]["resources"]["discovery"], "legacy");
    assert_eq!(
        listing["backups"][0]["resources"]["resource_count"]
            .as_u64()
            .unwrap() as usize,
        EXPORTED.len()
    );
}
