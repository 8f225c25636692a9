//! A read-only reader of bbolt files, the storage of etcd's backend (a snapshot is one such
//! file, with etcd's 32-byte sha256 appended). Written here rather than taken from a crate:
//! the Rust bbolt ports map or load the whole file and expect to own it, while a snapshot may
//! be many gigabytes and is only ever read once, front to back, by key.
//!
//! Memory stays bounded whatever the file's size: pages are read with positioned reads
//! (`pread`), one page (with its overflow pages) per level of the tree being walked, so a walk
//! holds the tree's depth in pages plus the value being looked at.
//!
//! The format (bbolt's `page.go`, `node.go`, `db.go`): the file is a sequence of pages of the
//! page size in the meta page. Pages 0 and 1 are meta pages (the valid one with the higher
//! transaction id wins); every page starts with a 16-byte header (id u64, flags u16, count
//! u16, overflow u32), all little-endian. Branch pages hold `count` elements of (pos u32,
//! ksize u32, pgid u64); leaf pages hold (flags u32, pos u32, ksize u32, vsize u32), where
//! `pos` counts from the element itself. A leaf element with flag 1 is a bucket: its value is
//! the bucket header (root u64, sequence u64), followed by the bucket's own page when root is
//! 0 (an inline bucket).

use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const HEADER: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const META: u16 = 0x04;
const BUCKET_LEAF: u32 = 0x01;
/// A tree deeper than this is a loop in a damaged file, not a real database.
const MAX_DEPTH: usize = 64;

/// Why a bbolt file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the file failed.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No valid meta page.
    #[error(
        "{path} is not an etcd snapshot or database file ({reason}); if it came from a lifeboat backup, `lifeboat restore etcd --to-file` writes the plain snapshot"
    )]
    NotBbolt {
        /// The file.
        path: PathBuf,
        /// What the first bytes look like.
        reason: String,
    },
    /// A page lies beyond the end of the file.
    #[error(
        "{path} is incomplete: page {page} lies beyond its end ({size} bytes); the snapshot was cut short"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The page.
        page: u64,
        /// The file's size.
        size: u64,
    },
    /// A page is not what the tree says it is.
    #[error("{path} is damaged: page {page} {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The page.
        page: u64,
        /// What is wrong.
        reason: String,
    },
}

/// An open bbolt file.
pub struct Db {
    file: File,
    path: PathBuf,
    size: u64,
    page_size: usize,
    root: u64,
}

/// A bucket: a B+tree rooted at a page, or inline in its parent's value.
pub struct Bucket<'db> {
    db: &'db Db,
    root: Root,
}

enum Root {
    Page(u64),
    Inline(Vec<u8>),
}

impl Db {
    /// Opens `path` read-only and finds its current meta page.
    pub fn open(path: &Path) -> Result<Db, Error> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let not = |reason: String| Error::NotBbolt {
            path: path.to_path_buf(),
            reason,
        };
        let mut first = vec![0u8; 4096.min(size as usize)];
        file.read_exact_at(&mut first, 0).map_err(io)?;
        if first.len() < HEADER + 64 {
            return Err(not(format!("it is only {size} bytes long")));
        }
        // Page 0 is a meta page with id 0: checked too, since a compressed file can carry
        // bbolt's magic number at the meta's offset.
        let page0 = u64::from_le_bytes(first[0..8].try_into().unwrap()) == 0
            && u16::from_le_bytes(first[8..10].try_into().unwrap()) & META != 0;
        let meta0 = if page0 {
            Meta::parse(&first[HEADER..])
        } else {
            Err(())
        };
        let page_size = match &meta0 {
            Ok(m) => m.page_size,
            Err(_) => {
                return Err(not(describe(&first)));
            }
        };
        if !(512..=(1 << 20)).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(not(format!(
                "its page size {page_size} is not a power of two"
            )));
        }
        let mut second = vec![0u8; HEADER + 64];
        let meta1 = if size >= (page_size + HEADER + 64) as u64 {
            file.read_exact_at(&mut second, page_size as u64)
                .map_err(io)?;
            Meta::parse(&second[HEADER..]).ok()
        } else {
            None
        };
        let meta = match (meta0.ok(), meta1) {
            (Some(a), Some(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return Err(not("both meta pages are invalid".into())),
        };
        Ok(Db {
            file,
            path: path.to_path_buf(),
            size,
            page_size,
            root: meta.root,
        })
    }

    /// The top-level bucket `name`, if there is one.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'_>>, Error> {
        let top = Bucket {
            db: self,
            root: Root::Page(self.root),
        };
        top.bucket(name)
    }

    /// Page `id` with its overflow pages.
    fn page(&self, id: u64) -> Result<Vec<u8>, Error> {
        let offset = id.saturating_mul(self.page_size as u64);
        if offset.saturating_add(self.page_size as u64) > self.size {
            return Err(Error::Truncated {
                path: self.path.clone(),
                page: id,
                size: self.size,
            });
        }
        let mut header = vec![0u8; self.page_size];
        self.read_at(&mut header, offset)?;
        let overflow = u32::from_le_bytes(header[12..16].try_into().unwrap()) as u64;
        if overflow == 0 {
            return Ok(header);
        }
        let total = (overflow + 1).saturating_mul(self.page_size as u64);
        if offset.saturating_add(total) > self.size {
            return Err(Error::Truncated {
                path: self.path.clone(),
                page: id + overflow,
                size: self.size,
            });
        }
        let mut page = vec![0u8; total as usize];
        self.read_at(&mut page, offset)?;
        Ok(page)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })
    }

    fn corrupt(&self, page: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            page,
            reason: reason.into(),
        }
    }
}

