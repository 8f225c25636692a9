//! Leader election under a slow and then silent API server: two `lifeboat serve` replicas, each
//! reaching the test API server through its own fault proxy, hand the Lease back and forth while
//! backing up every second. Their leadership (sampled from /metrics and read from their logs)
//! and the backups they commit must never overlap.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::support::etcd::{Etcd, Version, require_version};
use crate::support::kube_api::{KubeApi, Seed};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::support::proxy::Proxy;
use crate::support::serve::Serve;
use crate::support::{free_port, metric};

const LEADER: &str = "lifeboat_leader{cluster=\"test-cluster\"}";
const LEASE: Duration = Duration::from_secs(4);
/// How late the leader's API server answers: most of a renew interval, so that a leader that
/// counts from the answer instead of the request believes in its lease for that much too long.
const SLOW: Duration = Duration::from_millis(800);

/// From when to when, on the wall clock.
type Span = (DateTime<Utc>, DateTime<Utc>);

/// One line of a replica's log that matters here.
#[derive(Debug)]
enum Event {
    Leading,
    NotLeading,
    Committed(String),
}

/// The events of a log, with their (wall clock) times.
fn events(log: &Path) -> Vec<(DateTime<Utc>, Event)> {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines()
        .filter_map(|line| {
            let at: DateTime<Utc> = line.split_whitespace().next()?.parse().ok()?;
            let event = if line.contains("Became leader") {
                Event::Leading
            } else if line.contains("Leadership lost") || line.contains("Standing by") {
                Event::NotLeading
            } else if line.contains("Backup committed.") {
                let id = line.split("backup_id=").nth(1)?.split_whitespace().next()?;
                Event::Committed(id.trim_matches('"').to_string())
            } else {
                return None;
            };
            Some((at, event))
        })
        .collect()
}

/// The stretches in which a replica led, by its log (an open one ends at `end`).
fn terms(
    events: &[(DateTime<Utc>, Event)],
    end: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    let mut since = None;
    for (at, e) in events {
        match e {
            Event::Leading => since = since.or(Some(*at)),
            Event::NotLeading => {
                if let Some(s) = since.take() {
                    out.push((s, *at));
                }
            }
            Event::Committed(_) => {}
        }
    }
    if let Some(s) = since {
        out.push((s, end));
    }
    out
}

