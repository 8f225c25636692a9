//! One backup run, end to end: any [`Producer`] (an etcd snapshot, a resource export) and a
//! [`Store`] go through [`run`], which picks the id, runs the three stages at once (producer →
//! encode thread → multipart upload, in `stages`) and writes the manifest last, built in one
//! place. Any failure aborts the upload and writes no manifest, so the backup does not exist.
//! [`etcd`] and [`resources`] open their producer from the configuration and call [`run`].

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::{self, Config};
use crate::encode;
use crate::manifest::{self, BackupId, Compression, Encryption, Kind, Manifest, Payload};
use crate::objects::Selection;
use crate::progress::Progress;
use crate::source::{self, Output, Producer, Started, etcd};
use crate::store::{self, Store};

mod stages;

use stages::{commit_unless_cancelled, finish_unless_cancelled, run_stages};

/// Plain chunks buffered between the producer and the encoder (etcd sends 32 KiB chunks; the
/// resource export gathers its tar stream into chunks of that size).
const PLAIN_CHANNEL: usize = 64;
/// Encoded chunks ([`encode::OUTPUT_CHUNK`]) buffered between the encoder and the uploader.
const STORED_CHANNEL: usize = 4;

/// A fresh id for a backup starting now, with 64 bits from the operating system's random
/// source: two runs in the same second (two replicas, a retry, a manual run beside the service)
/// collide with a probability of 2^-64, and the store refuses the rare collision anyway.
pub fn new_id(now: chrono::DateTime<Utc>) -> BackupId {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No OS randomness (never seen on Linux): a randomly keyed SipHash of the time still
        // differs between processes; the store's empty-directory check catches a collision.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i64(now.timestamp_nanos_opt().unwrap_or_default());
        h.write_u32(std::process::id());
        bytes = h.finish().to_le_bytes();
    }
    BackupId::new(now, u64::from_le_bytes(bytes))
}

