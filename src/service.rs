//! `lifeboat serve`: the long-running service. It serves /metrics, /healthz and /readyz, takes
//! part in leader election, and runs each job (a backup plan, the restore drills) on its
//! schedule through the [`runner`]: catch-up at the start of a term, never overlapping itself,
//! retries with backoff, retention after each backup, and a graceful stop on SIGTERM (a running
//! backup gets `server.shutdown_grace`, then its upload is aborted).
//!
//! - `runner`: the one loop for scheduled work (leadership, overlap, catch-up, retries);
//! - `jobs`: backup plans and drills as runner jobs, with their metrics;
//! - `timer`: fire times on the monotonic clock, picked from the injected wall clock.
//!
//! Everything `run` starts is tracked and stops through one chain of tokens, each stage a child
//! of the next, so a later stage also ends whatever an earlier one missed: scheduling, then the
//! runs (after the grace period), then the elector, then the HTTP server and the checks.

pub mod http;
mod jobs;
pub mod leader;
pub mod metrics;
pub mod runner;
pub mod timer;

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::manifest::Kind;
use crate::store::{self, Store};
use http::Readiness;
use leader::{Elector, Role, Term};
use metrics::Metrics;
use runner::Runner;
use timer::{SystemClock, WallClock};

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
    Kube(#[from] crate::kubernetes::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// What the jobs work with.
struct Service {
    cfg: Config,
    store: Store,
    metrics: Arc<Metrics>,
    clock: Arc<dyn WallClock>,
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
        clock: Arc::new(SystemClock),
    });
    let cfg = &svc.cfg;
    let listener = http::bind(cfg.server.listen)
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

    // The stages of a graceful stop, each a child of the next (the runner's scheduling token is
    // a child of `abort_runs`).
    let stop_http = CancellationToken::new();
    let stop_elector = stop_http.child_token();
    let abort_runs = stop_elector.child_token();
    let tasks = TaskTracker::new();

    let (ready_tx, ready_rx) = watch::channel(Readiness {
        store: None,
        role_known: false,
    });
    tasks.spawn(http::serve(
        listener,
        Arc::new(http::State {
            metrics: svc.metrics.clone(),
            readiness: ready_rx,
        }),
        stop_http.clone(),
    ));
    tasks.spawn(check_store(
        svc.clone(),
        ready_tx.clone(),
        stop_http.clone(),
    ));

    // Leadership: without election, one term that lasts until the elector's stage.
    let (role_tx, role_rx) = watch::channel(Role::Undecided);
    let (elector, _single_term) = match &cfg.leader_election {
        None => {
            role_tx.send_replace(Role::Leader(Term::new(stop_elector.child_token())));
            (None, Some(role_tx))
        }
        Some(le) => {
            let client = crate::kubernetes::client(&cfg.kubernetes).await?;
            let elector = Elector::new(client, le.clone()).run(role_tx, stop_elector.clone());
            (Some(tasks.spawn(elector)), None)
        }
    };
    tasks.spawn(report_role(
        svc.clone(),
        role_rx.clone(),
        ready_tx,
        stop_http.clone(),
    ));

    // A run may go on for half the margin between the end of a term and the earliest takeover
    // by a standby.
    let stop_after_term = cfg.leader_election.as_ref().map(|le| le.renew_interval / 2);
    let runner = Runner::new(
        svc.clock.clone(),
        role_rx,
        abort_runs.clone(),
        stop_after_term,
    );
    for plan in &cfg.plans {
        runner.spawn(jobs::backup(&svc, plan.clone()).await);
    }
    if let Some(schedule) = cfg.drill.schedule.clone() {
        runner.spawn(jobs::drill(&svc, schedule));
    }

    shutdown.cancelled().await;
    tracing::info!(grace = ?cfg.server.shutdown_grace, "Shutting down: no new runs; a running backup may finish within the grace period.");
    runner.shutdown(cfg.server.shutdown_grace).await;
    abort_runs.cancel();
    stop_elector.cancel();
    if let Some(elector) = elector {
        let _ = elector.await;
    }
    stop_http.cancel();
    tasks.close();
    tasks.wait().await;
    tracing::info!("Stopped.");
    Ok(())
}

/// Publishes the role: the leader gauge, and whether /readyz knows it yet.
async fn report_role(
    svc: Arc<Service>,
    mut role: watch::Receiver<Role>,
    ready: watch::Sender<Readiness>,
    stop: CancellationToken,
) {
    loop {
        let current = role.borrow_and_update().clone();
        svc.metrics
            .leader
            .with_label_values(&[&svc.cfg.cluster])
            .set(i64::from(current.term().is_some()));
        ready.send_modify(|r| r.role_known = !matches!(current, Role::Undecided));
        tokio::select! {
            changed = role.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
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
