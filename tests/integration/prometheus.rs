//! Monitoring assets against the real Prometheus tools: the alert rules pass `promtool check
//! rules` and their `promtool test rules` unit tests, and a real Prometheus server scraping a
//! `lifeboat serve` that has made backups returns data for every dashboard panel's query.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::etcd::{Etcd, Version, require_version};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::support::{free_port, http_get, metric, require, run_ok, which};

fn repo(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Writes the PrometheusRule's spec as a plain rules file and returns its path.
fn generated_rules(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("lifeboat-rules.yaml");
    run_ok(
        Command::new("python3")
            .arg(repo("tests/prometheus/extract.py"))
            .arg(&out)
            .arg(repo("deploy/prometheus-rules.yaml")),
    );
    out
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let Some(promtool) = require("promtool (apt-get install prometheus)", which("promtool")) else {
        return;
    };
    let dir = crate::support::tempdir();
    let rules = generated_rules(dir.path());
    run_ok(Command::new(&promtool).args(["check", "rules"]).arg(&rules));
    // The unit tests name the generated file relative to themselves.
    run_ok(
        Command::new("python3")
            .arg(repo("tests/prometheus/extract.py"))
            .arg(repo("tests/prometheus/lifeboat-rules.generated.yaml"))
            .arg(repo("deploy/prometheus-rules.yaml")),
    );
    run_ok(
        Command::new(&promtool)
            .args(["test", "rules"])
            .arg(repo("tests/prometheus/rules_test.yaml")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_lifeboat_fills_every_dashboard_panel() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let Some(prometheus) = require(
        "prometheus (apt-get install prometheus)",
        which("prometheus"),
    ) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(20, 4096).await;
    let store = crate::support::tempdir();
    let port = free_port();
    let mut setup = Setup::new(StoreAt::File(store.path().to_path_buf()), &etcd.client_url);
    setup.extra = format!(
        "schedules:\n  etcd:\n    cron: \"*/3 * * * * *\"\n    retention: {{ keep_last: 2 }}\nserver:\n  listen: 127.0.0.1:{port}\n  shutdown_grace: 20s\n"
    );
    let lb = Lifeboat::new(setup);
    let log = std::fs::File::create(lb.path("serve.log")).unwrap();
    let mut serve = tokio::process::Command::from(lb.cmd());
    let mut serve = serve
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let prom_dir = crate::support::tempdir();
    let rules = generated_rules(prom_dir.path());
    let prom_port = free_port();
    let config = prom_dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: [{}]\nscrape_configs:\n  - job_name: lifeboat\n    static_configs: [{{ targets: ['127.0.0.1:{port}'] }}]\n",
            rules.display()
        ),
    )
    .unwrap();
    let mut prom = tokio::process::Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            prom_dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(prom_dir.path().join("prometheus.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Backups happen and Prometheus sees them.
    let start = Instant::now();
    let successes =
        "lifeboat_backup_runs_total{cluster=\"test-cluster\",plan=\"etcd\",result=\"success\"}";
    loop {
        let seen = http_get(port, "/metrics")
            .and_then(|(_, t)| metric(&t, successes))
            .unwrap_or(0.0);
        let scraped = http_get(
            prom_port,
            "/api/v1/query?query=count_over_time(lifeboat_build_info%5B1m%5D)",
        )
        .is_some_and(|(s, body)| {
            s == 200 && body.contains("\"value\":[") && !body.contains("\"result\":[]")
        });
        if seen >= 3.0 && scraped && start.elapsed() > Duration::from_secs(15) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no backups or no scrapes yet (runs: {seen})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = Command::new("python3")
        .arg(repo("dashboards/check_queries.py"))
        .arg(format!("http://127.0.0.1:{prom_port}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dashboard queries without data:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The healthy service fires none of the backup alerts.
    let (_, alerts) = http_get(prom_port, "/api/v1/alerts").unwrap();
    for name in [
        "LifeboatBackupStale",
        "LifeboatBackupFailing",
        "LifeboatNoBackupStored",
        "LifeboatNoLeader",
    ] {
        assert!(
            !alerts.contains(name),
            "{name} is active on a healthy service: {alerts}"
        );
    }
    let _ = prom.kill().await;
    let pid = serve.id().unwrap().to_string();
    run_ok(Command::new("kill").args(["-TERM", &pid]));
    assert_eq!(serve.wait().await.unwrap().code(), Some(0));
}
