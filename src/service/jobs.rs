//! The service's jobs for the runner: a backup plan (one attempt is one backup, followed by
//! retention; caught up from the store's newest complete backup) and the restore drills. Each
//! brings the config, the store and the metrics into the runner through its closures and its
//! [`Observer`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::Service;
use super::runner::{Failure, Job, Observer, Outcome, Retry};
use crate::config::Plan;
use crate::manifest::Kind;
use crate::policy::schedule::Schedule;
use crate::service::metrics::Metrics;
use crate::store;

/// The job of `plan`, with its metrics seeded from the store (so a restarted service reports
/// the real freshness).
pub(super) async fn backup(svc: &Arc<Service>, plan: Plan) -> Job {
    svc.metrics.init_plan(&svc.cfg.cluster, &plan.name);
    init_from_store(svc, &plan).await;
    let observer = Arc::new(BackupObserver {
        metrics: svc.metrics.clone(),
        clock: svc.clock.clone(),
        cluster: svc.cfg.cluster.clone(),
        plan: plan.name.clone(),
        schedule: plan.schedule.clone(),
    });
    let plan = Arc::new(plan);
    let attempt = {
        let (svc, plan) = (svc.clone(), plan.clone());
        Arc::new(move |token| {
            let (svc, plan) = (svc.clone(), plan.clone());
            Box::pin(async move { backup_attempt(&svc, &plan, &token).await }) as _
        })
    };
    let last_success = {
        let (svc, plan) = (svc.clone(), plan.clone());
        Arc::new(move || {
            let (svc, plan) = (svc.clone(), plan.clone());
            Box::pin(async move {
                newest_complete(&svc, &plan)
                    .await
                    .map_err(|e| format!("cannot list the store: {}", crate::error::chain(&e)))
            }) as _
        })
    };
    Job {
        name: plan.name.clone(),
        schedule: plan.schedule.clone(),
        retry: Retry {
            retries: plan.retries,
            backoff: plan.retry_backoff,
        },
        attempt,
        last_success: Some(last_success),
        observer,
    }
}

/// The restore drills of the newest etcd backup, on `schedule` (one attempt, no retry).
pub(super) fn drill(svc: &Arc<Service>, schedule: Schedule) -> Job {
    for result in ["success", "failure"] {
        svc.metrics
            .drill_runs
            .with_label_values(&[&svc.cfg.cluster, result]);
    }
    let attempt = {
        let svc = svc.clone();
        Arc::new(move |token: CancellationToken| {
            let svc = svc.clone();
            Box::pin(async move {
                tokio::select! {
                    outcome = drill_attempt(&svc) => outcome,
                    // Dropping the drill kills its throwaway etcd and removes its directory.
                    _ = token.cancelled() => Outcome::Failed(Failure {
                        stage: DRILL,
                        error: "the restore drill was stopped".into(),
                    }),
                }
            }) as _
        })
    };
    Job {
        name: DRILL.into(),
        schedule,
        retry: Retry::NONE,
        attempt,
        last_success: None,
        observer: Arc::new(DrillObserver {
            metrics: svc.metrics.clone(),
            cluster: svc.cfg.cluster.clone(),
        }),
    }
}

/// The drill job's name, and the stage of its failures.
const DRILL: &str = "drill";

/// A backup plan's metrics.
struct BackupObserver {
    metrics: Arc<Metrics>,
    clock: Arc<dyn super::timer::WallClock>,
    cluster: String,
    plan: String,
    schedule: Schedule,
}

impl BackupObserver {
    fn labels(&self) -> [&str; 2] {
        [&self.cluster, &self.plan]
    }

    /// The run failed or was aborted: one failed run, attempted now.
    fn run_ended_in_failure(&self) {
        let m = &self.metrics;
        m.runs
            .with_label_values(&[&self.cluster, &self.plan, "failure"])
            .inc();
        m.last_attempt
            .with_label_values(&self.labels())
            .set(Utc::now().timestamp() as f64);
    }
}

