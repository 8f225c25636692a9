//! The configuration file as written: serde structs that mirror lifeboat.yaml, with their
//! defaults. Their doc comments are the reference for every field and become the descriptions
//! of config/lifeboat.schema.json. Nothing here is checked beyond its YAML type: see `validate`.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::schema::{
    CronText, DurationText, EndpointUrlText, EtcdUrlText, SocketAddrText, StorageUrlText,
    TimeZoneText,
};

/// lifeboat's configuration file (lifeboat.yaml). Unknown keys are refused.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "lifeboat configuration")]
pub(super) struct RawConfig {
    /// Names the cluster in every object key and manifest: 1 to 63 lower-case letters, digits
    /// and `-`, not starting or ending with `-` (e.g. `prod-eu-1`). Required.
    #[schemars(
        with = "String",
        regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    )]
    pub cluster: Spanned<String>,
    /// Where backups are stored. Required.
    pub storage: RawStorage,
    /// How backups are encrypted. Required: lifeboat refuses to run without recipients unless
    /// `allow_unencrypted: true` is set.
    pub encryption: Option<RawEncryption>,
    /// How backups are compressed. Default: zstd level 3.
    #[serde(default)]
    pub compression: RawCompression,
    /// The etcd cluster to snapshot. Needed by `backup etcd` and `schedules.etcd`; no default.
    pub etcd: Option<RawEtcd>,
    /// What `lifeboat serve` runs when, and how long backups are kept: one plan per kind.
    /// Default: nothing is scheduled.
    #[serde(default)]
    pub schedules: Option<RawSchedules>,
    /// The HTTP server of `lifeboat serve` (/metrics, /healthz, /readyz). Default: listens on
    /// 0.0.0.0:9464.
    #[serde(default)]
    pub server: Option<RawServer>,
    /// Only one replica runs the schedules: the holder of a Kubernetes Lease. Default: off.
    #[serde(default)]
    pub leader_election: Option<RawLeaderElection>,
    /// How to reach the Kubernetes API (leader election, resource exports). Default: the
    /// in-cluster service account, then KUBECONFIG or ~/.kube/config.
    #[serde(default)]
    pub kubernetes: Option<RawKubernetes>,
    /// Restore drills (`lifeboat drill`, and `schedules.drill` in the service). Default: no
    /// identity, etcd and etcdutl found on PATH.
    #[serde(default)]
    pub drill: Option<RawDrill>,
    /// What `backup resources` exports from the Kubernetes API. Default: every resource that
    /// supports list, events excluded, secrets encrypted one by one.
    #[serde(default)]
    pub resources: Option<RawResources>,
}

/// What `backup resources` exports from the Kubernetes API.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Resources")]
pub(super) struct RawResources {
    /// Only these namespaces. Default: all. Cluster-scoped objects are always exported.
    #[serde(default)]
    pub include_namespaces: Vec<String>,
    /// Skip these namespaces. Default: none.
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// Only these resources, as `plural.group` (`deployments.apps`) or `plural` for the core
    /// group (`configmaps`). Default: every resource that supports list.
    #[serde(default)]
    pub include_resources: Vec<String>,
    /// Skip these resources, same syntax as `include_resources`. Default: events (core and
    /// events.k8s.io).
    #[serde(default = "default_exclude_resources")]
    pub exclude_resources: Vec<String>,
    /// Resources whose objects are each encrypted to the recipients (`<name>.yaml.age`).
    /// Default: secrets.
    #[serde(default = "default_encrypt_resources")]
    pub encrypt_resources: Vec<String>,
    /// Objects per LIST page, 1 to 10000 (default 500); the export holds about one page in
    /// memory.
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 10000))]
    pub page_size: u32,
    /// Resources that `restore resources --apply` never applies, same syntax as
    /// `include_resources` (e.g. `certificaterequests.cert-manager.io`, recreated by their
    /// controller). Default: none; the apply's own skips (Endpoints, Events, Leases, owned
    /// objects, ...) apply anyway.
    #[serde(default)]
    pub restore_skip_resources: Vec<String>,
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
            restore_skip_resources: vec![],
        }
    }
}

/// Restore drills: `lifeboat drill`, and `schedules.drill` in the service.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Drill")]
pub(super) struct RawDrill {
    /// Path of the age identity file used to decrypt drilled backups (mode 0600 or stricter).
    /// A drill needs the private key: keep it where the drills run. It must hold the identity
    /// of at least one of `encryption.recipients`. Default: none, so `lifeboat drill
    /// --identity` must be used and `schedules.drill` is refused.
    #[schemars(with = "Option<String>")]
    pub identity_file: Option<Spanned<String>>,
    /// Directory with etcd and etcdutl (or etcd 3.4's etcdctl). Default: found on PATH.
    #[schemars(with = "Option<String>")]
    pub etcd_bin_dir: Option<Spanned<String>>,
}

/// What `lifeboat serve` runs when. One plan per kind.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Schedules")]
pub(super) struct RawSchedules {
    /// The etcd snapshot plan (needs the `etcd` section). Default: none.
    pub etcd: Option<RawPlan>,
    /// The Kubernetes resource export plan. Default: none.
    pub resources: Option<RawPlan>,
    /// Restore drills of the newest etcd backup (needs `drill.identity_file`). Default: none.
    pub drill: Option<RawDrillPlan>,
}

