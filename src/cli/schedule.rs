//! `lifeboat schedule --next N`: when each plan runs next, in UTC and in its own time zone, so
//! users can check a cron expression before deploying it.

use std::path::Path;

/// Arguments of `schedule`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many upcoming runs to show per plan.
    #[arg(long, default_value_t = 5)]
    pub next: usize,
}

/// Runs `schedule`.
pub fn run(config: &Path, args: Args) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    if cfg.plans.is_empty() {
        anyhow::bail!(
            "{} has no schedules: add e.g. schedules.etcd.cron: \"0 */6 * * *\"",
            cfg.path.display()
        );
    }
    let now = chrono::Utc::now();
    for plan in &cfg.plans {
        let interval = plan.schedule.expected_interval(now);
        println!(
            "{}: {} (every ~{})",
            plan.name,
            plan.schedule,
            humantime::format_duration(std::time::Duration::from_secs(interval.as_secs()))
        );
        let tz = plan.schedule.time_zone();
        for at in plan.schedule.upcoming(now, args.next) {
            println!(
                "  {}  ({})",
                at.format("%Y-%m-%d %H:%M:%S UTC"),
                at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z")
            );
        }
    }
    Ok(())
}
