//! Command-line defects found in review, each with a regression test: `restore resources
//! --to-dir` refuses the options only `--apply` honours, its kubectl hint works with the real
//! kubectl, a closed stdout ends lifeboat quietly, `delete`/`keygen` say what they need, and
//! SIGINT during `restore etcd --to-file` leaves no partial snapshot.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::resources::{EXPORTED, exporter};
use crate::support::etcd::{Etcd, Version, require_version};
use crate::support::kube_api::{KubeApi, Seed};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt, bin};
use crate::support::proxy::Proxy;
use crate::support::s3::{Moto, require_moto};
use crate::support::{require, run_ok, which};

/// Regression: `--to-dir` ignored `--dry-run` (and wrote the files), `--namespace-mapping`,
/// `--existing`, `--force-conflicts`, `--name` and `--selector`.
#[test]
fn restore_to_dir_refuses_the_options_only_apply_honours() {
    let store = crate::support::tempdir();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(store.path().to_path_buf()),
        "http://127.0.0.1:1",
    ));
    let dir = lb.path("restored");
    let to_dir = dir.to_str().unwrap();
    for (option, args) in [
        ("--dry-run", &["--dry-run"][..]),
        ("--existing update", &["--existing", "update"][..]),
        ("--force-conflicts", &["--force-conflicts"][..]),
        ("--name", &["--name", "web"][..]),
        ("--selector", &["--selector", "app=web"][..]),
        ("--namespace-mapping", &["--namespace-mapping", "a=b"][..]),
    ] {
        let mut all = vec!["restore", "resources", "--to-dir", to_dir];
        all.extend(args);
        let err = lb.fails(&all);
        assert!(
            err.contains(&format!("error: {option} needs --apply")),
            "{all:?}: {err}"
        );
        assert!(!dir.exists(), "{all:?} wrote {to_dir}");
    }
    for args in [
        &["--force-conflicts"][..],
        &["--existing", "skip", "--force-conflicts"][..],
    ] {
        let mut all = vec!["restore", "resources", "--apply"];
        all.extend(args);
        let err = lb.fails(&all);
        assert!(
            err.contains("error: --force-conflicts needs --existing update"),
            "{all:?}: {err}"
        );
    }
}

/// Regression: the hint `kubectl apply --server-side -R -f DIR` failed on DIR/index.json. The
/// hint printed now is run as printed against a fresh test API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_to_dir_prints_a_kubectl_hint_that_applies() {
    let Some(kubectl) = require("kubectl", which("kubectl")) else {
        return;
    };
    let api = KubeApi::start(Seed::Standard(3));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    lb.ok(&["backup", "resources"]);
    let dir = lb.path("restored");
    let out = lb.ok(&[
        "restore",
        "resources",
        "--to-dir",
        dir.to_str().unwrap(),
        "--identity",
        lb.identity.to_str().unwrap(),
    ]);
    let hint = out
        .lines()
        .find_map(|l| l.strip_prefix("Apply with: "))
        .unwrap_or_else(|| panic!("no kubectl hint:\n{out}"));
    assert!(
        hint.contains("lifeboat restore resources --apply"),
        "{hint}"
    );
    let commands = hint.split(" (or").next().unwrap();
    let fresh = KubeApi::start(Seed::Empty);
    let kubeconfig = lb.path("fresh-kubeconfig");
    std::fs::write(&kubeconfig, fresh.kubeconfig()).unwrap();
    let mut ran = 0;
    for command in commands.split(" && ") {
        let mut words = command.split_whitespace();
        assert_eq!(words.next(), Some("kubectl"), "{hint}");
        run_ok(
            Command::new(&kubectl)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(words),
        );
        ran += 1;
    }
    assert_eq!(ran, 2, "cluster/ then namespaces/: {hint}");
    for resource in EXPORTED {
        assert_eq!(
            fresh.count(resource),
            api.count(resource),
            "{resource} after applying the hint"
        );
    }
}

/// Regression: `delete --help` showed `[ID]` as optional and `--backup [default: latest]`.
#[test]
fn delete_help_says_the_backup_is_required() {
    let out = Command::new(bin())
        .args(["delete", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert!(
        help.contains("Usage: lifeboat delete [OPTIONS] <ID|--backup <ID>>"),
        "{help}"
    );
    assert!(!help.contains("default: latest"), "{help}");
    let out = Command::new(bin()).arg("delete").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("<ID|--backup <ID>>"), "{err}");
}

/// Regression: keygen's refusal named `--output`, which does not exist.
#[test]
fn keygen_over_an_existing_file_names_its_real_option() {
    let dir = crate::support::tempdir();
    let file = dir.path().join("key.txt");
    std::fs::write(&file, "taken").unwrap();
    let out = Command::new(bin())
        .arg("keygen")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("choose another --output-file"), "{err}");
}

/// Regression: Ctrl-C during `restore etcd --to-file snap.db` left `snap.db.lifeboat-partial`
/// (decrypted data) and the re-run failed with "File exists". Now the signal removes it; a
/// leftover of a harder kill (owner-only, this user's) is replaced on the re-run, anything else
/// at that path is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_restore_to_file_removes_the_partial_snapshot() {
    let Some(etcd_bin) = require_version(Version::V35) else {
        return;
    };
    let Some(moto_bin) = require_moto() else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &etcd_bin);
    etcd.seed(64, 16 * 1024).await;
    let moto = Moto::start(&moto_bin);
    moto.create_bucket("backups");
    let proxy = Proxy::start(moto.port).await;
    let lb = Lifeboat::new(Setup::new(
        StoreAt::S3 {
            endpoint: format!("http://127.0.0.1:{}", proxy.port),
            bucket: "backups".into(),
            prefix: "partial".into(),
        },
        &etcd.client_url,
    ));
    lb.ok(&["backup", "etcd"]);
    let file = lb.path("snap.db");
    let partial = lb.path("snap.db.lifeboat-partial");
    let args = [
        "restore",
        "etcd",
        "--to-file",
        file.to_str().unwrap(),
        "--identity",
        lb.identity.to_str().unwrap(),
    ];

    // A slow download, interrupted once its partial file exists.
    proxy.throttle_down(32 * 1024);
    let child = lb
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !partial.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "no partial file");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    run_ok(Command::new("kill").arg("-INT").arg(child.id().to_string()));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("SIGINT received"), "{stderr}");
    assert!(
        !partial.exists(),
        "the partial snapshot is removed: {stderr}"
    );
    assert!(!file.exists());
    proxy.throttle_down(0);

    // Something else at the partial path is not lifeboat's: refused, left alone.
    std::fs::write(&partial, b"someone's file").unwrap();
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = lb.fails(&args);
    assert!(err.contains("is not a download lifeboat left"), "{err}");
    assert!(partial.exists());

    // What a SIGKILL leaves (owner-only, as fetch creates it) is replaced, with a log line.
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = lb.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Removed the partial file"), "{stderr}");
    assert!(file.exists() && !partial.exists());
}
