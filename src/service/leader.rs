//! Leader election on a coordination.k8s.io/v1 Lease, so that exactly one replica runs the
//! schedules. Like client-go, expiry is judged by how long this replica has seen the same Lease
//! record unchanged (its own monotonic clock), never by comparing timestamps across nodes.
//! Writes use the Lease's resourceVersion, so two replicas never both win a round.
//!
//! Why two replicas never lead at once, even with a slow API server:
//! - a leader's term is valid until the instant its last successful renewal was *sent*, plus
//!   the renew deadline (`lease_duration - renew_interval`, at most half the lease); a timer on
//!   that instant ends the term, whatever the request in flight is doing;
//! - a standby starts its expiry clock when it first *receives* a record, which the leader
//!   necessarily sent earlier, and takes over only after `lease_duration` on that clock.
//!
//! So a leader's term ends at least one renew interval before any standby may acquire the
//! Lease; that margin is the time the leader has to stop its runs (see [`Term`]).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::LeaderElection;

/// What this replica may do, as published by the elector.
#[derive(Debug, Clone)]
pub enum Role {
    /// No round has finished yet.
    Undecided,
    /// Another replica holds the Lease (or it could not be reached): run nothing.
    Standby,
    /// This replica leads for the given term.
    Leader(Term),
}

impl Role {
    /// The current term, if this replica leads.
    pub fn term(&self) -> Option<&Term> {
        match self {
            Role::Leader(t) if !t.is_over() => Some(t),
            _ => None,
        }
    }
}

/// One uninterrupted stretch of leadership. Its token is cancelled the moment the term ends
/// (renew deadline passed, Lease lost, or shutdown), before any standby can acquire the Lease:
/// runs started in the term take a child of it, so losing the Lease aborts them directly,
/// without waiting for anyone to notice a state change.
#[derive(Debug, Clone)]
pub struct Term {
    ends: CancellationToken,
}

impl Term {
    /// A term that lasts until `ends` is cancelled (for a service without leader election, the
    /// whole run).
    pub fn new(ends: CancellationToken) -> Term {
        Term { ends }
    }

    /// Whether the term has ended.
    pub fn is_over(&self) -> bool {
        self.ends.is_cancelled()
    }

    /// Completes when the term ends.
    pub async fn over(&self) {
        self.ends.cancelled().await
    }

    /// A token cancelled when the term ends (or when cancelled itself).
    pub fn child_token(&self) -> CancellationToken {
        self.ends.child_token()
    }
}

/// How long a leader's term lasts after it sent its last successful renewal: one renew
/// interval less than the lease (config validation keeps renew_interval at most half of it),
/// so the term is over at least one renew interval before a standby can see the lease expire.
/// `lease_seconds` is the duration written into the Lease, which is what standbys wait for.
pub fn renew_deadline(lease_seconds: i32, renew_interval: Duration) -> Duration {
    let lease = Duration::from_secs(lease_seconds.max(1) as u64);
    lease
        .saturating_sub(renew_interval)
        .max(lease / 2)
        .min(lease.saturating_sub(Duration::from_millis(100)))
}

/// A Lease record as another replica wrote it: a change of any part restarts the expiry clock.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    resource_version: Option<String>,
}

/// The outcome of one round.
enum Outcome {
    /// This replica holds the Lease: the write that says so was sent at `sent_at`.
    Holding { sent_at: Instant },
    /// Another replica holds it.
    Standby,
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaderElection,
    /// Another holder's record and when this replica first received it.
    observed: Option<(Record, Instant)>,
    /// Our Lease as last written, so a renewal is one PUT (a GET only after a conflict).
    own: Option<Lease>,
}

