//! The manifest: the versioned, write-once JSON record of one backup. It is written last, so a
//! backup without a manifest does not exist. Pure: building, parsing and version checks only.
//! The format is documented in docs/FORMAT.md.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The manifest format this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The file name of the manifest inside a backup's directory.
pub const MANIFEST_NAME: &str = "manifest.json";

const ID_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Why a manifest or backup id could not be read.
#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "the manifest of backup {id} has format version {found}, but this lifeboat {ours} reads versions up to {FORMAT_VERSION}: use a newer lifeboat to read it"
    , ours = crate::VERSION)]
    UnsupportedVersion { id: String, found: u32 },
    #[error(
        "the manifest at {key} is not valid lifeboat manifest JSON ({reason}): the object was damaged or not written by lifeboat"
    )]
    Invalid { key: String, reason: String },
    #[error(
        "\"{given}\" is not a backup id: ids look like 20261127T135500Z-9f86d081884c7d65 (see `lifeboat list`), or use \"latest\""
    )]
    BadId { given: String },
}

/// A backup's id: its UTC start time to the second and 64 random bits as 16 hex digits, so ids
/// sort by time and two runs in the same second never pick the same directory. Ids written by
/// lifeboat before 0.2 carry 4 hex digits; they are still read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

impl BackupId {
    /// An id for a backup started at `started`, disambiguated by 64 random bits in `suffix`.
    pub fn new(started: DateTime<Utc>, suffix: u64) -> Self {
        BackupId(format!("{}-{suffix:016x}", started.format(ID_TIME_FORMAT)))
    }

    /// The start time encoded in the id.
    pub fn time(&self) -> DateTime<Utc> {
        let (stamp, _) = self
            .0
            .rsplit_once('-')
            .expect("BackupId is validated on construction");
        parse_stamp(stamp)
            .expect("BackupId is validated on construction")
            .and_utc()
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses `YYYYMMDDTHHMMSSZ` with exactly those widths (chrono's `%Y` would take any width).
fn parse_stamp(stamp: &str) -> Option<NaiveDateTime> {
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(part).ok()?.parse().ok())?
    };
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    chrono::NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(4..6)?, digits(6..8)?)?
        .and_hms_opt(digits(9..11)?, digits(11..13)?, digits(13..15)?)
}

impl FromStr for BackupId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::BadId {
            given: s.to_string(),
        };
        let (stamp, suffix) = s.rsplit_once('-').ok_or_else(bad)?;
        // 16 hex digits since 0.2; 4 in the ids of older backups, which stay readable.
        let hex_ok =
            matches!(suffix.len(), 4 | 16) && suffix.bytes().all(|b| b.is_ascii_hexdigit());
        let time_ok = parse_stamp(stamp).is_some();
        if hex_ok && time_ok {
            Ok(BackupId(format!("{stamp}-{}", suffix.to_ascii_lowercase())))
        } else {
            Err(bad())
        }
    }
}

impl TryFrom<String> for BackupId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An etcd snapshot.
    Etcd,
    /// An export of the Kubernetes API's resources.
    Resources,
}

impl Kind {
    /// The name used in object keys and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Etcd => "etcd",
            Kind::Resources => "resources",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The record of one complete backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version; readers refuse versions newer than [`FORMAT_VERSION`].
    pub version: u32,
    /// The backup's id, also its directory name.
    pub id: BackupId,
    /// The cluster name from the configuration.
    pub cluster: String,
    /// What the backup holds.
    pub kind: Kind,
    /// When the backup started (UTC).
    pub started_at: DateTime<Utc>,
    /// When the payload was fully stored, just before this manifest was written (UTC).
    pub finished_at: DateTime<Utc>,
    /// The lifeboat version that wrote it.
    pub lifeboat_version: String,
    /// Facts about the etcd member the snapshot came from (etcd backups only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdSource>,
    /// Facts about the resource export (resource backups only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSource>,
    /// The stored payload object.
    pub payload: Payload,
}

/// The Kubernetes API a resource export came from, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesSource {
    /// The API server URL.
    pub api_server: String,
    /// Its version (gitVersion).
    pub api_server_version: String,
    /// How the API server's resources were discovered.
    pub discovery: Discovery,
    /// Resources exported (kinds).
    pub resource_count: u64,
    /// Objects in the archive (index.json not counted).
    pub objects: u64,
    /// Of those, objects stored as individual age files.
    pub encrypted_objects: u64,
    /// Resources whose objects are encrypted.
    pub encrypted_resources: Vec<String>,
    /// Recipients of the encrypted objects.
    pub recipients: Vec<String>,
    /// True when at least one resource could not be listed completely: see `errors`.
    pub partial: bool,
    /// One line per resource that failed.
    pub errors: Vec<String>,
}

