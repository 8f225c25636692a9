//! `lifeboat prune [--dry-run]`: apply each plan's retention now, showing every backup with the
//! reason it is kept or deleted. The service does the same after each successful backup.

use std::path::Path;

/// Arguments of `prune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show what would be deleted and why, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `prune`.
pub async fn run(config: &Path, args: Args) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    if cfg.plans.is_empty() {
        anyhow::bail!(
            "{} has no schedules, so no retention policy: add schedules.etcd.retention (e.g. {{ keep_last: 7 }})",
            cfg.path.display()
        );
    }
    let store = super::open_store(&cfg)?;
    let now = chrono::Utc::now();
    for plan in &cfg.plans {
        let report = lifeboat::prune::prune(&store, &cfg.cluster, plan, now, args.dry_run).await?;
        println!("Plan {} ({}):", plan.name, plan.kind);
        if plan.retention.is_none() {
            println!("  no retention policy: every backup is kept");
        }
        for v in &report.decision.verdicts {
            println!(
                "  {:<6} {}  {}",
                v.action.to_string().to_uppercase(),
                v.id,
                v.explain()
            );
        }
        for lifeboat::prune::Partial { id, superseded } in &report.partials {
            let (action, why) = if *superseded {
                (
                    "DELETE",
                    "partial export, superseded by a newer full backup",
                )
            } else {
                ("KEEP", "partial export, no newer full backup yet")
            };
            println!("  {action:<6} {id}  {why}");
        }
        for v in &report.sweep {
            println!(
                "  {:<6} {}  incomplete (no manifest): {}",
                v.action.to_string().to_uppercase(),
                v.id,
                v.reason
            );
        }
        let would = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let deletions = report.decision.deleted().count()
            + report.partials.iter().filter(|p| p.superseded).count();
        let sweeps = report
            .sweep
            .iter()
            .filter(|v| v.action == lifeboat::retention::SweepAction::Sweep)
            .count();
        println!(
            "  {would} {deletions} backup(s) and {sweeps} incomplete director(ies); {} complete backup(s) remain",
            report.remaining - if args.dry_run { deletions } else { 0 }
        );
    }
    Ok(())
}
