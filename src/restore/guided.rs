//! The guided etcd restore of a kubeadm control-plane node. Order matters: the backup is
//! downloaded and verified first (nothing on the node changes until then); the plan and the
//! etcd.yaml diff are shown; then etcd and kube-apiserver are stopped by moving their static-pod
//! manifests out of the kubelet's directory, the snapshot is restored into a NEW data dir (the
//! old one is never touched), the regenerated etcd.yaml goes back, and kube-apiserver follows
//! once etcd answers. Every failure after the first change says how the node stands and the
//! exact commands that roll it back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::etcdutl::{self, Tool};
use super::manifest_rewrite::{self, EtcdManifest, Rewrite, Rewritten};
use crate::config;

/// Why the guided restore stopped.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read {path}: {source}; pass --manifest with the path of kubeadm's etcd.yaml")]
    ReadManifest {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: manifest_rewrite::Error,
    },
    #[error(
        "{path} already exists: choose another --data-dir (the restore never writes into an existing directory)"
    )]
    DataDirExists { path: PathBuf },
    #[error("{path} already exists: choose another --backup-dir for the original manifests")]
    BackupDirExists { path: PathBuf },
    #[error(transparent)]
    Tool(#[from] etcdutl::Error),
    #[error("{step} failed: {reason}. {state}")]
    Step {
        step: String,
        reason: String,
        state: String,
    },
}

/// Inputs of the guided restore.
#[derive(Debug, Clone)]
pub struct Options {
    /// kubeadm's etcd.yaml.
    pub manifest: PathBuf,
    /// New data directory; default: `etcd-restore-<label>` beside the current one.
    pub data_dir: Option<PathBuf>,
    /// New cluster token; default: `etcd-cluster-<label>`.
    pub cluster_token: Option<String>,
    /// Member name; default: the manifest's `--name`.
    pub member_name: Option<String>,
    /// Where the original manifests go; default: `lifeboat-restore-<stamp>` beside the manifests
    /// directory (never inside it: the kubelet runs every file there).
    pub backup_dir: Option<PathBuf>,
    /// How long to wait for etcd to stop and to come back.
    pub wait: Duration,
}

/// Everything the restore will do, computed before anything changes.
#[derive(Debug)]
pub struct Plan {
    /// The manifest file.
    pub manifest: PathBuf,
    /// Its parsed contents.
    pub current: EtcdManifest,
    /// The regenerated manifest and its diff.
    pub rewritten: Rewritten,
    /// kube-apiserver.yaml beside it, if present.
    pub apiserver: Option<PathBuf>,
    /// Where the originals go.
    pub backup_dir: PathBuf,
    /// The new data dir.
    pub data_dir: PathBuf,
    /// The new cluster token.
    pub token: String,
    /// The member name.
    pub name: String,
}

