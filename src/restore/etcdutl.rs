//! The tool that turns a snapshot into a data directory: `etcdutl snapshot restore` (etcd 3.5+),
//! or `ETCDCTL_API=3 etcdctl snapshot restore` where only etcd 3.4's etcdctl exists. Whether it
//! supports `--bump-revision`/`--mark-compacted` (recommended for Kubernetes by etcd's recovery
//! guide) is read from its own help text.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

/// By how much the revision is bumped when supported: far beyond any revision a watching
/// client (the API server's informers) may have seen.
pub const BUMP_REVISION: u64 = 1_000_000_000;

/// Why the restore tool could not be used.
#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "neither etcdutl nor etcdctl was found on PATH: install the etcd release that matches your cluster, or pass --etcdutl /path/to/etcdutl"
    )]
    NotFound,
    #[error("{tool} is not usable ({reason}): pass --etcdutl with a working etcdutl or etcdctl")]
    Unusable { tool: String, reason: &'static str },
    #[error("cannot run {tool}: pass --etcdutl with a working etcdutl or etcdctl")]
    Run {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} snapshot restore failed ({status}): {stderr}")]
    Failed {
        tool: String,
        status: String,
        stderr: String,
    },
}

/// A located restore tool and what it supports.
#[derive(Debug, Clone)]
pub struct Tool {
    /// The binary.
    pub path: PathBuf,
    /// True for etcdutl; false for etcd 3.4's etcdctl.
    pub is_etcdutl: bool,
    /// Whether `--bump-revision` and `--mark-compacted` are available.
    pub can_bump_revision: bool,
    /// The first line of `--version`.
    pub version: String,
}

/// What to restore and as which member.
#[derive(Debug, Clone)]
pub struct Restore<'a> {
    /// The plain snapshot file.
    pub snapshot: &'a Path,
    /// The new data directory (must not exist).
    pub data_dir: &'a Path,
    /// Member name (`--name`).
    pub name: &'a str,
    /// `--initial-cluster`: every member as `name=peer-url`, comma separated.
    pub initial_cluster: &'a str,
    /// `--initial-advertise-peer-urls`: this member's peer URLs, comma separated.
    pub peer_urls: &'a str,
    /// `--initial-cluster-token`: the new cluster's token, the same on every member.
    pub token: &'a str,
}

impl Tool {
    /// Finds the tool: `explicit`, else etcdutl on PATH, else etcdctl on PATH.
    pub fn find(explicit: Option<&Path>) -> Result<Tool, Error> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => which("etcdutl")
                .or_else(|| which("etcdctl"))
                .ok_or(Error::NotFound)?,
        };
        let is_etcdutl = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("etcdutl"));
        let tool = path.display().to_string();
        let run = |args: &[&str]| {
            Command::new(&path)
                .args(args)
                .env("ETCDCTL_API", "3")
                .output()
                .map_err(|source| Error::Run {
                    tool: tool.clone(),
                    source,
                })
        };
        let version = run(&["version"])?;
        let version = String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .unwrap_or("unknown version")
            .to_string();
        let help = run(&["snapshot", "restore", "--help"])?;
        let help = format!(
            "{}{}",
            String::from_utf8_lossy(&help.stdout),
            String::from_utf8_lossy(&help.stderr)
        );
        if !help.contains("--data-dir") {
            return Err(Error::Unusable {
                tool,
                reason: "its `snapshot restore --help` does not mention --data-dir",
            });
        }
        Ok(Tool {
            can_bump_revision: help.contains("--bump-revision")
                && help.contains("--mark-compacted"),
            path,
            is_etcdutl,
            version,
        })
    }

    /// The arguments of the restore command, for showing in the plan and for running.
    pub fn args(&self, r: &Restore<'_>) -> Vec<String> {
        let mut args = vec![
            "snapshot".to_string(),
            "restore".to_string(),
            r.snapshot.display().to_string(),
            format!("--data-dir={}", r.data_dir.display()),
            format!("--name={}", r.name),
            format!("--initial-cluster={}", r.initial_cluster),
            format!("--initial-advertise-peer-urls={}", r.peer_urls),
            format!("--initial-cluster-token={}", r.token),
        ];
        if self.can_bump_revision {
            args.push(format!("--bump-revision={BUMP_REVISION}"));
            args.push("--mark-compacted".to_string());
        }
        args
    }

    /// Runs the restore.
    pub fn restore(&self, r: &Restore<'_>) -> Result<(), Error> {
        let out = Command::new(&self.path)
            .args(self.args(r))
            .env("ETCDCTL_API", "3")
            .output()
            .map_err(|source| Error::Run {
                tool: self.path.display().to_string(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(Error::Failed {
            tool: self.path.display().to_string(),
            status: out.status.to_string(),
            stderr: stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string(),
        })
    }
}

/// The first file called `name` in a PATH directory.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(bump: bool) -> Tool {
        Tool {
            path: PathBuf::from("/usr/local/bin/etcdutl"),
            is_etcdutl: true,
            can_bump_revision: bump,
            version: "etcdutl version: 3.5.16".into(),
        }
    }

    #[test]
    fn the_restore_command_names_the_member_and_bumps_only_when_supported() {
        let r = Restore {
            snapshot: Path::new("/var/lib/etcd-restore-x.snapshot.db"),
            data_dir: Path::new("/var/lib/etcd-restore-x"),
            name: "cp-1",
            initial_cluster: "cp-1=https://10.0.0.11:2380,cp-2=https://10.0.0.12:2380",
            peer_urls: "https://10.0.0.11:2380",
            token: "etcd-cluster-x",
        };
        let plain = tool(false).args(&r);
        assert_eq!(
            plain,
            [
                "snapshot",
                "restore",
                "/var/lib/etcd-restore-x.snapshot.db",
                "--data-dir=/var/lib/etcd-restore-x",
                "--name=cp-1",
                "--initial-cluster=cp-1=https://10.0.0.11:2380,cp-2=https://10.0.0.12:2380",
                "--initial-advertise-peer-urls=https://10.0.0.11:2380",
                "--initial-cluster-token=etcd-cluster-x",
            ]
        );
        let bumped = tool(true).args(&r);
        assert_eq!(&bumped[..plain.len()], plain.as_slice());
        assert_eq!(
            &bumped[plain.len()..],
            ["--bump-revision=1000000000", "--mark-compacted"]
        );
    }
}
