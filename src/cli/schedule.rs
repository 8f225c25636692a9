//! `lifeboat schedule --next N`: when each plan runs next, in UTC and in its own time zone, so
//! users can check a cron expression before deploying it.

use std::path::Path;

use serde::Serialize;

use super::Output;

/// Examples shown after `lifeboat schedule --help`.
pub const EXAMPLES: &str =
    "Examples:\n  lifeboat schedule\n  lifeboat schedule --next 10 -c config/lifeboat.yaml -o json";

/// Arguments of `schedule`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many upcoming runs to show per plan.
    #[arg(long, default_value_t = 5)]
    pub next: usize,
}

/// `schedule -o json` (docs/CLI.md).
#[derive(Serialize)]
struct Report {
    plans: Vec<PlanJson>,
}

#[derive(Serialize)]
struct PlanJson {
    plan: String,
    kind: lifeboat::manifest::Kind,
    schedule: String,
    time_zone: String,
    interval_seconds: u64,
    /// Upcoming runs, UTC.
    next: Vec<chrono::DateTime<chrono::Utc>>,
}

/// Runs `schedule`.
pub fn run(config: &Path, output: Output, args: Args) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    if cfg.plans.is_empty() {
        anyhow::bail!(
            "{} has no schedules: add e.g. schedules.etcd.cron: \"0 */6 * * *\"",
            cfg.path.display()
        );
    }
    let now = chrono::Utc::now();
    let mut plans = vec![];
    for plan in &cfg.plans {
        let interval = plan.schedule.expected_interval(now);
        let tz = plan.schedule.time_zone();
        let upcoming = plan.schedule.upcoming(now, args.next);
        if output == Output::Json {
            plans.push(PlanJson {
                plan: plan.name.clone(),
                kind: plan.kind,
                schedule: plan.schedule.to_string(),
                time_zone: tz.name().to_string(),
                interval_seconds: interval.as_secs(),
                next: upcoming,
            });
            continue;
        }
        println!(
            "{}: {} (every ~{})",
            plan.name,
            plan.schedule,
            humantime::format_duration(std::time::Duration::from_secs(interval.as_secs()))
        );
        for at in upcoming {
            println!(
                "  {}  ({})",
                at.format("%Y-%m-%d %H:%M:%S UTC"),
                at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z")
            );
        }
    }
    if output == Output::Json {
        return super::print_json("schedule", &Report { plans });
    }
    Ok(())
}
