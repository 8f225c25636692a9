//! etcd's multi-version store on top of its bbolt file: the state of every key at a revision.
//!
//! Bucket `key` maps revisions to events: its keys are the revision (8-byte big-endian main
//! revision, `_`, 8-byte big-endian sub revision; an 18th byte `t` marks a deletion, a
//! tombstone), its values `mvccpb.KeyValue` protobuf (key 1, create_revision 2, mod_revision
//! 3, version 4, value 5, lease 6). Bucket `meta` holds `finishedCompactRev`: every revision
//! below it was compacted away, except each key's newest event at that point.
//!
//! A walk takes two passes over the `key` bucket, so that memory grows with the number of keys
//! (their names, and one revision for each selected key, as etcd's own index holds them), never
//! with their values: the first finds each selected key's newest event at the revision, the
//! second reads the values of those events.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use super::bbolt::{self, Db};

/// What revisions a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revisions {
    /// The newest revision.
    pub current: i64,
    /// Revisions before this one were compacted away (`None`: never compacted).
    pub compacted: Option<i64>,
}

/// One key's value at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The etcd key.
    pub key: Vec<u8>,
    /// The stored value.
    pub value: Vec<u8>,
    /// The revision that created the key.
    pub create_revision: i64,
    /// The revision of this value.
    pub mod_revision: i64,
    /// How many times the key was written since it was created.
    pub version: i64,
}

/// What a walk saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walk {
    /// The revision walked.
    pub revision: i64,
    /// Selected keys yielded.
    pub live: u64,
    /// Selected keys deleted by then.
    pub deleted: u64,
    /// Events (revisions) of keys that were not selected, passed over.
    pub skipped: u64,
}

/// Why the revisions cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bbolt file.
    #[error(transparent)]
    Bbolt(#[from] bbolt::Error),
    /// No `key` bucket: a bbolt file, but not etcd's.
    #[error("it has no `key` bucket, so it is a bbolt file but not an etcd snapshot")]
    NotEtcd,
    /// The revision asked for is newer than the snapshot.
    #[error(
        "revision {asked} is newer than the snapshot's newest revision {current}: pick one up to {current}"
    )]
    Future {
        /// Asked for.
        asked: i64,
        /// The newest.
        current: i64,
    },
    /// The revision asked for was compacted away.
    #[error(
        "revision {asked} was compacted away: this snapshot holds revisions {compacted} to {current}; pick one in that range"
    )]
    Compacted {
        /// Asked for.
        asked: i64,
        /// The oldest revision still whole.
        compacted: i64,
        /// The newest.
        current: i64,
    },
    /// An entry of the `key` bucket is not what etcd writes.
    #[error("the entry of revision {revision} is damaged: {reason}")]
    Damaged {
        /// Its revision, as the bucket key says.
        revision: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Why a walk ended early.
#[derive(Debug)]
pub enum WalkError<E> {
    /// The snapshot could not be read.
    Read(Error),
    /// The callback asked to stop, with this.
    Stopped(E),
}

impl<E> From<Error> for WalkError<E> {
    fn from(e: Error) -> Self {
        WalkError::Read(e)
    }
}

impl<E> From<bbolt::Error> for WalkError<E> {
    fn from(e: bbolt::Error) -> Self {
        WalkError::Read(Error::Bbolt(e))
    }
}

/// A revision as the `key` bucket orders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Rev {
    main: i64,
    sub: i64,
}

/// The revision and tombstone mark of a `key` bucket key.
fn parse_rev(k: &[u8]) -> Result<(Rev, bool), Error> {
    let damaged = |reason| Error::Damaged {
        revision: format!("{k:02x?}"),
        reason,
    };
    if (k.len() != 17 && k.len() != 18) || k[8] != b'_' {
        return Err(damaged("its bucket key is not a revision"));
    }
    let main = i64::from_be_bytes(k[0..8].try_into().unwrap());
    let sub = i64::from_be_bytes(k[9..17].try_into().unwrap());
    let tombstone = k.len() == 18 && k[17] == b't';
    Ok((Rev { main, sub }, tombstone))
}

/// The revisions `db` holds.
pub fn revisions(db: &Db) -> Result<Revisions, Error> {
    let keys = db.bucket(b"key")?.ok_or(Error::NotEtcd)?;
    let current = match keys.last_key()? {
        Some(k) => parse_rev(&k)?.0.main,
        None => 0,
    };
    let compacted = match db.bucket(b"meta")? {
        Some(meta) => match meta.get(b"finishedCompactRev")? {
            Some(v) if v.len() >= 8 => Some(i64::from_be_bytes(v[0..8].try_into().unwrap())),
            _ => None,
        },
        None => None,
    };
    Ok(Revisions { current, compacted })
}

