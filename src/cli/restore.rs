//! `lifeboat restore etcd`: either write a verified plain snapshot (`--to-file`), or run the
//! guided restore of a kubeadm control-plane node (download and verify, show the plan and the
//! etcd.yaml diff, stop the control plane, restore into a new data dir, regenerate etcd.yaml,
//! wait for etcd, bring kube-apiserver back).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use lifeboat::restore::etcdutl::Tool;
use lifeboat::restore::guided;
use serde::Serialize;

use super::{BackupArg, Output};

/// Examples shown after `lifeboat restore etcd --help`.
pub const ETCD_EXAMPLES: &str = "Examples:\n  lifeboat restore etcd --to-file snapshot.db --identity key.txt -o json\n  lifeboat restore etcd --backup latest --identity key.txt --dry-run\n  lifeboat restore etcd --snapshot snapshot.db --yes";
/// Examples shown after `lifeboat restore resources --help`.
pub const RESOURCES_EXAMPLES: &str = "Examples:\n  lifeboat restore resources --to-dir ./restored --identity key.txt\n  lifeboat restore resources --backup latest --namespace team-a --to-dir ./team-a -o json\n  lifeboat restore resources --apply --dry-run --namespace payments --identity key.txt\n  lifeboat restore resources --apply --namespace payments --existing update --identity key.txt\n  lifeboat restore resources --apply --namespace payments --namespace-mapping payments=payments-copy\n  lifeboat restore resources --from-etcd --backup latest --identity key.txt --namespace payments --to-dir ./payments\n  lifeboat restore resources --from-etcd --snapshot snapshot.db --encryption-config enc.yaml --resource secrets --to-dir ./secrets\n  lifeboat restore resources --from-etcd --snapshot snapshot.db --revision 41234 --namespace payments --apply --dry-run";

/// What to restore.
#[derive(Debug, Subcommand)]
pub enum Target {
    /// An etcd snapshot: to a file, or the guided restore of this control-plane node.
    #[command(after_help = ETCD_EXAMPLES)]
    Etcd(EtcdArgs),
    /// A resource export: applied to the cluster (--apply), or unpacked to a directory of YAML
    /// files (--to-dir).
    #[command(after_help = RESOURCES_EXAMPLES)]
    Resources(ResourcesArgs),
}

/// Arguments of `restore resources`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("destination").required(true).args(["to_dir", "apply"]))]
pub struct ResourcesArgs {
    #[command(flatten)]
    pub backup: BackupArg,
    /// Write the YAML files here (must not exist yet).
    #[arg(long)]
    pub to_dir: Option<PathBuf>,
    /// Apply the objects to the cluster of `kubernetes:` in the config, with server-side apply,
    /// in dependency order (docs/RESTORE-RESOURCES.md).
    #[arg(long)]
    pub apply: bool,
    /// With --apply: send every write with dryRun=All, so the API server checks and admits
    /// everything and stores nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --apply: what to do with an object that exists in the cluster: leave it alone and
    /// show how it differs (skip), or apply the backup's version over it (update).
    #[arg(long, value_enum, default_value_t = ExistingArg::Skip)]
    pub existing: ExistingArg,
    /// With --apply --existing update: take over fields another field manager owns.
    #[arg(long)]
    pub force_conflicts: bool,
    /// Only these namespaces (repeat the option for several); their Namespace objects too.
    #[arg(long)]
    pub namespace: Vec<String>,
    /// Only these resources, e.g. deployments.apps or configmaps (repeatable).
    #[arg(long)]
    pub resource: Vec<String>,
    /// Only objects with these names (repeatable).
    #[arg(long)]
    pub name: Vec<String>,
    /// Only objects whose labels match, as kubectl writes it: app=web,tier!=db.
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
    /// Restore namespace OLD into NEW (OLD=NEW, repeatable).
    #[arg(long)]
    pub namespace_mapping: Vec<String>,
    /// age identity: decrypt Secrets (and other encrypted objects). Without it, --apply skips
    /// them and lists them. With --from-etcd, the key of the encrypted etcd backup.
    #[arg(long, short)]
    pub identity: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: super::from_etcd::EtcdSourceArgs,
}

