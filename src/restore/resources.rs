//! Restoring a resource export to a directory: download, decompress and unpack the archive,
//! keeping only the namespace and resource asked for, decrypting `.yaml.age` objects when an
//! identity is given. The directory appears only when the whole download matched its manifest.

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
        let parts: Vec<&str> = path.split('/').collect();
        let (namespace, group, resource) = match parts.as_slice() {
            ["namespaces", ns, group, resource, _] => (Some(*ns), *group, *resource),
            ["cluster", group, resource, _] => (None, *group, *resource),
            _ => return false,
        };
        let key = if group == "core" {
            resource.to_string()
        } else {
            format!("{resource}.{group}")
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
        .backup_dir(&manifest.cluster, manifest.kind, manifest.id.as_str())
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
        let unpacked = unpack(&mut stored, &work, identities.as_deref(), &filter);
        let _ = io::copy(&mut stored, &mut io::sink());
        let (latch, size, sha) = stored.finish();
        if let Some(reason) = latch.error {
            return Err(Error::Download {
                key: described,
                received: size,
                reason,
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
            Unpack::Archive(reason) => Error::Decompress {
                id: manifest.id.to_string(),
                reason,
            },
            Unpack::Decrypt(source) => Error::Decode {
                id: manifest.id.to_string(),
                source,
            },
        })
    })
    .await
    .unwrap_or_else(|e| {
        Err(Error::Download {
            key: key.to_string(),
            received: 0,
            reason: e.to_string(),
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
    Archive(String),
    Decrypt(crate::encode::Error),
}

fn unpack<R: Read>(
    stored: R,
    dir: &Path,
    identities: Option<&Identities>,
    filter: &Filter,
) -> Result<Report, Unpack> {
    let plain = zstd::Decoder::new(stored).map_err(|e| Unpack::Archive(e.to_string()))?;
    let mut archive = tar::Archive::new(plain);
    let mut report = Report::default();
    for entry in archive
        .entries()
        .map_err(|e| Unpack::Archive(e.to_string()))?
    {
        let mut entry = entry.map_err(|e| Unpack::Archive(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| Unpack::Archive(e.to_string()))?
            .display()
            .to_string();
        if path.split('/').any(|p| p == ".." || p.is_empty()) || path.starts_with('/') {
            return Err(Unpack::Archive(format!(
                "unsafe path {path:?} in the archive"
            )));
        }
        if !filter.accepts(&path) {
            continue;
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| Unpack::Archive(e.to_string()))?;
        let (target, bytes) = match (path.strip_suffix(".age"), identities) {
            (Some(plain_path), Some(ids)) => {
                let mut out = Vec::new();
                crate::encode::decoder_plain(data.as_slice(), ids)
                    .map_err(Unpack::Decrypt)?
                    .read_to_end(&mut out)
                    .map_err(|e| Unpack::Archive(format!("{path}: {e}")))?;
                report.decrypted += 1;
                (plain_path.to_string(), out)
            }
            (Some(_), None) => {
                report.still_encrypted += 1;
                (path.clone(), data)
            }
            (None, _) => (path.clone(), data),
        };
        let file = dir.join(&target);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Unpack::Io(parent.to_path_buf(), e))?;
        }
        let mode = if path.ends_with(".age") { 0o600 } else { 0o644 };
        write_new(&file, &bytes, mode).map_err(|e| Unpack::Io(file.clone(), e))?;
        report.written += 1;
    }
    Ok(report)
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)
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
