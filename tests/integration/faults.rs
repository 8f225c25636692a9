//! Faults: each ends in one clear error, exit code 1, no manifest, no multipart upload left
//! open, and `list` never shows a backup that is not whole.

use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use crate::support::etcd::{Etcd, Version, require_version};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::support::proxy::Proxy;
use crate::support::s3::{Moto, require_moto};

fn s3(moto: &Moto, endpoint: &str) -> StoreAt {
    moto.create_bucket("backups");
    StoreAt::S3 {
        endpoint: endpoint.to_string(),
        bucket: "backups".into(),
        prefix: "faults".into(),
    }
}

/// Runs `lifeboat backup etcd` in the background while `watch` runs; returns stderr.
pub(crate) async fn backup_while(
    lb: &Lifeboat,
    watch: impl std::future::Future<Output = ()>,
) -> String {
    let mut cmd = tokio::process::Command::from(lb.cmd());
    cmd.args(["backup", "etcd"]);
    let run = cmd.output();
    tokio::pin!(run);
    tokio::pin!(watch);
    let mut watching = true;
    let out = loop {
        tokio::select! {
            out = &mut run => break out.unwrap(),
            _ = &mut watch, if watching => watching = false,
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the backup should fail:\n{stderr}"
    );
    stderr
}

pub(crate) async fn when(mut cond: impl FnMut() -> bool, then: impl FnOnce()) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    then();
}

/// The last line lifeboat printed: the error.
pub(crate) fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rfind(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_stopped_mid_upload() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let Some(moto_bin) = require_moto() else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(300, 64 * 1024).await;
    let moto = Moto::start(&moto_bin);
    let proxy = Proxy::start(moto.port).await;
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let mut setup = Setup::new(s3(&moto, &endpoint), &etcd.client_url);
    setup.retry_timeout = "2s".into();
    setup.extra = String::new();
    let lb = Lifeboat::new(setup);

    let p = proxy.clone();
    let stderr = backup_while(
        &lb,
        when(move || p.up_total() > 6 * 1024 * 1024, move || proxy.stop()),
    )
    .await;
    let err = error_line(&stderr);
    assert!(
        err.contains("uploading s3://backups/faults/test-cluster/etcd/"),
        "{err}"
    );
    assert!(
        err.contains("lifecycle rule"),
        "the message says what happens to the parts: {err}"
    );
    assert_eq!(
        moto.open_multipart_uploads("backups"),
        1,
        "the store was unreachable, so the upload stays open"
    );

    // Nothing that is not whole is ever listed, through the store's own eyes either.
    let direct = lb_with_endpoint(&lb, &moto);
    assert!(direct.backup_ids().is_empty());
    let objects: Vec<_> =
        futures::TryStreamExt::try_collect::<Vec<_>>(moto.client("backups").list(None))
            .await
            .unwrap();
    assert!(
        objects
            .iter()
            .all(|o| !o.location.as_ref().ends_with("manifest.json")),
        "{objects:?}"
    );
}