impl Elector {
    /// An elector for the configured Lease.
    pub fn new(client: kube::Client, cfg: LeaderElection) -> Elector {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
            own: None,
        }
    }

    fn lease_seconds(&self) -> i32 {
        self.cfg.lease_duration.as_secs().max(1) as i32
    }

    /// Runs until `cancel`, publishing the role on `role`. On cancel a leader ends its term and
    /// releases the Lease so a standby takes over at once.
    pub async fn run(mut self, role: watch::Sender<Role>, cancel: CancellationToken) {
        let deadline = renew_deadline(self.lease_seconds(), self.cfg.renew_interval);
        // The current term and the instant it must end by.
        let mut term: Option<(CancellationToken, Instant)> = None;
        let lease = self.cfg.lease_name.clone();
        let identity = self.cfg.identity.clone();
        let end_term = |term: &mut Option<(CancellationToken, Instant)>, why: &str| {
            if let Some((token, valid_until)) = term.take() {
                token.cancel();
                role.send_replace(Role::Standby);
                let since_renewal_sent =
                    (Instant::now() + deadline).saturating_duration_since(valid_until);
                tracing::warn!(identity = %identity, lease = %lease, why, ?since_renewal_sent, "Leadership lost: the schedules stopped and running backups were aborted.");
            }
        };
        'rounds: loop {
            let started = Instant::now();
            let result = {
                let round = tokio::time::timeout(deadline, self.round());
                tokio::pin!(round);
                loop {
                    let valid_until = term.as_ref().map(|(_, until)| *until);
                    tokio::select! {
                        r = &mut round => break r,
                        // A timer, not a check after the round: the term ends on time even while
                        // a request to a slow API server is still in flight.
                        _ = sleep_until_opt(valid_until) => end_term(
                            &mut term,
                            "no renewal succeeded within the renew deadline (counted from when it was sent)",
                        ),
                        _ = cancel.cancelled() => break 'rounds,
                    }
                }
            };
            match result {
                Ok(Ok(Outcome::Holding { sent_at })) => {
                    let until = sent_at + deadline;
                    if until <= Instant::now() {
                        // The answer came too late to lead on: try again soon.
                        end_term(
                            &mut term,
                            "the renewal was answered after its renew deadline",
                        );
                    } else if let Some((_, valid_until)) = &mut term {
                        *valid_until = until;
                    } else {
                        let token = CancellationToken::new();
                        role.send_replace(Role::Leader(Term::new(token.clone())));
                        term = Some((token, until));
                        tracing::info!(identity = %self.cfg.identity, lease = %self.cfg.lease_name, "Became leader: running the schedules.");
                    }
                }
                Ok(Ok(Outcome::Standby)) => {
                    end_term(&mut term, "another replica holds the lease");
                    if !matches!(*role.borrow(), Role::Standby) {
                        role.send_replace(Role::Standby);
                        tracing::info!(identity = %self.cfg.identity, lease = %self.cfg.lease_name, "Standing by: another replica holds the lease.");
                    }
                }
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => crate::error::chain(&e),
                        _ => format!("no answer within {deadline:?}"),
                    };
                    tracing::warn!(lease = %self.cfg.lease_name, namespace = %self.cfg.namespace, error, "Lease update failed.");
                    if matches!(*role.borrow(), Role::Undecided) {
                        role.send_replace(Role::Standby);
                    }
                    // A leader keeps its term until the timer above ends it.
                }
            }
            let next = (started + self.cfg.renew_interval).max(Instant::now());
            loop {
                let valid_until = term.as_ref().map(|(_, until)| *until);
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => break,
                    _ = sleep_until_opt(valid_until) => end_term(
                        &mut term,
                        "no renewal succeeded within the renew deadline (counted from when it was sent)",
                    ),
                    _ = cancel.cancelled() => break 'rounds,
                }
            }
        }
        if let Some((token, _)) = term.take() {
            token.cancel();
            role.send_replace(Role::Standby);
            if let Err(e) = self.release().await {
                tracing::warn!(error = %crate::error::chain(&e), "Could not release the lease; a standby takes over when it expires.");
            }
        }
    }

    /// One try: create, renew or take over the Lease.
    async fn round(&mut self) -> Result<Outcome, kube::Error> {
        let me = self.cfg.identity.clone();
        let duration_secs = self.lease_seconds();
        let now = || MicroTime(k8s_openapi::jiff::Timestamp::now());
        // Fast path: renew the Lease as we last wrote it; a conflict means someone else wrote.
        if let Some(mut lease) = self.own.take() {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(now());
            spec.lease_duration_seconds = Some(duration_secs);
            let sent_at = Instant::now();
            match self
                .api
                .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
                .await
            {
                Ok(written) => {
                    self.own = Some(written);
                    return Ok(Outcome::Holding { sent_at });
                }
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
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
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            let sent_at = Instant::now();
            let result = self.api.create(&PostParams::default(), &lease).await;
            return self.written(result, sent_at);
        };
        // Received now: a standby's expiry clock for this record starts here, never earlier.
        let received_at = Instant::now();
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_deref() == Some(me.as_str()) {
            spec.renew_time = Some(now());
            spec.lease_duration_seconds = Some(duration_secs);
        } else {
            // Another holder: take over only once its record went unchanged for a full lease
            // duration as seen by us (or nobody holds it).
            let seen = Record {
                holder: holder.clone(),
                renew_time: spec.renew_time.clone(),
                resource_version: lease.metadata.resource_version.clone(),
            };
            let unchanged_since = match &self.observed {
                Some((record, at)) if *record == seen => *at,
                _ => {
                    self.observed = Some((seen, received_at));
                    received_at
                }
            };
            let their_duration = spec
                .lease_duration_seconds
                .map(|s| Duration::from_secs(s.max(1) as u64))
                .unwrap_or(self.cfg.lease_duration);
            if holder.is_some() && unchanged_since.elapsed() < their_duration {
                return Ok(Outcome::Standby);
            }
            spec.holder_identity = Some(me);
            spec.acquire_time = Some(now());
            spec.renew_time = Some(now());
            spec.lease_duration_seconds = Some(duration_secs);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        let sent_at = Instant::now();
        let result = self
            .api
            .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
            .await;
        self.written(result, sent_at)
    }

    fn written(
        &mut self,
        result: Result<Lease, kube::Error>,
        sent_at: Instant,
    ) -> Result<Outcome, kube::Error> {
        match result {
            Ok(lease) => {
                self.own = Some(lease);
                self.observed = None;
                Ok(Outcome::Holding { sent_at })
            }
            // Someone else wrote first (409 on a stale resourceVersion or an existing Lease).
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Outcome::Standby),
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

/// Sleeps until `at`, or forever without one.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_renew_deadline_leaves_a_renew_interval_before_the_lease_expires() {
        assert_eq!(
            renew_deadline(15, Duration::from_secs(5)),
            Duration::from_secs(10)
        );
        assert_eq!(
            renew_deadline(3, Duration::from_secs(1)),
            Duration::from_secs(2)
        );
        // Never more than the lease, never less than half of it.
        assert_eq!(
            renew_deadline(1, Duration::from_millis(10)),
            Duration::from_millis(900)
        );
        assert_eq!(
            renew_deadline(10, Duration::from_secs(8)),
            Duration::from_secs(5)
        );
    }
}
