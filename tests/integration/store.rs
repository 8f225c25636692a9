//! The store against every implementation lifeboat meets: object_store's InMemory, a `file://`
//! directory, moto and s3s-fs (two independent S3 servers), and the ways they differ from what
//! the code assumes: a gateway that drops `If-None-Match`, a slow link, a link that goes silent,
//! a manifest that lies about its directory, a clock that runs ahead, a killed `file://` upload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures::TryStreamExt;
use lifeboat::manifest::{
    BackupId, Compression, Encryption, FORMAT_VERSION, Kind, MANIFEST_NAME, Manifest, Payload,
};
use lifeboat::store::{self, Selector, Store};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use sha2::{Digest, Sha256};

use crate::support::etcd::{Etcd, Version, require_version};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::support::proxy::Proxy;
use crate::support::s3::{Moto, Server, require_moto};
use crate::support::tamper::Tamper;
use crate::support::{require, test_value, which};

const CLUSTER: &str = "c1";

/// A config with one etcd plan and `retention`, for the plan prune needs.
fn plan_config(url: &str, retention: &str) -> lifeboat::config::Config {
    let text = format!(
        "cluster: {CLUSTER}\nstorage:\n  url: {url}\nencryption: {{allow_unencrypted: true}}\netcd: {{endpoints: [http://127.0.0.1:1]}}\nschedules:\n  etcd:\n    cron: \"@daily\"\n    retention: {retention}\n    sweep_incomplete_after: 1h\n"
    );
    lifeboat::config::Config::parse(std::path::Path::new("test.yaml"), &text).unwrap()
}

/// Stores `payload` as backup `id` started at `started`, manifest last, like a backup run.
async fn put_backup(store: &Store, id: &BackupId, payload: &[u8]) -> Manifest {
    put_backup_of(store, CLUSTER, id, payload).await
}

