//! The resource-export archive: a tar stream, compressed with zstd by the encode stage, written
//! as objects arrive.
//! Paths follow the layout of [`crate::objects::object_path`]: `namespaces/<ns>/<group>/<resource>/<name>.yaml` and
//! `cluster/<group>/<resource>/<name>.yaml` (the core group is `core`); objects of encrypted
//! resources (Secrets by default) are `<name>.yaml.age`, each its own age file; `index.json` comes
//! last. The archive itself is not encrypted, so `tar --zstd -t` lists it.
//!
//! Reading goes through [`read_entries`], which trusts nothing in the bytes: the decompressed
//! stream is capped at the size the manifest recorded, names are capped, only the entry types
//! lifeboat writes are accepted, and entries are handed on as streams, never read whole, so a
//! tampered archive costs bounded memory before it is found out.

use std::io::{self, Read, Write};

/// Builds the archive's plain tar stream in memory, one entry at a time, for the caller to
/// hand on in chunks ([`TarWriter::take`]); compression (and the stored tally) is the encode
/// stage's job, as for every payload.
pub struct TarWriter {
    tar: tar::Builder<Vec<u8>>,
    mtime: u64,
    entries: u64,
}

impl TarWriter {
    /// Starts an archive; every entry gets `mtime` (the backup's start).
    pub fn new(mtime: u64) -> Self {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        TarWriter {
            tar,
            mtime,
            entries: 0,
        }
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

    /// Tar bytes written since the last call.
    pub fn buffered(&self) -> usize {
        self.tar.get_ref().len()
    }

    /// Takes the tar bytes written since the last call.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(self.tar.get_mut())
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Ends the tar; returns the last bytes.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        self.tar.into_inner()
    }
}

/// The longest archive path lifeboat writes is about 700 bytes (namespace 63, group 253,
/// resource 63, name 253); a GNU long-name entry longer than this is not one of ours.
pub const MAX_PATH_BYTES: u64 = 4096;

/// index.json holds one record per resource (a few hundred bytes each): 16 MiB is thousands of
/// times what a cluster needs, and small enough to read into memory to parse.
pub const MAX_INDEX_BYTES: u64 = 16 << 20;

/// lifeboat compresses with zstd levels 1 to 19, whose window is at most 8 MiB (log 23); a
/// frame that asks for more was not written by lifeboat, and would cost that much memory.
pub const MAX_WINDOW_LOG: u32 = 24;

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "the archive decompresses to more than the {limit} bytes its manifest recorded (plain_size): it was altered after it was written"
    )]
    TooLarge { limit: u64 },
    #[error("entry {path:?} is not a file lifeboat writes ({kind}): the archive was altered")]
    UnexpectedEntry { path: String, kind: String },
    #[error(
        "an entry's name is {size} bytes long, more than the {MAX_PATH_BYTES} lifeboat ever writes: the archive was altered"
    )]
    NameTooLong { size: u64 },
    #[error("unsafe path {path:?} in the archive: it was altered")]
    UnsafePath { path: String },
    #[error(
        "index.json is {size} bytes, more than the {MAX_INDEX_BYTES} allowed: the archive was altered"
    )]
    IndexTooLarge { size: u64 },
    #[error("the archive does not read as tar.zst: {0}")]
    Malformed(io::Error),
}

/// Caps a stream at `limit` bytes: one more is an error naming the limit.
struct Capped<R> {
    inner: R,
    limit: u64,
    seen: u64,
}

/// Marks the io::Error raised by [`Capped`], so it is reported as [`ReadError::TooLarge`].
#[derive(Debug)]
struct CapExceeded(u64);

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} bytes", self.0)
    }
}

impl std::error::Error for CapExceeded {}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte more than allowed, so that reaching the limit exactly is fine.
        let room = (self.limit - self.seen).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.seen += n as u64;
        if self.seen > self.limit {
            return Err(io::Error::other(CapExceeded(self.limit)));
        }
        Ok(n)
    }
}

