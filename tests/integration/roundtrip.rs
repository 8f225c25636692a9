//! A snapshot of tens of MB goes to the store and comes back: backup, list, verify, restore to a
//! file, restore that into a new data dir with etcd's own tool, and an etcd started on it serves
//! the original keys and values. For etcd 3.5 and 3.4, `file://` and two S3 servers (moto and
//! s3s-fs, which check different things: s3s-fs verifies signatures and stores on disk).

use crate::support::etcd::{Etcd, Version, require_version};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::support::s3::{Moto, S3sFs, Server, require_moto, require_s3s_fs};

/// Where a round trip stores its backup.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    File,
    Moto,
    S3sFs,
}

/// 400 keys × 64 KiB ≈ 25 MiB of etcd data.
const KEYS: usize = 400;
const VALUE: usize = 64 * 1024;

async fn round_trip(version: Version, target: Target) {
    let Some(bin) = require_version(version) else {
        return;
    };
    let server = match target {
        Target::File => None,
        Target::Moto => match require_moto() {
            Some(b) => Some(Server::Moto(Moto::start(&b))),
            None => return,
        },
        Target::S3sFs => match require_s3s_fs() {
            Some(b) => Some(Server::S3sFs(S3sFs::start(&b))),
            None => return,
        },
    };
    let mut etcd = Etcd::start(version, &bin);
    let expected = etcd.seed(KEYS, VALUE).await;
    let store_dir = crate::support::tempdir();
    let store = match &server {
        Some(m) => {
            m.create_bucket("backups");
            StoreAt::S3 {
                endpoint: m.endpoint().to_string(),
                bucket: "backups".into(),
                prefix: "lifeboat/eu".into(),
            }
        }
        None => StoreAt::File(store_dir.path().join("store")),
    };
    let lb = Lifeboat::new(Setup::new(store, &etcd.client_url));

    let out = lb.ok(&["backup", "etcd"]);
    assert!(out.contains("complete"), "{out}");
    let listing = lb.list();
    let backups = listing["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{listing}");
    let m = &backups[0];
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["version"], 1);
    assert_eq!(m["kind"], "etcd");
    assert_eq!(m["cluster"], "test-cluster");
    let want_version = if version == Version::V35 {
        "3.5."
    } else {
        "3.4."
    };
    assert!(
        m["etcd"]["server_version"]
            .as_str()
            .unwrap()
            .starts_with(want_version),
        "{m}"
    );
    assert!(m["etcd"]["revision"].as_i64().unwrap() >= KEYS as i64);
    assert_ne!(m["etcd"]["cluster_id"], "0");
    let plain = m["payload"]["plain_size"].as_u64().unwrap();
    assert!(plain > (KEYS * VALUE) as u64, "{m}");
    assert_eq!(
        m["payload"]["plain_size"].as_u64().unwrap(),
        m["etcd"]["db_size"].as_u64().unwrap() + 32
    );
    assert!(
        m["payload"]["stored_size"].as_u64().unwrap() < plain,
        "zstd should shrink the snapshot: {m}"
    );
    assert_eq!(
        m["payload"]["encryption"]["recipients"][0],
        lb.public_key.as_str()
    );
    assert_eq!(m["payload"]["name"], "snapshot.db.zst.age");
    assert!(listing["incomplete"].as_array().unwrap().is_empty());

    let out = lb.ok(&["verify", "latest"]);
    assert!(out.contains("intact"), "{out}");
    let out = lb.ok(&["verify", &id, "--identity", lb.identity.to_str().unwrap()]);
    assert!(out.contains("is good"), "{out}");

    let snap = lb.path("snap.db");
    lb.ok(&[
        "restore",
        "etcd",
        "--backup",
        &id,
        "--identity",
        lb.identity.to_str().unwrap(),
        "--to-file",
        snap.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::metadata(&snap).unwrap().len(), plain);

    // The cluster is lost; bring it back from the file alone.
    etcd.kill();
    let data_dir = lb.path("restored-data");
    etcd.restore_snapshot(&snap, &data_dir);
    let restored = Etcd::start_with(version, &bin, None, Some(&data_dir));
    let got = restored.dump().await;
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "restored values differ from the originals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd35_to_file_store_and_back() {
    round_trip(Version::V35, Target::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd35_to_s3_and_back() {
    round_trip(Version::V35, Target::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd34_to_file_store_and_back() {
    round_trip(Version::V34, Target::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd34_to_s3_and_back() {
    round_trip(Version::V34, Target::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd35_to_s3s_fs_and_back() {
    round_trip(Version::V35, Target::S3sFs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd34_to_s3s_fs_and_back() {
    round_trip(Version::V34, Target::S3sFs).await;
}
