//! lifeboat keeps Kubernetes clusters recoverable: it streams etcd snapshots through zstd and age
//! into object storage, writes a manifest last so that only whole backups exist, and reads them
//! back for verification and restore. The modules follow the pipeline, source to store.

pub mod apply;
pub mod archive;
pub mod backup;
pub mod config;
pub mod drill;
pub mod encode;
pub mod error;
pub mod keys;
pub mod kube;
pub mod leader;
pub mod manifest;
pub mod metrics;
pub mod objects;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod restore;
pub mod retention;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod source;
pub mod store;

pub use error::{Error, Stage};

/// The version of this build, recorded in every manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