fn classify(e: io::Error) -> ReadError {
    let cap = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<CapExceeded>())
        .map(|c| c.0);
    match cap {
        Some(limit) => ReadError::TooLarge { limit },
        None => ReadError::Malformed(e),
    }
}

/// One entry of the archive: its path, its size and its content as a stream.
pub struct Entry<'a> {
    /// The archive path, checked to be relative and without `..`.
    pub path: String,
    /// The size its header claims (at most the plain size left).
    pub size: u64,
    /// Its bytes; whatever the visitor leaves unread is skipped.
    pub data: &'a mut dyn Read,
}

/// Reads a resource archive (`stored` is the zstd stream) entry by entry, calling `visit` on
/// each regular file, and returns the count of plain (tar) bytes read, at most `plain_limit`.
/// Memory stays bounded whatever the bytes: see the module docs.
pub fn read_entries<R: Read, E: From<ReadError>>(
    stored: R,
    plain_limit: u64,
    mut visit: impl FnMut(Entry<'_>) -> Result<(), E>,
) -> Result<u64, E> {
    let mut decoder = zstd::Decoder::new(stored).map_err(|e| E::from(ReadError::Malformed(e)))?;
    decoder
        .window_log_max(MAX_WINDOW_LOG)
        .map_err(|e| E::from(ReadError::Malformed(e)))?;
    let capped = Capped {
        inner: decoder,
        limit: plain_limit,
        seen: 0,
    };
    let mut archive = tar::Archive::new(capped);
    {
        // Raw entries: the tar crate reads GNU long names and pax headers whole, whatever size
        // they claim; here they are capped first.
        let entries = archive
            .entries()
            .map_err(|e| E::from(classify(e)))?
            .raw(true);
        let mut long_name: Option<Vec<u8>> = None;
        for entry in entries {
            let mut entry = entry.map_err(|e| E::from(classify(e)))?;
            let kind = entry.header().entry_type();
            let size = entry
                .header()
                .entry_size()
                .map_err(|e| E::from(classify(e)))?;
            if kind.is_gnu_longname() {
                if size > MAX_PATH_BYTES {
                    return Err(ReadError::NameTooLong { size }.into());
                }
                let mut name = Vec::with_capacity(size as usize);
                entry
                    .read_to_end(&mut name)
                    .map_err(|e| E::from(classify(e)))?;
                while name.last() == Some(&0) {
                    name.pop();
                }
                long_name = Some(name);
                continue;
            }
            let name = match long_name.take() {
                Some(n) => n,
                None => entry.path_bytes().into_owned(),
            };
            let path = String::from_utf8_lossy(&name).into_owned();
            if !kind.is_file() {
                return Err(ReadError::UnexpectedEntry {
                    path,
                    kind: format!("{kind:?}"),
                }
                .into());
            }
            if path.is_empty()
                || path.starts_with('/')
                || path
                    .split('/')
                    .any(|p| p == ".." || p == "." || p.is_empty())
            {
                return Err(ReadError::UnsafePath { path }.into());
            }
            let mut data = ErrorsClassified(&mut entry);
            visit(Entry {
                path,
                size,
                data: &mut data,
            })?;
        }
    }
    // Whatever follows the end of the tar still counts against the cap, and must decompress.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| E::from(classify(e)))?;
    Ok(rest.seen)
}

/// Turns the cap's io::Error into one whose message says so, for visitors that only see io.
struct ErrorsClassified<'a, R>(&'a mut R);

impl<R: Read> Read for ErrorsClassified<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| match classify(e) {
            ReadError::Malformed(e) => e,
            other => io::Error::other(other.to_string()),
        })
    }
}

/// Reads index.json from its entry, refusing more than [`MAX_INDEX_BYTES`].
pub fn read_index(entry: Entry<'_>) -> Result<Vec<u8>, ReadError> {
    if entry.size > MAX_INDEX_BYTES {
        return Err(ReadError::IndexTooLarge { size: entry.size });
    }
    let mut out = Vec::with_capacity(entry.size as usize);
    entry
        .data
        .take(MAX_INDEX_BYTES)
        .read_to_end(&mut out)
        .map_err(ReadError::Malformed)?;
    Ok(out)
}

