//! `lifeboat serve` end to end: a seconds-level schedule with retention against a real store,
//! overlap skipping, catch-up at start, SIGTERM in the middle of an upload, metrics after success
//! and after failure (checked by promtool), and Lease leader election against the test API server.

use std::time::{Duration, Instant};

use crate::support::etcd::{Etcd, Version, require_version};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::support::proxy::Proxy;
use crate::support::s3::{Moto, require_moto};
use crate::support::serve::Serve;
use crate::support::{free_port, http_get, metric, require, run_ok, which};

fn series(name: &str, extra: &str) -> String {
    format!("{name}{{cluster=\"test-cluster\",plan=\"etcd\"{extra}}}")
}

fn server(port: u16, grace: &str) -> String {
    format!("server:\n  listen: 127.0.0.1:{port}\n  shutdown_grace: {grace}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seconds_schedule_backs_up_prunes_and_exports_metrics() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let Some(promtool) = require("promtool (apt-get install prometheus)", which("promtool")) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(20, 1024).await;
    let store = crate::support::tempdir();
    let port = free_port();
    let mut setup = Setup::new(StoreAt::File(store.path().to_path_buf()), &etcd.client_url);
    setup.extra = format!(
        "schedules:\n  etcd:\n    cron: \"*/2 * * * * *\"\n    time_zone: Europe/Berlin\n    retention: {{ keep_last: 2 }}\n{}",
        server(port, "30s")
    );
    let lb = Lifeboat::new(setup);
    let out = lb.ok(&["schedule", "--next", "3"]);
    assert!(
        out.contains("etcd: */2 * * * * * (Europe/Berlin) (every ~2s)"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.contains("UTC")).count(),
        3,
        "{out}"
    );

    let serve = Serve::start(&lb, port, "main");
    serve
        .wait_for(
            &series("lifeboat_backup_runs_total", ",result=\"success\""),
            Duration::from_secs(60),
            |v| v >= 4.0,
        )
        .await;
    let text = serve.metrics();
    assert_eq!(
        metric(&text, &series("lifeboat_schedule_interval_seconds", "")),
        Some(2.0)
    );
    assert!(
        metric(&text, &series("lifeboat_retention_deleted_total", "")).unwrap() >= 2.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            &series("lifeboat_backup_last_success_timestamp_seconds", "")
        )
        .unwrap()
            > 1.7e9
    );
    assert_eq!(
        metric(&text, "lifeboat_leader{cluster=\"test-cluster\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "lifeboat_build_info{version=\"0.1.0\"}"),
        Some(1.0)
    );
    assert!(
        metric(
            &text,
            "lifeboat_etcd_db_size_bytes{cluster=\"test-cluster\"}"
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(http_get(port, "/readyz").unwrap().0, 200);
    let metrics_file = lb.path("metrics.txt");
    std::fs::write(&metrics_file, &text).unwrap();
    run_ok(
        std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&metrics_file).unwrap()),
    );

    assert_eq!(serve.terminate(Duration::from_secs(40)).await, 0);
    assert_eq!(
        lb.backup_ids().len(),
        2,
        "keep_last: 2 leaves exactly two complete backups"
    );
    let out = lb.ok(&["prune", "--dry-run"]);
    assert!(
        out.contains("KEEP") && out.contains("newest complete backup"),
        "{out}"
    );
    assert!(out.contains("would delete 0 backup(s)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_runs_are_skipped_and_counted() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(100, 64 * 1024).await;
    let proxy = Proxy::start(etcd.client_url.rsplit(':').next().unwrap().parse().unwrap()).await;
    proxy.throttle_down(2 * 1024 * 1024);
    let store = crate::support::tempdir();
    let port = free_port();
    let mut setup = Setup::new(
        StoreAt::File(store.path().to_path_buf()),
        &format!("http://127.0.0.1:{}", proxy.port),
    );
    setup.extra = format!(
        "schedules:\n  etcd:\n    cron: \"* * * * * *\"\n{}",
        server(port, "60s")
    );
    let lb = Lifeboat::new(setup);
    let serve = Serve::start(&lb, port, "overlap");
    serve
        .wait_for(
            &series("lifeboat_backup_skipped_overlap_total", ""),
            Duration::from_secs(30),
            |v| v >= 3.0,
        )
        .await;
    serve
        .wait_for(
            &series("lifeboat_backup_runs_total", ",result=\"success\""),
            Duration::from_secs(60),
            |v| v >= 1.0,
        )
        .await;
    assert_eq!(serve.terminate(Duration::from_secs(70)).await, 0);
    let list = lb.list();
    let backups = list["backups"].as_array().unwrap();
    assert!(!backups.is_empty());
    for pair in backups.windows(2) {
        assert!(
            pair[1]["started_at"].as_str().unwrap() >= pair[0]["finished_at"].as_str().unwrap(),
            "runs overlapped: {list}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_run_is_caught_up_at_start_and_a_fresh_one_is_not() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    let store = crate::support::tempdir();
    let port = free_port();
    let mut setup = Setup::new(StoreAt::File(store.path().to_path_buf()), &etcd.client_url);
    setup.extra = format!(
        "schedules:\n  etcd:\n    cron: \"@yearly\"\n{}",
        server(port, "30s")
    );
    let lb = Lifeboat::new(setup);
    let serve = Serve::start(&lb, port, "first");
    serve
        .wait_for(
            &series("lifeboat_backup_runs_total", ",result=\"success\""),
            Duration::from_secs(30),
            |v| v == 1.0,
        )
        .await;
    assert!(serve.log().contains("catch-up"), "{}", serve.log());
    assert_eq!(serve.terminate(Duration::from_secs(30)).await, 0);
    assert_eq!(lb.backup_ids().len(), 1);

    let serve = Serve::start(&lb, port, "second");
    serve
        .wait_for(
            &series("lifeboat_backups_stored", ""),
            Duration::from_secs(10),
            |v| v == 1.0,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        metric(
            &serve.metrics(),
            &series("lifeboat_backup_runs_total", ",result=\"success\"")
        ),
        Some(0.0),
        "a fresh backup needs no catch-up"
    );
    assert_eq!(serve.terminate(Duration::from_secs(30)).await, 0);
    assert_eq!(lb.backup_ids().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_upload_aborts_the_run_and_exits_zero() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let Some(moto_bin) = require_moto() else {
        return;
    };
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(300, 64 * 1024).await;
    let proxy = Proxy::start(etcd.client_url.rsplit(':').next().unwrap().parse().unwrap()).await;
    proxy.throttle_down(2 * 1024 * 1024);
    let moto = Moto::start(&moto_bin);
    moto.create_bucket("backups");
    let port = free_port();
    let store = StoreAt::S3 {
        endpoint: moto.endpoint.clone(),
        bucket: "backups".into(),
        prefix: "svc".into(),
    };
    let mut setup = Setup::new(store, &format!("http://127.0.0.1:{}", proxy.port));
    setup.part_size_mib = 5;
    setup.extra = format!(
        "schedules:\n  etcd:\n    cron: \"@yearly\"\n{}",
        server(port, "1s")
    );
    let lb = Lifeboat::new(setup);
    let serve = Serve::start(&lb, port, "term");
    let start = Instant::now();
    while proxy.down_total() < 8 * 1024 * 1024 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the catch-up run did not start:\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = serve.log.clone();
    assert_eq!(serve.terminate(Duration::from_secs(30)).await, 0);
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains("did not finish within the grace period"),
        "{log}"
    );
    assert!(
        lb.backup_ids().is_empty(),
        "an aborted run leaves no backup"
    );
    assert_eq!(
        moto.open_multipart_uploads("backups"),
        0,
        "the multipart upload was aborted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_stage_and_retried() {
    let store = crate::support::tempdir();
    let port = free_port();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut setup = Setup::new(StoreAt::File(store.path().to_path_buf()), &dead);
    setup.etcd_timeout = "2s".into();
    setup.extra = format!(
        "schedules:\n  etcd:\n    cron: \"@yearly\"\n    retries: 1\n    retry_backoff: 1s\n{}",
        server(port, "5s")
    );
    let lb = Lifeboat::new(setup);
    let serve = Serve::start(&lb, port, "fail");
    serve
        .wait_for(
            &series("lifeboat_backup_runs_total", ",result=\"failure\""),
            Duration::from_secs(30),
            |v| v == 1.0,
        )
        .await;
    let text = serve.metrics();
    assert_eq!(
        metric(
            &text,
            &series("lifeboat_backup_failures_total", ",stage=\"snapshot\"")
        ),
        Some(2.0),
        "two attempts: {text}"
    );
    assert_eq!(
        metric(
            &text,
            &series("lifeboat_backup_runs_total", ",result=\"success\"")
        ),
        Some(0.0)
    );
    assert!(
        metric(
            &text,
            &series("lifeboat_backup_last_attempt_timestamp_seconds", "")
        )
        .unwrap()
            > 1.7e9
    );
    assert_eq!(
        metric(
            &text,
            &series("lifeboat_backup_last_success_timestamp_seconds", "")
        ),
        None
    );
    assert_eq!(
        metric(&text, &series("lifeboat_backups_stored", "")),
        Some(0.0)
    );
    assert!(
        serve.log().contains("cannot connect to etcd"),
        "{}",
        serve.log()
    );
    assert_eq!(serve.terminate(Duration::from_secs(20)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_standby_takes_over_when_it_dies() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let api = crate::support::kube_api::KubeApi::start(crate::support::kube_api::Seed::Empty);
    api.create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lifeboat"}})).unwrap();
    let etcd = Etcd::start(Version::V35, &bin);
    let store = crate::support::tempdir();
    let kubeconfig = store.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let replica = |identity: &str, port: u16| {
        let mut setup = Setup::new(StoreAt::File(store.path().join("store")), &etcd.client_url);
        setup.extra = format!(
            "schedules:\n  etcd:\n    cron: \"*/2 * * * * *\"\n{}leader_election:\n  enabled: true\n  lease_duration: 3s\n  renew_interval: 1s\n  identity: {identity}\nkubernetes:\n  kubeconfig: {}\n",
            server(port, "10s"),
            kubeconfig.display()
        );
        Lifeboat::new(setup)
    };
    let (pa, pb) = (free_port(), free_port());
    let (la, lb) = (replica("replica-a", pa), replica("replica-b", pb));
    let a = Serve::start(&la, pa, "a");
    let b = Serve::start(&lb, pb, "b");
    let leader = "lifeboat_leader{cluster=\"test-cluster\"}";
    let start = Instant::now();
    let (leading, standby) = loop {
        let (va, vb) = (metric(&a.metrics(), leader), metric(&b.metrics(), leader));
        match (va, vb) {
            (Some(1.0), Some(0.0)) => break (a, b),
            (Some(0.0), Some(1.0)) => break (b, a),
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no single leader: a={va:?} b={vb:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    leading
        .wait_for(
            &series("lifeboat_backup_runs_total", ",result=\"success\""),
            Duration::from_secs(30),
            |v| v >= 1.0,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        metric(&standby.metrics(), leader),
        Some(0.0),
        "still exactly one leader"
    );
    assert_eq!(
        metric(
            &standby.metrics(),
            &series("lifeboat_backup_runs_total", ",result=\"success\"")
        ),
        Some(0.0),
        "the standby runs nothing"
    );

    drop(leading); // SIGKILL: no release, the lease must expire
    standby
        .wait_for(leader, Duration::from_secs(20), |v| v == 1.0)
        .await;
    standby
        .wait_for(
            &series("lifeboat_backup_runs_total", ",result=\"success\""),
            Duration::from_secs(30),
            |v| v >= 1.0,
        )
        .await;
    let lease = api
        .get("leases.coordination.k8s.io", Some("lifeboat"), "lifeboat")
        .expect("the lease exists");
    assert!(
        lease["spec"]["leaseTransitions"].as_i64().unwrap() >= 1,
        "{lease}"
    );
    assert_eq!(standby.terminate(Duration::from_secs(30)).await, 0);
}
