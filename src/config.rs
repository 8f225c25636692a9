//! The configuration file: serde structs that mirror the YAML (every field documented here is
//! the reference), defaults, and validation into a runtime [`Config`] that cannot be invalid.
//! Errors name the file, line and column, the field, and what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;
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

// ---------------------------------------------------------------------------------------------
// The file as written. These doc comments are the reference for every field.
// ---------------------------------------------------------------------------------------------

/// The top level of lifeboat.yaml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Names the cluster in every object key and manifest: lower-case letters, digits and `-`,
    /// at most 63 characters.
    cluster: Spanned<String>,
    /// Where backups are stored.
    storage: RawStorage,
    /// How backups are encrypted. Required: lifeboat refuses to run without recipients unless
    /// `allow_unencrypted: true` is set.
    encryption: Option<RawEncryption>,
    /// How backups are compressed.
    #[serde(default)]
    compression: RawCompression,
    /// The etcd cluster to snapshot. Needed by `backup etcd`.
    etcd: Option<RawEtcd>,
    /// What `lifeboat serve` runs when, and how long backups are kept. One plan per kind.
    #[serde(default)]
    schedules: Option<RawSchedules>,
    /// The HTTP server of `lifeboat serve` (/metrics, /healthz, /readyz).
    #[serde(default)]
    server: Option<RawServer>,
    /// Only one replica runs the schedules: the holder of a Kubernetes Lease.
    #[serde(default)]
    leader_election: Option<RawLeaderElection>,
    /// How to reach the Kubernetes API (leader election, resource exports).
    #[serde(default)]
    kubernetes: Option<RawKubernetes>,
    /// Restore drills (`lifeboat drill`, and `schedules.drill` in the service).
    #[serde(default)]
    drill: Option<RawDrill>,
    /// What `backup resources` exports from the Kubernetes API.
    #[serde(default)]
    resources: Option<RawResources>,
}

/// `resources:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    /// Only these namespaces (default: all). Cluster-scoped objects are always exported.
    #[serde(default)]
    include_namespaces: Vec<String>,
    /// Skip these namespaces.
    #[serde(default)]
    exclude_namespaces: Vec<String>,
    /// Only these resources, as `plural.group` (`deployments.apps`) or `plural` for the core
    /// group (`configmaps`). Default: every resource that supports list.
    #[serde(default)]
    include_resources: Vec<String>,
    /// Skip these resources. Default: events (core and events.k8s.io).
    #[serde(default = "default_exclude_resources")]
    exclude_resources: Vec<String>,
    /// Resources whose objects are each encrypted to the recipients (`<name>.yaml.age`).
    #[serde(default = "default_encrypt_resources")]
    encrypt_resources: Vec<String>,
    /// Objects per LIST page (the export holds about one page in memory).
    #[serde(default = "default_page_size")]
    page_size: u32,
}

impl Default for RawResources {
    fn default() -> Self {
        RawResources {
            include_namespaces: vec![],
            exclude_namespaces: vec![],
            include_resources: vec![],
            exclude_resources: default_exclude_resources(),
            encrypt_resources: default_encrypt_resources(),
            page_size: default_page_size(),
        }
    }
}

fn default_exclude_resources() -> Vec<String> {
    vec!["events".into(), "events.events.k8s.io".into()]
}
fn default_encrypt_resources() -> Vec<String> {
    vec!["secrets".into()]
}
fn default_page_size() -> u32 {
    500
}

/// `drill:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrill {
    /// age identity used to decrypt drilled backups. A drill needs the private key: keep it
    /// where the drills run (mode 0600); without it `lifeboat drill --identity` must be used.
    /// It must hold the identity of at least one of `encryption.recipients`.
    identity_file: Option<Spanned<String>>,
    /// Directory with etcd and etcdutl (or etcd 3.4's etcdctl). Default: found on PATH.
    etcd_bin_dir: Option<Spanned<String>>,
}

/// `schedules:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedules {
    /// The etcd snapshot plan.
    etcd: Option<RawPlan>,
    /// The Kubernetes resource export plan.
    resources: Option<RawPlan>,
    /// Restore drills of the newest etcd backup (needs `drill.identity_file`).
    drill: Option<RawDrillPlan>,
}

/// `schedules.drill:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrillPlan {
    /// When to drill, same syntax as the backup plans (e.g. "30 4 * * SUN").
    cron: Spanned<String>,
    /// IANA time zone of the expression. Default UTC.
    time_zone: Option<Spanned<String>>,
}

/// `schedules.<plan>:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    /// Standard 5-field cron (`0 */6 * * *`), 6 fields with seconds first, or @hourly/@daily/
    /// @weekly/@monthly/@yearly. Day-of-month and day-of-week are OR'ed as in standard cron.
    cron: Spanned<String>,
    /// IANA time zone the cron expression is read in, e.g. Europe/Berlin. Default UTC. Runs stay
    /// at the same local time across daylight-saving changes.
    time_zone: Option<Spanned<String>>,
    /// Which complete backups to keep after each successful run (restic `forget` semantics;
    /// max_age caps everything; the newest complete backup is never deleted). No retention
    /// section: nothing is ever deleted.
    retention: Option<Spanned<crate::retention::RetentionPolicy>>,
    /// How often a failed run is retried before it counts as failed.
    #[serde(default = "default_retries")]
    retries: u32,
    /// Wait before the first retry; doubles for each further one.
    #[serde(default = "default_retry_backoff")]
    retry_backoff: Spanned<String>,
    /// Id directories without a manifest (crashed runs) older than this are deleted by retention.
    #[serde(default = "default_sweep_after")]
    sweep_incomplete_after: Spanned<String>,
}