/// The etcd member a snapshot was taken from, as it reported itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdSource {
    /// The endpoint the snapshot was streamed from.
    pub endpoint: String,
    /// etcd's server version.
    pub server_version: String,
    /// Cluster id, hex as etcdctl prints it.
    pub cluster_id: String,
    /// Member id, hex as etcdctl prints it.
    pub member_id: String,
    /// The store revision reported just before the snapshot was taken; the snapshot holds at
    /// least this revision.
    pub revision: i64,
    /// Size of the bolt database in the snapshot, without etcd's trailing hash.
    pub db_size: u64,
    /// The sha256 that etcd appended to the snapshot, hex, verified while streaming.
    pub snapshot_sha256: String,
    /// Number of keys at `revision`, counted just before the snapshot (drills compare it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_count: Option<u64>,
}

/// The single stored object of a backup and how to turn it back into plain bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// Object name inside the backup's directory, e.g. `snapshot.db.zst.age`.
    pub name: String,
    /// Size before compression and encryption (for etcd: the snapshot including its hash).
    pub plain_size: u64,
    /// Size of the stored object.
    pub stored_size: u64,
    /// sha256 of the stored object, hex.
    pub stored_sha256: String,
    /// How the plain bytes were compressed.
    pub compression: Compression,
    /// How the compressed bytes were encrypted.
    pub encryption: Encryption,
}

/// Compression of a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    /// Always `zstd` in this version.
    pub algorithm: String,
    /// The zstd level used.
    pub level: i32,
}

/// Encryption of a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// How the payload is encrypted.
    pub scheme: Scheme,
    /// The age recipients (X25519 public keys) the payload was encrypted to; empty for
    /// [`Scheme::None`].
    #[serde(default)]
    pub recipients: Vec<String>,
}

impl Encryption {
    /// Whether the payload is encrypted at all.
    pub fn is_encrypted(&self) -> bool {
        self.scheme != Scheme::None
    }

    /// Encrypted to `recipients`, or stored in the clear without them.
    pub fn to(recipients: Option<&[age::x25519::Recipient]>) -> Encryption {
        match recipients {
            Some(r) => Encryption {
                scheme: Scheme::Age,
                recipients: r.iter().map(|r| r.to_string()).collect(),
            },
            None => Encryption {
                scheme: Scheme::None,
                recipients: vec![],
            },
        }
    }
}

/// How a payload is encrypted, written as `age` or `none` (as since the first manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// age, to X25519 recipients.
    Age,
    /// Not encrypted (`encryption.allow_unencrypted`, or a resource export, whose Secrets are
    /// encrypted one by one inside the archive).
    None,
}

/// How a resource export discovered the API server's resources, written as `aggregated` or
/// `legacy` (in the manifest and in index.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// One request for every group (`/apis` with the aggregated discovery media type).
    Aggregated,
    /// One request per group version, for servers without aggregated discovery.
    Legacy,
}

impl Discovery {
    /// The name written in the manifest and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Discovery::Aggregated => "aggregated",
            Discovery::Legacy => "legacy",
        }
    }
}

impl fmt::Display for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a backup's source reported about itself: the part of the manifest that differs
/// between kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The etcd member a snapshot came from.
    Etcd(EtcdSource),
    /// The API server a resource export came from, and what it holds.
    Resources(ResourcesSource),
}

impl Source {
    /// The kind of backup these facts describe.
    pub fn kind(&self) -> Kind {
        match self {
            Source::Etcd(_) => Kind::Etcd,
            Source::Resources(_) => Kind::Resources,
        }
    }
}

/// The facts of one finished backup run, from which its manifest is built.
#[derive(Debug, Clone)]
pub struct Run {
    /// The backup's id.
    pub id: BackupId,
    /// The cluster name from the configuration.
    pub cluster: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the payload was fully stored.
    pub finished_at: DateTime<Utc>,
    /// What the source reported.
    pub source: Source,
    /// The stored payload.
    pub payload: Payload,
}

impl Manifest {
    /// The manifest of a finished run, in the format this build writes: the one place a
    /// manifest is put together.
    pub fn new(run: Run) -> Manifest {
        let kind = run.source.kind();
        let (etcd, resources) = match run.source {
            Source::Etcd(e) => (Some(e), None),
            Source::Resources(r) => (None, Some(r)),
        };
        Manifest {
            version: FORMAT_VERSION,
            id: run.id,
            cluster: run.cluster,
            kind,
            started_at: run.started_at,
            finished_at: run.finished_at,
            lifeboat_version: crate::VERSION.to_string(),
            etcd,
            resources,
            payload: run.payload,
        }
    }

