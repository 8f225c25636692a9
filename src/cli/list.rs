//! `lifeboat list`: the complete backups, oldest first. Id directories without a manifest are
//! not backups and are only mentioned, never listed as one.

use std::path::Path;

use super::{KindArg, Output, human_bytes};

/// Arguments of `list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which kind of backup.
    #[arg(long, value_enum, default_value_t = KindArg::Etcd)]
    pub kind: KindArg,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Runs `list`.
pub async fn run(config: &Path, args: Args) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    let store = super::open_store(&cfg)?;
    let kind = args.kind.into();
    let listing = store.list(&cfg.cluster, kind).await?;
    if args.output == Output::Json {
        let json = serde_json::json!({
            "cluster": cfg.cluster,
            "kind": kind,
            "store": store.url(),
            "backups": listing.complete,
            "incomplete": listing.incomplete.iter().map(|i| serde_json::json!({
                "id": i.id, "objects": i.objects, "newest_object": i.newest,
            })).collect::<Vec<_>>(),
            "unreadable": listing.unreadable.iter().map(|u| serde_json::json!({
                "id": u.id, "key": u.key, "reason": u.reason,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    if listing.complete.is_empty() {
        println!(
            "No complete {kind} backups of cluster {} in {}.",
            cfg.cluster,
            store.url()
        );
    } else {
        println!(
            "{:<34} {:<20} {:>9} {:>9} {:>10} {:<8} ENCRYPTION",
            "ID", "STARTED (UTC)", "SNAPSHOT", "STORED", "REVISION", "ETCD"
        );
        for m in &listing.complete {
            let (revision, version) = m
                .etcd
                .as_ref()
                .map(|e| (e.revision.to_string(), e.server_version.clone()))
                .unwrap_or_else(|| ("-".into(), "-".into()));
            let encryption = match (&m.resources, m.payload.encryption.recipients.len()) {
                (Some(r), _) if r.partial => format!(
                    "PARTIAL ({} failed); {} objects, {} encrypted",
                    r.errors.len(),
                    r.objects,
                    r.encrypted_objects
                ),
                (Some(r), _) => format!("{} objects, {} encrypted", r.objects, r.encrypted_objects),
                _ if !m.payload.encryption.is_encrypted() => "NONE".to_string(),
                (_, 1) => "age, 1 recipient".to_string(),
                (_, n) => format!("age, {n} recipients"),
            };
            println!(
                "{:<34} {:<20} {:>9} {:>9} {:>10} {:<8} {}",
                m.id.as_str(),
                m.started_at.format("%Y-%m-%d %H:%M:%S"),
                human_bytes(m.payload.plain_size),
                human_bytes(m.payload.stored_size),
                revision,
                version,
                encryption
            );
        }
    }
    if !listing.incomplete.is_empty() {
        eprintln!(
            "Not listed: {} id director{} without a manifest (a run in progress or one that failed); they are not backups.",
            listing.incomplete.len(),
            if listing.incomplete.len() == 1 {
                "y"
            } else {
                "ies"
            }
        );
    }
    if !listing.unreadable.is_empty() {
        println!();
        println!(
            "UNREADABLE MANIFESTS ({}): these directories claim to be backups, but lifeboat cannot read them; `verify latest` and `restore --backup latest` refuse while one is newer than every readable backup:",
            listing.unreadable.len()
        );
        for u in &listing.unreadable {
            println!("  {:<34} {}", u.id, u.reason);
        }
    }
    Ok(())
}