/// What the first bytes of a file that is not bbolt look like.
fn describe(first: &[u8]) -> String {
    if first.starts_with(b"age-encryption.org/") {
        "it is age-encrypted".into()
    } else if first.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "it is zstd-compressed".into()
    } else if first.starts_with(&[0x1f, 0x8b]) {
        "it is gzip-compressed".into()
    } else if first.iter().all(|&b| b == 0) {
        "it starts with zeros".into()
    } else {
        "its meta page has no bbolt magic number".into()
    }
}

struct Meta {
    page_size: usize,
    root: u64,
    txid: u64,
}

impl Meta {
    /// The meta structure at the start of `b` (after the page header), checked.
    fn parse(b: &[u8]) -> Result<Meta, ()> {
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        if b.len() < 64 || u32_at(0) != MAGIC || u32_at(4) != VERSION {
            return Err(());
        }
        // magic, version, pageSize, flags (4 each), root bucket (root, sequence), freelist,
        // pgid, txid, then the FNV-1a checksum of everything before it.
        if fnv1a(&b[..56]) != u64_at(56) {
            return Err(());
        }
        Ok(Meta {
            page_size: u32_at(8) as usize,
            root: u64_at(16),
            txid: u64_at(48),
        })
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One element of a leaf page.
struct LeafElement<'p> {
    flags: u32,
    key: &'p [u8],
    value: &'p [u8],
}

/// The elements of the leaf page `page` (id `id`).
fn leaf_elements<'p>(db: &Db, id: u64, page: &'p [u8]) -> Result<Vec<LeafElement<'p>>, Error> {
    let count = u16::from_le_bytes(page[10..12].try_into().unwrap()) as usize;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let at = HEADER + i * 16;
        let field = |o: usize| -> Result<u32, Error> {
            page.get(at + o..at + o + 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                .ok_or_else(|| db.corrupt(id, "has more elements than fit in it"))
        };
        let (flags, pos, ksize, vsize) = (field(0)?, field(4)?, field(8)?, field(12)?);
        let start = at + pos as usize;
        let key = page
            .get(start..start + ksize as usize)
            .ok_or_else(|| db.corrupt(id, format!("element {i} points beyond the page")))?;
        let vstart = start + ksize as usize;
        let value = page
            .get(vstart..vstart + vsize as usize)
            .ok_or_else(|| db.corrupt(id, format!("element {i} points beyond the page")))?;
        out.push(LeafElement { flags, key, value });
    }
    Ok(out)
}

/// The children (page ids, in key order) of the branch page `page`.
fn branch_children(db: &Db, id: u64, page: &[u8]) -> Result<Vec<u64>, Error> {
    let count = u16::from_le_bytes(page[10..12].try_into().unwrap()) as usize;
    (0..count)
        .map(|i| {
            let at = HEADER + i * 16 + 8;
            page.get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                .ok_or_else(|| db.corrupt(id, "has more elements than fit in it"))
        })
        .collect()
}

