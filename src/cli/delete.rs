//! `lifeboat delete ID`: delete one backup, for scripts and for the on-call engineer who must
//! free space or remove a bad backup now. It asks nothing; it refuses the newest full backup of
//! its kind unless `--force` (the one a restore would use); it deletes the manifest first, so
//! the backup stops existing at once, then the payload; and it says what it deleted.

use std::path::Path;

use serde::Serialize;

use super::{KindArg, Output};

/// Examples shown after `lifeboat delete --help`.
pub const EXAMPLES: &str = "Examples:\n  lifeboat delete 20261202T101500Z-1a2b3c4d5e6f7a8b\n  lifeboat delete --backup 20261202T101500Z-1a2b3c4d5e6f7a8b --kind resources -o json\n  lifeboat delete latest --force      # even the newest full backup";

// The backup is required, as ID or as --backup ID: unlike the other commands, delete has no
// `latest` default (a bare `lifeboat delete` would otherwise delete the newest backup).
/// Arguments of `delete`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["positional", "named"]))]
pub struct Args {
    /// The backup (required, here or as --backup): an id from `lifeboat list` (or `latest`,
    /// with --force).
    #[arg(value_name = "ID")]
    pub positional: Option<String>,
    /// The same as ID, as an option.
    #[arg(long = "backup", value_name = "ID")]
    pub named: Option<String>,
    /// Which kind of backup.
    #[arg(long, value_enum, default_value_t = KindArg::Etcd)]
    pub kind: KindArg,
    /// Also delete the newest full backup of its kind.
    #[arg(long)]
    pub force: bool,
}

/// Why `delete` refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{id} is the newest full {kind} backup of cluster {cluster}, the one `restore --backup latest` would use: not deleting it; pass --force to delete it anyway"
    )]
    Newest {
        id: String,
        kind: lifeboat::manifest::Kind,
        cluster: String,
    },
}

/// `delete -o json` (docs/CLI.md).
#[derive(Serialize)]
struct Report<'a> {
    id: &'a str,
    kind: lifeboat::manifest::Kind,
    cluster: &'a str,
    /// The backup was the newest full one of its kind, deleted because of --force.
    forced: bool,
    /// Full keys deleted, the manifest first.
    deleted: Vec<String>,
}

/// Whether deleting `id` needs `--force`: it is the newest full backup in `complete`. A pure
/// decision, so a partial export or any older backup goes without it.
pub fn is_newest_full(complete: &[lifeboat::manifest::Manifest], id: &str) -> bool {
    complete
        .iter()
        .filter(|m| m.is_full())
        .max_by(|a, b| a.id.cmp(&b.id))
        .is_some_and(|m| m.id.as_str() == id)
}

/// Runs `delete`.
pub async fn run(config: &Path, output: Output, args: Args) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    let store = super::open_store(&cfg)?;
    let kind = args.kind.into();
    // clap's required group "which" guarantees exactly one of them.
    let which = args
        .positional
        .as_deref()
        .or(args.named.as_deref())
        .unwrap_or_default();
    let manifest = store.resolve(&cfg.cluster, kind, &which.parse()?).await?;
    let listing = store.list(&cfg.cluster, kind).await?;
    let newest = is_newest_full(&listing.complete, manifest.id.as_str());
    if newest && !args.force {
        return Err(Error::Newest {
            id: manifest.id.to_string(),
            kind,
            cluster: cfg.cluster.clone(),
        }
        .into());
    }
    let deleted = store
        .delete_backup(&manifest.cluster, manifest.kind, &manifest.id)
        .await?;
    tracing::info!(backup_id = %manifest.id, kind = %kind, forced = newest, objects = deleted.len(), "Backup deleted.");
    if output == Output::Json {
        return super::print_json(
            "delete",
            &Report {
                id: manifest.id.as_str(),
                kind,
                cluster: &cfg.cluster,
                forced: newest,
                deleted,
            },
        );
    }
    println!(
        "Deleted {kind} backup {} of cluster {}{}: {} object(s), the manifest first:",
        manifest.id,
        cfg.cluster,
        if newest {
            " (the newest full one, --force)"
        } else {
            ""
        },
        deleted.len()
    );
    for key in &deleted {
        println!("  {key}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_newest_full;

    fn manifest(id: &str, partial: bool) -> lifeboat::manifest::Manifest {
        serde_json::from_value(serde_json::json!({
            "version": 1, "id": id, "cluster": "c", "kind": "resources",
            "started_at": "2026-12-01T10:00:00Z", "finished_at": "2026-12-01T10:00:05Z",
            "lifeboat_version": "test",
            "resources": {
                "api_server": "https://k", "api_server_version": "v1.31.0",
                "discovery": "aggregated", "resource_count": 1, "objects": 1,
                "encrypted_objects": 0, "encrypted_resources": [], "recipients": [],
                "partial": partial, "errors": []
            },
            "payload": {
                "name": "resources.tar.zst", "plain_size": 3, "stored_size": 3,
                "stored_sha256": "00", "compression": { "algorithm": "zstd", "level": 3 },
                "encryption": { "scheme": "none", "recipients": [] }
            }
        }))
        .unwrap()
    }

    #[test]
    fn only_the_newest_full_backup_needs_force() {
        let old = "20261201T100000Z-0000000000000001";
        let full = "20261201T110000Z-0000000000000002";
        let partial = "20261201T120000Z-0000000000000003";
        let listing = [
            manifest(old, false),
            manifest(full, false),
            manifest(partial, true),
        ];
        assert!(is_newest_full(&listing, full));
        assert!(!is_newest_full(&listing, old));
        // A newer partial export does not protect itself, nor take the full one's place.
        assert!(!is_newest_full(&listing, partial));
        assert!(!is_newest_full(&[], full));
    }
}
