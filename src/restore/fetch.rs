//! Download one backup's payload and check it: the stored size and sha256 against the manifest,
//! then (with an identity, or when unencrypted) decryption, decompression and etcd's own hash.
//! A resource export (never age-encrypted as a whole) is read through entry by entry instead:
//! every entry readable, the counts matching index.json and the manifest, and with an identity
//! every `.age` object decrypting. Optionally writes the plain snapshot to a file, which appears
//! only when every check passed.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::encode::{self, Hashing};
use crate::keys::Identities;
use crate::manifest::{BackupId, Manifest};
use crate::snapshot::{self, TrailerCheck};
use crate::store::Store;

/// Why a backup could not be verified or restored.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the stored object {key} does not match its manifest: expected {expected_size} bytes with sha256 {expected_sha256}, found {actual_size} bytes with sha256 {actual_sha256}; it was damaged or truncated in storage: use another backup (`lifeboat list`)"
    )]
    Damaged {
        key: String,
        expected_size: u64,
        actual_size: u64,
        expected_sha256: String,
        actual_sha256: String,
    },
    #[error(
        "downloading {key} failed after {received} bytes; check the store and run the command again"
    )]
    Download {
        key: String,
        received: u64,
        #[source]
        source: io::Error,
    },
    #[error("checking {key} stopped: the worker thread failed")]
    Worker {
        key: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("backup {id}")]
    Decode {
        id: BackupId,
        #[source]
        source: encode::Error,
    },
    #[error(
        "backup {id} matches its manifest but does not decompress; it was written damaged: use another backup"
    )]
    Decompress {
        id: BackupId,
        #[source]
        source: io::Error,
    },
    #[error(
        "backup {id} matches its manifest but its entry {path} does not read; it was written damaged: use another backup"
    )]
    Entry {
        id: BackupId,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "backup {id} decodes to {actual} bytes but its manifest says {expected}; it was written damaged: use another backup"
    )]
    PlainSize {
        id: BackupId,
        expected: u64,
        actual: u64,
    },
    #[error(
        "backup {id} reads back, but {reason}; it was written damaged or altered: use another backup"
    )]
    ArchiveMismatch { id: BackupId, reason: String },
    #[error("backup {id}: the encrypted object {path}")]
    Object {
        id: BackupId,
        path: String,
        #[source]
        source: encode::Error,
    },
    #[error("backup {id}")]
    Integrity {
        id: BackupId,
        #[source]
        source: snapshot::Error,
    },
    #[error(
        "backup {id} carries etcd hash {actual} but its manifest recorded {expected}; use another backup"
    )]
    HashDiffers {
        id: BackupId,
        expected: String,
        actual: String,
    },
    #[error(
        "backup {id} is encrypted to {recipients}: pass --identity with the matching age identity file"
    )]
    IdentityRequired { id: BackupId, recipients: String },
    #[error("{path} already exists: choose another --to-file, or move it away first")]
    OutputExists { path: PathBuf },
    #[error("cannot write {path}")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

/// What a fetch checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Stored size and sha256 match the manifest.
    pub stored_ok: bool,
    /// The payload was decrypted and decompressed and etcd's hash checked.
    pub decoded: bool,
    /// Bytes downloaded.
    pub stored_size: u64,
    /// Plain bytes produced, when decoded.
    pub plain_size: u64,
    /// For a resource export: what reading the archive through checked.
    pub archive: Option<ArchiveCheck>,
}

/// What reading a resource export's archive through found (all of it matching index.json and
/// the manifest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveCheck {
    /// Entries read, index.json included.
    pub entries: u64,
    /// Objects (entries other than index.json).
    pub objects: u64,
    /// Resources index.json lists.
    pub resources: u64,
    /// Objects stored as age files.
    pub encrypted: u64,
    /// Of those, how many were decrypted (0 without an identity).
    pub decrypted: u64,
}

/// Downloads and checks the payload of `manifest`. With `identities` (or for an unencrypted
/// payload) it also decodes and checks etcd's hash; with `out` it writes the plain snapshot
/// there, atomically; an encrypted payload is only written out with identities.
pub async fn fetch(
    store: &Store,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
    out: Option<&Path>,
) -> Result<Outcome, Error> {
    fetch_with_progress(store, manifest, identities, out, Arc::default()).await
}

