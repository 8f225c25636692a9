//! Restore drills: prove a backup restores. The backup is downloaded and verified, restored with
//! etcdutl into a throwaway data dir, started as a single-member etcd on 127.0.0.1 free ports,
//! and its revision and key count are compared with what the manifest recorded at backup time.
//! Everything lives in a temporary directory that is removed afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::error::chain;
use crate::keys::Identities;
use crate::manifest::{BackupId, Manifest};
use crate::restore::etcdutl::{self, Tool};
use crate::store::Store;

/// Why a drill failed.
#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "no etcd binary in {dir}: set drill.etcd_bin_dir or pass --etcd-bin-dir with the directory holding etcd and etcdutl"
    )]
    NoEtcd { dir: String },
    #[error(
        "neither etcdutl nor etcdctl is in {dir} or on PATH: set drill.etcd_bin_dir or pass --etcd-bin-dir with the directory holding etcd and etcdutl"
    )]
    NoTool { dir: String },
    #[error(
        "{tool} is not usable ({reason}): set drill.etcd_bin_dir or pass --etcd-bin-dir with a directory holding a working etcd and etcdutl"
    )]
    ToolUnusable { tool: String, reason: &'static str },
    #[error(
        "cannot run {tool}: set drill.etcd_bin_dir or pass --etcd-bin-dir with a directory holding a working etcd and etcdutl"
    )]
    ToolRun {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] etcdutl::Error),
    #[error(transparent)]
    Fetch(#[from] crate::restore::Error),
    #[error("drill of backup {id}: cannot {what}")]
    Local {
        id: BackupId,
        /// What the drill tried on this machine: create a work directory, find a free port...
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("drill of backup {id}: the restore worker failed")]
    Worker {
        id: BackupId,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error(
        "drill of backup {id}: the restored etcd exited ({status}); the end of its log:\n{log}"
    )]
    Exited {
        id: BackupId,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error(
        "drill of backup {id}: the restored etcd at {client} did not answer within {boot:?} ({last}); the end of its log:\n{log}"
    )]
    NoAnswer {
        id: BackupId,
        client: String,
        boot: Duration,
        last: Attempt,
        log: String,
    },
    #[error("drill of backup {id}: the manifest has no etcd section")]
    NotEtcd { id: BackupId },
    #[error(
        "drill of backup {id}: the restored etcd at {client} answered the first status request, then sent no answer to {what} within {call:?}: check the machine's load, or raise etcd.timeout"
    )]
    Silent {
        id: BackupId,
        client: String,
        what: &'static str,
        call: Duration,
    },
    #[error("drill of backup {id}: {what} of the restored etcd at {client} failed")]
    Etcd {
        id: BackupId,
        client: String,
        /// The request: "the status request", "counting keys at revision 42".
        what: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error(
        "drill of backup {id}: the restored etcd {what} is {got}, but the manifest recorded {want}: the backup does not hold what it claims"
    )]
    Mismatch {
        id: BackupId,
        what: &'static str,
        got: String,
        want: String,
    },
}

/// How the last attempt to reach a booting etcd ended, for [`Error::NoAnswer`].
#[derive(Debug, Default)]
pub enum Attempt {
    /// No attempt finished.
    #[default]
    None,
    /// The client failed.
    Failed(etcd_client::Error),
    /// The connection was accepted, and no answer came within this long.
    Silent(Duration),
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::None => f.write_str("no attempt finished"),
            Attempt::Failed(e) => f.write_str(&chain(e)),
            Attempt::Silent(limit) => write!(
                f,
                "it accepted the connection but sent no answer within {limit:?}"
            ),
        }
    }
}

/// What a passing drill found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The drilled backup.
    pub id: BackupId,
    /// Revision of the restored etcd.
    pub revision: i64,
    /// Keys at the manifest's revision in the restored etcd.
    pub key_count: u64,
    /// Whether the manifest had a key count to compare with.
    pub key_count_checked: bool,
    /// Wall time of the whole drill, in seconds.
    pub seconds: f64,
}

