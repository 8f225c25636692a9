//! `lifeboat restore etcd --to-file`: download, verify, decrypt and write a plain snapshot that
//! `etcdutl snapshot restore` accepts. The file appears only when every check passed.

use std::path::{Path, PathBuf};

use clap::Subcommand;

/// What to restore.
#[derive(Debug, Subcommand)]
pub enum Target {
    /// An etcd snapshot.
    Etcd(EtcdArgs),
}

/// Arguments of `restore etcd`.
#[derive(Debug, clap::Args)]
pub struct EtcdArgs {
    /// `latest` or a backup id from `lifeboat list`.
    #[arg(long, default_value = "latest")]
    pub backup: String,
    /// age identity file whose public key is among the backup's recipients.
    #[arg(long, short)]
    pub identity: Option<PathBuf>,
    /// Write the plain snapshot here (must not exist yet).
    #[arg(long)]
    pub to_file: PathBuf,
}

/// Runs `restore`.
pub async fn run(config: &Path, target: Target) -> anyhow::Result<()> {
    let Target::Etcd(args) = target;
    let cfg = super::load_config(config)?;
    let identities = super::load_identities(args.identity.as_deref())?;
    let store = super::open_store(&cfg)?;
    let manifest = store
        .resolve(&cfg.cluster, lifeboat::manifest::Kind::Etcd, &args.backup)
        .await?;
    let outcome =
        lifeboat::restore::fetch(&store, &manifest, identities, Some(&args.to_file)).await?;
    println!(
        "Wrote backup {} to {} ({} bytes, etcd hash verified). Next: etcdutl snapshot restore {} --data-dir <new dir> ...",
        manifest.id,
        args.to_file.display(),
        outcome.plain_size,
        args.to_file.display()
    );
    Ok(())
}
