//! `lifeboat drill`: restore a backup into a throwaway etcd on 127.0.0.1 and check its revision
//! and key count against the manifest. Needs etcd and etcdutl (or etcd 3.4's etcdctl).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::{BackupArg, Output};

/// Examples shown after `lifeboat drill --help`.
pub const EXAMPLES: &str = "Examples:\n  lifeboat drill --identity drill-key.txt\n  lifeboat drill --backup 20261202T101500Z-1a2b3c4d5e6f7a8b --etcd-bin-dir /usr/local/bin -o json";

/// Arguments of `drill`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub backup: BackupArg,
    /// age identity file (default: drill.identity_file from the config).
    #[arg(long, short)]
    pub identity: Option<PathBuf>,
    /// Directory holding etcd and etcdutl (default: drill.etcd_bin_dir, then PATH).
    #[arg(long)]
    pub etcd_bin_dir: Option<PathBuf>,
    /// How long the restored etcd may take to answer after it starts (each call to it is
    /// bounded by etcd.timeout).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub boot_timeout: std::time::Duration,
}

/// `drill -o json` (docs/CLI.md). Only a passing drill reports; a failing one exits 1.
#[derive(Serialize)]
struct Report<'a> {
    id: &'a str,
    passed: bool,
    revision: i64,
    key_count: u64,
    key_count_checked: bool,
    seconds: f64,
}

/// Runs `drill`.
pub async fn run(config: &Path, output: Output, args: Args) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    let identity = args.identity.or_else(|| cfg.drill.identity_file.clone());
    let identities = super::load_identities(identity.as_deref())?;
    let bin_dir = lifeboat::drill::find_bin_dir(
        args.etcd_bin_dir
            .as_deref()
            .or(cfg.drill.etcd_bin_dir.as_deref()),
    )?;
    let store = super::open_store(&cfg)?;
    let manifest = store
        .resolve(
            &cfg.cluster,
            lifeboat::manifest::Kind::Etcd,
            &args.backup.selector()?,
        )
        .await?;
    let limits = lifeboat::drill::Limits {
        boot: args.boot_timeout,
        ..lifeboat::drill::Limits::from_config(&cfg)
    };
    let progress = Arc::new(lifeboat::progress::Progress::default());
    let ticker = super::progress::Ticker::start(
        format!("Drill of backup {}: downloading", manifest.id),
        progress.clone(),
    );
    let result = lifeboat::drill::run_with_progress(
        &store, &manifest, identities, &bin_dir, limits, progress,
    )
    .await;
    ticker.finish().await;
    let r = result?;
    if output == Output::Json {
        return super::print_json(
            "drill",
            &Report {
                id: r.id.as_str(),
                passed: true,
                revision: r.revision,
                key_count: r.key_count,
                key_count_checked: r.key_count_checked,
                seconds: r.seconds,
            },
        );
    }
    println!(
        "Drill of backup {} passed in {:.1}s: the restored etcd serves revision {} and holds {} keys at the recorded revision{}.",
        r.id,
        r.seconds,
        r.revision,
        r.key_count,
        if r.key_count_checked {
            ", as the manifest recorded"
        } else {
            " (this manifest predates key counts)"
        }
    );
    Ok(())
}
