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
use crate::source::etcd;
use crate::store::{self, Store};

/// Plain snapshot chunks buffered between etcd and the encoder (etcd sends 32 KiB chunks).
const PLAIN_CHANNEL: usize = 64;
/// Encoded chunks ([`encode::OUTPUT_CHUNK`]) buffered between the encoder and the uploader.
const STORED_CHANNEL: usize = 4;

/// A fresh id for a backup starting now.
pub fn new_id(now: chrono::DateTime<Utc>) -> BackupId {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    BackupId::new(now, random as u16)
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
    let id = new_id(started_at);
    let settings = encode_settings(cfg);
    let name = settings.payload_name("snapshot.db");
    let key = store
        .backup_dir(&cfg.cluster, Kind::Etcd, id.as_str())
        .join(name.as_str());
    tracing::info!(backup_id = %id, endpoint = %status.endpoint, revision = status.revision, db_size = status.db_size, "Snapshot started.");

    let mut upload = store.start_upload(key).await?;
    let (plain_tx, plain_rx) = mpsc::channel(PLAIN_CHANNEL);
    let (stored_tx, stored_rx) = mpsc::channel(STORED_CHANNEL);
    let encoder = encode::spawn(settings.clone(), plain_rx, stored_tx);
    let pipeline = async {
        // The uploader owns the receiver: when an upload fails it is dropped, the encoder's next
        // send fails, and the snapshot stream stops, instead of all three waiting on full channels.
        let uploading = async {
            let mut stored_rx = stored_rx;
            while let Some(chunk) = stored_rx.recv().await {
                upload.write(chunk).await?;
            }
            Ok::<(), object_store::Error>(())
        };
        let (snapshot, uploaded) = tokio::join!(member.stream_snapshot(plain_tx), uploading);
        let encoded = encoder
            .await
            .unwrap_or_else(|e| Err(encode::Error::Io(std::io::Error::other(e))));
        (snapshot, encoded, uploaded)
    };
    let outcome = tokio::select! {
        results = pipeline => Some(results),
        _ = cancel.cancelled() => None,
    };
    let (verified, tally) = match outcome {
        None => {
            return Err(upload
                .abort("the run was cancelled (shutdown)".into())
                .await
                .into());
        }
        Some((snapshot, encoded, uploaded)) => match root_cause(snapshot, encoded, uploaded) {
            Ok(done) => done,
            Err(Failure::Upload(e)) => return Err(upload.abort(store::chain(&e)).await.into()),
            Err(Failure::Other(e)) => {
                match upload.abort(e.to_string()).await {
                    store::Error::Upload {
                        abort: store::AbortOutcome::Failed(why),
                        key,
                        ..
                    } => {
                        tracing::warn!(key, error = %why, "Aborting the partial upload failed; its parts stay until a bucket lifecycle rule with AbortIncompleteMultipartUpload removes them.")
                    }
                    other => {
                        tracing::debug!(error = %other, "Upload aborted after an earlier stage failed.")
                    }
                }
                return Err(e);
            }
        },
    };
    upload.finish().await?;

    let manifest = Manifest {
        version: manifest::FORMAT_VERSION,
        id,
        cluster: cfg.cluster.clone(),
        kind: Kind::Etcd,
        started_at,
        finished_at: Utc::now(),
        lifeboat_version: crate::VERSION.to_string(),
        etcd: Some(status.into_manifest(verified)),
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
    store.commit(&manifest).await?;
    tracing::info!(
        backup_id = %manifest.id,
        plain_bytes = manifest.payload.plain_size,
        stored_bytes = manifest.payload.stored_size,
        seconds = (manifest.finished_at - manifest.started_at).num_milliseconds() as f64 / 1000.0,
        "Backup committed."
    );
    Ok(manifest)
}

enum Failure {
    Upload(object_store::Error),
    Other(Error),
}

/// Picks the error that explains a failed pipeline: a stage that failed on its own, not one
/// that stopped because its neighbour did.
fn root_cause(
    snapshot: Result<crate::snapshot::Verified, etcd::Error>,
    encoded: Result<encode::Tally, encode::Error>,
    uploaded: Result<(), object_store::Error>,
) -> Result<(crate::snapshot::Verified, encode::Tally), Failure> {
    if let Err(e) = uploaded {
        return Err(Failure::Upload(e));
    }
    match (snapshot, encoded) {
        (Ok(v), Ok(t)) => Ok((v, t)),
        (Err(e), _) if !matches!(e, etcd::Error::Cancelled) => Err(Failure::Other(e.into())),
        (_, Err(e)) if !matches!(e, encode::Error::OutputClosed) => Err(Failure::Other(e.into())),
        (Err(e), _) => Err(Failure::Other(e.into())),
        (_, Err(e)) => Err(Failure::Other(e.into())),
    }
}
