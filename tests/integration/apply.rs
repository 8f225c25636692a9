//! `restore resources --apply` against the test API server, with the real kubectl doing what an
//! engineer (or an accident) does to the cluster in between: a deleted namespace comes back
//! whole while every other object keeps its resourceVersion; a fresh cluster gets a CRD and its
//! custom resources in one run; `--dry-run` stores nothing; `--existing skip|update` and a
//! field-manager conflict behave as documented.

use std::process::Command;

use serde_json::Value;

use crate::resources::{EXPORTED, exporter};
use crate::support::kube_api::{KubeApi, Seed};
use crate::support::lifeboat::Lifeboat;
use crate::support::{require, run_ok, which};

/// An object with what the server sets (and the export cleans) removed, for comparing an
/// original with its restored copy.
fn comparable(mut obj: Value) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "managedFields",
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "generation",
                "selfLink",
            ] {
                meta.remove(f);
            }
        }
        if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
            // Services get new cluster IPs on restore, by design.
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    }
    obj
}

pub(crate) fn kubectl_on(api: &KubeApi, lb: &Lifeboat) -> Option<Command> {
    let kubectl = require("kubectl", which("kubectl"))?;
    let kubeconfig = lb.path("kubectl-kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let mut cmd = Command::new(kubectl);
    cmd.arg("--kubeconfig").arg(kubeconfig);
    Some(cmd)
}

pub(crate) fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// Resource versions of every object outside `namespace`, by resource/namespace/name.
fn versions_outside(api: &KubeApi, namespace: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for resource in EXPORTED {
        for obj in api.list(resource) {
            if obj["metadata"]["namespace"].as_str() == Some(namespace)
                || (*resource == "namespaces" && obj["metadata"]["name"] == namespace)
            {
                continue;
            }
            out.push((
                format!(
                    "{resource}/{}/{}",
                    obj["metadata"]["namespace"].as_str().unwrap_or(""),
                    obj["metadata"]["name"].as_str().unwrap()
                ),
                obj["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_comes_back_whole_and_nothing_else_is_touched() {
    let api = KubeApi::start(Seed::Standard(20));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    let Some(mut kubectl) = kubectl_on(&api, &lb) else {
        return;
    };
    lb.ok(&["backup", "resources"]);
    let originals: Vec<(String, Value)> = EXPORTED
        .iter()
        .flat_map(|r| api.list(r).into_iter().map(move |o| (r.to_string(), o)))
        .filter(|(r, o)| {
            o["metadata"]["namespace"] == "alpha"
                || (r == "namespaces" && o["metadata"]["name"] == "alpha")
        })
        .collect();
    assert!(
        originals.len() > 60,
        "alpha holds objects: {}",
        originals.len()
    );

    run_ok(kubectl.args(["delete", "namespace", "alpha"]));
    assert!(api.get("namespaces", None, "alpha").is_none());
    let untouched = versions_outside(&api, "alpha");

    let out = lb.ok(&[
        "restore",
        "resources",
        "--apply",
        "--namespace",
        "alpha",
        "--identity",
        lb.identity.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(report["failures"], 0, "{out}");
    for (resource, original) in &originals {
        let name = original["metadata"]["name"].as_str().unwrap();
        let ns = original["metadata"]["namespace"].as_str();
        let restored = api
            .get(resource, ns, name)
            .unwrap_or_else(|| panic!("{resource} {ns:?}/{name} was not restored:\n{out}"));
        // The namespace's own default ServiceAccount and root CA are made by the cluster
        // (here: the test server's namespace controller) and are left alone.
        let made_by_cluster =
            name == "kube-root-ca.crt" || (resource == "serviceaccounts" && name == "default");
        if !made_by_cluster {
            assert_eq!(
                comparable(restored),
                comparable(original.clone()),
                "{resource} {name} is restored as it was"
            );
        }
    }
    assert_eq!(
        versions_outside(&api, "alpha"),
        untouched,
        "objects outside alpha keep their resourceVersions"
    );
    // Every object is reported, with what happened to it.
    let outcomes: Vec<&str> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["outcome"].as_str().unwrap())
        .collect();
    assert!(outcomes.contains(&"created"), "{out}");
    let cm = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"]["name"] == "kube-root-ca.crt")
        .unwrap();
    assert_eq!(cm["outcome"], "skipped", "{cm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_cluster_gets_the_crd_and_its_custom_resources_in_one_run() {
    let api = KubeApi::start(Seed::Standard(10));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    lb.ok(&["backup", "resources"]);
    let fresh = KubeApi::start(Seed::Empty);
    assert!(
        fresh
            .get(
                "customresourcedefinitions.apiextensions.k8s.io",
                None,
                "widgets.example.com"
            )
            .is_none()
    );
    // The target's config never restores Services.
    let target = exporter(
        &fresh,
        store.path(),
        "  restore_skip_resources: [services]\n",
    );
    let out = target.ok(&[
        "restore",
        "resources",
        "--apply",
        "--identity",
        lb.identity.to_str().unwrap(),
    ]);
    assert_eq!(
        fresh.count("widgets.example.com"),
        api.count("widgets.example.com"),
        "{out}"
    );
    for resource in [
        "configmaps",
        "secrets",
        "deployments.apps",
        "clusterroles.rbac.authorization.k8s.io",
    ] {
        assert_eq!(
            fresh.count(resource),
            api.count(resource),
            "{resource}:\n{out}"
        );
    }
    assert_eq!(fresh.count("services"), 0, "{out}");
    assert!(
        out.contains("skipped: services is in the skip list"),
        "{out}"
    );
    // Leases are held by running components, so they are not restored.
    assert_eq!(fresh.count("leases.coordination.k8s.io"), 0, "{out}");
    assert!(
        out.contains("Summary:") && out.contains("widgets.example.com:"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_stores_nothing_and_says_what_would_happen() {
    let api = KubeApi::start(Seed::Standard(10));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    let Some(mut kubectl) = kubectl_on(&api, &lb) else {
        return;
    };
    lb.ok(&["backup", "resources"]);
    run_ok(kubectl.args(["delete", "namespace", "beta"]));
    api.clear_requests();
    let before = api.resource_version();
    let listed_before: Vec<Value> = EXPORTED.iter().flat_map(|r| api.list(r)).collect();
    let out = lb.ok(&[
        "restore",
        "resources",
        "--apply",
        "--dry-run",
        "--namespace",
        "beta",
        "--identity",
        lb.identity.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let report = json(&out);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["failures"], 0, "{out}");
    // The namespace would be created; what lives in it cannot be checked until it exists,
    // and the report says so.
    assert_eq!(report["summary"]["namespaces"]["created"], 1, "{out}");
    assert!(
        report["summary"]["configmaps"]["unchecked"]
            .as_u64()
            .unwrap()
            > 5,
        "{out}"
    );
    let unchecked = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["outcome"] == "unchecked")
        .unwrap();
    assert!(
        unchecked["reason"]
            .as_str()
            .unwrap()
            .contains("namespace beta does not exist yet"),
        "{unchecked}"
    );
    assert_eq!(api.resource_version(), before, "a dry run writes nothing");
    let listed_after: Vec<Value> = EXPORTED.iter().flat_map(|r| api.list(r)).collect();
    assert_eq!(
        listed_after, listed_before,
        "the server's objects are byte-for-byte the same"
    );
    assert!(api.get("namespaces", None, "beta").is_none());
    // Every write carried dryRun=All.
    let writes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| matches!(r.method.as_str(), "PATCH" | "POST" | "PUT" | "DELETE"))
        .collect();
    assert!(!writes.is_empty());
    for w in &writes {
        assert!(
            w.query.contains("dryRun=All"),
            "{} {}?{} without dryRun",
            w.method,
            w.path,
            w.query
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_changed_since_the_backup_is_left_alone_updated_or_reported_in_conflict() {
    let api = KubeApi::start(Seed::Standard(10));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    let Some(mut kubectl) = kubectl_on(&api, &lb) else {
        return;
    };
    lb.ok(&["backup", "resources"]);
    // Someone edits a ConfigMap by hand after the backup.
    run_ok(kubectl.args([
        "-n",
        "gamma",
        "patch",
        "configmap",
        "cm-00003",
        "--type=merge",
        "-p",
        r#"{"data":{"index":"edited"}}"#,
    ]));
    let apply = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "resources",
            "--apply",
            "--namespace",
            "gamma",
            "--resource",
            "configmaps",
            "--name",
            "cm-00003",
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        lb.run(&args)
    };
    let outcome_of = |out: &std::process::Output| {
        let report = json(&String::from_utf8_lossy(&out.stdout));
        // The namespace's own Namespace object comes along; the ConfigMap is the one asked for.
        report["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["object"]["name"] == "cm-00003")
            .unwrap()
            .clone()
    };

    let skip = apply(&[]);
    assert!(skip.status.success());
    let r = outcome_of(&skip);
    assert_eq!(r["outcome"], "left-alone", "{r}");
    assert_eq!(r["fields"], serde_json::json!(["data.index"]), "{r}");
    let live = api.get("configmaps", Some("gamma"), "cm-00003").unwrap();
    assert_eq!(live["data"]["index"], "edited");

    let update = apply(&["--existing", "update"]);
    assert!(!update.status.success(), "a conflict is a failure");
    let r = outcome_of(&update);
    assert_eq!(r["outcome"], "conflict", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("--force-conflicts"),
        "{r}"
    );
    let stderr = String::from_utf8_lossy(&update.stderr);
    assert!(stderr.contains("could not be applied"), "{stderr}");
    assert_eq!(
        api.get("configmaps", Some("gamma"), "cm-00003").unwrap()["data"]["index"],
        "edited"
    );

    let forced = apply(&["--existing", "update", "--force-conflicts"]);
    assert!(forced.status.success());
    let r = outcome_of(&forced);
    assert_eq!(r["outcome"], "updated", "{r}");
    assert_eq!(
        api.get("configmaps", Some("gamma"), "cm-00003").unwrap()["data"]["index"],
        "3"
    );
}

/// Changes made with kubectl between two exports: one ConfigMap deleted, one edited, one
/// created, and one Secret's value changed.
fn change_things(kubectl: &mut dyn FnMut() -> Command) {
    run_ok(kubectl().args(["-n", "alpha", "delete", "configmap", "cm-00001"]));
    run_ok(kubectl().args([
        "-n",
        "alpha",
        "patch",
        "configmap",
        "cm-00002",
        "--type=merge",
        "-p",
        r#"{"data":{"index":"two"}}"#,
    ]));
    run_ok(kubectl().args([
        "-n",
        "alpha",
        "create",
        "configmap",
        "brand-new",
        "--from-literal=k=v",
    ]));
    run_ok(kubectl().args([
        "-n",
        "alpha",
        "patch",
        "secret",
        "secret-00004",
        "--type=merge",
        "-p",
        r#"{"data":{"password":"c3dvcmRmaXNo"}}"#,
    ]));
}

/// The ids of the resource exports, oldest first.
fn export_ids(lb: &Lifeboat) -> Vec<String> {
    json(&lb.ok(&["list", "--kind", "resources", "-o", "json"]))["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

fn names(report: &Value, change: &str) -> Vec<String> {
    report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["change"] == change)
        .map(|e| {
            format!(
                "{} {}",
                e["object"]["kind"].as_str().unwrap(),
                e["object"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_shows_exactly_what_changed_between_two_exports_and_against_the_live_cluster() {
    let api = KubeApi::start(Seed::Standard(10));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    let Some(kubectl) = kubectl_on(&api, &lb) else {
        return;
    };
    lb.ok(&["backup", "resources"]);
    let before = export_ids(&lb)[0].clone();
    let program = kubectl.get_program().to_owned();
    let kubeconfig_args: Vec<_> = kubectl.get_args().map(|a| a.to_owned()).collect();
    let mut kubectl = || {
        let mut c = Command::new(&program);
        c.args(&kubeconfig_args);
        c
    };
    change_things(&mut kubectl);

    // Against the live cluster, with the identity: the Secret is compared by hash.
    let identity = lb.identity.to_str().unwrap().to_string();
    let live = json(&lb.ok(&[
        "diff",
        "--backup",
        &before,
        "--namespace",
        "alpha",
        "--identity",
        &identity,
        "-o",
        "json",
    ]));
    assert_eq!(names(&live, "added"), ["ConfigMap brand-new"], "{live}");
    assert_eq!(names(&live, "removed"), ["ConfigMap cm-00001"], "{live}");
    assert_eq!(
        names(&live, "changed"),
        ["ConfigMap cm-00002", "Secret secret-00004"],
        "{live}"
    );
    let entries = live["entries"].as_array().unwrap();
    let cm = entries
        .iter()
        .find(|e| e["object"]["name"] == "cm-00002")
        .unwrap();
    let d = cm["diff"].as_str().unwrap();
    assert!(d.contains("+  index: two"), "{d}");
    let secret = entries
        .iter()
        .find(|e| e["object"]["name"] == "secret-00004")
        .unwrap();
    assert_eq!(secret["concealed"], true);
    assert!(secret.get("diff").is_none(), "{secret}");
    assert!(
        !live.to_string().contains("c3dvcmRmaXNo"),
        "no Secret value in the report"
    );

    // Between two exports, in text, with the Secret shown on request.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lb.ok(&["backup", "resources"]);
    let after = export_ids(&lb)[1].clone();
    let text = lb.ok(&[
        "diff",
        "--backup",
        &before,
        "--against",
        &after,
        "--namespace",
        "alpha",
        "--identity",
        &identity,
        "--show-secrets",
    ]);
    assert!(text.contains("+ ConfigMap alpha/brand-new"), "{text}");
    assert!(text.contains("- ConfigMap alpha/cm-00001"), "{text}");
    assert!(text.contains("+  password: c3dvcmRmaXNo"), "{text}");
    assert!(text.contains("1 added, 1 removed, 2 changed"), "{text}");

    // Without the identity, Secrets are not compared (and not shown as added or removed).
    let blind = json(&lb.ok(&[
        "diff",
        "--backup",
        &before,
        "--namespace",
        "alpha",
        "-o",
        "json",
    ]));
    assert_eq!(names(&blind, "changed"), ["ConfigMap cm-00002"], "{blind}");
    assert!(
        blind["not_compared"][0]
            .as_str()
            .unwrap()
            .contains("pass --identity"),
        "{blind}"
    );
    // An unchanged cluster diffs clean against its own export.
    let clean = json(&lb.ok(&[
        "diff",
        "--backup",
        &after,
        "--identity",
        &identity,
        "-o",
        "json",
    ]));
    assert_eq!(clean["entries"], serde_json::json!([]), "{clean}");
}

fn not_compared(report: &Value) -> Vec<String> {
    report["not_compared"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// Regression: with `resources.exclude_resources: [configmaps]`, every ConfigMap of the
/// export was reported "removed" against live; the encrypted count covered the whole export
/// whatever the selection; a selection matching nothing printed 0/0/0/0 and exited 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_sets_aside_unlisted_resources_counts_selected_secrets_and_refuses_an_empty_selection()
{
    let api = KubeApi::start(Seed::Standard(10));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    lb.ok(&["backup", "resources"]);
    let before = export_ids(&lb)[0].clone();

    // Another config over the same store, excluding configmaps (besides the default events)
    // from the live listing.
    let excluding = exporter(
        &api,
        store.path(),
        "  exclude_resources: [events, events.events.k8s.io, configmaps]\n",
    );
    let beta_configmaps = api
        .list("configmaps")
        .iter()
        .filter(|o| o["metadata"]["namespace"] == "beta")
        .count();
    assert!(beta_configmaps > 0);
    let live = json(&excluding.ok(&[
        "diff",
        "--backup",
        &before,
        "--namespace",
        "beta",
        "-o",
        "json",
    ]));
    assert_eq!(live["removed"], 0, "{live}");
    assert_eq!(live["added"], 0, "{live}");
    assert!(
        not_compared(&live).contains(&format!(
            "{beta_configmaps} objects of configmaps: not listed from the live cluster (excluded by resources.* in the config, or not served)"
        )),
        "{live}"
    );

    // Only the encrypted objects the selection picks are counted, on each side.
    let configmaps = json(&lb.ok(&[
        "diff",
        "--backup",
        &before,
        "--namespace",
        "alpha",
        "--resource",
        "configmaps",
        "-o",
        "json",
    ]));
    assert!(
        !not_compared(&configmaps)
            .iter()
            .any(|n| n.contains("encrypted")),
        "{configmaps}"
    );
    let alpha_secrets = api
        .list("secrets")
        .iter()
        .filter(|o| o["metadata"]["namespace"] == "alpha")
        .count();
    assert!(alpha_secrets > 0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lb.ok(&["backup", "resources"]);
    let after = export_ids(&lb)[1].clone();
    let secrets = json(&lb.ok(&[
        "diff",
        "--backup",
        &before,
        "--against",
        &after,
        "--namespace",
        "alpha",
        "--resource",
        "secrets",
        "-o",
        "json",
    ]));
    for id in [&before, &after] {
        assert!(
            not_compared(&secrets).contains(&format!(
                "{id}: {alpha_secrets} encrypted objects (Secrets) are not compared: pass --identity"
            )),
            "{secrets}"
        );
    }

    // A selection that matches nothing on either side is refused.
    let err = lb.fails(&[
        "diff",
        "--backup",
        &before,
        "--namespace",
        "no-such-namespace",
    ]);
    assert!(
        err.contains("or the live cluster matches the selection (--namespace, --resource, --name, --selector)"),
        "{err}"
    );
}

/// Regression: a Secret whose labels changed (data unchanged) was reported only as "contents
/// differ; compared by hash".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_of_a_concealed_secret_shows_its_label_change_and_names_changed_values() {
    let api = KubeApi::start(Seed::Standard(10));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    let Some(kubectl) = kubectl_on(&api, &lb) else {
        return;
    };
    lb.ok(&["backup", "resources"]);
    let before = export_ids(&lb)[0].clone();
    let program = kubectl.get_program().to_owned();
    let kubeconfig_args: Vec<_> = kubectl.get_args().map(|a| a.to_owned()).collect();
    let kubectl = || {
        let mut c = Command::new(&program);
        c.args(&kubeconfig_args);
        c
    };
    run_ok(kubectl().args(["-n", "alpha", "label", "secret", "secret-00003", "tier=db"]));
    run_ok(kubectl().args([
        "-n",
        "alpha",
        "patch",
        "secret",
        "secret-00004",
        "--type=merge",
        "-p",
        r#"{"data":{"password":"c3dvcmRmaXNo"}}"#,
    ]));
    let identity = lb.identity.to_str().unwrap().to_string();
    let args = [
        "diff",
        "--backup",
        &before,
        "--namespace",
        "alpha",
        "--resource",
        "secrets",
        "--identity",
        &identity,
    ];
    let report = json(&lb.ok(&[&args[..], &["-o", "json"]].concat()));
    assert_eq!(
        names(&report, "changed"),
        ["Secret secret-00003", "Secret secret-00004"],
        "{report}"
    );
    let entries = report["entries"].as_array().unwrap();
    let labelled = &entries[0];
    assert_eq!(labelled["concealed"], true);
    let d = labelled["diff"].as_str().unwrap();
    assert!(d.contains("+    tier: db"), "{d}");
    assert!(labelled.get("hidden_values").is_none(), "{labelled}");
    let valued = &entries[1];
    assert!(valued.get("diff").is_none(), "{valued}");
    assert_eq!(valued["hidden_values"], serde_json::json!(["password"]));
    let text = lb.ok(&args);
    assert!(
        text.contains(
            "values of data keys password differ (hidden; --identity --show-secrets shows them)"
        ),
        "{text}"
    );
    for value in api
        .list("secrets")
        .iter()
        .filter(|o| o["metadata"]["namespace"] == "alpha")
        .flat_map(|o| {
            o["data"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_values()
        })
    {
        let value = value.as_str().unwrap().to_string();
        assert!(
            !report.to_string().contains(&value) && !text.contains(&value),
            "no Secret value in the report: {value}"
        );
    }
    assert!(!report.to_string().contains("c3dvcmRmaXNo") && !text.contains("c3dvcmRmaXNo"));
}