/// The state at revision `at` (`None`: the newest): `each` gets every live key that
/// `wanted` selects, once, with its newest value at or below `at`, in revision order. A key
/// whose newest event by then is a deletion is counted, not yielded. `wanted` is asked once per
/// key; `each` may stop the walk by returning an error.
pub fn state_at<E>(
    db: &Db,
    at: Option<i64>,
    mut wanted: impl FnMut(&[u8]) -> bool,
    mut each: impl FnMut(KeyValue) -> Result<(), E>,
) -> Result<Walk, WalkError<E>> {
    let revisions = revisions(db)?;
    let keys = db.bucket(b"key")?.ok_or(Error::NotEtcd)?;
    let revision = at.unwrap_or(revisions.current);
    if revision > revisions.current {
        return Err(Error::Future {
            asked: revision,
            current: revisions.current,
        }
        .into());
    }
    if let Some(compacted) = revisions.compacted
        && revision < compacted
    {
        return Err(Error::Compacted {
            asked: revision,
            compacted,
            current: revisions.current,
        }
        .into());
    }

    // Pass 1: each key's newest event at the revision; `None` for keys not wanted.
    let mut newest: HashMap<Vec<u8>, Option<(Rev, bool)>> = HashMap::new();
    let mut skipped = 0;
    let mut failure = None;
    let _ended = keys.for_each(|k, v| {
        let (rev, tombstone) = match parse_rev(k) {
            Ok(r) => r,
            Err(e) => {
                failure = Some(e);
                return ControlFlow::Break(());
            }
        };
        if rev.main > revision {
            return ControlFlow::Break(());
        }
        let key = match field_bytes(v, 1) {
            Some(key) => key,
            None => {
                failure = Some(Error::Damaged {
                    revision: format!("{}_{}", rev.main, rev.sub),
                    reason: "its value is not an etcd KeyValue",
                });
                return ControlFlow::Break(());
            }
        };
        match newest.get_mut(key) {
            Some(Some(slot)) => *slot = (rev, tombstone),
            Some(None) => skipped += 1,
            None => {
                let entry = wanted(key).then_some((rev, tombstone));
                skipped += u64::from(entry.is_none());
                newest.insert(key.to_vec(), entry);
            }
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let mut walk = Walk {
        revision,
        skipped,
        ..Walk::default()
    };
    let mut live: HashSet<Rev> = HashSet::new();
    for (rev, tombstone) in newest.into_values().flatten() {
        if tombstone {
            walk.deleted += 1;
        } else {
            live.insert(rev);
        }
    }

    // Pass 2: the values of those events.
    let mut stopped = None;
    let _ended = keys.for_each(|k, v| {
        let Ok((rev, tombstone)) = parse_rev(k) else {
            return ControlFlow::Break(());
        };
        if rev.main > revision || live.is_empty() {
            return ControlFlow::Break(());
        }
        if tombstone || !live.remove(&rev) {
            return ControlFlow::Continue(());
        }
        let kv = match decode_key_value(v) {
            Some(kv) => kv,
            None => {
                failure = Some(Error::Damaged {
                    revision: format!("{}_{}", rev.main, rev.sub),
                    reason: "its value is not an etcd KeyValue",
                });
                return ControlFlow::Break(());
            }
        };
        walk.live += 1;
        match each(kv) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                stopped = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    if let Some(e) = stopped {
        return Err(WalkError::Stopped(e));
    }
    Ok(walk)
}

/// A protobuf varint at `*at`, advancing it.
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Calls `f` with each field of the protobuf message `b`: (number, varint value or bytes).
fn fields<'b>(b: &'b [u8], mut f: impl FnMut(u64, Field<'b>)) -> Option<()> {
    let mut at = 0;
    while at < b.len() {
        let tag = varint(b, &mut at)?;
        match tag & 7 {
            0 => f(tag >> 3, Field::Varint(varint(b, &mut at)?)),
            1 => at = at.checked_add(8).filter(|&e| e <= b.len())?,
            2 => {
                let len = varint(b, &mut at)? as usize;
                let end = at.checked_add(len).filter(|&e| e <= b.len())?;
                f(tag >> 3, Field::Bytes(&b[at..end]));
                at = end;
            }
            5 => at = at.checked_add(4).filter(|&e| e <= b.len())?,
            _ => return None,
        }
    }
    Some(())
}

enum Field<'b> {
    Varint(u64),
    Bytes(&'b [u8]),
}

/// The bytes of field `number` of message `b` (empty if absent; `None` if `b` is not a
/// message).
fn field_bytes(b: &[u8], number: u64) -> Option<&[u8]> {
    let mut found: &[u8] = &[];
    fields(b, |n, f| {
        if let (true, Field::Bytes(v)) = (n == number, f) {
            found = v;
        }
    })?;
    Some(found)
}

fn decode_key_value(b: &[u8]) -> Option<KeyValue> {
    let mut kv = KeyValue {
        key: Vec::new(),
        value: Vec::new(),
        create_revision: 0,
        mod_revision: 0,
        version: 0,
    };
    fields(b, |n, f| match (n, f) {
        (1, Field::Bytes(v)) => kv.key = v.to_vec(),
        (5, Field::Bytes(v)) => kv.value = v.to_vec(),
        (2, Field::Varint(v)) => kv.create_revision = v as i64,
        (3, Field::Varint(v)) => kv.mod_revision = v as i64,
        (4, Field::Varint(v)) => kv.version = v as i64,
        _ => {}
    })?;
    Some(kv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_are_revisions_with_an_optional_tombstone_mark() {
        let mut k = 5i64.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend(2i64.to_be_bytes());
        assert_eq!(parse_rev(&k).unwrap(), (Rev { main: 5, sub: 2 }, false));
        k.push(b't');
        assert_eq!(parse_rev(&k).unwrap(), (Rev { main: 5, sub: 2 }, true));
        assert!(parse_rev(b"not a revision").is_err());
    }

    #[test]
    fn key_values_decode_and_garbage_does_not() {
        // key=1 "a", create=2 7, mod=3 9, version=4 2, value=5 "xyz", lease=6 0
        let b = [
            0x0a, 1, b'a', 0x10, 7, 0x18, 9, 0x20, 2, 0x2a, 3, b'x', b'y', b'z', 0x30, 0,
        ];
        let kv = decode_key_value(&b).unwrap();
        assert_eq!(kv.key, b"a");
        assert_eq!(kv.value, b"xyz");
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (7, 9, 2));
        assert!(decode_key_value(&[0x0a, 9, b'a']).is_none());
        assert!(decode_key_value(&[0x0f]).is_none());
    }
}
