//! `lifeboat backup etcd`: one snapshot, streamed to the store. Ctrl-C or SIGTERM aborts the
//! upload cleanly.

use std::path::Path;

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

/// What to back up.
#[derive(Debug, Subcommand)]
pub enum Target {
    /// An etcd snapshot, streamed from the first endpoint that answers.
    Etcd,
    /// Every object the Kubernetes API serves, as YAML in resources.tar.zst (Secrets encrypted).
    Resources,
}

/// Runs `backup`.
pub async fn run(config: &Path, target: Target) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    let store = super::open_store(&cfg)?;
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    match target {
        Target::Etcd => {
            let m = lifeboat::backup::etcd(&cfg, &store, &cancel).await?;
            let key = store.backup_dir(&m.cluster, m.kind, &m.id);
            println!(
                "Backup {} complete: {} snapshot, {} stored at {}/",
                m.id,
                super::human_bytes(m.payload.plain_size),
                super::human_bytes(m.payload.stored_size),
                store.describe(&key)
            );
        }
        Target::Resources => {
            let m = lifeboat::backup::resources(&cfg, &store, &cancel).await?;
            let key = store.backup_dir(&m.cluster, m.kind, &m.id);
            let r = m
                .resources
                .as_ref()
                .expect("resource backups describe their export");
            println!(
                "Backup {} {}: {} objects of {} resources ({} encrypted), {} stored at {}/",
                m.id,
                if r.partial { "is PARTIAL" } else { "complete" },
                r.objects,
                r.resource_count,
                r.encrypted_objects,
                super::human_bytes(m.payload.stored_size),
                store.describe(&key)
            );
            if r.partial {
                anyhow::bail!(
                    "backup {} is partial: {} (the rest was exported; fix access to these resources and run it again)",
                    m.id,
                    r.errors.join("; ")
                );
            }
        }
    }
    Ok(())
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
