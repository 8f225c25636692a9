//! Tampered resource exports: an archive whose tar headers claim huge sizes (a zstd bomb: a
//! few KB stored, hundreds of MB plain) must be refused by `restore resources` and `verify`
//! with a clear message, in bounded memory (peak RSS of the child process), leaving nothing in
//! or next to the target directory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::resources::exporter;
use crate::support::kube_api::{KubeApi, Seed};
use crate::support::lifeboat::Lifeboat;

/// What a crafted entry claims: well above the bound below, so reading it whole shows.
const CLAIMED: u64 = 512 << 20;

/// A generous bound for the peak RSS of one lifeboat command (about 30 MiB in practice).
const RSS_BOUND_KIB: u64 = 200 * 1024;

/// A resource export on disk: its directory in the `file://` store.
pub(crate) struct Stored {
    pub dir: PathBuf,
}

impl Stored {
    /// The newest resource export of `lb` in `store`.
    pub(crate) fn newest(lb: &Lifeboat, store: &Path) -> Stored {
        let listing: serde_json::Value =
            serde_json::from_str(&lb.ok(&["list", "--kind", "resources", "--output", "json"]))
                .unwrap();
        let id = listing["backups"][0]["id"].as_str().unwrap();
        Stored {
            dir: store.join(format!("test-cluster/resources/{id}")),
        }
    }

    pub(crate) fn archive(&self) -> PathBuf {
        self.dir.join("resources.tar.zst")
    }

    /// The archive's entries, in order.
    pub(crate) fn entries(&self) -> Vec<(String, Vec<u8>)> {
        let plain = zstd::decode_all(std::fs::File::open(self.archive()).unwrap()).unwrap();
        let mut out = Vec::new();
        for entry in tar::Archive::new(plain.as_slice()).entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.push((path, data));
        }
        out
    }

    /// Replaces the stored archive with `stored` bytes, leaving the manifest as it is.
    pub(crate) fn replace_payload(&self, stored: &[u8]) {
        let path = self.archive();
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, stored).unwrap();
    }

    /// Rewrites the manifest's payload record to describe `stored` (plain size `plain`), as
    /// someone who can write to the store would: the stored sha256 then checks out.
    pub(crate) fn rewrite_manifest(&self, stored: &[u8], plain: u64) {
        let path = self.dir.join("manifest.json");
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        m["payload"]["stored_size"] = stored.len().into();
        m["payload"]["stored_sha256"] = format!("{:x}", Sha256::digest(stored)).into();
        m["payload"]["plain_size"] = plain.into();
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }

    /// The manifest's plain size.
    pub(crate) fn plain_size(&self) -> u64 {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("manifest.json")).unwrap())
                .unwrap();
        m["payload"]["plain_size"].as_u64().unwrap()
    }
}

/// Builds a tar.zst of `entries` (as lifeboat writes them); returns (stored, plain size).
pub(crate) fn build_archive(entries: &[(String, Vec<u8>)]) -> (Vec<u8>, u64) {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, data.as_slice())
            .unwrap();
    }
    let plain = builder.into_inner().unwrap();
    (
        zstd::encode_all(plain.as_slice(), 3).unwrap(),
        plain.len() as u64,
    )
}

