//! Restore drills: a backup is restored into a throwaway etcd and checked against its manifest,
//! with etcd 3.5 (etcdutl) and 3.4 (etcdctl); a manifest that claims more than the backup holds
//! fails the drill; and `serve` runs drills on a schedule and reports them as a metric.

use std::time::Duration;

use crate::support::etcd::{Etcd, Version, require_version};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::support::serve::Serve;
use crate::support::{free_port, metric};

async fn drill_passes(version: Version) {
    let Some(bin) = require_version(version) else {
        return;
    };
    let etcd = Etcd::start(version, &bin);
    etcd.seed(150, 1024).await;
    let store = crate::support::tempdir();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(store.path().to_path_buf()),
        &etcd.client_url,
    ));
    lb.ok(&["backup", "etcd"]);
    let recorded = lb.list()["backups"][0]["etcd"]["key_count"]
        .as_u64()
        .expect("the manifest records the key count");
    assert!(recorded >= 150);
    let out = lb.ok(&[
        "drill",
        "--identity",
        lb.identity.to_str().unwrap(),
        "--etcd-bin-dir",
        bin.to_str().unwrap(),
    ]);
    assert!(
        out.contains("passed")
            && out.contains(&format!(
                "holds {recorded} keys at the recorded revision, as the manifest recorded"
            )),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_restores_into_a_throwaway_etcd35_and_matches_the_manifest() {
    drill_passes(Version::V35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_works_with_etcd34_tools() {
    drill_passes(Version::V34).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_claims_more_than_the_backup_holds_fails_the_drill() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(30, 512).await;
    let store = crate::support::tempdir();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(store.path().to_path_buf()),
        &etcd.client_url,
    ));
    lb.ok(&["backup", "etcd"]);
    let id = lb.backup_ids().pop().unwrap();
    let path = store
        .path()
        .join(format!("test-cluster/etcd/{id}/manifest.json"));
    let mut m: serde_json::Value = serde_json::from_str(&crate::support::read(&path)).unwrap();
    let claimed = m["etcd"]["key_count"].as_u64().unwrap() + 5;
    m["etcd"]["key_count"] = claimed.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let err = lb.fails(&[
        "drill",
        "--identity",
        lb.identity.to_str().unwrap(),
        "--etcd-bin-dir",
        bin.to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!("but the manifest recorded {claimed}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_drills_on_a_schedule_and_exports_the_result() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(20, 512).await;
    let store = crate::support::tempdir();
    let port = free_port();
    let mut setup = Setup::new(StoreAt::File(store.path().to_path_buf()), &etcd.client_url);
    let lb0 = Lifeboat::new(setup.clone());
    setup.extra = format!(
        "schedules:\n  etcd:\n    cron: \"@yearly\"\n  drill:\n    cron: \"*/2 * * * * *\"\ndrill:\n  identity_file: {}\n  etcd_bin_dir: {}\nserver:\n  listen: 127.0.0.1:{port}\n",
        lb0.identity.display(),
        bin.display()
    );
    let mut lb = lb0;
    lb.write_config(&setup);
    let serve = Serve::start(&lb, port, "drill");
    serve
        .wait_for(
            "lifeboat_drill_last_success_timestamp_seconds{cluster=\"test-cluster\"}",
            Duration::from_secs(60),
            |v| v > 1.7e9,
        )
        .await;
    assert!(
        metric(
            &serve.metrics(),
            "lifeboat_drill_runs_total{cluster=\"test-cluster\",result=\"success\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(serve.terminate(Duration::from_secs(30)).await, 0);
}

/// Regression: the drill's calls to the etcd it starts had no timeout, so an etcd that accepts
/// connections and never answers hung the drill (and the service's drill schedule) forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_against_an_etcd_that_never_answers_fails_within_its_limits() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(10, 256).await;
    let store = crate::support::tempdir();
    let mut setup = Setup::new(StoreAt::File(store.path().to_path_buf()), &etcd.client_url);
    setup.etcd_timeout = "2s".into();
    let lb = Lifeboat::new(setup);
    lb.ok(&["backup", "etcd"]);

    // A bin dir whose etcd listens on the drill's client port, accepts, and never answers.
    let fake = crate::support::tempdir();
    for tool in ["etcdutl", "etcdctl"] {
        std::os::unix::fs::symlink(bin.join(tool), fake.path().join(tool)).unwrap();
    }
    let script = fake.path().join("etcd");
    std::fs::write(
        &script,
        "#!/bin/sh\nexec python3 - \"$@\" <<'PY'\nimport socket, sys\nurl = [a for a in sys.argv[1:] if a.startswith('--listen-client-urls=')][0]\nport = int(url.rsplit(':', 1)[1])\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', port))\ns.listen(64)\nheld = []\nwhile True:\n    held.append(s.accept()[0])\nPY\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let mut cmd = tokio::process::Command::from(lb.cmd());
    cmd.args([
        "drill",
        "--identity",
        lb.identity.to_str().unwrap(),
        "--etcd-bin-dir",
        fake.path().to_str().unwrap(),
        "--boot-timeout",
        "12s",
    ])
    .kill_on_drop(true);
    let started = std::time::Instant::now();
    // Generous for a loaded machine, and far below "forever".
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("the drill hung instead of timing out")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("did not answer within 12s")
            && err.contains("accepted the connection but sent no answer within 2s"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
