//! Helpers shared by the integration tests: JSON requests against the test API server and a
//! real `kubectl` with its own kubeconfig, HOME and cache, skipped (or failed under CI=true)
//! when kubectl is not installed.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::support::kube_api::{KubeApi, RawResponse};
use serde_json::Value;

/// Sends a JSON body.
pub fn send(
    api: &KubeApi,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> RawResponse {
    let headers = [
        ("Accept", "application/json"),
        ("Content-Type", content_type),
    ];
    api.request(method, path, &headers, body.to_string().as_bytes())
}

pub fn post(api: &KubeApi, path: &str, body: &Value) -> RawResponse {
    send(api, "POST", path, "application/json", body)
}

pub fn put(api: &KubeApi, path: &str, body: &Value) -> RawResponse {
    send(api, "PUT", path, "application/json", body)
}

/// Asserts a `v1 Status` failure with this code and reason; returns the Status.
pub fn assert_status(r: &RawResponse, code: u16, reason: &str) -> Value {
    let s = r.json();
    assert_eq!(r.status, code, "{s}");
    assert_eq!(s["kind"], "Status", "{s}");
    assert_eq!(s["apiVersion"], "v1", "{s}");
    assert_eq!(s["status"], "Failure", "{s}");
    assert_eq!(s["reason"], reason, "{s}");
    assert_eq!(s["code"], code, "{s}");
    assert!(s["message"].as_str().is_some_and(|m| !m.is_empty()), "{s}");
    s
}

/// Asserts a 2xx answer and returns its JSON.
pub fn ok_json(r: &RawResponse) -> Value {
    assert!(
        (200..300).contains(&r.status),
        "status {}: {}",
        r.status,
        r.text()
    );
    r.json()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    if let Some(explicit) = std::env::var_os("KUBECTL") {
        return Some(PathBuf::from(explicit));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A real kubectl pointed at one test server, isolated from the user's kubeconfig and cache.
pub struct Kubectl {
    binary: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    /// kubectl for `api`, or `None` (with the reason printed) when it is not installed.
    /// Under `CI=true` a missing kubectl fails the test instead.
    pub fn for_server(api: &KubeApi) -> Option<Kubectl> {
        let Some(binary) = find_on_path("kubectl") else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "kubectl is not on PATH and CI=true: install kubectl (or set KUBECTL) so the kubectl tests can run"
                );
            }
            // Written to the stderr handle, not eprintln!, so the reason shows despite capture.
            let _ = writeln!(
                std::io::stderr(),
                "skipping: kubectl is not on PATH (set KUBECTL or install kubectl to run this test)"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temporary directory for kubectl");
        std::fs::write(dir.path().join("kubeconfig"), api.kubeconfig()).expect("write kubeconfig");
        Some(Kubectl { binary, dir })
    }

    /// Writes a file (a manifest) into the temporary directory.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write manifest");
        path
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .args(args)
            .arg(format!(
                "--cache-dir={}",
                self.dir.path().join("cache").display()
            ))
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()))
    }

    /// Runs kubectl and returns stdout; fails the test with stderr when kubectl fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\n{stderr}\n{stdout}",
            out.status
        );
        stdout
    }

    /// Runs kubectl and parses stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("kubectl {args:?} printed no JSON ({e}): {out}"))
    }
}
