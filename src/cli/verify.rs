//! `lifeboat verify latest|ID`: download the payload and check it against the manifest, then
//! as far as the manifest's kind and encryption allow: an etcd snapshot is decompressed (and
//! decrypted, with `--identity`) and its etcd hash checked; a resource export is read entry by
//! entry against index.json, and with `--identity` every encrypted object is decrypted. The
//! message says exactly which of these ran.

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
        .resolve(&cfg.cluster, args.kind.into(), &args.backup.parse()?)
        .await?;
    let outcome = lifeboat::restore::fetch(&store, &manifest, identities.clone(), None).await?;
    println!("{}", describe(&manifest, &outcome, identities.is_some()));
    Ok(())
}

/// What verify checked, in one sentence per check, for this kind and encryption.
fn describe(
    manifest: &lifeboat::manifest::Manifest,
    outcome: &lifeboat::restore::fetch::Outcome,
    identity_given: bool,
) -> String {
    let id = &manifest.id;
    let stored = format!(
        "{} stored bytes match the manifest's sha256",
        outcome.stored_size
    );
    let encrypted = manifest.payload.encryption.is_encrypted();
    if let Some(a) = &outcome.archive {
        let objects = format!(
            "the archive decompresses to {} bytes and all {} entries read, matching index.json and the manifest ({} objects of {} resources)",
            outcome.plain_size, a.entries, a.objects, a.resources
        );
        let secrets = match (a.encrypted, identity_given) {
            (0, _) => "it holds no encrypted objects".to_string(),
            (n, true) => format!("all {n} encrypted objects decrypt with the identity"),
            (n, false) => format!(
                "its {n} encrypted objects were not decrypted: pass --identity to check that they decrypt"
            ),
        };
        let partial = match &manifest.resources {
            Some(r) if r.partial => format!(
                " Note: the export is partial ({} resources could not be listed completely): see errors in index.json.",
                r.errors.len()
            ),
            _ => String::new(),
        };
        return format!("Resource export {id} is good: {stored}; {objects}; {secrets}.{partial}");
    }
    if outcome.decoded {
        let how = if encrypted {
            "decrypted and decompressed"
        } else {
            "decompressed (it is not encrypted)"
        };
        let note = if identity_given && !encrypted {
            " The identity was not needed."
        } else {
            ""
        };
        format!(
            "Backup {id} is good: {stored}; {how} to {} bytes whose etcd hash checks out.{note}",
            outcome.plain_size
        )
    } else {
        format!(
            "Backup {id} is intact: {stored}. It is encrypted: pass --identity to also decrypt it and check the snapshot inside."
        )
    }
}
