//! The guided etcd restore of a kubeadm control-plane node. Order matters: the backup is
//! downloaded and verified and lifeboat proves it can talk to this node's etcd first (nothing on
//! the node changes until then); the plan and the etcd.yaml diff are shown; then etcd and
//! kube-apiserver are stopped by moving their static pods out of the kubelet's
//! directory, the snapshot is restored into a NEW data dir (the old one is never touched), the
//! regenerated etcd.yaml goes back, and kube-apiserver follows once etcd answers.
//!
//! Whenever the flow stops after the first change (a failure, SIGINT or SIGTERM), it looks at
//! the node again and reports what it saw, never what it expected: where each static pod file is,
//! whether etcd still accepts connections, which data dirs exist, and the exact commands that
//! roll the node back ([`NodeState`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use super::etcd_yaml::{self, EtcdYaml, Rewrite, Rewritten};
use super::etcdutl::{self, Tool};
use crate::config;
use crate::manifest::BackupId;
use crate::source::etcd as etcd_source;

/// Why the guided restore stopped.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read {path}; pass --manifest with the path of kubeadm's etcd.yaml")]
    ReadEtcdYaml {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make {path} an absolute path")]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}")]
    EtcdYaml {
        path: PathBuf,
        #[source]
        source: etcd_yaml::Error,
    },
    #[error(
        "{path} already exists: choose another --data-dir (the restore never writes into an existing directory)"
    )]
    DataDirExists { path: PathBuf },
    #[error("{path} already exists: choose another --backup-dir for the original static pods")]
    BackupDirExists { path: PathBuf },
    #[error(
        "etcd.yaml's --listen-client-urls ({urls}) has no URL lifeboat can check etcd with: fix etcd.yaml"
    )]
    NoHealthEndpoint { urls: String },
    #[error(
        "etcd listens on https only ({urls}), but the config has no etcd.tls to reach it with: add etcd.tls (kubeadm: /etc/kubernetes/pki/etcd/ca.crt and healthcheck-client.crt/.key)"
    )]
    NoTls { urls: String },
    #[error(
        "lifeboat cannot check this node's etcd at {endpoints}, so it changes nothing: without that it could not tell a restored etcd that works from one that does not. {cause}. If etcd is down because of the failure you are restoring from, pass --skip-etcd-check"
    )]
    Preflight {
        endpoints: String,
        cause: etcd_source::Error,
    },
    #[error(
        "{path} was kept by an earlier run but is not backup {id}'s verified snapshot ({why}): remove it to download backup {id} again, or pass --snapshot {path} to restore from that file instead"
    )]
    ForeignSnapshot {
        path: PathBuf,
        id: BackupId,
        /// Shown in the middle of the message, before the advice, so not a `source`.
        why: Foreign,
    },
    #[error(transparent)]
    Tool(#[from] etcdutl::Error),
    #[error("{step} failed: {reason}.\n{state}")]
    Step {
        step: String,
        reason: String,
        state: String,
    },
    #[error("interrupted by {signal} while {step}.\n{state}")]
    Interrupted {
        signal: &'static str,
        step: String,
        state: String,
    },
}

/// Inputs of the guided restore.
#[derive(Debug, Clone)]
pub struct Options {
    /// kubeadm's etcd.yaml.
    pub etcd_yaml: PathBuf,
    /// New data directory; default: `etcd-restore-<label>` beside the current one.
    pub data_dir: Option<PathBuf>,
    /// New cluster token; default: `etcd-cluster-<label>`.
    pub cluster_token: Option<String>,
    /// Member name; default: etcd.yaml's `--name`.
    pub member_name: Option<String>,
    /// Where the original static pods go; default: `lifeboat-restore-<stamp>` beside the static
    /// pod directory (never inside it: the kubelet runs every file there).
    pub backup_dir: Option<PathBuf>,
    /// How long to wait for etcd to stop and to come back.
    pub wait: Duration,
}