/// [`put_backup`] for another cluster.
async fn put_backup_of(store: &Store, cluster: &str, id: &BackupId, payload: &[u8]) -> Manifest {
    let dir = store.backup_dir(cluster, Kind::Etcd, id);
    store
        .put(
            &dir.clone().join("snapshot.db.zst"),
            Bytes::copy_from_slice(payload),
        )
        .await
        .unwrap();
    let m = Manifest {
        version: FORMAT_VERSION,
        id: id.clone(),
        cluster: cluster.into(),
        kind: Kind::Etcd,
        started_at: id.time(),
        finished_at: id.time() + chrono::Duration::seconds(5),
        lifeboat_version: "test".into(),
        etcd: None,
        resources: None,
        payload: Payload {
            name: "snapshot.db.zst".into(),
            plain_size: payload.len() as u64,
            stored_size: payload.len() as u64,
            stored_sha256: hex(&Sha256::digest(payload)),
            compression: Compression {
                algorithm: "zstd".into(),
                level: 3,
            },
            encryption: Encryption {
                scheme: lifeboat::manifest::Scheme::None,
                recipients: vec![],
            },
        },
    };
    store.commit(&m).await.unwrap();
    m
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn id_at(secs_ago: i64, suffix: u64) -> BackupId {
    let t = chrono::DateTime::from_timestamp(Utc::now().timestamp() - secs_ago, 0).unwrap();
    BackupId::new(t, suffix)
}

/// One conformance run: everything the store promises, on one implementation.
async fn conformance(store: Store, label: &str) {
    // The create-only probe passes on a store that honours it, the first time and every time.
    store.probe_create_only(CLUSTER).await.unwrap();
    store.probe_create_only(CLUSTER).await.unwrap();

    // An id directory with anything in it is never used for a new backup.
    let taken = id_at(3600, 0xfeed);
    store
        .ensure_unused(CLUSTER, Kind::Etcd, &taken)
        .await
        .unwrap();
    let payload = test_value(7, 2 * 1024 * 1024 + 12345);
    let first = put_backup(&store, &taken, &payload).await;
    let err = store
        .ensure_unused(CLUSTER, Kind::Etcd, &taken)
        .await
        .unwrap_err();
    assert!(
        matches!(err, store::Error::IdTaken { .. }),
        "{label}: {err}"
    );
    // The manifest is create-only, on every store.
    let err = store.commit(&first).await.unwrap_err();
    assert!(
        matches!(err, store::Error::CommitExists { .. }),
        "{label}: {err}"
    );

    // Ranged download: parts of the store's part size, delivered in order, whole.
    let key = store
        .backup_dir(CLUSTER, Kind::Etcd, &taken)
        .join("snapshot.db.zst");
    let parts: Vec<Bytes> = store
        .read_stream(&key)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(parts.len() >= 3, "{label}: {} parts", parts.len());
    assert_eq!(
        parts.concat(),
        payload,
        "{label}: the ranged download differs"
    );

    // A manifest copied into another (newer) directory describes another backup: unreadable,
    // and `latest` refuses instead of stepping over it.
    let newer = id_at(1800, 0xbeef);
    let newer_dir = store.backup_dir(CLUSTER, Kind::Etcd, &newer);
    store
        .put(
            &newer_dir.clone().join(MANIFEST_NAME),
            Bytes::from(first.to_json()),
        )
        .await
        .unwrap();
    let listing = store.list(CLUSTER, Kind::Etcd).await.unwrap();
    assert_eq!(listing.complete.len(), 1, "{label}");
    assert_eq!(listing.unreadable.len(), 1, "{label}");
    assert!(
        listing.unreadable[0].reason.contains("not the directory"),
        "{label}: {:?}",
        listing.unreadable
    );
    let err = store
        .resolve(CLUSTER, Kind::Etcd, &Selector::Latest)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(newer.as_str()), "{label}: {text}");
    assert!(
        text.contains(&format!("--backup {taken}")),
        "{label}: names the newest readable: {text}"
    );
    // By id, the lying manifest is refused as well.
    let err = store
        .resolve(CLUSTER, Kind::Etcd, &Selector::Id(newer.clone()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not the directory"),
        "{label}: {err}"
    );

    // An oversized manifest is refused before its body is read.
    let huge = id_at(900, 0xabcd);
    store
        .put(
            &store
                .backup_dir(CLUSTER, Kind::Etcd, &huge)
                .join(MANIFEST_NAME),
            Bytes::from(vec![b' '; 2 << 20]),
        )
        .await
        .unwrap();
    let listing = store.list(CLUSTER, Kind::Etcd).await.unwrap();
    let reasons: Vec<_> = listing
        .unreadable
        .iter()
        .map(|u| u.reason.clone())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("more than the 1048576 bytes")),
        "{label}: {reasons:?}"
    );

    // The store's clock is readable and close to ours (all run on this machine).
    let clock = store.clock(CLUSTER).await.unwrap();
    assert!(
        (clock - Utc::now()).num_seconds().abs() < 60,
        "{label}: store clock {clock}"
    );

    // Retention refuses a clock 40 days ahead, and deletes nothing. (A clock running ahead
    // once deleted 3 of 4 backups under max_age: 30d.)
    // Only the plan's retention matters here, not its store.
    let cfg = plan_config("file:///nonexistent", "{keep_last: 1, max_age: 30d}");
    let plan = &cfg.plans[0];
    let second = id_at(600, 0x1234);
    put_backup(&store, &second, b"second").await;
    let before = store
        .list(CLUSTER, Kind::Etcd)
        .await
        .unwrap()
        .complete
        .len();
    let err = lifeboat::prune::prune(
        &store,
        CLUSTER,
        plan,
        Utc::now() + chrono::Duration::days(40),
        false,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, lifeboat::prune::Error::Clock(_)),
        "{label}: {err}"
    );
    assert!(
        err.to_string().contains("deleted nothing"),
        "{label}: {err}"
    );
    let after = store.list(CLUSTER, Kind::Etcd).await.unwrap();
    assert_eq!(after.complete.len(), before, "{label}: nothing deleted");
    // With a sane clock the same prune deletes the older backup and keeps the newest.
    let report = lifeboat::prune::prune(&store, CLUSTER, plan, Utc::now(), false)
        .await
        .unwrap();
    assert_eq!(report.deleted, 1, "{label}");
    assert_eq!(
        report.unreadable, 2,
        "{label}: unreadable manifests are left alone"
    );
    let left = store.list(CLUSTER, Kind::Etcd).await.unwrap();
    assert_eq!(
        left.complete
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>(),
        vec![second],
        "{label}"
    );
    // The lying manifest's directory is not where retention deleted anything.
    assert_eq!(left.unreadable.len(), 2, "{label}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_its_promises_on_memory_file_moto_and_s3s_fs() {
    let part = 1 << 20;
    conformance(
        Store::from_object_store(Arc::new(InMemory::new()), "memory://", part),
        "InMemory",
    )
    .await;

    let dir = crate::support::tempdir();
    let cfg = plan_config(
        &format!("file://{}", dir.path().display()),
        "{keep_last: 1}",
    );
    let mut storage = cfg.storage.clone();
    storage.part_size = part;
    conformance(Store::open(&storage).unwrap(), "file://").await;

    let servers = Server::all();
    if crate::support::under_ci() {
        assert_eq!(servers.len(), 2, "both S3 servers run under CI");
    }
    for server in &servers {
        server.create_bucket("conformance");
        let store =
            Store::from_object_store(server.client("conformance"), "s3://conformance", part);
        conformance(store, server.name()).await;
    }
}