// The options above that only --apply honours are checked by [`check_options`], not by clap's
// `requires = "apply"`: `--apply` is a flag with a default (false), so clap counts it as always
// present and `requires` never fires.

/// Refuses an option the chosen destination would ignore, naming it (pure: no I/O).
fn check_options(args: &ResourcesArgs) -> Result<(), String> {
    if !args.apply {
        let ignored = [
            ("--dry-run", args.dry_run),
            ("--existing update", args.existing == ExistingArg::Update),
            ("--force-conflicts", args.force_conflicts),
            ("--name", !args.name.is_empty()),
            ("--selector", args.selector.is_some()),
            ("--namespace-mapping", !args.namespace_mapping.is_empty()),
        ];
        if let Some((option, _)) = ignored.iter().find(|(_, given)| *given) {
            return Err(format!(
                "{option} needs --apply: --to-dir only writes the backup's YAML files, so drop {option} or use --apply instead of --to-dir"
            ));
        }
    }
    if args.force_conflicts && args.existing != ExistingArg::Update {
        return Err(
            "--force-conflicts needs --existing update: it only matters when lifeboat applies over existing objects"
                .to_string(),
        );
    }
    Ok(())
}

/// `--existing`.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum ExistingArg {
    /// Leave it alone; report how it differs.
    Skip,
    /// Apply the backup's version over it.
    Update,
}

/// Arguments of `restore etcd`.
#[derive(Debug, clap::Args)]
pub struct EtcdArgs {
    #[command(flatten)]
    pub backup: BackupArg,
    /// Use this plain snapshot file (e.g. from `--to-file` or `etcdctl snapshot save`) instead
    /// of downloading a backup. Its etcd hash is checked first.
    #[arg(long, conflicts_with = "named")]
    pub snapshot: Option<PathBuf>,
    /// age identity file whose public key is among the backup's recipients.
    #[arg(long, short)]
    pub identity: Option<PathBuf>,
    /// Only write the verified plain snapshot here (must not exist yet) and stop.
    #[arg(long, conflicts_with_all = ["snapshot", "dry_run", "yes"])]
    pub to_file: Option<PathBuf>,
    /// kubeadm's etcd static-pod manifest.
    #[arg(long, default_value = "/etc/kubernetes/manifests/etcd.yaml")]
    pub manifest: PathBuf,
    /// The new data directory (default: etcd-restore-<id> beside the current one).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The new --initial-cluster-token (default: etcd-cluster-<id>). Every member of a
    /// multi-member restore must use the same one.
    #[arg(long)]
    pub cluster_token: Option<String>,
    /// This member's name (default: the manifest's --name).
    #[arg(long)]
    pub member_name: Option<String>,
    /// Where the original manifests are moved (default: lifeboat-restore-<time> beside the
    /// manifests directory).
    #[arg(long)]
    pub backup_dir: Option<PathBuf>,
    /// etcdutl (or etcd 3.4's etcdctl) to restore with (default: from PATH).
    #[arg(long)]
    pub etcdutl: Option<PathBuf>,
    /// How long to wait for etcd to stop and to come back.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Download, verify and show the plan and the etcd.yaml diff; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not first prove that lifeboat can reach and authenticate to this node's etcd (for
    /// when etcd is down, e.g. it no longer starts on its damaged data). The restore then waits
    /// for the restored etcd without knowing that it can check it.
    #[arg(long)]
    pub skip_etcd_check: bool,
    /// Do not ask for confirmation (for scripts).
    #[arg(long, short)]
    pub yes: bool,
}

/// `restore etcd --to-file -o json` (docs/CLI.md).
#[derive(Serialize)]
struct EtcdFileReport<'a> {
    target: &'static str,
    id: &'a str,
    file: &'a Path,
    plain_size: u64,
    /// Always true in a report: a snapshot whose etcd hash does not check out fails.
    verified: bool,
}

/// `restore resources -o json` (docs/CLI.md).
#[derive(Serialize)]
struct ResourcesReport<'a> {
    target: &'static str,
    id: &'a str,
    dir: &'a Path,
    written: u64,
    decrypted: u64,
    still_encrypted: u64,
    partial: bool,
}