/// Everything the restore will do, computed before anything changes. Every path is absolute.
#[derive(Debug)]
pub struct Plan {
    /// etcd.yaml.
    pub etcd_yaml: PathBuf,
    /// Its text as read.
    pub original_text: String,
    /// Its parsed contents.
    pub current: EtcdYaml,
    /// The regenerated etcd.yaml and its diff.
    pub rewritten: Rewritten,
    /// kube-apiserver.yaml beside it, if present.
    pub apiserver: Option<PathBuf>,
    /// Where the original static pods go (must not exist yet).
    pub backup_dir: PathBuf,
    /// The host directory the snapshot is restored into (must not exist yet).
    pub data_dir: PathBuf,
    /// `--initial-cluster-token` of the restored member.
    pub token: String,
    /// `--name` of the restored member.
    pub name: String,
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|source| Error::Path {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads etcd.yaml and computes the plan. Reads files only; changes nothing. Relative paths
/// are made absolute first, so every command the restore prints works from any directory.
pub fn plan(
    opts: &Options,
    label: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Plan, Error> {
    let etcd_yaml = absolute(&opts.etcd_yaml)?;
    let text = std::fs::read_to_string(&etcd_yaml).map_err(|source| Error::ReadEtcdYaml {
        path: etcd_yaml.clone(),
        source,
    })?;
    let bad = |source| Error::EtcdYaml {
        path: etcd_yaml.clone(),
        source,
    };
    let current = EtcdYaml::parse(&text).map_err(bad)?;
    let old_dir = PathBuf::from(&current.data_volume.host_data_dir);
    let data_dir = match &opts.data_dir {
        Some(d) => absolute(d)?,
        None => old_dir
            .parent()
            .unwrap_or(Path::new("/var/lib"))
            .join(format!("etcd-restore-{label}")),
    };
    if data_dir.exists() {
        return Err(Error::DataDirExists { path: data_dir });
    }
    let token = opts
        .cluster_token
        .clone()
        .unwrap_or_else(|| format!("etcd-cluster-{label}"));
    let mut rewrite = Rewrite::new(data_dir.display().to_string(), token.clone());
    rewrite.path = etcd_yaml.display().to_string();
    let rewritten = etcd_yaml::rewrite(&text, &rewrite).map_err(bad)?;
    let pod_dir = etcd_yaml.parent().unwrap_or(Path::new("/")).to_path_buf();
    let apiserver = Some(pod_dir.join("kube-apiserver.yaml")).filter(|p| p.exists());
    let backup_dir = match &opts.backup_dir {
        Some(d) => absolute(d)?,
        None => pod_dir
            .parent()
            .unwrap_or(Path::new("/"))
            .join(format!("lifeboat-restore-{}", now.format("%Y%m%dT%H%M%SZ"))),
    };
    if backup_dir.exists() {
        return Err(Error::BackupDirExists { path: backup_dir });
    }
    Ok(Plan {
        etcd_yaml,
        original_text: text,
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

/// A SIGINT or SIGTERM that arrived during the guided restore. The flow finishes or undoes the
/// step it is in, then stops and reports the node's state.
#[derive(Debug, Default)]
pub struct Interrupt {
    token: CancellationToken,
    signal: OnceLock<&'static str>,
}

impl Interrupt {
    /// Records `signal` (the first one counts) and wakes every wait.
    pub fn trigger(&self, signal: &'static str) {
        let _ = self.signal.set(signal);
        self.token.cancel();
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<&'static str> {
        self.signal.get().copied()
    }

    async fn wait(&self) -> &'static str {
        self.token.cancelled().await;
        self.received().unwrap_or("a signal")
    }
}

/// The etcd.yaml in the kubelet's directory, as found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveEtcdYaml {
    /// The file the restore started from.
    Original,
    /// The regenerated one, pointing at the new data dir.
    Rewritten,
    /// Some other content.
    Other,
    /// No file.
    Absent,
}

/// Whether etcd runs, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdSeen {
    /// Something accepts connections on one of etcd's client addresses.
    Listening(String),
    /// crictl lists a running etcd container.
    Container,
    /// Nothing accepts connections on `addrs` (and crictl, if present, lists no etcd).
    Stopped { addrs: String, crictl: bool },
}

/// The node as lifeboat sees it when it stops: every message about the node's state is
/// composed from this, never from what the flow expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// `<static pod dir>/etcd.yaml`.
    pub etcd_live: LiveEtcdYaml,
    /// `<backup dir>/etcd.yaml` exists.
    pub etcd_saved: bool,
    /// The plan moves kube-apiserver.yaml.
    pub apiserver_planned: bool,
    /// `<static pod dir>/kube-apiserver.yaml` exists.
    pub apiserver_live: bool,
    /// `<backup dir>/kube-apiserver.yaml` exists.
    pub apiserver_saved: bool,
    /// etcd, as observed.
    pub etcd: EtcdSeen,
    /// The new data dir exists.
    pub new_data_dir: bool,
    /// The old data dir exists.
    pub old_data_dir: bool,
}

/// Quotes `p` for a POSIX shell when it needs it.
fn sh(p: &Path) -> String {
    let s = p.display().to_string();
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@,%".contains(&b))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl NodeState {
    /// The shell command that puts the original static pods back, if anything needs to move.
    pub fn rollback_command(&self, plan: &Plan) -> Option<String> {
        let mut files = Vec::new();
        if self.etcd_saved && self.etcd_live != LiveEtcdYaml::Original {
            files.push(sh(&plan.backup_dir.join("etcd.yaml")));
        }
        if self.apiserver_saved && !self.apiserver_live {
            files.push(sh(&plan.backup_dir.join("kube-apiserver.yaml")));
        }
        (!files.is_empty())
            .then(|| format!("mv -f {} {}/", files.join(" "), sh(&plan.static_pod_dir())))
    }

    /// What lifeboat saw, one line per fact, then the rollback command (on a line of its own
    /// that starts with "To roll back: ") and what else can be done.
    pub fn describe(&self, plan: &Plan) -> String {
        let pod_dir = plan.static_pod_dir();
        let backup = &plan.backup_dir;
        let new = plan.data_dir.display();
        let mut s = String::from("Node state, as lifeboat sees it now:\n");
        let live = pod_dir.join("etcd.yaml");
        s.push_str(&format!(
            "  - {}: {}\n",
            live.display(),
            match self.etcd_live {
                LiveEtcdYaml::Original => "the original (etcd runs from the old data dir)".into(),
                LiveEtcdYaml::Rewritten => format!("the regenerated one (etcd runs from {new})"),
                LiveEtcdYaml::Other =>
                    "a file that is neither the original nor the one lifeboat wrote".into(),
                LiveEtcdYaml::Absent => "absent (the kubelet runs no etcd)".into(),
            }
        ));
        s.push_str(&format!(
            "  - {}: {}\n",
            backup.join("etcd.yaml").display(),
            if self.etcd_saved {
                "the original, saved"
            } else {
                "absent"
            }
        ));
        if self.apiserver_planned {
            let where_ = match (self.apiserver_live, self.apiserver_saved) {
                (true, false) => {
                    format!("in {} only (kube-apiserver can run)", pod_dir.display())
                }
                (false, true) => {
                    format!("in {} only (kube-apiserver is stopped)", backup.display())
                }
                (true, true) => format!(
                    "in both {} and {} (kube-apiserver can run)",
                    pod_dir.display(),
                    backup.display()
                ),
                (false, false) => format!(
                    "in neither {} nor {} (kube-apiserver is stopped)",
                    pod_dir.display(),
                    backup.display()
                ),
            };
            s.push_str(&format!("  - kube-apiserver.yaml: {where_}\n"));
        }
        s.push_str(&format!(
            "  - etcd: {}\n",
            match &self.etcd {
                EtcdSeen::Listening(addr) => format!("running ({addr} accepts connections)"),
                EtcdSeen::Container => "running (crictl lists a running etcd container)".into(),
                EtcdSeen::Stopped { addrs, crictl } => format!(
                    "not running (nothing accepts connections on {addrs}{})",
                    if *crictl {
                        "; crictl lists no running etcd container"
                    } else {
                        ""
                    }
                ),
            }
        ));
        s.push_str(&format!(
            "  - new data dir {new}: {}\n",
            if self.new_data_dir {
                "present"
            } else {
                "absent"
            }
        ));
        s.push_str(&format!(
            "  - old data dir {}: {}\n",
            plan.current.data_volume.host_data_dir,
            if self.old_data_dir {
                "present (lifeboat never writes to it)"
            } else {
                "absent"
            }
        ));
        match self.rollback_command(plan) {
            Some(cmd) => s.push_str(&format!("To roll back: {cmd}\n")),
            None if self.etcd_live == LiveEtcdYaml::Original
                && (!self.apiserver_planned || self.apiserver_live) =>
            {
                s.push_str(
                    "Nothing to roll back: the original static pods are in the kubelet's directory.\n",
                )
            }
            None => s.push_str(&format!(
                "lifeboat cannot roll back by itself: the original etcd.yaml is not in {}; put kubeadm's etcd.yaml back into {} by hand.\n",
                backup.display(),
                pod_dir.display()
            )),
        }
        if self.etcd_live == LiveEtcdYaml::Rewritten && self.apiserver_saved && !self.apiserver_live
        {
            s.push_str(&format!(
                "To keep the restore instead, once etcd answers: mv {} {}/\n",
                sh(&backup.join("kube-apiserver.yaml")),
                sh(&pod_dir)
            ));
        }
        if self.new_data_dir && self.etcd_live != LiveEtcdYaml::Rewritten {
            s.push_str(&format!(
                "The new data dir {new} is not in use; remove it (rm -rf {}) before running the restore again, or pass another --data-dir.\n",
                sh(&plan.data_dir)
            ));
        }
        s
    }
}

/// How a health probe of the restored etcd went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// A linearizable read succeeded.
    Serving,
    /// Nothing accepts connections: etcd is down (or not started yet).
    Down(String),
    /// It accepts connections but does not answer in time.
    NoAnswer(String),
    /// lifeboat cannot authenticate to it (TLS, certificates, endpoint scheme): etcd itself may
    /// be fine.
    Unauthenticated(String),
    /// It answers, but cannot serve a linearizable read (no leader, no quorum yet).
    NotServing(String),
}

impl Health {
    /// Sorts a failed connection.
    pub fn of(e: &etcd_source::Error) -> Health {
        use etcd_source::Error as E;
        match e {
            E::Connect { .. } => Health::Down(e.to_string()),
            E::Timeout { .. } => Health::NoAnswer(e.to_string()),
            E::NoEndpoint { attempts } => attempts
                .iter()
                .map(Health::of)
                .max_by_key(Health::rank)
                .unwrap_or_else(|| Health::Down(e.to_string())),
            _ => Health::Unauthenticated(e.to_string()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Health::Down(_) => 0,
            Health::NoAnswer(_) => 1,
            Health::NotServing(_) => 2,
            Health::Unauthenticated(_) => 3,
            Health::Serving => 4,
        }
    }

    /// Same kind of state (the detail may differ between probes).
    fn same_kind(&self, other: &Health) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// One sentence for the on-call engineer.
    pub fn sentence(&self) -> String {
        match self {
            Health::Serving => "etcd answers".into(),
            Health::Down(e) => format!("etcd is down: {e}"),
            Health::NoAnswer(e) => format!(
                "etcd accepts connections but does not answer yet (it may still be loading the data): {e}"
            ),
            Health::Unauthenticated(e) => format!(
                "lifeboat cannot authenticate to etcd (etcd itself may be running fine): {e}"
            ),
            Health::NotServing(e) => format!(
                "etcd answers but cannot serve reads yet (no leader or no quorum; restore the other members too): {e}"
            ),
        }
    }
}

/// Why a wait ended without success.
enum Waited {
    Interrupted(&'static str),
    TimedOut(String),
}

impl Plan {
    /// The kubelet's static-pod directory.
    pub fn static_pod_dir(&self) -> PathBuf {
        self.etcd_yaml
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf()
    }