impl Observer for BackupObserver {
    fn fired(&self, _fire: DateTime<Utc>) {
        self.metrics.interval.with_label_values(&self.labels()).set(
            self.schedule
                .expected_interval(self.clock.now())
                .as_secs_f64(),
        );
    }

    fn skipped_overlap(&self) {
        self.metrics
            .skipped_overlap
            .with_label_values(&self.labels())
            .inc();
    }

    fn attempt_failed(&self, failure: &Failure) {
        self.metrics
            .failures
            .with_label_values(&[&self.cluster, &self.plan, failure.stage])
            .inc();
    }

    fn run_failed(&self, _failure: &Failure) {
        self.run_ended_in_failure();
    }

    fn run_aborted(&self, _failure: &Failure) {
        self.run_ended_in_failure();
    }
}

/// The drills' metrics: an aborted drill is not counted.
struct DrillObserver {
    metrics: Arc<Metrics>,
    cluster: String,
}

impl Observer for DrillObserver {
    fn run_failed(&self, _failure: &Failure) {
        self.metrics
            .drill_runs
            .with_label_values(&[&self.cluster, "failure"])
            .inc();
    }
}

/// One backup of `plan`, then retention, with the metrics of its result.
async fn backup_attempt(svc: &Service, plan: &Plan, abort: &CancellationToken) -> Outcome {
    let cluster = svc.cfg.cluster.as_str();
    let labels = [cluster, plan.name.as_str()];
    let m = &svc.metrics;
    let result = match plan.kind {
        Kind::Etcd => crate::backup::etcd(&svc.cfg, &svc.store, abort).await,
        Kind::Resources => crate::backup::resources(&svc.cfg, &svc.store, abort).await,
    };
    let manifest = match result {
        Ok(manifest) => manifest,
        Err(e) => {
            return Outcome::Failed(Failure {
                stage: e.stage().as_str(),
                error: crate::error::chain(&e),
            });
        }
    };
    if let Some(r) = manifest.resources.as_ref().filter(|r| r.partial) {
        // Stored and listed, but not a full success: freshness stays on the last full one.
        m.runs
            .with_label_values(&[cluster, &plan.name, "partial"])
            .inc();
        m.last_attempt
            .with_label_values(&labels)
            .set(manifest.finished_at.timestamp() as f64);
        tracing::error!(plan = %plan.name, backup_id = %manifest.id, errors = %r.errors.join("; "), "Resource export is partial.");
        return Outcome::Done;
    }
    let finished = manifest.finished_at.timestamp() as f64;
    m.runs
        .with_label_values(&[cluster, &plan.name, "success"])
        .inc();
    m.last_success.with_label_values(&labels).set(finished);
    m.last_attempt.with_label_values(&labels).set(finished);
    m.duration
        .with_label_values(&labels)
        .observe((manifest.finished_at - manifest.started_at).num_milliseconds() as f64 / 1000.0);
    m.last_stored_bytes
        .with_label_values(&labels)
        .set(manifest.payload.stored_size as i64);
    if let Some(etcd) = &manifest.etcd {
        m.etcd_db_size
            .with_label_values(&[cluster])
            .set(etcd.db_size as i64);
        m.etcd_revision
            .with_label_values(&[cluster])
            .set(etcd.revision);
    }
    // A leader that lost its term leaves retention to the new one.
    if !abort.is_cancelled() {
        apply_retention(svc, plan).await;
    }
    Outcome::Done
}

