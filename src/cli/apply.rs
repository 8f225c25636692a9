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

use super::Output;
use super::restore::{ExistingArg, ResourcesArgs};

/// The `-o json` document of an apply.
#[derive(Serialize)]
struct ApplyReport<'a> {
    target: &'static str,
    id: &'a str,
    api_server: &'a str,
    dry_run: bool,
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
    let store = super::open_store(&cfg)?;
    let manifest = store
        .resolve(
            &cfg.cluster,
            lifeboat::manifest::Kind::Resources,
            &args.backup.selector()?,
        )
        .await?;
    let (client, api_server) = lifeboat::kubernetes::client_with_url(&cfg.kubernetes).await?;
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
    let inputs = inputs.with_context(|| format!("backup {} cannot be applied", manifest.id))?;
    eprintln!(
        "{} {} objects of backup {} to {api_server}{}.",
        if request.dry_run {
            "Checking (dry run, nothing is stored)"
        } else {
            "Applying"
        },
        inputs.len(),
        manifest.id,
        match request.existing {
            Existing::Skip => ", leaving existing objects alone",
            Existing::Update => ", applying over existing objects",
        }
    );
    let progress = Arc::new(Progress::default());
    let ticker = super::progress::Ticker::start_counting("Applying objects", progress.clone());
    let report = live::apply(&client, inputs, &request, &progress).await;
    ticker.finish().await;

    if output == Output::Json {
        super::print_json(
            "restore",
            &ApplyReport {
                target: "resources",
                id: manifest.id.as_str(),
                api_server: &api_server,
                dry_run: report.dry_run,
                existing: request.existing,
                summary: report.summary(),
                failures: report.failures(),
                objects: &report.objects,
            },
        )?;
    } else {
        print_text(&report);
    }
    if report.objects.is_empty() {
        bail!(
            "nothing in backup {} matches the selection (--namespace, --resource, --name, --selector); `lifeboat restore resources --to-dir DIR` shows what it holds",
            manifest.id
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
        let noteworthy = !matches!(r.outcome, Outcome::Created | Outcome::Unchanged);
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
