//! A running `lifeboat serve` for tests: started with a test's config, its /metrics read and
//! waited on, and stopped with SIGTERM.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::lifeboat::Lifeboat;
use super::{http_get, metric, run_ok};

/// A running `lifeboat serve`.
pub struct Serve {
    child: tokio::process::Child,
    /// Its HTTP port.
    pub port: u16,
    /// Its stderr.
    pub log: std::path::PathBuf,
}

impl Serve {
    /// Starts `lifeboat serve` and waits for /healthz.
    pub fn start(lb: &Lifeboat, port: u16, name: &str) -> Serve {
        let log = lb.path(&format!("serve-{name}.log"));
        let mut cmd = tokio::process::Command::from(lb.cmd());
        cmd.arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        let child = cmd.spawn().unwrap();
        let s = Serve { child, port, log };
        let start = Instant::now();
        while http_get(port, "/healthz").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "serve did not start:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// The current /metrics text.
    pub fn metrics(&self) -> String {
        http_get(self.port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `series` satisfies `ok`, returning its value.
    pub async fn wait_for(&self, series: &str, limit: Duration, ok: impl Fn(f64) -> bool) -> f64 {
        let start = Instant::now();
        loop {
            if let Some(v) = metric(&self.metrics(), series).filter(|v| ok(*v)) {
                return v;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {series}:\n{}\nlog:\n{}",
                self.metrics(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then the exit code.
    pub async fn terminate(mut self, limit: Duration) -> i32 {
        let pid = self.child.id().unwrap().to_string();
        run_ok(std::process::Command::new("kill").args(["-TERM", &pid]));
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("serve did not stop after SIGTERM:\n{}", self.log()))
            .unwrap();
        status.code().unwrap_or(-1)
    }
}
