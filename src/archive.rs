//! The resource-export archive: a tar stream compressed with zstd, written as objects arrive.
//! Paths follow `namespaces/<ns>/<group>/<resource>/<name>.yaml` and
//! `cluster/<group>/<resource>/<name>.yaml` (the core group is `core`); objects of encrypted
//! resources (Secrets by default) are `<name>.yaml.age`, each its own age file; `index.json` comes
//! last. The archive itself is not encrypted, so `tar --zstd -t` lists it.

use std::io::{self, Write};

use crate::encode::{Hashing, Tally};

/// Writes the archive into `W`, tallying the stored (compressed) bytes.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<Counting<zstd::Encoder<'static, Hashing<W>>>>,
    mtime: u64,
    entries: u64,
}

/// Counts the tar bytes on their way into zstd (the payload's plain size).
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive; every entry gets `mtime` (the backup's start).
    pub fn new(out: W, level: i32, mtime: u64) -> io::Result<Self> {
        let mut z = zstd::Encoder::new(Hashing::new(out), level)?;
        z.include_checksum(true)?;
        let mut tar = tar::Builder::new(Counting { inner: z, n: 0 });
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(ArchiveWriter {
            tar,
            mtime,
            entries: 0,
        })
    }

    /// Appends one file. Encrypted entries are mode 0600, others 0644.
    pub fn add(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(if path.ends_with(".age") { 0o600 } else { 0o644 });
        header.set_mtime(self.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        self.tar.append_data(&mut header, path, data)?;
        self.entries += 1;
        Ok(())
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Ends the tar and the zstd frame; returns the sink and the stored tally.
    pub fn finish(self) -> io::Result<(W, Tally)> {
        let counting = self.tar.into_inner()?;
        let plain = counting.n;
        let (mut out, stored_size, stored_sha256) = counting.inner.finish()?.finish();
        out.flush()?;
        Ok((
            out,
            Tally {
                plain_size: plain,
                stored_size,
                stored_sha256,
            },
        ))
    }
}

/// The archive path of one object.
pub fn object_path(
    namespace: Option<&str>,
    group: &str,
    resource: &str,
    name: &str,
    encrypted: bool,
) -> String {
    let group = if group.is_empty() { "core" } else { group };
    let suffix = if encrypted { ".yaml.age" } else { ".yaml" };
    match namespace {
        Some(ns) => format!("namespaces/{ns}/{group}/{resource}/{name}{suffix}"),
        None => format!("cluster/{group}/{resource}/{name}{suffix}"),
    }
}

/// Encrypts one object's YAML to the recipients, as a standalone age file.
pub fn encrypt(recipients: &[age::x25519::Recipient], plain: &[u8]) -> io::Result<Vec<u8>> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(plain.len() + 256);
    let mut w = encryptor.wrap_output(&mut out)?;
    w.write_all(plain)?;
    w.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_documented_layout() {
        assert_eq!(
            object_path(Some("app"), "", "configmaps", "web", false),
            "namespaces/app/core/configmaps/web.yaml"
        );
        assert_eq!(
            object_path(Some("app"), "", "secrets", "db", true),
            "namespaces/app/core/secrets/db.yaml.age"
        );
        assert_eq!(
            object_path(
                None,
                "rbac.authorization.k8s.io",
                "clusterroles",
                "view",
                false
            ),
            "cluster/rbac.authorization.k8s.io/clusterroles/view.yaml"
        );
    }

    #[test]
    fn an_archive_lists_back_with_its_entries() {
        let mut w = ArchiveWriter::new(Vec::new(), 3, 1_800_000_000).unwrap();
        w.add("cluster/core/namespaces/a.yaml", b"kind: Namespace\n")
            .unwrap();
        let long = format!(
            "namespaces/{}/apps/deployments/{}.yaml",
            "n".repeat(63),
            "d".repeat(200)
        );
        w.add(&long, b"kind: Deployment\n").unwrap();
        w.add("index.json", b"{}").unwrap();
        let (bytes, tally) = w.finish().unwrap();
        assert_eq!(tally.stored_size, bytes.len() as u64);
        let plain = zstd::decode_all(bytes.as_slice()).unwrap();
        let mut archive = tar::Archive::new(plain.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            vec![
                "cluster/core/namespaces/a.yaml".to_string(),
                long,
                "index.json".into()
            ]
        );
    }
}
