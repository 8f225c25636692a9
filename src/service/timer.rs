//! Waits for a schedule's fire times. The wall clock (injected, so tests can step it) only picks
//! which fire time comes next; the wait itself is a monotonic `sleep_until`, so a clock stepped
//! back neither stalls a schedule nor runs a fire time twice.
//!
//! tokio-cron-scheduler is not used: its one-shot jobs convert the wait back to wall time and
//! fire when the wall clock reaches it, so a clock stepped back 60 s delayed every run by 60 s.
//! Its cron parser was never usable either (no 5-field cron, day fields ANDed, a time zone
//! frozen into a fixed UTC offset); `plan::Schedule` computes the fire times.
//!
//! The rules, for a fire time `F` following the previous one `P`:
//! - `F` is the first fire time after both `P` and the wall clock's "now": fire times only
//!   increase, so none runs twice, and a clock stepped forward skips the missed ones instead of
//!   running them in a burst;
//! - `F` is due at the earlier of two instants on the monotonic clock: when the wall clock says
//!   so (re-read every [`RECHECK`], which honours a forward step), and `F - P` after `P` was due
//!   (which keeps a clock stepped back from delaying anything). After a backward step the runs
//!   therefore keep their rhythm and stay early by the step against the corrected wall clock,
//!   until a forward step or a restart lines them up again: early, never late, never twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::policy::schedule::Schedule;

/// How often a wait re-reads the wall clock, so a forward step is honoured within this time.
pub const RECHECK: Duration = Duration::from_secs(1);

/// The wall clock: what time it is, in UTC.
pub trait WallClock: Send + Sync {
    /// Now, as the wall clock says.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The fire times of one schedule, delivered on time.
pub struct FireTimer {
    schedule: Schedule,
    clock: Arc<dyn WallClock>,
    /// The last fire time delivered, and the monotonic instant it was due.
    last: Option<(DateTime<Utc>, Instant)>,
    /// The fire time being waited for, and the monotonic instant it is due.
    pending: Option<(DateTime<Utc>, Instant)>,
}

impl FireTimer {
    /// A timer for `schedule`, reading the wall time from `clock`.
    pub fn new(schedule: Schedule, clock: Arc<dyn WallClock>) -> FireTimer {
        FireTimer {
            schedule,
            clock,
            last: None,
            pending: None,
        }
    }

    /// Waits for the next fire time and returns it; `None` only past the end of chrono's
    /// calendar. Cancel-safe: a wait dropped half-way resumes with the same due instant.
    pub async fn tick(&mut self) -> Option<DateTime<Utc>> {
        loop {
            let now = Instant::now();
            let (fire, due) = match self.pending {
                Some(p) => p,
                None => self.choose(now)?,
            };
            // A clock stepped forward (or a due instant computed on a slow clock) makes the
            // wall clock say "due" sooner: take the earlier one, never the later.
            let due = due.min(now + until(fire, self.clock.now()));
            self.pending = Some((fire, due));
            if due <= now {
                self.pending = None;
                self.last = Some((fire, due));
                return Some(fire);
            }
            tokio::time::sleep_until(due.min(now + RECHECK)).await;
        }
    }

