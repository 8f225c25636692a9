//! `restore resources --apply` where the world differs from the happy path, each found by
//! trying the tool: a field added live since the backup, a misspelt namespace mapping, an
//! unreachable API server, a Service whose cluster IP lifeboat removes on purpose.

use crate::apply::{json, kubectl_on};
use crate::resources::exporter;
use crate::support::kube_api::{KubeApi, Seed};
use crate::support::run_ok;

/// Regression: `--existing update` reported "updated" while a field added live since the
/// backup stayed, so a rerun said "unchanged" and diff still differed. Server-side apply leaves
/// fields another manager set; the report must say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_added_since_the_backup_is_reported_as_still_differing() {
    let api = KubeApi::start(Seed::Standard(5));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    let Some(mut kubectl) = kubectl_on(&api, &lb) else {
        return;
    };
    lb.ok(&["backup", "resources"]);
    run_ok(kubectl.args([
        "-n",
        "alpha",
        "patch",
        "configmap",
        "cm-00001",
        "--type=merge",
        "-p",
        r#"{"data":{"added":"later","index":"changed"}}"#,
    ]));
    let out = lb.ok(&[
        "restore",
        "resources",
        "--apply",
        "--namespace",
        "alpha",
        "--resource",
        "configmaps",
        "--name",
        "cm-00001",
        "--existing",
        "update",
        "--force-conflicts",
        "-o",
        "json",
    ]);
    let report = json(&out);
    let cm = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"]["name"] == "cm-00001")
        .unwrap()
        .clone();
    assert_eq!(cm["outcome"], "updated", "{cm}");
    assert_eq!(
        cm["still_differs"],
        serde_json::json!(["data.added"]),
        "{cm}"
    );
    let live = api.get("configmaps", Some("alpha"), "cm-00001").unwrap();
    assert_eq!(live["data"]["index"], "1", "the backup's value is back");
    assert_eq!(
        live["data"]["added"], "later",
        "and the report said this one stays"
    );
}

/// Regression: a misspelt `--namespace-mapping` source was ignored, so the restore wrote into
/// the original namespace the user meant to copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_of_a_namespace_that_is_not_restored_is_refused_before_anything_is_sent() {
    let api = KubeApi::start(Seed::Standard(5));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    lb.ok(&["backup", "resources"]);
    api.clear_requests();
    let err = lb.fails(&[
        "restore",
        "resources",
        "--apply",
        "--namespace",
        "alpha",
        "--namespace-mapping",
        "alpah=alpha-copy",
    ]);
    assert!(
        err.contains("\"alpah\", which is not among the --namespace options"),
        "{err}"
    );
    let err = lb.fails(&[
        "restore",
        "resources",
        "--apply",
        "--namespace-mapping",
        "alpah=alpha-copy",
    ]);
    assert!(
        err.contains("holds no objects in namespace \"alpah\""),
        "{err}"
    );
    let writes = api
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .count();
    assert_eq!(writes, 0, "nothing was sent");
}

/// Regression: with the API server unreachable, every object failed with a discovery error
/// telling the user to restore a CRD; it must be one sentence about the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_one_clear_error() {
    let api = KubeApi::start(Seed::Standard(3));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    lb.ok(&["backup", "resources"]);
    drop(api);
    let err = lb.fails(&["restore", "resources", "--apply", "--namespace", "alpha"]);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("cannot reach the API server"), "{err}");
    assert!(last.contains("kubernetes.kubeconfig"), "{err}");
    assert!(!err.contains("CustomResourceDefinition"), "{err}");
}

/// Regression: every Service was reported as differing in spec.clusterIP, the field the
/// restore itself removes, even when nothing else had changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_matches_the_backup_is_not_reported_as_differing() {
    let api = KubeApi::start(Seed::Standard(10));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    lb.ok(&["backup", "resources"]);
    let out = lb.ok(&[
        "restore",
        "resources",
        "--apply",
        "--namespace",
        "alpha",
        "--resource",
        "services",
        "-o",
        "json",
    ]);
    let report = json(&out);
    for o in report["objects"].as_array().unwrap() {
        if o["resource"] == "services" {
            assert_eq!(o["outcome"], "left-alone", "{o}");
            assert_eq!(o["fields"], serde_json::json!([]), "{o}");
        }
    }
}

/// Regression: Ctrl-C during an apply killed it with no report, so the engineer could not tell
/// what had been applied. Now it stops between two objects, prints what it did, and says to
/// rerun; the rerun finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_apply_reports_what_it_did_and_a_rerun_finishes() {
    let api = KubeApi::start(Seed::Standard(40));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    let Some(mut kubectl) = kubectl_on(&api, &lb) else {
        return;
    };
    lb.ok(&["backup", "resources"]);
    run_ok(kubectl.args(["delete", "namespace", "alpha"]));
    // A slow link to the API server, so the apply is still going when the signal comes.
    let proxy = crate::support::proxy::Proxy::start(api.addr().port()).await;
    proxy.delay_down(std::time::Duration::from_millis(15));
    let via_proxy = api
        .kubeconfig()
        .replace(api.url(), &format!("http://127.0.0.1:{}", proxy.port));
    std::fs::write(lb.path("kubeconfig"), via_proxy).unwrap();
    let args = [
        "restore",
        "resources",
        "--apply",
        "--namespace",
        "alpha",
        "--identity",
        lb.identity.to_str().unwrap(),
        "-o",
        "json",
    ];
    let child = lb
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_for(
        "the apply to be under way",
        std::time::Duration::from_secs(60),
        || in_alpha(&api) > 5,
    );
    run_ok(std::process::Command::new("kill").args(["-INT", &child.id().to_string()]));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("interrupted after"), "{stderr}");
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report["interrupted"], true);
    let handled = report["objects"].as_array().unwrap().len();
    assert!(handled > 0, "{report}");
    assert!(in_alpha(&api) < 41, "interrupted before the end");
    // The rerun goes on from where it stopped.
    let rerun = json(&lb.ok(&args));
    assert_eq!(rerun["interrupted"], false);
    assert_eq!(rerun["failures"], 0, "{rerun}");
    assert_eq!(in_alpha(&api), 41, "40 ConfigMaps and kube-root-ca.crt");
    assert_eq!(
        api.get("configmaps", Some("alpha"), "cm-00039")
            .map(|c| c["data"]["index"].clone()),
        Some(serde_json::json!("39"))
    );
}

fn in_alpha(api: &KubeApi) -> usize {
    api.list("configmaps")
        .iter()
        .filter(|c| c["metadata"]["namespace"] == "alpha")
        .count()
}