/// Runs `restore`.
pub async fn run(config: &Path, output: Output, target: Target) -> anyhow::Result<()> {
    if let Target::Resources(args) = &target {
        check_options(args).map_err(anyhow::Error::msg)?;
        args.etcd.check()?;
    }
    let args = match target {
        Target::Etcd(args) => args,
        Target::Resources(args) if args.apply => {
            return super::apply::run(config, output, args).await;
        }
        Target::Resources(args) if args.etcd.from_etcd => {
            return restore_resources_from_etcd(config, output, args).await;
        }
        Target::Resources(args) => return restore_resources(config, output, args).await,
    };
    if output == Output::Json && args.to_file.is_none() {
        bail!(
            "the guided restore talks to the person running it and has no JSON output: drop -o json, or use `restore etcd --to-file FILE -o json` to get a verified snapshot from a script"
        );
    }
    let cfg = super::load_config(config)?;
    let identities = super::load_identities(args.identity.as_deref())?;
    if let Some(to_file) = &args.to_file {
        let store = super::open_store(&cfg)?;
        let manifest = store
            .resolve(
                &cfg.cluster,
                lifeboat::manifest::Kind::Etcd,
                &args.backup.selector()?,
            )
            .await?;
        let partial = partial_path(to_file);
        if !to_file.exists() {
            remove_stale_partial(&partial)?;
        }
        let interrupted = signals()?;
        let progress = Arc::new(lifeboat::progress::Progress::default());
        let ticker = super::progress::Ticker::start(
            format!("Downloading backup {}", manifest.id),
            progress.clone(),
        );
        let fetch = lifeboat::restore::fetch_with_progress(
            &store,
            &manifest,
            identities,
            Some(to_file),
            progress,
        );
        // fetch removes its partial file when it fails; a signal would end the process with
        // the decrypted partial snapshot left behind, so it is removed here before exiting.
        let outcome = tokio::select! {
            outcome = fetch => outcome,
            (name, code) = interrupted => {
                ticker.finish().await;
                let removed = std::fs::remove_file(&partial).is_ok();
                eprintln!(
                    "{name} received: download stopped, {} removed, nothing written to {}.",
                    if removed { partial.display().to_string() } else { "no partial file".to_string() },
                    to_file.display()
                );
                std::process::exit(code);
            }
        };
        ticker.finish().await;
        let outcome = outcome?;
        if output == Output::Json {
            return super::print_json(
                "restore",
                &EtcdFileReport {
                    target: "etcd",
                    id: manifest.id.as_str(),
                    file: to_file,
                    plain_size: outcome.plain_size,
                    verified: outcome.decoded,
                },
            );
        }
        println!(
            "Wrote backup {} to {} ({} bytes, etcd hash verified). Next: lifeboat restore etcd --snapshot {} (guided), or etcdutl snapshot restore.",
            manifest.id,
            to_file.display(),
            outcome.plain_size,
            to_file.display()
        );
        return Ok(());
    }
    guided_restore(&cfg, args, identities).await
}

/// Where fetch writes before the snapshot is verified (restore::fetch's `<file>.lifeboat-partial`).
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lifeboat-partial");
    path.with_file_name(name)
}

/// Removes `partial` if it is what an interrupted lifeboat download leaves (a regular file of
/// this user, owner-only, as fetch creates it); refuses anything else rather than deleting a
/// file lifeboat did not write.
fn remove_stale_partial(partial: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::symlink_metadata(partial) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", partial.display())),
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.file_type().is_file() || meta.uid() != uid || meta.mode() & 0o777 != 0o600 {
        bail!(
            "{} exists and is not a download lifeboat left (a regular, owner-only file of this user): move it away, or choose another --to-file",
            partial.display()
        );
    }
    std::fs::remove_file(partial).with_context(|| {
        format!(
            "cannot remove {}, left by an interrupted download",
            partial.display()
        )
    })?;
    tracing::info!(
        path = %partial.display(),
        "Removed the partial file an interrupted download left (owner-only, this user's) before downloading again."
    );
    Ok(())
}

