//! The one loop that runs scheduled work (backup plans, restore drills) on the leader: it waits
//! for fire times ([`FireTimer`]), starts a run only while a leadership term is held, skips a fire
//! time while the previous run still goes (`plan::on_fire`), catches up at the start of a term
//! when a fire time was missed (`plan::catch_up_due`), retries a failed attempt with backoff, and
//! stops gracefully. It knows nothing of the config, the store or the metrics: a [`Job`] brings
//! them in its closures and its [`Observer`], so the loop is tested with fake jobs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::timer::{FireTimer, WallClock};
use crate::policy::schedule::{FireDecision, Schedule};
use crate::service::leader::{Role, Term};

/// How long a job waits before asking its timer again after the timer found no next fire time.
pub const TIMER_RETRY: Duration = Duration::from_secs(60);

/// A boxed future, as the closures of a [`Job`] return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One attempt of a run: given the token that aborts it, says how it went.
pub type Attempt = Arc<dyn Fn(CancellationToken) -> BoxFuture<Outcome> + Send + Sync>;

/// When the job last succeeded (for a backup plan, the snapshot time of the newest complete
/// backup), `None` if never; an error is a sentence saying what could not be read.
pub type LastSuccess =
    Arc<dyn Fn() -> BoxFuture<Result<Option<DateTime<Utc>>, String>> + Send + Sync>;

/// Something run on a schedule, on the leader only.
#[derive(Clone)]
pub struct Job {
    /// The job's name in logs (a plan's name, or `drill`).
    pub name: String,
    /// When it runs.
    pub schedule: Schedule,
    /// How a failed attempt is retried.
    pub retry: Retry,
    /// One attempt. It reports its own results (metrics of a success); the loop retries a failure.
    pub attempt: Attempt,
    /// For a job that is caught up when a term begins and a fire time passed since its last
    /// success; `None` for one that only runs at its fire times.
    pub last_success: Option<LastSuccess>,
    /// Told what the loop decided, for metrics.
    pub observer: Arc<dyn Observer>,
}

/// How a failed attempt is retried: `retries` more attempts, the first after `backoff`, each
/// later one after twice the previous wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts after the first (0: none).
    pub retries: u32,
    /// Wait before the first retry (doubles).
    pub backoff: Duration,
}