fn overlap(a: Span, b: Span) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Regression: with lease 3-4 s / renew 1 s and a delaying proxy in front of the API server,
/// the leader counted its renew deadline from the answer (after its sleep) while the standby's
/// expiry clock could start earlier: both replicas reported `lifeboat_leader 1` and both
/// committed backups at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_api_server_let_two_replicas_lead_at_once() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let api = KubeApi::start(Seed::Empty);
    api.create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lifeboat"}})).unwrap();
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(10, 1024).await;
    let dir = crate::support::tempdir();
    let proxies = [
        Proxy::start(api.addr().port()).await,
        Proxy::start(api.addr().port()).await,
    ];
    let replica = |i: usize, port: u16| {
        let kubeconfig = dir.path().join(format!("kubeconfig-{i}"));
        let url = format!("http://127.0.0.1:{}", proxies[i].port);
        std::fs::write(&kubeconfig, api.kubeconfig().replace(api.url(), &url)).unwrap();
        let mut setup = Setup::new(StoreAt::File(dir.path().join("store")), &etcd.client_url);
        setup.extra = format!(
            "schedules:\n  etcd:\n    cron: \"* * * * * *\"\nserver:\n  listen: 127.0.0.1:{port}\n  shutdown_grace: 2s\nleader_election:\n  enabled: true\n  lease_duration: {}s\n  renew_interval: 1s\n  identity: replica-{i}\nkubernetes:\n  kubeconfig: {}\n",
            LEASE.as_secs(),
            kubeconfig.display()
        );
        Lifeboat::new(setup)
    };
    let ports = [free_port(), free_port()];
    let setups = [replica(0, ports[0]), replica(1, ports[1])];
    let first = Serve::start(&setups[0], ports[0], "0");
    first
        .wait_for(LEADER, Duration::from_secs(20), |v| v == 1.0)
        .await;
    let replicas = [first, Serve::start(&setups[1], ports[1], "1")];
    let logs = [replicas[0].log.clone(), replicas[1].log.clone()];

    // Sample both /metrics all along: never may both say 1.
    let sampling = Arc::new(AtomicBool::new(true));
    let both = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (sampling, both) = (sampling.clone(), both.clone());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while sampling.load(Ordering::SeqCst) {
                let read = |port| {
                    crate::support::http_get(port, "/metrics")
                        .and_then(|(_, body)| metric(&body, LEADER))
                };
                if read(ports[0]) == Some(1.0) && read(ports[1]) == Some(1.0) {
                    both.lock().unwrap().push(Utc::now());
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        })
    };

    let mut stalls = Vec::new();
    let mut leader = 0;
    for cycle in 0..4 {
        let (standby, slow) = (1 - leader, &proxies[leader]);
        // The leader's API server turns slow; it keeps leading (and backing up) through it.
        slow.delay_down(SLOW);
        proxies[standby].delay_down(Duration::ZERO);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            metric(&replicas[leader].metrics(), LEADER),
            Some(1.0),
            "cycle {cycle}: replica-{leader} should still lead through a slow API server:\n{}",
            replicas[leader].log()
        );
        // Then it stops answering: the standby takes over once the lease expires.
        let stalled_at = Utc::now();
        slow.stall();
        let start = Instant::now();
        while metric(&replicas[standby].metrics(), LEADER) != Some(1.0) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "cycle {cycle}: replica-{standby} did not take over:\n{}",
                replicas[standby].log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stalls.push((leader, stalled_at));
        slow.release();
        slow.delay_down(Duration::ZERO);
        // Let a backup or two commit under the new leader.
        tokio::time::sleep(Duration::from_secs(2)).await;
        leader = standby;
    }
    sampling.store(false, Ordering::SeqCst);
    let samples = sampler.join().unwrap();
    for r in replicas {
        assert_eq!(r.terminate(Duration::from_secs(30)).await, 0);
    }
    let end = Utc::now();
    let both = both.lock().unwrap().clone();
    assert!(
        both.is_empty(),
        "both replicas reported lifeboat_leader 1 at {both:?} ({samples} samples)"
    );

    let events = [events(&logs[0]), events(&logs[1])];
    let terms = [terms(&events[0], end), terms(&events[1], end)];
    for a in &terms[0] {
        for b in &terms[1] {
            assert!(
                !overlap(*a, *b),
                "replica-0 led {a:?} and replica-1 led {b:?} at the same time"
            );
        }
    }
    let mut handovers: Vec<Span> = terms.concat();
    handovers.sort();
    let gaps: Vec<f64> = handovers
        .windows(2)
        .map(|w| (w[1].0 - w[0].1).as_seconds_f64())
        .collect();
    eprintln!("terms: {terms:?}\ngaps between terms (s): {gaps:?}");
    assert!(
        terms[0].len() >= 2 && terms[1].len() >= 2,
        "the lease should have changed hands four times: {terms:?}"
    );
    // A stalled leader steps down before a lease duration has passed since its last renewal
    // was sent (which was before the stall), so before any standby may take over.
    for (who, stalled_at) in &stalls {
        let stepped_down = terms[*who]
            .iter()
            .map(|t| t.1)
            .find(|end| end >= stalled_at)
            .expect("a term ending after the stall");
        assert!(
            stepped_down - *stalled_at < chrono::Duration::from_std(LEASE).unwrap(),
            "replica-{who} stepped down {:?} after its API server stalled",
            stepped_down - *stalled_at
        );
    }

    // Backups: whose each one is and when it was committed, by the logs; when it ran, by its
    // manifest.
    let owner: std::collections::HashMap<String, (usize, DateTime<Utc>)> = events
        .iter()
        .enumerate()
        .flat_map(|(i, ev)| {
            ev.iter().filter_map(move |(at, e)| match e {
                Event::Committed(id) => Some((id.clone(), (i, *at))),
                _ => None,
            })
        })
        .collect();
    let list = setups[0].list();
    let runs: Vec<(usize, Span, DateTime<Utc>)> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let id = m["id"].as_str().unwrap();
            let at = |f: &str| m[f].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
            let (who, committed) = *owner
                .get(id)
                .unwrap_or_else(|| panic!("no replica logged committing {id}"));
            (who, (at("started_at"), at("finished_at")), committed)
        })
        .collect();
    for who in 0..2 {
        assert!(
            runs.iter().filter(|r| r.0 == who).count() >= 2,
            "replica-{who} should have backed up while it led: {runs:?}"
        );
    }
    for (i, (who, ran, committed)) in runs.iter().enumerate() {
        for (other, other_ran, _) in &runs[i + 1..] {
            assert!(
                who == other || !overlap(*ran, *other_ran),
                "backups by both replicas overlapped: replica-{who} {ran:?} and replica-{other} {other_ran:?}"
            );
        }
        // And no replica committed while the other led.
        for t in &terms[1 - who] {
            assert!(
                !(t.0 < *committed && *committed < t.1),
                "replica-{who} committed at {committed} while replica-{} led {t:?}",
                1 - who
            );
        }
    }
}