async fn apply_retention(svc: &Service, plan: &Plan) {
    let labels = [svc.cfg.cluster.as_str(), plan.name.as_str()];
    match crate::prune::prune(&svc.store, &svc.cfg.cluster, plan, Utc::now(), false).await {
        Ok(report) => {
            svc.metrics
                .retention_deleted
                .with_label_values(&labels)
                .inc_by(report.deleted as u64);
            svc.metrics
                .backups_stored
                .with_label_values(&labels)
                .set(report.remaining as i64);
            svc.metrics
                .backups_unreadable
                .with_label_values(&labels)
                .set(report.unreadable as i64);
        }
        Err(e) => {
            svc.metrics
                .failures
                .with_label_values(&[labels[0], labels[1], "retention"])
                .inc();
            tracing::error!(plan = %plan.name, error = %crate::error::chain(&e), "Retention failed; nothing more was deleted. It runs again after the next backup.");
        }
    }
}

/// Seeds the plan's gauges from the store.
async fn init_from_store(svc: &Service, plan: &Plan) {
    let labels = [svc.cfg.cluster.as_str(), plan.name.as_str()];
    svc.metrics
        .interval
        .with_label_values(&labels)
        .set(plan.schedule.expected_interval(Utc::now()).as_secs_f64());
    match svc.store.list(&svc.cfg.cluster, plan.kind).await {
        Ok(listing) => {
            svc.metrics
                .backups_stored
                .with_label_values(&labels)
                .set(listing.complete.len() as i64);
            svc.metrics
                .backups_unreadable
                .with_label_values(&labels)
                .set(listing.unreadable.len() as i64);
            for u in &listing.unreadable {
                tracing::warn!(plan = %plan.name, backup_id = %u.id, key = %u.key, reason = %u.reason, "A manifest in the store cannot be read; it is not counted as a backup.");
            }
            if let Some(newest) = listing.complete.iter().rev().find(|m| m.is_full()) {
                svc.metrics
                    .last_success
                    .with_label_values(&labels)
                    .set(newest.finished_at.timestamp() as f64);
                svc.metrics
                    .last_stored_bytes
                    .with_label_values(&labels)
                    .set(newest.payload.stored_size as i64);
            }
        }
        Err(e) => {
            tracing::warn!(plan = %plan.name, error = %crate::error::chain(&e), "Cannot list the store to seed the metrics.")
        }
    }
}

/// The finish time of the newest complete full backup of `plan`.
async fn newest_complete(
    svc: &Service,
    plan: &Plan,
) -> Result<Option<DateTime<Utc>>, store::Error> {
    Ok(svc
        .store
        .list(&svc.cfg.cluster, plan.kind)
        .await?
        .complete
        .iter()
        .rev()
        .find(|m| m.is_full())
        .map(|m| m.finished_at))
}

/// One restore drill of the newest etcd backup, with the metrics of a success.
async fn drill_attempt(svc: &Service) -> Outcome {
    let cluster = svc.cfg.cluster.as_str();
    let result = async {
        let identities = svc
            .cfg
            .drill
            .identity_file
            .as_deref()
            .map(crate::keys::Identities::load)
            .transpose()
            .map_err(|e| crate::error::chain(&e))?
            .map(Arc::new);
        let bin_dir = crate::drill::find_bin_dir(svc.cfg.drill.etcd_bin_dir.as_deref())
            .map_err(|e| crate::error::chain(&e))?;
        let manifest = svc
            .store
            .resolve(cluster, Kind::Etcd, &store::Selector::Latest)
            .await
            .map_err(|e| crate::error::chain(&e))?;
        let limits = crate::drill::Limits::from_config(&svc.cfg);
        crate::drill::run_with_limits(&svc.store, &manifest, identities, &bin_dir, limits)
            .await
            .map_err(|e| crate::error::chain(&e))
    }
    .await;
    match result {
        Ok(r) => {
            svc.metrics
                .drill_runs
                .with_label_values(&[cluster, "success"])
                .inc();
            svc.metrics
                .drill_last_success
                .with_label_values(&[cluster])
                .set(Utc::now().timestamp() as f64);
            tracing::info!(backup_id = %r.id, revision = r.revision, keys = r.key_count, seconds = r.seconds, "Restore drill passed.");
            Outcome::Done
        }
        Err(error) => Outcome::Failed(Failure {
            stage: DRILL,
            error,
        }),
    }
}