/// [`fetch`], counting downloaded bytes into `progress` as they arrive (for a progress bar);
/// the total is the stored size.
pub async fn fetch_with_progress(
    store: &Store,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
    out: Option<&Path>,
    progress: Arc<crate::progress::Progress>,
) -> Result<Outcome, Error> {
    progress.set_total(manifest.payload.stored_size);
    let id = manifest.id.clone();
    let encrypted = manifest.payload.encryption.is_encrypted();
    if out.is_some() && encrypted && identities.is_none() {
        return Err(Error::IdentityRequired {
            id,
            recipients: manifest.payload.encryption.recipients.join(", "),
        });
    }
    if let Some(path) = out
        && path.exists()
    {
        return Err(Error::OutputExists {
            path: path.to_path_buf(),
        });
    }
    let key = store
        .backup_dir(&manifest.cluster, manifest.kind, &manifest.id)
        .join(manifest.payload.name.as_str());
    let described = store.describe(&key);
    let stream = store.read_stream(&key).await?;
    let manifest = manifest.clone();
    let out = out.map(Path::to_path_buf);
    let out_path = out.clone();
    let task = tokio::task::spawn_blocking(move || {
        let reader = Latch::new(SyncIoBridge::new(StreamReader::new(stream)), progress);
        check_blocking(
            reader,
            &manifest,
            &described,
            identities.as_deref(),
            out.as_deref(),
            encrypted,
        )
    });
    let partial = out_path.as_deref().map(partial_path);
    task.await.map_err(|source| {
        if let Some(tmp) = &partial {
            let _ = std::fs::remove_file(tmp);
        }
        Error::Worker {
            key: store.describe(&key),
            source,
        }
    })?
}

fn check_blocking<R: Read>(
    reader: Latch<R>,
    manifest: &Manifest,
    key: &str,
    identities: Option<&Identities>,
    out: Option<&Path>,
    encrypted: bool,
) -> Result<Outcome, Error> {
    let id = manifest.id.clone();
    let mut stored = Hashing::new(reader);
    let decode = identities.is_some() || !encrypted;
    let mut partial = None;
    let decoded = if decode {
        let mut sink = match out {
            Some(path) => {
                let tmp = partial_path(path);
                // The plain snapshot holds every Secret of the cluster: owner-only from the start.
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|source| Error::Output {
                        path: tmp.clone(),
                        source,
                    })?;
                partial = Some(tmp);
                Sink::File(BufWriter::with_capacity(1 << 20, file))
            }
            None => Sink::Discard,
        };
        let result = decode_into(
            &mut stored,
            manifest,
            identities,
            &mut sink,
            partial.as_deref(),
        );
        // Read whatever the decoder left unread so the stored hash covers the whole object.
        let _ = io::copy(&mut stored, &mut io::sink());
        Some((result, sink))
    } else {
        None
    };
    let cleanup = |e: Error| {
        if let Some(tmp) = &partial {
            let _ = std::fs::remove_file(tmp);
        }
        e
    };
    if !decode {
        let _ = io::copy(&mut stored, &mut io::sink());
    }
    let (latch, stored_size, stored_sha256) = stored.finish();
    if let Some(source) = latch.error {
        return Err(cleanup(Error::Download {
            key: key.to_string(),
            received: stored_size,
            source,
        }));
    }
    if stored_size != manifest.payload.stored_size
        || stored_sha256 != manifest.payload.stored_sha256
    {
        return Err(cleanup(Error::Damaged {
            key: key.to_string(),
            expected_size: manifest.payload.stored_size,
            actual_size: stored_size,
            expected_sha256: manifest.payload.stored_sha256.clone(),
            actual_sha256: stored_sha256,
        }));
    }
    let Some((result, sink)) = decoded else {
        return Ok(Outcome {
            stored_ok: true,
            decoded: false,
            stored_size,
            plain_size: 0,
            archive: None,
        });
    };
    let (plain_size, verified, archive) = result.map_err(|e| cleanup(e.into_error(&id)))?;
    if plain_size != manifest.payload.plain_size {
        return Err(cleanup(Error::PlainSize {
            id,
            expected: manifest.payload.plain_size,
            actual: plain_size,
        }));
    }
    if let (Some(etcd), Some(verified)) = (&manifest.etcd, verified)
        && etcd.snapshot_sha256 != verified.sha256
    {
        return Err(cleanup(Error::HashDiffers {
            id,
            expected: etcd.snapshot_sha256.clone(),
            actual: verified.sha256,
        }));
    }
    if let (Sink::File(writer), Some(tmp), Some(path)) = (sink, &partial, out) {
        let file = writer.into_inner().map_err(|e| {
            cleanup(Error::Output {
                path: tmp.clone(),
                source: e.into_error(),
            })
        })?;
        // hard_link refuses to replace a file that appeared meanwhile; rename would not.
        file.sync_all()
            .and_then(|_| std::fs::hard_link(tmp, path))
            .and_then(|_| std::fs::remove_file(tmp))
            .map_err(|source| {
                cleanup(Error::Output {
                    path: path.to_path_buf(),
                    source,
                })
            })?;
    }
    Ok(Outcome {
        stored_ok: true,
        decoded: true,
        stored_size,
        plain_size,
        archive,
    })
}

