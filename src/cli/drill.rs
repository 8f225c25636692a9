//! `lifeboat drill`: restore a backup into a throwaway etcd on 127.0.0.1 and check its revision
//! and key count against the manifest. Needs etcd and etcdutl (or etcd 3.4's etcdctl).

use std::path::{Path, PathBuf};

/// Arguments of `drill`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `latest` or a backup id from `lifeboat list`.
    #[arg(long, default_value = "latest")]
    pub backup: String,
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

/// Runs `drill`.
pub async fn run(config: &Path, args: Args) -> anyhow::Result<()> {
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
            &args.backup.parse()?,
        )
        .await?;
    let limits = lifeboat::drill::Limits {
        boot: args.boot_timeout,
        ..lifeboat::drill::Limits::from_config(&cfg)
    };
    let r =
        lifeboat::drill::run_with_limits(&store, &manifest, identities, &bin_dir, limits).await?;
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
