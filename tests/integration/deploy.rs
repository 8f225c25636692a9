//! deploy/lifeboat.yaml is accepted by a Kubernetes API server: the real kubectl applies it
//! server-side to the test API server, and the objects are there afterwards. Its embedded
//! lifeboat.yaml is a valid configuration.

use std::process::Command;

use crate::support::kube_api::{KubeApi, Seed};
use crate::support::{require, run_ok, which};

#[test]
fn the_deploy_manifests_apply_and_their_config_parses() {
    let Some(kubectl) = require("kubectl", which("kubectl")) else {
        return;
    };
    let api = KubeApi::start(Seed::Empty);
    let dir = crate::support::tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/lifeboat.yaml");
    let kc = || {
        let mut c = Command::new(&kubectl);
        c.arg("--kubeconfig").arg(&kubeconfig);
        c
    };
    // As on a real API server, a server-side dry run of namespaced objects needs the namespace.
    run_ok(kc().args(["create", "namespace", "lifeboat"]));
    run_ok(
        kc().args(["apply", "--server-side", "--dry-run=server", "-f"])
            .arg(&manifest),
    );
    assert!(
        api.get("deployments.apps", Some("lifeboat"), "lifeboat")
            .is_none(),
        "a dry run stores nothing"
    );
    run_ok(kc().args(["apply", "--server-side", "-f"]).arg(&manifest));
    let deployment = api
        .get("deployments.apps", Some("lifeboat"), "lifeboat")
        .expect("deployment applied");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(
        api.get(
            "roles.rbac.authorization.k8s.io",
            Some("lifeboat"),
            "lifeboat-leader-election"
        )
        .is_some()
    );

    // The config inside the ConfigMap is valid (with its files provided).
    let cm = api
        .get("configmaps", Some("lifeboat"), "lifeboat")
        .expect("configmap applied");
    let (_files, text) =
        crate::support::with_scratch_files(cm["data"]["lifeboat.yaml"].as_str().unwrap());
    let cfg = lifeboat::config::Config::parse(std::path::Path::new("configmap"), &text).unwrap();
    assert_eq!(cfg.plans.len(), 2);
    assert!(cfg.leader_election.is_some());
}
