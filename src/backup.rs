//! One backup run, end to end: preflight the store, connect to etcd, then run the three stages
//! at once (snapshot stream → encode thread → multipart upload) and write the manifest last.
//! Any failure aborts the upload and writes no manifest, so the backup does not exist.

use std::hash::{BuildHasher, Hasher};

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::{self, Config};
use crate::encode;
use crate::manifest::{self, BackupId, Compression, Encryption, Kind, Manifest, Payload};
use crate::source::{self, etcd};
use crate::store::{self, Store};

/// Plain snapshot chunks buffered between etcd and the encoder (etcd sends 32 KiB chunks).
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
    let status = member.status.clone();
    let started_at = Utc::now();
    let id = unused_id(store, &cfg.cluster, Kind::Etcd, started_at).await?;
    let settings = encode_settings(cfg);
    let name = settings.payload_name("snapshot.db");
    let key = store
        .backup_dir(&cfg.cluster, Kind::Etcd, &id)
        .join(name.as_str());
    tracing::info!(backup_id = %id, endpoint = %status.endpoint, revision = status.revision, db_size = status.db_size, "Snapshot started.");

    let mut upload = store.start_upload(key).await?;
    let (plain_tx, plain_rx) = mpsc::channel(PLAIN_CHANNEL);
    let (stored_tx, stored_rx) = mpsc::channel(STORED_CHANNEL);
    let encoder = encode::spawn(settings.clone(), plain_rx, stored_tx);
    let produce = async {
        match member.stream_snapshot(plain_tx).await {
            Ok(v) => Produced::Done(v),
            Err(etcd::Error::Cancelled) => Produced::Cancelled,
            Err(e) => Produced::Failed(e.into()),
        }
    };
    let (verified, tally) = run_stages(&mut upload, produce, encoder, stored_rx, cancel).await?;
    finish_unless_cancelled(upload, cancel).await?;

    let manifest = Manifest {
        version: manifest::FORMAT_VERSION,
        id,
        cluster: cfg.cluster.clone(),
        kind: Kind::Etcd,
        started_at,
        finished_at: Utc::now(),
        lifeboat_version: crate::VERSION.to_string(),
        etcd: Some(status.into_manifest(verified)),
        resources: None,
        payload: Payload {
            name,
            plain_size: tally.plain_size,
            stored_size: tally.stored_size,
            stored_sha256: tally.stored_sha256,
            compression: Compression {
                algorithm: "zstd".into(),
                level: settings.level,
            },
            encryption: match &settings.recipients {
                Some(r) => Encryption {
                    scheme: "age".into(),
                    recipients: r.iter().map(|r| r.to_string()).collect(),
                },
                None => Encryption {
                    scheme: "none".into(),
                    recipients: vec![],
                },
            },
        },
    };
    commit_unless_cancelled(store, &manifest, cancel).await?;
    tracing::info!(
        backup_id = %manifest.id,
        plain_bytes = manifest.payload.plain_size,
        stored_bytes = manifest.payload.stored_size,
        seconds = (manifest.finished_at - manifest.started_at).num_milliseconds() as f64 / 1000.0,
        "Backup committed."
    );
    Ok(manifest)
}

