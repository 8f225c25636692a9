//! The configuration file: `raw` mirrors the YAML (its doc comments are the reference for every
//! field and the descriptions of config/lifeboat.schema.json), `validate` turns it into the
//! runtime [`Config`] defined here, which cannot be invalid. Errors name the file, line and
//! column, the field, and what to do.

mod raw;
pub mod schema;
mod validate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use url::Url;

/// Where the configuration is read from when neither `--config` nor `LIFEBOAT_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/lifeboat/lifeboat.yaml";

/// Why the configuration could not be used.
#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "could not read the config file {path}: {source}; pass --config FILE or set LIFEBOAT_CONFIG"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        line: u64,
        column: u64,
        field: String,
        message: String,
    },
    #[error("{path}: {field}: {message}")]
    Missing {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Names the cluster in object keys: 1 to 63 of `a-z`, `0-9`, `-`.
    pub cluster: String,
    /// Object storage.
    pub storage: Storage,
    /// Encryption of payloads.
    pub encryption: Encryption,
    /// zstd level, 1 to 19.
    pub compression_level: i32,
    /// The etcd cluster, when configured.
    pub etcd: Option<Etcd>,
    /// The plans `serve` runs, at most one per kind; empty when nothing is scheduled.
    pub plans: Vec<Plan>,
    /// `serve`'s HTTP server.
    pub server: Server,
    /// Lease-based leader election, when enabled.
    pub leader_election: Option<LeaderElection>,
    /// Kubernetes access.
    pub kubernetes: Kubernetes,
    /// Restore drill settings.
    pub drill: Drill,
    /// Resource export settings.
    pub resources: Resources,
}

/// Validated `resources:`.
#[derive(Debug, Clone)]
pub struct Resources {
    /// Only these namespaces (empty: all).
    pub include_namespaces: Vec<String>,
    /// Skip these namespaces (empty: none).
    pub exclude_namespaces: Vec<String>,
    /// Only these resources (empty: all).
    pub include_resources: Vec<String>,
    /// Skip these resources, as `plural` or `plural.group`.
    pub exclude_resources: Vec<String>,
    /// Encrypt each object of these resources.
    pub encrypt_resources: Vec<String>,
    /// Objects per LIST page, 1 to 10000.
    pub page_size: u32,
    /// Resource keys `restore resources --apply` never applies.
    pub restore_skip_resources: Vec<String>,
}

impl Default for Resources {
    fn default() -> Self {
        let r = raw::RawResources::default();
        Resources {
            include_namespaces: r.include_namespaces,
            exclude_namespaces: r.exclude_namespaces,
            include_resources: r.include_resources,
            exclude_resources: r.exclude_resources,
            encrypt_resources: r.encrypt_resources,
            page_size: r.page_size,
            restore_skip_resources: r.restore_skip_resources,
        }
    }
}

/// Validated `drill:` and `schedules.drill:`.
#[derive(Debug, Clone, Default)]
pub struct Drill {
    /// When the service drills, if at all.
    pub schedule: Option<crate::policy::schedule::Schedule>,
    /// Identity file for decrypting (checked private at load).
    pub identity_file: Option<PathBuf>,
    /// Directory with etcd and etcdutl; `None`: found on PATH.
    pub etcd_bin_dir: Option<PathBuf>,
}

/// A validated schedule: what runs when, and what is kept.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan's name, also its metric label (`etcd`).
    pub name: String,
    /// The kind of backup it takes.
    pub kind: crate::manifest::Kind,
    /// When it runs.
    pub schedule: crate::policy::schedule::Schedule,
    /// What retention keeps; `None` keeps everything.
    pub retention: Option<crate::policy::retention::RetentionPolicy>,
    /// How often a failed run is retried before it counts as failed.
    pub retries: u32,
    /// Wait before the first retry; doubles for each further one.
    pub retry_backoff: Duration,
    /// Age after which manifest-less id directories are swept.
    pub sweep_incomplete_after: Duration,
}

/// Validated `server:`.
#[derive(Debug, Clone)]
pub struct Server {
    /// Where /metrics, /healthz and /readyz are served.
    pub listen: std::net::SocketAddr,
    /// How long a running backup may finish after SIGTERM before it is aborted.
    pub shutdown_grace: Duration,
}

/// Validated `leader_election:` (only when enabled).
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// Namespace of the Lease object.
    pub namespace: String,
    /// Name of the coordination.k8s.io Lease object.
    pub lease_name: String,
    /// How long the Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews and a standby retries; at most half of lease_duration.
    pub renew_interval: Duration,
    /// This replica's holder name in the Lease ($POD_NAME or the host name by default).
    pub identity: String,
}

/// Validated `kubernetes:`.
#[derive(Debug, Clone, Default)]
pub struct Kubernetes {
    /// A kubeconfig file, readable at load; `None`: in-cluster, then KUBECONFIG.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context; `None`: its current context.
    pub context: Option<String>,
}

/// Validated `storage:`.
#[derive(Debug, Clone)]
pub struct Storage {
    /// `s3://` or `file://`.
    pub url: Url,
    /// S3 settings (ignored for `file://`).
    pub s3: S3,
    /// Multipart part size in bytes.
    pub part_size: usize,
    /// Parts uploaded or downloaded at once, 1 to 16.
    pub upload_concurrency: usize,
    /// Longest one upload request, or a silent download part, may take.
    pub request_timeout: Duration,
    /// How long failing requests are retried with backoff before the operation fails.
    pub retry_timeout: Duration,
}

/// Validated `storage.s3:`.
#[derive(Debug, Clone, Default)]
pub struct S3 {
    /// http(s) URL of an S3-compatible server, without a trailing `/`; `None`: AWS.
    pub endpoint: Option<String>,
    /// `None`: AWS_REGION, then us-east-1.
    pub region: Option<String>,
    /// Whether a plain-http endpoint is allowed.
    pub allow_http: bool,
    /// `bucket.endpoint/key` requests instead of `endpoint/bucket/key`.
    pub virtual_hosted_style: bool,
    /// Static credentials read from files, if configured.
    pub credentials: Option<StaticCredentials>,
}

/// An access key pair read from files. Debug never shows the secret.
#[derive(Clone)]
pub struct StaticCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Validated `encryption:`.
#[derive(Debug, Clone)]
pub enum Encryption {
    /// Encrypt to these age recipients.
    Age(Vec<age::x25519::Recipient>),
    /// Explicitly allowed: no encryption.
    None,
}

/// Validated `etcd:`.
#[derive(Debug, Clone)]
pub struct Etcd {
    /// Client URLs, in order of preference.
    pub endpoints: Vec<Url>,
    /// TLS material, for https endpoints.
    pub tls: Option<Tls>,
    /// Connect timeout, and the longest etcd may be silent while streaming.
    pub timeout: Duration,
}

/// Validated `etcd.tls:`; the files existed and were readable when the config was loaded.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The CA bundle that signed etcd's server certificate.
    pub ca_file: PathBuf,
    /// Client certificate and its key (checked private at load), when etcd checks clients.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates `text`; `path` is only used in messages and to resolve nothing else.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Error> {
        let raw: raw::RawConfig = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            Error::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: first_line(&e.to_string()),
            }
        })?;
        validate::config(path, raw)
    }
}

/// The parser's message without its own "error: line N column M:" prefix (the location is
/// reported separately) and without any extra lines.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    let line = line.strip_prefix("error:").unwrap_or(line).trim_start();
    match line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((location, text)) if location.contains("column") => text.to_string(),
        _ => line.to_string(),
    }
}
