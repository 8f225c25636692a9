//! Leader election on a coordination.k8s.io/v1 Lease, so that exactly one replica runs the
//! schedules. Like client-go, expiry is judged by how long this replica has seen the same
//! holder and renew time unchanged (its own clock), not by comparing timestamps across nodes.
//! Writes use the Lease's resourceVersion, so two replicas never both win a round.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::LeaderElection;

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaderElection,
    observed: Option<(Option<String>, Option<MicroTime>, Instant)>,
    leading_since_renew: Option<Instant>,
}

impl Elector {
    /// An elector for the configured Lease.
    pub fn new(client: kube::Client, cfg: LeaderElection) -> Elector {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
            leading_since_renew: None,
        }
    }

    /// Runs until `cancel`, publishing leadership on `leading`. On cancel a leader releases the
    /// Lease so a standby takes over at once.
    pub async fn run(mut self, leading: watch::Sender<bool>, cancel: CancellationToken) {
        loop {
            // A round may not outlast the renew deadline: a leader that cannot reach the API
            // server must step down before a standby may take over (after lease_duration).
            let deadline = self.renew_deadline();
            let is_leader = match tokio::time::timeout(deadline, self.round()).await {
                Ok(Ok(l)) => l,
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {deadline:?}"),
                    };
                    tracing::warn!(lease = %self.cfg.lease_name, namespace = %self.cfg.namespace, error, "Lease update failed.");
                    // Keep leading only while the last renewal is younger than the deadline.
                    self.leading_since_renew
                        .is_some_and(|t| t.elapsed() < deadline)
                }
            };
            if leading.send_if_modified(|l| std::mem::replace(l, is_leader) != is_leader) {
                if is_leader {
                    tracing::info!(identity = %self.cfg.identity, lease = %self.cfg.lease_name, "Became leader: running the schedules.");
                } else {
                    tracing::info!(identity = %self.cfg.identity, lease = %self.cfg.lease_name, "Standing by: another replica holds the lease.");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.renew_interval) => {}
                _ = cancel.cancelled() => break,
            }
        }
        if *leading.borrow() {
            let _ = leading.send(false);
            if let Err(e) = self.release().await {
                tracing::warn!(error = %e, "Could not release the lease; a standby takes over when it expires.");
            }
        }
    }

    /// How long a leader keeps leading without a successful renewal: one renew interval less
    /// than the lease, so it has stopped before any standby can see the lease expire.
    fn renew_deadline(&self) -> Duration {
        self.cfg
            .lease_duration
            .saturating_sub(self.cfg.renew_interval)
            .max(Duration::from_millis(500))
    }

    /// One try: create, renew or take over the Lease. Returns whether this replica leads.
    async fn round(&mut self) -> Result<bool, kube::Error> {
        let me = self.cfg.identity.clone();
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let duration_secs = self.cfg.lease_duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.cfg.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.lease_name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_deref() == Some(me.as_str()) {
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(duration_secs);
        } else {
            // Another holder: take over only once its lease went unrenewed for a full duration
            // as seen by us (or nobody holds it).
            let seen = (holder.clone(), spec.renew_time.clone());
            let unchanged_since = match &self.observed {
                Some((h, r, at)) if (h, r) == (&seen.0, &seen.1) => *at,
                _ => {
                    self.observed = Some((seen.0, seen.1, Instant::now()));
                    Instant::now()
                }
            };
            let their_duration = spec
                .lease_duration_seconds
                .map(|s| Duration::from_secs(s.max(1) as u64))
                .unwrap_or(self.cfg.lease_duration);
            if holder.is_some() && unchanged_since.elapsed() < their_duration {
                self.leading_since_renew = None;
                return Ok(false);
            }
            spec.holder_identity = Some(me);
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(duration_secs);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        let result = self
            .api
            .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
            .await;
        self.write(result)
    }

    fn write(&mut self, result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
        match result {
            Ok(_) => {
                self.leading_since_renew = Some(Instant::now());
                Ok(true)
            }
            // Someone else wrote first (409 on a stale resourceVersion or an existing Lease).
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.leading_since_renew = None;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn release(&mut self) -> Result<(), kube::Error> {
        let mut lease = self.api.get(&self.cfg.lease_name).await?;
        if let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.cfg.identity.as_str())
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            self.api
                .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
                .await?;
        }
        Ok(())
    }
}
