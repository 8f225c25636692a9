//! Test support: real servers on 127.0.0.1 with free ports (etcd, an S3 server), a TCP proxy that
//! injects faults, TLS material, and a runner for the lifeboat binary with a generated config.
//! Under CI (`CI=true`) a missing server binary fails the test instead of skipping it.

#![allow(dead_code)]

pub mod etcd;
pub mod kube_api;
pub mod kubelet;
pub mod lifeboat;
pub mod proxy;
pub mod s3;
pub mod serve;
pub mod tamper;
pub mod tls;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether this run is under CI, where every server must be present.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns `Some(path)` for a required tool, or `None` (after saying why) when it is missing
/// outside CI. Under CI a missing tool panics: a silent skip would hide a broken install step.
pub fn require(what: &str, found: Option<PathBuf>) -> Option<PathBuf> {
    match found {
        Some(p) => Some(p),
        None if under_ci() => {
            panic!("{what} is not installed, and CI=true: .ci/run must install it")
        }
        None => {
            eprintln!("SKIPPED: {what} is not installed (run scripts/install-test-deps.sh)");
            None
        }
    }
}

/// Finds a program on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Waits until `ready` returns true, or panics after `limit` with `what`.
pub fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command to completion and returns its stdout, panicking with stderr on failure.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic, poorly compressible bytes (xorshift), mixed with a compressible run, so
/// snapshots are neither trivial to compress nor all noise.
pub fn test_value(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if v.len() % 1024 < 512 {
            v.extend_from_slice(&x.to_le_bytes());
        } else {
            v.extend_from_slice(b"kubernetes-object");
        }
    }
    v.truncate(len);
    v
}

/// A directory that is removed at the end of the test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lifeboat-it-")
        .tempdir()
        .unwrap()
}

/// A plain HTTP/1.1 GET to 127.0.0.1:`port`; (status, body), or None if nothing answered.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

/// The value of one sample in a Prometheus text exposition, e.g.
/// `metric(text, "lifeboat_backup_runs_total{cluster=\"c\",plan=\"etcd\",result=\"success\"}")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

/// Gives a config text real private files where it names kubeadm's or lifeboat's well-known
/// paths (etcd PKI, S3 key files, the drill identity), returning the directory holding them and
/// the rewritten text. The drill identity `key.txt` is a fresh age identity, and lifeboat's
/// example recipient (refused as such, its identity unknown) is swapped for its public key.
pub fn with_scratch_files(text: &str) -> (tempfile::TempDir, String) {
    let scratch = tempdir();
    for name in [
        "ca.crt",
        "healthcheck-client.crt",
        "healthcheck-client.key",
        "access-key-id",
        "secret-access-key",
        "key.txt",
    ] {
        let p = scratch.path().join(name);
        std::fs::write(&p, "x\n").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let pair = ::lifeboat::keys::generate(chrono::Utc::now());
    let key = scratch.path().join("key.txt");
    std::fs::remove_file(&key).unwrap();
    ::lifeboat::keys::write_new_private(&key, &pair.file_text).unwrap();
    let text = text.replace(
        ::lifeboat::keys::LIFEBOAT_EXAMPLE_RECIPIENT,
        &pair.public_key,
    );
    let dir = format!("{}/", scratch.path().display());
    let text = text
        .replace("/etc/lifeboat/keys/etcd/", &dir)
        .replace("/etc/lifeboat/keys/s3/", &dir)
        .replace("/etc/lifeboat/keys/drill/", &dir)
        .replace("/etc/kubernetes/pki/etcd/", &dir)
        .replace("/etc/lifeboat/s3/", &dir)
        .replace("/etc/lifeboat/drill/", &dir);
    (scratch, text)
}

/// Reads a whole file to a string.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