impl Retry {
    /// One attempt, no retry.
    pub const NONE: Retry = Retry {
        retries: 0,
        backoff: Duration::ZERO,
    };
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Finished: nothing to retry (a success, or a partial result that a retry would not mend;
    /// the attempt has reported it).
    Done,
    /// Failed: retried while retries remain.
    Failed(Failure),
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Where it failed (a backup's `error::Stage`, as in the failures metric).
    pub stage: &'static str,
    /// What failed, as the on-call engineer reads it.
    pub error: String,
}

/// What the loop tells a job's metrics. Every method does nothing unless implemented.
pub trait Observer: Send + Sync {
    /// A fire time arrived (on a standby too).
    fn fired(&self, _fire: DateTime<Utc>) {}
    /// A fire time was skipped because the previous run still goes.
    fn skipped_overlap(&self) {}
    /// An attempt failed (retried or not).
    fn attempt_failed(&self, _failure: &Failure) {}
    /// The run failed: its last attempt failed and no retry remains.
    fn run_failed(&self, _failure: &Failure) {}
    /// The run was aborted (leadership lost, or shutdown) after `failure`.
    fn run_aborted(&self, _failure: &Failure) {}
}

/// The job loops and their runs: starts them, and stops them in order.
pub struct Runner {
    clock: Arc<dyn WallClock>,
    role: watch::Receiver<Role>,
    /// Cancelled first on shutdown: no new runs.
    stop_scheduling: CancellationToken,
    /// Cancelled once the grace period is over: aborts the runs still going.
    abort_runs: CancellationToken,
    loops: TaskTracker,
    runs: TaskTracker,
    /// How long a run may go on after its term ended before it is dropped (see `within_term`).
    stop_after_term: Option<Duration>,
}

impl Runner {
    /// A runner whose loops read the wall time from `clock` and lead while `role` says so.
    /// Cancelling `abort_runs` aborts every run and stops every loop (its child token stops
    /// the scheduling); [`Runner::shutdown`] does it in order.
    pub fn new(
        clock: Arc<dyn WallClock>,
        role: watch::Receiver<Role>,
        abort_runs: CancellationToken,
        stop_after_term: Option<Duration>,
    ) -> Runner {
        Runner {
            clock,
            role,
            stop_scheduling: abort_runs.child_token(),
            abort_runs,
            loops: TaskTracker::new(),
            runs: TaskTracker::new(),
            stop_after_term,
        }
    }

    /// Starts the loop of `job`.
    pub fn spawn(&self, job: Job) {
        let job_loop = JobLoop {
            job: Arc::new(job),
            clock: self.clock.clone(),
            role: self.role.clone(),
            stop: self.stop_scheduling.clone(),
            abort: self.abort_runs.clone(),
            runs: self.runs.clone(),
            stop_after_term: self.stop_after_term,
            running: None,
        };
        self.loops.spawn(job_loop.run());
    }

    /// Stops gracefully: no new runs; a running one gets `grace` to finish, then is aborted
    /// through its token and awaited.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop_scheduling.cancel();
        self.loops.close();
        self.loops.wait().await;
        self.runs.close();
        if tokio::time::timeout(grace, self.runs.wait()).await.is_err() {
            tracing::warn!(
                ?grace,
                "The running job did not finish within the grace period: aborting it (a backup's upload is aborted, no manifest is written)."
            );
            self.abort_runs.cancel();
            self.runs.wait().await;
        }
    }
}

/// The loop of one job.
struct JobLoop {
    job: Arc<Job>,
    clock: Arc<dyn WallClock>,
    role: watch::Receiver<Role>,
    stop: CancellationToken,
    abort: CancellationToken,
    runs: TaskTracker,
    stop_after_term: Option<Duration>,
    /// The job's current (or last) run.
    running: Option<JoinHandle<()>>,
}

impl JobLoop {
    async fn run(mut self) {
        let mut timer = FireTimer::new(self.job.schedule.clone(), self.clock.clone());
        let mut was_leading = false;
        loop {
            let term = self.role.borrow_and_update().term().cloned();
            if let (Some(term), false) = (&term, was_leading) {
                self.catch_up(term).await;
            }
            was_leading = term.is_some();
            tokio::select! {
                fire = next_fire(&mut timer, &self.job.name) => {
                    self.job.observer.fired(fire);
                    let term = self.role.borrow().term().cloned();
                    match term {
                        Some(term) => self.start(&term, "scheduled"),
                        None => tracing::debug!(job = %self.job.name, %fire, "Standby: the leader runs this one."),
                    }
                }
                // A lost term needs nothing here: its token has already aborted the run.
                changed = self.role.changed() => if changed.is_err() { return },
                _ = self.stop.cancelled() => return,
            }
        }
    }

    /// At the start of `term`: runs the job now if a fire time passed since its last success.
    async fn catch_up(&mut self, term: &Term) {
        let Some(last_success) = &self.job.last_success else {
            return;
        };
        match last_success().await {
            Ok(last)
                if crate::policy::schedule::catch_up_due(
                    &self.job.schedule,
                    last,
                    self.clock.now(),
                ) =>
            {
                self.start(term, "catch-up: a fire time passed since the last success")
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(job = %self.job.name, error, "Cannot read the last success for the catch-up check; waiting for the schedule.")
            }
        }
    }