/// When the service drills the newest etcd backup.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "DrillPlan")]
pub(super) struct RawDrillPlan {
    /// When to drill, same syntax as the backup plans (e.g. `30 4 * * SUN`). Required.
    #[schemars(with = "CronText")]
    pub cron: Spanned<String>,
    /// IANA time zone the expression is read in, e.g. `Europe/Berlin`. Default: UTC.
    #[schemars(with = "Option<TimeZoneText>")]
    pub time_zone: Option<Spanned<String>>,
}

/// A backup plan: when it runs, what it keeps, how it retries.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Plan")]
pub(super) struct RawPlan {
    /// Standard 5-field cron (`0 */6 * * *`), 6 fields with seconds first, or a macro
    /// (@hourly, @daily, @weekly, @monthly, @yearly). Day-of-month and day-of-week are OR'ed as
    /// in standard cron. Required.
    #[schemars(with = "CronText")]
    pub cron: Spanned<String>,
    /// IANA time zone the cron expression is read in, e.g. `Europe/Berlin`. Default: UTC. Runs
    /// stay at the same local time across daylight-saving changes.
    #[schemars(with = "Option<TimeZoneText>")]
    pub time_zone: Option<Spanned<String>>,
    /// Which complete backups to keep after each successful run (restic `forget` semantics;
    /// max_age caps everything; the newest complete backup is never deleted). Default: no
    /// retention, nothing is ever deleted.
    #[schemars(with = "Option<crate::policy::retention::RetentionPolicy>")]
    pub retention: Option<Spanned<crate::policy::retention::RetentionPolicy>>,
    /// Retries of a failed run before it counts as failed. Default: 2.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubles for each further one. Default: 30s.
    #[serde(default = "default_retry_backoff")]
    #[schemars(with = "DurationText")]
    pub retry_backoff: Spanned<String>,
    /// Age after which id directories without a manifest (crashed runs) are deleted by
    /// retention. Default: 24h.
    #[serde(default = "default_sweep_after")]
    #[schemars(with = "DurationText")]
    pub sweep_incomplete_after: Spanned<String>,
}