/// The same lifeboat, pointed at the S3 server directly instead of through the proxy.
fn lb_with_endpoint(lb: &Lifeboat, moto: &Moto) -> Lifeboat {
    let text = crate::support::read(&lb.config);
    let dir = crate::support::tempdir();
    let config = dir.path().join("direct.yaml");
    let replaced = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("endpoint:") {
                format!("    endpoint: {}", moto.endpoint)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, replaced).unwrap();
    Lifeboat {
        dir,
        config,
        identity: lb.identity.clone(),
        public_key: lb.public_key.clone(),
        store: lb.store.clone(),
        cluster: lb.cluster.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_connections_dropping_mid_upload_abort_the_upload() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let Some(moto_bin) = require_moto() else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(300, 64 * 1024).await;
    let moto = Moto::start(&moto_bin);
    let proxy = Proxy::start(moto.port).await;
    // Every connection dies after 1 MiB: small requests pass, no part upload ever completes.
    proxy.cut_up_after(1024 * 1024);
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let mut setup = Setup::new(s3(&moto, &endpoint), &etcd.client_url);
    setup.retry_timeout = "2s".into();
    let lb = Lifeboat::new(setup);
    let stderr = lb.fails(&["backup", "etcd"]);
    let err = error_line(&stderr);
    assert!(err.contains("uploading s3://backups/faults/"), "{err}");
    assert!(
        err.contains("the partial upload was aborted; nothing was left behind"),
        "{err}"
    );
    assert_eq!(
        moto.open_multipart_uploads("backups"),
        0,
        "abort() must leave no parts behind"
    );
    assert!(lb.backup_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stopped_mid_stream() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let Some(moto_bin) = require_moto() else {
        return;
    };
    let mut etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(300, 64 * 1024).await;
    let moto = Moto::start(&moto_bin);
    let proxy = Proxy::start(etcd.client_url.rsplit(':').next().unwrap().parse().unwrap()).await;
    proxy.throttle_down(4 * 1024 * 1024);
    let lb = Lifeboat::new(Setup::new(
        s3(&moto, &moto.endpoint),
        &format!("http://127.0.0.1:{}", proxy.port),
    ));
    let p = proxy.clone();
    let stderr = backup_while(
        &lb,
        when(move || p.down_total() > 3 * 1024 * 1024, || etcd.kill()),
    )
    .await;
    let err = error_line(&stderr);
    assert!(
        err.contains("the snapshot stream from etcd at http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("run the backup again"), "{err}");
    assert_eq!(moto.open_multipart_uploads("backups"), 0);
    assert!(lb.backup_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_file_store_is_caught_and_nothing_is_restored() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(50, 16 * 1024).await;
    let store = crate::support::tempdir();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(store.path().to_path_buf()),
        &etcd.client_url,
    ));
    lb.ok(&["backup", "etcd"]);
    let id = lb.backup_ids().pop().unwrap();
    let object = store
        .path()
        .join(format!("test-cluster/etcd/{id}/snapshot.db.zst.age"));
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&object, &bytes).unwrap();

    for args in [
        vec!["verify", "latest"],
        vec![
            "verify",
            "latest",
            "--identity",
            lb.identity.to_str().unwrap(),
        ],
    ] {
        let err = lb.fails(&args);
        assert!(
            error_line(&err).contains("does not match its manifest"),
            "{err}"
        );
        assert!(error_line(&err).contains("use another backup"), "{err}");
    }
    let snap = lb.path("snap.db");
    let err = lb.fails(&[
        "restore",
        "etcd",
        "--identity",
        lb.identity.to_str().unwrap(),
        "--to-file",
        snap.to_str().unwrap(),
    ]);
    assert!(
        error_line(&err).contains("does not match its manifest"),
        "{err}"
    );
    assert!(
        !snap.exists(),
        "no snapshot file may appear from a damaged backup"
    );
    assert!(
        std::fs::read_dir(lb.dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("partial"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_object_in_s3_is_caught() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let Some(moto_bin) = require_moto() else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(50, 16 * 1024).await;
    let moto = Moto::start(&moto_bin);
    let lb = Lifeboat::new(Setup::new(s3(&moto, &moto.endpoint), &etcd.client_url));
    lb.ok(&["backup", "etcd"]);
    let id = lb.backup_ids().pop().unwrap();
    let client = moto.client("backups");
    let key = ObjectPath::from(format!("faults/test-cluster/etcd/{id}/snapshot.db.zst.age"));
    let bytes = client.get(&key).await.unwrap().bytes().await.unwrap();
    client
        .put(&key, bytes.slice(..bytes.len() - 1000).into())
        .await
        .unwrap();
    let err = lb.fails(&["verify", &id, "--identity", lb.identity.to_str().unwrap()]);
    assert!(
        error_line(&err).contains("does not match its manifest"),
        "{err}"
    );
    assert!(
        error_line(&err).contains(&format!("found {} bytes", bytes.len() - 1000)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_identity_is_refused_by_name() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(10, 1024).await;
    let store = crate::support::tempdir();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(store.path().to_path_buf()),
        &etcd.client_url,
    ));
    lb.ok(&["backup", "etcd"]);
    let other = lb.path("other.txt");
    lb.ok(&["keygen", "--output-file", other.to_str().unwrap()]);
    let err = lb.fails(&["verify", "latest", "--identity", other.to_str().unwrap()]);
    let line = error_line(&err);
    assert!(line.contains("none of the identities in"), "{line}");
    assert!(
        line.contains(&lb.public_key),
        "the message names the right recipient: {line}"
    );
    let snap = lb.path("snap.db");
    lb.fails(&[
        "restore",
        "etcd",
        "--identity",
        other.to_str().unwrap(),
        "--to-file",
        snap.to_str().unwrap(),
    ]);
    assert!(!snap.exists());
    let err = lb.fails(&["restore", "etcd", "--to-file", snap.to_str().unwrap()]);
    assert!(error_line(&err).contains("pass --identity"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_named_before_etcd_is_touched() {
    let Some(moto_bin) = require_moto() else {
        return;
    };
    let moto = Moto::start(&moto_bin);
    let store = StoreAt::S3 {
        endpoint: moto.endpoint.clone(),
        bucket: "no-such-bucket".into(),
        prefix: "x".into(),
    };
    // The etcd endpoint does not exist: the store check comes first.
    let lb = Lifeboat::new(Setup::new(
        store,
        &format!("http://127.0.0.1:{}", crate::support::free_port()),
    ));
    let err = lb.fails(&["backup", "etcd"]);
    let line = error_line(&err);
    assert!(line.contains("does not exist: create it"), "{line}");
    assert!(line.contains("no-such-bucket"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_fail_fast_and_clearly() {
    let store = crate::support::tempdir();
    let dead = format!("http://127.0.0.1:{}", crate::support::free_port());
    let mut setup = Setup::new(StoreAt::File(store.path().to_path_buf()), &dead);
    setup.etcd_timeout = "3s".into();
    let lb = Lifeboat::new(setup.clone());
    let started = std::time::Instant::now();
    let err = lb.fails(&["backup", "etcd"]);
    assert!(
        error_line(&err).contains(&format!("cannot connect to etcd at {dead}")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(lb.backup_ids().is_empty());

    let mut lb = lb;
    setup.store = StoreAt::S3 {
        endpoint: format!("http://127.0.0.1:{}", crate::support::free_port()),
        bucket: "b".into(),
        prefix: "p".into(),
    };
    setup.retry_timeout = "1s".into();
    lb.write_config(&setup);
    let err = lb.fails(&["list"]);
    assert!(error_line(&err).contains("cannot reach the store"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_right_ca_works_and_a_mismatch_is_explained() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let pki_dir = crate::support::tempdir();
    let Some(pki) = crate::support::tls::make(pki_dir.path()) else {
        return;
    };
    let tls = crate::support::etcd::ServerTls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: pki.ca.clone(),
    };
    let etcd = Etcd::start_with(Version::V35, &bin, Some(&tls), None);
    let store = crate::support::tempdir();
    let mut setup = Setup::new(StoreAt::File(store.path().to_path_buf()), &etcd.client_url);
    setup.etcd_timeout = "5s".into();
    setup.etcd_tls = Some((
        pki.ca.clone(),
        Some((pki.client_cert.clone(), pki.client_key.clone())),
    ));
    let mut lb = Lifeboat::new(setup.clone());
    lb.ok(&["backup", "etcd"]);
    assert_eq!(lb.backup_ids().len(), 1);

    setup.etcd_tls = Some((
        pki.other_ca.clone(),
        Some((pki.client_cert.clone(), pki.client_key.clone())),
    ));
    lb.write_config(&setup);
    let err = lb.fails(&["backup", "etcd"]);
    let line = error_line(&err);
    assert!(
        line.contains("TLS with etcd at https://127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains("ca_file"), "{line}");
    assert_eq!(lb.backup_ids().len(), 1, "the failed run adds nothing");
}

/// Regression: when a part upload failed while more encoded data was still coming, the uploader
/// kept its channel open, the encoder and the etcd stream blocked on full channels, and the
/// backup hung forever with etcd's read transaction open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_upload_does_not_hang_the_pipeline() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let Some(moto_bin) = require_moto() else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(800, 64 * 1024).await;
    let moto = Moto::start(&moto_bin);
    let proxy = Proxy::start(moto.port).await;
    proxy.cut_up_after(1024 * 1024);
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let mut setup = Setup::new(s3(&moto, &endpoint), &etcd.client_url);
    setup.retry_timeout = "1s".into();
    setup.part_size_mib = 5;
    setup.upload_concurrency = 1;
    let lb = Lifeboat::new(setup);
    let mut cmd = tokio::process::Command::from(lb.cmd());
    cmd.args(["backup", "etcd"]).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the backup hung after its upload failed")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        error_line(&stderr).contains("uploading s3://backups/faults/"),
        "{stderr}"
    );
    assert_eq!(moto.open_multipart_uploads("backups"), 0);
}
