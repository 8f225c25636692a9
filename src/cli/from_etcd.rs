//! `--from-etcd`: the objects of an etcd snapshot (a backup, or a local `--snapshot` file) as
//! the source of `restore resources` and `diff`, instead of a resource export. A backup is
//! downloaded and verified into an owner-only temporary directory, read offline
//! (lifeboat::registry), and removed when the command ends, Ctrl-C included.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use lifeboat::apply::live::Input;
use lifeboat::apply::select::Selection;
use lifeboat::registry::{self, Report};

use super::BackupArg;

/// The options of an etcd snapshot as a source of objects.
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdSourceArgs {
    /// Read the objects out of an etcd snapshot backup (--backup) or a local snapshot file
    /// (--snapshot) instead of a resource export: no API server or etcd needed.
    #[arg(long)]
    pub from_etcd: bool,
    /// With --from-etcd: a plain snapshot file (`etcdctl snapshot save`, `restore etcd
    /// --to-file`, or a stopped member's member/snap/db) instead of a backup.
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// With --from-etcd: the API server's EncryptionConfiguration, to read values encrypted
    /// at rest (aescbc, aesgcm, secretbox).
    #[arg(long, value_name = "FILE")]
    pub encryption_config: Option<PathBuf>,
    /// With --from-etcd: the state at this etcd revision instead of the snapshot's newest.
    #[arg(long, value_name = "N")]
    pub revision: Option<i64>,
    /// With --from-etcd: kube-apiserver's --etcd-prefix.
    #[arg(long, value_name = "PREFIX", default_value = registry::layout::DEFAULT_PREFIX)]
    pub etcd_prefix: String,
}

impl EtcdSourceArgs {
    /// Refuses an option that only --from-etcd reads when --from-etcd is not given (clap's
    /// `requires` cannot see a flag, which always has a value).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.from_etcd {
            return Ok(());
        }
        let given = [
            ("--snapshot", self.snapshot.is_some()),
            ("--encryption-config", self.encryption_config.is_some()),
            ("--revision", self.revision.is_some()),
            (
                "--etcd-prefix",
                self.etcd_prefix != registry::layout::DEFAULT_PREFIX,
            ),
        ];
        if let Some((option, _)) = given.iter().find(|(_, g)| *g) {
            bail!(
                "{option} reads an etcd snapshot: add --from-etcd, or drop {option} to use a resource export"
            );
        }
        Ok(())
    }
}

/// A snapshot ready to read: the user's file, or a verified download in a temporary
/// directory removed on drop.
pub struct Snapshot {
    /// How reports name it: `backup ID` or the file.
    pub label: String,
    /// The backup id, or the file as given (the `id` of `-o json` reports).
    pub id: String,
    path: PathBuf,
    temporary: Option<PathBuf>,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(dir) = &self.temporary {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The snapshot `args` and `backup` name: `--snapshot`, or the etcd backup, downloaded and
/// checked against its manifest and etcd's own hash.
pub async fn snapshot(
    cfg: Option<&lifeboat::config::Config>,
    backup: &BackupArg,
    args: &EtcdSourceArgs,
    identities: Option<Arc<lifeboat::keys::Identities>>,
) -> anyhow::Result<Snapshot> {
    if let Some(file) = &args.snapshot {
        if backup.named.is_some() {
            bail!("--backup and --snapshot both name a snapshot: give one of them");
        }
        if !file.is_file() {
            bail!(
                "--snapshot {} is not a file: give the path of a plain etcd snapshot (lifeboat restore etcd --to-file writes one)",
                file.display()
            );
        }
        return Ok(Snapshot {
            label: format!("snapshot {}", file.display()),
            id: file.display().to_string(),
            path: file.clone(),
            temporary: None,
        });
    }
    let Some(cfg) = cfg else {
        bail!(
            "reading an etcd backup needs the config file (storage:); give --config, or --snapshot FILE"
        );
    };
    let store = super::open_store(cfg)?;
    let manifest = store
        .resolve(
            &cfg.cluster,
            lifeboat::manifest::Kind::Etcd,
            &backup.selector()?,
        )
        .await?;
    let dir = temporary_dir()?;
    let snapshot = Snapshot {
        label: format!("backup {}", manifest.id),
        id: manifest.id.to_string(),
        path: dir.join("snapshot.db"),
        temporary: Some(dir),
    };
    let progress = Arc::new(lifeboat::progress::Progress::default());
    let ticker = super::progress::Ticker::start(
        format!("Downloading etcd backup {}", manifest.id),
        progress.clone(),
    );
    let fetch = lifeboat::restore::fetch_with_progress(
        &store,
        &manifest,
        identities,
        Some(&snapshot.path),
        progress,
    );
    let outcome = tokio::select! {
        outcome = fetch => outcome,
        (name, code) = super::restore::signals()? => {
            ticker.finish().await;
            drop(snapshot);
            eprintln!("{name} received: download stopped, the partial snapshot removed.");
            std::process::exit(code);
        }
    };
    ticker.finish().await;
    outcome.with_context(|| format!("backup {} cannot be read", manifest.id))?;
    Ok(snapshot)
}

/// A new owner-only directory under the temporary directory ($TMPDIR).
fn temporary_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for attempt in 0..16u32 {
        let dir = base.join(format!(
            "lifeboat-snapshot-{}-{}-{attempt}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot create a temporary directory in {} for the snapshot: set TMPDIR to a directory with room for it",
                        base.display()
                    )
                });
            }
        }
    }
    bail!(
        "cannot create a unique temporary directory in {}",
        base.display()
    )
}

