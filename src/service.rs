//! `lifeboat serve`: the long-running service. It serves /metrics, /healthz and /readyz, takes
//! part in leader election, and runs each plan on its schedule: catch-up at start, never
//! overlapping itself, retries with backoff, retention after each success, and a graceful stop
//! on SIGTERM (a running backup gets `server.shutdown_grace`, then its upload is aborted).
//!
//! Timing: tokio-cron-scheduler is the timer, but only with one-shot jobs at instants that
//! `plan::Schedule` computes. Its own cron parser is not used: it rejects 5-field cron, ANDs
//! day-of-month with day-of-week, and freezes a time zone into a fixed UTC offset.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Plan};
use crate::leader::Elector;
use crate::manifest::Kind;
use crate::metrics::Metrics;
use crate::server::{self, Readiness};
use crate::store::{self, Store};

/// How often /readyz's store check is refreshed.
const STORE_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Why the service could not start.
#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "cannot listen on {addr}: {source}; is another process using the port? change server.listen"
    )]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the scheduler failed: {reason}")]
    Scheduler { reason: String },
    #[error(transparent)]
    Kube(#[from] crate::kube::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
}

struct Service {
    cfg: Config,
    store: Store,
    metrics: Arc<Metrics>,
}

/// Runs the service until `shutdown` is cancelled; then stops gracefully and returns.
pub async fn run(
    cfg: Config,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let store = Store::open(&cfg.storage)?;
    let svc = Arc::new(Service {
        cfg,
        store,
        metrics,
    });
    let cfg = &svc.cfg;
    let listener = server::bind(cfg.server.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: cfg.server.listen,
            source,
        })?;
    tracing::info!(listen = %cfg.server.listen, plans = cfg.plans.len(), "Serving /metrics, /healthz and /readyz.");
    if cfg.plans.is_empty() {
        tracing::warn!(
            "No schedules configured: serving metrics only. Add schedules.etcd to back up on a schedule."
        );
    }

    let (ready_tx, ready_rx) = watch::channel(Readiness {
        store: None,
        role_known: cfg.leader_election.is_none(),
    });
    let background = CancellationToken::new();
    let http = tokio::spawn(server::serve(
        listener,
        Arc::new(server::State {
            metrics: svc.metrics.clone(),
            readiness: ready_rx,
        }),
        background.clone(),
    ));
    tokio::spawn(check_store(
        svc.clone(),
        ready_tx.clone(),
        background.clone(),
    ));

    // Leadership: None until decided.
    let (leading_tx, leading_rx) = watch::channel(cfg.leader_election.is_none().then_some(true));
    let elector = match &cfg.leader_election {
        None => None,
        Some(le) => {
            let client = crate::kube::client(&cfg.kubernetes).await?;
            let (tx, mut rx) = watch::channel(false);
            let elect_cancel = CancellationToken::new();
            let handle =
                tokio::spawn(Elector::new(client, le.clone()).run(tx, elect_cancel.clone()));
            // Forward the elector's decisions (the first one marks the role as known).
            let leading_tx = leading_tx.clone();
            let ready_tx = ready_tx.clone();
            tokio::spawn(async move {
                let mut first = true;
                loop {
                    let now_leading = *rx.borrow_and_update();
                    if first || leading_tx.borrow().is_some() {
                        leading_tx.send_replace(Some(now_leading));
                        ready_tx.send_modify(|r| r.role_known = true);
                    }
                    first = false;
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            });
            Some((handle, elect_cancel))
        }
    };
    {
        let metrics = svc.metrics.clone();
        let cluster = cfg.cluster.clone();
        let mut rx = leading_rx.clone();
        tokio::spawn(async move {
            loop {
                let l = *rx.borrow_and_update();
                metrics
                    .leader
                    .with_label_values(&[&cluster])
                    .set(i64::from(l == Some(true)));
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    let scheduler = JobScheduler::new().await.map_err(|e| Error::Scheduler {
        reason: e.to_string(),
    })?;
    scheduler.start().await.map_err(|e| Error::Scheduler {
        reason: e.to_string(),
    })?;
    let stop_scheduling = CancellationToken::new();
    let abort_runs = CancellationToken::new();
    let mut loops = Vec::new();
    let mut runs: Vec<Arc<Mutex<RunSlot>>> = Vec::new();
    for plan in &cfg.plans {
        svc.metrics.init_plan(&cfg.cluster, &plan.name);
        init_from_store(&svc, plan).await;
        let running = Arc::new(Mutex::new(RunSlot::default()));
        runs.push(running.clone());
        loops.push(tokio::spawn(plan_loop(
            svc.clone(),
            plan.clone(),
            scheduler.clone(),
            leading_rx.clone(),
            stop_scheduling.clone(),
            abort_runs.clone(),
            running,
        )));
    }

    if let Some(schedule) = cfg.drill.schedule.clone() {
        for result in ["success", "failure"] {
            svc.metrics
                .drill_runs
                .with_label_values(&[&cfg.cluster, result]);
        }
        let running = Arc::new(Mutex::new(RunSlot::default()));
        runs.push(running.clone());
        loops.push(tokio::spawn(drill_loop(
            svc.clone(),
            schedule,
            scheduler.clone(),
            leading_rx.clone(),
            stop_scheduling.clone(),
            abort_runs.clone(),
            running,
        )));
    }

    shutdown.cancelled().await;
    tracing::info!(grace = ?cfg.server.shutdown_grace, "Shutting down: no new runs; a running backup may finish within the grace period.");
    stop_scheduling.cancel();
    for l in loops {
        let _ = l.await;
    }
    let pending: Vec<JoinHandle<()>> = runs
        .iter()
        .filter_map(|r| r.lock().expect("run slot").handle.take())
        .collect();
    let all = futures::future::join_all(pending);
    tokio::pin!(all);
    if tokio::time::timeout(cfg.server.shutdown_grace, &mut all)
        .await
        .is_err()
    {
        tracing::warn!(
            "The running backup did not finish within the grace period: aborting it (its upload is aborted, no manifest is written)."
        );
        abort_runs.cancel();
        all.await;
    }
    if let Some((handle, elect_cancel)) = elector {
        elect_cancel.cancel();
        let _ = handle.await;
    }
    let mut scheduler = scheduler;
    let _ = scheduler.shutdown().await;
    background.cancel();
    let _ = http.await;
    tracing::info!("Stopped.");
    Ok(())
}

/// The run of one plan (or the drills): its task and the token that aborts it.
#[derive(Default)]
struct RunSlot {
    handle: Option<JoinHandle<()>>,
    cancel: Option<CancellationToken>,
}

impl RunSlot {
    fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }
}

async fn check_store(
    svc: Arc<Service>,
    ready: watch::Sender<Readiness>,
    cancel: CancellationToken,
) {
    let kind = svc.cfg.plans.first().map(|p| p.kind).unwrap_or(Kind::Etcd);
    loop {
        let result = svc
            .store
            .preflight(&svc.cfg.cluster, kind)
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::warn!(error = %e, "The store is not reachable.");
        }
        ready.send_modify(|r| r.store = Some(result));
        tokio::select! {
            _ = tokio::time::sleep(STORE_CHECK_EVERY) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// Seeds the plan's gauges from the store, so a restarted service reports the real freshness.
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
            tracing::warn!(plan = %plan.name, error = %e, "Cannot list the store to seed the metrics.")
        }
    }
}

async fn newest_complete(
    svc: &Service,
    plan: &Plan,
) -> Result<Option<chrono::DateTime<Utc>>, store::Error> {
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

async fn plan_loop(
    svc: Arc<Service>,
    plan: Plan,
    scheduler: JobScheduler,
    mut leading: watch::Receiver<Option<bool>>,
    stop: CancellationToken,
    abort: CancellationToken,
    running: Arc<Mutex<RunSlot>>,
) {
    let labels = [svc.cfg.cluster.clone(), plan.name.clone()];
    let mut was_leading = false;
    let mut last_fire = Utc::now();
    let start_run = |why: &'static str| {
        let mut slot = running.lock().expect("run slot");
        if slot.is_running() {
            svc.metrics.skipped_overlap.with_label_values(&labels).inc();
            tracing::warn!(plan = %plan.name, "The previous run is still going: this scheduled run is skipped.");
            return;
        }
        tracing::info!(plan = %plan.name, why, "Run starting.");
        let token = abort.child_token();
        slot.cancel = Some(token.clone());
        slot.handle = Some(tokio::spawn(run_plan(svc.clone(), plan.clone(), token)));
    };
    loop {
        // Becoming leader (or starting as one): catch up if a scheduled run was missed.
        let is_leading = *leading.borrow_and_update() == Some(true);
        if is_leading && !was_leading {
            match newest_complete(&svc, &plan).await {
                Ok(newest) if crate::plan::catch_up_due(&plan.schedule, newest, Utc::now()) => {
                    start_run(
                        "catch-up: the newest complete backup is older than the schedule allows",
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(plan = %plan.name, error = %e, "Cannot list the store for the catch-up check; waiting for the schedule.")
                }
            }
        }
        was_leading = is_leading;

        let Some(next) = plan
            .schedule
            .next_after(last_fire.max(Utc::now() - chrono::Duration::seconds(1)))
        else {
            tracing::error!(plan = %plan.name, "The schedule has no future run.");
            return;
        };
        let fired = match one_shot(&scheduler, next).await {
            Ok(rx) => rx,
            Err(e) => {
                tracing::error!(plan = %plan.name, error = %e, "Cannot schedule the next run; retrying in 10s.");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(10)) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        tokio::select! {
            _ = fired => {
                last_fire = next;
                svc.metrics.interval.with_label_values(&labels).set(plan.schedule.expected_interval(Utc::now()).as_secs_f64());
                if *leading.borrow() == Some(true) {
                    start_run("scheduled");
                } else {
                    tracing::debug!(plan = %plan.name, "Standby: the leader runs this one.");
                }
            }
            changed = leading.changed() => {
                if changed.is_err() { return; }
                if *leading.borrow() != Some(true) {
                    // Lost the lease: the new leader runs the plan now; stop ours cleanly.
                    let slot = running.lock().expect("run slot");
                    if slot.is_running() && let Some(token) = &slot.cancel {
                        tracing::warn!(plan = %plan.name, "Leadership lost: aborting the running backup (no manifest is written).");
                        token.cancel();
                    }
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

/// A receiver that completes at `at`, driven by a tokio-cron-scheduler one-shot job.
async fn one_shot(
    scheduler: &JobScheduler,
    at: chrono::DateTime<Utc>,
) -> Result<tokio::sync::oneshot::Receiver<()>, tokio_cron_scheduler::JobSchedulerError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    // The scheduler truncates a one-shot's delay to whole seconds; one extra second makes it
    // fire at or just after `at` instead of up to a second early.
    let delay = (at - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(1);
    let job =
        Job::new_one_shot_at_instant_async(std::time::Instant::now() + delay, move |_, _| {
            if let Some(tx) = tx.lock().expect("one-shot sender").take() {
                let _ = tx.send(());
            }
            Box::pin(async {})
        })?;
    scheduler.add(job).await?;
    Ok(rx)
}

/// One run of a plan: the backup with retries and backoff, then retention, with metrics.
async fn run_plan(svc: Arc<Service>, plan: Plan, abort: CancellationToken) {
    let cluster = svc.cfg.cluster.as_str();
    let labels = [cluster, plan.name.as_str()];
    let m = &svc.metrics;
    let mut backoff = plan.retry_backoff;
    for attempt in 0..=plan.retries {
        let result = match plan.kind {
            Kind::Etcd => crate::backup::etcd(&svc.cfg, &svc.store, &abort).await,
            Kind::Resources => crate::backup::resources(&svc.cfg, &svc.store, &abort).await,
        };
        if let Ok(manifest) = &result
            && let Some(r) = manifest.resources.as_ref().filter(|r| r.partial)
        {
            // Stored and listed, but not a full success: freshness stays on the last full one.
            m.runs
                .with_label_values(&[cluster, &plan.name, "partial"])
                .inc();
            m.last_attempt
                .with_label_values(&labels)
                .set(manifest.finished_at.timestamp() as f64);
            tracing::error!(plan = %plan.name, backup_id = %manifest.id, errors = %r.errors.join("; "), "Resource export is partial.");
            return;
        }
        match result {
            Ok(manifest) => {
                let finished = manifest.finished_at.timestamp() as f64;
                m.runs
                    .with_label_values(&[cluster, &plan.name, "success"])
                    .inc();
                m.last_success.with_label_values(&labels).set(finished);
                m.last_attempt.with_label_values(&labels).set(finished);
                m.duration.with_label_values(&labels).observe(
                    (manifest.finished_at - manifest.started_at).num_milliseconds() as f64 / 1000.0,
                );
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
                apply_retention(&svc, &plan).await;
                return;
            }
            Err(e) => {
                m.failures
                    .with_label_values(&[cluster, &plan.name, e.stage().as_str()])
                    .inc();
                let error = store::chain(&e);
                if abort.is_cancelled() {
                    tracing::warn!(plan = %plan.name, error, "Run aborted by shutdown.");
                    break;
                }
                if attempt < plan.retries {
                    tracing::warn!(plan = %plan.name, attempt = attempt + 1, retry_in = ?backoff, error, "Backup attempt failed; retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = abort.cancelled() => break,
                    }
                    backoff *= 2;
                } else {
                    tracing::error!(plan = %plan.name, attempts = attempt + 1, error, "Backup run failed.");
                }
            }
        }
    }
    m.runs
        .with_label_values(&[cluster, &plan.name, "failure"])
        .inc();
    m.last_attempt
        .with_label_values(&labels)
        .set(Utc::now().timestamp() as f64);
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
        }
        Err(e) => {
            svc.metrics
                .failures
                .with_label_values(&[labels[0], labels[1], "retention"])
                .inc();
            tracing::error!(plan = %plan.name, error = %e, "Retention failed; nothing more was deleted. It runs again after the next backup.");
        }
    }
}

/// Runs restore drills of the newest etcd backup on their schedule, on the leader only.
#[allow(clippy::too_many_arguments)]
async fn drill_loop(
    svc: Arc<Service>,
    schedule: crate::plan::Schedule,
    scheduler: JobScheduler,
    leading: watch::Receiver<Option<bool>>,
    stop: CancellationToken,
    abort: CancellationToken,
    running: Arc<Mutex<RunSlot>>,
) {
    let mut last_fire = Utc::now();
    loop {
        let Some(next) =
            schedule.next_after(last_fire.max(Utc::now() - chrono::Duration::seconds(1)))
        else {
            return;
        };
        let Ok(fired) = one_shot(&scheduler, next).await else {
            return;
        };
        tokio::select! {
            _ = fired => last_fire = next,
            _ = stop.cancelled() => return,
        }
        if *leading.borrow() != Some(true) {
            continue;
        }
        let mut slot = running.lock().expect("drill slot");
        if slot.is_running() {
            tracing::warn!("The previous restore drill is still running: this one is skipped.");
            continue;
        }
        let token = abort.child_token();
        slot.cancel = Some(token.clone());
        let svc = svc.clone();
        slot.handle = Some(tokio::spawn(async move {
            tokio::select! {
                _ = run_drill(svc) => {}
                // Dropping the drill kills its throwaway etcd and removes its directory.
                _ = token.cancelled() => tracing::warn!("Restore drill aborted by shutdown."),
            }
        }));
    }
}

async fn run_drill(svc: Arc<Service>) {
    let cluster = svc.cfg.cluster.as_str();
    let result = async {
        let identities = svc
            .cfg
            .drill
            .identity_file
            .as_deref()
            .map(crate::keys::Identities::load)
            .transpose()
            .map_err(|e| e.to_string())?
            .map(Arc::new);
        let bin_dir = crate::drill::find_bin_dir(svc.cfg.drill.etcd_bin_dir.as_deref())
            .map_err(|e| e.to_string())?;
        let manifest = svc
            .store
            .resolve(cluster, Kind::Etcd, "latest")
            .await
            .map_err(|e| e.to_string())?;
        crate::drill::run(&svc.store, &manifest, identities, &bin_dir)
            .await
            .map_err(|e| store::chain(&e))
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
        }
        Err(error) => {
            svc.metrics
                .drill_runs
                .with_label_values(&[cluster, "failure"])
                .inc();
            tracing::error!(error, "Restore drill failed.");
        }
    }
}
