//! The command line as scripts use it: every reporting subcommand with `-o json` prints one JSON
//! document on stdout (logs stay on stderr) against a real etcd, the test API server and a
//! `file://` store; `delete` refuses the newest full backup unless `--force` and removes the
//! manifest before the payload; `completions` and `--version` work.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::support::etcd::{Etcd, Version, require_version};
use crate::support::kube_api::{KubeApi, Seed};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt, bin};

/// Runs `lb args... -o json` and returns its stdout parsed, checking the common fields.
fn json(lb: &Lifeboat, command: &str, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = lb.ok(&all);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!("lifeboat {all:?} printed no single JSON document ({e}):\n{out}")
    });
    assert_eq!(doc["version"], 1, "{doc}");
    assert_eq!(doc["command"], command, "{doc}");
    doc
}

/// A lifeboat that backs up a real etcd and the test API server into a `file://` store, with
/// an etcd plan that keeps one backup.
fn both_sources(etcd: &Etcd, api: &KubeApi, store: &std::path::Path) -> Lifeboat {
    let setup = Setup::new(StoreAt::File(store.to_path_buf()), &etcd.client_url);
    let mut lb = Lifeboat::new(setup.clone());
    let kubeconfig = lb.path("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let mut setup = setup;
    setup.extra = format!(
        "kubernetes:\n  kubeconfig: {}\nschedules:\n  etcd:\n    cron: \"0 3 * * *\"\n    time_zone: Europe/Berlin\n    retention: {{ keep_last: 1 }}\n",
        kubeconfig.display()
    );
    lb.write_config(&setup);
    lb
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reporting_command_prints_one_json_document() {
    let Some(etcd_bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &etcd_bin);
    etcd.seed(40, 256).await;
    let api = KubeApi::start(Seed::Standard(10));
    let store = crate::support::tempdir();
    let lb = both_sources(&etcd, &api, store.path());
    let identity = lb.identity.to_str().unwrap().to_string();

    let first = json(&lb, "backup", &["backup", "etcd"]);
    assert_eq!(first["kind"], "etcd");
    assert_eq!(first["partial"], false);
    assert_eq!(first["manifest"]["id"], first["id"]);
    assert!(first["location"].as_str().unwrap().starts_with("file://"));
    // Ids order by their second: the second backup must be the newer one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = json(&lb, "backup", &["backup", "etcd"]);
    let newest = second["id"].as_str().unwrap().to_string();
    let export = json(&lb, "backup", &["backup", "resources"]);
    assert_eq!(export["kind"], "resources");
    assert!(export["manifest"]["resources"]["objects"].as_u64().unwrap() > 0);

    let list = json(&lb, "list", &["list"]);
    assert_eq!(list["cluster"], "test-cluster");
    assert_eq!(list["clusters"], serde_json::json!(["test-cluster"]));
    assert_eq!(list["backups"].as_array().unwrap().len(), 2);
    assert_eq!(list["backups"][1]["id"], newest.as_str());
    let resources = json(&lb, "list", &["list", "--kind", "resources"]);
    assert_eq!(resources["backups"][0]["id"], export["id"]);

    let verify = json(&lb, "verify", &["verify", "--identity", &identity]);
    assert_eq!(verify["id"], newest.as_str());
    assert_eq!(
        (
            &verify["stored_ok"],
            &verify["decoded"],
            &verify["encrypted"]
        ),
        (&true.into(), &true.into(), &true.into())
    );
    assert!(verify["plain_size"].as_u64().unwrap() > 0);
    let first_id = first["id"].as_str().unwrap();
    let positional = json(&lb, "verify", &["verify", first_id]);
    assert_eq!(
        (&positional["id"], &positional["decoded"]),
        (&first["id"], &false.into())
    );
    let verify_export = json(
        &lb,
        "verify",
        &["verify", "--kind", "resources", "--backup", "latest"],
    );
    assert!(verify_export["archive"]["objects"].as_u64().unwrap() > 0);

    let drill = json(
        &lb,
        "drill",
        &[
            "drill",
            "--identity",
            &identity,
            "--etcd-bin-dir",
            etcd_bin.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (&drill["id"], &drill["passed"]),
        (&newest.as_str().into(), &true.into())
    );
    assert_eq!(drill["key_count_checked"], true);

    let file = lb.path("snapshot.db");
    let to_file = json(
        &lb,
        "restore",
        &[
            "restore",
            "etcd",
            "--backup",
            &newest,
            "--identity",
            &identity,
            "--to-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (&to_file["target"], &to_file["verified"]),
        (&"etcd".into(), &true.into())
    );
    assert_eq!(
        to_file["plain_size"].as_u64().unwrap(),
        std::fs::metadata(&file).unwrap().len()
    );
    let dir = lb.path("restored");
    let unpacked = json(
        &lb,
        "restore",
        &[
            "restore",
            "resources",
            "--identity",
            &identity,
            "--to-dir",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(unpacked["target"], "resources");
    assert!(unpacked["written"].as_u64().unwrap() > 1);
    assert_eq!(unpacked["still_encrypted"], 0);
    let guided = lb.fails(&["restore", "etcd", "--dry-run", "-o", "json"]);
    assert!(guided.contains("--to-file FILE -o json"), "{guided}");

    let schedule = json(&lb, "schedule", &["schedule", "--next", "3"]);
    let plan = &schedule["plans"][0];
    assert_eq!(
        (&plan["plan"], &plan["time_zone"]),
        (&"etcd".into(), &"Europe/Berlin".into())
    );
    assert_eq!(plan["next"].as_array().unwrap().len(), 3);
    assert_eq!(plan["interval_seconds"], 86400);

    let dry = json(&lb, "prune", &["prune", "--dry-run"]);
    let plan = &dry["plans"][0];
    assert_eq!(
        (&dry["dry_run"], &plan["deleted"]),
        (&true.into(), &1.into())
    );
    let verdicts = plan["backups"].as_array().unwrap();
    assert_eq!(verdicts.len(), 2);
    assert!(
        verdicts
            .iter()
            .any(|v| v["id"] == first["id"] && v["action"] == "delete")
    );
    assert!(
        verdicts
            .iter()
            .all(|v| !v["reason"].as_str().unwrap().is_empty())
    );
    let pruned = json(&lb, "prune", &["prune"]);
    assert_eq!(pruned["plans"][0]["remaining"], 1);
    assert_eq!(lb.backup_ids(), vec![newest.clone()]);

    let deleted = json(
        &lb,
        "delete",
        &["delete", "--kind", "resources", "latest", "--force"],
    );
    assert_eq!(
        (&deleted["id"], &deleted["forced"]),
        (&export["id"], &true.into())
    );
    assert!(
        deleted["deleted"][0]
            .as_str()
            .unwrap()
            .ends_with("/manifest.json")
    );

    let keys = json(
        &lb,
        "keygen",
        &[
            "keygen",
            "--output-file",
            lb.path("k2.txt").to_str().unwrap(),
        ],
    );
    assert!(keys["public_key"].as_str().unwrap().starts_with("age1"));
    assert!(keys["identity"].is_null());
}

/// Backs up two clusters into `store` and checks that `list --all-clusters` shows both.
fn all_clusters_listed(store: StoreAt, etcd: &Etcd, what: &str) {
    let setup = Setup::new(store, &etcd.client_url);
    let mut a = Lifeboat::new(setup.clone());
    a.cluster = "alpha".into();
    a.write_config(&setup);
    let mut b = Lifeboat::new(setup.clone());
    b.cluster = "beta".into();
    b.write_config(&setup);
    let id_a = json(&a, "backup", &["backup", "etcd"])["id"].clone();
    let id_b = json(&b, "backup", &["backup", "etcd"])["id"].clone();

    let own = json(&a, "list", &["list"]);
    assert_eq!(own["backups"].as_array().unwrap().len(), 1, "{what}");
    let all = json(&a, "list", &["list", "--all-clusters"]);
    assert_eq!(
        all["clusters"],
        serde_json::json!(["alpha", "beta"]),
        "{what}"
    );
    let listed: Vec<_> = all["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["cluster"].clone(), m["id"].clone()))
        .collect();
    assert_eq!(
        listed,
        vec![("alpha".into(), id_a), ("beta".into(), id_b)],
        "{what}"
    );
    let text = a.ok(&["list", "--all-clusters"]);
    assert!(
        text.starts_with("CLUSTER") && text.contains("\nbeta "),
        "{what}: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_all_clusters_shows_every_cluster_under_the_prefix() {
    let Some(etcd_bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &etcd_bin);
    let store = crate::support::tempdir();
    all_clusters_listed(StoreAt::File(store.path().to_path_buf()), &etcd, "file://");
    // On S3 the clusters sit below a prefix in the bucket.
    for server in crate::support::s3::Server::all() {
        server.create_bucket("shared");
        all_clusters_listed(
            StoreAt::S3 {
                endpoint: server.endpoint().to_string(),
                bucket: "shared".into(),
                prefix: "backups/k8s".into(),
            },
            &etcd,
            server.name(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_refuses_the_newest_full_backup_unless_forced() {
    let Some(etcd_bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &etcd_bin);
    let store = crate::support::tempdir();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(store.path().to_path_buf()),
        &etcd.client_url,
    ));
    lb.ok(&["backup", "etcd"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lb.ok(&["backup", "etcd"]);
    let ids = lb.backup_ids();
    let err = lb.fails(&["delete", &ids[1]]);
    assert!(
        err.contains(&ids[1]) && err.contains("newest full etcd backup") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(lb.backup_ids(), ids, "a refused delete deletes nothing");

    let out = lb.ok(&["delete", "--backup", &ids[0]]);
    assert!(
        out.contains(&format!("Deleted etcd backup {}", ids[0])),
        "{out}"
    );
    assert!(
        out.contains("manifest.json") && out.contains("snapshot.db.zst.age"),
        "{out}"
    );
    assert!(
        !store
            .path()
            .join("test-cluster/etcd")
            .join(&ids[0])
            .exists()
    );
    assert_eq!(lb.backup_ids(), vec![ids[1].clone()]);

    lb.ok(&["delete", &ids[1], "--force"]);
    assert!(lb.backup_ids().is_empty());
    let err = lb.fails(&["delete", &ids[1], "--force"]);
    assert!(err.contains("there is no backup"), "{err}");
}

/// An in-memory store that records every delete and can refuse to delete anything but a
/// manifest, to see the order `delete` works in.
#[derive(Debug)]
struct RecordingStore {
    inner: InMemory,
    deleted: Arc<Mutex<Vec<String>>>,
    refuse_payloads: bool,
}

impl std::fmt::Display for RecordingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordingStore")
    }
}

#[async_trait::async_trait]
impl ObjectStore for RecordingStore {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        let deleted = self.deleted.clone();
        let refuse = self.refuse_payloads;
        let checked = locations
            .map(move |l| {
                let l = l?;
                if refuse && !l.as_ref().ends_with("manifest.json") {
                    return Err(object_store::Error::PermissionDenied {
                        path: l.to_string(),
                        source: "this test refuses to delete payloads".into(),
                    });
                }
                deleted.lock().unwrap().push(l.to_string());
                Ok(l)
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A committed backup (payload, then manifest) in `store`, as `backup etcd` leaves one.
async fn committed(store: &lifeboat::store::Store, id: &str) -> lifeboat::manifest::Manifest {
    let m: lifeboat::manifest::Manifest = serde_json::from_value(serde_json::json!({
        "version": 1, "id": id, "cluster": "c", "kind": "etcd",
        "started_at": "2026-12-01T10:00:00Z", "finished_at": "2026-12-01T10:00:05Z",
        "lifeboat_version": "test",
        "payload": {
            "name": "snapshot.db.zst", "plain_size": 3, "stored_size": 3,
            "stored_sha256": "00", "compression": { "algorithm": "zstd", "level": 3 },
            "encryption": { "scheme": "none", "recipients": [] }
        }
    }))
    .unwrap();
    let dir = store.backup_dir("c", m.kind, &m.id);
    store
        .put(
            &dir.join("snapshot.db.zst"),
            bytes::Bytes::from_static(b"abc"),
        )
        .await
        .unwrap();
    store.commit(&m).await.unwrap();
    m
}

#[tokio::test]
async fn delete_removes_the_manifest_before_the_payload() {
    let id = "20261201T100000Z-0123456789abcdef";
    let deleted = Arc::new(Mutex::new(vec![]));
    let recording = |refuse_payloads| {
        let inner: Arc<dyn ObjectStore> = Arc::new(RecordingStore {
            inner: InMemory::new(),
            deleted: deleted.clone(),
            refuse_payloads,
        });
        lifeboat::store::Store::from_object_store(inner, "memory://", 5 << 20)
    };
    let store = recording(false);
    let m = committed(&store, id).await;
    let keys = store
        .delete_backup(&m.cluster, m.kind, &m.id)
        .await
        .unwrap();
    assert_eq!(
        *deleted.lock().unwrap(),
        vec![
            format!("c/etcd/{id}/manifest.json"),
            format!("c/etcd/{id}/snapshot.db.zst")
        ]
    );
    assert!(keys[0].ends_with("manifest.json"), "{keys:?}");

    // When the payload cannot be deleted, the backup has stopped existing all the same: what
    // is left is an incomplete directory for the sweep, never a backup without its payload.
    deleted.lock().unwrap().clear();
    let store = recording(true);
    let m = committed(&store, id).await;
    let err = store
        .delete_backup(&m.cluster, m.kind, &m.id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("snapshot.db.zst"), "{err}");
    let listing = store.list("c", m.kind).await.unwrap();
    assert!(listing.complete.is_empty());
    assert_eq!(listing.incomplete.len(), 1);
}

#[test]
fn completions_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "completions {shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in [
            "backup", "list", "verify", "restore", "delete", "prune", "drill",
        ] {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
        assert!(
            script.contains("all-clusters"),
            "{shell}: subcommand options"
        );
    }
}

#[test]
fn version_names_the_commit() {
    let out = std::process::Command::new(bin())
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string());
    let commit = expected.unwrap_or_else(|| "unknown".into());
    assert!(
        text.starts_with(&format!("lifeboat {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains(&format!("(commit {commit})")), "{text}");
}

#[test]
fn global_options_are_shown_once_not_in_every_subcommand() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let top = help(&["--help"]);
    assert!(
        top.contains("Global options") && top.contains("--log-format"),
        "{top}"
    );
    let verify = help(&["verify", "--help"]);
    assert!(!verify.contains("--log-format <"), "{verify}");
    assert!(
        verify.contains("Examples:") && verify.contains("-o/--output"),
        "{verify}"
    );
}