/// Resolves with the signal's name and the shell's exit code for it at the first SIGINT or
/// SIGTERM; the handlers are installed now, before the future is first polled.
pub(super) fn signals() -> anyhow::Result<impl std::future::Future<Output = (&'static str, i32)>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => ("SIGINT", 130),
            _ = term.recv() => ("SIGTERM", 143),
        }
    })
}

/// Where the guided restore's snapshot comes from, which decides what happens to the file.
enum SnapshotFile {
    /// The user's own `--snapshot`: never removed.
    Given(PathBuf),
    /// Downloaded now to the kept path beside the new data dir.
    Downloaded(PathBuf),
    /// Kept by an earlier run at that path, and checked to be this backup's snapshot.
    Reused(PathBuf),
    /// A dry run's download to a temporary file.
    Temporary(PathBuf),
}

impl SnapshotFile {
    fn path(&self) -> &Path {
        match self {
            SnapshotFile::Given(p)
            | SnapshotFile::Downloaded(p)
            | SnapshotFile::Reused(p)
            | SnapshotFile::Temporary(p) => p,
        }
    }

    /// Removes what this run downloaded and no one needs any more.
    fn discard(&self, restored: bool) {
        match self {
            SnapshotFile::Temporary(p) | SnapshotFile::Downloaded(p) => {
                let _ = std::fs::remove_file(p);
            }
            SnapshotFile::Reused(p) if restored => {
                let _ = std::fs::remove_file(p);
            }
            SnapshotFile::Reused(_) | SnapshotFile::Given(_) => {}
        }
    }
}