/// 64 random bits per id: ten thousand runs in the same second never share a directory.
#[test]
fn ids_of_runs_in_the_same_second_never_collide() {
    let now = Utc::now();
    let ids: std::collections::BTreeSet<_> =
        (0..10_000).map(|_| lifeboat::backup::new_id(now)).collect();
    assert_eq!(ids.len(), 10_000);
    let suffix = ids
        .first()
        .unwrap()
        .as_str()
        .rsplit_once('-')
        .unwrap()
        .1
        .to_string();
    assert_eq!(suffix.len(), 16, "{suffix}");
}

/// A gateway (or an S3 server) that ignores If-None-Match would let an id collision overwrite a
/// committed backup: lifeboat refuses to back up there, before etcd is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_ignores_if_none_match_is_refused() {
    let Some(moto_bin) = require_moto() else {
        return;
    };
    let moto = Moto::start(&moto_bin);
    moto.create_bucket("backups");
    let tamper = Tamper::start(moto.port).await;
    tamper.strip_if_none_match();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::S3 {
            endpoint: format!("http://127.0.0.1:{}", tamper.port),
            bucket: "backups".into(),
            prefix: "strip".into(),
        },
        // No etcd listens here: the store is refused first.
        "http://127.0.0.1:1",
    ));
    let stderr = lb.fails(&["backup", "etcd"]);
    assert!(
        stderr.contains("does not refuse overwriting an existing object"),
        "{stderr}"
    );
    let objects: Vec<_> = moto
        .client("backups")
        .list(None)
        .try_collect()
        .await
        .unwrap();
    assert!(
        objects
            .iter()
            .all(|o| o.location.as_ref().contains("/.lifeboat/")),
        "only the probe was written: {objects:?}"
    );
}

/// Seeds etcd with about `mib` MiB that compress to about half, backs it up to `moto`
/// directly, and returns the lifeboat set up for it.
async fn backed_up(etcd: &Etcd, moto: &Moto, prefix: &str, mib: usize) -> Lifeboat {
    etcd.seed(mib * 16, 64 * 1024).await;
    moto.create_bucket("backups");
    let mut setup = Setup::new(
        StoreAt::S3 {
            endpoint: moto.endpoint.clone(),
            bucket: "backups".into(),
            prefix: prefix.into(),
        },
        &etcd.client_url,
    );
    setup.part_size_mib = 5;
    let lb = Lifeboat::new(setup);
    lb.ok(&["backup", "etcd"]);
    lb
}

/// Rewrites `lb`'s config to reach the store through `port`, with these timeouts.
fn through(lb: &Lifeboat, port: u16, request_timeout: &str, retry_timeout: &str) -> Lifeboat {
    let mut setup = Setup::new(
        StoreAt::S3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: "backups".into(),
            prefix: match &lb.store {
                StoreAt::S3 { prefix, .. } => prefix.clone(),
                StoreAt::File(_) => unreachable!(),
            },
        },
        "http://127.0.0.1:1",
    );
    setup.part_size_mib = 5;
    setup.request_timeout = request_timeout.into();
    setup.retry_timeout = retry_timeout.into();
    let mut other = Lifeboat::new(setup.clone());
    other.public_key = lb.public_key.clone();
    std::fs::copy(&lb.identity, &other.identity).unwrap();
    other.write_config(&setup);
    other
}

