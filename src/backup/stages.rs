//! The three stages of a backup run, at once: the producer, the encode thread (zstd, age) and
//! the multipart upload, with the rules for ending them: the root cause of a failure wins, and
//! any failure or cancellation aborts the upload so that no manifest is written.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::encode;
use crate::manifest::{self, Manifest};
use crate::source::Produced;
use crate::store::{self, Store};

/// Completes the upload, unless the run was cancelled (shutdown, or leadership lost) after its
/// stages ended: then the upload is aborted instead.
pub(super) async fn finish_unless_cancelled(
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
pub(super) async fn commit_unless_cancelled(
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

/// Runs the three stages at once: the producer, the encoder thread (`encoder`, fed by the
/// producer) and the uploader (draining `stored_rx` into `upload`). On any failure or on
/// `cancel`, the upload is aborted and the root cause is returned: a stage that failed on its
/// own, not one that stopped because its neighbour did.
pub(super) async fn run_stages<P>(
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
