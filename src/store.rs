//! Object storage: opening an S3 or `file://` store, the key layout, multipart upload with
//! backpressure, the manifest-last commit, and listing. Layout (docs/FORMAT.md):
//! `<prefix>/<cluster>/<kind>/<id>/<payload>` and `.../<id>/manifest.json`, written last.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig,
    WriteMultipart,
};
use thiserror::Error;

use crate::config;
use crate::error::chain;
use crate::manifest::{self, BackupId, Kind, MANIFEST_NAME, Manifest};

/// Why the store could not do what was asked. A variant that wraps a failure of the store keeps
/// it as its `source`; the message says what was being done, with which key, and what to try.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot open the store {url}: {reason}")]
    Open { url: String, reason: &'static str },
    #[error("cannot open the store {url}: cannot create the directory {dir}")]
    OpenDir {
        url: String,
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the store {url}")]
    OpenClient {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot open the store {url}: its prefix is not a valid object path")]
    OpenPrefix {
        url: String,
        #[source]
        source: object_store::path::Error,
    },
    #[error(
        "cannot open the store {url}: the scheme {scheme} is not supported; use s3:// or file://"
    )]
    OpenScheme { url: String, scheme: String },
    #[error(
        "the bucket of {url} does not exist: create it (e.g. `aws s3 mb s3://{bucket}`) or fix storage.url"
    )]
    BucketMissing { url: String, bucket: String },
    #[error(
        "the store {url} refused access: check the credentials (AWS_* environment or storage.s3.*_file) and the bucket policy"
    )]
    Denied {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot reach the store {url}: check storage.url, storage.s3.endpoint and the network")]
    Unreachable {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("uploading {key} failed{abort}")]
    Upload {
        key: String,
        abort: AbortOutcome,
        #[source]
        source: object_store::Error,
    },
    #[error("uploading {key} stopped: {why}{abort}")]
    UploadStopped {
        key: String,
        /// Lifeboat's own reason for stopping: a cancellation or an earlier stage's failure.
        why: String,
        abort: AbortOutcome,
    },
    #[error("writing the manifest {key} failed, so the backup does not exist")]
    Commit {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "the run was cancelled (shutdown or leadership lost) before the manifest {key} was written, so the backup does not exist; the payload is left for the sweep"
    )]
    CommitCancelled { key: String },
    #[error(
        "the manifest {key} already exists; backups are never overwritten: this is an id collision, run the backup again"
    )]
    CommitExists { key: String },
    #[error(
        "there is no backup {id} of kind {kind} for cluster {cluster} in {url}: run `lifeboat list` to see the backups that exist"
    )]
    NoSuchBackup {
        url: String,
        cluster: String,
        kind: Kind,
        id: BackupId,
    },
    #[error(
        "there are no complete {kind} backups of cluster {cluster} in {url}: run `lifeboat backup {kind}` first, or check cluster and storage.url"
    )]
    NoBackups {
        url: String,
        cluster: String,
        kind: Kind,
    },
    #[error("reading {key} failed")]
    Read {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{key} does not exist")]
    NotFound { key: String },
    #[error(
        "{key} is missing although the manifest of its backup exists: the backup was damaged in storage; use another backup (`lifeboat list`)"
    )]
    PayloadMissing { key: String },
    #[error("writing {key} failed")]
    Put {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "deleting {key} failed; check that the credentials may delete (s3:DeleteObject) and run the command again"
    )]
    Delete {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "removing {path}, a staging file of a killed upload, failed; check the permissions of the store's directory and run the command again"
    )]
    DeleteStaging {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the store {url} does not refuse overwriting an existing object with a create-only write (If-None-Match: *): the probe {key} was written twice; lifeboat cannot promise that a backup is never overwritten there. Use a store that honours conditional writes (AWS S3, MinIO, Ceph RGW 17+), or a file:// store"
    )]
    NotCreateOnly { url: String, key: String },
    #[error(
        "the manifest {key} is {size} bytes, more than the {limit} bytes a lifeboat manifest can be: it was not written by lifeboat; remove it or use another backup"
    )]
    ManifestTooLarge { key: String, size: u64, limit: u64 },
    #[error(
        "the newest {} backup of cluster {}, {}, cannot be read ({}); refusing to fall back silently to an older one: inspect or remove {}, or name the newest readable backup explicitly{}",
        .0.kind, .0.cluster, .0.unreadable.id, .0.unreadable.reason, .0.unreadable.key, .0.newest_readable
    )]
    NewestUnreadable(Box<NewestUnreadable>),
    #[error(
        "the directory of new backup {id} in {url} is not empty ({found}); a new backup never writes over existing objects: run the backup again"
    )]
    IdTaken {
        url: String,
        id: BackupId,
        found: String,
    },
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
}

/// A newest backup whose manifest cannot be read, and what to use instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewestUnreadable {
    /// As in the config's `cluster`.
    pub cluster: String,
    /// What the backups hold.
    pub kind: Kind,
    /// The newest manifest, which cannot be read.
    pub unreadable: Unreadable,
    /// What to name instead: the newest backup that can be read, if any.
    pub newest_readable: NewestReadable,
}

/// The newest backup that can be read, suggested when a newer one cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewestReadable(pub Option<BackupId>);