/// A fresh id whose directory in the store is empty, so the payload is never written over an
/// existing object: with 64 random bits a collision is all but impossible, and the store is
/// asked anyway. (The manifest is written create-only on top of this.)
pub async fn unused_id(
    store: &Store,
    cluster: &str,
    kind: Kind,
    now: chrono::DateTime<Utc>,
) -> Result<BackupId, store::Error> {
    let mut tries = 0;
    loop {
        let id = new_id(now);
        match store.ensure_unused(cluster, kind, &id).await {
            Ok(()) => return Ok(id),
            Err(e @ store::Error::IdTaken { .. }) if tries < 3 => {
                tracing::warn!(backup_id = %id, error = %e, "A new backup id was taken; picking another.");
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The encode settings the configuration asks for.
pub fn encode_settings(cfg: &Config) -> encode::Settings {
    encode::Settings {
        level: cfg.compression_level,
        recipients: match &cfg.encryption {
            config::Encryption::Age(r) => Some(r.clone()),
            config::Encryption::None => None,
        },
    }
}

/// Takes one etcd snapshot and stores it. Returns the committed manifest. `cancel` stops the
/// run cleanly: the upload is aborted and no manifest is written.
pub async fn etcd(
    cfg: &Config,
    store: &Store,
    cancel: &CancellationToken,
) -> Result<Manifest, Error> {
    etcd_with_progress(cfg, store, cancel, Arc::default()).await
}

/// [`etcd`], counting the snapshot's bytes into `progress` as etcd sends them; the total is the
/// database size the member reported.
pub async fn etcd_with_progress(
    cfg: &Config,
    store: &Store,
    cancel: &CancellationToken,
    progress: Arc<Progress>,
) -> Result<Manifest, Error> {
    let etcd_cfg = cfg.etcd.as_ref().ok_or_else(|| config::Error::Missing {
        path: cfg.path.clone(),
        field: "etcd".into(),
        message: "no etcd section: add etcd.endpoints (and etcd.tls for https) to back up etcd"
            .into(),
    })?;
    if matches!(cfg.encryption, config::Encryption::None) {
        tracing::warn!(cluster = %cfg.cluster, "Backups are stored UNENCRYPTED because encryption.allow_unencrypted is set; anyone who can read the store can read every Secret.");
    }
    store.preflight(&cfg.cluster, Kind::Etcd).await?;
    let member = etcd::connect(etcd_cfg).await?;
    run(
        member,
        store,
        &cfg.cluster,
        encode_settings(cfg),
        cancel,
        progress,
    )
    .await
}

/// Exports every listable Kubernetes resource into `resources.tar.zst` and stores it. A
/// resource that fails to list makes the backup partial (recorded in index.json and the
/// manifest), not lost; the caller decides how to report it.
pub async fn resources(
    cfg: &Config,
    store: &Store,
    cancel: &CancellationToken,
) -> Result<Manifest, Error> {
    resources_with_progress(cfg, store, cancel, Arc::default()).await
}

/// [`resources`], counting the archive's plain (tar) bytes into `progress` as they are
/// produced; the total is not known beforehand.
pub async fn resources_with_progress(
    cfg: &Config,
    store: &Store,
    cancel: &CancellationToken,
    progress: Arc<Progress>,
) -> Result<Manifest, Error> {
    let recipients = match &cfg.encryption {
        config::Encryption::Age(r) => Some(r.clone()),
        config::Encryption::None => {
            tracing::warn!(cluster = %cfg.cluster, "Secrets are exported UNENCRYPTED because encryption.allow_unencrypted is set.");
            None
        }
    };
    store.preflight(&cfg.cluster, Kind::Resources).await?;
    let (client, api_server) = crate::kubernetes::client_with_url(&cfg.kubernetes).await?;
    let selection = Selection::from(&cfg.resources);
    let discovered = source::kube::discover(&client, &selection).await?;
    let export = source::kube::Export {
        client,
        api_server,
        discovered,
        selection,
        page_size: cfg.resources.page_size,
        recipients,
    };
    // The archive is not encrypted as a whole: the objects of encrypted resources are, each
    // on its own, so that `tar --zstd -t` lists the export.
    let encoding = encode::Settings {
        level: cfg.compression_level,
        recipients: None,
    };
    run(export, store, &cfg.cluster, encoding, cancel, progress).await
}

/// Runs one backup of `producer` into `store` under `cluster`, encoded with `encoding`, and
/// returns the committed manifest. The store is expected to be preflighted
/// ([`Store::preflight`]) before the producer was opened, so a broken store is reported before
/// the source is touched. `progress` counts the plain bytes the producer hands on, with its
/// expected size as the total when it knows it. `cancel` stops the run cleanly: the upload is
/// aborted and no manifest is written.
pub async fn run<P: Producer>(
    producer: P,
    store: &Store,
    cluster: &str,
    encoding: encode::Settings,
    cancel: &CancellationToken,
    progress: Arc<Progress>,
) -> Result<Manifest, Error> {
    if let Some(total) = producer.expected_size() {
        progress.set_total(total);
    }
    let kind = producer.kind();
    let started_at = Utc::now();
    let id = unused_id(store, cluster, kind, started_at).await?;
    let name = encoding.payload_name(producer.stem());
    let key = store.backup_dir(cluster, kind, &id).join(name.as_str());
    producer.log_start(&id);

    let mut upload = store.start_upload(key).await?;
    let (plain_tx, plain_rx) = mpsc::channel(PLAIN_CHANNEL);
    let (stored_tx, stored_rx) = mpsc::channel(STORED_CHANNEL);
    let encoder = encode::spawn(encoding.clone(), plain_rx, stored_tx);
    let started = Started {
        id,
        cluster: cluster.to_string(),
        started_at,
    };
    let produce = producer.produce(&started, Output::new(plain_tx, progress));
    let (source, tally) = run_stages(&mut upload, produce, encoder, stored_rx, cancel).await?;
    finish_unless_cancelled(upload, cancel).await?;
    debug_assert_eq!(
        source.kind(),
        kind,
        "a producer reports facts of its own kind"
    );

    let manifest = Manifest::new(manifest::Run {
        id: started.id,
        cluster: started.cluster,
        started_at,
        finished_at: Utc::now(),
        source,
        payload: Payload {
            name,
            plain_size: tally.plain_size,
            stored_size: tally.stored_size,
            stored_sha256: tally.stored_sha256,
            compression: Compression {
                algorithm: "zstd".into(),
                level: encoding.level,
            },
            encryption: Encryption::to(encoding.recipients.as_deref()),
        },
    });
    commit_unless_cancelled(store, &manifest, cancel).await?;
    match &manifest.resources {
        Some(info) => {
            tracing::info!(backup_id = %manifest.id, objects = info.objects, encrypted = info.encrypted_objects, stored_bytes = manifest.payload.stored_size, partial = info.partial, "Resource export committed.")
        }
        None => tracing::info!(
            backup_id = %manifest.id,
            plain_bytes = manifest.payload.plain_size,
            stored_bytes = manifest.payload.stored_size,
            seconds = (manifest.finished_at - manifest.started_at).num_milliseconds() as f64 / 1000.0,
            "Backup committed."
        ),
    }
    Ok(manifest)
}
