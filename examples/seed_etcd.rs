//! Seeds an etcd with about SIZE_MB of data for benchmarks: keys `/bench/NNNNNNNN` with 256 KiB
//! values that are half random, half repetitive, like real objects (`cargo run --release
//! --example seed_etcd -- http://127.0.0.1:2379 1024`).

use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().ok_or("usage: seed_etcd ENDPOINT SIZE_MB")?;
    let size_mb: usize = args
        .next()
        .ok_or("usage: seed_etcd ENDPOINT SIZE_MB")?
        .parse()?;
    const VALUE: usize = 256 * 1024;
    let count = size_mb * 1024 * 1024 / VALUE;
    let client = etcd_client::Client::connect([endpoint.as_str()], None).await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let mut kv = client.kv_client();
        let value = value(i as u64, VALUE);
        tasks.spawn(async move {
            kv.put(format!("/bench/{i:08}"), value, None)
                .await
                .map(|_| ())
        });
        while tasks.len() >= 8 {
            tasks.join_next().await.expect("task")??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    eprintln!(
        "seeded {count} keys ({size_mb} MiB) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn value(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if v.len() % 2048 < 1024 {
            v.extend_from_slice(&x.to_le_bytes());
        } else {
            v.extend_from_slice(b"\"metadata\":{\"labels\":{\"app\":\"web\"}},");
        }
    }
    v.truncate(len);
    v
}
