//! `lifeboat verify latest|ID`: download the payload and check it against the manifest; with
//! `--identity`, also decrypt, decompress and check etcd's own hash.

use std::path::{Path, PathBuf};

use super::KindArg;

/// Arguments of `verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `latest` or a backup id from `lifeboat list`.
    #[arg(default_value = "latest")]
    pub backup: String,
    /// age identity file: also decrypt and check the snapshot inside.
    #[arg(long, short)]
    pub identity: Option<PathBuf>,
    /// Which kind of backup.
    #[arg(long, value_enum, default_value_t = KindArg::Etcd)]
    pub kind: KindArg,
}

/// Runs `verify`.
pub async fn run(config: &Path, args: Args) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    let identities = super::load_identities(args.identity.as_deref())?;
    let store = super::open_store(&cfg)?;
    let manifest = store
        .resolve(&cfg.cluster, args.kind.into(), &args.backup)
        .await?;
    let outcome = lifeboat::restore::fetch(&store, &manifest, identities, None).await?;
    if outcome.decoded {
        println!(
            "Backup {} is good: {} stored bytes match the manifest's sha256; decrypted and decompressed to {} bytes whose etcd hash checks out.",
            manifest.id, outcome.stored_size, outcome.plain_size
        );
    } else {
        println!(
            "Backup {} is intact: {} stored bytes match the manifest's sha256. Pass --identity to also decrypt it and check the snapshot inside.",
            manifest.id, outcome.stored_size
        );
    }
    Ok(())
}