async fn guided_restore(
    cfg: &lifeboat::config::Config,
    args: EtcdArgs,
    identities: Option<Arc<lifeboat::keys::Identities>>,
) -> anyhow::Result<()> {
    // Every path is made absolute first: the plan and the rollback commands print them.
    let absolute = |p: &Path| {
        std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))
    };
    let etcdutl = match &args.etcdutl {
        Some(p) if p.components().count() > 1 => Some(absolute(p)?),
        other => other.clone(),
    };
    let snapshot_arg = args.snapshot.as_deref().map(absolute).transpose()?;
    let tool = Tool::find(etcdutl.as_deref())?;
    let store = super::open_store(cfg)?;
    // Which snapshot: a local file, or a backup from the store.
    let backup = match &snapshot_arg {
        Some(_) => None,
        None => Some(
            store
                .resolve(
                    &cfg.cluster,
                    lifeboat::manifest::Kind::Etcd,
                    &args.backup.selector()?,
                )
                .await?,
        ),
    };
    let now = chrono::Utc::now();
    let label = match &backup {
        Some(m) => m.id.to_string(),
        None => format!("snapshot-{}", now.format("%Y%m%dT%H%M%SZ")).to_lowercase(),
    };
    let opts = guided::Options {
        etcd_yaml: args.manifest.clone(),
        data_dir: args.data_dir.clone(),
        cluster_token: args.cluster_token.clone(),
        member_name: args.member_name.clone(),
        backup_dir: args.backup_dir.clone(),
        wait: args.wait,
    };
    let plan = guided::plan(&opts, &label, now)?;

    // Prove that the health check after the restore can work: reach and authenticate to this
    // node's etcd with the configured TLS, before anything is downloaded or changed.
    let etcd_timeout = cfg.etcd.as_ref().map_or(Duration::from_secs(5), |e| {
        e.timeout.min(Duration::from_secs(5))
    });
    let etcd =
        plan.health_endpoints(cfg.etcd.as_ref().and_then(|e| e.tls.clone()), etcd_timeout)?;
    if args.skip_etcd_check {
        eprintln!(
            "Not checking that lifeboat can reach etcd at {} (--skip-etcd-check).",
            endpoints(&etcd)
        );
    } else {
        let answered = guided::preflight(&etcd).await?;
        eprintln!("etcd at {answered} answers: lifeboat can check the restored etcd the same way.");
    }

    // A verified plain snapshot, before anything on the node changes.
    let snapshot = match (&snapshot_arg, &backup) {
        (Some(file), _) => {
            check_snapshot_file(file)?;
            eprintln!(
                "Snapshot {} checks out (etcd's trailing sha256).",
                file.display()
            );
            SnapshotFile::Given(file.clone())
        }
        (None, Some(m)) => {
            let kept = plan.kept_snapshot();
            if kept.exists() {
                // An earlier run of this restore kept it: reuse it if it is this backup's
                // snapshot, in the dry run as in the real run.
                guided::check_kept_snapshot(&kept, m)?;
                eprintln!(
                    "Reusing {}, kept by an earlier run: it is backup {}'s snapshot (etcd's hash matches the manifest).",
                    kept.display(),
                    m.id
                );
                SnapshotFile::Reused(kept)
            } else {
                let dest = if args.dry_run {
                    std::env::temp_dir().join(format!(
                        "lifeboat-{}-{}.snapshot.db",
                        m.id,
                        std::process::id()
                    ))
                } else {
                    kept
                };
                // A run killed during its download leaves fetch's partial file beside the kept
                // path (`<file>.lifeboat-partial`, see restore::fetch); only this restore writes
                // there, so it is removed rather than blocking the re-run.
                let mut partial = dest.file_name().unwrap_or_default().to_os_string();
                partial.push(".lifeboat-partial");
                let partial = dest.with_file_name(partial);
                if !args.dry_run && partial.exists() {
                    std::fs::remove_file(&partial).with_context(|| {
                        format!(
                            "cannot remove {}, left by an interrupted download",
                            partial.display()
                        )
                    })?;
                    eprintln!(
                        "Removed {}, left by an interrupted download.",
                        partial.display()
                    );
                }
                download(&store, m, identities, &dest).await?;
                if args.dry_run {
                    SnapshotFile::Temporary(dest)
                } else {
                    SnapshotFile::Downloaded(dest)
                }
            }
        }
        (None, None) => unreachable!("a backup is resolved whenever no --snapshot is given"),
    };

    println!("\nRestore plan for member {} from {label}:\n", plan.name);
    let shown = match &snapshot {
        SnapshotFile::Temporary(_) => plan.kept_snapshot(),
        other => other.path().to_path_buf(),
    };
    println!("{}", plan.describe(&tool, &shown));
    if args.dry_run {
        snapshot.discard(false);
        println!("Dry run: nothing on the node was changed.");
        return Ok(());
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            snapshot.discard(false);
            bail!(
                "not asking for confirmation without a terminal: pass --yes to run the plan above, or --dry-run to only show it"
            );
        }
        print!("Stop etcd and kube-apiserver on this node and restore? Type 'yes' to continue: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            snapshot.discard(false);
            bail!("not confirmed: nothing on the node was changed");
        }
    }
    // From here on SIGINT and SIGTERM no longer end the process: the flow finishes or undoes
    // the step it is in and reports how the node stands.
    let interrupt = Arc::new(guided::Interrupt::default());
    catch_signals(interrupt.clone())?;
    let say = |m: &str| println!("{m}");
    match plan
        .execute(&tool, snapshot.path(), &etcd, args.wait, &interrupt, &say)
        .await
    {
        Ok(()) => {
            snapshot.discard(true);
            println!(
                "\nRestored. etcd runs on {} with cluster token {}; the old data dir {} and the original manifests in {} are kept.",
                plan.data_dir.display(),
                plan.token,
                plan.current.data_volume.host_data_dir,
                plan.backup_dir.display()
            );
            println!(
                "Next: check `kubectl get --raw /readyz` and `kubectl get nodes`; restart controllers that cache cluster state (kube-controller-manager, kube-scheduler, operators); for a multi-member cluster, restore every other member from the same backup with --cluster-token {}.",
                plan.token
            );
            Ok(())
        }
        // The node's state comes first; what became of the snapshot file last.
        Err(e) => bail!(
            "{}\n{}",
            lifeboat::error::chain(&e),
            match &snapshot {
                SnapshotFile::Given(_) => "The snapshot file was not changed.".to_string(),
                other => format!(
                    "The verified snapshot is kept at {}: a re-run of the same restore reuses it.",
                    other.path().display()
                ),
            }
        ),
    }
}