impl std::fmt::Display for NewestReadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(id) => write!(f, " (the newest readable one is {id}: `--backup {id}`)"),
            None => write!(f, " (no readable backup exists)"),
        }
    }
}

/// Which backup a command means: the newest complete one, or one by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The newest complete backup (`latest`).
    Latest,
    /// The backup with this id.
    Id(BackupId),
}

impl std::str::FromStr for Selector {
    type Err = manifest::Error;

    /// `latest`, or a backup id.
    fn from_str(s: &str) -> Result<Selector, manifest::Error> {
        match s {
            "latest" => Ok(Selector::Latest),
            id => id.parse().map(Selector::Id),
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Latest => f.write_str("latest"),
            Selector::Id(id) => id.fmt(f),
        }
    }
}

/// The largest manifest lifeboat reads; real ones are about 2 KiB.
pub const MANIFEST_LIMIT: u64 = 1 << 20;

/// Where the store's create-only probe lives, below `<prefix>/<cluster>`.
const PROBE_DIR: &str = ".lifeboat";

impl Error {
    /// Whether the error happened while committing the manifest.
    pub fn is_commit(&self) -> bool {
        matches!(
            self,
            Error::Commit { .. } | Error::CommitCancelled { .. } | Error::CommitExists { .. }
        )
    }
}

/// What became of the multipart upload after a failure; shown at the end of upload errors.
#[derive(Debug)]
pub enum AbortOutcome {
    /// Not attempted (the failure came before the upload started).
    NotStarted,
    /// The partial upload was aborted; nothing is left behind.
    Aborted,
    /// Aborting failed too; parts may remain until a lifecycle rule removes them.
    Failed(Box<object_store::Error>),
    /// An abort was sent while completing the upload; whether it reached the store is unknown.
    Attempted,
}

impl std::fmt::Display for AbortOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AbortOutcome::NotStarted => Ok(()),
            AbortOutcome::Aborted => write!(
                f,
                " (the partial upload was aborted; nothing was left behind)"
            ),
            AbortOutcome::Attempted => write!(
                f,
                " (lifeboat asked the store to abort the partial upload; if the store was unreachable, its parts stay until a bucket lifecycle rule with AbortIncompleteMultipartUpload removes them)"
            ),
            AbortOutcome::Failed(why) => write!(
                f,
                " (aborting the partial upload also failed: {}; its parts stay until a bucket lifecycle rule with AbortIncompleteMultipartUpload removes them)",
                chain(why.as_ref())
            ),
        }
    }
}

/// One object store, rooted at the configured prefix.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// The same store for downloads: no bound on a whole request, only on silence
    /// (`request_timeout` without a byte), so a large part over a slow link still arrives.
    download: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
    /// The directory of a `file://` store, where killed uploads leave staging files
    /// (`<key>#<n>`) that object_store's listing does not show.
    local_dir: Option<std::path::PathBuf>,
    part_size: usize,
    concurrency: usize,
    request_timeout: std::time::Duration,
    retry_timeout: std::time::Duration,
}

/// A backup id directory that has objects but no manifest: a run in progress, or one that died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    /// The id directory's name.
    pub id: String,
    /// How many objects are in it (staging files of a killed `file://` upload included).
    pub objects: usize,
    /// When the newest of them was last modified.
    pub newest: DateTime<Utc>,
}

/// A manifest that exists but cannot be trusted: damaged, from a newer lifeboat, too large, or
/// describing another backup than the directory it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The id directory's name.
    pub id: String,
    /// The manifest's full key, for messages.
    pub key: String,
    /// Why it cannot be read.
    pub reason: String,
}

/// Everything stored for one cluster and kind.
#[derive(Debug, Default)]
pub struct Listing {
    /// Complete backups (readable manifests), oldest first.
    pub complete: Vec<Manifest>,
    /// Id directories without a manifest.
    pub incomplete: Vec<Incomplete>,
    /// Manifests that exist but cannot be read, by id directory.
    pub unreadable: Vec<Unreadable>,
    /// The newest Last-Modified of any object listed: the store's clock, as of the last write.
    pub newest_object: Option<DateTime<Utc>>,
}

impl Listing {
    /// Unreadable manifests newer (by id directory) than the newest readable backup.
    pub fn unreadable_newer_than_complete(&self) -> impl Iterator<Item = &Unreadable> {
        let newest = self.complete.last().map(|m| m.id.as_str().to_string());
        self.unreadable
            .iter()
            .filter(move |u| newest.as_deref().is_none_or(|n| u.id.as_str() > n))
    }
}

