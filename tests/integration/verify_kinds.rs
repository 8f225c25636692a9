//! `lifeboat verify` follows the manifest's kind and encryption scheme, with and without
//! `--identity`, and says exactly what it checked: an etcd snapshot (encrypted or not) is
//! decompressed and its etcd hash checked; a resource export is read entry by entry against
//! index.json, and with an identity every encrypted object must decrypt.

use crate::resources::exporter;
use crate::support::etcd::{Etcd, Version, require_version};
use crate::support::kube_api::{KubeApi, Seed};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::tampered_export::{Stored, build_archive};

async fn etcd_backup(encrypted: bool) -> Option<(Etcd, Lifeboat, tempfile::TempDir)> {
    let bin = require_version(Version::V35)?;
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(50, 1024).await;
    let store = crate::support::tempdir();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(store.path().join("store")),
        &etcd.client_url,
    ));
    if !encrypted {
        let text = std::fs::read_to_string(&lb.config).unwrap();
        let text = text.replace(
            &format!("encryption:\n  recipients: [\"{}\"]\n", lb.public_key),
            "encryption:\n  allow_unencrypted: true\n",
        );
        assert!(text.contains("allow_unencrypted"), "{text}");
        std::fs::write(&lb.config, text).unwrap();
    }
    lb.ok(&["backup", "etcd"]);
    Some((etcd, lb, store))
}

/// Regression: `verify --identity` tried to age-decrypt an unencrypted backup and failed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_with_an_identity_accepts_an_unencrypted_etcd_backup() {
    let Some((_etcd, lb, _store)) = etcd_backup(false).await else {
        return;
    };
    let plain = lb.ok(&["verify", "latest"]);
    assert!(
        plain.contains("is good")
            && plain.contains("decompressed (it is not encrypted)")
            && plain.contains("etcd hash checks out"),
        "{plain}"
    );
    let with = lb.ok(&[
        "verify",
        "--identity",
        lb.identity.to_str().unwrap(),
        "latest",
    ]);
    assert!(
        with.contains("decompressed (it is not encrypted)")
            && with.contains("etcd hash checks out")
            && with.contains("The identity was not needed."),
        "{with}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_says_what_it_checked_on_an_encrypted_etcd_backup() {
    let Some((_etcd, lb, _store)) = etcd_backup(true).await else {
        return;
    };
    let without = lb.ok(&["verify", "latest"]);
    assert!(
        without.contains("is intact")
            && without.contains("pass --identity")
            && !without.contains("etcd hash checks out"),
        "{without}"
    );
    let with = lb.ok(&[
        "verify",
        "--identity",
        lb.identity.to_str().unwrap(),
        "latest",
    ]);
    assert!(
        with.contains("is good")
            && with.contains("decrypted and decompressed")
            && with.contains("etcd hash checks out"),
        "{with}"
    );
}

/// Regression: `verify --identity` failed every resource export (the archive itself is not
/// age-encrypted), and without an identity it claimed an etcd hash was checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_of_a_resource_export_checks_the_archive_and_never_an_etcd_hash() {
    let api = KubeApi::start(Seed::Standard(10));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    lb.ok(&["backup", "resources"]);
    let total: usize = crate::resources::EXPORTED
        .iter()
        .map(|r| api.count(r))
        .sum();
    let secrets = api.count("secrets");
    let without = lb.ok(&["verify", "--kind", "resources", "latest"]);
    assert!(
        without.contains("Resource export")
            && without.contains(&format!(
                "all {} entries read, matching index.json and the manifest ({total} objects of {} resources)",
                total + 1,
                crate::resources::EXPORTED.len()
            ))
            && without.contains(&format!(
                "its {secrets} encrypted objects were not decrypted: pass --identity"
            ))
            && !without.contains("etcd"),
        "{without}"
    );
    let with = lb.ok(&[
        "verify",
        "--kind",
        "resources",
        "--identity",
        lb.identity.to_str().unwrap(),
        "latest",
    ]);
    assert!(
        with.contains(&format!(
            "all {secrets} encrypted objects decrypt with the identity"
        )) && !with.contains("etcd"),
        "{with}"
    );
}

/// An encrypted object altered inside an otherwise consistent export (manifest rewritten to
/// match) passes without an identity, and fails with one, naming the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_with_an_identity_finds_an_encrypted_object_that_does_not_decrypt() {
    let api = KubeApi::start(Seed::Standard(5));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    lb.ok(&["backup", "resources"]);
    let stored = Stored::newest(&lb, store.path());
    let mut entries = stored.entries();
    let (path, data) = entries
        .iter_mut()
        .find(|(p, _)| p.ends_with(".yaml.age"))
        .unwrap();
    let at = data.len() - 20;
    data[at] ^= 0x01;
    let path = path.clone();
    let (payload, plain) = build_archive(&entries);
    stored.replace_payload(&payload);
    stored.rewrite_manifest(&payload, plain);

    let without = lb.ok(&["verify", "--kind", "resources", "latest"]);
    assert!(without.contains("were not decrypted"), "{without}");
    let err = lb.fails(&[
        "verify",
        "--kind",
        "resources",
        "--identity",
        lb.identity.to_str().unwrap(),
        "latest",
    ]);
    assert!(
        err.contains(&format!("the encrypted object {path}")),
        "{err}"
    );
    // restore resources refuses it too, and leaves nothing behind.
    let target = lb.path("restored");
    let err = lb.fails(&[
        "restore",
        "resources",
        "--to-dir",
        target.to_str().unwrap(),
        "--identity",
        lb.identity.to_str().unwrap(),
    ]);
    assert!(err.contains(&path), "{err}");
    assert!(!target.exists());
}

/// An archive missing an object that index.json lists fails verify, saying which resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_an_archive_whose_counts_differ_from_index_json() {
    let api = KubeApi::start(Seed::Standard(5));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    lb.ok(&["backup", "resources"]);
    let stored = Stored::newest(&lb, store.path());
    let mut entries = stored.entries();
    let gone = entries
        .iter()
        .position(|(p, _)| p.contains("/core/configmaps/"))
        .unwrap();
    entries.remove(gone);
    let (payload, plain) = build_archive(&entries);
    stored.replace_payload(&payload);
    stored.rewrite_manifest(&payload, plain);
    let err = lb.fails(&["verify", "--kind", "resources", "latest"]);
    assert!(err.contains("where index.json lists"), "{err}");
}
