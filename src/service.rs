//! `lifeboat serve`: the long-running service. It serves /metrics, /healthz and /readyz, takes
//! part in leader election, and runs each job (a backup plan, the restore drills) on its
//! schedule: catch-up at start, never overlapping itself, retries with backoff, retention after
//! each success, and a graceful stop on SIGTERM (a running backup gets `server.shutdown_grace`,
//! then its upload is aborted).
//!
//! Timing: `timer::FireTimer` waits on the monotonic clock for fire times that `plan::Schedule`
//! picks from the wall clock (see `timer` for why tokio-cron-scheduler is not used). Leadership:
//! every run belongs to a leadership term (`leader::Term`) and takes a child of its token, so
//! the end of the term aborts the run at once, before a standby can take the Lease.

pub mod timer;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Plan};
use crate::leader::{Elector, Role, Term};
use crate::manifest::Kind;
use crate::metrics::Metrics;
use crate::plan::{FireDecision, Schedule};
use crate::server::{self, Readiness};
use crate::store::{self, Store};
use timer::{FireTimer, SystemClock, WallClock};

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
    #[error(transparent)]
    Kube(#[from] crate::kube::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
}

struct Service {
    cfg: Config,
    store: Store,
    metrics: Arc<Metrics>,
    clock: Arc<dyn WallClock>,
    /// How long a run may go on after its leadership term ended before it is dropped: half the
    /// margin between the end of a term and the earliest takeover by a standby.
    stop_after_term: Option<Duration>,
}

/// Something the service runs on a schedule, on the leader only.
#[derive(Clone)]
enum Job {
    /// A backup plan: caught up when missed, retried, followed by retention.
    Backup(Plan),
    /// Restore drills of the newest etcd backup.
    Drill(Schedule),
}

impl Job {
    fn name(&self) -> &str {
        match self {
            Job::Backup(plan) => &plan.name,
            Job::Drill(_) => "drill",
        }
    }

    fn schedule(&self) -> &Schedule {
        match self {
            Job::Backup(plan) => &plan.schedule,
            Job::Drill(schedule) => schedule,
        }
    }
}