impl Store {
    /// Opens the store described by the configuration. Nothing is contacted yet.
    pub fn open(cfg: &config::Storage) -> Result<Store, Error> {
        let url = crate::error::redact_urls(cfg.url.as_str());
        let mut local_dir = None;
        let (inner, download, root): (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>, String) =
            match cfg.url.scheme() {
                "file" => {
                    let dir = cfg.url.to_file_path().map_err(|_| Error::Open {
                        url: url.clone(),
                        reason: "not an absolute local path",
                    })?;
                    std::fs::create_dir_all(&dir).map_err(|source| Error::OpenDir {
                        url: url.clone(),
                        dir: dir.clone(),
                        source,
                    })?;
                    let fs = LocalFileSystem::new_with_prefix(&dir)
                        .map_err(|source| Error::OpenClient {
                            url: url.clone(),
                            source,
                        })?
                        .with_automatic_cleanup(true);
                    local_dir = Some(dir);
                    let fs: Arc<dyn ObjectStore> = Arc::new(fs);
                    (fs.clone(), fs, String::new())
                }
                "s3" => {
                    let bucket = cfg.url.host_str().unwrap_or_default();
                    let build = |client: ClientOptions| {
                        let mut b = AmazonS3Builder::from_env()
                            .with_bucket_name(bucket)
                            .with_virtual_hosted_style_request(cfg.s3.virtual_hosted_style)
                            .with_allow_http(cfg.s3.allow_http)
                            .with_retry(RetryConfig {
                                backoff: BackoffConfig::default(),
                                max_retries: 10,
                                retry_timeout: cfg.retry_timeout,
                            })
                            .with_client_options(
                                client
                                    .with_connect_timeout(std::time::Duration::from_secs(10))
                                    .with_allow_http(cfg.s3.allow_http),
                            );
                        if let Some(endpoint) = &cfg.s3.endpoint {
                            b = b.with_endpoint(endpoint);
                        }
                        if let Some(region) = &cfg.s3.region {
                            b = b.with_region(region);
                        } else if std::env::var_os("AWS_REGION").is_none()
                            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
                        {
                            b = b.with_region("us-east-1");
                        }
                        if let Some(c) = &cfg.s3.credentials {
                            b = b
                                .with_access_key_id(&c.access_key_id)
                                .with_secret_access_key(&c.secret_access_key);
                        }
                        b.build().map_err(|source| Error::OpenClient {
                            url: url.clone(),
                            source,
                        })
                    };
                    let s3 = build(ClientOptions::new().with_timeout(cfg.request_timeout))?;
                    let s3_download = build(
                        ClientOptions::new()
                            .with_timeout_disabled()
                            .with_read_timeout(cfg.request_timeout),
                    )?;
                    (
                        Arc::new(s3),
                        Arc::new(s3_download),
                        cfg.url.path().trim_matches('/').to_string(),
                    )
                }
                other => {
                    return Err(Error::OpenScheme {
                        url,
                        scheme: other.to_string(),
                    });
                }
            };
        let root = Path::parse(&root).map_err(|source| Error::OpenPrefix {
            url: url.clone(),
            source,
        })?;
        Ok(Store {
            inner,
            download,
            root,
            url,
            local_dir,
            part_size: cfg.part_size,
            concurrency: cfg.upload_concurrency,
            request_timeout: cfg.request_timeout,
            retry_timeout: cfg.retry_timeout,
        })
    }