/// The options of a read, from the command line.
pub fn options(args: &EtcdSourceArgs, selection: Selection) -> anyhow::Result<registry::Options> {
    let encryption = args
        .encryption_config
        .as_deref()
        .map(registry::encryption::EncryptionConfig::load)
        .transpose()?
        .map(Arc::new);
    Ok(registry::Options {
        prefix: args.etcd_prefix.clone(),
        revision: args.revision,
        encryption,
        selection,
    })
}

/// Reads the selected objects of `snapshot`, handing each to `each` on the reading thread;
/// Ctrl-C stops the read and removes a downloaded snapshot.
pub async fn read<F>(
    snapshot: &Snapshot,
    options: registry::Options,
    each: F,
) -> anyhow::Result<Report>
where
    F: FnMut(Input) -> ControlFlow<()> + Send + 'static,
{
    let path = snapshot.path.clone();
    let reading = tokio::task::spawn_blocking(move || registry::read(&path, &options, each));
    let report = tokio::select! {
        joined = reading => joined.context("the snapshot reader panicked")?,
        (name, code) = super::restore::signals()? => {
            if let Some(dir) = &snapshot.temporary {
                let _ = std::fs::remove_dir_all(dir);
            }
            eprintln!("{name} received: reading stopped.");
            std::process::exit(code);
        }
    };
    let report = report.with_context(|| format!("{} cannot be read", snapshot.label))?;
    Ok(report)
}

/// Reads the selected objects of `snapshot` into memory (for apply and diff).
pub async fn inputs(
    snapshot: &Snapshot,
    options: registry::Options,
) -> anyhow::Result<(Vec<Input>, Report)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let report = read(snapshot, options, move |input| {
        let _ = tx.send(input);
        ControlFlow::Continue(())
    })
    .await?;
    Ok((rx.into_iter().collect(), report))
}

/// What `to_dir` wrote and could not write.
pub struct Written {
    /// The directory's files.
    pub files: lifeboat::restore::resources::Report,
    /// The read's report.
    pub read: Report,
    /// Objects that could not be read: (archive path, why).
    pub unreadable: Vec<(String, String)>,
}

/// Streams the selected objects of `snapshot` into a new directory `dir` in an export's
/// layout (the read never holds more than a small queue of objects); `selection` (the
/// config's) says which resources' files are owner-only. On any failure the directory is not
/// created.
pub async fn to_dir(
    snapshot: &Snapshot,
    options: registry::Options,
    dir: &Path,
    selection: lifeboat::objects::Selection,
) -> anyhow::Result<Written> {
    use lifeboat::objects::{Refused, Sink};
    let mut sink = lifeboat::restore::resources::DirSink::create(dir, selection)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Input>(256);
    let labels = options.selection.selector.clone();
    let reading = read(snapshot, options, move |input| {
        match tx.blocking_send(input) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    });
    let mut unreadable = Vec::new();
    // The queue's receiving end lives in `writing`: when writing stops, the reader's next send
    // fails and the read stops too.
    let writing = async {
        let mut rx = rx;
        while let Some(input) = rx.recv().await {
            match input {
                Input::Object(obj) => {
                    if !labels.matches(&obj.value) {
                        continue;
                    }
                    match sink.put(obj).await {
                        Ok(_) => {}
                        Err(Refused::Object(why)) => return Err(why),
                        Err(Refused::Closed) => return Err("the directory was closed".into()),
                    }
                }
                Input::Unreadable { path, reason } => unreadable.push((path, reason)),
                Input::Encrypted { path } => {
                    unreadable.push((path, "encrypted with age".to_string()));
                }
            }
        }
        Ok(())
    };
    let (read, written) = tokio::join!(reading, writing);
    match (read, written) {
        (Ok(read), Ok(())) => Ok(Written {
            files: sink.finish()?,
            read,
            unreadable,
        }),
        (Err(e), _) => {
            sink.abandon();
            Err(e)
        }
        (Ok(_), Err(why)) => {
            sink.abandon();
            bail!(
                "cannot write the objects of {} to {}: {why}",
                snapshot.label,
                dir.display()
            )
        }
    }
}

/// Tells what the read found besides the objects, on stderr.
pub fn print_summary(snapshot: &Snapshot, report: &Report) {
    eprintln!(
        "Read {} objects of {} at revision {}{}; {} selected objects were deleted by then{}.",
        report.objects,
        snapshot.label,
        report.revision,
        if report.revision == report.current {
            ", its newest".to_string()
        } else {
            format!(" (its newest is {})", report.current)
        },
        report.deleted,
        match report.compacted {
            Some(c) => format!("; revisions before {c} were compacted away"),
            None => String::new(),
        }
    );
    for (provider, n) in &report.encrypted {
        eprintln!(
            "Warning: {n} objects are encrypted at rest with {provider} and were not read: pass --encryption-config with the API server's EncryptionConfiguration."
        );
    }
    let skipped: u64 = report.not_objects.values().sum();
    if skipped > 0 {
        let what: Vec<String> = report
            .not_objects
            .iter()
            .map(|(what, n)| format!("{n} {what}"))
            .collect();
        eprintln!(
            "Skipped {skipped} keys that are not objects: {}.",
            what.join(", ")
        );
    }
    for w in &report.warnings {
        eprintln!("Warning: {w}");
    }
}