    /// Where the verified snapshot of a backup is kept during (and after a failed) restore:
    /// `<data dir>.snapshot.db`, beside the new data dir.
    pub fn kept_snapshot(&self) -> PathBuf {
        let mut name = self.data_dir.file_name().unwrap_or_default().to_os_string();
        name.push(".snapshot.db");
        self.data_dir.with_file_name(name)
    }

    /// The plan as the on-call engineer reads it before confirming.
    pub fn describe(&self, tool: &Tool, snapshot: &Path) -> String {
        let r = self.restore_args(snapshot);
        let pod_dir = self.static_pod_dir();
        let mut moved = vec!["etcd.yaml"];
        if self.apiserver.is_some() {
            moved.push("kube-apiserver.yaml");
        }
        let mut s = String::new();
        s.push_str(&format!(
            "1. Stop the control plane: move {} from {} to {} (outside the kubelet's directory), and wait for etcd to stop.\n",
            moved.join(" and "),
            pod_dir.display(),
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
            self.etcd_yaml.display()
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

    /// The etcd endpoints to health-check: this node's own client URLs from etcd.yaml (never
    /// other members, which may answer while this one is down), with `tls` for https. With
    /// `tls`, only the https URLs are used; without it, only the http ones.
    pub fn health_endpoints(
        &self,
        tls: Option<config::Tls>,
        timeout: Duration,
    ) -> Result<config::Etcd, Error> {
        let urls = &self.current.listen_client_urls;
        let all: Vec<url::Url> = urls
            .split(',')
            .filter_map(|u| url::Url::parse(u.trim()).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .map(|mut u| {
                if u.host_str() == Some("0.0.0.0") || u.host_str() == Some("[::]") {
                    let _ = u.set_host(Some("127.0.0.1"));
                }
                u
            })
            .collect();
        if all.is_empty() {
            return Err(Error::NoHealthEndpoint { urls: urls.clone() });
        }
        let https: Vec<url::Url> = all
            .iter()
            .filter(|u| u.scheme() == "https")
            .cloned()
            .collect();
        let http: Vec<url::Url> = all
            .iter()
            .filter(|u| u.scheme() == "http")
            .cloned()
            .collect();
        let (endpoints, tls) = match tls {
            Some(tls) if !https.is_empty() => (https, Some(tls)),
            _ if !http.is_empty() => (http, None),
            _ => return Err(Error::NoTls { urls: urls.clone() }),
        };
        Ok(config::Etcd {
            endpoints,
            tls,
            timeout,
        })
    }

    /// Looks at the node: the static pods in both directories, etcd's client ports, the data
    /// dirs.
    pub fn observe(&self) -> NodeState {
        let live = self.etcd_yaml.clone();
        let etcd_live = match std::fs::read_to_string(&live) {
            Ok(t) if t == self.original_text => LiveEtcdYaml::Original,
            Ok(t) if t == self.rewritten.text => LiveEtcdYaml::Rewritten,
            Ok(_) => LiveEtcdYaml::Other,
            Err(_) if live.exists() => LiveEtcdYaml::Other,
            Err(_) => LiveEtcdYaml::Absent,
        };
        NodeState {
            etcd_live,
            etcd_saved: self.backup_dir.join("etcd.yaml").is_file(),
            apiserver_planned: self.apiserver.is_some(),
            apiserver_live: self.static_pod_dir().join("kube-apiserver.yaml").is_file(),
            apiserver_saved: self.backup_dir.join("kube-apiserver.yaml").is_file(),
            etcd: observe_etcd(&self.current),
            new_data_dir: self.data_dir.exists(),
            old_data_dir: Path::new(&self.current.data_volume.host_data_dir).exists(),
        }
    }

    fn state(&self) -> String {
        self.observe().describe(self)
    }

    /// Carries the plan out with a verified plain `snapshot`. `etcd` says how to reach this
    /// node's etcd for the health check ([`Plan::health_endpoints`]); `interrupt` stops the flow
    /// at the end of the current step; `say` prints progress.
    pub async fn execute(
        &self,
        tool: &Tool,
        snapshot: &Path,
        etcd: &config::Etcd,
        wait: Duration,
        interrupt: &Interrupt,
        say: &dyn Fn(&str),
    ) -> Result<(), Error> {
        let fail = |step: &str, reason: String| Error::Step {
            step: step.to_string(),
            reason,
            state: self.state(),
        };
        let interrupted = |signal: &'static str, step: &str| Error::Interrupted {
            signal,
            step: step.to_string(),
            state: self.state(),
        };
        let check = |step: &str| match interrupt.received() {
            Some(signal) => Err(interrupted(signal, step)),
            None => Ok(()),
        };
        let pod_dir = self.static_pod_dir();

        // 1. Stop the control plane.
        check("starting the restore")?;
        std::fs::create_dir_all(&self.backup_dir).map_err(|e| {
            fail(
                "creating the backup directory",
                format!("{}: {e}", self.backup_dir.display()),
            )
        })?;
        if let Some(api) = &self.apiserver {
            move_file(api, &self.backup_dir.join("kube-apiserver.yaml"))
                .map_err(|e| fail("moving kube-apiserver.yaml out", e))?;
            say(&format!(
                "Moved kube-apiserver.yaml to {}.",
                self.backup_dir.display()
            ));
        }
        check("stopping the control plane")?;
        move_file(&self.etcd_yaml, &self.backup_dir.join("etcd.yaml"))
            .map_err(|e| fail("moving etcd.yaml out", e))?;
        say(&format!(
            "Moved etcd.yaml to {}; waiting for etcd to stop.",
            self.backup_dir.display()
        ));
        match wait_until_stopped(&self.current, wait, interrupt).await {
            Ok(seen) => say(&format!("etcd has stopped: {seen}.")),
            Err(Waited::Interrupted(signal)) => {
                return Err(interrupted(signal, "waiting for etcd to stop"));
            }
            Err(Waited::TimedOut(reason)) => return Err(fail("waiting for etcd to stop", reason)),
        }
        check("stopping the control plane")?;

        // 2. Restore into the new data dir, in a thread so signals are still seen.
        say(&format!(
            "Restoring into {} with {}.",
            self.data_dir.display(),
            tool.path.display()
        ));
        let restore = {
            let tool = tool.clone();
            let (snapshot, data_dir) = (snapshot.to_path_buf(), self.data_dir.clone());
            let (name, cluster, peers, token) = (
                self.name.clone(),
                self.current.initial_cluster.clone(),
                self.current.initial_advertise_peer_urls.clone(),
                self.token.clone(),
            );
            tokio::task::spawn_blocking(move || {
                tool.restore(&etcdutl::Restore {
                    snapshot: &snapshot,
                    data_dir: &data_dir,
                    name: &name,
                    initial_cluster: &cluster,
                    peer_urls: &peers,
                    token: &token,
                })
            })
        };
        tokio::pin!(restore);
        let outcome = tokio::select! {
            r = &mut restore => r,
            signal = interrupt.wait() => {
                say(&format!("{signal} received: letting {} finish before stopping.", tool.path.display()));
                restore.await
            }
        };
        let outcome = outcome
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(reason) = outcome {
            // Undo the step: a half-written data dir must not be mistaken for a restore.
            let _ = std::fs::remove_dir_all(&self.data_dir);
            return Err(match interrupt.received() {
                Some(signal) => interrupted(signal, "restoring the snapshot"),
                None => fail("restoring the snapshot", reason),
            });
        }
        check("restoring the snapshot (it finished)")?;

        // 3. The regenerated etcd.yaml, written atomically into place.
        let tmp = self.backup_dir.join("etcd.yaml.new");
        std::fs::write(&tmp, &self.rewritten.text)
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .map_err(|e| fail("writing the new etcd.yaml", e.to_string()))?;
        move_file(&tmp, &self.etcd_yaml)
            .map_err(|e| fail("putting the new etcd.yaml in place", e))?;
        say("Wrote the regenerated etcd.yaml; waiting for etcd to answer.");
        match wait_until_healthy(etcd, wait, interrupt, say).await {
            Ok(endpoint) => say(&format!("etcd answers at {endpoint}.")),
            Err(Waited::Interrupted(signal)) => {
                return Err(interrupted(signal, "waiting for the restored etcd"));
            }
            Err(Waited::TimedOut(reason)) => {
                return Err(Error::Step {
                    step: "waiting for the restored etcd".into(),
                    reason,
                    state: self.state(),
                });
            }
        }

        // 4. The API server comes back (this last step is finished even after a signal).
        if self.apiserver.is_some() {
            let dest = pod_dir.join("kube-apiserver.yaml");
            move_file(&self.backup_dir.join("kube-apiserver.yaml"), &dest)
                .map_err(|e| fail("putting kube-apiserver.yaml back", e))?;
            say("Put kube-apiserver.yaml back.");
        }
        Ok(())
    }
}

/// Proves that lifeboat can reach and authenticate to `etcd` (this node's etcd, as the health
/// check will talk to it), before anything on the node changes. Returns the endpoint that
/// answered.
pub async fn preflight(etcd: &config::Etcd) -> Result<String, Error> {
    etcd_source::connect_quietly(etcd)
        .await
        .map(|member| member.status.endpoint.clone())
        .map_err(|cause| Error::Preflight {
            endpoints: etcd
                .endpoints
                .iter()
                .map(|u| u.as_str().trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
                .join(", "),
            cause,
        })
}

/// Why a kept snapshot file is not the backup's verified snapshot.
#[derive(Debug)]
pub enum Foreign {
    /// It cannot be opened.
    Open(std::io::Error),
    /// Reading it failed.
    Read(std::io::Error),
    /// etcd's trailing hash does not match its contents.
    NotIntact(crate::snapshot::Error),
    /// The backup's manifest records no etcd snapshot hash to compare with.
    NoRecordedHash,
    /// It is an intact snapshot, but another one.
    OtherSnapshot { found: String, recorded: String },
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Foreign::Open(e) => write!(f, "cannot open it: {}", crate::error::chain(e)),
            Foreign::Read(e) => write!(f, "cannot read it: {}", crate::error::chain(e)),
            Foreign::NotIntact(e) => write!(
                f,
                "it is not an intact etcd snapshot: {}",
                crate::error::chain(e)
            ),
            Foreign::NoRecordedHash => f.write_str("the manifest records no etcd snapshot hash"),
            Foreign::OtherSnapshot { found, recorded } => {
                write!(f, "its etcd hash is {found}, the backup's is {recorded}")
            }
        }
    }
}

/// Checks that the file an earlier run kept at `path` is exactly `manifest`'s snapshot:
/// intact (etcd's trailing sha256) and the one the manifest recorded.
pub fn check_kept_snapshot(path: &Path, manifest: &crate::manifest::Manifest) -> Result<(), Error> {
    let foreign = |why: Foreign| Error::ForeignSnapshot {
        path: path.to_path_buf(),
        id: manifest.id.clone(),
        why,
    };
    let mut file = std::fs::File::open(path).map_err(|e| foreign(Foreign::Open(e)))?;
    let mut check = crate::snapshot::TrailerCheck::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).map_err(|e| foreign(Foreign::Read(e)))?;
        if n == 0 {
            break;
        }
        check.update(&buf[..n]);
    }
    let verified = check.finish().map_err(|e| foreign(Foreign::NotIntact(e)))?;
    let recorded = manifest
        .etcd
        .as_ref()
        .ok_or_else(|| foreign(Foreign::NoRecordedHash))?;
    if verified.sha256 != recorded.snapshot_sha256 {
        return Err(foreign(Foreign::OtherSnapshot {
            found: verified.sha256,
            recorded: recorded.snapshot_sha256.clone(),
        }));
    }
    Ok(())
}

/// Moves `from` to `to`: a rename, or a copy and remove across file systems. When the copy was
/// made but the original cannot be removed, the copy is removed again, so the step either
/// happened or did not.
fn move_file(from: &Path, to: &Path) -> Result<(), String> {
    let shown = |e: std::io::Error| format!("{} -> {}: {e}", from.display(), to.display());
    let Err(rename) = std::fs::rename(from, to) else {
        return Ok(());
    };
    std::fs::copy(from, to).map_err(shown)?;
    if let Err(e) = std::fs::remove_file(from) {
        let undone = std::fs::remove_file(to).is_ok();
        return Err(format!(
            "{} -> {}: renaming failed ({rename}), and after copying, removing the original failed ({e}); {}",
            from.display(),
            to.display(),
            if undone {
                "the copy was removed again"
            } else {
                "the copy could not be removed"
            }
        ));
    }
    Ok(())
}

/// Host:port of each client URL etcd listens on.
fn listen_addrs(m: &EtcdYaml) -> Vec<String> {
    m.listen_client_urls
        .split(',')
        .filter_map(|u| url::Url::parse(u.trim()).ok())
        .filter_map(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .collect()
}

/// Whether etcd runs: something accepting connections on its client addresses, or a running
/// etcd container according to crictl.
fn observe_etcd(m: &EtcdYaml) -> EtcdSeen {
    let addrs = listen_addrs(m);
    let open = addrs.iter().find(|a| {
        std::net::ToSocketAddrs::to_socket_addrs(a.as_str())
            .map(|mut resolved| {
                resolved.any(|sa| {
                    std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(300)).is_ok()
                })
            })
            .unwrap_or(false)
    });
    if let Some(addr) = open {
        return EtcdSeen::Listening(addr.clone());
    }
    let crictl = etcdutl::which("crictl");
    let container_running = crictl.as_ref().is_some_and(|c| {
        std::process::Command::new(c)
            .args(["ps", "--name", "^etcd$", "--state", "Running", "-q"])
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.iter().all(u8::is_ascii_whitespace))
    });
    if container_running {
        return EtcdSeen::Container;
    }
    EtcdSeen::Stopped {
        addrs: addrs.join(", "),
        crictl: crictl.is_some(),
    }
}

async fn wait_until_stopped(
    m: &EtcdYaml,
    wait: Duration,
    interrupt: &Interrupt,
) -> Result<String, Waited> {
    let start = Instant::now();
    loop {
        let seen = observe_etcd(m);
        if let EtcdSeen::Stopped { addrs, .. } = &seen {
            return Ok(format!("nothing accepts connections on {addrs}"));
        }
        if start.elapsed() > wait {
            return Err(Waited::TimedOut(format!(
                "etcd still runs after {wait:?} ({}): is the kubelet running? it stops static pods whose file is removed",
                match seen {
                    EtcdSeen::Listening(a) => format!("{a} accepts connections"),
                    _ => "crictl lists a running etcd container".into(),
                }
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            signal = interrupt.wait() => return Err(Waited::Interrupted(signal)),
        }
    }
}

/// How often a health wait that sees no change says it is still waiting.
const STILL_WAITING_EVERY: Duration = Duration::from_secs(30);

async fn wait_until_healthy(
    etcd: &config::Etcd,
    wait: Duration,
    interrupt: &Interrupt,
    say: &dyn Fn(&str),
) -> Result<String, Waited> {
    let start = Instant::now();
    let mut last: Option<Health> = None;
    let mut last_said = Instant::now();
    loop {
        let probe = async {
            match etcd_source::connect_quietly(etcd).await {
                Ok(member) => {
                    let endpoint = member.status.endpoint.clone();
                    match member.linearizable_read().await {
                        Ok(()) => (Health::Serving, endpoint),
                        Err(e) => (Health::NotServing(format!("{endpoint}: {e}")), endpoint),
                    }
                }
                Err(e) => (Health::of(&e), String::new()),
            }
        };
        let (health, endpoint) = tokio::select! {
            h = probe => h,
            signal = interrupt.wait() => return Err(Waited::Interrupted(signal)),
        };
        if health == Health::Serving {
            return Ok(endpoint);
        }
        // Say each new kind of state once, then only now and then.
        let changed = !last.as_ref().is_some_and(|l| l.same_kind(&health));
        if changed {
            say(&format!("{}.", health.sentence()));
            last_said = Instant::now();
        } else if last_said.elapsed() >= STILL_WAITING_EVERY {
            say(&format!(
                "Still waiting ({}s of {}s): {}.",
                start.elapsed().as_secs(),
                wait.as_secs(),
                health.sentence()
            ));
            last_said = Instant::now();
        }
        last = Some(health);
        if start.elapsed() >= wait {
            let last = last.unwrap_or(Health::Down(String::new()));
            let advice = match &last {
                Health::Unauthenticated(_) => {
                    "Do not roll back on this alone: the restore may have worked and only lifeboat cannot authenticate; check etcd with etcdctl (--cacert, --cert, --key) and its container log (crictl logs) first"
                }
                _ => "Check etcd's container log (crictl logs) before deciding",
            };
            return Err(Waited::TimedOut(format!(
                "etcd did not answer within {wait:?}; last seen: {}. {advice}",
                last.sentence()
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            signal = interrupt.wait() => return Err(Waited::Interrupted(signal)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_at(root: &Path) -> Plan {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - etcd\n    - --advertise-client-urls=https://10.0.0.1:2379\n    - --data-dir=/var/lib/etcd\n    - --initial-advertise-peer-urls=https://10.0.0.1:2380\n    - --initial-cluster=cp-1=https://10.0.0.1:2380\n    - --listen-client-urls=https://127.0.0.1:2379,https://10.0.0.1:2379\n    - --name=cp-1\n    image: registry.k8s.io/etcd:3.5.9-0\n    name: etcd\n    volumeMounts:\n    - mountPath: /var/lib/etcd\n      name: etcd-data\n  volumes:\n  - hostPath:\n      path: /var/lib/etcd\n      type: DirectoryOrCreate\n    name: etcd-data\n";
        let pod_dir = root.join("manifests");
        std::fs::create_dir_all(&pod_dir).unwrap();
        std::fs::write(pod_dir.join("etcd.yaml"), text).unwrap();
        std::fs::write(pod_dir.join("kube-apiserver.yaml"), "kind: Pod\n").unwrap();
        plan(
            &Options {
                etcd_yaml: pod_dir.join("etcd.yaml"),
                data_dir: Some(root.join("etcd-restore-x")),
                cluster_token: None,
                member_name: None,
                backup_dir: Some(root.join("lifeboat-restore-x")),
                wait: Duration::from_secs(1),
            },
            "x",
            chrono::Utc::now(),
        )
        .unwrap()
    }

    fn stopped() -> EtcdSeen {
        EtcdSeen::Stopped {
            addrs: "127.0.0.1:2379".into(),
            crictl: false,
        }
    }

    #[test]
    fn a_relative_etcd_yaml_path_gives_absolute_paths_everywhere() {
        // Regression: a relative --manifest printed a rollback into / and a backup dir at
        // /lifeboat-restore-….
        let cwd = std::env::current_dir().unwrap();
        let root = tempfile::tempdir_in(&cwd).unwrap();
        let abs = plan_at(root.path());
        let rel = abs.etcd_yaml.strip_prefix(&cwd).unwrap().to_path_buf();
        assert!(rel.is_relative());
        let p = plan(
            &Options {
                etcd_yaml: rel,
                data_dir: None,
                cluster_token: None,
                member_name: None,
                backup_dir: None,
                wait: Duration::from_secs(1),
            },
            "x",
            chrono::Utc::now(),
        )
        .unwrap();
        assert_eq!(p.etcd_yaml, abs.etcd_yaml);
        assert_eq!(p.backup_dir.parent(), Some(root.path()));
        let state = NodeState {
            etcd_live: LiveEtcdYaml::Absent,
            etcd_saved: true,
            apiserver_planned: true,
            apiserver_live: false,
            apiserver_saved: true,
            etcd: stopped(),
            new_data_dir: false,
            old_data_dir: true,
        };
        let cmd = state.rollback_command(&p).unwrap();
        assert_eq!(
            cmd,
            format!(
                "mv -f {b}/etcd.yaml {b}/kube-apiserver.yaml {m}/",
                b = p.backup_dir.display(),
                m = root.path().join("manifests").display()
            )
        );
    }

    #[test]
    fn the_state_reports_what_is_on_disk_not_what_was_planned() {
        // Regression: after the copy of kube-apiserver.yaml was made, the message still said the
        // backup directory was empty; and the state said etcd was stopped while it still ran.
        let root = tempfile::tempdir().unwrap();
        let p = plan_at(root.path());
        let both = NodeState {
            etcd_live: LiveEtcdYaml::Original,
            etcd_saved: false,
            apiserver_planned: true,
            apiserver_live: true,
            apiserver_saved: true,
            etcd: EtcdSeen::Listening("127.0.0.1:2379".into()),
            new_data_dir: false,
            old_data_dir: true,
        };
        let text = both.describe(&p);
        assert!(text.contains("kube-apiserver.yaml: in both"), "{text}");
        assert!(
            text.contains("etcd: running (127.0.0.1:2379 accepts connections)"),
            "{text}"
        );
        assert!(text.contains("Nothing to roll back"), "{text}");
        assert_eq!(both.rollback_command(&p), None);

        let observed = p.observe();
        assert_eq!(observed.etcd_live, LiveEtcdYaml::Original);
        assert!(observed.apiserver_live && !observed.apiserver_saved);
    }

    #[test]
    fn after_the_new_etcd_yaml_is_written_the_rollback_overwrites_it_and_a_way_forward_is_shown() {
        let root = tempfile::tempdir().unwrap();
        let p = plan_at(root.path());
        let s = NodeState {
            etcd_live: LiveEtcdYaml::Rewritten,
            etcd_saved: true,
            apiserver_planned: true,
            apiserver_live: false,
            apiserver_saved: true,
            etcd: stopped(),
            new_data_dir: true,
            old_data_dir: true,
        };
        let text = s.describe(&p);
        assert!(text.contains("the regenerated one"), "{text}");
        assert!(
            text.contains("etcd: not running (nothing accepts connections on 127.0.0.1:2379)"),
            "{text}"
        );
        assert!(text.contains("To roll back: mv -f "), "{text}");
        assert!(text.contains("To keep the restore instead"), "{text}");
        assert!(!text.contains("is not in use"), "{text}");
    }

    #[test]
    fn paths_with_spaces_are_quoted_for_the_shell() {
        assert_eq!(sh(Path::new("/a b/it's")), r"'/a b/it'\''s'");
        assert_eq!(
            sh(Path::new("/etc/kubernetes/manifests")),
            "/etc/kubernetes/manifests"
        );
    }

    #[test]
    fn health_endpoints_follow_the_tls_setting() {
        let root = tempfile::tempdir().unwrap();
        let p = plan_at(root.path());
        let tls = config::Tls {
            ca_file: "/ca.crt".into(),
            client: None,
        };
        let e = p
            .health_endpoints(Some(tls), Duration::from_secs(5))
            .unwrap();
        assert_eq!(e.endpoints.len(), 2);
        assert!(matches!(
            p.health_endpoints(None, Duration::from_secs(5)),
            Err(Error::NoTls { .. })
        ));
    }

    #[test]
    fn an_authentication_failure_is_not_called_a_down_etcd() {
        let tls = etcd_source::Error::ClientCertMissing {
            endpoint: "https://127.0.0.1:2379".into(),
            reason: "CertificateRequired".into(),
        };
        let down = etcd_source::Error::Connect {
            endpoint: "https://10.0.0.1:2379".into(),
            reason: "connection refused".into(),
        };
        assert!(matches!(Health::of(&tls), Health::Unauthenticated(_)));
        assert!(matches!(Health::of(&down), Health::Down(_)));
        let both = etcd_source::Error::NoEndpoint {
            attempts: vec![down, tls],
        };
        assert!(matches!(Health::of(&both), Health::Unauthenticated(_)));
    }
}
