//! Shows a long operation's [`Progress`]: on a terminal, an indicatif bar on stderr with bytes,
//! rate and ETA; otherwise (a pipe, a log collector) one plain log line every few seconds.
//! stdout is never touched, so `-o json` output stays one clean document.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lifeboat::progress::Progress;
use tokio_util::sync::CancellationToken;

/// How often a log line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The bar on screen, if any, so that log lines are written above it instead of through it.
static ON_SCREEN: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);

/// Runs `write` (a write to stderr) with the bar on screen, if any, hidden meanwhile; the bar
/// is drawn again below what was written.
pub fn above_bar<R>(write: impl FnOnce() -> R) -> R {
    let bar = ON_SCREEN.lock().ok().and_then(|b| b.clone());
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

fn set_on_screen(bar: Option<ProgressBar>) {
    if let Ok(mut slot) = ON_SCREEN.lock() {
        *slot = bar;
    }
}

/// A running display of one operation; [`Ticker::finish`] removes it.
pub struct Ticker {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    /// Starts showing `progress` for the operation named `what` (e.g. "Downloading 2026…").
    pub fn start(what: impl Into<String>, progress: Arc<Progress>) -> Ticker {
        Ticker::spawn(what.into(), progress, Unit::Bytes)
    }

    /// [`Ticker::start`] for an operation that counts objects, not bytes.
    pub fn start_counting(what: impl Into<String>, progress: Arc<Progress>) -> Ticker {
        Ticker::spawn(what.into(), progress, Unit::Objects)
    }

    fn spawn(what: String, progress: Arc<Progress>, unit: Unit) -> Ticker {
        let stop = CancellationToken::new();
        let task = if std::io::stderr().is_terminal() {
            tokio::spawn(bar(what, progress, unit, stop.clone()))
        } else {
            tokio::spawn(log_lines(what, progress, unit, stop.clone()))
        };
        Ticker { stop, task }
    }

    /// Stops the display (a bar is cleared) before the caller reports the outcome.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// What a [`Progress`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Bytes,
    Objects,
}

async fn bar(what: String, progress: Arc<Progress>, unit: Unit, stop: CancellationToken) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    let (bounded, unbounded) = match unit {
        Unit::Bytes => (
            "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            "{spinner} {msg} {bytes} {bytes_per_sec} {elapsed}",
        ),
        Unit::Objects => (
            "{msg} [{wide_bar}] {pos}/{len} objects {per_sec} ETA {eta}",
            "{spinner} {msg} {pos} objects {per_sec} {elapsed}",
        ),
    };
    let bounded = ProgressStyle::with_template(bounded)
        .expect("a valid template")
        .progress_chars("#>-");
    let unbounded = ProgressStyle::with_template(unbounded).expect("a valid template");
    // Until a byte is counted (or for an operation that counts none), only the time it runs.
    let waiting =
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("a valid template");
    bar.set_style(waiting);
    bar.set_message(what);
    set_on_screen(Some(bar.clone()));
    let (mut has_total, mut has_bytes) = (false, false);
    loop {
        if let (Some(total), false) = (progress.total(), has_total) {
            bar.set_length(total);
            bar.set_style(bounded.clone());
            has_total = true;
        } else if !has_total && !has_bytes && progress.done() > 0 {
            bar.set_style(unbounded.clone());
            has_bytes = true;
        }
        bar.set_position(progress.done());
        bar.tick();
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    set_on_screen(None);
    bar.finish_and_clear();
}

async fn log_lines(what: String, progress: Arc<Progress>, unit: Unit, stop: CancellationToken) {
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LOG_EVERY) => {}
        }
        let done = progress.done();
        let total = progress.total();
        if unit == Unit::Objects {
            match total {
                Some(total) => {
                    tracing::info!(objects = done, total, "{what}: {done} of {total} objects.")
                }
                None => tracing::info!(objects = done, "{what}: {done} objects."),
            }
            continue;
        }
        let text = line(&what, done, total, started.elapsed());
        if done == 0 && total.is_none() {
            // Nothing counted (yet): no byte fields that would claim zero progress.
            tracing::info!("{text}");
        } else {
            tracing::info!(bytes = done, total_bytes = total, "{text}");
        }
    }
}

/// The plain progress line: what, how far, how fast, and (with a total) how long still.
pub fn line(what: &str, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = done as f64 / secs;
    let rate_text = format!("{}/s", super::human_bytes(rate as u64));
    match total {
        Some(total) if total > 0 => {
            let done = done.min(total);
            let pct = done * 100 / total;
            let eta = if rate >= 1.0 {
                let left = ((total - done) as f64 / rate).round() as u64;
                format!(
                    "about {} left",
                    humantime::format_duration(Duration::from_secs(left))
                )
            } else {
                "time left unknown".to_string()
            };
            format!(
                "{what}: {pct}% ({} of {}) at {rate_text}, {eta}.",
                super::human_bytes(done),
                super::human_bytes(total)
            )
        }
        _ if done == 0 => format!(
            "{what}: running for {}.",
            humantime::format_duration(Duration::from_secs(elapsed.as_secs()))
        ),
        _ => format!(
            "{what}: {} so far at {rate_text}.",
            super::human_bytes(done)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_with_a_total_gives_percent_rate_and_time_left() {
        let l = line(
            "Downloading",
            512 << 20,
            Some(1 << 30),
            Duration::from_secs(8),
        );
        assert_eq!(
            l,
            "Downloading: 50% (512.0 MiB of 1.0 GiB) at 64.0 MiB/s, about 8s left."
        );
    }

    #[test]
    fn a_line_without_a_total_or_rate_says_what_it_knows() {
        assert_eq!(
            line("Snapshot", 0, None, Duration::from_millis(20_500)),
            "Snapshot: running for 20s."
        );
        assert_eq!(
            line("Snapshot", 3 << 20, None, Duration::from_secs(3)),
            "Snapshot: 3.0 MiB so far at 1.0 MiB/s."
        );
        assert_eq!(
            line("Snapshot", 0, Some(100), Duration::from_secs(1)),
            "Snapshot: 0% (0 B of 100 B) at 0 B/s, time left unknown."
        );
    }
}