/// Runs the service until `shutdown` is cancelled; then stops gracefully and returns.
pub async fn run(
    cfg: Config,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let store = Store::open(&cfg.storage)?;
    let stop_after_term = cfg.leader_election.as_ref().map(|le| le.renew_interval / 2);
    let svc = Arc::new(Service {
        cfg,
        store,
        metrics,
        clock: Arc::new(SystemClock),
        stop_after_term,
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
        role_known: false,
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

    // Leadership: without election, one term for the whole run.
    let (role_tx, role_rx) = watch::channel(Role::Undecided);
    let (elector, _single_term) = match &cfg.leader_election {
        None => {
            role_tx.send_replace(Role::Leader(Term::new(CancellationToken::new())));
            (None, Some(role_tx))
        }
        Some(le) => {
            let client = crate::kube::client(&cfg.kubernetes).await?;
            let elect_cancel = CancellationToken::new();
            let handle =
                tokio::spawn(Elector::new(client, le.clone()).run(role_tx, elect_cancel.clone()));
            (Some((handle, elect_cancel)), None)
        }
    };
    {
        let metrics = svc.metrics.clone();
        let cluster = cfg.cluster.clone();
        let mut rx = role_rx.clone();
        tokio::spawn(async move {
            loop {
                let role = rx.borrow_and_update().clone();
                metrics
                    .leader
                    .with_label_values(&[&cluster])
                    .set(i64::from(role.term().is_some()));
                ready_tx.send_modify(|r| r.role_known = !matches!(role, Role::Undecided));
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    let stop_scheduling = CancellationToken::new();
    let mut loops = Vec::new();
    let mut slots: Vec<Arc<Mutex<RunSlot>>> = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    for plan in &cfg.plans {
        svc.metrics.init_plan(&cfg.cluster, &plan.name);
        init_from_store(&svc, plan).await;
        jobs.push(Job::Backup(plan.clone()));
    }
    if let Some(schedule) = cfg.drill.schedule.clone() {
        for result in ["success", "failure"] {
            svc.metrics
                .drill_runs
                .with_label_values(&[&cfg.cluster, result]);
        }
        jobs.push(Job::Drill(schedule));
    }
    for job in jobs {
        let slot = Arc::new(Mutex::new(RunSlot::default()));
        slots.push(slot.clone());
        loops.push(tokio::spawn(job_loop(
            svc.clone(),
            job,
            role_rx.clone(),
            stop_scheduling.clone(),
            slot,
        )));
    }

    shutdown.cancelled().await;
    tracing::info!(grace = ?cfg.server.shutdown_grace, "Shutting down: no new runs; a running backup may finish within the grace period.");
    stop_scheduling.cancel();
    for l in loops {
        let _ = l.await;
    }
    let (pending, tokens): (Vec<JoinHandle<()>>, Vec<Option<CancellationToken>>) = slots
        .iter()
        .filter_map(|r| {
            let mut slot = r.lock().expect("run slot");
            slot.handle.take().map(|h| (h, slot.cancel.take()))
        })
        .unzip();
    let all = futures::future::join_all(pending);
    tokio::pin!(all);
    if tokio::time::timeout(cfg.server.shutdown_grace, &mut all)
        .await
        .is_err()
    {
        tracing::warn!(
            "The running backup did not finish within the grace period: aborting it (its upload is aborted, no manifest is written)."
        );
        for token in tokens.into_iter().flatten() {
            token.cancel();
        }
        all.await;
    }
    if let Some((handle, elect_cancel)) = elector {
        elect_cancel.cancel();
        let _ = handle.await;
    }
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
            .map_err(|e| crate::error::chain(&e));
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

/// Runs one job on its schedule while this replica leads: a backup plan is caught up when a
/// term begins and a scheduled run was missed; a fire time while the previous run still goes is
/// skipped (and counted); the end of a term aborts the run through its token.
async fn job_loop(
    svc: Arc<Service>,
    job: Job,
    mut role: watch::Receiver<Role>,
    stop: CancellationToken,
    slot: Arc<Mutex<RunSlot>>,
) {
    let mut timer = FireTimer::new(job.schedule().clone(), svc.clock.clone());
    let mut was_leading = false;
    loop {
        let term = role.borrow_and_update().term().cloned();
        if let (Some(term), false, Job::Backup(plan)) = (&term, was_leading, &job) {
            match newest_complete(&svc, plan).await {
                Ok(newest)
                    if crate::plan::catch_up_due(&plan.schedule, newest, svc.clock.now()) =>
                {
                    start_run(
                        &svc,
                        &job,
                        term,
                        &slot,
                        "catch-up: the newest complete backup is older than the schedule allows",
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(plan = %plan.name, error = %crate::error::chain(&e), "Cannot list the store for the catch-up check; waiting for the schedule.")
                }
            }
        }
        was_leading = term.is_some();
        tokio::select! {
            fire = timer.tick() => {
                let Some(fire) = fire else {
                    tracing::error!(job = job.name(), "The schedule has no future run: this job stops.");
                    return;
                };
                if let Job::Backup(plan) = &job {
                    let labels = [svc.cfg.cluster.as_str(), plan.name.as_str()];
                    svc.metrics.interval.with_label_values(&labels).set(plan.schedule.expected_interval(svc.clock.now()).as_secs_f64());
                }
                let term = role.borrow().term().cloned();
                match term {
                    Some(term) => start_run(&svc, &job, &term, &slot, "scheduled"),
                    None => tracing::debug!(job = job.name(), %fire, "Standby: the leader runs this one."),
                }
            }
            // A lost term needs nothing here: its token has already aborted the run.
            changed = role.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// Starts a run of `job` in `term`, unless the previous run still goes.
fn start_run(svc: &Arc<Service>, job: &Job, term: &Term, slot: &Mutex<RunSlot>, why: &str) {
    let mut slot = slot.lock().expect("run slot");
    if crate::plan::on_fire(slot.is_running()) == FireDecision::SkipOverlap {
        if let Job::Backup(plan) = job {
            svc.metrics
                .skipped_overlap
                .with_label_values(&[&svc.cfg.cluster, &plan.name])
                .inc();
        }
        tracing::warn!(
            job = job.name(),
            "The previous run is still going: this scheduled run is skipped."
        );
        return;
    }
    if term.is_over() {
        return;
    }
    tracing::info!(job = job.name(), why, "Run starting.");
    let token = term.child_token();
    slot.cancel = Some(token.clone());
    let run: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = match job {
        Job::Backup(plan) => Box::pin(run_plan(svc.clone(), plan.clone(), token, term.clone())),
        Job::Drill(_) => {
            let svc = svc.clone();
            Box::pin(async move {
                tokio::select! {
                    _ = run_drill(svc) => {}
                    // Dropping the drill kills its throwaway etcd and removes its directory.
                    _ = token.cancelled() => tracing::warn!("Restore drill aborted (shutdown or leadership lost)."),
                }
            })
        }
    };
    slot.handle = Some(tokio::spawn(within_term(
        run,
        term.clone(),
        svc.stop_after_term,
    )));
}

/// Runs `run`, but drops it if it is still going `stop_after` after `term` ended: the run has
/// been told to stop (its token is a child of the term's), and one that does not stop in time
/// must not write anything (a manifest) once a standby may have taken over.
async fn within_term(run: impl Future<Output = ()>, term: Term, stop_after: Option<Duration>) {
    let overdue = async {
        let Some(stop_after) = stop_after else {
            return std::future::pending().await;
        };
        term.over().await;
        tokio::time::sleep(stop_after).await;
    };
    tokio::select! {
        _ = run => {}
        _ = overdue => tracing::error!(stop_after = ?stop_after, "A run did not stop after leadership was lost: dropped it so it writes nothing more (an S3 multipart upload it leaves is removed by the bucket's AbortIncompleteMultipartUpload rule)."),
    }
}

/// One run of a plan: the backup with retries and backoff, then retention, with metrics.
async fn run_plan(svc: Arc<Service>, plan: Plan, abort: CancellationToken, term: Term) {
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
                // A leader that lost its term leaves retention to the new one.
                if !abort.is_cancelled() {
                    apply_retention(&svc, &plan).await;
                }
                return;
            }
            Err(e) => {
                m.failures
                    .with_label_values(&[cluster, &plan.name, e.stage().as_str()])
                    .inc();
                let error = crate::error::chain(&e);
                if abort.is_cancelled() {
                    let why = if term.is_over() {
                        "leadership lost"
                    } else {
                        "shutdown"
                    };
                    tracing::warn!(plan = %plan.name, error, why, "Run aborted.");
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