/// `server:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    /// Address the HTTP server listens on.
    #[serde(default = "default_listen")]
    listen: Spanned<String>,
    /// On SIGTERM, how long a running backup may take to finish before it is aborted.
    #[serde(default = "default_shutdown_grace")]
    shutdown_grace: Spanned<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

/// `leader_election:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeaderElection {
    /// Run schedules only while holding the Lease. Turn on when running more than one replica.
    #[serde(default)]
    enabled: bool,
    /// Namespace of the Lease.
    #[serde(default = "default_namespace")]
    namespace: String,
    /// Name of the Lease.
    #[serde(default = "default_lease_name")]
    lease_name: String,
    /// How long a Lease stays valid without renewal; a standby takes over after that.
    #[serde(default = "default_lease_duration")]
    lease_duration: Spanned<String>,
    /// How often the leader renews (and a standby retries). Must be under lease_duration.
    #[serde(default = "default_renew_interval")]
    renew_interval: Spanned<String>,
    /// This replica's name in the Lease. Default: $POD_NAME, then the host name.
    identity: Option<String>,
}

impl Default for RawLeaderElection {
    fn default() -> Self {
        RawLeaderElection {
            enabled: false,
            namespace: default_namespace(),
            lease_name: default_lease_name(),
            lease_duration: default_lease_duration(),
            renew_interval: default_renew_interval(),
            identity: None,
        }
    }
}

/// `kubernetes:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetes {
    /// A kubeconfig file. Default: the in-cluster service account, then KUBECONFIG/~/.kube/config.
    kubeconfig: Option<Spanned<String>>,
    /// The kubeconfig context to use. Default: its current context.
    context: Option<String>,
}

/// `storage:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    /// `s3://bucket/optional/prefix` or `file:///absolute/path`.
    url: Spanned<String>,
    /// Settings for S3-compatible stores. Credentials come from the standard AWS environment
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, web identity, instance
    /// metadata) unless the two `*_file` fields are set.
    #[serde(default)]
    s3: RawS3,
    /// Size of each multipart upload part, and of each ranged download part, in MiB (5 to
    /// 512; default 8). Memory use is about `part_size_mib * upload_concurrency`.
    #[serde(default = "default_part_size_mib")]
    part_size_mib: Spanned<u64>,
    /// How many parts are uploaded, or downloaded, at once (1 to 16; default 4).
    #[serde(default = "default_upload_concurrency")]
    upload_concurrency: Spanned<u64>,
    /// How long one upload request to the store may take, and how long a download may go
    /// without a single byte before the part is asked for again (default `60s`). A download
    /// as a whole has no time limit while bytes keep arriving.
    #[serde(default = "default_request_timeout")]
    request_timeout: Spanned<String>,
    /// How long a failing request is retried with backoff before the backup fails, and how long
    /// a download may bring no byte at all before it fails (default `2m`).
    #[serde(default = "default_retry_timeout")]
    retry_timeout: Spanned<String>,
}

/// `storage.s3:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3 {
    /// Endpoint of an S3-compatible server, e.g. `http://minio.backup:9000`. Empty for AWS.
    endpoint: Option<Spanned<String>>,
    /// Region, e.g. `us-east-1`. Defaults to AWS_REGION or `us-east-1`.
    region: Option<String>,
    /// Allow plain-http endpoints (only for servers inside a trusted network).
    #[serde(default)]
    allow_http: bool,
    /// Use path-style requests (`endpoint/bucket/key`) instead of virtual-hosted style. Defaults
    /// to true when an endpoint is set, as most S3-compatible servers expect.
    virtual_hosted_style: Option<bool>,
    /// File holding the access key id (a trailing newline is ignored; mode must be 0600 or stricter).
    access_key_id_file: Option<Spanned<String>>,
    /// File holding the secret access key (a trailing newline is ignored; mode 0600 or stricter).
    secret_access_key_file: Option<Spanned<String>>,
}

/// `encryption:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncryption {
    /// age X25519 public keys (`age1...`) that can decrypt the backups. Keep the matching
    /// identities (private keys) outside the cluster. `lifeboat keygen` makes a pair.
    #[serde(default)]
    recipients: Vec<Spanned<String>>,
    /// Store backups unencrypted. Off by default; lifeboat warns loudly on every run.
    #[serde(default)]
    allow_unencrypted: bool,
}

/// `compression:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompression {
    /// zstd level, 1 (fastest) to 19 (smallest). 3 keeps up with etcd on one core.
    #[serde(default = "default_zstd_level")]
    level: Spanned<i64>,
}

impl Default for RawCompression {
    fn default() -> Self {
        RawCompression {
            level: default_zstd_level(),
        }
    }
}

/// `etcd:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    /// Client URLs of etcd members, tried in order; the first that answers is snapshotted.
    endpoints: Vec<Spanned<String>>,
    /// Client TLS for `https://` endpoints (on kubeadm: /etc/kubernetes/pki/etcd/ca.crt and the
    /// healthcheck-client or apiserver-etcd-client pair).
    tls: Option<RawTls>,
    /// Connect timeout, and the longest etcd may go silent while streaming a snapshot.
    #[serde(default = "default_etcd_timeout")]
    timeout: Spanned<String>,
}

/// `etcd.tls:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    /// CA bundle that signed etcd's server certificate (etcd's --trusted-ca-file).
    ca_file: Spanned<String>,
    /// Client certificate, when etcd requires client certificates (--client-cert-auth).
    cert_file: Option<Spanned<String>>,
    /// Key of the client certificate (mode 0600 or stricter).
    key_file: Option<Spanned<String>>,
}