    /// Starts a run in `term`, unless the previous run still goes.
    fn start(&mut self, term: &Term, why: &str) {
        let busy = self.running.as_ref().is_some_and(|h| !h.is_finished());
        if crate::policy::schedule::on_fire(busy) == FireDecision::SkipOverlap {
            self.job.observer.skipped_overlap();
            tracing::warn!(
                job = %self.job.name,
                "The previous run is still going: this scheduled run is skipped."
            );
            return;
        }
        if term.is_over() || self.stop.is_cancelled() {
            return;
        }
        tracing::info!(job = %self.job.name, why, "Run starting.");
        let run = run(self.job.clone(), term.clone(), self.abort.clone());
        self.running = Some(
            self.runs
                .spawn(within_term(run, term.clone(), self.stop_after_term)),
        );
    }
}

/// The next fire time of `timer`. A timer that finds none is asked again every [`TIMER_RETRY`],
/// with an error logged each time: the job never ends silently.
async fn next_fire(timer: &mut FireTimer, job: &str) -> DateTime<Utc> {
    loop {
        if let Some(fire) = timer.tick().await {
            return fire;
        }
        tracing::error!(
            job,
            retry_in = ?TIMER_RETRY,
            "The schedule has no next fire time after the wall clock's now: check the system clock; asking again."
        );
        tokio::time::sleep(TIMER_RETRY).await;
    }
}

/// One run of `job` in `term`: attempts with backoff until one does not fail or no retry
/// remains. The run's token is a child of the term's, so the end of the term aborts it;
/// cancelling `abort` (shutdown, after the grace period) does too, and the run is awaited.
async fn run(job: Arc<Job>, term: Term, abort: CancellationToken) {
    let token = term.child_token();
    let attempts = attempts(&job, &term, token.clone());
    tokio::pin!(attempts);
    tokio::select! {
        _ = &mut attempts => {}
        _ = abort.cancelled() => {
            token.cancel();
            attempts.await;
        }
    }
}

async fn attempts(job: &Job, term: &Term, token: CancellationToken) {
    let mut backoff = job.retry.backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match (job.attempt)(token.clone()).await {
            Outcome::Done => return,
            Outcome::Failed(failure) => failure,
        };
        job.observer.attempt_failed(&failure);
        let error = failure.error.as_str();
        if token.is_cancelled() {
            aborted(job, term, &failure);
            return;
        }
        if attempt > job.retry.retries {
            tracing::error!(job = %job.name, attempts = attempt, error, "Run failed.");
            job.observer.run_failed(&failure);
            return;
        }
        tracing::warn!(job = %job.name, attempt, retry_in = ?backoff, error, "Attempt failed; retrying.");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = token.cancelled() => {
                aborted(job, term, &failure);
                return;
            }
        }
        backoff = backoff.saturating_mul(2);
    }
}

