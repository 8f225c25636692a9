//! Restoring a resource export to a directory: download, decompress and unpack the archive,
//! keeping only the namespace and resource asked for, decrypting `.yaml.age` objects when an
//! identity is given. The directory appears only when the whole download matched its manifest.
//! Entries are streamed into a staging directory next to it (never read whole into memory),
//! and the staging directory is moved into place only after the stored sha256 checked out.
//! [`DirSink`] writes the same layout from a stream of objects, with the same file rules.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::io::{StreamReader, SyncIoBridge};

use super::fetch::{Error, Latch};
use crate::apply::live::Input;
use crate::encode::Hashing;
use crate::keys::Identities;
use crate::manifest::Manifest;
use crate::objects::{Object, Refused, Selection, Sink};
use crate::progress::Progress;
use crate::store::Store;

/// Which objects to write: the same filter apply and diff will use.
pub use crate::objects::Filter;

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Files written (index.json included).
    pub written: u64,
    /// Encrypted objects decrypted to `.yaml`.
    pub decrypted: u64,
    /// Encrypted objects written as `.yaml.age` (no identity given).
    pub still_encrypted: u64,
}

/// Unpacks the export of `manifest` into `dir` (which must not exist), counting downloaded
/// bytes into `progress`.
pub async fn to_dir(
    store: &Store,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
    dir: &Path,
    filter: Filter,
    progress: Arc<Progress>,
) -> Result<Report, Error> {
    if dir.exists() {
        return Err(Error::OutputExists {
            path: dir.to_path_buf(),
        });
    }
    let dir = dir.to_path_buf();
    let partial = super::fetch::partial_path(&dir);
    let work = partial.clone();
    let plain_limit = manifest.payload.plain_size;
    let result = read_verified(store, manifest, progress, move |stored| {
        unpack(stored, plain_limit, &work, identities.as_deref(), &filter)
    })
    .await;
    match result {
        Ok(report) => {
            std::fs::rename(&partial, &dir).map_err(|source| Error::Output {
                path: dir.clone(),
                source,
            })?;
            Ok(report)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(e)
        }
    }
}

/// Downloads the payload of `manifest`, hands the stream to `read` on a blocking thread, and
/// checks the whole download against the manifest's size and sha256 afterwards (reading what
/// `read` left). `read`'s result counts only when the download checked out, so nothing built
/// from a damaged backup is used.
async fn read_verified<T: Send + 'static>(
    store: &Store,
    manifest: &Manifest,
    progress: Arc<Progress>,
    read: impl FnOnce(&mut dyn Read) -> Result<T, Unpack> + Send + 'static,
) -> Result<T, Error> {
    let key = store
        .backup_dir(&manifest.cluster, manifest.kind, &manifest.id)
        .join(manifest.payload.name.as_str());
    let described = store.describe(&key);
    let stream = store.read_stream(&key).await?;
    let manifest = manifest.clone();
    tokio::task::spawn_blocking(move || {
        progress.set_total(manifest.payload.stored_size);
        let reader = Latch::new(SyncIoBridge::new(StreamReader::new(stream)), progress);
        let mut stored = Hashing::new(reader);
        let result = read(&mut stored);
        let _ = io::copy(&mut stored, &mut io::sink());
        let (latch, size, sha) = stored.finish();
        if let Some(source) = latch.error {
            return Err(Error::Download {
                key: described,
                received: size,
                source,
            });
        }
        if size != manifest.payload.stored_size || sha != manifest.payload.stored_sha256 {
            return Err(Error::Damaged {
                key: described,
                expected_size: manifest.payload.stored_size,
                actual_size: size,
                expected_sha256: manifest.payload.stored_sha256.clone(),
                actual_sha256: sha,
            });
        }
        result.map_err(|e| match e {
            Unpack::Io(path, source) => Error::Output { path, source },
            Unpack::Archive(source) => Error::Decompress {
                id: manifest.id.clone(),
                source,
            },
            Unpack::Entry(path, source) => Error::Entry {
                id: manifest.id.clone(),
                path,
                source,
            },
            Unpack::Decrypt(source) => Error::Decode {
                id: manifest.id.clone(),
                source,
            },
        })
    })
    .await
    .unwrap_or_else(|source| {
        Err(Error::Worker {
            key: key.to_string(),
            source,
        })
    })
}

enum Unpack {
    Io(PathBuf, io::Error),
    Archive(io::Error),
    Entry(String, io::Error),
    Decrypt(crate::encode::Error),
}

impl From<crate::archive::ReadError> for Unpack {
    fn from(e: crate::archive::ReadError) -> Self {
        Unpack::Archive(io::Error::other(e))
    }
}