impl<'db> Bucket<'db> {
    /// Calls `f` with every key and value of this bucket, in key order, until it breaks.
    /// Nested buckets are skipped. Returns whether `f` broke off.
    pub fn for_each(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, Error> {
        match &self.root {
            Root::Inline(page) => {
                for e in leaf_elements(self.db, 0, page)? {
                    if e.flags & BUCKET_LEAF == 0 && f(e.key, e.value).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                Ok(ControlFlow::Continue(()))
            }
            Root::Page(id) => self.walk(*id, 0, &mut f),
        }
    }

    fn walk(
        &self,
        id: u64,
        depth: usize,
        f: &mut impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, Error> {
        if depth > MAX_DEPTH {
            return Err(self.db.corrupt(id, "is part of a loop in the tree"));
        }
        let page = self.db.page(id)?;
        let flags = u16::from_le_bytes(page[8..10].try_into().unwrap());
        if flags & BRANCH != 0 {
            for child in branch_children(self.db, id, &page)? {
                if self.walk(child, depth + 1, f)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            Ok(ControlFlow::Continue(()))
        } else if flags & LEAF != 0 {
            for e in leaf_elements(self.db, id, &page)? {
                if e.flags & BUCKET_LEAF == 0 && f(e.key, e.value).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            Ok(ControlFlow::Continue(()))
        } else {
            Err(self.db.corrupt(
                id,
                format!(
                    "has flags {flags:#x}{}, not a branch or leaf page",
                    if flags & META != 0 { " (meta)" } else { "" }
                ),
            ))
        }
    }

    /// The last key of this bucket (its largest), if it has any.
    pub fn last_key(&self) -> Result<Option<Vec<u8>>, Error> {
        let mut id = match &self.root {
            Root::Inline(page) => {
                return Ok(leaf_elements(self.db, 0, page)?
                    .into_iter()
                    .rev()
                    .find(|e| e.flags & BUCKET_LEAF == 0)
                    .map(|e| e.key.to_vec()));
            }
            Root::Page(id) => *id,
        };
        for _ in 0..MAX_DEPTH {
            let page = self.db.page(id)?;
            let flags = u16::from_le_bytes(page[8..10].try_into().unwrap());
            if flags & LEAF != 0 {
                return Ok(leaf_elements(self.db, id, &page)?
                    .into_iter()
                    .rev()
                    .find(|e| e.flags & BUCKET_LEAF == 0)
                    .map(|e| e.key.to_vec()));
            }
            match branch_children(self.db, id, &page)?.last() {
                Some(&child) if flags & BRANCH != 0 => id = child,
                _ => return Ok(None),
            }
        }
        Err(self.db.corrupt(id, "is part of a loop in the tree"))
    }

    /// The value of `key` in this bucket (not a nested bucket).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .find(key)?
            .and_then(|(flags, v)| (flags & BUCKET_LEAF == 0).then_some(v)))
    }

    /// The nested bucket `name`.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'db>>, Error> {
        let Some((flags, value)) = self.find(name)? else {
            return Ok(None);
        };
        if flags & BUCKET_LEAF == 0 || value.len() < 16 {
            return Ok(None);
        }
        let root = u64::from_le_bytes(value[0..8].try_into().unwrap());
        let root = if root == 0 {
            Root::Inline(value[16..].to_vec())
        } else {
            Root::Page(root)
        };
        Ok(Some(Bucket { db: self.db, root }))
    }

    /// The flags and value of `key`, descending the tree by key.
    fn find(&self, key: &[u8]) -> Result<Option<(u32, Vec<u8>)>, Error> {
        let mut id = match &self.root {
            Root::Inline(page) => {
                return Ok(leaf_elements(self.db, 0, page)?
                    .into_iter()
                    .find(|e| e.key == key)
                    .map(|e| (e.flags, e.value.to_vec())));
            }
            Root::Page(id) => *id,
        };
        for _ in 0..MAX_DEPTH {
            let page = self.db.page(id)?;
            let flags = u16::from_le_bytes(page[8..10].try_into().unwrap());
            if flags & LEAF != 0 {
                return Ok(leaf_elements(self.db, id, &page)?
                    .into_iter()
                    .find(|e| e.key == key)
                    .map(|e| (e.flags, e.value.to_vec())));
            }
            if flags & BRANCH == 0 {
                return Err(self.db.corrupt(
                    id,
                    format!("has flags {flags:#x}, not a branch or leaf page"),
                ));
            }
            // The last child whose first key is <= key.
            let count = u16::from_le_bytes(page[10..12].try_into().unwrap()) as usize;
            let mut next = None;
            for i in 0..count {
                let at = HEADER + i * 16;
                let field = |o: usize| {
                    page.get(at + o..at + o + 4)
                        .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
                };
                let (Some(pos), Some(ksize)) = (field(0), field(4)) else {
                    return Err(self.db.corrupt(id, "has more elements than fit in it"));
                };
                let k = page
                    .get(at + pos..at + pos + ksize)
                    .ok_or_else(|| self.db.corrupt(id, "points beyond the page"))?;
                let child = u64::from_le_bytes(page[at + 8..at + 16].try_into().unwrap());
                if k <= key || next.is_none() {
                    next = Some(child);
                }
                if k > key {
                    break;
                }
            }
            match next {
                Some(child) => id = child,
                None => return Ok(None),
            }
        }
        Err(self.db.corrupt(id, "is part of a loop in the tree"))
    }
}
