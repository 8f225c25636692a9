//! The backup run, prune and fetch in-process on object_store's `InMemory`, with a test
//! producer instead of etcd: what the run commits, what a failure or a cancel leaves behind,
//! what retention deletes, and what fetch catches. Milliseconds each, beside the real-server
//! tests of the same paths.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use lifeboat::encode;
use lifeboat::keys::Identities;
use lifeboat::manifest::{BackupId, EtcdSource, Kind, MANIFEST_NAME, Manifest, Scheme, Source};
use lifeboat::progress::Progress;
use lifeboat::source::{Output, Produced, Producer, Started};
use lifeboat::store::Store;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "mem-1";
/// Small parts, so a payload of under a MiB is a real multipart upload.
const PART: usize = 256 << 10;

/// A store on a fresh `InMemory`, and the `InMemory` itself to look at every object.
fn store() -> (Store, Arc<InMemory>) {
    let mem = Arc::new(InMemory::new());
    (
        Store::from_object_store(mem.clone(), "memory://", PART),
        mem,
    )
}

/// An etcd-like snapshot: `db_size` pseudo-random (incompressible) bytes and their sha256.
fn snapshot(db_size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out: Vec<u8> = (0..db_size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let hash = Sha256::digest(&out);
    out.extend_from_slice(&hash);
    out
}

/// How the test producer ends.
#[derive(Clone)]
enum End {
    /// After the last chunk, with the facts.
    Done,
    /// With an error of its own after `n` chunks.
    FailAfter(usize),
    /// Cancels the run after `n` chunks, then waits forever (a stream that hangs).
    CancelAfter(usize, CancellationToken),
}

/// A producer of an etcd snapshot from memory, in 32 KiB chunks like etcd's.
struct TestSnapshot {
    bytes: Vec<u8>,
    end: End,
}

impl Producer for TestSnapshot {
    fn kind(&self) -> Kind {
        Kind::Etcd
    }

    fn stem(&self) -> &'static str {
        "snapshot.db"
    }

    fn expected_size(&self) -> Option<u64> {
        Some(self.bytes.len() as u64)
    }

    fn log_start(&self, _id: &BackupId) {}

    async fn produce(self, _run: &Started, out: Output) -> Produced<Source> {
        let mut check = lifeboat::snapshot::TrailerCheck::new();
        for (i, chunk) in self.bytes.chunks(32 * 1024).enumerate() {
            match &self.end {
                End::FailAfter(n) if i == *n => {
                    return Produced::Failed(
                        lifeboat::source::etcd::Error::Stream {
                            endpoint: "test://producer".into(),
                            received: check.bytes_seen(),
                            reason: "the test producer broke off".into(),
                        }
                        .into(),
                    );
                }
                End::CancelAfter(n, cancel) if i == *n => {
                    cancel.cancel();
                    std::future::pending::<()>().await;
                }
                _ => {}
            }
            check.update(chunk);
            if out.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                return Produced::Cancelled;
            }
        }
        let verified = check.finish().expect("the test snapshot carries its hash");
        Produced::Done(Source::Etcd(EtcdSource {
            endpoint: "test://producer".into(),
            server_version: "3.5.0".into(),
            cluster_id: "c1".into(),
            member_id: "m1".into(),
            revision: 7,
            db_size: verified.db_size,
            snapshot_sha256: verified.sha256,
            key_count: Some(3),
        }))
    }
}

fn encrypted_to(identity: &age::x25519::Identity) -> encode::Settings {
    encode::Settings {
        level: 1,
        recipients: Some(vec![identity.to_public()]),
    }
}

/// zstd level 1, no age: for tests where encryption plays no part (age is slow in debug builds).
fn plain() -> encode::Settings {
    encode::Settings {
        level: 1,
        recipients: None,
    }
}

fn identities(identity: age::x25519::Identity) -> Arc<Identities> {
    Arc::new(Identities {
        path: "test-identity.txt".into(),
        public_keys: vec![identity.to_public().to_string()],
        identities: vec![Box::new(identity)],
        others: 0,
    })
}

async fn run(
    store: &Store,
    bytes: Vec<u8>,
    end: End,
    settings: encode::Settings,
    cancel: &CancellationToken,
    progress: Arc<Progress>,
) -> Result<Manifest, lifeboat::Error> {
    lifeboat::backup::run(
        TestSnapshot { bytes, end },
        store,
        CLUSTER,
        settings,
        cancel,
        progress,
    )
    .await
}