fn unlocated<T>(value: T) -> Spanned<T> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}
fn default_retries() -> u32 {
    2
}
fn default_retry_backoff() -> Spanned<String> {
    unlocated("30s".to_string())
}
fn default_sweep_after() -> Spanned<String> {
    unlocated("24h".to_string())
}
fn default_listen() -> Spanned<String> {
    unlocated("0.0.0.0:9464".to_string())
}
fn default_shutdown_grace() -> Spanned<String> {
    unlocated("60s".to_string())
}
fn default_namespace() -> String {
    "lifeboat".to_string()
}
fn default_lease_name() -> String {
    "lifeboat".to_string()
}
fn default_lease_duration() -> Spanned<String> {
    unlocated("15s".to_string())
}
fn default_renew_interval() -> Spanned<String> {
    unlocated("5s".to_string())
}
fn default_part_size_mib() -> Spanned<u64> {
    unlocated(8)
}
fn default_upload_concurrency() -> Spanned<u64> {
    unlocated(4)
}
fn default_request_timeout() -> Spanned<String> {
    unlocated("60s".to_string())
}
fn default_retry_timeout() -> Spanned<String> {
    unlocated("2m".to_string())
}
fn default_zstd_level() -> Spanned<i64> {
    unlocated(3)
}
fn default_etcd_timeout() -> Spanned<String> {
    unlocated("30s".to_string())
}

// ---------------------------------------------------------------------------------------------
// The runtime configuration: everything validated.
// ---------------------------------------------------------------------------------------------

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// The cluster name.
    pub cluster: String,
    /// Object storage.
    pub storage: Storage,
    /// Encryption of payloads.
    pub encryption: Encryption,
    /// zstd level.
    pub compression_level: i32,
    /// The etcd cluster, when configured.
    pub etcd: Option<Etcd>,
    /// The plans `serve` runs.
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
    /// Skip these namespaces.
    pub exclude_namespaces: Vec<String>,
    /// Only these resources (empty: all).
    pub include_resources: Vec<String>,
    /// Skip these resources.
    pub exclude_resources: Vec<String>,
    /// Encrypt each object of these resources.
    pub encrypt_resources: Vec<String>,
    /// LIST page size.
    pub page_size: u32,
}

impl Default for Resources {
    fn default() -> Self {
        let r = RawResources::default();
        Resources {
            include_namespaces: r.include_namespaces,
            exclude_namespaces: r.exclude_namespaces,
            include_resources: r.include_resources,
            exclude_resources: r.exclude_resources,
            encrypt_resources: r.encrypt_resources,
            page_size: r.page_size,
        }
    }
}

/// Validated `drill:` and `schedules.drill:`.
#[derive(Debug, Clone, Default)]
pub struct Drill {
    /// When the service drills, if at all.
    pub schedule: Option<crate::plan::Schedule>,
    /// Identity file for decrypting (checked private at load).
    pub identity_file: Option<PathBuf>,
    /// Directory with etcd and etcdutl.
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
    pub schedule: crate::plan::Schedule,
    /// What retention keeps; `None` keeps everything.
    pub retention: Option<crate::retention::RetentionPolicy>,
    /// Retries of a failed run.
    pub retries: u32,
    /// First retry delay (doubles).
    pub retry_backoff: Duration,
    /// Age after which manifest-less id directories are swept.
    pub sweep_incomplete_after: Duration,
}

/// Validated `server:`.
#[derive(Debug, Clone)]
pub struct Server {
    /// Listen address.
    pub listen: std::net::SocketAddr,
    /// Grace period for a running backup on SIGTERM.
    pub shutdown_grace: Duration,
}

/// Validated `leader_election:` (only when enabled).
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub lease_name: String,
    /// Lease validity without renewal.
    pub lease_duration: Duration,
    /// Renewal / retry period.
    pub renew_interval: Duration,
    /// This replica's identity.
    pub identity: String,
}

/// Validated `kubernetes:`.
#[derive(Debug, Clone, Default)]
pub struct Kubernetes {
    /// Explicit kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// Explicit context.
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
    /// Parts in flight at once.
    pub upload_concurrency: usize,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// How long failing requests are retried.
    pub retry_timeout: Duration,
}

/// Validated `storage.s3:`.
#[derive(Debug, Clone, Default)]
pub struct S3 {
    /// Custom endpoint.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Plain http allowed.
    pub allow_http: bool,
    /// Virtual-hosted-style requests.
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
    /// Connect and idle timeout.
    pub timeout: Duration,
}

/// Validated `etcd.tls:`; the files existed and were readable when the config was loaded.
#[derive(Debug, Clone)]
pub struct Tls {
    /// CA bundle.
    pub ca_file: PathBuf,
    /// Client certificate and key.
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
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
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
        Validator { path }.config(raw)
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

struct Validator<'a> {
    path: &'a Path,
}

