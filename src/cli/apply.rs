//! `lifeboat restore resources --apply`: download and verify a resource export, then write its
//! selected objects into the cluster with server-side apply (lifeboat::apply::live), and report
//! per object and per resource. Exits non-zero when any object failed.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use lifeboat::apply::live::{self, Existing, Outcome, Request};
use lifeboat::apply::rules::NamespaceMapping;
use lifeboat::apply::select::{Selection, Selector};
use lifeboat::progress::Progress;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Output;
use super::restore::{ExistingArg, ResourcesArgs};

/// The `-o json` document of an apply.
#[derive(Serialize)]
struct ApplyReport<'a> {
    target: &'static str,
    id: &'a str,
    api_server: &'a str,
    dry_run: bool,
    interrupted: bool,
    existing: Existing,
    /// Per resource key: outcome → count.
    summary: std::collections::BTreeMap<String, std::collections::BTreeMap<&'static str, u64>>,
    failures: usize,
    objects: &'a [live::ObjectResult],
}

/// The selection the command line asks for.
pub fn selection(
    namespaces: &[String],
    resources: &[String],
    names: &[String],
    selector: Option<&str>,
) -> anyhow::Result<Selection> {
    Ok(Selection {
        namespaces: namespaces.to_vec(),
        resources: resources.to_vec(),
        names: names.to_vec(),
        selector: selector
            .map(Selector::parse)
            .transpose()?
            .unwrap_or_default(),
    })
}

/// Runs `restore resources --apply`.
pub async fn run(config: &Path, output: Output, args: ResourcesArgs) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    let identities = super::load_identities(args.identity.as_deref())?;
    let request = Request {
        selection: selection(
            &args.namespace,
            &args.resource,
            &args.name,
            args.selector.as_deref(),
        )?,
        skip_resources: cfg.resources.restore_skip_resources.clone(),
        mapping: NamespaceMapping::parse(&args.namespace_mapping).map_err(anyhow::Error::msg)?,
        existing: match args.existing {
            ExistingArg::Skip => Existing::Skip,
            ExistingArg::Update => Existing::Update,
        },
        dry_run: args.dry_run,
        force_conflicts: args.force_conflicts,
    };
    let export = if args.etcd.from_etcd {
        None
    } else {
        let store = super::open_store(&cfg)?;
        let manifest = store
            .resolve(
                &cfg.cluster,
                lifeboat::manifest::Kind::Resources,
                &args.backup.selector()?,
            )
            .await?;
        Some((store, manifest))
    };
    let (client, api_server) = lifeboat::kubernetes::client_with_url(&cfg.kubernetes).await?;
    // One clear failure when the cluster is unreachable, before the backup is downloaded and
    // instead of one per object.
    client.apiserver_version().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the API server {api_server}: {}; check kubernetes.kubeconfig and kubernetes.context in {}",
            lifeboat::error::chain(&e),
            cfg.path.display()
        )
    })?;
    for source in request.mapping.sources() {
        if !args.namespace.is_empty() && !args.namespace.iter().any(|n| n == source) {
            bail!(
                "--namespace-mapping renames {source:?}, which is not among the --namespace options ({}): check the spelling, or add --namespace {source}",
                args.namespace.join(", ")
            );
        }
    }
    let (label, id, inputs) = match export {
        Some((store, manifest)) => {
            eprintln!(
                "Reading backup {} (taken {}) and verifying it before anything is applied.",
                manifest.id,
                manifest.started_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
            let downloaded = Arc::new(Progress::default());
            let ticker = super::progress::Ticker::start(
                format!("Downloading backup {}", manifest.id),
                downloaded.clone(),
            );
            let inputs = lifeboat::restore::resources::objects(
                &store,
                &manifest,
                identities,
                lifeboat::objects::Filter::default(),
                downloaded,
            )
            .await;
            ticker.finish().await;
            let inputs =
                inputs.with_context(|| format!("backup {} cannot be applied", manifest.id))?;
            (
                format!("backup {}", manifest.id),
                manifest.id.to_string(),
                inputs,
            )
        }
        None => {
            let snapshot =
                super::from_etcd::snapshot(Some(&cfg), &args.backup, &args.etcd, identities)
                    .await?;
            let options = super::from_etcd::options(&args.etcd, request.selection.clone())?;
            let (inputs, report) = super::from_etcd::inputs(&snapshot, options).await?;
            super::from_etcd::print_summary(&snapshot, &report);
            let id = snapshot.id.clone();
            (snapshot.label.clone(), id, inputs)
        }
    };
    for source in request.mapping.sources() {
        let held = inputs.iter().any(|i| match i {
            live::Input::Object(o) => o.namespace.as_deref() == Some(source),
            _ => false,
        });
        if !held {
            bail!(
                "--namespace-mapping renames {source:?}, but {label} holds no objects in namespace {source:?}: check the spelling (lifeboat restore resources --to-dir DIR shows what it holds)"
            );
        }
    }
    eprintln!(
        "{} the selected objects of {label} to {api_server}{}.",
        if request.dry_run {
            "Checking (dry run, nothing is stored)"
        } else {
            "Applying"
        },
        match request.existing {
            Existing::Skip => ", leaving existing objects alone",
            Existing::Update => ", applying over existing objects",
        }
    );
    let interrupt = CancellationToken::new();
    tokio::spawn(super::backup::cancel_on_signal(interrupt.clone()));
    let progress = Arc::new(Progress::default());
    let ticker = super::progress::Ticker::start_counting("Applying objects", progress.clone());
    let report = live::apply(&client, inputs, &request, &progress, &interrupt).await;
    ticker.finish().await;

    if report.objects.is_empty() {
        bail!(
            "nothing in {label} matches the selection (--namespace, --resource, --name, --selector); `lifeboat restore resources --to-dir DIR` shows what it holds"
        );
    }
    if output == Output::Json {
        super::print_json(
            "restore",
            &ApplyReport {
                target: "resources",
                id: &id,
                api_server: &api_server,
                dry_run: report.dry_run,
                interrupted: report.interrupted,
                existing: request.existing,
                summary: report.summary(),
                failures: report.failures(),
                objects: &report.objects,
            },
        )?;
    } else {
        print_text(&report);
    }
    let encrypted = report
        .objects
        .iter()
        .filter(|o| o.outcome == Outcome::Encrypted)
        .count();
    if encrypted > 0 {
        eprintln!(
            "Warning: {encrypted} encrypted object(s) (Secrets) were not restored: pass --identity with a key of the backup's recipients."
        );
    }
    if report.interrupted {
        bail!(
            "interrupted after {} of the selected objects; those handled are listed above; run the same command again to go on (objects already restored are then left alone or unchanged)",
            report.objects.len()
        );
    }
    match report.failures() {
        0 => Ok(()),
        n => bail!(
            "{n} object(s) could not be {}; each is listed above with the API server's reason",
            if report.dry_run {
                "admitted"
            } else {
                "applied"
            }
        ),
    }
}

fn print_text(report: &live::Report) {
    for r in &report.objects {
        let noteworthy = match &r.outcome {
            Outcome::Created => false,
            Outcome::Unchanged { still_differs } => !still_differs.is_empty(),
            _ => true,
        };
        if noteworthy || !r.removed.is_empty() {
            println!("{}", live::describe(r));
        }
        for removed in &r.removed {
            println!("    removed {}: {}", removed.field, removed.why);
        }
    }
    println!(
        "Summary{}:",
        if report.dry_run {
            " (dry run: nothing was stored)"
        } else {
            ""
        }
    );
    for line in live::summary_lines(report) {
        println!("  {line}");
    }
}