/// One GET for the whole payload, bounded by request_timeout and retried for retry_timeout,
/// failed every download slower than about 1.2 GB/min. Now a slow link only takes longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_much_longer_than_retry_timeout_still_verifies() {
    let (Some(bin), Some(moto_bin)) = (require_version(Version::V35), require_moto()) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    let moto = Moto::start(&moto_bin);
    let lb = backed_up(&etcd, &moto, "slow", 24).await;
    let stored = lb.list()["backups"][0]["payload"]["stored_size"]
        .as_u64()
        .unwrap();
    assert!(stored > 10 << 20, "a payload of several parts: {stored}");

    let proxy = Proxy::start(moto.port).await;
    // Generous timeouts for a loaded 2-core machine, where moto can be slow to answer at all;
    // the link is still slow enough that the download takes several times retry_timeout.
    proxy.throttle_down(120 * 1024);
    let slow = through(&lb, proxy.port, "4s", "8s");
    let started = Instant::now();
    let out = slow.ok(&[
        "verify",
        "latest",
        "--identity",
        slow.identity.to_str().unwrap(),
    ]);
    let took = started.elapsed();
    assert!(out.contains(&stored.to_string()), "{out}");
    assert!(
        took > Duration::from_secs(16),
        "the link was slow enough to outlast retry_timeout (8s) twice: {took:?}"
    );
    assert!(
        proxy.down_total() >= stored,
        "every byte came through the proxy"
    );
}

/// A link that goes silent for longer than request_timeout mid-download is asked again and the
/// download resumes where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_goes_silent_resumes() {
    let (Some(bin), Some(moto_bin)) = (require_version(Version::V35), require_moto()) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    let moto = Moto::start(&moto_bin);
    let lb = backed_up(&etcd, &moto, "silent", 16).await;
    let tamper = Tamper::start(moto.port).await;
    tamper.stall_once(3 << 20, Duration::from_secs(5));
    let quiet = through(&lb, tamper.port, "2s", "20s");
    let restored = quiet.path("snap.db");
    quiet.ok(&[
        "restore",
        "etcd",
        "--backup",
        "latest",
        "--identity",
        quiet.identity.to_str().unwrap(),
        "--to-file",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(tamper.stalls(), 1, "the link did go silent");
    assert!(restored.is_file());
}

/// Connections cut every 2 MiB: each part resumes on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_whose_connections_keep_breaking_resumes() {
    let (Some(bin), Some(moto_bin)) = (require_version(Version::V35), require_moto()) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    let moto = Moto::start(&moto_bin);
    let lb = backed_up(&etcd, &moto, "cut", 16).await;
    let proxy = Proxy::start(moto.port).await;
    proxy.cut_down_after(2 << 20);
    let flaky = through(&lb, proxy.port, "5s", "20s");
    flaky.ok(&[
        "verify",
        "latest",
        "--identity",
        flaky.identity.to_str().unwrap(),
    ]);
}

/// A corrupt newest manifest was hidden: `verify latest` verified the older backup and exited 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_newest_manifest_is_not_stepped_over() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(20, 1024).await;
    let dir = crate::support::tempdir();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(dir.path().to_path_buf()),
        &etcd.client_url,
    ));
    lb.ok(&["backup", "etcd"]);
    std::thread::sleep(Duration::from_millis(1100));
    lb.ok(&["backup", "etcd"]);
    let ids = lb.backup_ids();
    assert_eq!(ids.len(), 2);
    let newest = dir
        .path()
        .join(&lb.cluster)
        .join("etcd")
        .join(&ids[1])
        .join(MANIFEST_NAME);
    std::fs::write(&newest, b"{\"version\": 1, \"id\": trunc").unwrap();

    for args in [
        vec!["verify", "latest"],
        vec!["restore", "etcd", "--backup", "latest", "--to-file", "x.db"],
    ] {
        let mut args = args;
        let identity = lb.identity.to_str().unwrap().to_string();
        args.extend(["--identity", identity.as_str()]);
        let stderr = lb.fails(&args);
        assert!(
            stderr.contains(&ids[1]),
            "{args:?} names the broken one: {stderr}"
        );
        assert!(
            stderr.contains(&format!("--backup {}", ids[0])),
            "{args:?} names the one to use instead: {stderr}"
        );
    }
    let out = lb.ok(&["list"]);
    assert!(out.contains("UNREADABLE MANIFESTS (1)"), "{out}");
    assert!(out.contains(&ids[1]), "{out}");
    lb.ok(&["verify", &ids[0]]);
}