/// Every object key in the store outside lifeboat's probe directory.
async fn keys(mem: &InMemory) -> Vec<String> {
    let all: Vec<_> = mem.list(None).try_collect().await.unwrap();
    let mut keys: Vec<String> = all
        .into_iter()
        .map(|m| m.location.to_string())
        .filter(|k| !k.contains("/.lifeboat/"))
        .collect();
    keys.sort();
    keys
}

/// The stored bytes of `key`, read past lifeboat's own reads (which cap a whole read at 1 MiB).
async fn stored(mem: &InMemory, key: &object_store::path::Path) -> Bytes {
    mem.get(key).await.unwrap().bytes().await.unwrap()
}

fn payload_key(store: &Store, m: &Manifest) -> object_store::path::Path {
    store
        .backup_dir(&m.cluster, m.kind, &m.id)
        .join(m.payload.name.as_str())
}

#[tokio::test]
async fn a_run_commits_one_manifest_matching_what_is_stored() {
    let (store, mem) = store();
    let identity = age::x25519::Identity::generate();
    let snap = snapshot(800 << 10, 1);
    let progress = Arc::new(Progress::default());
    let m = run(
        &store,
        snap.clone(),
        End::Done,
        encrypted_to(&identity),
        &CancellationToken::new(),
        progress.clone(),
    )
    .await
    .unwrap();

    let listing = store.list(CLUSTER, Kind::Etcd).await.unwrap();
    assert_eq!(listing.complete, vec![m.clone()], "exactly this manifest");
    assert!(listing.incomplete.is_empty() && listing.unreadable.is_empty());
    let dir = store.backup_dir(CLUSTER, Kind::Etcd, &m.id);
    assert_eq!(
        keys(&mem).await,
        vec![
            dir.clone().join(MANIFEST_NAME).to_string(),
            dir.join("snapshot.db.zst.age").to_string()
        ]
    );

    let stored = stored(&mem, &payload_key(&store, &m)).await;
    assert_eq!(m.payload.stored_size, stored.len() as u64);
    assert_eq!(
        m.payload.stored_sha256,
        lifeboat::snapshot::hex(&Sha256::digest(&stored))
    );
    assert_eq!(m.payload.plain_size, snap.len() as u64);
    assert_eq!(m.payload.encryption.scheme, Scheme::Age);
    assert_eq!(
        m.payload.encryption.recipients,
        vec![identity.to_public().to_string()]
    );
    let etcd = m.etcd.as_ref().unwrap();
    assert_eq!(etcd.db_size, (snap.len() - 32) as u64);
    assert_eq!(
        etcd.snapshot_sha256,
        lifeboat::snapshot::hex(&snap[snap.len() - 32..])
    );
    assert_eq!(
        (progress.done(), progress.total()),
        (snap.len() as u64, Some(snap.len() as u64)),
        "progress counts every byte the producer handed on"
    );

    // Fetch decrypts, decompresses and checks etcd's hash, and writes the very snapshot back.
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("snapshot.db");
    let outcome = lifeboat::restore::fetch(&store, &m, Some(identities(identity)), Some(&path))
        .await
        .unwrap();
    assert!(outcome.stored_ok && outcome.decoded);
    assert_eq!(std::fs::read(&path).unwrap(), snap);
}

#[tokio::test]
async fn an_unencrypted_run_names_and_records_its_payload_so() {
    let (store, _mem) = store();
    let settings = encode::Settings {
        level: 3,
        recipients: None,
    };
    let m = run(
        &store,
        snapshot(100_000, 2),
        End::Done,
        settings,
        &CancellationToken::new(),
        Arc::default(),
    )
    .await
    .unwrap();
    assert_eq!(m.payload.name, "snapshot.db.zst");
    assert_eq!(m.payload.encryption.scheme, Scheme::None);
    assert!(m.payload.encryption.recipients.is_empty());
    assert_eq!(m.payload.compression.level, 3);
    let outcome = lifeboat::restore::fetch(&store, &m, None, None)
        .await
        .unwrap();
    assert!(
        outcome.decoded,
        "an unencrypted payload is checked through without a key"
    );
}

#[tokio::test]
async fn a_producer_failing_mid_stream_leaves_no_manifest_and_no_payload() {
    let (store, mem) = store();
    let err = run(
        &store,
        // 1.5 MiB before the failure: the encoder has handed on a 1 MiB chunk and parts of it
        // are uploaded, so the abort has something to remove.
        snapshot(2 << 20, 3),
        End::FailAfter(48),
        plain(),
        &CancellationToken::new(),
        Arc::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            lifeboat::Error::Etcd(lifeboat::source::etcd::Error::Stream { .. })
        ),
        "the producer's own error is the root cause: {err}"
    );
    let listing = store.list(CLUSTER, Kind::Etcd).await.unwrap();
    assert!(listing.complete.is_empty(), "no manifest");
    assert!(listing.incomplete.is_empty(), "no payload");
    assert_eq!(keys(&mem).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_cancelled_run_leaves_no_manifest_and_no_payload() {
    let (store, mem) = store();
    let cancel = CancellationToken::new();
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        run(
            &store,
            snapshot(2 << 20, 4),
            End::CancelAfter(48, cancel.clone()),
            plain(),
            &cancel,
            Arc::default(),
        ),
    )
    .await
    .expect("a cancel ends the run even while the producer hangs")
    .unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
    let listing = store.list(CLUSTER, Kind::Etcd).await.unwrap();
    assert!(listing.complete.is_empty() && listing.incomplete.is_empty());
    assert_eq!(keys(&mem).await, Vec::<String>::new());
}