    /// Why this manifest cannot stand for the directory `dir_id` of `cluster` and `kind`, if it
    /// describes another backup (copied or moved by hand, or tampered with).
    pub fn disagreement(&self, dir_id: &str, cluster: &str, kind: Kind) -> Option<String> {
        (self.id.as_str() != dir_id || self.cluster != cluster || self.kind != kind).then(|| {
            format!(
                "it describes backup {} of cluster {} ({}), not the directory {dir_id} of cluster {cluster} ({kind}) it is in",
                self.id, self.cluster, self.kind
            )
        })
    }

    /// False for a partial resource export (a resource failed to list); such a backup is kept
    /// and listed, but never counts as the newest good backup.
    pub fn is_full(&self) -> bool {
        self.resources.as_ref().is_none_or(|r| !r.partial)
    }

    /// Serializes the manifest as the pretty JSON that is stored.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        out.push(b'\n');
        out
    }

    /// Parses a stored manifest, refusing format versions this build does not know.
    pub fn from_json(key: &str, bytes: &[u8]) -> Result<Manifest, Error> {
        #[derive(Deserialize)]
        struct Probe {
            version: u32,
            #[serde(default)]
            id: String,
        }
        let invalid = |e: serde_json::Error| Error::Invalid {
            key: key.to_string(),
            reason: e.to_string(),
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(invalid)?;
        if probe.version > FORMAT_VERSION || probe.version == 0 {
            return Err(Error::UnsupportedVersion {
                id: probe.id,
                found: probe.version,
            });
        }
        serde_json::from_slice(bytes).map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn sample(id: BackupId) -> Manifest {
        let t = id.time();
        Manifest {
            version: FORMAT_VERSION,
            id,
            cluster: "prod-eu-1".into(),
            kind: Kind::Etcd,
            started_at: t,
            finished_at: t + chrono::Duration::seconds(42),
            lifeboat_version: "0.1.0".into(),
            etcd: Some(EtcdSource {
                endpoint: "https://10.0.0.1:2379".into(),
                server_version: "3.5.1".into(),
                cluster_id: "cdf818194e3a8c32".into(),
                member_id: "8e9e05c52164694d".into(),
                revision: 1234,
                db_size: 20480,
                snapshot_sha256: "ab".repeat(32),
                key_count: Some(42),
            }),
            resources: None,
            payload: Payload {
                name: "snapshot.db.zst.age".into(),
                plain_size: 20512,
                stored_size: 4096,
                stored_sha256: "cd".repeat(32),
                compression: Compression {
                    algorithm: "zstd".into(),
                    level: 3,
                },
                encryption: Encryption {
                    scheme: Scheme::Age,
                    recipients: vec!["age1example".into()],
                },
            },
        }
    }

    #[test]
    fn ids_sort_by_time_and_round_trip() {
        let a = BackupId::new(
            Utc.with_ymd_and_hms(2026, 11, 27, 13, 55, 0).unwrap(),
            0x1a2b,
        );
        assert_eq!(a.as_str(), "20261127T135500Z-0000000000001a2b");
        assert_eq!(
            a.time(),
            Utc.with_ymd_and_hms(2026, 11, 27, 13, 55, 0).unwrap()
        );
        let b = BackupId::new(Utc.with_ymd_and_hms(2026, 11, 27, 13, 55, 1).unwrap(), 0);
        assert!(a < b);
        assert_eq!(
            "20261127T135500Z-0000000000001A2B"
                .parse::<BackupId>()
                .unwrap(),
            a
        );
    }

    /// Ids of backups written before 0.2 had 4 hex digits: they must stay readable.
    #[test]
    fn old_four_digit_ids_still_parse() {
        let old: BackupId = "20261127T135500Z-1a2b".parse().unwrap();
        assert_eq!(old.as_str(), "20261127T135500Z-1a2b");
        assert_eq!(
            old.time(),
            Utc.with_ymd_and_hms(2026, 11, 27, 13, 55, 0).unwrap()
        );
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "latest",
            "20261127T135500Z",
            "20261127T135500Z-xyz1",
            "20261127T135500Z-1a2b3",
            "20261127T135500Z-00000000000000001",
            "20261327T135500Z-0000",
            "../x-0000",
        ] {
            assert!(bad.parse::<BackupId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_newer_format_version_is_refused_with_advice() {
        let mut json: serde_json::Value =
            serde_json::from_slice(&sample("20261127T135500Z-1a2b".parse().unwrap()).to_json())
                .unwrap();
        json["version"] = 2.into();
        json["something_new"] = true.into();
        let err = Manifest::from_json("k", &serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { found: 2, .. }));
        assert!(err.to_string().contains("use a newer lifeboat"));
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        let err = Manifest::from_json("a/manifest.json", b"{\"version\":1").unwrap_err();
        assert!(err.to_string().contains("a/manifest.json"));
    }

    /// Manifests written before the scheme and discovery mode were enums (plain strings then):
    /// they must read back, and write again byte for byte.
    #[test]
    fn existing_manifest_json_round_trips() {
        let etcd = r#"{
  "version": 1,
  "id": "20261127T135500Z-9f86d081884c7d65",
  "cluster": "prod-eu-1",
  "kind": "etcd",
  "started_at": "2026-11-27T13:55:00.123456Z",
  "finished_at": "2026-11-27T13:55:42Z",
  "lifeboat_version": "0.2.0",
  "etcd": {
    "endpoint": "https://10.0.0.1:2379",
    "server_version": "3.5.17",
    "cluster_id": "cdf818194e3a8c32",
    "member_id": "8e9e05c52164694d",
    "revision": 1234,
    "db_size": 20480,
    "snapshot_sha256": "abababababababababababababababababababababababababababababababab",
    "key_count": 42
  },
  "payload": {
    "name": "snapshot.db.zst.age",
    "plain_size": 20512,
    "stored_size": 4096,
    "stored_sha256": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
    "compression": {
      "algorithm": "zstd",
      "level": 3
    },
    "encryption": {
      "scheme": "age",
      "recipients": [
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
      ]
    }
  }
}
"#;
        let resources = r#"{
  "version": 1,
  "id": "20261127T140000Z-1a2b",
  "cluster": "prod-eu-1",
  "kind": "resources",
  "started_at": "2026-11-27T14:00:00Z",
  "finished_at": "2026-11-27T14:00:09Z",
  "lifeboat_version": "0.1.0",
  "resources": {
    "api_server": "https://10.0.0.1:6443",
    "api_server_version": "v1.31.2",
    "discovery": "legacy",
    "resource_count": 40,
    "objects": 812,
    "encrypted_objects": 31,
    "encrypted_resources": [
      "secrets"
    ],
    "recipients": [],
    "partial": false,
    "errors": []
  },
  "payload": {
    "name": "resources.tar.zst",
    "plain_size": 1048576,
    "stored_size": 90112,
    "stored_sha256": "efefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefef",
    "compression": {
      "algorithm": "zstd",
      "level": 3
    },
    "encryption": {
      "scheme": "none",
      "recipients": []
    }
  }
}
"#;
        let m = Manifest::from_json("etcd", etcd.as_bytes()).unwrap();
        assert_eq!(m.payload.encryption.scheme, Scheme::Age);
        assert!(m.payload.encryption.is_encrypted());
        assert_eq!(String::from_utf8(m.to_json()).unwrap(), etcd);
        let m = Manifest::from_json("resources", resources.as_bytes()).unwrap();
        assert_eq!(m.payload.encryption.scheme, Scheme::None);
        assert!(!m.payload.encryption.is_encrypted());
        assert_eq!(m.resources.as_ref().unwrap().discovery, Discovery::Legacy);
        assert_eq!(String::from_utf8(m.to_json()).unwrap(), resources);
    }

    #[test]
    fn an_unknown_encryption_scheme_is_an_invalid_manifest() {
        let json = String::from_utf8(sample("20261127T135500Z-1a2b".parse().unwrap()).to_json())
            .unwrap()
            .replace("\"scheme\": \"age\"", "\"scheme\": \"rot13\"");
        assert!(matches!(
            Manifest::from_json("k", json.as_bytes()),
            Err(Error::Invalid { .. })
        ));
    }

    proptest! {
        #[test]
        fn manifests_round_trip(secs in 0i64..4_000_000_000, suffix in any::<u64>(), rev in any::<i64>(), size in any::<u64>()) {
            let id = BackupId::new(DateTime::from_timestamp(secs, 0).unwrap(), suffix);
            prop_assert_eq!(id.as_str().parse::<BackupId>().unwrap(), id.clone());
            let mut m = sample(id);
            m.etcd.as_mut().unwrap().revision = rev;
            m.payload.plain_size = size;
            let back = Manifest::from_json("k", &m.to_json()).unwrap();
            prop_assert_eq!(back, m);
        }
    }
}
