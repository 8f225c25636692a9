//! lifeboat's offline reader of etcd snapshots (`registry::bbolt` + `registry::mvcc`) against
//! snapshots taken by real etcd 3.5 and 3.4: the state it reads must be what etcd itself returns,
//! at the newest revision and at an older one; broken files give their errors.

use std::collections::BTreeMap;
use std::path::Path;

use etcd_client::{Client, CompactionOptions, GetOptions};
use lifeboat::registry::bbolt::{self, Db};
use lifeboat::registry::mvcc::{self, KeyValue, WalkError};

use crate::support::etcd::{Etcd, Version, require_version};

/// key -> (value, create_revision, mod_revision, version)
type State = BTreeMap<Vec<u8>, (Vec<u8>, i64, i64, i64)>;

async fn etcd_state(client: &mut Client, prefix: &str, rev: Option<i64>) -> State {
    let mut opts = GetOptions::new().with_prefix();
    if let Some(r) = rev {
        opts = opts.with_revision(r);
    }
    let resp = client.get(prefix, Some(opts)).await.unwrap();
    resp.kvs()
        .iter()
        .map(|kv| {
            let facts = (
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
            );
            (kv.key().to_vec(), facts)
        })
        .collect()
}

fn read_state(db: &Db, at: Option<i64>, prefix: &[u8]) -> (State, mvcc::Walk) {
    let mut state = State::new();
    let walk = mvcc::state_at(
        db,
        at,
        |k| k.starts_with(prefix),
        |kv: KeyValue| {
            let facts = (kv.value, kv.create_revision, kv.mod_revision, kv.version);
            assert!(
                state.insert(kv.key, facts).is_none(),
                "a key was yielded twice"
            );
            Ok::<(), std::convert::Infallible>(())
        },
    )
    .unwrap();
    (state, walk)
}

fn value(i: usize, round: usize, size: usize) -> Vec<u8> {
    crate::support::test_value((i * 7 + round) as u64 + 1, size)
}

async fn snapshot_matches_etcd(version: Version) {
    let Some(bin) = require_version(version) else {
        return;
    };
    let mut etcd = Etcd::start(version, &bin);
    let mut client = Client::connect([etcd.client_url.as_str()], None)
        .await
        .unwrap();
    // Enough keys for branch pages; large values for overflow pages.
    for i in 0..3000 {
        let size = if i % 500 == 0 { 20_000 } else { 40 };
        client
            .put(format!("/reg/k{i:05}"), value(i, 0, size), None)
            .await
            .unwrap();
    }
    client
        .put("/other/x", "outside the prefix", None)
        .await
        .unwrap();
    for round in 1..3 {
        for i in (0..3000).step_by(10) {
            client
                .put(format!("/reg/k{i:05}"), value(i, round, 60), None)
                .await
                .unwrap();
        }
    }
    let compact_at = client
        .get("/reg/k00000", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    for i in (0..3000).step_by(7) {
        client.delete(format!("/reg/k{i:05}"), None).await.unwrap();
    }
    let mid = client
        .get("/reg/k00000", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    for i in (0..3000).step_by(21) {
        client
            .put(format!("/reg/k{i:05}"), value(i, 9, 30_000), None)
            .await
            .unwrap();
    }
    for i in (1..3000).step_by(13) {
        client
            .put(format!("/reg/k{i:05}"), value(i, 5, 50), None)
            .await
            .unwrap();
    }
    client
        .compact(compact_at, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let now = etcd_state(&mut client, "/", None).await;
    let at_mid = etcd_state(&mut client, "/", Some(mid)).await;
    let reg_now = etcd_state(&mut client, "/reg/", None).await;
    let current = client
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    let dir = crate::support::tempdir();
    let snap = dir.path().join("snapshot.db");
    let out = etcd
        .etcdctl()
        .args(["snapshot", "save"])
        .arg(&snap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let db = Db::open(&snap).unwrap();
    let revs = mvcc::revisions(&db).unwrap();
    assert_eq!(revs.current, current);
    assert_eq!(revs.compacted, Some(compact_at));

    let (got, walk) = read_state(&db, None, b"/");
    assert_eq!(walk.revision, current);
    assert_eq!(got.len(), now.len());
    assert!(got == now, "the newest state differs from etcd's");
    let (got, walk) = read_state(&db, Some(mid), b"/");
    assert!(
        got == at_mid,
        "the state at revision {mid} differs from etcd's"
    );
    assert!(walk.deleted > 0);
    let (got, walk) = read_state(&db, None, b"/reg/");
    assert!(got == reg_now, "the /reg/ selection differs from etcd's");
    assert!(walk.skipped > 0, "/other/x was not turned down");

    let future = mvcc::state_at(&db, Some(current + 1), |_| true, |_| Ok::<(), ()>(()));
    assert!(
        matches!(future, Err(WalkError::Read(mvcc::Error::Future { .. }))),
        "{future:?}"
    );
    let old = mvcc::state_at(&db, Some(compact_at - 1), |_| true, |_| Ok::<(), ()>(()));
    assert!(
        matches!(old, Err(WalkError::Read(mvcc::Error::Compacted { .. }))),
        "{old:?}"
    );

    broken_files_give_their_errors(&snap, dir.path());

    // The db of a stopped member's data dir reads the same (give the backend time to commit).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    etcd.kill();
    let db = Db::open(&etcd.data_dir.join("member/snap/db")).unwrap();
    let (got, _) = read_state(&db, None, b"/");
    assert!(
        got == now,
        "the stopped member's db differs from etcd's state"
    );
}

fn broken_files_give_their_errors(snap: &Path, dir: &Path) {
    let bytes = std::fs::read(snap).unwrap();
    let truncated = dir.join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = match Db::open(&truncated) {
        Err(e) => e,
        Ok(db) => match mvcc::state_at(&db, None, |_| true, |_| Ok::<(), ()>(())) {
            Err(WalkError::Read(mvcc::Error::Bbolt(e))) => e,
            other => panic!("a truncated snapshot read as {other:?}"),
        },
    };
    assert!(matches!(err, bbolt::Error::Truncated { .. }), "{err:?}");

    let zst = dir.join("snapshot.db.zst");
    std::fs::write(&zst, zstd::encode_all(&bytes[..], 3).unwrap()).unwrap();
    let err = Db::open(&zst).err().unwrap();
    assert!(matches!(err, bbolt::Error::NotBbolt { .. }), "{err:?}");
    assert!(err.to_string().contains("lifeboat restore etcd --to-file"));
    let empty = dir.join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        Db::open(&empty),
        Err(bbolt::Error::NotBbolt { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_state_matches_etcd_3_5() {
    snapshot_matches_etcd(Version::V35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_state_matches_etcd_3_4() {
    snapshot_matches_etcd(Version::V34).await;
}