/// Reads etcd.yaml and computes the plan. Reads files only; changes nothing.
pub fn plan(
    opts: &Options,
    label: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Plan, Error> {
    let text = std::fs::read_to_string(&opts.manifest).map_err(|source| Error::ReadManifest {
        path: opts.manifest.clone(),
        source,
    })?;
    let bad = |source| Error::Manifest {
        path: opts.manifest.clone(),
        source,
    };
    let current = EtcdManifest::parse(&text).map_err(bad)?;
    let old_dir = PathBuf::from(&current.data_volume.host_data_dir);
    let data_dir = opts.data_dir.clone().unwrap_or_else(|| {
        old_dir
            .parent()
            .unwrap_or(Path::new("/var/lib"))
            .join(format!("etcd-restore-{label}"))
    });
    if data_dir.exists() {
        return Err(Error::DataDirExists { path: data_dir });
    }
    let token = opts
        .cluster_token
        .clone()
        .unwrap_or_else(|| format!("etcd-cluster-{label}"));
    let mut rewrite = Rewrite::new(data_dir.display().to_string(), token.clone());
    rewrite.manifest_path = opts.manifest.display().to_string();
    let rewritten = manifest_rewrite::rewrite(&text, &rewrite).map_err(bad)?;
    let manifests_dir = opts.manifest.parent().unwrap_or(Path::new("."));
    let apiserver = Some(manifests_dir.join("kube-apiserver.yaml")).filter(|p| p.exists());
    let backup_dir = opts.backup_dir.clone().unwrap_or_else(|| {
        manifests_dir
            .parent()
            .unwrap_or(Path::new("/"))
            .join(format!("lifeboat-restore-{}", now.format("%Y%m%dT%H%M%SZ")))
    });
    if backup_dir.exists() {
        return Err(Error::BackupDirExists { path: backup_dir });
    }
    Ok(Plan {
        manifest: opts.manifest.clone(),
        name: opts
            .member_name
            .clone()
            .unwrap_or_else(|| current.name.clone()),
        current,
        rewritten,
        apiserver,
        backup_dir,
        data_dir,
        token,
    })
}

impl Plan {
    /// The plan as the on-call engineer reads it before confirming.
    pub fn describe(&self, tool: &Tool, snapshot: &Path) -> String {
        let r = self.restore_args(snapshot);
        let manifests = self.manifest.parent().unwrap_or(Path::new(".")).display();
        let mut moved = vec!["etcd.yaml"];
        if self.apiserver.is_some() {
            moved.push("kube-apiserver.yaml");
        }
        let mut s = String::new();
        s.push_str(&format!(
            "1. Stop the control plane: move {} from {manifests} to {} (outside the kubelet's directory), and wait for etcd to stop.\n",
            moved.join(" and "),
            self.backup_dir.display()
        ));
        s.push_str(&format!(
            "2. Restore the snapshot into the new data dir {} as member {}:\n   {} {}\n",
            self.data_dir.display(),
            self.name,
            tool.path.display(),
            tool.args(&r).join(" ")
        ));
        if !tool.can_bump_revision {
            s.push_str(&format!(
                "   ({} has no --bump-revision/--mark-compacted; restart the API server's clients after the restore so no watch misses a revision.)\n",
                tool.version
            ));
        }
        s.push_str(&format!(
            "3. Write the regenerated etcd.yaml to {} and wait for etcd to answer.\n",
            self.manifest.display()
        ));
        if self.apiserver.is_some() {
            s.push_str("4. Put kube-apiserver.yaml back.\n");
        }
        s.push_str(&format!(
            "The current data dir {} is not touched. Cluster members in --initial-cluster: {}.\n\nChanges to etcd.yaml:\n",
            self.current.data_volume.host_data_dir, self.current.initial_cluster
        ));
        for c in &self.rewritten.changes {
            s.push_str(&format!("  {c}\n"));
        }
        s.push('\n');
        s.push_str(&self.rewritten.diff);
        s
    }

    fn restore_args<'a>(&'a self, snapshot: &'a Path) -> etcdutl::Restore<'a> {
        etcdutl::Restore {
            snapshot,
            data_dir: &self.data_dir,
            name: &self.name,
            initial_cluster: &self.current.initial_cluster,
            peer_urls: &self.current.initial_advertise_peer_urls,
            token: &self.token,
        }
    }

    fn rollback(&self) -> String {
        let manifests = self
            .manifest
            .parent()
            .unwrap_or(Path::new("."))
            .display()
            .to_string();
        let mut files = vec![self.backup_dir.join("etcd.yaml").display().to_string()];
        if self.apiserver.is_some() {
            files.push(
                self.backup_dir
                    .join("kube-apiserver.yaml")
                    .display()
                    .to_string(),
            );
        }
        format!(
            "The node's etcd and kube-apiserver are stopped; the original manifests are in {dir} and the old data dir {old} is untouched. To roll back: mv {files} {manifests}/",
            dir = self.backup_dir.display(),
            old = self.current.data_volume.host_data_dir,
            files = files.join(" "),
        )
    }

    /// Carries the plan out with a verified plain `snapshot`. `etcd` says how to reach etcd for
    /// the health check (the config's endpoints and TLS); `say` prints progress.
    pub async fn execute(
        &self,
        tool: &Tool,
        snapshot: &Path,
        etcd: &config::Etcd,
        wait: Duration,
        say: &dyn Fn(&str),
    ) -> Result<(), Error> {
        let step = |name: &str, reason: String, state: String| Error::Step {
            step: name.to_string(),
            reason,
            state,
        };
        // 1. Stop the control plane.
        std::fs::create_dir_all(&self.backup_dir).map_err(|e| {
            step(
                "creating the backup directory",
                format!("{}: {e}", self.backup_dir.display()),
                "Nothing on the node was changed.".into(),
            )
        })?;
        if let Some(api) = &self.apiserver {
            move_file(api, &self.backup_dir.join("kube-apiserver.yaml")).map_err(|e| {
                step(
                    "moving kube-apiserver.yaml out",
                    e,
                    "Nothing else was changed; the backup directory is empty.".into(),
                )
            })?;
            say(&format!(
                "Moved kube-apiserver.yaml to {}.",
                self.backup_dir.display()
            ));
        }
        let manifests_dir = self.manifest.parent().unwrap_or(Path::new("."));
        move_file(&self.manifest, &self.backup_dir.join("etcd.yaml")).map_err(|e| {
            let state = match &self.apiserver {
                Some(_) => format!(
                    "etcd still runs from the original etcd.yaml; kube-apiserver is stopped. Put it back: mv {} {}/",
                    self.backup_dir.join("kube-apiserver.yaml").display(),
                    manifests_dir.display()
                ),
                None => "Nothing else was changed.".to_string(),
            };
            step("moving etcd.yaml out", e, state)
        })?;
        say(&format!(
            "Moved etcd.yaml to {}; waiting for etcd to stop.",
            self.backup_dir.display()
        ));
        wait_until_stopped(&self.current, wait)
            .await
            .map_err(|e| step("waiting for etcd to stop", e, self.rollback()))?;

        // 2. Restore into the new data dir.
        say(&format!(
            "Restoring into {} with {}.",
            self.data_dir.display(),
            tool.path.display()
        ));
        tool.restore(&self.restore_args(snapshot)).map_err(|e| {
            let _ = std::fs::remove_dir_all(&self.data_dir);
            step("restoring the snapshot", e.to_string(), self.rollback())
        })?;

        // 3. The regenerated etcd.yaml, written atomically into place.
        let tmp = self.backup_dir.join("etcd.yaml.new");
        std::fs::write(&tmp, &self.rewritten.text)
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .map_err(|e| step("writing the new etcd.yaml", e.to_string(), self.rollback()))?;
        move_file(&tmp, &self.manifest)
            .map_err(|e| step("putting the new etcd.yaml in place", e, self.rollback()))?;
        say("Wrote the regenerated etcd.yaml; waiting for etcd to answer.");
        let after = format!(
            "etcd.yaml now points at {}; kube-apiserver is still stopped. Check etcd's container log (crictl logs) or roll back: rm {} && {}",
            self.data_dir.display(),
            self.manifest.display(),
            self.rollback()
                .split("To roll back: ")
                .nth(1)
                .unwrap_or_default()
        );
        wait_until_healthy(etcd, wait)
            .await
            .map_err(|e| step("waiting for the restored etcd", e, after))?;
        say("etcd answers.");

        // 4. The API server comes back.
        if self.apiserver.is_some() {
            let dest = self
                .manifest
                .parent()
                .unwrap_or(Path::new("."))
                .join("kube-apiserver.yaml");
            move_file(&self.backup_dir.join("kube-apiserver.yaml"), &dest).map_err(|e| {
                step(
                    "putting kube-apiserver.yaml back",
                    e,
                    format!("etcd runs on the restored data. Put it back by hand: mv {}/kube-apiserver.yaml {}", self.backup_dir.display(), dest.display()),
                )
            })?;
            say("Put kube-apiserver.yaml back.");
        }
        Ok(())
    }
}

fn move_file(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::rename(from, to)
        .or_else(|_| std::fs::copy(from, to).and_then(|_| std::fs::remove_file(from)))
        .map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))
}

