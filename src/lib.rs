//! lifeboat keeps Kubernetes clusters recoverable: it streams etcd snapshots through zstd and age
//! into object storage, writes a manifest last so that only whole backups exist, and reads them
//! back for verification and restore. The modules are grouped below by role: pure policy, the
//! backup format, the pipeline (source to store), getting backups back, and the service.

// Pure policy: what runs when, and what is kept (no I/O).
pub mod policy;

// The format of a backup: its manifest, the archive of an export, etcd's snapshot trailer.
pub mod archive;
pub mod manifest;
pub mod snapshot;

// The backup pipeline, source to store: the sources (an etcd member, the Kubernetes API), the
// stream of cleaned objects, encoding (zstd, age, sha256), the run that ties them together.
pub mod backup;
pub mod encode;
pub mod objects;
pub mod source;
pub mod store;

// Getting backups back and using them: download and verify, the guided etcd restore, drills,
// applying objects to a cluster and diffing them, reading objects out of etcd snapshots,
// retention's deletions.
pub mod apply;
pub mod drill;
pub mod prune;
/// Objects read straight out of an etcd snapshot (no API server, no running etcd).
pub mod registry;
pub mod restore;

// The long-running service: the job runner, leader election, /metrics and health.
pub mod service;

// Shared: configuration, keys, the Kubernetes client, errors, progress counters.
pub mod config;
pub mod error;
pub mod keys;
pub mod kubernetes;
pub mod progress;

pub use error::{Error, Stage};

/// The version of this build, recorded in every manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
