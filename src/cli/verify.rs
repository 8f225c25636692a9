//! `lifeboat verify latest|ID`: download the payload and check it against the manifest, then
//! as far as the manifest's kind and encryption allow: an etcd snapshot is decompressed (and
//! decrypted, with `--identity`) and its etcd hash checked; a resource export is read entry by
//! entry against index.json, and with `--identity` every encrypted object is decrypted. The
//! message says exactly which of these ran.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::{BackupArg, KindArg, Output};

/// Examples shown after `lifeboat verify --help`.
pub const EXAMPLES: &str = "Examples:\n  lifeboat verify\n  lifeboat verify --backup latest --identity key.txt\n  lifeboat verify 20261202T101500Z-1a2b3c4d5e6f7a8b --kind etcd -o json";

/// Arguments of `verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup, as with --backup: `latest` or an id from `lifeboat list`.
    #[arg(value_name = "latest|ID", conflicts_with = "named")]
    pub positional: Option<String>,
    #[command(flatten)]
    pub backup: BackupArg,
    /// age identity file: also decrypt and check the snapshot inside.
    #[arg(long, short)]
    pub identity: Option<PathBuf>,
    /// Which kind of backup.
    #[arg(long, value_enum, default_value_t = KindArg::Etcd)]
    pub kind: KindArg,
}

/// `verify -o json` (docs/CLI.md).
#[derive(Serialize)]
struct Report<'a> {
    id: &'a str,
    kind: lifeboat::manifest::Kind,
    cluster: &'a str,
    /// Always true in a report: a mismatch fails the command.
    stored_ok: bool,
    stored_size: u64,
    encrypted: bool,
    /// The payload was decrypted (if encrypted) and decompressed, and its contents checked.
    decoded: bool,
    /// Plain bytes produced when decoded, else 0.
    plain_size: u64,
    archive: Option<ArchiveJson>,
    partial: bool,
    /// The text output's sentence.
    summary: String,
}

#[derive(Serialize)]
struct ArchiveJson {
    entries: u64,
    objects: u64,
    resources: u64,
    encrypted: u64,
    decrypted: u64,
}

/// Runs `verify`.
pub async fn run(config: &Path, output: Output, args: Args) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    let identities = super::load_identities(args.identity.as_deref())?;
    let store = super::open_store(&cfg)?;
    let which = args
        .positional
        .as_deref()
        .unwrap_or_else(|| args.backup.which());
    let manifest = store
        .resolve(&cfg.cluster, args.kind.into(), &which.parse()?)
        .await?;
    let progress = Arc::new(lifeboat::progress::Progress::default());
    let ticker = super::progress::Ticker::start(
        format!("Verifying backup {}", manifest.id),
        progress.clone(),
    );
    let outcome = lifeboat::restore::fetch_with_progress(
        &store,
        &manifest,
        identities.clone(),
        None,
        progress,
    )
    .await;
    ticker.finish().await;
    let outcome = outcome?;
    let summary = describe(&manifest, &outcome, identities.is_some());
    if output == Output::Json {
        let report = Report {
            id: manifest.id.as_str(),
            kind: manifest.kind,
            cluster: &manifest.cluster,
            stored_ok: outcome.stored_ok,
            stored_size: outcome.stored_size,
            encrypted: manifest.payload.encryption.is_encrypted(),
            decoded: outcome.decoded,
            plain_size: outcome.plain_size,
            archive: outcome.archive.as_ref().map(|a| ArchiveJson {
                entries: a.entries,
                objects: a.objects,
                resources: a.resources,
                encrypted: a.encrypted,
                decrypted: a.decrypted,
            }),
            partial: !manifest.is_full(),
            summary,
        };
        return super::print_json("verify", &report);
    }
    println!("{summary}");
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
