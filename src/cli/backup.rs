//! `lifeboat backup etcd|resources`: one backup, streamed to the store. Ctrl-C or SIGTERM aborts the
//! upload cleanly.

use std::path::Path;
use std::sync::Arc;

use clap::Subcommand;
use lifeboat::manifest::Manifest;
use lifeboat::progress::Progress;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Output;

/// Examples shown after `lifeboat backup etcd --help`.
pub const ETCD_EXAMPLES: &str =
    "Examples:\n  lifeboat backup etcd\n  lifeboat backup etcd -o json | jq -r .id";
/// Examples shown after `lifeboat backup resources --help`.
pub const RESOURCES_EXAMPLES: &str =
    "Examples:\n  lifeboat backup resources\n  lifeboat backup resources -o json | jq .partial";

/// What to back up.
#[derive(Debug, Subcommand)]
pub enum Target {
    /// An etcd snapshot, streamed from the first endpoint that answers.
    #[command(after_help = ETCD_EXAMPLES)]
    Etcd,
    /// Every object the Kubernetes API serves, as YAML in resources.tar.zst (Secrets encrypted).
    #[command(after_help = RESOURCES_EXAMPLES)]
    Resources,
}

/// `backup -o json` (docs/CLI.md).
#[derive(Serialize)]
struct Report<'a> {
    id: &'a str,
    kind: lifeboat::manifest::Kind,
    cluster: &'a str,
    /// The backup's directory in the store.
    location: String,
    /// A resource export that could not list every resource (the command then exits 1).
    partial: bool,
    /// The committed manifest, as stored.
    manifest: &'a Manifest,
}

/// Runs `backup`.
pub async fn run(config: &Path, output: Output, target: Target) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    let store = super::open_store(&cfg)?;
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let progress = Arc::new(Progress::default());
    let (what, kind) = match target {
        Target::Etcd => ("Backing up etcd", lifeboat::manifest::Kind::Etcd),
        Target::Resources => ("Exporting resources", lifeboat::manifest::Kind::Resources),
    };
    let ticker = super::progress::Ticker::start(what, progress.clone());
    let result = take(kind, &cfg, &store, &cancel, progress).await;
    ticker.finish().await;
    let m = result?;
    let key = store.backup_dir(&m.cluster, m.kind, &m.id);
    let partial = !m.is_full();
    if output == Output::Json {
        super::print_json(
            "backup",
            &Report {
                id: m.id.as_str(),
                kind: m.kind,
                cluster: &m.cluster,
                location: format!("{}/", store.describe(&key)),
                partial,
                manifest: &m,
            },
        )?;
    }
    match &m.resources {
        None if output == Output::Text => println!(
            "Backup {} complete: {} snapshot, {} stored at {}/",
            m.id,
            super::human_bytes(m.payload.plain_size),
            super::human_bytes(m.payload.stored_size),
            store.describe(&key)
        ),
        Some(r) if output == Output::Text => println!(
            "Backup {} {}: {} objects of {} resources ({} encrypted), {} stored at {}/",
            m.id,
            if r.partial { "is PARTIAL" } else { "complete" },
            r.objects,
            r.resource_count,
            r.encrypted_objects,
            super::human_bytes(m.payload.stored_size),
            store.describe(&key)
        ),
        _ => {}
    }
    if let Some(r) = m.resources.as_ref().filter(|r| r.partial) {
        anyhow::bail!(
            "backup {} is partial: {} (the rest was exported; fix access to these resources and run it again)",
            m.id,
            r.errors.join("; ")
        );
    }
    Ok(())
}

/// Takes one backup of `kind`, counting its bytes into `progress` for the display (etcd
/// knows its total, db_size; an export's size is known only at the end).
async fn take(
    kind: lifeboat::manifest::Kind,
    cfg: &lifeboat::config::Config,
    store: &lifeboat::store::Store,
    cancel: &CancellationToken,
    progress: Arc<Progress>,
) -> anyhow::Result<Manifest> {
    Ok(match kind {
        lifeboat::manifest::Kind::Etcd => {
            lifeboat::backup::etcd_with_progress(cfg, store, cancel, progress).await?
        }
        lifeboat::manifest::Kind::Resources => {
            lifeboat::backup::resources_with_progress(cfg, store, cancel, progress).await?
        }
    })
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::warn!("Signal received: stopping.");
    token.cancel();
}
