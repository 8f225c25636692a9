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