    /// A store over any `ObjectStore` (for tests and tools).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, url: &str, part_size: usize) -> Store {
        Store {
            download: inner.clone(),
            inner,
            root: Path::default(),
            url: url.to_string(),
            local_dir: None,
            part_size,
            concurrency: 4,
            request_timeout: std::time::Duration::from_secs(60),
            retry_timeout: std::time::Duration::from_secs(120),
        }
    }

    /// The same store with other download timeouts (for tests of slow and silent links).
    pub fn with_timeouts(
        mut self,
        request_timeout: std::time::Duration,
        retry_timeout: std::time::Duration,
    ) -> Store {
        self.request_timeout = request_timeout;
        self.retry_timeout = retry_timeout;
        self
    }

    /// The store's URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `<prefix>/<cluster>/<kind>`.
    pub fn kind_dir(&self, cluster: &str, kind: Kind) -> Path {
        self.root.clone().join(cluster).join(kind.as_str())
    }

    /// `<prefix>/<cluster>/<kind>/<id>`: the directory of one backup.
    pub fn backup_dir(&self, cluster: &str, kind: Kind, id: &BackupId) -> Path {
        self.id_dir(cluster, kind, id.as_str())
    }

    /// `<prefix>/<cluster>/<kind>/<name>`: an id directory as listed, whose name need not be a
    /// valid backup id (an incomplete directory the sweep removes).
    pub fn id_dir(&self, cluster: &str, kind: Kind, name: &str) -> Path {
        self.kind_dir(cluster, kind).join(name)
    }

    /// The full key of an object, for messages and for standard tools.
    pub fn describe(&self, key: &Path) -> String {
        match self.url.split_once("://") {
            Some(("file", dir)) => format!("file://{}/{key}", dir.trim_end_matches('/')),
            Some((scheme, rest)) => {
                let bucket = rest.split('/').next().unwrap_or(rest);
                format!("{scheme}://{bucket}/{key}")
            }
            None => key.to_string(),
        }
    }

    /// Checks that the store answers, the bucket exists and create-only writes are honoured,
    /// before any work starts.
    pub async fn preflight(&self, cluster: &str, kind: Kind) -> Result<(), Error> {
        self.inner
            .list_with_delimiter(Some(&self.kind_dir(cluster, kind)))
            .await
            .map_err(|e| self.classify(e))?;
        self.probe_create_only(cluster).await
    }

    /// Proves that the store refuses a create-only write of an object that exists: the probe
    /// object is written create-only (once per cluster, then kept), then again, which must be
    /// refused. A store that ignores `If-None-Match: *` would let an id collision overwrite a
    /// committed backup, so lifeboat refuses to write to it.
    pub async fn probe_create_only(&self, cluster: &str) -> Result<(), Error> {
        let key = self
            .root
            .clone()
            .join(cluster)
            .join(PROBE_DIR)
            .join("create-only-probe");
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let body = || {
            bytes::Bytes::from_static(
                b"lifeboat checks here that the store refuses to overwrite with a create-only write.\n",
            )
        };
        for attempt in 0..2 {
            match self.inner.put_opts(&key, body().into(), create()).await {
                // Written: the first write of the probe ever. The second must be refused.
                Ok(_) if attempt == 0 => continue,
                Ok(_) => {
                    return Err(Error::NotCreateOnly {
                        url: self.url.clone(),
                        key: self.describe(&key),
                    });
                }
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => return Ok(()),
                Err(source) => {
                    return Err(Error::Put {
                        key: self.describe(&key),
                        source,
                    });
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Refuses an id whose directory already holds objects, so a new backup never writes over
    /// anything (an id collision, however unlikely with 64 random bits, ends here).
    pub async fn ensure_unused(
        &self,
        cluster: &str,
        kind: Kind,
        id: &BackupId,
    ) -> Result<(), Error> {
        let dir = self.backup_dir(cluster, kind, id);
        let mut objects = self.inner.list(Some(&dir));
        let found = objects.try_next().await.map_err(|e| self.classify(e))?;
        let staging = self.staging_files(&dir);
        match (found, staging.first()) {
            (None, None) => Ok(()),
            (Some(meta), _) => Err(Error::IdTaken {
                url: self.url.clone(),
                id: id.clone(),
                found: self.describe(&meta.location),
            }),
            (None, Some((path, _))) => Err(Error::IdTaken {
                url: self.url.clone(),
                id: id.clone(),
                found: path.display().to_string(),
            }),
        }
    }

    /// The store's own clock: the Last-Modified it gives a small object written now at
    /// `<prefix>/<cluster>/.lifeboat/clock`. Retention compares it with the local clock.
    pub async fn clock(&self, cluster: &str) -> Result<DateTime<Utc>, Error> {
        let key = self
            .root
            .clone()
            .join(cluster)
            .join(PROBE_DIR)
            .join("clock");
        self.inner
            .put(
                &key,
                bytes::Bytes::from_static(
                    b"lifeboat reads the store's clock from this object's Last-Modified.\n",
                )
                .into(),
            )
            .await
            .map_err(|source| Error::Put {
                key: self.describe(&key),
                source,
            })?;
        Ok(self
            .inner
            .head(&key)
            .await
            .map_err(|source| Error::Read {
                key: self.describe(&key),
                source,
            })?
            .last_modified)
    }

    /// Staging files (`<name>#<digits>`) that a killed upload left in a `file://` store's id
    /// directory, with their modification times. object_store's listing hides them.
    fn staging_files(&self, dir: &Path) -> Vec<(std::path::PathBuf, DateTime<Utc>)> {
        let Some(local) = self.local_path(dir) else {
            return vec![];
        };
        let Ok(entries) = std::fs::read_dir(&local) else {
            return vec![];
        };
        entries
            .flatten()
            .filter(|e| is_staging_name(&e.file_name().to_string_lossy()))
            .filter_map(|e| {
                let modified = e.metadata().ok()?.modified().ok()?;
                Some((e.path(), DateTime::<Utc>::from(modified)))
            })
            .collect()
    }

    /// Where `dir` lies on disk, for a `file://` store.
    fn local_path(&self, dir: &Path) -> Option<std::path::PathBuf> {
        let mut local = self.local_dir.clone()?;
        for part in dir.parts() {
            local.push(part.as_ref());
        }
        Some(local)
    }

    /// The id directories under `<prefix>/<cluster>/<kind>` of a `file://` store.
    fn local_id_dirs(&self, kind_dir: &Path) -> Vec<String> {
        let Some(local) = self.local_path(kind_dir) else {
            return vec![];
        };
        std::fs::read_dir(&local)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Maps an object_store error from a whole-store operation to what the user should do.
    /// object_store reports S3's error codes only as text (its listing errors are `Generic`,
    /// the HTTP status private), so the codes of a missing bucket and of refused credentials
    /// are looked for there; everything else is kept by variant.
    fn classify(&self, source: object_store::Error) -> Error {
        let text = chain(&source);
        let s3_code = |codes: &[&str]| codes.iter().any(|c| text.contains(c));
        if s3_code(&["NoSuchBucket", "specified bucket does not exist"]) {
            let bucket = self
                .url
                .strip_prefix("s3://")
                .and_then(|r| r.split('/').next());
            return Error::BucketMissing {
                url: self.url.clone(),
                bucket: bucket.unwrap_or_default().to_string(),
            };
        }
        let url = self.url.clone();
        match source {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Error::Denied { url, source },
            _ if s3_code(&[
                "AccessDenied",
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
            ]) =>
            {
                Error::Denied { url, source }
            }
            _ => Error::Unreachable { url, source },
        }
    }

    /// Starts a multipart upload of `key`.
    pub async fn start_upload(&self, key: Path) -> Result<Upload, Error> {
        let upload = self
            .inner
            .put_multipart(&key)
            .await
            .map_err(|source| Error::Upload {
                key: self.describe(&key),
                abort: AbortOutcome::NotStarted,
                source,
            })?;
        Ok(Upload {
            described: self.describe(&key),
            writer: Some(WriteMultipart::new_with_chunk_size(upload, self.part_size)),
            concurrency: self.concurrency,
        })
    }

    /// Writes the manifest, which makes the backup exist. Never overwrites.
    pub async fn commit(&self, m: &Manifest) -> Result<(), Error> {
        let key = self
            .backup_dir(&m.cluster, m.kind, &m.id)
            .join(MANIFEST_NAME);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.inner.put_opts(&key, m.to_json().into(), opts).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(Error::CommitExists {
                key: self.describe(&key),
            }),
            Err(source) => Err(Error::Commit {
                key: self.describe(&key),
                source,
            }),
        }
    }

    /// Lists every backup of a cluster and kind: complete ones (with their manifests, oldest
    /// first), id directories without a manifest, and manifests that cannot be read. A
    /// manifest that describes another backup than the directory it is in is unreadable, so
    /// nothing acts on the wrong directory because of it.
    pub async fn list(&self, cluster: &str, kind: Kind) -> Result<Listing, Error> {
        let dir = self.kind_dir(cluster, kind);
        let objects: Vec<_> = self
            .inner
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| self.classify(e))?;
        let mut listing = Listing::default();
        let mut by_id: BTreeMap<String, (bool, usize, DateTime<Utc>)> = BTreeMap::new();
        for meta in objects {
            listing.newest_object = listing.newest_object.max(Some(meta.last_modified));
            let mut parts = meta.location.prefix_match(&dir).into_iter().flatten();
            let (Some(id), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let entry =
                by_id
                    .entry(id.as_ref().to_string())
                    .or_insert((false, 0, meta.last_modified));
            entry.0 |= name.as_ref() == MANIFEST_NAME && parts.next().is_none();
            entry.1 += 1;
            entry.2 = entry.2.max(meta.last_modified);
        }
        // A killed upload to a file:// store leaves only staging files, which the listing above
        // does not show: count them, so the sweep removes them after its grace period.
        for id in self.local_id_dirs(&dir) {
            for (_, modified) in self.staging_files(&dir.clone().join(id.as_str())) {
                let entry = by_id.entry(id.clone()).or_insert((false, 0, modified));
                entry.1 += 1;
                entry.2 = entry.2.max(modified);
            }
        }
        // Each future owns its store handle and strings: futures that borrow from a closure
        // make the whole listing non-Send for spawned tasks.
        let wanted: Vec<(String, Path)> = by_id
            .iter()
            .filter(|(_, v)| v.0)
            .map(|(id, _)| {
                (
                    id.clone(),
                    dir.clone().join(id.as_str()).join(MANIFEST_NAME),
                )
            })
            .collect();
        let manifests = futures::stream::iter(wanted.into_iter().map(|(id, key)| {
            let store = self.clone();
            let cluster = cluster.to_string();
            async move {
                let described = store.describe(&key);
                let result = store
                    .read_manifest(&key)
                    .await
                    .and_then(|m| in_its_directory(m, &described, &id, &cluster, kind));
                (id, described, result)
            }
        }))
        .buffered(8)
        .collect::<Vec<_>>()
        .await;
        for (id, key, result) in manifests {
            match result {
                Ok(m) => listing.complete.push(m),
                Err(e) => listing.unreadable.push(Unreadable {
                    id,
                    key,
                    reason: chain(&e),
                }),
            }
        }
        for (id, (has_manifest, objects, newest)) in by_id {
            if !has_manifest {
                listing.incomplete.push(Incomplete {
                    id,
                    objects,
                    newest,
                });
            }
        }
        listing.complete.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(listing)
    }

    async fn read_manifest(&self, key: &Path) -> Result<Manifest, Error> {
        let bytes = self.read_all_limited(key, MANIFEST_LIMIT).await?;
        Ok(Manifest::from_json(&self.describe(key), &bytes)?)
    }

    /// Finds one complete backup: `latest` or an id. `latest` refuses when a manifest newer
    /// than the newest readable backup cannot be read: a damaged newest backup is news the
    /// on-call engineer must see, not something to step over silently.
    pub async fn resolve(
        &self,
        cluster: &str,
        kind: Kind,
        which: &Selector,
    ) -> Result<Manifest, Error> {
        let id = match which {
            Selector::Id(id) => id,
            Selector::Latest => return self.latest(cluster, kind).await,
        };
        let key = self.backup_dir(cluster, kind, id).join(MANIFEST_NAME);
        match self.read_manifest(&key).await {
            Ok(m) => in_its_directory(m, &self.describe(&key), id.as_str(), cluster, kind),
            Err(Error::NotFound { .. }) => Err(Error::NoSuchBackup {
                url: self.url.clone(),
                cluster: cluster.to_string(),
                kind,
                id: id.clone(),
            }),
            Err(other) => Err(other),
        }
    }

    /// The newest complete backup; see [`Store::resolve`].
    async fn latest(&self, cluster: &str, kind: Kind) -> Result<Manifest, Error> {
        let listing = self.list(cluster, kind).await?;
        if let Some(newest_bad) = listing.unreadable_newer_than_complete().last() {
            return Err(Error::NewestUnreadable(Box::new(NewestUnreadable {
                cluster: cluster.to_string(),
                kind,
                unreadable: newest_bad.clone(),
                newest_readable: NewestReadable(listing.complete.last().map(|m| m.id.clone())),
            })));
        }
        listing
            .complete
            .into_iter()
            .last()
            .ok_or_else(|| Error::NoBackups {
                url: self.url.clone(),
                cluster: cluster.to_string(),
                kind,
            })
    }

    /// Reads a small object whole, refusing one larger than `limit` before reading its body.
    pub async fn read_all_limited(&self, key: &Path, limit: u64) -> Result<Bytes, Error> {
        let read_err = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => Error::NotFound {
                key: self.describe(key),
            },
            source => Error::Read {
                key: self.describe(key),
                source,
            },
        };
        let result = self.inner.get(key).await.map_err(read_err)?;
        if result.meta.size > limit {
            return Err(Error::ManifestTooLarge {
                key: self.describe(key),
                size: result.meta.size,
                limit,
            });
        }
        result.bytes().await.map_err(read_err)
    }

    /// Reads a small object whole (at most [`MANIFEST_LIMIT`] bytes).
    pub async fn read_all(&self, key: &Path) -> Result<Bytes, Error> {
        self.read_all_limited(key, MANIFEST_LIMIT).await
    }

    /// Streams an object's bytes, downloaded in ranged parts of the upload part size, a few in
    /// flight and delivered in order. The consumer's pace is the download's pace: no more than
    /// the parts in flight are ever held. Each part is retried on its own, resuming where its
    /// bytes stopped, for as long as bytes keep arriving; a part silent for `request_timeout`
    /// is asked for again, and one that brings no byte for `retry_timeout` fails the download.
    pub async fn read_stream(
        &self,
        key: &Path,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, Error> {
        let described = self.describe(key);
        let size = match self.download.head(key).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::PayloadMissing { key: described });
            }
            Err(source) => {
                return Err(Error::Read {
                    key: described,
                    source,
                });
            }
        };
        let part = self.part_size.max(1) as u64;
        let ranges: Vec<std::ops::Range<u64>> = (0..size)
            .step_by(part as usize)
            .map(|start| start..(start + part).min(size))
            .collect();
        let ranged = RangedReader {
            store: self.download.clone(),
            key: key.clone(),
            described,
            idle: self.request_timeout,
            patience: self.retry_timeout,
            progress: Arc::new(std::sync::Mutex::new(tokio::time::Instant::now())),
        };
        Ok(futures::stream::iter(ranges)
            .map(move |range| ranged.clone().part(range))
            .buffered(self.concurrency.max(1))
            .boxed())
    }

    /// Every object key under `dir` (used by retention).
    pub fn list_objects(&self, dir: &Path) -> BoxStream<'static, Result<Path, Error>> {
        let url = self.url.clone();
        self.inner
            .list(Some(dir))
            .map_ok(|meta| meta.location)
            .map_err(move |source| Error::Unreachable {
                url: url.clone(),
                source,
            })
            .boxed()
    }

    /// Deletes one object (used by retention and tests).
    pub async fn delete(&self, key: &Path) -> Result<(), Error> {
        self.inner
            .delete(key)
            .await
            .map_err(|source| Error::Delete {
                key: self.describe(key),
                source,
            })
    }

    /// Deletes everything in one id directory, staging files of a killed `file://` upload
    /// included.
    pub async fn delete_dir(&self, dir: &Path) -> Result<(), Error> {
        let objects: Vec<_> = self.list_objects(dir).try_collect().await?;
        for key in objects {
            self.delete(&key).await?;
        }
        for (path, _) in self.staging_files(dir) {
            std::fs::remove_file(&path).or_else(|source| match source.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(Error::DeleteStaging { path, source }),
            })?;
        }
        if let Some(local) = self.local_path(dir) {
            // Only an empty directory goes; anything else stays and is listed next time.
            let _ = std::fs::remove_dir(&local);
        }
        Ok(())
    }

    /// Writes one object whole (used by tests and tools).
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<(), Error> {
        self.inner
            .put(key, bytes.into())
            .await
            .map(|_| ())
            .map_err(|source| Error::Put {
                key: self.describe(key),
                source,
            })
    }

    /// The cluster directories directly under the store's prefix, sorted (for `list
    /// --all-clusters` on a bucket shared by several clusters). Hidden names (`.lifeboat`) are
    /// left out; a directory that holds no backups is listed too, and lists as empty.
    pub async fn clusters(&self) -> Result<Vec<String>, Error> {
        let prefix = (!self.root.as_ref().is_empty()).then_some(&self.root);
        let listed = self
            .inner
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| self.classify(e))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|dir| dir.filename().map(str::to_string))
            .filter(|name| !name.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes one backup: its manifest first, so the backup stops existing at once (a failure
    /// after that leaves an incomplete id directory, which the sweep removes), then every other
    /// object in its directory. Returns the keys deleted, the manifest's first.
    pub async fn delete_backup(
        &self,
        cluster: &str,
        kind: Kind,
        id: &BackupId,
    ) -> Result<Vec<String>, Error> {
        let dir = self.backup_dir(cluster, kind, id);
        let manifest_key = dir.clone().join(MANIFEST_NAME);
        self.delete(&manifest_key).await?;
        let mut deleted = vec![self.describe(&manifest_key)];
        let rest: Vec<Path> = self.list_objects(&dir).try_collect().await?;
        deleted.extend(rest.iter().map(|k| self.describe(k)));
        self.delete_dir(&dir).await?;
        Ok(deleted)
    }
}

/// `m`, unless it describes another backup than the directory `dir_id` it was read from (`key`).
fn in_its_directory(
    m: Manifest,
    key: &str,
    dir_id: &str,
    cluster: &str,
    kind: Kind,
) -> Result<Manifest, Error> {
    match m.disagreement(dir_id, cluster, kind) {
        Some(reason) => Err(Error::Manifest(manifest::Error::Invalid {
            key: key.to_string(),
            reason,
        })),
        None => Ok(m),
    }
}

/// Whether a file name is a `file://` upload's staging file: `<name>#<digits>`.
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Why downloading an object failed, inside the `io::Error`s of [`Store::read_stream`].
#[derive(Debug, Error)]
pub enum DownloadError {
    #[error("reading {key} failed: the store sent more bytes than asked for bytes {start}..{end}")]
    TooLong { key: String, start: u64, end: u64 },
    #[error("{key} disappeared during the download")]
    Disappeared { key: String },
    #[error(
        "reading {key} failed: no byte arrived for {patience:?} (storage.retry_timeout) while bytes {start}..{end} were still missing"
    )]
    Stalled {
        key: String,
        patience: std::time::Duration,
        start: u64,
        end: u64,
        /// What interrupted the last attempt.
        #[source]
        last: Interruption,
    },
}