fn unpack<R: Read>(
    stored: R,
    plain_limit: u64,
    dir: &Path,
    identities: Option<&Identities>,
    filter: &Filter,
) -> Result<Report, Unpack> {
    let mut report = Report::default();
    std::fs::create_dir(dir).map_err(|e| Unpack::Io(dir.to_path_buf(), e))?;
    crate::archive::read_entries(stored, plain_limit, |entry| {
        let path = entry.path;
        if !filter.accepts_path(&path) {
            return Ok(());
        }
        let (target, decrypt) = match (path.strip_suffix(".age"), identities) {
            (Some(plain_path), Some(ids)) => (plain_path.to_string(), Some(ids)),
            (Some(_), None) => {
                report.still_encrypted += 1;
                (path.clone(), None)
            }
            (None, _) => (path.clone(), None),
        };
        let (file, created) = create_file(dir, &target, path.ends_with(".age"))
            .map_err(|(path, e)| Unpack::Io(path, e))?;
        let mut out = io::BufWriter::new(created);
        // Reading fails (the archive) or writing does (the disk): tell them apart.
        let copied = match decrypt {
            Some(ids) => {
                let mut plain =
                    crate::encode::decoder_plain(entry.data, ids).map_err(Unpack::Decrypt)?;
                copy(&mut plain, &mut out)
            }
            None => copy(entry.data, &mut out),
        };
        match copied {
            Err(Copy::Read(e)) if decrypt.is_some() => {
                return Err(Unpack::Decrypt(crate::encode::Error::Decrypt {
                    reason: format!("{path}: {e}"),
                }));
            }
            Err(Copy::Read(e)) => return Err(Unpack::Entry(path, e)),
            Err(Copy::Write(e)) => return Err(Unpack::Io(file, e)),
            Ok(()) => {}
        }
        use std::io::Write;
        out.flush().map_err(|e| Unpack::Io(file.clone(), e))?;
        report.decrypted += u64::from(decrypt.is_some());
        report.written += 1;
        Ok(())
    })?;
    Ok(report)
}

enum Copy {
    Read(io::Error),
    Write(io::Error),
}

/// `io::copy`, keeping apart a failure to read from a failure to write.
fn copy(from: &mut dyn Read, to: &mut impl io::Write) -> Result<(), Copy> {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(Copy::Write)?;
    }
}

/// Creates the file of archive path `path` under `dir`, as every writer of a restore directory
/// does (the archive unpacked by [`to_dir`], objects from any source through [`DirSink`]):
/// parents created, the file created new (never over one that exists), owner-only (0600) when
/// `owner_only` (objects of encrypted resources, even once decrypted), 0644 otherwise.
fn create_file(
    dir: &Path,
    path: &str,
    owner_only: bool,
) -> Result<(PathBuf, std::fs::File), (PathBuf, io::Error)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = dir.join(path);
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(|e| (parent.to_path_buf(), e))?;
    }
    let mode = if owner_only { 0o600 } else { 0o644 };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&file)
    {
        Ok(f) => Ok((file, f)),
        Err(e) => Err((file, e)),
    }
}

/// A directory in an export's layout filled from a stream of objects (the sink for sources
/// other than an export archive, such as objects read from an etcd snapshot): each object as
/// the YAML an export stores, never encrypted. Like [`to_dir`], it fills a staging directory
/// next to `dir`, which [`DirSink::finish`] moves into place.
pub struct DirSink {
    dir: PathBuf,
    partial: PathBuf,
    selection: Selection,
    report: Report,
}

impl DirSink {
    /// Starts filling `dir`, which must not exist. `selection` says which resources are
    /// encrypted in an export: their files are owner-only.
    pub fn create(dir: &Path, selection: Selection) -> Result<DirSink, Error> {
        if dir.exists() {
            return Err(Error::OutputExists {
                path: dir.to_path_buf(),
            });
        }
        let partial = super::fetch::partial_path(dir);
        std::fs::create_dir(&partial).map_err(|source| Error::Output {
            path: partial.clone(),
            source,
        })?;
        Ok(DirSink {
            dir: dir.to_path_buf(),
            partial,
            selection,
            report: Report::default(),
        })
    }

    /// Moves the finished directory into place and says what was written.
    pub fn finish(self) -> Result<Report, Error> {
        std::fs::rename(&self.partial, &self.dir).map_err(|source| Error::Output {
            path: self.dir.clone(),
            source,
        })?;
        Ok(self.report)
    }

    /// Removes what was written (the source failed).
    pub fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.partial);
    }
}

impl Sink for DirSink {
    async fn put(&mut self, obj: Object) -> Result<bool, Refused> {
        let path = obj.path(false);
        let yaml = obj
            .to_yaml()
            .map_err(|e| Refused::Object(format!("cannot serialize {} as YAML: {e}", obj.name)))?;
        let owner_only = self.selection.encrypts(&obj.resource.key());
        let dir = self.partial.clone();
        let written = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let (file, mut f) = create_file(&dir, &path, owner_only)?;
            f.write_all(&yaml).map_err(|e| (file.clone(), e))
        })
        .await
        .map_err(|e| Refused::Object(format!("writing {} failed: {e}", obj.name)))?;
        written.map_err(|(file, e)| {
            Refused::Object(format!("cannot write {}: {e}", file.display()))
        })?;
        self.report.written += 1;
        Ok(false)
    }
}

