//! Runs the test Kubernetes API server of the integration tests on its own, seeded with the
//! standard objects, for benchmarks and for poking at it with kubectl. Prints the URL and the
//! path of a kubeconfig, then serves until stdin closes (`examples/kube_api_server N < /dev/null`
//! stops at once; keep stdin open to serve).

#![allow(dead_code)]

#[path = "../tests/integration/support/kube_api/mod.rs"]
mod kube_api;

use std::io::Read;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let started = std::time::Instant::now();
    let api = kube_api::KubeApi::start(kube_api::Seed::Standard(n));
    let total = api.seed_summary().map(|s| s.total).unwrap_or(0);
    let path = std::env::temp_dir().join(format!(
        "lifeboat-kube-api-{}.kubeconfig",
        api.addr().port()
    ));
    std::fs::write(&path, api.kubeconfig()).expect("write kubeconfig");
    eprintln!(
        "seeded {total} objects in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    println!("{} {}", api.url(), path.display());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let _ = std::fs::remove_file(&path);
}
