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
use crate::manifest::{self, BackupId, Kind, MANIFEST_NAME, Manifest};

/// Why the store could not do what was asked.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot open the store {url}: {reason}")]
    Open { url: String, reason: String },
    #[error(
        "the bucket of {url} does not exist: create it (e.g. `aws s3 mb s3://{bucket}`) or fix storage.url"
    )]
    BucketMissing { url: String, bucket: String },
    #[error(
        "the store {url} refused access ({reason}): check the credentials (AWS_* environment or storage.s3.*_file) and the bucket policy"
    )]
    Denied { url: String, reason: String },
    #[error(
        "cannot reach the store {url} ({reason}): check storage.url, storage.s3.endpoint and the network"
    )]
    Unreachable { url: String, reason: String },
    #[error("uploading {key} failed: {reason}{abort}")]
    Upload {
        key: String,
        reason: String,
        abort: AbortOutcome,
    },
    #[error("writing the manifest {key} failed, so the backup does not exist: {reason}")]
    Commit { key: String, reason: String },
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
        id: String,
    },
    #[error(
        "there are no complete {kind} backups of cluster {cluster} in {url}: run `lifeboat backup {kind}` first, or check cluster and storage.url"
    )]
    NoBackups {
        url: String,
        cluster: String,
        kind: Kind,
    },
    #[error("reading {key} failed: {reason}")]
    Read { key: String, reason: String },
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
}

impl Error {
    /// Whether the error happened while committing the manifest.
    pub fn is_commit(&self) -> bool {
        matches!(self, Error::Commit { .. } | Error::CommitExists { .. })
    }
}

/// What became of the multipart upload after a failure; shown at the end of upload errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortOutcome {
    /// Not attempted (the failure came before the upload started).
    NotStarted,
    /// The partial upload was aborted; nothing is left behind.
    Aborted,
    /// Aborting failed too; parts may remain until a lifecycle rule removes them.
    Failed(String),
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
                " (aborting the partial upload also failed: {why}; its parts stay until a bucket lifecycle rule with AbortIncompleteMultipartUpload removes them)"
            ),
        }
    }
}

/// One object store, rooted at the configured prefix.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
    part_size: usize,
    concurrency: usize,
}

/// A backup id directory that has objects but no manifest: a run in progress, or one that died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    /// The id directory's name.
    pub id: String,
    /// How many objects are in it.
    pub objects: usize,
    /// When the newest of them was last modified.
    pub newest: DateTime<Utc>,
}

/// Everything stored for one cluster and kind.
#[derive(Debug, Default)]
pub struct Listing {
    /// Complete backups (readable manifests), oldest first.
    pub complete: Vec<Manifest>,
    /// Id directories without a manifest.
    pub incomplete: Vec<Incomplete>,
    /// Manifests that exist but cannot be read (damaged, or from a newer lifeboat).
    pub unreadable: Vec<(String, String)>,
}

