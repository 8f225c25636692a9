//! `lifeboat diff`: what changed between a resource export and the live cluster (the default),
//! or between two exports: objects added, removed and changed, with a YAML diff of each
//! changed one. Secrets' values are hidden (the diff names the keys whose values changed)
//! unless `--identity` and `--show-secrets` are both given.

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
pub const EXAMPLES: &str = "Examples:\n  lifeboat diff                                   # the newest export against the live cluster\n  lifeboat diff --backup 20261201T020000Z-1a2b3c4d5e6f7a8b --namespace payments\n  lifeboat diff --backup ID1 --against ID2 -o json\n  lifeboat diff --identity key.txt --show-secrets --resource secrets --namespace payments\n  lifeboat diff --from-etcd --backup latest --identity key.txt --namespace payments   # etcd's state against live\n  lifeboat diff --from-etcd --snapshot snapshot.db --encryption-config enc.yaml --live";

/// Arguments of `diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The older side: a resource export's id, or latest (an etcd backup with --from-etcd).
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
    /// Show Secrets' values in the diff (needs --identity); otherwise they show as <hidden>
    /// and only the keys whose values changed are named.
    #[arg(long, requires = "identity")]
    pub show_secrets: bool,
    #[command(flatten)]
    pub etcd: super::from_etcd::EtcdSourceArgs,
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
    let selected = !(args.namespace.is_empty()
        && args.resource.is_empty()
        && args.name.is_empty()
        && args.selector.is_none());
    args.etcd.check()?;
    let kind = if args.etcd.from_etcd {
        Kind::Etcd
    } else {
        Kind::Resources
    };
    if args.etcd.snapshot.is_some() && args.against.is_some() {
        bail!(
            "--against names a backup to compare with --snapshot; give --backup ID instead of --snapshot, or drop --against to compare with the live cluster"
        );
    }
    let store = super::open_store(&cfg)?;
    let mut not_compared = Vec::new();
    let mut unreadable = HashSet::new();
    let (older_id, mut older_objects) = if args.etcd.from_etcd {
        let backup = super::BackupArg {
            named: args.etcd.snapshot.is_none().then(|| args.backup.clone()),
        };
        from_etcd(
            &cfg,
            &backup,
            &args.etcd,
            identities.clone(),
            &selection,
            &mut not_compared,
            &mut unreadable,
        )
        .await?
    } else {
        let older = store
            .resolve(&cfg.cluster, kind, &args.backup.parse()?)
            .await?;
        let objects = from_backup(
            &store,
            &older,
            identities.clone(),
            &selection,
            &mut not_compared,
            &mut unreadable,
        )
        .await?;
        (older.id.to_string(), objects)
    };
    // Before the live side's unlisted resources are set aside: those were matched.
    let older_matched = !older_objects.is_empty() || !unreadable.is_empty();
    let (newer_label, mut newer_objects) = match &args.against {
        Some(which) => {
            let newer = store.resolve(&cfg.cluster, kind, &which.parse()?).await?;
            if newer.id.as_str() == older_id {
                bail!("--backup and --against both name {older_id}: give two different backups");
            }
            let objects = if args.etcd.from_etcd {
                let backup = super::BackupArg {
                    named: Some(newer.id.to_string()),
                };
                from_etcd(
                    &cfg,
                    &backup,
                    &args.etcd,
                    identities,
                    &selection,
                    &mut not_compared,
                    &mut unreadable,
                )
                .await?
                .1
            } else {
                from_backup(
                    &store,
                    &newer,
                    identities,
                    &selection,
                    &mut not_compared,
                    &mut unreadable,
                )
                .await?
            };
            (newer.id.to_string(), objects)
        }
        None => {
            let (client, api_server) =
                lifeboat::kubernetes::client_with_url(&cfg.kubernetes).await?;
            let config_selection = lifeboat::objects::Selection::from(&cfg.resources);
            let listing = lifeboat::source::kube::list_all(
                &client,
                &config_selection,
                cfg.resources.page_size,
            )
            .await?;
            for e in listing.errors {
                not_compared.push(format!("live: {e}"));
            }
            // What the live side did not list cannot be compared: it is not "removed".
            let listed: HashSet<&str> = listing.resources.iter().map(String::as_str).collect();
            let mut unlisted: BTreeMap<String, usize> = BTreeMap::new();
            older_objects.retain(|_, (key, _)| {
                let keep = listed.contains(key.as_str());
                if !keep {
                    *unlisted.entry(key.clone()).or_default() += 1;
                }
                keep
            });
            for (key, n) in unlisted {
                not_compared.push(format!(
                    "{n} objects of {key}: not listed from the live cluster (excluded by resources.* in the config, or not served)"
                ));
            }
            let mut map = BTreeMap::new();
            for obj in listing.objects {
                let key = obj.resource.key();
                if selection.accepts(&key, &obj.value)
                    && let Some(r) = ObjectRef::of(&obj.value)
                {
                    map.insert(r, (key, obj.value));
                }
            }
            (format!("live {api_server}"), map)
        }
    };
    // What either export holds encrypted (no identity) or unreadable cannot be compared: it is
    // neither added nor removed.
    for side in [&mut older_objects, &mut newer_objects] {
        side.retain(|r, (key, _)| {
            !unreadable.contains(&(key.clone(), r.namespace.clone(), r.name.clone()))
        });
    }
    if selected && !older_matched && newer_objects.is_empty() && unreadable.is_empty() {
        bail!(
            "nothing in {older_id} or {} matches the selection (--namespace, --resource, --name, --selector); `lifeboat restore resources --to-dir DIR` shows what the backup holds",
            match &args.against {
                Some(_) => format!("backup {}", newer_label),
                None => "the live cluster".to_string(),
            }
        );
    }
    let older_objects: BTreeMap<ObjectRef, Value> = older_objects
        .into_iter()
        .map(|(r, (_, v))| (r, v))
        .collect();
    let newer_objects: BTreeMap<ObjectRef, Value> = newer_objects
        .into_iter()
        .map(|(r, (_, v))| (r, v))
        .collect();
    let options = Options {
        show_secrets: args.show_secrets,
        labels: (older_id.clone(), newer_label.clone()),
    };
    let report = diff::diff(&older_objects, &newer_objects, &options);
    if output == Output::Json {
        return super::print_json(
            "diff",
            &Document {
                older: &older_id,
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
            (Change::Removed, _) => println!("- {} (only in {older_id})", e.object),
            (Change::Changed, Some(d)) => print!("~ {}\n{d}", e.object),
            (Change::Changed, None) => println!("~ {}", e.object),
        }
        if !e.hidden_values.is_empty() {
            println!(
                "  values of data keys {} differ (hidden; --identity --show-secrets shows them)",
                e.hidden_values.join(", ")
            );
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
        older_id
    );
    Ok(())
}

/// (resource key, namespace, name) of an archive path, owned, for the set of objects that
/// cannot be compared.
fn identity_of(path: &str) -> Option<(String, Option<String>, String)> {
    let (namespace, key, name) = lifeboat::objects::identity_of(path)?;
    Some((key, namespace.map(str::to_string), name.to_string()))
}

/// The selected objects of one export, keyed by who they are, with their resource keys.
async fn from_backup(
    store: &lifeboat::store::Store,
    manifest: &lifeboat::manifest::Manifest,
    identities: Option<Arc<lifeboat::keys::Identities>>,
    selection: &Selection,
    not_compared: &mut Vec<String>,
    unreadable: &mut HashSet<(String, Option<String>, String)>,
) -> anyhow::Result<BTreeMap<ObjectRef, (String, Value)>> {
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
    Ok(index(
        inputs,
        manifest.id.as_str(),
        selection,
        not_compared,
        unreadable,
    ))
}

/// The selected objects of an etcd snapshot (`--from-etcd`): (its id, its objects).
async fn from_etcd(
    cfg: &lifeboat::config::Config,
    backup: &super::BackupArg,
    args: &super::from_etcd::EtcdSourceArgs,
    identities: Option<Arc<lifeboat::keys::Identities>>,
    selection: &Selection,
    not_compared: &mut Vec<String>,
    unreadable: &mut HashSet<(String, Option<String>, String)>,
) -> anyhow::Result<(String, BTreeMap<ObjectRef, (String, Value)>)> {
    let snapshot = super::from_etcd::snapshot(Some(cfg), backup, args, identities).await?;
    let options = super::from_etcd::options(args, selection.clone())?;
    let (inputs, report) = super::from_etcd::inputs(&snapshot, options).await?;
    super::from_etcd::print_summary(&snapshot, &report);
    let objects = index(inputs, &snapshot.id, selection, not_compared, unreadable);
    Ok((snapshot.id.clone(), objects))
}

/// The selected objects among `inputs` of the backup `id`, keyed by who they are, with their
/// resource keys; what cannot be compared is noted.
fn index(
    inputs: Vec<Input>,
    id: &str,
    selection: &Selection,
    not_compared: &mut Vec<String>,
    unreadable: &mut HashSet<(String, Option<String>, String)>,
) -> BTreeMap<ObjectRef, (String, Value)> {
    let mut map = BTreeMap::new();
    let mut encrypted = 0;
    for input in inputs {
        match input {
            Input::Object(obj) => {
                let key = obj.resource.key();
                if selection.accepts(&key, &obj.value)
                    && let Some(r) = ObjectRef::of(&obj.value)
                {
                    map.insert(r, (key, obj.value));
                }
            }
            Input::Encrypted { path } | Input::Unreadable { path, .. }
                if !lifeboat::objects::identity_of(&path).is_some_and(
                    |(namespace, key, name)| selection.accepts_identity(&key, namespace, name),
                ) => {}
            Input::Encrypted { path } => {
                encrypted += 1;
                unreadable.extend(identity_of(&path));
            }
            Input::Unreadable { path, reason } => {
                unreadable.extend(identity_of(&path));
                not_compared.push(format!("{id}: {path}: {reason}"))
            }
        }
    }
    if encrypted > 0 {
        not_compared.push(format!(
            "{id}: {encrypted} encrypted objects (Secrets) are not compared: pass --identity"
        ));
    }
    map
}