/// How long a drill waits for the etcd it starts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Each call to the restored etcd (connect, status, key count); default 30s, the config's
    /// etcd.timeout with [`Limits::from_config`].
    pub call: Duration,
    /// From starting the restored etcd until it answers; default 60s.
    pub boot: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            call: Duration::from_secs(30),
            boot: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// The default limits with the config's `etcd.timeout` for each call.
    pub fn from_config(cfg: &crate::config::Config) -> Limits {
        Limits {
            call: cfg
                .etcd
                .as_ref()
                .map_or(Limits::default().call, |e| e.timeout),
            ..Limits::default()
        }
    }
}

/// Where the drill finds etcd and its restore tool.
pub fn find_bin_dir(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let dir = match explicit {
        Some(d) => d.to_path_buf(),
        None => etcdutl::which("etcd")
            .and_then(|etcd| etcd.parent().map(Path::to_path_buf))
            .ok_or(Error::NoEtcd { dir: "PATH".into() })?,
    };
    if !dir.join("etcd").is_file() {
        return Err(Error::NoEtcd {
            dir: dir.display().to_string(),
        });
    }
    Ok(dir)
}

/// Runs one drill of `manifest`'s backup with etcd from `bin_dir`. Every call to the restored
/// etcd is bounded by `limits.call`, its start by `limits.boot`: a drill never hangs.
pub async fn run_with_limits(
    store: &Store,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
    bin_dir: &Path,
    limits: Limits,
) -> Result<Report, Error> {
    run_with_progress(store, manifest, identities, bin_dir, limits, Arc::default()).await
}

