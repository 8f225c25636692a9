//! `lifeboat prune [--dry-run]`: apply each plan's retention now, showing every backup with the
//! reason it is kept or deleted. The service does the same after each successful backup.

use std::path::Path;

use serde::Serialize;

use super::Output;

/// Examples shown after `lifeboat prune --help`.
pub const EXAMPLES: &str = "Examples:\n  lifeboat prune --dry-run\n  lifeboat prune\n  lifeboat prune --dry-run -o json | jq '.plans[].backups[] | select(.action == \"delete\")'";

/// Arguments of `prune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show what would be deleted and why, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `prune -o json` (docs/CLI.md).
#[derive(Serialize)]
struct Report {
    dry_run: bool,
    plans: Vec<PlanJson>,
}

#[derive(Serialize)]
struct PlanJson {
    plan: String,
    kind: lifeboat::manifest::Kind,
    has_retention: bool,
    /// Full backups: keep or delete, with the reason.
    backups: Vec<VerdictJson>,
    /// Partial resource exports: deleted once a newer full backup exists.
    partials: Vec<VerdictJson>,
    /// Id directories without a manifest: sweep or wait.
    incomplete: Vec<VerdictJson>,
    /// Backups deleted (or, on a dry run, that would be).
    deleted: usize,
    /// Incomplete directories removed (or that would be).
    swept: usize,
    /// Complete backups left afterwards.
    remaining: usize,
}

#[derive(Serialize)]
struct VerdictJson {
    id: String,
    action: String,
    reason: String,
}

/// Runs `prune`.
pub async fn run(config: &Path, output: Output, args: Args) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    if cfg.plans.is_empty() {
        anyhow::bail!(
            "{} has no schedules, so no retention policy: add schedules.etcd.retention (e.g. {{ keep_last: 7 }})",
            cfg.path.display()
        );
    }
    let store = super::open_store(&cfg)?;
    let now = chrono::Utc::now();
    let mut plans = vec![];
    for plan in &cfg.plans {
        let report = lifeboat::prune::prune(&store, &cfg.cluster, plan, now, args.dry_run).await?;
        let deletions = report.decision.deleted().count()
            + report.partials.iter().filter(|p| p.superseded).count();
        let sweeps = report
            .sweep
            .iter()
            .filter(|v| v.action == lifeboat::policy::retention::SweepAction::Sweep)
            .count();
        let remaining = report.remaining - if args.dry_run { deletions } else { 0 };
        let partials: Vec<VerdictJson> = report
            .partials
            .iter()
            .map(|lifeboat::prune::Partial { id, superseded }| {
                let (action, why) = if *superseded {
                    (
                        "delete",
                        "partial export, superseded by a newer full backup",
                    )
                } else {
                    ("keep", "partial export, no newer full backup yet")
                };
                VerdictJson {
                    id: id.to_string(),
                    action: action.into(),
                    reason: why.into(),
                }
            })
            .collect();
        let json = PlanJson {
            plan: plan.name.clone(),
            kind: plan.kind,
            has_retention: plan.retention.is_some(),
            backups: report
                .decision
                .verdicts
                .iter()
                .map(|v| VerdictJson {
                    id: v.id.clone(),
                    action: v.action.to_string(),
                    reason: v.explain(),
                })
                .collect(),
            partials,
            incomplete: report
                .sweep
                .iter()
                .map(|v| VerdictJson {
                    id: v.id.clone(),
                    action: v.action.to_string(),
                    reason: v.reason.to_string(),
                })
                .collect(),
            deleted: deletions,
            swept: sweeps,
            remaining,
        };
        if output == Output::Text {
            print_plan(&json, args.dry_run);
        }
        plans.push(json);
    }
    if output == Output::Json {
        return super::print_json(
            "prune",
            &Report {
                dry_run: args.dry_run,
                plans,
            },
        );
    }
    Ok(())
}

fn print_plan(p: &PlanJson, dry_run: bool) {
    println!("Plan {} ({}):", p.plan, p.kind);
    if !p.has_retention {
        println!("  no retention policy: every backup is kept");
    }
    for v in p.backups.iter().chain(&p.partials) {
        println!("  {:<6} {}  {}", v.action.to_uppercase(), v.id, v.reason);
    }
    for v in &p.incomplete {
        println!(
            "  {:<6} {}  incomplete (no manifest): {}",
            v.action.to_uppercase(),
            v.id,
            v.reason
        );
    }
    let would = if dry_run { "would delete" } else { "deleted" };
    println!(
        "  {would} {} backup(s) and {} incomplete director(ies); {} complete backup(s) remain",
        p.deleted, p.swept, p.remaining
    );
}