/// Remembers the first error of the download stream, so that a broken download is reported
/// as such and not as the damage it causes further down. Reads after it fail with its kind.
pub(crate) struct Latch<R> {
    inner: R,
    pub(crate) error: Option<io::Error>,
    progress: Arc<crate::progress::Progress>,
}

impl<R> Latch<R> {
    pub(crate) fn new(inner: R, progress: Arc<crate::progress::Progress>) -> Self {
        Latch {
            inner,
            error: None,
            progress,
        }
    }
}

impl<R: Read> Read for Latch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.error {
            return Err(io::Error::new(e.kind(), "the download failed earlier"));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let again = io::Error::new(e.kind(), "the download failed");
                self.error = Some(e);
                return Err(again);
            }
        };
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Where a restore writes before everything is verified: `<path>.lifeboat-partial`.
pub(crate) fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lifeboat-partial");
    path.with_file_name(name)
}

enum Sink {
    File(BufWriter<File>),
    Discard,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Discard => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Discard => Ok(()),
        }
    }
}

/// A decoding failure, resolved into an [`Error`] only once the stored hash is known good.
enum DecodeFailure {
    Open(encode::Error),
    Decompress(io::Error),
    Write(PathBuf, io::Error),
    Integrity(snapshot::Error),
    Mismatch(String),
    Object(String, encode::Error),
}

impl From<crate::archive::ReadError> for DecodeFailure {
    fn from(e: crate::archive::ReadError) -> Self {
        DecodeFailure::Decompress(io::Error::other(e))
    }
}

impl DecodeFailure {
    fn into_error(self, id: &BackupId) -> Error {
        let id = id.clone();
        match self {
            DecodeFailure::Open(source) => Error::Decode { id, source },
            DecodeFailure::Decompress(source) => Error::Decompress { id, source },
            DecodeFailure::Write(path, source) => Error::Output { path, source },
            DecodeFailure::Integrity(source) => Error::Integrity { id, source },
            DecodeFailure::Mismatch(reason) => Error::ArchiveMismatch { id, reason },
            DecodeFailure::Object(path, source) => Error::Object { id, path, source },
        }
    }
}

/// What decoding produced: the plain size, etcd's verified hash (snapshots), the archive
/// check (resource exports).
type Decoded = (u64, Option<snapshot::Verified>, Option<ArchiveCheck>);

fn decode_into<R: Read>(
    stored: &mut Hashing<R>,
    manifest: &Manifest,
    identities: Option<&Identities>,
    sink: &mut Sink,
    sink_path: Option<&Path>,
) -> Result<Decoded, DecodeFailure> {
    // The manifest says whether the payload is age-encrypted; an identity given for an
    // unencrypted payload is not needed and must not be tried on it.
    let payload_identities = identities.filter(|_| manifest.payload.encryption.is_encrypted());
    if manifest.kind == crate::manifest::Kind::Resources {
        let plain: Box<dyn Read + '_> = match payload_identities {
            Some(ids) => encode::decoder_plain(stored, ids).map_err(DecodeFailure::Open)?,
            None => Box::new(stored),
        };
        return check_archive(plain, manifest, identities).map(|(n, c)| (n, None, Some(c)));
    }
    let mut plain = encode::decoder(
        stored,
        payload_identities,
        &manifest.payload.encryption.recipients,
    )
    .map_err(DecodeFailure::Open)?;
    let mut check = TrailerCheck::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match plain.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DecodeFailure::Decompress(e)),
        };
        check.update(&buf[..n]);
        sink.write_all(&buf[..n]).map_err(|e| {
            DecodeFailure::Write(sink_path.unwrap_or(Path::new("output")).to_path_buf(), e)
        })?;
    }
    let size = check.bytes_seen();
    let verified = check.finish().map_err(DecodeFailure::Integrity)?;
    Ok((size, Some(verified), None))
}

