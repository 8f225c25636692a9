//! Restoring a resource export to a directory: download, decompress and unpack the archive,
//! keeping only the namespace and resource asked for, decrypting `.yaml.age` objects when an
//! identity is given. The directory appears only when the whole download matched its manifest.
//! Entries are streamed into a staging directory next to it (never read whole into memory),
//! and the staging directory is moved into place only after the stored sha256 checked out.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::io::{StreamReader, SyncIoBridge};

use super::fetch::{Error, Latch};
use crate::encode::Hashing;
use crate::keys::Identities;
use crate::manifest::Manifest;
use crate::store::Store;

/// Which objects to write.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this namespace (cluster-scoped objects are then skipped).
    pub namespace: Option<String>,
    /// Only this resource: `plural.group`, or `plural` for the core group.
    pub resource: Option<String>,
}

impl Filter {
    /// Whether an archive path passes the filter (index.json always does).
    pub fn accepts(&self, path: &str) -> bool {
        if path == "index.json" {
            return true;
        }
        let Some((namespace, key)) = crate::archive::resource_of(path) else {
            return false;
        };
        self.namespace
            .as_deref()
            .is_none_or(|want| namespace == Some(want))
            && self.resource.as_deref().is_none_or(|want| want == key)
    }
}

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

/// Unpacks the export of `manifest` into `dir` (which must not exist).
pub async fn to_dir(
    store: &Store,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
    dir: &Path,
    filter: Filter,
) -> Result<Report, Error> {
    if dir.exists() {
        return Err(Error::OutputExists {
            path: dir.to_path_buf(),
        });
    }
    let key = store
        .backup_dir(&manifest.cluster, manifest.kind, &manifest.id)
        .join(manifest.payload.name.as_str());
    let described = store.describe(&key);
    let stream = store.read_stream(&key).await?;
    let manifest = manifest.clone();
    let dir = dir.to_path_buf();
    let partial = super::fetch::partial_path(&dir);
    let work = partial.clone();
    let result = tokio::task::spawn_blocking(move || {
        let reader = Latch::new(SyncIoBridge::new(StreamReader::new(stream)), Arc::default());
        let mut stored = Hashing::new(reader);
        let unpacked = unpack(
            &mut stored,
            manifest.payload.plain_size,
            &work,
            identities.as_deref(),
            &filter,
        );
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
        unpacked.map_err(|e| match e {
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
    });
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
        if !filter.accepts(&path) {
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
        let file = dir.join(&target);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Unpack::Io(parent.to_path_buf(), e))?;
        }
        let mode = if path.ends_with(".age") { 0o600 } else { 0o644 };
        let mut out =
            io::BufWriter::new(create_new(&file, mode).map_err(|e| Unpack::Io(file.clone(), e))?);
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

fn create_new(path: &Path, mode: u32) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_matches_namespaces_and_resource_keys() {
        let f = Filter {
            namespace: Some("app".into()),
            resource: Some("deployments.apps".into()),
        };
        assert!(f.accepts("namespaces/app/apps/deployments/web.yaml"));
        assert!(!f.accepts("namespaces/other/apps/deployments/web.yaml"));
        assert!(!f.accepts("namespaces/app/core/configmaps/web.yaml"));
        assert!(!f.accepts("cluster/rbac.authorization.k8s.io/clusterroles/view.yaml"));
        assert!(f.accepts("index.json"));
        let core = Filter {
            namespace: None,
            resource: Some("secrets".into()),
        };
        assert!(core.accepts("namespaces/app/core/secrets/db.yaml.age"));
        assert!(!core.accepts("namespaces/app/core/configmaps/db.yaml"));
    }
}