/// Exports every listable Kubernetes resource into `resources.tar.zst` and stores it. A
/// resource that fails to list makes the backup partial (recorded in index.json and the
/// manifest), not lost; the caller decides how to report it.
pub async fn resources(
    cfg: &Config,
    store: &Store,
    cancel: &CancellationToken,
) -> Result<Manifest, Error> {
    let recipients = match &cfg.encryption {
        config::Encryption::Age(r) => Some(r.clone()),
        config::Encryption::None => {
            tracing::warn!(cluster = %cfg.cluster, "Secrets are exported UNENCRYPTED because encryption.allow_unencrypted is set.");
            None
        }
    };
    store.preflight(&cfg.cluster, Kind::Resources).await?;
    let (client, api_server) = crate::kube::client_with_url(&cfg.kubernetes).await?;
    let discovered = source::kube::discover(&client, &cfg.resources).await?;
    let started_at = Utc::now();
    let id = unused_id(store, &cfg.cluster, Kind::Resources, started_at).await?;
    let name = "resources.tar.zst".to_string();
    let key = store
        .backup_dir(&cfg.cluster, Kind::Resources, &id)
        .join(name.as_str());
    tracing::info!(backup_id = %id, api_server = %api_server, resources = discovered.targets.len(), discovery = discovered.mode, "Resource export started.");

    let mut upload = store.start_upload(key).await?;
    let (item_tx, mut item_rx) = mpsc::channel::<source::kube::Item>(256);
    let (stored_tx, stored_rx) = mpsc::channel(STORED_CHANNEL);
    let level = cfg.compression_level;
    let mtime = started_at.timestamp().max(0) as u64;
    let archiver = tokio::task::spawn_blocking(move || {
        let mut archive =
            crate::archive::ArchiveWriter::new(encode::ChunkSender::new(stored_tx), level, mtime)
                .map_err(encode::Error::Io)?;
        while let Some(item) = item_rx.blocking_recv() {
            archive.add(&item.path, &item.data).map_err(classify_io)?;
        }
        let (_, tally) = archive.finish().map_err(classify_io)?;
        Ok(tally)
    });
    let produce = async {
        let mut results = Vec::with_capacity(discovered.targets.len());
        let mut encrypted_objects = 0;
        for target in &discovered.targets {
            match source::kube::export(
                &client,
                target,
                &cfg.resources,
                recipients.as_deref(),
                &item_tx,
            )
            .await
            {
                Ok(r) => {
                    encrypted_objects += r.encrypted;
                    results.push(r);
                }
                Err(_) => return Produced::Cancelled,
            }
        }
        let index = serde_json::json!({
            "version": 1,
            "cluster": cfg.cluster,
            "started_at": started_at,
            "api_server": api_server,
            "api_server_version": discovered.server_version,
            "discovery": discovered.mode,
            "objects": results.iter().map(|r| r.objects).sum::<u64>(),
            "encrypted_objects": encrypted_objects,
            "errors": results.iter().filter_map(|r| r.error.clone()).collect::<Vec<_>>(),
            "resources": results,
        });
        let item = source::kube::Item {
            path: "index.json".into(),
            data: serde_json::to_vec_pretty(&index).expect("index serializes"),
        };
        if item_tx.send(item).await.is_err() {
            return Produced::Cancelled;
        }
        drop(item_tx);
        Produced::Done((results, encrypted_objects))
    };
    let ((results, encrypted_objects), tally) =
        run_stages(&mut upload, produce, archiver, stored_rx, cancel).await?;
    finish_unless_cancelled(upload, cancel).await?;
    let errors: Vec<String> = results.iter().filter_map(|r| r.error.clone()).collect();
    let manifest = Manifest {
        version: manifest::FORMAT_VERSION,
        id,
        cluster: cfg.cluster.clone(),
        kind: Kind::Resources,
        started_at,
        finished_at: Utc::now(),
        lifeboat_version: crate::VERSION.to_string(),
        etcd: None,
        resources: Some(manifest::ResourcesSource {
            api_server,
            api_server_version: discovered.server_version,
            discovery: discovered.mode.to_string(),
            resource_count: results.len() as u64,
            objects: results.iter().map(|r| r.objects).sum(),
            encrypted_objects,
            encrypted_resources: cfg.resources.encrypt_resources.clone(),
            recipients: recipients.iter().flatten().map(|r| r.to_string()).collect(),
            partial: !errors.is_empty(),
            errors,
        }),
        payload: Payload {
            name,
            plain_size: tally.plain_size,
            stored_size: tally.stored_size,
            stored_sha256: tally.stored_sha256,
            compression: Compression {
                algorithm: "zstd".into(),
                level,
            },
            encryption: Encryption {
                scheme: "none".into(),
                recipients: vec![],
            },
        },
    };
    commit_unless_cancelled(store, &manifest, cancel).await?;
    let info = manifest.resources.as_ref().expect("set above");
    tracing::info!(backup_id = %manifest.id, objects = info.objects, encrypted = info.encrypted_objects, stored_bytes = manifest.payload.stored_size, partial = info.partial, "Resource export committed.");
    Ok(manifest)
}