fn aborted(job: &Job, term: &Term, failure: &Failure) {
    let why = if term.is_over() {
        "leadership lost"
    } else {
        "shutdown"
    };
    tracing::warn!(job = %job.name, error = failure.error, why, "Run aborted.");
    job.observer.run_aborted(failure);
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::{Instant, sleep};

    use super::*;
    use crate::service::timer::test_clock::SteppedClock;

    /// What a fake job and its observer saw.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Event {
        Started,
        Finished,
        Cancelled,
        Skipped,
        AttemptFailed,
        RunFailed,
        RunAborted,
    }

    /// The events of one fake job, each at its whole second since the test began.
    struct Recorder {
        start: Instant,
        events: Mutex<Vec<(u64, Event)>>,
    }

    impl Recorder {
        fn new() -> Arc<Recorder> {
            Arc::new(Recorder {
                start: Instant::now(),
                events: Mutex::new(Vec::new()),
            })
        }

        fn record(&self, event: Event) {
            let at = self.start.elapsed();
            assert_eq!(at.subsec_nanos(), 0, "{event:?} at {at:?}");
            self.events.lock().unwrap().push((at.as_secs(), event));
        }

        fn events(&self) -> Vec<(u64, Event)> {
            self.events.lock().unwrap().clone()
        }

        fn starts(&self) -> Vec<u64> {
            let events = self.events();
            events
                .iter()
                .filter(|(_, e)| *e == Event::Started)
                .map(|(at, _)| *at)
                .collect()
        }
    }

    impl Observer for Recorder {
        fn skipped_overlap(&self) {
            self.record(Event::Skipped);
        }
        fn attempt_failed(&self, failure: &Failure) {
            assert_eq!(failure.stage, "fake");
            self.record(Event::AttemptFailed);
        }
        fn run_failed(&self, _failure: &Failure) {
            self.record(Event::RunFailed);
        }
        fn run_aborted(&self, _failure: &Failure) {
            self.record(Event::RunAborted);
        }
    }

    /// A fake job: each attempt takes `length` (or until its token is cancelled), then
    /// succeeds or, with `fails`, fails.
    struct Fake {
        schedule: &'static str,
        length: Duration,
        fails: bool,
        retry: Retry,
        /// `Some(last success)` for a job that is caught up.
        last_success: Option<Option<&'static str>>,
    }

    impl Fake {
        fn on(schedule: &'static str, length: Duration) -> Fake {
            Fake {
                schedule,
                length,
                fails: false,
                retry: Retry::NONE,
                last_success: None,
            }
        }

        /// A job that never fires during a test but is caught up at the start of a term.
        fn caught_up(length: Duration) -> Fake {
            Fake {
                last_success: Some(None),
                ..Fake::on("@yearly", length)
            }
        }

        fn job(self, recorder: &Arc<Recorder>) -> Job {
            let (length, fails) = (self.length, self.fails);
            let rec = recorder.clone();
            let attempt: Attempt = Arc::new(move |token: CancellationToken| {
                let rec = rec.clone();
                Box::pin(async move {
                    rec.record(Event::Started);
                    tokio::select! {
                        _ = sleep(length) => {}
                        _ = token.cancelled() => {
                            rec.record(Event::Cancelled);
                            return Outcome::Failed(Failure { stage: "fake", error: "cancelled".into() });
                        }
                    }
                    if fails {
                        Outcome::Failed(Failure {
                            stage: "fake",
                            error: "it failed".into(),
                        })
                    } else {
                        rec.record(Event::Finished);
                        Outcome::Done
                    }
                })
            });
            let last_success = self.last_success.map(|last| {
                let last = last.map(|s| s.parse::<DateTime<Utc>>().unwrap());
                Arc::new(move || Box::pin(async move { Ok(last) }) as BoxFuture<_>) as LastSuccess
            });
            Job {
                name: "fake".into(),
                schedule: Schedule::parse(self.schedule, "UTC").unwrap(),
                retry: self.retry,
                attempt,
                last_success,
                observer: recorder.clone(),
            }
        }
    }

    /// A term, and the role that holds it.
    fn leader() -> (Role, CancellationToken) {
        let ends = CancellationToken::new();
        (Role::Leader(Term::new(ends.clone())), ends)
    }

    fn runner(clock: Arc<SteppedClock>, role: Role) -> (Runner, watch::Sender<Role>) {
        let (tx, rx) = watch::channel(role);
        (Runner::new(clock, rx, CancellationToken::new(), None), tx)
    }

    const CLOCK: &str = "2025-03-01T12:00:03Z";
    const S: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn fires_on_time() {
        let rec = Recorder::new();
        let (runner, _role) = runner(SteppedClock::at(CLOCK), leader().0);
        runner.spawn(Fake::on("*/10 * * * * *", S).job(&rec));
        sleep(30 * S).await;
        assert_eq!(rec.starts(), vec![7, 17, 27]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fire_while_the_previous_run_goes_is_skipped_and_reported() {
        let rec = Recorder::new();
        let (runner, _role) = runner(SteppedClock::at(CLOCK), leader().0);
        runner.spawn(Fake::on("*/10 * * * * *", 25 * S).job(&rec));
        sleep(40 * S).await;
        use Event::*;
        assert_eq!(
            rec.events(),
            vec![
                (7, Started),
                (17, Skipped),
                (27, Skipped),
                (32, Finished),
                (37, Started)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_runs_nothing_and_catches_up_when_its_term_begins() {
        let (stale, fresh) = (Recorder::new(), Recorder::new());
        let (runner, role) = runner(SteppedClock::at(CLOCK), Role::Standby);
        // Hourly: 12:00 passed since the stale job's last success, not since the fresh one's.
        runner.spawn(
            Fake {
                last_success: Some(Some("2025-03-01T11:30:00Z")),
                ..Fake::on("0 * * * *", S)
            }
            .job(&stale),
        );
        runner.spawn(
            Fake {
                last_success: Some(Some("2025-03-01T12:00:01Z")),
                ..Fake::on("0 * * * *", S)
            }
            .job(&fresh),
        );
        sleep(100 * S).await;
        assert_eq!(stale.starts(), Vec::<u64>::new(), "a standby runs nothing");
        role.send_replace(leader().0);
        sleep(100 * S).await;
        assert_eq!(stale.starts(), vec![100]);
        assert_eq!(fresh.starts(), Vec::<u64>::new());
        // The fresh one runs at its next fire time, 13:00.
        sleep(3600 * S).await;
        assert_eq!(fresh.starts(), vec![3597]);
        assert_eq!(stale.starts(), vec![100, 3597]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_attempt_is_retried_with_a_doubling_backoff() {
        let rec = Recorder::new();
        let (runner, _role) = runner(SteppedClock::at(CLOCK), leader().0);
        let fake = Fake {
            fails: true,
            retry: Retry {
                retries: 2,
                backoff: 5 * S,
            },
            ..Fake::caught_up(S)
        };
        runner.spawn(fake.job(&rec));
        sleep(100 * S).await;
        use Event::*;
        assert_eq!(
            rec.events(),
            vec![
                (0, Started),
                (1, AttemptFailed),
                (6, Started),
                (7, AttemptFailed),
                (17, Started),
                (18, AttemptFailed),
                (18, RunFailed),
            ]
        );
    }

    /// The timer finds no next fire time while the wall clock is past the last one chrono can
    /// represent; once the clock is right again, the job runs.
    #[tokio::test(start_paused = true)]
    async fn a_timer_without_a_next_fire_time_is_asked_again() {
        let rec = Recorder::new();
        let clock = SteppedClock::at("2025-12-31T23:58:00Z");
        let to_the_end = (DateTime::<Utc>::MAX_UTC - clock.now()).num_seconds() - 86_400;
        clock.step(to_the_end);
        let schedule = Schedule::parse("@yearly", "UTC").unwrap();
        assert_eq!(schedule.next_after(clock.now()), None);
        let (runner, _role) = runner(clock.clone(), leader().0);
        runner.spawn(Fake::on("@yearly", S).job(&rec));
        sleep(30 * S).await;
        clock.step(-to_the_end);
        sleep(200 * S).await;
        // Asked again at 60 s (wall clock 23:59:00): the new year is due at 120 s.
        assert_eq!(rec.starts(), vec![120]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_term_cancels_the_running_job() {
        let rec = Recorder::new();
        let (role, term) = leader();
        let (runner, role_tx) = runner(SteppedClock::at(CLOCK), role);
        let fake = Fake {
            retry: Retry {
                retries: 3,
                backoff: S,
            },
            ..Fake::caught_up(100 * S)
        };
        runner.spawn(fake.job(&rec));
        sleep(10 * S).await;
        term.cancel();
        role_tx.send_replace(Role::Standby);
        sleep(200 * S).await;
        use Event::*;
        assert_eq!(
            rec.events(),
            vec![
                (0, Started),
                (10, Cancelled),
                (10, AttemptFailed),
                (10, RunAborted)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_a_run_that_finishes_within_the_grace() {
        let rec = Recorder::new();
        let (runner, _role) = runner(SteppedClock::at(CLOCK), leader().0);
        runner.spawn(Fake::caught_up(20 * S).job(&rec));
        sleep(5 * S).await;
        let start = Instant::now();
        runner.shutdown(30 * S).await;
        assert_eq!(start.elapsed(), 15 * S);
        sleep(100 * S).await;
        assert_eq!(
            rec.events(),
            vec![(0, Event::Started), (20, Event::Finished)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cancels_a_run_still_going_after_the_grace() {
        let rec = Recorder::new();
        let (runner, _role) = runner(SteppedClock::at(CLOCK), leader().0);
        runner.spawn(Fake::caught_up(100 * S).job(&rec));
        sleep(5 * S).await;
        let start = Instant::now();
        runner.shutdown(30 * S).await;
        assert_eq!(start.elapsed(), 30 * S);
        use Event::*;
        assert_eq!(
            rec.events(),
            vec![
                (0, Started),
                (35, Cancelled),
                (35, AttemptFailed),
                (35, RunAborted)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_shutdown_no_fire_starts_a_run() {
        let rec = Recorder::new();
        let (runner, _role) = runner(SteppedClock::at(CLOCK), leader().0);
        runner.spawn(Fake::on("*/10 * * * * *", S).job(&rec));
        sleep(10 * S).await;
        runner.shutdown(30 * S).await;
        sleep(60 * S).await;
        assert_eq!(rec.starts(), vec![7]);
    }
}
