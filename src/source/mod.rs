//! Where backups come from. A source is a [`Producer`]: it streams a backup's plain bytes into
//! the pipeline through an [`Output`] and reports the facts that go into the manifest. The
//! backup run (`crate::backup::run`) does the rest the same way for every source.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::Error;
use crate::manifest::{self, BackupId, Kind};
use crate::progress::Progress;

pub mod etcd;
pub mod kube;

/// A source of one backup's plain bytes (an etcd snapshot, a resource archive) and of the facts
/// it reports for the manifest.
pub trait Producer {
    /// What the backup holds.
    fn kind(&self) -> Kind;

    /// The payload's file name before the encoding adds `.zst` (and `.age`): `snapshot.db`,
    /// `resources.tar`.
    fn stem(&self) -> &'static str;

    /// How many plain bytes it will produce, when known before it starts (for progress).
    fn expected_size(&self) -> Option<u64> {
        None
    }

    /// Logs that the run of backup `id` starts, with what the source knows about itself.
    fn log_start(&self, id: &BackupId);

    /// Streams the plain bytes into `out` and returns the manifest's facts about the source.
    fn produce(
        self,
        run: &Started,
        out: Output,
    ) -> impl Future<Output = Produced<manifest::Source>> + Send;
}

/// What a producer is told about the run it produces for.
#[derive(Debug, Clone)]
pub struct Started {
    /// The backup's id.
    pub id: BackupId,
    /// The cluster name from the configuration.
    pub cluster: String,
    /// When the run started (the manifest's `started_at`).
    pub started_at: DateTime<Utc>,
}

/// What a producer ended with.
#[derive(Debug)]
pub enum Produced<P> {
    /// It finished.
    Done(P),
    /// It stopped because a later stage went away (not the root cause).
    Cancelled,
    /// It failed on its own.
    Failed(Error),
}

/// Where a producer sends its plain bytes: the encode stage, counting every byte into the
/// run's [`Progress`].
#[derive(Debug, Clone)]
pub struct Output {
    tx: mpsc::Sender<Bytes>,
    progress: Arc<Progress>,
}

/// The later stages went away (they failed or the run was cancelled): stop producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl Output {
    /// An output into `tx`, counted into `progress`.
    pub fn new(tx: mpsc::Sender<Bytes>, progress: Arc<Progress>) -> Output {
        Output { tx, progress }
    }

    /// Hands on the next plain bytes, waiting while the encode stage is busy.
    pub async fn send(&self, chunk: Bytes) -> Result<(), Closed> {
        let n = chunk.len() as u64;
        self.tx.send(chunk).await.map_err(|_| Closed)?;
        self.progress.advance(n);
        Ok(())
    }
}
