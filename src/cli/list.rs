//! `lifeboat list`: the complete backups, oldest first. Id directories without a manifest are
//! not backups and are only mentioned, never listed as one. `--all-clusters` lists every cluster
//! under the store's prefix (buckets shared by several clusters).

use std::path::Path;

use serde::Serialize;

use super::{KindArg, Output, human_bytes};

/// Examples shown after `lifeboat list --help`.
pub const EXAMPLES: &str = "Examples:\n  lifeboat list\n  lifeboat list --kind resources -o json\n  lifeboat list --all-clusters\n  lifeboat list -o json | jq -r '.backups[-1].id'";

/// Arguments of `list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which kind of backup.
    #[arg(long, value_enum, default_value_t = KindArg::Etcd)]
    pub kind: KindArg,
    /// List the backups of every cluster under the store's prefix, not only the configured one.
    #[arg(long)]
    pub all_clusters: bool,
}

/// `list -o json` (docs/CLI.md).
#[derive(Serialize)]
struct Report<'a> {
    /// The configured cluster.
    cluster: &'a str,
    /// The clusters listed: the configured one, or with --all-clusters every one found.
    clusters: Vec<String>,
    kind: lifeboat::manifest::Kind,
    store: &'a str,
    /// Complete backups, as their manifests, oldest first (by cluster, then id).
    backups: Vec<&'a lifeboat::manifest::Manifest>,
    incomplete: Vec<IncompleteJson<'a>>,
    unreadable: Vec<UnreadableJson<'a>>,
}

#[derive(Serialize)]
struct IncompleteJson<'a> {
    cluster: &'a str,
    id: &'a str,
    objects: usize,
    newest_object: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize)]
struct UnreadableJson<'a> {
    cluster: &'a str,
    id: &'a str,
    key: &'a str,
    reason: &'a str,
}

/// Runs `list`.
pub async fn run(config: &Path, output: Output, args: Args) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    let store = super::open_store(&cfg)?;
    let kind = args.kind.into();
    let clusters = if args.all_clusters {
        store.clusters().await?
    } else {
        vec![cfg.cluster.clone()]
    };
    let mut listings = vec![];
    for cluster in &clusters {
        let listing = store.list(cluster, kind).await?;
        let empty = listing.complete.is_empty()
            && listing.incomplete.is_empty()
            && listing.unreadable.is_empty();
        // Under --all-clusters, a directory with nothing of this kind is not listed.
        if !args.all_clusters || !empty {
            listings.push((cluster.clone(), listing));
        }
    }
    if output == Output::Json {
        let report = Report {
            cluster: &cfg.cluster,
            clusters: listings.iter().map(|(c, _)| c.clone()).collect(),
            kind,
            store: store.url(),
            backups: listings.iter().flat_map(|(_, l)| &l.complete).collect(),
            incomplete: listings
                .iter()
                .flat_map(|(c, l)| {
                    l.incomplete.iter().map(move |i| IncompleteJson {
                        cluster: c,
                        id: &i.id,
                        objects: i.objects,
                        newest_object: i.newest,
                    })
                })
                .collect(),
            unreadable: listings
                .iter()
                .flat_map(|(c, l)| {
                    l.unreadable.iter().map(move |u| UnreadableJson {
                        cluster: c,
                        id: &u.id,
                        key: &u.key,
                        reason: &u.reason,
                    })
                })
                .collect(),
        };
        return super::print_json("list", &report);
    }
    let complete: Vec<&lifeboat::manifest::Manifest> =
        listings.iter().flat_map(|(_, l)| &l.complete).collect();
    if complete.is_empty() {
        if args.all_clusters {
            println!(
                "No complete {kind} backups of any cluster in {}.",
                store.url()
            );
        } else {
            println!(
                "No complete {kind} backups of cluster {} in {}.",
                cfg.cluster,
                store.url()
            );
        }
    } else {
        let cluster_width = complete.iter().map(|m| m.cluster.len()).max().unwrap_or(0);
        if args.all_clusters {
            print!("{:<cluster_width$} ", "CLUSTER");
        }
        println!(
            "{:<34} {:<20} {:>9} {:>9} {:>10} {:<8} ENCRYPTION",
            "ID", "STARTED (UTC)", "SNAPSHOT", "STORED", "REVISION", "ETCD"
        );
        for m in complete {
            if args.all_clusters {
                print!("{:<cluster_width$} ", m.cluster);
            }
            println!("{}", row(m));
        }
    }
    let incomplete: usize = listings.iter().map(|(_, l)| l.incomplete.len()).sum();
    if incomplete > 0 {
        eprintln!(
            "Not listed: {incomplete} id director{} without a manifest (a run in progress or one that failed); they are not backups.",
            if incomplete == 1 { "y" } else { "ies" }
        );
    }
    let unreadable: Vec<_> = listings
        .iter()
        .flat_map(|(c, l)| l.unreadable.iter().map(move |u| (c, u)))
        .collect();
    if !unreadable.is_empty() {
        println!();
        println!(
            "UNREADABLE MANIFESTS ({}): these directories claim to be backups, but lifeboat cannot read them; `verify latest` and `restore --backup latest` refuse while one is newer than every readable backup:",
            unreadable.len()
        );
        for (cluster, u) in unreadable {
            if args.all_clusters {
                println!("  {cluster} {:<34} {}", u.id, u.reason);
            } else {
                println!("  {:<34} {}", u.id, u.reason);
            }
        }
    }
    Ok(())
}

/// One table row of a complete backup.
fn row(m: &lifeboat::manifest::Manifest) -> String {
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
    format!(
        "{:<34} {:<20} {:>9} {:>9} {:>10} {:<8} {}",
        m.id.as_str(),
        m.started_at.format("%Y-%m-%d %H:%M:%S"),
        human_bytes(m.payload.plain_size),
        human_bytes(m.payload.stored_size),
        revision,
        version,
        encryption
    )
}