fn endpoints(etcd: &lifeboat::config::Etcd) -> String {
    etcd.endpoints
        .iter()
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Downloads and verifies backup `m` into `dest`, with a progress display.
async fn download(
    store: &lifeboat::store::Store,
    m: &lifeboat::manifest::Manifest,
    identities: Option<Arc<lifeboat::keys::Identities>>,
    dest: &Path,
) -> anyhow::Result<()> {
    eprintln!(
        "Downloading backup {} ({}, taken {}) to {} and verifying it.",
        m.id,
        super::human_bytes(m.payload.stored_size),
        m.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        dest.display()
    );
    let progress = Arc::new(lifeboat::progress::Progress::default());
    let ticker =
        super::progress::Ticker::start(format!("Downloading backup {}", m.id), progress.clone());
    let result =
        lifeboat::restore::fetch_with_progress(store, m, identities, Some(dest), progress).await;
    ticker.finish().await;
    result?;
    eprintln!(
        "Backup {} verified: size, sha256, decryption and etcd's own hash.",
        m.id
    );
    Ok(())
}

/// Turns SIGINT and SIGTERM into `interrupt`, saying at once what happens next.
fn catch_signals(interrupt: Arc<guided::Interrupt>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            if interrupt.received().is_none() {
                eprintln!(
                    "{name} received: finishing or undoing the current step, then showing the node's state and how to roll back."
                );
            } else {
                eprintln!("{name} received again: still finishing the current step.");
            }
            interrupt.trigger(name);
        }
    });
    Ok(())
}

fn check_snapshot_file(path: &Path) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut check = lifeboat::snapshot::TrailerCheck::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        check.update(&buf[..n]);
    }
    check
        .finish()
        .with_context(|| format!("{} is not an intact etcd snapshot", path.display()))?;
    Ok(())
}

async fn restore_resources(
    config: &Path,
    output: Output,
    args: ResourcesArgs,
) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    let identities = super::load_identities(args.identity.as_deref())?;
    let store = super::open_store(&cfg)?;
    let manifest = store
        .resolve(
            &cfg.cluster,
            lifeboat::manifest::Kind::Resources,
            &args.backup.selector()?,
        )
        .await?;
    let (Some(to_dir), [] | [_], [] | [_]) = (
        args.to_dir.as_deref(),
        args.namespace.as_slice(),
        args.resource.as_slice(),
    ) else {
        bail!(
            "--to-dir takes at most one --namespace and one --resource; run it once per namespace, or use --apply, which takes several"
        );
    };
    let filter = lifeboat::restore::resources::Filter {
        namespace: args.namespace.first().cloned(),
        resource: args.resource.first().cloned(),
    };
    let progress = Arc::new(lifeboat::progress::Progress::default());
    let ticker = super::progress::Ticker::start(
        format!("Downloading backup {}", manifest.id),
        progress.clone(),
    );
    let r = lifeboat::restore::resources::to_dir(
        &store, &manifest, identities, to_dir, filter, progress,
    )
    .await;
    ticker.finish().await;
    let r = r?;
    let partial = manifest.resources.as_ref().is_some_and(|r| r.partial);
    if output == Output::Json {
        return super::print_json(
            "restore",
            &ResourcesReport {
                target: "resources",
                id: manifest.id.as_str(),
                dir: to_dir,
                written: r.written,
                decrypted: r.decrypted,
                still_encrypted: r.still_encrypted,
                partial,
            },
        );
    }
    println!(
        "Wrote {} files of backup {} to {}{}.",
        r.written,
        manifest.id,
        to_dir.display(),
        match (r.decrypted, r.still_encrypted) {
            (0, 0) => String::new(),
            (d, 0) => format!(" ({d} encrypted objects decrypted)"),
            (_, e) => format!(" ({e} objects left as .yaml.age: pass --identity to decrypt them)"),
        }
    );
    if partial {
        eprintln!(
            "Note: this backup is partial; see errors in {}/index.json.",
            to_dir.display()
        );
    }
    if let Some(hint) = kubectl_hint(to_dir) {
        println!("{hint}");
    }
    Ok(())
}

