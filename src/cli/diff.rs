//! `lifeboat diff`: what changed between a resource export and the live cluster (the default),
//! or between two exports: objects added, removed and changed, with a YAML diff of each
//! changed one. Secrets are compared by hash unless `--identity` and `--show-secrets` are both
//! given.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use lifeboat::apply::diff::{self, Change, Options};
use lifeboat::apply::live::Input;
use lifeboat::apply::select::{ObjectRef, Selection};
use lifeboat::manifest::Kind;
use serde::Serialize;
use serde_json::Value;

use super::Output;

/// Examples shown after `lifeboat diff --help`.
pub const EXAMPLES: &str = "Examples:\n  lifeboat diff                                   # the newest export against the live cluster\n  lifeboat diff --backup 20261201T020000Z-1a2b3c4d5e6f7a8b --namespace payments\n  lifeboat diff --backup ID1 --against ID2 -o json\n  lifeboat diff --identity key.txt --show-secrets --resource secrets --namespace payments";

/// Arguments of `diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The older side: a resource export's id, or latest.
    #[arg(long, default_value = "latest", value_name = "latest|ID")]
    pub backup: String,
    /// The newer side: another export's id (default: the live cluster).
    #[arg(long, value_name = "latest|ID", conflicts_with = "live")]
    pub against: Option<String>,
    /// Compare with the live cluster of `kubernetes:` in the config (the default).
    #[arg(long)]
    pub live: bool,
    /// Only these namespaces (repeatable); their Namespace objects too.
    #[arg(long)]
    pub namespace: Vec<String>,
    /// Only these resources, e.g. deployments.apps (repeatable).
    #[arg(long)]
    pub resource: Vec<String>,
    /// Only objects with these names (repeatable).
    #[arg(long)]
    pub name: Vec<String>,
    /// Only objects whose labels match: app=web,tier!=db.
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
    /// age identity: read encrypted objects (Secrets) of the exports, so they are compared.
    #[arg(long, short)]
    pub identity: Option<PathBuf>,
    /// Show Secrets' contents in the diff (needs --identity); otherwise only whether they
    /// changed.
    #[arg(long, requires = "identity")]
    pub show_secrets: bool,
}

#[derive(Serialize)]
struct Document<'a> {
    older: &'a str,
    newer: &'a str,
    added: usize,
    removed: usize,
    changed: usize,
    unchanged: u64,
    /// Objects that could not be compared (encrypted without --identity, unreadable, or not
    /// listed completely), with why.
    not_compared: &'a [String],
    entries: &'a [diff::Entry],
}

