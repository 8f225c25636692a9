//! Benchmark (not a test): `lifeboat diff` on 100k objects. Builds two sets of 100k
//! ConfigMap-sized objects (1% edited, 0.5% added, 0.5% removed), diffs them the way the command
//! does, and prints the time and objects per second. Run:
//! `cargo run --release --example bench_diff [objects]`.

use std::collections::BTreeMap;
use std::time::Instant;

use lifeboat::apply::diff::{Change, Options, diff};
use lifeboat::apply::select::ObjectRef;
use serde_json::{Value, json};

fn object(ns: usize, i: usize, value: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i:06}"), "namespace": format!("ns-{ns:03}"),
                     "labels": {"app": format!("app-{}", i % 10), "tier": "backend"},
                     "annotations": {"example.com/owner": "team-a"}},
        "data": {"index": i.to_string(), "value": value,
                 "settings.yaml": format!("replicas: {}\nlog: info\nfeature_flags: [a, b, c]\n", i % 5)}
    })
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut older = BTreeMap::new();
    let mut newer = BTreeMap::new();
    for i in 0..n {
        let ns = i % 100;
        let old = object(ns, i, "original");
        let r = ObjectRef::of(&old).expect("an object");
        match i % 200 {
            0 => {} // removed
            1 => {
                newer.insert(r.clone(), object(ns, i, "edited"));
            }
            2 => {
                newer.insert(r.clone(), object(ns, i, "edited"));
            }
            _ => {
                newer.insert(r.clone(), old.clone());
            }
        }
        older.insert(r, old);
        if i % 200 == 3 {
            let added = object(ns, n + i, "new");
            newer.insert(ObjectRef::of(&added).expect("an object"), added);
        }
    }
    let started = Instant::now();
    let report = diff(&older, &newer, &Options::default());
    let elapsed = started.elapsed();
    println!(
        "{n} objects: {} added, {} removed, {} changed, {} unchanged in {:.2} s ({:.0} objects/s)",
        report.count(Change::Added),
        report.count(Change::Removed),
        report.count(Change::Changed),
        report.unchanged,
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}