/// `restore resources --from-etcd --to-dir DIR -o json` (docs/CLI.md).
#[derive(Serialize)]
struct EtcdResourcesReport<'a> {
    target: &'static str,
    source: &'static str,
    id: &'a str,
    dir: &'a Path,
    written: u64,
    revision: i64,
    current_revision: i64,
    compacted_revision: Option<i64>,
    deleted: u64,
    unreadable: Vec<Unreadable<'a>>,
    not_objects: &'a std::collections::BTreeMap<String, u64>,
    warnings: &'a [String],
}

#[derive(Serialize)]
struct Unreadable<'a> {
    path: &'a str,
    reason: &'a str,
}

async fn restore_resources_from_etcd(
    config: &Path,
    output: Output,
    args: ResourcesArgs,
) -> anyhow::Result<()> {
    // A local snapshot needs no store: without a config file, Secrets' files are owner-only
    // as with the default `resources.encrypt_resources`.
    let cfg = if args.etcd.snapshot.is_some() && !config.exists() {
        None
    } else {
        Some(super::load_config(config)?)
    };
    let identities = super::load_identities(args.identity.as_deref())?;
    let Some(to_dir) = args.to_dir.as_deref() else {
        bail!("--to-dir is missing");
    };
    let selection = super::apply::selection(&args.namespace, &args.resource, &[], None)?;
    let options = super::from_etcd::options(&args.etcd, selection)?;
    let snapshot =
        super::from_etcd::snapshot(cfg.as_ref(), &args.backup, &args.etcd, identities).await?;
    let files = match &cfg {
        Some(cfg) => lifeboat::objects::Selection::from(&cfg.resources),
        None => lifeboat::objects::Selection {
            encrypt_resources: vec!["secrets".into()],
            ..Default::default()
        },
    };
    let written = super::from_etcd::to_dir(&snapshot, options, to_dir, files).await?;
    if output == Output::Json {
        super::print_json(
            "restore",
            &EtcdResourcesReport {
                target: "resources",
                source: "etcd",
                id: &snapshot.id,
                dir: to_dir,
                written: written.files.written,
                revision: written.read.revision,
                current_revision: written.read.current,
                compacted_revision: written.read.compacted,
                deleted: written.read.deleted,
                unreadable: written
                    .unreadable
                    .iter()
                    .map(|(path, reason)| Unreadable { path, reason })
                    .collect(),
                not_objects: &written.read.not_objects,
                warnings: &written.read.warnings,
            },
        )?;
    } else {
        super::from_etcd::print_summary(&snapshot, &written.read);
        for (path, reason) in &written.unreadable {
            eprintln!("not written: {path}: {reason}");
        }
        print_etcd_text(&snapshot, to_dir, &written);
    }
    if !written.unreadable.is_empty() {
        bail!(
            "{} objects of {} could not be read and are not in {}",
            written.unreadable.len(),
            snapshot.label,
            to_dir.display()
        );
    }
    Ok(())
}

fn print_etcd_text(
    snapshot: &super::from_etcd::Snapshot,
    to_dir: &Path,
    written: &super::from_etcd::Written,
) {
    println!(
        "Wrote {} objects of {} to {}{}.",
        written.files.written,
        snapshot.label,
        to_dir.display(),
        match written.unreadable.len() {
            0 => String::new(),
            n => format!(" ({n} objects could not be read; each is listed above with why)"),
        }
    );
    if let Some(hint) = kubectl_hint(to_dir) {
        println!("{hint}");
    }
}

/// The kubectl commands that apply a `--to-dir` tree: `cluster/` first, in its own command, so
/// that Namespaces and CustomResourceDefinitions exist before the objects in `namespaces/`
/// (`-R -f DIR` alone would also read `DIR/index.json`, which is no Kubernetes object).
fn kubectl_hint(to_dir: &Path) -> Option<String> {
    let commands: Vec<String> = ["cluster", "namespaces"]
        .iter()
        .map(|part| to_dir.join(part))
        .filter(|dir| dir.is_dir())
        .map(|dir| format!("kubectl apply --server-side -R -f {}", dir.display()))
        .collect();
    if commands.is_empty() {
        return None;
    }
    Some(format!(
        "Apply with: {} (or, better, `lifeboat restore resources --apply`, which applies in dependency order and waits for CRDs).",
        commands.join(" && ")
    ))
}