/// Completes the upload, unless the run was cancelled (shutdown, or leadership lost) after its
/// stages ended: then the upload is aborted instead.
async fn finish_unless_cancelled(
    upload: store::Upload,
    cancel: &CancellationToken,
) -> Result<(), store::Error> {
    if cancel.is_cancelled() {
        return Err(upload
            .abort("the run was cancelled (shutdown or leadership lost)".into())
            .await);
    }
    upload.finish().await
}

/// Writes the manifest, unless the run was cancelled meanwhile: a replica that lost its lease
/// must not commit a backup after a standby may have started its own. The payload stays as an
/// incomplete directory, which the sweep removes.
async fn commit_unless_cancelled(
    store: &Store,
    manifest: &Manifest,
    cancel: &CancellationToken,
) -> Result<(), store::Error> {
    if cancel.is_cancelled() {
        return Err(store::Error::CommitCancelled {
            key: store.describe(
                &store
                    .backup_dir(&manifest.cluster, manifest.kind, &manifest.id)
                    .join(manifest::MANIFEST_NAME),
            ),
        });
    }
    store.commit(manifest).await
}

fn classify_io(e: std::io::Error) -> encode::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        encode::Error::OutputClosed
    } else {
        encode::Error::Io(e)
    }
}

/// What the producing stage (etcd stream, resource export) ended with.
enum Produced<P> {
    /// It finished.
    Done(P),
    /// It stopped because a later stage went away (not the root cause).
    Cancelled,
    /// It failed on its own.
    Failed(Error),
}

/// Runs the three stages at once: the producer, the encoder thread (`encoder`, fed by the
/// producer) and the uploader (draining `stored_rx` into `upload`). On any failure or on
/// `cancel`, the upload is aborted and the root cause is returned: a stage that failed on its
/// own, not one that stopped because its neighbour did.
async fn run_stages<P>(
    upload: &mut store::Upload,
    produce: impl std::future::Future<Output = Produced<P>>,
    encoder: tokio::task::JoinHandle<Result<encode::Tally, encode::Error>>,
    stored_rx: mpsc::Receiver<bytes::Bytes>,
    cancel: &CancellationToken,
) -> Result<(P, encode::Tally), Error> {
    let outcome = {
        let pipeline = async {
            // The uploader owns the receiver: when an upload fails it is dropped, the encoder's
            // next send fails, and the producer stops, instead of all three waiting on full channels.
            let uploading = async {
                let mut stored_rx = stored_rx;
                while let Some(chunk) = stored_rx.recv().await {
                    upload.write(chunk).await?;
                }
                Ok::<(), object_store::Error>(())
            };
            let (produced, uploaded) = tokio::join!(produce, uploading);
            let encoded = encoder
                .await
                .unwrap_or_else(|e| Err(encode::Error::Io(std::io::Error::other(e))));
            (produced, encoded, uploaded)
        };
        tokio::select! {
            results = pipeline => Some(results),
            _ = cancel.cancelled() => None,
        }
    };
    let (produced, encoded, uploaded) = match outcome {
        Some(r) => r,
        None => {
            return Err(upload
                .abort_in_place("the run was cancelled (shutdown)".into())
                .await
                .into());
        }
    };
    if let Err(e) = uploaded {
        return Err(upload.abort_after(e).await.into());
    }
    let failure: Error = match (produced, encoded) {
        (Produced::Done(p), Ok(t)) => return Ok((p, t)),
        (Produced::Failed(e), _) => e,
        (_, Err(e)) if !matches!(e, encode::Error::OutputClosed) => e.into(),
        (Produced::Cancelled, _) => encode::Error::OutputClosed.into(),
        (Produced::Done(_), Err(e)) => e.into(),
    };
    match upload.abort_in_place(crate::error::chain(&failure)).await {
        store::Error::UploadStopped {
            abort: store::AbortOutcome::Failed(why),
            key,
            ..
        } => {
            tracing::warn!(key, error = %crate::error::chain(why.as_ref()), "Aborting the partial upload failed; its parts stay until a bucket lifecycle rule with AbortIncompleteMultipartUpload removes them.")
        }
        other => {
            tracing::debug!(error = %crate::error::chain(&other), "Upload aborted after an earlier stage failed.")
        }
    }
    Err(failure)
}