/// One resource's record in index.json (the fields verify compares).
#[derive(serde::Deserialize)]
struct IndexResource {
    resource: String,
    objects: u64,
    #[serde(default)]
    encrypted: u64,
}

/// The parts of index.json verify compares.
#[derive(serde::Deserialize)]
struct Index {
    objects: u64,
    #[serde(default)]
    encrypted_objects: u64,
    resources: Vec<IndexResource>,
}

/// Reads a resource archive through (memory bounded whatever its bytes: see
/// [`crate::archive::read_entries`]): every entry must read, index.json must come last, and
/// the objects per resource, the total and the encrypted count must match index.json and the
/// manifest. With `identities`, every `.age` object must decrypt. Returns the plain (tar) size.
fn check_archive<R: Read>(
    plain: R,
    manifest: &Manifest,
    identities: Option<&Identities>,
) -> Result<(u64, ArchiveCheck), DecodeFailure> {
    let mut check = ArchiveCheck::default();
    let mut per_resource: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut index: Option<Index> = None;
    let plain_size = crate::archive::read_entries(plain, manifest.payload.plain_size, |entry| {
        check.entries += 1;
        if index.is_some() {
            return Err(DecodeFailure::Mismatch(format!(
                "entry {} follows index.json, which lifeboat writes last",
                entry.path
            )));
        }
        if entry.path == "index.json" {
            let bytes = crate::archive::read_index(entry)?;
            index = Some(serde_json::from_slice(&bytes).map_err(|e| {
                DecodeFailure::Mismatch(format!("its index.json does not parse ({e})"))
            })?);
            return Ok(());
        }
        let Some((_, key)) = crate::archive::resource_of(&entry.path) else {
            return Err(DecodeFailure::Mismatch(format!(
                "entry {} is not at an object's path",
                entry.path
            )));
        };
        check.objects += 1;
        let counts = per_resource.entry(key).or_default();
        counts.0 += 1;
        if entry.path.ends_with(".age") {
            check.encrypted += 1;
            counts.1 += 1;
            if let Some(ids) = identities {
                let path = entry.path.clone();
                let mut object = encode::decoder_plain(entry.data, ids)
                    .map_err(|e| DecodeFailure::Object(path.clone(), e))?;
                io::copy(&mut object, &mut io::sink()).map_err(|e| {
                    DecodeFailure::Object(
                        path,
                        encode::Error::Decrypt {
                            reason: e.to_string(),
                        },
                    )
                })?;
                check.decrypted += 1;
            }
        }
        Ok(())
    })?;
    let Some(index) = index else {
        return Err(DecodeFailure::Mismatch("it has no index.json".into()));
    };
    check.resources = index.resources.len() as u64;
    let mismatch = |what: &str, found: u64, listed: u64, by: &str| {
        DecodeFailure::Mismatch(format!(
            "the archive holds {found} {what} where {by} lists {listed}"
        ))
    };
    let counts = |listed: (u64, u64), by: &'static str| {
        [
            ("objects", check.objects, listed.0, by),
            ("encrypted objects", check.encrypted, listed.1, by),
        ]
    };
    for (what, found, listed, by) in counts((index.objects, index.encrypted_objects), "index.json")
    {
        if found != listed {
            return Err(mismatch(what, found, listed, by));
        }
    }
    for r in &index.resources {
        let (objects, encrypted) = per_resource.remove(&r.resource).unwrap_or_default();
        if objects != r.objects || encrypted != r.encrypted {
            return Err(DecodeFailure::Mismatch(format!(
                "the archive holds {objects} objects ({encrypted} encrypted) of {} where index.json lists {} ({} encrypted)",
                r.resource, r.objects, r.encrypted
            )));
        }
    }
    if let Some((resource, (objects, _))) = per_resource.into_iter().next() {
        return Err(DecodeFailure::Mismatch(format!(
            "the archive holds {objects} objects of {resource}, which index.json does not list"
        )));
    }
    if let Some(r) = &manifest.resources {
        for (what, found, listed, by) in counts((r.objects, r.encrypted_objects), "the manifest") {
            if found != listed {
                return Err(mismatch(what, found, listed, by));
            }
        }
    }
    Ok((plain_size, check))
}