    /// The next fire time and when it is due (see the module's rules).
    fn choose(&self, now: Instant) -> Option<(DateTime<Utc>, Instant)> {
        let wall = self.clock.now();
        let after = match self.last {
            Some((previous, _)) => previous.max(wall),
            None => wall,
        };
        let fire = self.schedule.next_after(after)?;
        let by_wall = now + until(fire, wall);
        let due = match self.last {
            Some((previous, previous_due)) => by_wall.min(previous_due + until(fire, previous)),
            None => by_wall,
        };
        Some((fire, due))
    }
}

/// The time from `from` until `to`, zero if `to` is not later.
fn until(to: DateTime<Utc>, from: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

/// A wall clock for tests of the timer and of the loops built on it.
#[cfg(test)]
pub mod test_clock {
    use std::sync::{Arc, Mutex};

    use chrono::{DateTime, Utc};
    use tokio::time::Instant;

    use super::WallClock;

    /// A wall clock that follows tokio's (paused) clock from `base`, plus steps made by the test.
    pub struct SteppedClock {
        base: DateTime<Utc>,
        start: Instant,
        step: Mutex<chrono::Duration>,
    }

    impl SteppedClock {
        pub fn at(base: &str) -> Arc<SteppedClock> {
            Arc::new(SteppedClock {
                base: base.parse().unwrap(),
                start: Instant::now(),
                step: Mutex::new(chrono::Duration::zero()),
            })
        }

        pub fn step(&self, seconds: i64) {
            *self.step.lock().unwrap() += chrono::Duration::seconds(seconds);
        }
    }

    impl WallClock for SteppedClock {
        fn now(&self) -> DateTime<Utc> {
            let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap();
            self.base + elapsed + *self.step.lock().unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_clock::SteppedClock;
    use super::*;

    fn schedule(expr: &str) -> Schedule {
        Schedule::parse(expr, "UTC").unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Runs the timer for `runs` fires, stepping the wall clock by `step` seconds once
    /// `step_after` has passed; returns (seconds since start, fire time) for each fire.
    async fn fires(
        timer: &mut FireTimer,
        clock: &SteppedClock,
        runs: usize,
        step_after: Duration,
        step: i64,
    ) -> Vec<(f64, DateTime<Utc>)> {
        let start = Instant::now();
        let mut stepped = false;
        let mut out = Vec::new();
        while out.len() < runs {
            let wait_for_step = async {
                if stepped {
                    std::future::pending::<()>().await
                }
                tokio::time::sleep_until(start + step_after).await
            };
            tokio::select! {
                fire = timer.tick() => out.push((start.elapsed().as_secs_f64(), fire.unwrap())),
                _ = wait_for_step => {
                    clock.step(step);
                    stepped = true;
                }
            }
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn fires_on_the_schedule() {
        let clock = SteppedClock::at("2025-03-01T12:00:03Z");
        let mut timer = FireTimer::new(schedule("*/10 * * * * *"), clock.clone());
        let got = fires(&mut timer, &clock, 3, Duration::from_secs(3600), 0).await;
        assert_eq!(
            got,
            vec![
                (7.0, t("2025-03-01T12:00:10Z")),
                (17.0, t("2025-03-01T12:00:20Z")),
                (27.0, t("2025-03-01T12:00:30Z")),
            ]
        );
    }

    // Regression: a wall clock stepped back 60 s stalled every schedule for 60 s, because the
    // one-shot timer waited for the wall clock to reach the fire time again.
    #[tokio::test(start_paused = true)]
    async fn a_backward_clock_step_stalled_every_schedule() {
        let clock = SteppedClock::at("2025-03-01T12:00:03Z");
        let mut timer = FireTimer::new(schedule("*/10 * * * * *"), clock.clone());
        let got = fires(&mut timer, &clock, 4, Duration::from_secs(5), -60).await;
        // Each run within a second of when it was due before the step, each fire time once.
        assert_eq!(
            got,
            vec![
                (7.0, t("2025-03-01T12:00:10Z")),
                (17.0, t("2025-03-01T12:00:20Z")),
                (27.0, t("2025-03-01T12:00:30Z")),
                (37.0, t("2025-03-01T12:00:40Z")),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_backward_step_runs_no_daily_fire_twice() {
        let clock = SteppedClock::at("2025-03-01T01:59:30Z");
        let mut timer = FireTimer::new(schedule("0 2 * * *"), clock.clone());
        let got = fires(&mut timer, &clock, 2, Duration::from_secs(10), -60).await;
        // 02:00 runs when it was due (not 60 s later), and the next run is the next day's.
        assert_eq!(got[0], (30.0, t("2025-03-01T02:00:00Z")));
        assert_eq!(got[1].1, t("2025-03-02T02:00:00Z"));
        assert_eq!(got[1].0, 30.0 + 86_400.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_forward_clock_step_is_honoured_without_a_burst() {
        let clock = SteppedClock::at("2025-03-01T12:00:03Z");
        let mut timer = FireTimer::new(schedule("*/10 * * * * *"), clock.clone());
        let got = fires(&mut timer, &clock, 3, Duration::from_secs(2), 60).await;
        // The step (at 2 s) makes 12:00:10 due at once (noticed within RECHECK); the fire times
        // it jumped over are skipped, not run one after another.
        assert!(got[0].0 <= 2.0 + RECHECK.as_secs_f64(), "{got:?}");
        assert_eq!(got[0].1, t("2025-03-01T12:00:10Z"));
        assert_eq!(got[1].1, t("2025-03-01T12:01:10Z"));
        assert!((got[1].0 - 7.0).abs() <= 1.0, "{got:?}");
        assert_eq!(got[2], (got[1].0 + 10.0, t("2025-03-01T12:01:20Z")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_dropped_half_way_keeps_its_due_instant() {
        let clock = SteppedClock::at("2025-03-01T12:00:03Z");
        let mut timer = FireTimer::new(schedule("*/10 * * * * *"), clock.clone());
        // Start the wait, drop it after 2 s, step the clock back, then wait again.
        let _ = tokio::time::timeout(Duration::from_secs(2), timer.tick()).await;
        clock.step(-60);
        let start = Instant::now();
        assert_eq!(timer.tick().await, Some(t("2025-03-01T12:00:10Z")));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }
}
