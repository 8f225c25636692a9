//! The crate's error: one variant per pipeline module, each carrying that module's typed error.
//! `stage()` says where in the pipeline a backup failed, for logs and metrics.

use thiserror::Error;

/// Where in the pipeline something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Reading or validating the configuration, or loading keys.
    Config,
    /// Talking to etcd or reading its snapshot stream.
    Snapshot,
    /// Compressing or encrypting.
    Encode,
    /// Writing to or reading from the object store.
    Upload,
    /// Writing the manifest that makes a backup exist.
    Commit,
    /// Downloading, verifying or decrypting a stored backup.
    Restore,
}

impl Stage {
    /// The lower-case name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Config => "config",
            Stage::Snapshot => "snapshot",
            Stage::Encode => "encode",
            Stage::Upload => "upload",
            Stage::Commit => "commit",
            Stage::Restore => "restore",
        }
    }
}

/// Everything that can go wrong in lifeboat, by pipeline module.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    #[error(transparent)]
    Keys(#[from] crate::keys::Error),
    #[error(transparent)]
    Etcd(#[from] crate::source::etcd::Error),
    #[error(transparent)]
    Kube(#[from] crate::source::kube::Error),
    #[error(transparent)]
    KubeClient(#[from] crate::kube::Error),
    #[error(transparent)]
    Encode(#[from] crate::encode::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::Error),
    #[error(transparent)]
    Restore(#[from] crate::restore::Error),
}

impl Error {
    /// The pipeline stage this error belongs to.
    pub fn stage(&self) -> Stage {
        match self {
            Error::Config(_) | Error::Keys(_) => Stage::Config,
            Error::Etcd(_) | Error::Kube(_) | Error::KubeClient(_) => Stage::Snapshot,
            Error::Encode(_) => Stage::Encode,
            Error::Store(e) if e.is_commit() => Stage::Commit,
            Error::Store(_) => Stage::Upload,
            Error::Manifest(_) | Error::Restore(_) => Stage::Restore,
        }
    }
}