/// A killed upload to a file:// store leaves `<payload>#<n>` staging files that object_store's
/// listing hides; they were never swept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_files_of_a_killed_file_upload_are_swept() {
    let dir = crate::support::tempdir();
    let url = format!("file://{}", dir.path().display());
    let cfg = plan_config(&url, "{keep_last: 3}");
    let store = Store::open(&cfg.storage).unwrap();
    let kind_dir = dir.path().join(CLUSTER).join("etcd");
    let old = kind_dir.join(id_at(7200, 1).as_str());
    let fresh = kind_dir.join(id_at(60, 2).as_str());
    for d in [&old, &fresh] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("snapshot.db.zst.age#1"), b"half an upload").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(old.join("snapshot.db.zst.age#1"))
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();

    let listing = store.list(CLUSTER, Kind::Etcd).await.unwrap();
    assert_eq!(listing.incomplete.len(), 2, "{:?}", listing.incomplete);
    let report = lifeboat::prune::prune(&store, CLUSTER, &cfg.plans[0], Utc::now(), false)
        .await
        .unwrap();
    assert_eq!(report.swept, 1);
    assert!(!old.exists(), "the abandoned upload's directory is gone");
    assert!(
        fresh.join("snapshot.db.zst.age#1").exists(),
        "an upload younger than the grace period may still be running"
    );
}

/// `prune` on a node whose clock ran 40 days ahead deleted 3 of 4 backups (max_age: 30d).
/// The real binary under libfaketime, against moto whose clock is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_with_the_node_clock_40_days_ahead_deletes_nothing() {
    let Some(moto_bin) = require_moto() else {
        return;
    };
    let Some(faketime) = require("faketime (apt-get install faketime)", which("faketime")) else {
        return;
    };
    let moto = Moto::start(&moto_bin);
    moto.create_bucket("backups");
    let store = Store::from_object_store(moto.client("backups"), "s3://backups", 5 << 20);
    let mut setup = Setup::new(
        StoreAt::S3 {
            endpoint: moto.endpoint.clone(),
            bucket: "backups".into(),
            prefix: String::new(),
        },
        "http://127.0.0.1:1",
    );
    setup.extra =
        "schedules:\n  etcd:\n    cron: \"@daily\"\n    retention: {max_age: 30d}\n".into();
    let lb = Lifeboat::new(setup);
    for i in 0..4 {
        let id = id_at(3600 * (4 - i), i as u64 + 1);
        put_backup_of(&store, &lb.cluster, &id, b"payload").await;
    }
    // With the right clock, max_age 30d keeps all four hours-old backups.
    lb.ok(&["prune"]);
    assert_eq!(lb.backup_ids().len(), 4);
    let mut cmd = std::process::Command::new(&faketime);
    cmd.args(["-f", "+40d"])
        .arg(crate::support::lifeboat::bin())
        .arg("--config")
        .arg(&lb.config)
        .arg("prune")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("AWS_ACCESS_KEY_ID", crate::support::s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", crate::support::s3::SECRET_KEY);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a clock 40 days ahead must not prune: {stderr}"
    );
    assert!(stderr.contains("store's clock says"), "{stderr}");
    assert!(stderr.contains("deleted nothing"), "{stderr}");
    assert_eq!(lb.backup_ids().len(), 4, "nothing was deleted");
}

/// The fault tests ran only against moto: the same cut, mid-upload, against s3s-fs (which
/// stores parts on disk and checks signatures) leaves no backup and says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_s3s_fs_cut_mid_way_leaves_no_backup() {
    let (Some(bin), Some(s3s_bin)) = (
        require_version(Version::V35),
        crate::support::s3::require_s3s_fs(),
    ) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(300, 64 * 1024).await;
    let s3s = crate::support::s3::S3sFs::start(&s3s_bin);
    s3s.create_bucket("backups");
    let proxy = Proxy::start(s3s.port).await;
    let mut setup = Setup::new(
        StoreAt::S3 {
            endpoint: format!("http://127.0.0.1:{}", proxy.port),
            bucket: "backups".into(),
            prefix: "cut".into(),
        },
        &etcd.client_url,
    );
    setup.retry_timeout = "2s".into();
    setup.part_size_mib = 5;
    let lb = Lifeboat::new(setup);
    let p = proxy.clone();
    let stderr = crate::faults::backup_while(
        &lb,
        crate::faults::when(move || p.up_total() > 6 * 1024 * 1024, move || proxy.stop()),
    )
    .await;
    let err = crate::faults::error_line(&stderr);
    assert!(err.contains("uploading s3://backups/cut/"), "{err}");
    let objects: Vec<_> = s3s
        .client("backups")
        .list(None)
        .try_collect()
        .await
        .unwrap();
    assert!(
        objects
            .iter()
            .all(|o| !o.location.as_ref().ends_with(MANIFEST_NAME)),
        "no manifest, so no backup: {objects:?}"
    );
}