/// The most one object's YAML may take in memory: the API server's own limit is 1.5 MiB (etcd's
/// request size); anything far beyond that is not an object.
const MAX_OBJECT_BYTES: u64 = 16 << 20;

/// Reads every object of the export of `manifest` into memory, decrypting encrypted ones with
/// `identities` (without them they come back as [`Input::Encrypted`]), for a sink that needs
/// them all before it starts (apply orders them; diff compares them). Nothing is returned
/// unless the whole download matched the manifest's size and sha256, so nothing is applied
/// from a damaged backup.
pub async fn objects(
    store: &Store,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
    filter: Filter,
    progress: Arc<Progress>,
) -> Result<Vec<Input>, Error> {
    let plain_limit = manifest.payload.plain_size;
    read_verified(store, manifest, progress, move |stored| {
        let mut inputs = Vec::new();
        crate::archive::read_entries(stored, plain_limit, |entry| -> Result<(), Unpack> {
            let path = entry.path;
            if path == "index.json" || !filter.accepts_path(&path) {
                return Ok(());
            }
            inputs.push(read_object(path, entry.data, identities.as_deref())?);
            Ok(())
        })?;
        Ok(inputs)
    })
    .await
}

/// One archive entry as an object. A wrong identity fails the whole read (every Secret would
/// fail the same way); YAML that does not parse fails only this object.
fn read_object(
    path: String,
    data: &mut dyn Read,
    identities: Option<&Identities>,
) -> Result<Input, Unpack> {
    let encrypted = path.ends_with(".yaml.age");
    let mut bytes = Vec::new();
    match (encrypted, identities) {
        (true, None) => return Ok(Input::Encrypted { path }),
        (true, Some(ids)) => {
            let plain = crate::encode::decoder_plain(data, ids).map_err(Unpack::Decrypt)?;
            plain
                .take(MAX_OBJECT_BYTES)
                .read_to_end(&mut bytes)
                .map_err(|e| {
                    Unpack::Decrypt(crate::encode::Error::Decrypt {
                        reason: format!("{path}: {e}"),
                    })
                })?;
        }
        (false, _) => {
            data.take(MAX_OBJECT_BYTES)
                .read_to_end(&mut bytes)
                .map_err(|e| Unpack::Entry(path.clone(), e))?;
        }
    }
    let value: serde_json::Value = match std::str::from_utf8(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_saphyr::from_str(text).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(reason) => return Ok(Input::Unreadable { path, reason }),
    };
    let Some((namespace, _)) = crate::objects::resource_of(&path) else {
        return Ok(Input::Unreadable {
            path,
            reason: "not an object's path".into(),
        });
    };
    let parts: Vec<&str> = path.split('/').collect();
    let (group, plural) = match parts.as_slice() {
        ["namespaces", _, g, p, _] | ["cluster", g, p, _] => (*g, *p),
        _ => unreachable!("resource_of accepted the path"),
    };
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    let version = api_version.rsplit('/').next().unwrap_or_default();
    let resource = Arc::new(crate::objects::ResourceType {
        group: if group == crate::objects::CORE_DIR {
            String::new()
        } else {
            group.to_string()
        },
        version: version.to_string(),
        kind: value["kind"].as_str().unwrap_or_default().to_string(),
        plural: plural.to_string(),
        namespaced: namespace.is_some(),
    });
    if resource.version.is_empty() || resource.kind.is_empty() {
        return Ok(Input::Unreadable {
            path,
            reason: "it has no apiVersion or kind".into(),
        });
    }
    Ok(Input::Object(crate::objects::Object::new(resource, value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn resource(group: &str, kind: &str, plural: &str) -> Arc<crate::objects::ResourceType> {
        Arc::new(crate::objects::ResourceType {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced: true,
        })
    }

    #[tokio::test]
    async fn objects_land_in_the_export_layout_and_secrets_are_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("restored");
        let selection = Selection {
            encrypt_resources: vec!["secrets".into()],
            ..Selection::default()
        };
        let mut sink = DirSink::create(&dir, selection.clone()).unwrap();
        let secret = Object::new(
            resource("", "Secret", "secrets"),
            serde_json::json!({"metadata": {"name": "db", "namespace": "app", "uid": "x"}, "data": {"k": "dg=="}}),
        );
        let web = Object::new(
            resource("apps", "Deployment", "deployments"),
            serde_json::json!({"metadata": {"name": "web", "namespace": "app"}}),
        );
        sink.put(secret.clone()).await.unwrap();
        sink.put(web).await.unwrap();
        assert!(!dir.exists(), "nothing in place before finish");
        assert_eq!(sink.finish().unwrap().written, 2);

        let secret_file = dir.join("namespaces/app/core/secrets/db.yaml");
        assert_eq!(
            std::fs::read(&secret_file).unwrap(),
            secret.to_yaml().unwrap()
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&secret_file), 0o600);
        assert_eq!(
            mode(&dir.join("namespaces/app/apps/deployments/web.yaml")),
            0o644
        );
        assert!(matches!(
            DirSink::create(&dir, selection),
            Err(Error::OutputExists { .. })
        ));
    }
}