/// A tar.zst holding `before`, then one entry of `kind` named `path` whose header claims
/// [`CLAIMED`] bytes of zeros (all of them present: a zstd bomb of a few KB). Returns
/// (stored, plain size).
fn bomb(before: &[(String, Vec<u8>)], kind: tar::EntryType, path: &str) -> (Vec<u8>, u64) {
    let mut z = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    let (head, _) = build_archive(before);
    // The prefix without its two end-of-archive blocks.
    let mut plain = zstd::decode_all(head.as_slice()).unwrap();
    while plain.len() >= 512 && plain[plain.len() - 512..].iter().all(|b| *b == 0) {
        plain.truncate(plain.len() - 512);
    }
    z.write_all(&plain).unwrap();
    let mut header = tar::Header::new_gnu();
    if kind.is_gnu_longname() {
        header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    } else {
        header.set_path(path).unwrap();
    }
    header.set_size(CLAIMED);
    header.set_mode(0o644);
    header.set_entry_type(kind);
    header.set_cksum();
    z.write_all(header.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(CLAIMED >> 20) {
        z.write_all(&zeros).unwrap();
    }
    let stored = z.finish().unwrap();
    (stored, plain.len() as u64 + 512 + CLAIMED)
}

/// Runs lifeboat and returns its output and peak RSS in KiB: from GNU time where installed,
/// else the highest VmHWM seen while polling /proc.
pub(crate) fn run_measured(lb: &Lifeboat, args: &[&str]) -> (Output, u64) {
    let time = Path::new("/usr/bin/time");
    let report = lb.path(&format!("rss-{}", crate::support::free_port()));
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-f").arg("%M").arg("-o").arg(&report);
        let inner = lb.cmd();
        c.arg(inner.get_program()).args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    } else {
        lb.cmd()
    };
    let child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let poller = std::thread::spawn(move || {
        let mut peak = 0u64;
        let status = format!("/proc/{pid}/status");
        while let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let out = child.wait_with_output().unwrap();
    let polled = poller.join().unwrap();
    let peak = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(polled);
    (out, peak)
}

/// Runs `args`, which must fail with a message containing `expected`, within the RSS bound.
fn refused(lb: &Lifeboat, args: &[&str], expected: &str) -> String {
    let (out, peak_kib) = run_measured(lb, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "lifeboat {args:?} accepted a tampered export:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
    assert!(
        peak_kib < RSS_BOUND_KIB,
        "lifeboat {args:?} peaked at {} MiB (bound {} MiB): {stderr}",
        peak_kib / 1024,
        RSS_BOUND_KIB / 1024
    );
    eprintln!("lifeboat {args:?}: peak RSS {} MiB", peak_kib / 1024);
    stderr
}

/// Restores into a fresh directory, which must fail with `expected` and leave nothing behind.
fn restore_refused(lb: &Lifeboat, expected: &str) {
    let target = lb.path(&format!("restored-{}", crate::support::free_port()));
    refused(
        lb,
        &[
            "restore",
            "resources",
            "--to-dir",
            target.to_str().unwrap(),
            "--identity",
            lb.identity.to_str().unwrap(),
        ],
        expected,
    );
    assert!(!target.exists(), "{} was left behind", target.display());
    let partial = target.with_file_name(format!(
        "{}.lifeboat-partial",
        target.file_name().unwrap().to_str().unwrap()
    ));
    assert!(!partial.exists(), "{} was left behind", partial.display());
}

/// Regression: `restore resources` read each tar entry whole, so a few KB of tampered archive
/// claiming a huge entry made it allocate that much before the sha256 mismatch was found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_export_with_a_huge_entry_is_refused_in_bounded_memory() {
    let api = KubeApi::start(Seed::Standard(5));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    lb.ok(&["backup", "resources"]);
    let stored = Stored::newest(&lb, store.path());
    let original_plain = stored.plain_size();
    let entries = stored.entries();
    let (payload, _) = bomb(
        &entries[..3],
        tar::EntryType::Regular,
        "namespaces/alpha/core/configmaps/bomb.yaml",
    );
    assert!(payload.len() < 200 << 10, "a small bomb: {}", payload.len());

    // Only the payload replaced: the stored sha256 no longer matches the manifest.
    stored.replace_payload(&payload);
    restore_refused(&lb, "does not match its manifest");
    refused(
        &lb,
        &["verify", "--kind", "resources", "latest"],
        "does not match its manifest",
    );

    // The manifest rewritten to match it too: the plain size it records still caps the read.
    stored.rewrite_manifest(&payload, original_plain);
    restore_refused(&lb, "decompresses to more than");
    refused(
        &lb,
        &[
            "verify",
            "--kind",
            "resources",
            "--identity",
            lb.identity.to_str().unwrap(),
            "latest",
        ],
        "decompresses to more than",
    );
}

/// Regression: a GNU long-name header is read whole by the tar crate, whatever size it claims;
/// with a manifest that allows the size, only a cap on names bounds the memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_export_with_a_huge_long_name_is_refused_in_bounded_memory() {
    let api = KubeApi::start(Seed::Standard(5));
    let store = crate::support::tempdir();
    let lb = exporter(&api, store.path(), "");
    lb.ok(&["backup", "resources"]);
    let stored = Stored::newest(&lb, store.path());
    let entries = stored.entries();
    let (payload, plain) = bomb(&entries[..2], tar::EntryType::GNULongName, "");
    stored.replace_payload(&payload);
    stored.rewrite_manifest(&payload, plain);
    restore_refused(&lb, "name is 536870912 bytes long");
    refused(
        &lb,
        &["verify", "--kind", "resources", "latest"],
        "name is 536870912 bytes long",
    );
}