#[tokio::test]
async fn fetch_detects_a_flipped_byte_in_a_backup_the_run_made() {
    let (store, mem) = store();
    let identity = age::x25519::Identity::generate();
    let m = run(
        &store,
        snapshot(200_000, 5),
        End::Done,
        encrypted_to(&identity),
        &CancellationToken::new(),
        Arc::default(),
    )
    .await
    .unwrap();
    let key = payload_key(&store, &m);
    let mut bytes = stored(&mem, &key).await.to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    mem.put(&key, Bytes::from(bytes).into()).await.unwrap();
    for ids in [None, Some(identities(identity))] {
        let with_key = ids.is_some();
        let err = lifeboat::restore::fetch(&store, &m, ids, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, lifeboat::restore::Error::Damaged { .. }),
            "with key {with_key}: {err}"
        );
    }
}

/// A copy of `m` (payload included) as if it had been taken at `at`.
async fn backup_at(store: &Store, m: &Manifest, at: DateTime<Utc>, suffix: u64) -> Manifest {
    let mut copy = m.clone();
    copy.id = BackupId::new(at, suffix);
    copy.started_at = at;
    copy.finished_at = at + chrono::Duration::seconds(5);
    let payload = store.read_all(&payload_key(store, m)).await.unwrap();
    store
        .put(&payload_key(store, &copy), payload)
        .await
        .unwrap();
    store.commit(&copy).await.unwrap();
    copy
}

#[tokio::test]
async fn prune_keeps_and_deletes_per_policy() {
    let (store, mem) = store();
    let newest = run(
        &store,
        snapshot(50_000, 6),
        End::Done,
        plain(),
        &CancellationToken::new(),
        Arc::default(),
    )
    .await
    .unwrap();
    let now = newest.finished_at + chrono::Duration::seconds(1);
    let mut older = Vec::new();
    for days in 1..=5 {
        older.push(
            backup_at(
                &store,
                &newest,
                now - chrono::Duration::days(days),
                days as u64,
            )
            .await,
        );
    }
    let plan = lifeboat::config::Plan {
        name: "etcd".into(),
        kind: Kind::Etcd,
        schedule: lifeboat::policy::schedule::Schedule::parse("0 0 * * * *", "UTC").unwrap(),
        retention: Some(lifeboat::policy::retention::RetentionPolicy {
            daily: Some(3),
            ..Default::default()
        }),
        retries: 0,
        retry_backoff: Duration::from_secs(1),
        sweep_incomplete_after: Duration::from_secs(3600),
    };

    let dry = lifeboat::prune::prune(&store, CLUSTER, &plan, now, true)
        .await
        .unwrap();
    assert_eq!(dry.deleted, 0);
    assert_eq!(
        store
            .list(CLUSTER, Kind::Etcd)
            .await
            .unwrap()
            .complete
            .len(),
        6
    );

    let report = lifeboat::prune::prune(&store, CLUSTER, &plan, now, false)
        .await
        .unwrap();
    assert_eq!((report.deleted, report.remaining), (3, 3));
    let kept: Vec<BackupId> = store
        .list(CLUSTER, Kind::Etcd)
        .await
        .unwrap()
        .complete
        .into_iter()
        .map(|m| m.id)
        .collect();
    let mut want = vec![older[1].id.clone(), older[0].id.clone(), newest.id.clone()];
    want.sort();
    assert_eq!(kept, want, "the newest of each of the last three days");
    let left = keys(&mem).await;
    for gone in &older[2..] {
        assert!(
            !left.iter().any(|k| k.contains(gone.id.as_str())),
            "{} is deleted, payload and all: {left:?}",
            gone.id
        );
    }
    // What is kept still fetches.
    for m in store.list(CLUSTER, Kind::Etcd).await.unwrap().complete {
        assert!(
            lifeboat::restore::fetch(&store, &m, None, None)
                .await
                .unwrap()
                .decoded
        );
    }
}