/// What interrupted one attempt at a part of a download.
#[derive(Debug, Error)]
pub enum Interruption {
    #[error(transparent)]
    Store(object_store::Error),
    #[error("the store ended bytes {start}..{end} early")]
    EndedEarly { start: u64, end: u64 },
    #[error("no byte arrived for {0:?}")]
    Silent(std::time::Duration),
}

/// Reads one object in ranged parts; each [`RangedReader::part`] retries on its own.
#[derive(Clone)]
struct RangedReader {
    store: Arc<dyn ObjectStore>,
    key: Path,
    described: String,
    /// A part that brings no byte for this long is asked for again.
    idle: std::time::Duration,
    /// When no part has brought a byte for this long, the download fails.
    patience: std::time::Duration,
    /// When any part last brought a byte: a part waiting behind others (a server that serves
    /// one request at a time) is not failed while the download as a whole moves.
    progress: Arc<std::sync::Mutex<tokio::time::Instant>>,
}

impl RangedReader {
    /// Downloads `range` whole, resuming after a failure where the bytes stopped.
    async fn part(self, range: std::ops::Range<u64>) -> std::io::Result<Bytes> {
        let mut buf = bytes::BytesMut::with_capacity((range.end - range.start) as usize);
        let mut tries = 0u32;
        loop {
            let start = range.start + buf.len() as u64;
            if start > range.end {
                return Err(std::io::Error::other(DownloadError::TooLong {
                    key: self.described.clone(),
                    start: range.start,
                    end: range.end,
                }));
            }
            if start == range.end {
                return Ok(buf.freeze());
            }
            let failure = match self.get(start..range.end).await {
                Ok(mut body) => loop {
                    match tokio::time::timeout(self.idle, body.next()).await {
                        Ok(Some(Ok(chunk))) => {
                            buf.extend_from_slice(&chunk);
                            *self.progress.lock().expect("not poisoned") =
                                tokio::time::Instant::now();
                            tries = 0;
                        }
                        Ok(None) if range.start + buf.len() as u64 >= range.end => break None,
                        Ok(None) => {
                            break Some(Interruption::EndedEarly {
                                start,
                                end: range.end,
                            });
                        }
                        Ok(Some(Err(e))) => break Some(Interruption::Store(e)),
                        Err(_) => break Some(Interruption::Silent(self.idle)),
                    }
                },
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        DownloadError::Disappeared {
                            key: self.described.clone(),
                        },
                    ));
                }
                Err(e) => Some(Interruption::Store(e)),
            };
            let Some(last) = failure else { continue };
            let last_progress = *self.progress.lock().expect("not poisoned");
            if last_progress.elapsed() >= self.patience {
                return Err(std::io::Error::other(DownloadError::Stalled {
                    key: self.described.clone(),
                    patience: self.patience,
                    start,
                    end: range.end,
                    last,
                }));
            }
            tries += 1;
            let backoff = std::time::Duration::from_millis(100 * 2u64.pow(tries.min(6)))
                .min(std::time::Duration::from_secs(5));
            tracing::debug!(key = %self.described, start, end = range.end, error = %chain(&last), retry_in = ?backoff, "Download part interrupted; resuming.");
            tokio::time::sleep(backoff).await;
        }
    }

    async fn get(
        &self,
        range: std::ops::Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes, object_store::Error>>, object_store::Error> {
        let opts = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(range)),
            ..Default::default()
        };
        Ok(self.store.get_opts(&self.key, opts).await?.into_stream())
    }
}