/// Runs `diff`.
pub async fn run(config: &Path, output: Output, args: Args) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    let identities = super::load_identities(args.identity.as_deref())?;
    let selection = super::apply::selection(
        &args.namespace,
        &args.resource,
        &args.name,
        args.selector.as_deref(),
    )?;
    let store = super::open_store(&cfg)?;
    let older = store
        .resolve(&cfg.cluster, Kind::Resources, &args.backup.parse()?)
        .await?;
    let mut not_compared = Vec::new();
    let mut unreadable = HashSet::new();
    let older_objects = from_backup(
        &store,
        &older,
        identities.clone(),
        &selection,
        &mut not_compared,
        &mut unreadable,
    )
    .await?;
    let (newer_label, newer_objects) = match &args.against {
        Some(which) => {
            let newer = store
                .resolve(&cfg.cluster, Kind::Resources, &which.parse()?)
                .await?;
            if newer.id == older.id {
                bail!(
                    "--backup and --against both name {}: give two different exports",
                    older.id
                );
            }
            let objects = from_backup(
                &store,
                &newer,
                identities,
                &selection,
                &mut not_compared,
                &mut unreadable,
            )
            .await?;
            (newer.id.to_string(), objects)
        }
        None => {
            let (client, api_server) =
                lifeboat::kubernetes::client_with_url(&cfg.kubernetes).await?;
            let config_selection = lifeboat::objects::Selection::from(&cfg.resources);
            let (objects, errors) = lifeboat::source::kube::list_all(
                &client,
                &config_selection,
                cfg.resources.page_size,
            )
            .await?;
            for e in errors {
                not_compared.push(format!("live: {e}"));
            }
            let mut map = BTreeMap::new();
            for obj in objects {
                let key = obj.resource.key();
                // What the export holds encrypted (no identity) cannot be compared: it is
                // neither added nor removed.
                let id = (key.clone(), obj.namespace.clone(), obj.name.clone());
                if !unreadable.contains(&id)
                    && selection.accepts(&key, &obj.value)
                    && let Some(r) = ObjectRef::of(&obj.value)
                {
                    map.insert(r, obj.value);
                }
            }
            (format!("live {api_server}"), map)
        }
    };
    let options = Options {
        show_secrets: args.show_secrets,
        labels: (older.id.to_string(), newer_label.clone()),
    };
    let report = diff::diff(&older_objects, &newer_objects, &options);
    if output == Output::Json {
        return super::print_json(
            "diff",
            &Document {
                older: older.id.as_str(),
                newer: &newer_label,
                added: report.count(Change::Added),
                removed: report.count(Change::Removed),
                changed: report.count(Change::Changed),
                unchanged: report.unchanged,
                not_compared: &not_compared,
                entries: &report.entries,
            },
        );
    }
    for e in &report.entries {
        match (e.change, &e.diff) {
            (Change::Added, _) => println!("+ {} (only in {newer_label})", e.object),
            (Change::Removed, _) => println!("- {} (only in {})", e.object, older.id),
            (Change::Changed, Some(d)) => print!("~ {}\n{d}", e.object),
            (Change::Changed, None) => println!(
                "~ {} (contents differ; compared by hash, --show-secrets shows them)",
                e.object
            ),
        }
    }
    for n in &not_compared {
        eprintln!("not compared: {n}");
    }
    println!(
        "{} added, {} removed, {} changed, {} unchanged ({} → {newer_label}).",
        report.count(Change::Added),
        report.count(Change::Removed),
        report.count(Change::Changed),
        report.unchanged,
        older.id
    );
    Ok(())
}

/// (resource key, namespace, name) of an archive path.
fn identity_of(path: &str) -> Option<(String, Option<String>, String)> {
    let (namespace, key) = lifeboat::objects::resource_of(path)?;
    let file = path.rsplit('/').next()?;
    let name = file
        .strip_suffix(".yaml.age")
        .or_else(|| file.strip_suffix(".yaml"))?;
    Some((key, namespace.map(str::to_string), name.to_string()))
}

/// The selected objects of one export, keyed by who they are.
async fn from_backup(
    store: &lifeboat::store::Store,
    manifest: &lifeboat::manifest::Manifest,
    identities: Option<Arc<lifeboat::keys::Identities>>,
    selection: &Selection,
    not_compared: &mut Vec<String>,
    unreadable: &mut HashSet<(String, Option<String>, String)>,
) -> anyhow::Result<BTreeMap<ObjectRef, Value>> {
    let progress = Arc::new(lifeboat::progress::Progress::default());
    let ticker = super::progress::Ticker::start(
        format!("Downloading backup {}", manifest.id),
        progress.clone(),
    );
    let inputs = lifeboat::restore::resources::objects(
        store,
        manifest,
        identities,
        lifeboat::objects::Filter::default(),
        progress,
    )
    .await;
    ticker.finish().await;
    let inputs =
        inputs.with_context(|| format!("backup {} cannot be read for the diff", manifest.id))?;
    let mut map = BTreeMap::new();
    let mut encrypted = 0;
    for input in inputs {
        match input {
            Input::Object(obj) => {
                if selection.accepts(&obj.resource.key(), &obj.value)
                    && let Some(r) = ObjectRef::of(&obj.value)
                {
                    map.insert(r, obj.value);
                }
            }
            Input::Encrypted { path } => {
                encrypted += 1;
                unreadable.extend(identity_of(&path));
            }
            Input::Unreadable { path, reason } => {
                unreadable.extend(identity_of(&path));
                not_compared.push(format!("{}: {path}: {reason}", manifest.id))
            }
        }
    }
    if encrypted > 0 {
        not_compared.push(format!(
            "{}: {encrypted} encrypted objects (Secrets) are not compared: pass --identity",
            manifest.id
        ));
    }
    Ok(map)
}