impl Store {
    /// Opens the store described by the configuration. Nothing is contacted yet.
    pub fn open(cfg: &config::Storage) -> Result<Store, Error> {
        let url = cfg.url.to_string();
        let open_err = |reason: String| Error::Open {
            url: url.clone(),
            reason,
        };
        let (inner, root): (Arc<dyn ObjectStore>, String) = match cfg.url.scheme() {
            "file" => {
                let dir = cfg
                    .url
                    .to_file_path()
                    .map_err(|_| open_err("not an absolute local path".into()))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| open_err(e.to_string()))?
                    .with_automatic_cleanup(true);
                (Arc::new(fs), String::new())
            }
            "s3" => {
                let bucket = cfg.url.host_str().unwrap_or_default();
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
                        ClientOptions::new()
                            .with_timeout(cfg.request_timeout)
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
                let s3 = b.build().map_err(|e| open_err(chain(&e)))?;
                (Arc::new(s3), cfg.url.path().trim_matches('/').to_string())
            }
            other => return Err(open_err(format!("unsupported scheme {other}"))),
        };
        let root = Path::parse(&root).map_err(|e| open_err(format!("bad prefix: {e}")))?;
        Ok(Store {
            inner,
            root,
            url,
            part_size: cfg.part_size,
            concurrency: cfg.upload_concurrency,
        })
    }

    /// A store over any `ObjectStore` (for tests and tools).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, url: &str, part_size: usize) -> Store {
        Store {
            inner,
            root: Path::default(),
            url: url.to_string(),
            part_size,
            concurrency: 4,
        }
    }

    /// The store's URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `<prefix>/<cluster>/<kind>`.
    pub fn kind_dir(&self, cluster: &str, kind: Kind) -> Path {
        self.root.clone().join(cluster).join(kind.as_str())
    }

    /// `<prefix>/<cluster>/<kind>/<id>`.
    pub fn backup_dir(&self, cluster: &str, kind: Kind, id: &str) -> Path {
        self.kind_dir(cluster, kind).join(id)
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

    /// Checks that the store answers and the bucket exists, before any work starts.
    pub async fn preflight(&self, cluster: &str, kind: Kind) -> Result<(), Error> {
        self.inner
            .list_with_delimiter(Some(&self.kind_dir(cluster, kind)))
            .await
            .map(|_| ())
            .map_err(|e| self.classify(&e))
    }

    /// Maps an object_store error from a whole-store operation to what the user should do.
    fn classify(&self, e: &object_store::Error) -> Error {
        let reason = chain(e);
        let bucket = self
            .url
            .strip_prefix("s3://")
            .and_then(|r| r.split('/').next());
        if reason.contains("NoSuchBucket") || reason.contains("specified bucket does not exist") {
            return Error::BucketMissing {
                url: self.url.clone(),
                bucket: bucket.unwrap_or_default().to_string(),
            };
        }
        match e {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Error::Denied {
                url: self.url.clone(),
                reason,
            },
            _ if reason.contains("AccessDenied")
                || reason.contains("InvalidAccessKeyId")
                || reason.contains("SignatureDoesNotMatch") =>
            {
                Error::Denied {
                    url: self.url.clone(),
                    reason,
                }
            }
            _ => Error::Unreachable {
                url: self.url.clone(),
                reason,
            },
        }
    }

    /// Starts a multipart upload of `key`.
    pub async fn start_upload(&self, key: Path) -> Result<Upload, Error> {
        let upload = self
            .inner
            .put_multipart(&key)
            .await
            .map_err(|e| Error::Upload {
                key: self.describe(&key),
                reason: chain(&e),
                abort: AbortOutcome::NotStarted,
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
            .backup_dir(&m.cluster, m.kind, m.id.as_str())
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
            Err(e) => Err(Error::Commit {
                key: self.describe(&key),
                reason: chain(&e),
            }),
        }
    }

    /// Lists every backup of a cluster and kind: complete ones (with their manifests, oldest
    /// first), id directories without a manifest, and manifests that cannot be read.
    pub async fn list(&self, cluster: &str, kind: Kind) -> Result<Listing, Error> {
        let dir = self.kind_dir(cluster, kind);
        let objects: Vec<_> = self
            .inner
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| self.classify(&e))?;
        let mut by_id: BTreeMap<String, (bool, usize, DateTime<Utc>)> = BTreeMap::new();
        for meta in objects {
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
        let mut listing = Listing::default();
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
            async move { (id, store.read_manifest(&key).await) }
        }))
        .buffered(8)
        .collect::<Vec<_>>()
        .await;
        for (id, result) in manifests {
            match result {
                Ok(m) => listing.complete.push(m),
                Err(e) => listing.unreadable.push((id, e.to_string())),
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
        let bytes = self.read_all(key).await?;
        Ok(Manifest::from_json(&self.describe(key), &bytes)?)
    }

    /// Finds one complete backup: `latest` or an id.
    pub async fn resolve(&self, cluster: &str, kind: Kind, which: &str) -> Result<Manifest, Error> {
        if which == "latest" {
            let listing = self.list(cluster, kind).await?;
            let latest = listing
                .complete
                .into_iter()
                .last()
                .ok_or_else(|| Error::NoBackups {
                    url: self.url.clone(),
                    cluster: cluster.to_string(),
                    kind,
                })?;
            for (id, reason) in &listing.unreadable {
                if id.as_str() > latest.id.as_str() {
                    tracing::warn!(skipped = %id, chosen = %latest.id, reason = %reason, "A newer backup's manifest cannot be read; using the newest readable one.");
                }
            }
            return Ok(latest);
        }
        let id: BackupId = which.parse()?;
        let key = self
            .backup_dir(cluster, kind, id.as_str())
            .join(MANIFEST_NAME);
        let found = self.read_manifest(&key).await;
        if let Ok(m) = &found
            && (m.id != id || m.cluster != cluster || m.kind != kind)
        {
            return Err(Error::Manifest(manifest::Error::Invalid {
                key: self.describe(&key),
                reason: format!(
                    "it describes backup {} of cluster {} ({}), not the directory it is in",
                    m.id, m.cluster, m.kind
                ),
            }));
        }
        match found {
            Err(Error::Read { reason, .. }) if reason.starts_with("not found") => {
                Err(Error::NoSuchBackup {
                    url: self.url.clone(),
                    cluster: cluster.to_string(),
                    kind,
                    id: id.to_string(),
                })
            }
            other => other,
        }
    }

    /// Reads a small object whole.
    pub async fn read_all(&self, key: &Path) -> Result<Bytes, Error> {
        let read_err = |e: object_store::Error| Error::Read {
            key: self.describe(key),
            reason: match e {
                object_store::Error::NotFound { .. } => "not found".to_string(),
                other => chain(&other),
            },
        };
        self.inner
            .get(key)
            .await
            .map_err(read_err)?
            .bytes()
            .await
            .map_err(read_err)
    }

    /// Streams an object's bytes.
    pub async fn read_stream(
        &self,
        key: &Path,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, Error> {
        let described = self.describe(key);
        let result = self.inner.get(key).await.map_err(|e| Error::Read {
            key: described.clone(),
            reason: match e {
                object_store::Error::NotFound { .. } => {
                    "not found: the payload is missing although the manifest exists".to_string()
                }
                other => chain(&other),
            },
        })?;
        Ok(result
            .into_stream()
            .map_err(move |e| {
                std::io::Error::other(format!("reading {described} failed: {}", chain(&e)))
            })
            .boxed())
    }

    /// Every object key under `dir` (used by retention).
    pub fn list_objects(&self, dir: &Path) -> BoxStream<'static, Result<Path, Error>> {
        let url = self.url.clone();
        self.inner
            .list(Some(dir))
            .map_ok(|meta| meta.location)
            .map_err(move |e| Error::Unreachable {
                url: url.clone(),
                reason: chain(&e),
            })
            .boxed()
    }

    /// Deletes one object (used by retention and tests).
    pub async fn delete(&self, key: &Path) -> Result<(), Error> {
        self.inner.delete(key).await.map_err(|e| Error::Read {
            key: self.describe(key),
            reason: chain(&e),
        })
    }

    /// Writes one object whole (used by tests and tools).
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<(), Error> {
        self.inner
            .put(key, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| Error::Read {
                key: self.describe(key),
                reason: chain(&e),
            })
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
            return Err(self.abort_in_place(chain(&e)).await);
        }
        let described = self.described.clone();
        let writer = self
            .writer
            .take()
            .expect("the upload was already finished or aborted");
        match writer.finish().await {
            Ok(_) => Ok(()),
            // object_store aborts by itself here and returns either error; say so honestly.
            Err(e) => Err(Error::Upload {
                key: described,
                reason: chain(&e),
                abort: AbortOutcome::Attempted,
            }),
        }
    }

    /// Aborts the upload after `reason`, and says how that went.
    pub async fn abort(mut self, reason: String) -> Error {
        self.abort_in_place(reason).await
    }

    /// Aborts the upload (once) after `reason`, and says how that went.
    pub async fn abort_in_place(&mut self, reason: String) -> Error {
        let abort = match self.writer.take() {
            Some(writer) => match writer.abort().await {
                Ok(()) => AbortOutcome::Aborted,
                Err(e) => AbortOutcome::Failed(chain(&e)),
            },
            None => AbortOutcome::NotStarted,
        };
        Error::Upload {
            key: self.described.clone(),
            reason,
            abort,
        }
    }

    /// The key being written, for messages.
    pub fn key(&self) -> &str {
        &self.described
    }
}

/// An error and its sources on one line, without repeating a source already in the message.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