/// A multipart upload in progress. Dropping it without `finish` or `abort` leaks parts: the
/// pipeline always ends it one way or the other.
pub struct Upload {
    described: String,
    writer: Option<WriteMultipart>,
    concurrency: usize,
}

impl Upload {
    fn writer(&mut self) -> &mut WriteMultipart {
        self.writer
            .as_mut()
            .expect("the upload was already finished or aborted")
    }

    /// Queues bytes, waiting first while `concurrency` parts are already in flight.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), object_store::Error> {
        let concurrency = self.concurrency;
        self.writer().wait_for_capacity(concurrency).await?;
        self.writer().put(bytes);
        Ok(())
    }

    /// Completes the upload: waits for the parts in flight (aborting if one failed), then sends
    /// the last part and the completion request.
    pub async fn finish(mut self) -> Result<(), Error> {
        if let Err(e) = self.writer().wait_for_capacity(0).await {
            return Err(self.abort_after(e).await);
        }
        let described = self.described.clone();
        let writer = self
            .writer
            .take()
            .expect("the upload was already finished or aborted");
        match writer.finish().await {
            Ok(_) => Ok(()),
            // object_store aborts by itself here and returns either error; say so honestly.
            Err(source) => Err(Error::Upload {
                key: described,
                abort: AbortOutcome::Attempted,
                source,
            }),
        }
    }

    /// Aborts the upload because lifeboat stopped it (`why`: a cancellation, an earlier
    /// stage's failure), and says how that went.
    pub async fn abort(mut self, why: String) -> Error {
        self.abort_in_place(why).await
    }

    /// Aborts the upload (once) because lifeboat stopped it, and says how that went.
    pub async fn abort_in_place(&mut self, why: String) -> Error {
        let abort = self.abort_writer().await;
        Error::UploadStopped {
            key: self.described.clone(),
            why,
            abort,
        }
    }

    /// Aborts the upload (once) after the store failed a part with `source`, and says how
    /// that went.
    pub async fn abort_after(&mut self, source: object_store::Error) -> Error {
        let abort = self.abort_writer().await;
        Error::Upload {
            key: self.described.clone(),
            abort,
            source,
        }
    }

    async fn abort_writer(&mut self) -> AbortOutcome {
        match self.writer.take() {
            Some(writer) => match writer.abort().await {
                Ok(()) => AbortOutcome::Aborted,
                Err(e) => AbortOutcome::Failed(Box::new(e)),
            },
            None => AbortOutcome::NotStarted,
        }
    }

    /// The key being written, for messages.
    pub fn key(&self) -> &str {
        &self.described
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn memory_store() -> Store {
        Store::from_object_store(Arc::new(InMemory::new()), "s3://backups/p", 1 << 20)
    }

    fn generic(text: &'static str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: text.into(),
        }
    }

    #[test]
    fn a_whole_store_failure_keeps_the_store_error_by_variant() {
        let store = memory_store();
        assert!(matches!(
            store.classify(generic("NoSuchBucket: The specified bucket does not exist")),
            Error::BucketMissing { bucket, .. } if bucket == "backups"
        ));
        assert!(matches!(
            store.classify(object_store::Error::PermissionDenied {
                path: "p".into(),
                source: "403".into(),
            }),
            Error::Denied {
                source: object_store::Error::PermissionDenied { .. },
                ..
            }
        ));
        assert!(matches!(
            store.classify(generic("InvalidAccessKeyId")),
            Error::Denied {
                source: object_store::Error::Generic { .. },
                ..
            }
        ));
        assert!(matches!(
            store.classify(generic("connection refused")),
            Error::Unreachable {
                source: object_store::Error::Generic { .. },
                ..
            }
        ));
    }

    /// A failed delete keeps the store's error as its cause: printed once, after the advice.
    #[test]
    fn a_failed_delete_prints_its_cause_once_after_the_advice() {
        let e = Error::Delete {
            key: "s3://backups/p/c/etcd/x/manifest.json".into(),
            source: generic("AccessDenied"),
        };
        assert_eq!(
            crate::error::chain(&e),
            "deleting s3://backups/p/c/etcd/x/manifest.json failed; check that the credentials may delete (s3:DeleteObject) and run the command again: Generic S3 error: AccessDenied"
        );
    }

    #[test]
    fn a_selector_is_latest_or_a_backup_id() {
        assert_eq!("latest".parse::<Selector>().unwrap(), Selector::Latest);
        let id = "20261127T135500Z-9f86d081884c7d65";
        assert_eq!(
            id.parse::<Selector>().unwrap(),
            Selector::Id(id.parse().unwrap())
        );
        assert!(matches!(
            "newest".parse::<Selector>(),
            Err(manifest::Error::BadId { .. })
        ));
    }

    #[tokio::test]
    async fn a_backup_id_that_is_not_stored_is_no_such_backup() {
        let store = memory_store();
        let id: BackupId = "20261127T135500Z-9f86d081884c7d65".parse().unwrap();
        match store
            .resolve("c", Kind::Etcd, &Selector::Id(id.clone()))
            .await
        {
            Err(Error::NoSuchBackup { id: missing, .. }) => assert_eq!(missing, id),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            store.resolve("c", Kind::Etcd, &Selector::Latest).await,
            Err(Error::NoBackups { .. })
        ));
    }
}
