//! Command-line defects found in review, each with a regression test: `restore resources
//! --to-dir` refuses the options only `--apply` honours, its kubectl hint works with the real
//! kubectl, a closed stdout ends lifeboat quietly, and `delete`/`keygen` say what they need.

use std::process::{Command, Stdio};

use crate::resources::{EXPORTED, exporter};
use crate::support::kube_api::{KubeApi, Seed};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt, bin};
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

/// Regression: `lifeboat completions bash | head -1` panicked ("failed printing to stdout:
/// Broken pipe", exit 101). The reading end is closed before lifeboat starts, so every write
/// meets a closed pipe.
#[test]
fn a_closed_stdout_ends_lifeboat_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(bin())
        .args(["completions", "bash"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !out.status.success(),
        "the output was lost: {:?}",
        out.status
    );

    // The same through a real `head -1` (which may or may not close the pipe early).
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' completions bash | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}",
            bin().display()
        ))
        .output()
        .unwrap();
    let (status, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_ne!(status.trim(), "101", "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
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