/// The HTTP server of `lifeboat serve`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Server")]
pub(super) struct RawServer {
    /// Address and port the HTTP server listens on. Default: 0.0.0.0:9464.
    #[serde(default = "default_listen")]
    #[schemars(with = "SocketAddrText")]
    pub listen: Spanned<String>,
    /// On SIGTERM, how long a running backup may take to finish before it is aborted.
    /// Default: 60s.
    #[serde(default = "default_shutdown_grace")]
    #[schemars(with = "DurationText")]
    pub shutdown_grace: Spanned<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

/// Lease-based leader election between replicas.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "LeaderElection")]
pub(super) struct RawLeaderElection {
    /// Run schedules only while holding the Lease. Turn on when running more than one replica.
    /// Default: false.
    #[serde(default)]
    pub enabled: bool,
    /// Namespace of the Lease. Default: lifeboat.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Name of the Lease object. Default: lifeboat.
    #[serde(default = "default_lease_name")]
    pub lease_name: String,
    /// How long a Lease stays valid without renewal; a standby takes over after that.
    /// Default: 15s.
    #[serde(default = "default_lease_duration")]
    #[schemars(with = "DurationText")]
    pub lease_duration: Spanned<String>,
    /// How often the leader renews (and a standby retries); at most half of lease_duration.
    /// Default: 5s.
    #[serde(default = "default_renew_interval")]
    #[schemars(with = "DurationText")]
    pub renew_interval: Spanned<String>,
    /// This replica's name in the Lease. Default: $POD_NAME, then the host name.
    pub identity: Option<String>,
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

/// How to reach the Kubernetes API.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Kubernetes")]
pub(super) struct RawKubernetes {
    /// Path of a kubeconfig file. Default: the in-cluster service account, then
    /// KUBECONFIG/~/.kube/config.
    #[schemars(with = "Option<String>")]
    pub kubeconfig: Option<Spanned<String>>,
    /// The kubeconfig context to use. Default: its current context.
    pub context: Option<String>,
}

/// Where backups are stored.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Storage")]
pub(super) struct RawStorage {
    /// `s3://bucket/optional/prefix` or `file:///absolute/path`, without credentials. Required.
    #[schemars(with = "StorageUrlText")]
    pub url: Spanned<String>,
    /// Settings for S3-compatible stores. Credentials come from the standard AWS environment
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, web identity, instance
    /// metadata) unless the two `*_file` fields are set. Default: AWS.
    #[serde(default)]
    pub s3: RawS3,
    /// Size of each multipart upload part, and of each ranged download part, in MiB, 5 to
    /// 512 (default 8). Memory use is about `part_size_mib * upload_concurrency`.
    #[serde(default = "default_part_size_mib")]
    #[schemars(with = "u64", range(min = 5, max = 512))]
    pub part_size_mib: Spanned<u64>,
    /// How many parts are uploaded, or downloaded, at once, 1 to 16 (default 4).
    #[serde(default = "default_upload_concurrency")]
    #[schemars(with = "u64", range(min = 1, max = 16))]
    pub upload_concurrency: Spanned<u64>,
    /// How long one upload request to the store may take, and how long a download may go
    /// without a single byte before the part is asked for again. Default: 60s. A download
    /// as a whole has no time limit while bytes keep arriving.
    #[serde(default = "default_request_timeout")]
    #[schemars(with = "DurationText")]
    pub request_timeout: Spanned<String>,
    /// How long a failing request is retried with backoff before the backup fails, and how long
    /// a download may bring no byte at all before it fails. Default: 2m.
    #[serde(default = "default_retry_timeout")]
    #[schemars(with = "DurationText")]
    pub retry_timeout: Spanned<String>,
}

/// Settings for S3-compatible stores.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "S3")]
pub(super) struct RawS3 {
    /// http(s) URL of an S3-compatible server, e.g. `http://minio.backup:9000`. Default: AWS.
    #[schemars(with = "Option<EndpointUrlText>")]
    pub endpoint: Option<Spanned<String>>,
    /// Region, e.g. `us-east-1`. Default: AWS_REGION, then `us-east-1`.
    pub region: Option<String>,
    /// Allow plain-http endpoints (only for servers inside a trusted network). Default: false.
    #[serde(default)]
    pub allow_http: bool,
    /// Virtual-hosted-style requests (`bucket.endpoint/key`) instead of path style
    /// (`endpoint/bucket/key`). Default: true without an endpoint (AWS), false with one, as
    /// most S3-compatible servers expect.
    pub virtual_hosted_style: Option<bool>,
    /// Path of the file holding the access key id (a trailing newline is ignored; mode 0600 or
    /// stricter). Default: none, the AWS environment is used.
    #[schemars(with = "Option<String>")]
    pub access_key_id_file: Option<Spanned<String>>,
    /// Path of the file holding the secret access key (a trailing newline is ignored; mode 0600
    /// or stricter). Default: none, the AWS environment is used.
    #[schemars(with = "Option<String>")]
    pub secret_access_key_file: Option<Spanned<String>>,
}

/// How backups are encrypted.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Encryption")]
pub(super) struct RawEncryption {
    /// age X25519 public keys (`age1...`) that can decrypt the backups. Keep the matching
    /// identities (private keys) outside the cluster; `lifeboat keygen` makes a pair.
    /// Default: none, which is refused unless allow_unencrypted is true.
    #[serde(default)]
    #[schemars(
        with = "Vec<String>",
        inner(regex(pattern = r"^\s*(age1|AGE1)[0-9A-Za-z]+\s*$"))
    )]
    pub recipients: Vec<Spanned<String>>,
    /// Store backups unencrypted when no recipients are given; lifeboat warns loudly on every
    /// run. Default: false.
    #[serde(default)]
    pub allow_unencrypted: bool,
}

/// How backups are compressed.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Compression")]
pub(super) struct RawCompression {
    /// zstd level, 1 (fastest) to 19 (smallest). Default: 3, which keeps up with etcd on one
    /// core.
    #[serde(default = "default_zstd_level")]
    #[schemars(with = "i64", range(min = 1, max = 19))]
    pub level: Spanned<i64>,
}

impl Default for RawCompression {
    fn default() -> Self {
        RawCompression {
            level: default_zstd_level(),
        }
    }
}

/// The etcd cluster to snapshot.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Etcd")]
pub(super) struct RawEtcd {
    /// Client URLs of etcd members, tried in order; the first that answers is snapshotted.
    /// Required, at least one.
    #[schemars(with = "Vec<EtcdUrlText>")]
    pub endpoints: Vec<Spanned<String>>,
    /// Client TLS for `https://` endpoints (on kubeadm: /etc/kubernetes/pki/etcd/ca.crt and the
    /// healthcheck-client or apiserver-etcd-client pair). Required with https endpoints.
    pub tls: Option<RawTls>,
    /// Connect timeout, and the longest etcd may go silent while streaming a snapshot.
    /// Default: 30s.
    #[serde(default = "default_etcd_timeout")]
    #[schemars(with = "DurationText")]
    pub timeout: Spanned<String>,
}

/// Client TLS for etcd.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tls")]
pub(super) struct RawTls {
    /// Path of the CA bundle that signed etcd's server certificate (etcd's --trusted-ca-file).
    /// Required.
    #[schemars(with = "String")]
    pub ca_file: Spanned<String>,
    /// Path of the client certificate, when etcd requires client certificates
    /// (--client-cert-auth). Default: none; set together with key_file.
    #[schemars(with = "Option<String>")]
    pub cert_file: Option<Spanned<String>>,
    /// Path of the client certificate's key (mode 0600 or stricter). Default: none; set
    /// together with cert_file.
    #[schemars(with = "Option<String>")]
    pub key_file: Option<Spanned<String>>,
}

/// A default value: it has no place in the file, so errors about it point at line 1.
fn unlocated<T>(value: T) -> Spanned<T> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
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