/// The archive path rule lives with the objects ([`crate::objects`]); readers of the archive
/// reach it here too.
pub use crate::objects::resource_of;

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
    fn an_archive_lists_back_with_its_entries() {
        let mut w = TarWriter::new(1_800_000_000);
        w.add("cluster/core/namespaces/a.yaml", b"kind: Namespace\n")
            .unwrap();
        let long = format!(
            "namespaces/{}/apps/deployments/{}.yaml",
            "n".repeat(63),
            "d".repeat(200)
        );
        w.add(&long, b"kind: Deployment\n").unwrap();
        let mut plain = w.take();
        w.add("index.json", b"{}").unwrap();
        assert_eq!(w.entries(), 3);
        plain.extend(w.finish().unwrap());
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

    /// An archive as an export stores it: the tar through the encode stage, unencrypted.
    fn archive(entries: &[(&str, &[u8])]) -> (Vec<u8>, u64) {
        let mut w = TarWriter::new(1_800_000_000);
        for (path, data) in entries {
            w.add(path, data).unwrap();
        }
        let tar = w.finish().unwrap();
        let settings = crate::encode::Settings {
            level: 3,
            recipients: None,
        };
        let mut encoder = crate::encode::Encoder::new(&settings, Vec::new()).unwrap();
        encoder.write_all(&tar).unwrap();
        let (bytes, tally) = encoder.finish().unwrap();
        assert_eq!(tally.plain_size, tar.len() as u64);
        assert_eq!(tally.stored_size, bytes.len() as u64);
        (bytes, tally.plain_size)
    }

    #[test]
    fn read_entries_streams_what_the_writer_wrote() {
        let long = format!("namespaces/app/apps/deployments/{}.yaml", "d".repeat(300));
        let (bytes, plain) = archive(&[
            (long.as_str(), b"kind: Deployment\n"),
            ("index.json", b"{}"),
        ]);
        let mut seen = Vec::new();
        let n = read_entries(bytes.as_slice(), plain, |e| {
            let mut data = Vec::new();
            e.data
                .read_to_end(&mut data)
                .map_err(ReadError::Malformed)?;
            seen.push((e.path, data));
            Ok::<(), ReadError>(())
        })
        .unwrap();
        assert_eq!(n, plain);
        assert_eq!(seen[0], (long, b"kind: Deployment\n".to_vec()));
        assert_eq!(seen[1].0, "index.json");
    }

    #[test]
    fn read_entries_stops_at_the_plain_size_the_manifest_recorded() {
        let big = vec![b'x'; 100_000];
        let (bytes, plain) = archive(&[("cluster/core/namespaces/a.yaml", &big)]);
        let err = read_entries(bytes.as_slice(), plain - 1, |e| {
            io::copy(e.data, &mut io::sink()).map_err(ReadError::Malformed)?;
            Ok::<(), ReadError>(())
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("more than the {} bytes", plain - 1)),
            "{err}"
        );
    }

    #[test]
    fn read_entries_refuses_unsafe_paths_and_foreign_entry_types() {
        for (path, kind) in [
            ("../etc/passwd", tar::EntryType::Regular),
            ("cluster/core/namespaces/a.yaml", tar::EntryType::Symlink),
        ] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_size(0);
            h.set_entry_type(kind);
            h.set_cksum();
            b.append(&h, io::empty()).unwrap();
            let plain = b.into_inner().unwrap();
            let stored = zstd::encode_all(plain.as_slice(), 3).unwrap();
            let err = read_entries(stored.as_slice(), plain.len() as u64, |_| {
                Ok::<(), ReadError>(())
            })
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    ReadError::UnsafePath { .. } | ReadError::UnexpectedEntry { .. }
                ),
                "{path}: {err}"
            );
        }
    }
}