/// [`run_with_limits`], counting the download's bytes into `progress` (for a progress bar).
pub async fn run_with_progress(
    store: &Store,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
    bin_dir: &Path,
    limits: Limits,
    progress: Arc<crate::progress::Progress>,
) -> Result<Report, Error> {
    let started = Instant::now();
    let id = manifest.id.clone();
    let local = |what: &str| {
        let id = id.clone();
        let what = what.to_string();
        move |source| Error::Local { id, what, source }
    };
    let etcdutl = ["etcdutl", "etcdctl"]
        .iter()
        .map(|t| bin_dir.join(t))
        .find(|p| p.is_file());
    // etcdutl's own errors name `restore etcd`'s --etcdutl, which the drill does not have.
    let mut tool = Tool::find(etcdutl.as_deref()).map_err(|e| match e {
        etcdutl::Error::NotFound => Error::NoTool {
            dir: bin_dir.display().to_string(),
        },
        etcdutl::Error::Unusable { tool, reason } => Error::ToolUnusable { tool, reason },
        etcdutl::Error::Run { tool, source } => Error::ToolRun { tool, source },
        other => Error::Tool(other),
    })?;
    // A drill compares history at the recorded revision: no revision bump, no compaction.
    tool.can_bump_revision = false;
    let work = TempDir::new().map_err(local("create a work directory"))?;
    let snapshot = work.0.join("snapshot.db");
    crate::restore::fetch_with_progress(store, manifest, identities, Some(&snapshot), progress)
        .await?;

    let free_port = || free_port().map_err(local("find a free port on 127.0.0.1"));
    let (client_port, peer_port) = (free_port()?, free_port()?);
    let peer = format!("http://127.0.0.1:{peer_port}");
    let client = format!("http://127.0.0.1:{client_port}");
    let data = work.0.join("data");
    let restore = {
        let (tool, snapshot, data, peer) =
            (tool.clone(), snapshot.clone(), data.clone(), peer.clone());
        tokio::task::spawn_blocking(move || {
            tool.restore(&etcdutl::Restore {
                snapshot: &snapshot,
                data_dir: &data,
                name: "drill",
                initial_cluster: &format!("drill={peer}"),
                peer_urls: &peer,
                token: "lifeboat-drill",
            })
        })
    };
    restore.await.map_err(|source| Error::Worker {
        id: id.clone(),
        source,
    })??;
    let log_path = work.0.join("etcd.log");
    let log = std::fs::File::create(&log_path)
        .map_err(local(&format!("create {}", log_path.display())))?;
    let mut etcd = Command::new(bin_dir.join("etcd"))
        .arg("--name=drill")
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=drill={peer}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(KillOnDrop)
        .map_err(local(&format!("start {}", bin_dir.join("etcd").display())))?;

    let call = limits.call;
    let log_tail = || tail(&log_path, 5);
    let mut last = Attempt::None;
    let mut silent_for_a_whole_call = false;
    let mut kv = None;
    let booting = Instant::now();
    while booting.elapsed() < limits.boot {
        if let Ok(Some(status)) = etcd.0.try_wait() {
            return Err(Error::Exited {
                id,
                status,
                log: log_tail(),
            });
        }
        let attempt_limit = call.min(limits.boot.saturating_sub(booting.elapsed()));
        let attempt = async {
            // Only the TCP connect has its own timeout: the attempt as a whole is bounded
            // below, so a silent etcd is reported as such.
            let options = etcd_client::ConnectOptions::new().with_connect_timeout(attempt_limit);
            let mut c = etcd_client::Client::connect([client.as_str()], Some(options)).await?;
            c.status().await?;
            Ok::<_, etcd_client::Error>(c)
        };
        match tokio::time::timeout(attempt_limit, attempt).await {
            Ok(Ok(c)) => {
                kv = Some(c);
                break;
            }
            Ok(Err(e)) => {
                last = Attempt::Failed(e);
                silent_for_a_whole_call = false;
            }
            // A last attempt cut short by the boot limit does not replace a whole one.
            Err(_) if attempt_limit == call || !silent_for_a_whole_call => {
                last = Attempt::Silent(attempt_limit);
                silent_for_a_whole_call = attempt_limit == call;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let Some(mut kv) = kv else {
        return Err(Error::NoAnswer {
            id,
            client,
            boot: limits.boot,
            last,
            log: log_tail(),
        });
    };
    let recorded = manifest
        .etcd
        .as_ref()
        .ok_or_else(|| Error::NotEtcd { id: id.clone() })?;
    let silent = |what: &'static str| Error::Silent {
        id: id.clone(),
        client: client.clone(),
        what,
        call,
    };
    let refused = |what: String| {
        let (id, client) = (id.clone(), client.clone());
        move |source| Error::Etcd {
            id,
            client,
            what,
            source,
        }
    };
    let revision = tokio::time::timeout(call, kv.status())
        .await
        .map_err(|_| silent("the status request"))?
        .map_err(refused("the status request".into()))?
        .header()
        .map(|h| h.revision())
        .unwrap_or_default();
    if revision < recorded.revision {
        return Err(Error::Mismatch {
            id,
            what: "revision",
            got: revision.to_string(),
            want: format!("at least {}", recorded.revision),
        });
    }
    let count = tokio::time::timeout(
        call,
        crate::source::etcd::key_count_at(&mut kv, recorded.revision),
    )
    .await
    .map_err(|_| silent("the key count"))?
    .map_err(refused(format!(
        "counting keys at revision {}",
        recorded.revision
    )))?;
    if let Some(want) = recorded.key_count
        && want != count
    {
        return Err(Error::Mismatch {
            id,
            what: "key count at the recorded revision",
            got: count.to_string(),
            want: want.to_string(),
        });
    }
    Ok(Report {
        id,
        revision,
        key_count: count,
        key_count_checked: recorded.key_count.is_some(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The last `lines` lines of the file at `path` (indented), or a note that there is none.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if all.is_empty() {
        return "  (etcd wrote nothing)".into();
    }
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let random = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            std::process::id(),
        );
        let dir = std::env::temp_dir().join(format!("lifeboat-drill-{random:016x}"));
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}