impl Validator<'_> {
    fn invalid<T>(&self, at: &Spanned<T>, field: &str, message: impl Into<String>) -> Error {
        let (line, column) = if at.referenced.line() == 0 {
            (1, 1)
        } else {
            (at.referenced.line(), at.referenced.column())
        };
        Error::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            // A value quoted back may be a URL with credentials in it: never echo those.
            message: crate::error::redact_urls(&message.into()),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, Error> {
        let cluster = self.cluster(&raw.cluster)?;
        let storage = self.storage(raw.storage)?;
        let encryption = self.encryption(raw.encryption)?;
        let level = raw.compression.level.value;
        if !(1..=19).contains(&level) {
            return Err(self.invalid(
                &raw.compression.level,
                "compression.level",
                format!("zstd level {level} is out of range: use 1 (fastest) to 19 (smallest); 3 is the default"),
            ));
        }
        let etcd = raw.etcd.map(|e| self.etcd(e)).transpose()?;
        let mut plans = Vec::new();
        let schedules = raw.schedules.unwrap_or_default();
        let drill = self.drill(raw.drill.unwrap_or_default(), schedules.drill, &encryption)?;
        if let Some(p) = schedules.etcd {
            if etcd.is_none() {
                return Err(self.invalid(
                    &p.cron,
                    "schedules.etcd",
                    "an etcd schedule needs an etcd section: add etcd.endpoints",
                ));
            }
            plans.push(self.plan("etcd", crate::manifest::Kind::Etcd, p)?);
        }
        if let Some(p) = schedules.resources {
            plans.push(self.plan("resources", crate::manifest::Kind::Resources, p)?);
        }
        let raw_resources = raw.resources.unwrap_or_default();
        if raw_resources.page_size == 0 || raw_resources.page_size > 10_000 {
            return Err(Error::Missing {
                path: self.path.to_path_buf(),
                field: "resources.page_size".into(),
                message: format!(
                    "{} is out of range: use 1 to 10000 (500 is the default)",
                    raw_resources.page_size
                ),
            });
        }
        let resources = Resources {
            include_namespaces: raw_resources.include_namespaces,
            exclude_namespaces: raw_resources.exclude_namespaces,
            include_resources: raw_resources.include_resources,
            exclude_resources: raw_resources.exclude_resources,
            encrypt_resources: raw_resources.encrypt_resources,
            page_size: raw_resources.page_size,
        };
        let server = self.server(raw.server.unwrap_or_default())?;
        let leader_election = self.leader_election(raw.leader_election.unwrap_or_default())?;
        let raw_kubernetes = raw.kubernetes.unwrap_or_default();
        let kubernetes = Kubernetes {
            kubeconfig: match raw_kubernetes.kubeconfig {
                Some(k) => Some(self.readable(&k, "kubernetes.kubeconfig")?),
                None => None,
            },
            context: raw_kubernetes.context,
        };
        Ok(Config {
            path: self.path.to_path_buf(),
            cluster,
            storage,
            encryption,
            compression_level: level as i32,
            etcd,
            plans,
            server,
            leader_election,
            kubernetes,
            drill,
            resources,
        })
    }

    fn drill(
        &self,
        raw: RawDrill,
        plan: Option<RawDrillPlan>,
        encryption: &Encryption,
    ) -> Result<Drill, Error> {
        let identity_file = match &raw.identity_file {
            Some(f) => {
                crate::keys::check_private(Path::new(&f.value))
                    .map_err(|e| self.invalid(f, "drill.identity_file", e.to_string()))?;
                self.drill_identity_decrypts(f, encryption)?;
                Some(PathBuf::from(&f.value))
            }
            None => None,
        };
        let schedule = match plan {
            None => None,
            Some(p) => {
                if identity_file.is_none() {
                    return Err(self.invalid(
                        &p.cron,
                        "schedules.drill",
                        "scheduled drills decrypt backups: set drill.identity_file (mode 0600)",
                    ));
                }
                let zone = p
                    .time_zone
                    .as_ref()
                    .map(|z| z.value.as_str())
                    .unwrap_or("UTC");
                Some(
                    crate::plan::Schedule::parse(&p.cron.value, zone).map_err(|e| {
                        self.invalid(&p.cron, "schedules.drill.cron", e.to_string())
                    })?,
                )
            }
        };
        Ok(Drill {
            schedule,
            identity_file,
            etcd_bin_dir: raw.etcd_bin_dir.map(|d| PathBuf::from(d.value)),
        })
    }

    /// A drill decrypts with `drill.identity_file` alone, so at least one recipient must have
    /// its identity there. Not every one: a recovery key whose identity lives outside the
    /// cluster is the point of having several recipients.
    fn drill_identity_decrypts(
        &self,
        f: &Spanned<String>,
        encryption: &Encryption,
    ) -> Result<(), Error> {
        let Encryption::Age(recipients) = encryption else {
            return Ok(());
        };
        let ids = crate::keys::Identities::load(Path::new(&f.value))
            .map_err(|e| self.invalid(f, "drill.identity_file", e.to_string()))?;
        let keys: Vec<String> = recipients.iter().map(|r| r.to_string()).collect();
        if keys.iter().any(|k| ids.decrypts_for(k) != Some(false)) {
            return Ok(());
        }
        Err(self.invalid(
            f,
            "drill.identity_file",
            format!(
                "{} holds no identity for any of encryption.recipients ({}), so a drill could never decrypt a backup; the file holds the identities of {}: add one of those public keys to encryption.recipients, or point drill.identity_file at the identity of a recipient (`age-keygen -y FILE` prints a file's public keys)",
                f.value,
                keys.join(", "),
                ids.public_keys.join(", ")
            ),
        ))
    }

    fn plan(&self, name: &str, kind: crate::manifest::Kind, raw: RawPlan) -> Result<Plan, Error> {
        let field = |f: &str| format!("schedules.{name}.{f}");
        let zone = raw
            .time_zone
            .as_ref()
            .map(|z| z.value.as_str())
            .unwrap_or("UTC");
        let schedule = crate::plan::Schedule::parse(&raw.cron.value, zone).map_err(|e| {
            let at = match (&e, &raw.time_zone) {
                (crate::plan::Error::UnknownTimeZone { .. }, Some(z)) => {
                    (z.referenced.line(), z.referenced.column())
                }
                _ => (raw.cron.referenced.line(), raw.cron.referenced.column()),
            };
            Error::Invalid {
                path: self.path.to_path_buf(),
                line: at.0.max(1),
                column: at.1.max(1),
                field: field(if matches!(e, crate::plan::Error::UnknownTimeZone { .. }) {
                    "time_zone"
                } else {
                    "cron"
                }),
                message: e.to_string(),
            }
        })?;
        let retention = match raw.retention {
            Some(r) => {
                r.value
                    .validate()
                    .map_err(|e| self.invalid(&r, &field("retention"), e.to_string()))?;
                Some(r.value)
            }
            None => None,
        };
        Ok(Plan {
            name: name.to_string(),
            kind,
            schedule,
            retention,
            retries: raw.retries,
            retry_backoff: self.duration(&raw.retry_backoff, &field("retry_backoff"))?,
            sweep_incomplete_after: self.duration(
                &raw.sweep_incomplete_after,
                &field("sweep_incomplete_after"),
            )?,
        })
    }

    fn server(&self, raw: RawServer) -> Result<Server, Error> {
        let listen = raw.listen.value.parse().map_err(|e| {
            self.invalid(
                &raw.listen,
                "server.listen",
                format!(
                    "\"{}\" is not an address:port ({e}): use e.g. 0.0.0.0:9464",
                    raw.listen.value
                ),
            )
        })?;
        Ok(Server {
            listen,
            shutdown_grace: self.duration(&raw.shutdown_grace, "server.shutdown_grace")?,
        })
    }

    fn leader_election(&self, raw: RawLeaderElection) -> Result<Option<LeaderElection>, Error> {
        if !raw.enabled {
            return Ok(None);
        }
        let lease_duration =
            self.duration(&raw.lease_duration, "leader_election.lease_duration")?;
        let renew_interval =
            self.duration(&raw.renew_interval, "leader_election.renew_interval")?;
        if renew_interval * 2 > lease_duration {
            return Err(self.invalid(&raw.renew_interval, "leader_election.renew_interval", "renew at least twice per lease_duration (e.g. 5s for 15s), or the lease lapses between renewals"));
        }
        let identity = raw
            .identity
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| format!("lifeboat-{}", std::process::id()));
        Ok(Some(LeaderElection {
            namespace: raw.namespace,
            lease_name: raw.lease_name,
            lease_duration,
            renew_interval,
            identity,
        }))
    }

    fn cluster(&self, name: &Spanned<String>) -> Result<String, Error> {
        let n = &name.value;
        let ok = !n.is_empty()
            && n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-')
            && !n.ends_with('-');
        if ok {
            Ok(n.clone())
        } else {
            Err(self.invalid(
                name,
                "cluster",
                format!("\"{n}\" is not a valid cluster name: use 1 to 63 lower-case letters, digits and '-', not starting or ending with '-' (e.g. prod-eu-1)"),
            ))
        }
    }

    fn storage(&self, raw: RawStorage) -> Result<Storage, Error> {
        let text = &raw.url.value;
        let url = Url::parse(text).map_err(|e| {
            self.invalid(
                &raw.url,
                "storage.url",
                format!(
                    "\"{text}\" is not a URL ({e}): use s3://bucket/prefix or file:///absolute/path"
                ),
            )
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.invalid(&raw.url, "storage.url", "credentials in the URL are refused (they would show up in logs and messages): use storage.s3.access_key_id_file/secret_access_key_file or the AWS environment"));
        }
        match url.scheme() {
            "s3" => {
                if url.host_str().unwrap_or("").is_empty() {
                    return Err(self.invalid(
                        &raw.url,
                        "storage.url",
                        format!("\"{text}\" names no bucket: use s3://bucket/prefix"),
                    ));
                }
            }
            "file" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) || url.path().len() <= 1 {
                    return Err(self.invalid(&raw.url, "storage.url", format!("\"{text}\" is not a file URL with an absolute directory: use file:///var/backups/lifeboat (three slashes)")));
                }
            }
            other => {
                return Err(self.invalid(
                    &raw.url,
                    "storage.url",
                    format!("scheme \"{other}\" is not supported: use s3://bucket/prefix (any S3-compatible server) or file:///absolute/path"),
                ));
            }
        }
        let part_mib = raw.part_size_mib.value;
        if !(5..=512).contains(&part_mib) {
            return Err(self.invalid(&raw.part_size_mib, "storage.part_size_mib", format!("{part_mib} MiB is out of range: S3 parts must be 5 to 512 MiB here (8 is the default)")));
        }
        let concurrency = raw.upload_concurrency.value;
        if !(1..=16).contains(&concurrency) {
            return Err(self.invalid(
                &raw.upload_concurrency,
                "storage.upload_concurrency",
                format!("{concurrency} is out of range: use 1 to 16 (4 is the default)"),
            ));
        }
        let s3 = self.s3(raw.s3)?;
        Ok(Storage {
            url,
            s3,
            part_size: (part_mib * 1024 * 1024) as usize,
            upload_concurrency: concurrency as usize,
            request_timeout: self.duration(&raw.request_timeout, "storage.request_timeout")?,
            retry_timeout: self.duration(&raw.retry_timeout, "storage.retry_timeout")?,
        })
    }

    fn s3(&self, raw: RawS3) -> Result<S3, Error> {
        let endpoint = match &raw.endpoint {
            None => None,
            Some(e) => {
                let text = &e.value;
                let parsed = Url::parse(text)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"));
                let Some(parsed) = parsed else {
                    return Err(self.invalid(e, "storage.s3.endpoint", format!("\"{text}\" is not an http(s) URL: use e.g. https://s3.example.com or http://127.0.0.1:9000")));
                };
                if parsed.scheme() == "http" && !raw.allow_http {
                    return Err(self.invalid(e, "storage.s3.endpoint", format!("\"{text}\" is plain http: set storage.s3.allow_http: true if this server is on a trusted network, or use https")));
                }
                Some(text.trim_end_matches('/').to_string())
            }
        };
        let credentials = match (&raw.access_key_id_file, &raw.secret_access_key_file) {
            (None, None) => None,
            (Some(id), Some(secret)) => Some(StaticCredentials {
                access_key_id: self.secret_file(id, "storage.s3.access_key_id_file")?,
                secret_access_key: self.secret_file(secret, "storage.s3.secret_access_key_file")?,
            }),
            (Some(one), None) | (None, Some(one)) => {
                return Err(self.invalid(one, "storage.s3", "set both access_key_id_file and secret_access_key_file, or neither (to use the AWS environment)"));
            }
        };
        Ok(S3 {
            virtual_hosted_style: raw.virtual_hosted_style.unwrap_or(endpoint.is_none()),
            endpoint,
            region: raw.region,
            allow_http: raw.allow_http,
            credentials,
        })
    }

    fn secret_file(&self, at: &Spanned<String>, field: &str) -> Result<String, Error> {
        let path = Path::new(&at.value);
        crate::keys::read_secret_file(path).map_err(|e| self.invalid(at, field, e.to_string()))
    }

    fn encryption(&self, raw: Option<RawEncryption>) -> Result<Encryption, Error> {
        let Some(raw) = raw else {
            return Err(Error::Missing {
                path: self.path.to_path_buf(),
                field: "encryption.recipients".into(),
                message: "no encryption recipients: add `encryption: { recipients: [\"age1...\"] }` (make a key pair with `lifeboat keygen`), or set `encryption: { allow_unencrypted: true }` to store backups in the clear".into(),
            });
        };
        if raw.recipients.is_empty() {
            if raw.allow_unencrypted {
                return Ok(Encryption::None);
            }
            return Err(Error::Missing {
                path: self.path.to_path_buf(),
                field: "encryption.recipients".into(),
                message: "no encryption recipients: add at least one age public key (`lifeboat keygen` makes a pair), or set allow_unencrypted: true to store backups in the clear".into(),
            });
        }
        let mut recipients = Vec::with_capacity(raw.recipients.len());
        for (i, r) in raw.recipients.iter().enumerate() {
            let key = r.value.trim();
            let parsed = key.parse::<age::x25519::Recipient>().map_err(|e| {
                self.invalid(
                    r,
                    &format!("encryption.recipients[{i}]"),
                    format!("\"{key}\" is not an age X25519 public key ({e}): it starts with age1; `lifeboat keygen` or `age-keygen -y key.txt` prints one"),
                )
            })?;
            if let Some(source) = crate::keys::example_recipient(key) {
                return Err(self.invalid(
                    r,
                    &format!("encryption.recipients[{i}]"),
                    format!("\"{key}\" is the example public key from {source}: nobody holds its identity, so backups encrypted to it could never be restored; make your own pair with `lifeboat keygen --output key.txt`, put the public key it prints here, and keep key.txt outside the cluster"),
                ));
            }
            recipients.push(parsed);
        }
        Ok(Encryption::Age(recipients))
    }

    fn etcd(&self, raw: RawEtcd) -> Result<Etcd, Error> {
        if raw.endpoints.is_empty() {
            return Err(Error::Missing {
                path: self.path.to_path_buf(),
                field: "etcd.endpoints".into(),
                message:
                    "no etcd endpoints: list at least one client URL, e.g. https://127.0.0.1:2379"
                        .into(),
            });
        }
        let mut endpoints = Vec::new();
        for (i, e) in raw.endpoints.iter().enumerate() {
            let text = &e.value;
            let url = Url::parse(text).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.port_or_known_default().is_some()
            });
            let Some(url) = url.filter(|u| u.username().is_empty() && u.password().is_none())
            else {
                return Err(self.invalid(
                    e,
                    &format!("etcd.endpoints[{i}]"),
                    format!("\"{text}\" is not an etcd client URL without credentials: use e.g. https://10.0.0.1:2379"),
                ));
            };
            if url.scheme() == "https" && raw.tls.is_none() {
                return Err(self.invalid(e, &format!("etcd.endpoints[{i}]"), format!("\"{text}\" uses https but etcd.tls is not set: add etcd.tls.ca_file (and cert_file/key_file if etcd checks client certificates)")));
            }
            endpoints.push(url);
        }
        let tls = raw.tls.map(|t| self.tls(t)).transpose()?;
        Ok(Etcd {
            endpoints,
            tls,
            timeout: self.duration(&raw.timeout, "etcd.timeout")?,
        })
    }

    fn tls(&self, raw: RawTls) -> Result<Tls, Error> {
        let ca_file = self.readable(&raw.ca_file, "etcd.tls.ca_file")?;
        let client = match (&raw.cert_file, &raw.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let cert = self.readable(cert, "etcd.tls.cert_file")?;
                crate::keys::check_private(Path::new(&key.value))
                    .map_err(|e| self.invalid(key, "etcd.tls.key_file", e.to_string()))?;
                Some((cert, PathBuf::from(&key.value)))
            }
            (Some(one), None) | (None, Some(one)) => {
                return Err(self.invalid(
                    one,
                    "etcd.tls",
                    "set both cert_file and key_file, or neither",
                ));
            }
        };
        Ok(Tls { ca_file, client })
    }

    fn readable(&self, at: &Spanned<String>, field: &str) -> Result<PathBuf, Error> {
        let path = PathBuf::from(&at.value);
        std::fs::File::open(&path)
            .map(|_| path.clone())
            .map_err(|e| self.invalid(at, field, format!("cannot read {}: {e}", path.display())))
    }

    fn duration(&self, at: &Spanned<String>, field: &str) -> Result<Duration, Error> {
        let text = &at.value;
        match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(self.invalid(at, field, "a zero duration is not allowed")),
            Err(e) => Err(self.invalid(
                at,
                field,
                format!("\"{text}\" is not a duration ({e}): write e.g. 30s, 5m, 2h"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A key generated for these tests, its identity thrown away (age's README key is refused).
    const KEY: &str = "age1ax88nr85vx2gj3g3prt3f6uzmjjyflv8gu0hnqs84gjvevkyzchswp27kk";

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(Path::new("lifeboat.yaml"), text)
    }

    fn base(extra: &str) -> String {
        format!(
            "cluster: prod-eu-1\nstorage:\n  url: s3://bucket/prefix\nencryption:\n  recipients: [\"{KEY}\"]\n{extra}"
        )
    }

    #[test]
    fn a_minimal_config_gets_the_documented_defaults() {
        let cfg = parse(&base("etcd:\n  endpoints: [http://127.0.0.1:2379]\n")).unwrap();
        assert_eq!(cfg.cluster, "prod-eu-1");
        assert_eq!(cfg.storage.part_size, 8 * 1024 * 1024);
        assert_eq!(cfg.storage.upload_concurrency, 4);
        assert_eq!(cfg.compression_level, 3);
        let etcd = cfg.etcd.unwrap();
        assert_eq!(etcd.timeout, Duration::from_secs(30));
        assert!(matches!(cfg.encryption, Encryption::Age(ref r) if r.len() == 1));
        assert!(
            cfg.storage.s3.virtual_hosted_style,
            "AWS (no endpoint) uses virtual-hosted style"
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_line_column_and_field() {
        let err = parse(&base(
            "etcd:\n  endpoints: [http://127.0.0.1:2379]\n  timout: 5s\n",
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string().split(", expected").next().unwrap(),
            "lifeboat.yaml:8:3: unknown field `timout`"
        );
    }

    #[test]
    fn bad_values_name_file_line_column_field_and_the_fix() {
        let cases = [
            (
                "cluster: Prod\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\n",
                "lifeboat.yaml:1:10: cluster: \"Prod\" is not a valid cluster name",
            ),
            (
                "cluster: p\nstorage:\n  url: ftp://x/y\nencryption: {allow_unencrypted: true}\n",
                "lifeboat.yaml:3:8: storage.url: scheme \"ftp\" is not supported",
            ),
            (
                "cluster: p\nstorage:\n  url: file://relative/dir\nencryption: {allow_unencrypted: true}\n",
                "lifeboat.yaml:3:8: storage.url: \"file://relative/dir\" is not a file URL with an absolute directory",
            ),
            (
                "cluster: p\nstorage:\n  url: s3://b\n  s3:\n    endpoint: http://minio:9000\nencryption: {allow_unencrypted: true}\n",
                "lifeboat.yaml:5:15: storage.s3.endpoint: \"http://minio:9000\" is plain http: set storage.s3.allow_http: true",
            ),
            (
                "cluster: p\nstorage:\n  url: s3://b\nencryption:\n  recipients: [age1nope]\n",
                "lifeboat.yaml:5:16: encryption.recipients[0]: \"age1nope\" is not an age X25519 public key",
            ),
            (
                "cluster: p\nstorage:\n  url: s3://b\n  part_size_mib: 1\nencryption: {allow_unencrypted: true}\n",
                "lifeboat.yaml:4:18: storage.part_size_mib: 1 MiB is out of range",
            ),
            (
                "cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\netcd:\n  endpoints: [http://e:2379]\n  timeout: soon\n",
                "lifeboat.yaml:6:12: etcd.timeout: \"soon\" is not a duration",
            ),
            (
                "cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\netcd:\n  endpoints: [https://e:2379]\n",
                "lifeboat.yaml:5:15: etcd.endpoints[0]: \"https://e:2379\" uses https but etcd.tls is not set",
            ),
            (
                "cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\netcd:\n  endpoints: [http://e:2379]\n  tls: {ca_file: /nonexistent/ca.crt}\n",
                "lifeboat.yaml:6:18: etcd.tls.ca_file: cannot read /nonexistent/ca.crt",
            ),
        ];
        let cases = cases.into_iter().chain([
            ("cluster: p\nstorage:\n  url: s3://AKIAX:s3cr3t@b/p\nencryption: {allow_unencrypted: true}\n", "lifeboat.yaml:3:8: storage.url: credentials in the URL are refused"),
            ("cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\netcd: {endpoints: [http://e:2379]}\nschedules:\n  etcd:\n    cron: \"0 */6 * *\"\n", "lifeboat.yaml:7:11: schedules.etcd.cron: cron expression \"0 */6 * *\" has 4 fields"),
            ("cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\netcd: {endpoints: [http://e:2379]}\nschedules:\n  etcd:\n    cron: \"@daily\"\n    time_zone: Europe/Berlni\n", "lifeboat.yaml:8:16: schedules.etcd.time_zone:"),
            ("cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\netcd: {endpoints: [http://e:2379]}\nschedules:\n  etcd:\n    cron: \"@daily\"\n    retention: {keep_last: 0}\n", "lifeboat.yaml:8:16: schedules.etcd.retention: retention keeps no backup"),
            ("cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\nschedules:\n  etcd:\n    cron: \"@daily\"\n", "lifeboat.yaml:6:11: schedules.etcd: an etcd schedule needs an etcd section"),
            ("cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\nserver: {listen: localhost}\n", "lifeboat.yaml:4:18: server.listen: \"localhost\" is not an address:port"),
            ("cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\nleader_election: {enabled: true, lease_duration: 10s, renew_interval: 8s}\n", "lifeboat.yaml:4:71: leader_election.renew_interval: renew at least twice"),
        ]);
        for (text, want) in cases {
            let got = parse(text).unwrap_err().to_string();
            assert!(got.starts_with(want), "\n got: {got}\nwant: {want}…");
        }
    }

    #[test]
    fn encryption_is_required_unless_explicitly_waived() {
        let no_section = "cluster: p\nstorage: {url: s3://b}\n";
        let err = parse(no_section).unwrap_err().to_string();
        assert!(
            err.contains("lifeboat keygen") && err.contains("allow_unencrypted"),
            "{err}"
        );
        let empty = "cluster: p\nstorage: {url: s3://b}\nencryption: {recipients: []}\n";
        assert!(parse(empty).is_err());
        let waived = "cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\n";
        assert!(matches!(
            parse(waived).unwrap().encryption,
            Encryption::None
        ));
    }

    #[test]
    fn secret_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("id");
        let secret = dir.path().join("secret");
        std::fs::write(&id, "AKIDEXAMPLE\n").unwrap();
        std::fs::write(&secret, "s3cr3t\n").unwrap();
        std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "cluster: p\nstorage:\n  url: s3://b\n  s3:\n    access_key_id_file: {}\n    secret_access_key_file: {}\nencryption: {{allow_unencrypted: true}}\n",
            id.display(),
            secret.display()
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("lifeboat.yaml:6:29: storage.s3.secret_access_key_file:"),
            "{err}"
        );
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let creds = parse(&text).unwrap().storage.s3.credentials.unwrap();
        assert_eq!(creds.access_key_id, "AKIDEXAMPLE");
        assert_eq!(creds.secret_access_key, "s3cr3t");
        assert!(
            !format!("{creds:?}").contains("s3cr3t"),
            "Debug must not show the secret"
        );
    }

    #[test]
    fn the_example_recipient_from_ages_readme_is_refused_naming_the_field() {
        // Regression: the sample config's recipient was age's README key, accepted silently.
        for (key, source) in [
            (crate::keys::AGE_README_EXAMPLE_RECIPIENT, "age's README"),
            (
                crate::keys::LIFEBOAT_EXAMPLE_RECIPIENT,
                "lifeboat's example configuration",
            ),
        ] {
            let text = format!(
                "cluster: p\nstorage:\n  url: s3://b\nencryption:\n  recipients:\n    - {KEY}\n    - {key}\n"
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.starts_with("lifeboat.yaml:7:7: encryption.recipients[1]:"),
                "{err}"
            );
            assert!(
                err.contains(source) && err.contains("lifeboat keygen"),
                "{err}"
            );
        }
    }

    fn identity_file(dir: &Path, name: &str) -> (PathBuf, String) {
        let pair = crate::keys::generate(chrono::Utc::now());
        let path = dir.join(name);
        crate::keys::write_new_private(&path, &pair.file_text).unwrap();
        (path, pair.public_key)
    }

    #[test]
    fn a_drill_identity_that_decrypts_for_no_recipient_is_refused() {
        // Regression: drill.identity_file was only checked for its mode; a drill with the wrong
        // key failed at 04:30 on Sunday instead of at startup.
        let dir = tempfile::tempdir().unwrap();
        let (drill, drill_public) = identity_file(dir.path(), "drill.txt");
        let config = |recipients: &[&str]| {
            format!(
                "cluster: p\nstorage:\n  url: s3://b\nencryption:\n  recipients: [{}]\ndrill:\n  identity_file: {}\n",
                recipients.join(", "),
                drill.display()
            )
        };
        let err = parse(&config(&[KEY])).unwrap_err().to_string();
        assert!(
            err.starts_with("lifeboat.yaml:7:18: drill.identity_file:"),
            "{err}"
        );
        assert!(
            err.contains(KEY) && err.contains(&drill_public) && err.contains("never decrypt"),
            "{err}"
        );
        // The drill key plus an offline recovery key whose identity is elsewhere: accepted.
        let cfg = parse(&config(&[KEY, &drill_public])).unwrap();
        assert_eq!(cfg.drill.identity_file.as_deref(), Some(drill.as_path()));
        // A file that holds no identity at all is refused too.
        let junk = dir.path().join("junk.txt");
        crate::keys::write_new_private(&junk, "x\n").unwrap();
        let err = parse(
            &config(&[&drill_public])
                .replace(&drill.display().to_string(), &junk.display().to_string()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("drill.identity_file") && err.contains("AGE-SECRET-KEY-1"),
            "{err}"
        );
    }

    #[test]
    fn without_encryption_the_drill_identity_is_not_matched() {
        let dir = tempfile::tempdir().unwrap();
        let (drill, _) = identity_file(dir.path(), "drill.txt");
        let text = format!(
            "cluster: p\nstorage:\n  url: s3://b\nencryption: {{allow_unencrypted: true}}\ndrill:\n  identity_file: {}\n",
            drill.display()
        );
        assert!(parse(&text).is_ok());
    }
}