/// Host:port of each client URL etcd listens on.
fn listen_addrs(m: &EtcdManifest) -> Vec<String> {
    m.listen_client_urls
        .split(',')
        .filter_map(|u| url::Url::parse(u.trim()).ok())
        .filter_map(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .collect()
}

async fn wait_until_stopped(m: &EtcdManifest, wait: Duration) -> Result<(), String> {
    let addrs = listen_addrs(m);
    let crictl = etcdutl::which("crictl");
    let start = Instant::now();
    loop {
        let port_open = addrs.iter().any(|a| {
            std::net::ToSocketAddrs::to_socket_addrs(a.as_str())
                .map(|mut resolved| {
                    resolved.any(|sa| {
                        std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(300))
                            .is_ok()
                    })
                })
                .unwrap_or(false)
        });
        let container_running = crictl.as_ref().is_some_and(|c| {
            std::process::Command::new(c)
                .args(["ps", "--name", "^etcd$", "--state", "Running", "-q"])
                .output()
                .is_ok_and(|o| o.status.success() && !o.stdout.iter().all(u8::is_ascii_whitespace))
        });
        if !port_open && !container_running {
            return Ok(());
        }
        if start.elapsed() > wait {
            return Err(format!(
                "etcd still runs after {wait:?} (is the kubelet running? it stops static pods whose manifest is removed)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_until_healthy(etcd: &config::Etcd, wait: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < wait {
        let mut short = etcd.clone();
        short.timeout = Duration::from_secs(3);
        match crate::source::etcd::connect(&short).await {
            Ok(member) => match member.linearizable_read().await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("etcd did not answer within {wait:?}: {last}"))
}
