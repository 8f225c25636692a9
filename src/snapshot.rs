//! etcd snapshot integrity: etcd appends the sha256 of the database as the last 32 bytes of the
//! snapshot stream. [`TrailerCheck`] verifies it as the bytes pass, without buffering the stream.
//! It is pure and used on both sides: while backing up and while restoring.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Length of the sha256 that etcd appends to a snapshot.
pub const HASH_LEN: usize = 32;

/// Why a snapshot's own hash did not check out.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "the snapshot is only {size} bytes, shorter than etcd's 32-byte trailing hash: the stream was cut off"
    )]
    TooShort { size: u64 },
    #[error(
        "the snapshot's trailing sha256 is {trailer} but its {db_size} bytes hash to {computed}: the data is damaged or the stream was cut off"
    )]
    Mismatch {
        db_size: u64,
        trailer: String,
        computed: String,
    },
}

/// What a verified snapshot looks like: its database size and etcd's own hash of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Size of the bolt database, without the trailing hash.
    pub db_size: u64,
    /// The trailing sha256, hex, as etcd wrote it and as verified.
    pub sha256: String,
}

/// Streams bytes through sha256 while holding back the last 32, which are the expected hash.
#[derive(Default)]
pub struct TrailerCheck {
    hasher: Sha256,
    tail: Vec<u8>,
    hashed: u64,
}

impl TrailerCheck {
    /// A check that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the snapshot stream.
    pub fn update(&mut self, chunk: &[u8]) {
        let total = self.tail.len() + chunk.len();
        if total <= HASH_LEN {
            self.tail.extend_from_slice(chunk);
            return;
        }
        let emit = total - HASH_LEN;
        let from_tail = emit.min(self.tail.len());
        self.hasher.update(&self.tail[..from_tail]);
        let from_chunk = emit - from_tail;
        self.hasher.update(&chunk[..from_chunk]);
        self.hashed += emit as u64;
        self.tail.drain(..from_tail);
        self.tail.extend_from_slice(&chunk[from_chunk..]);
        debug_assert_eq!(self.tail.len(), HASH_LEN);
    }

    /// Bytes seen so far, trailer included.
    pub fn bytes_seen(&self) -> u64 {
        self.hashed + self.tail.len() as u64
    }

    /// Ends the stream: the held-back bytes must equal the sha256 of everything before them.
    pub fn finish(self) -> Result<Verified, Error> {
        if self.tail.len() < HASH_LEN {
            return Err(Error::TooShort {
                size: self.bytes_seen(),
            });
        }
        let computed = hex(&self.hasher.finalize());
        let trailer = hex(&self.tail);
        if computed != trailer {
            return Err(Error::Mismatch {
                db_size: self.hashed,
                trailer,
                computed,
            });
        }
        Ok(Verified {
            db_size: self.hashed,
            sha256: trailer,
        })
    }
}

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn with_trailer(db: &[u8]) -> Vec<u8> {
        let mut v = db.to_vec();
        v.extend_from_slice(&Sha256::digest(db));
        v
    }

    fn check_in_chunks(stream: &[u8], cuts: &[usize]) -> Result<Verified, Error> {
        let mut check = TrailerCheck::new();
        let mut rest = stream;
        for &cut in cuts {
            let at = cut.min(rest.len());
            check.update(&rest[..at]);
            rest = &rest[at..];
        }
        check.update(rest);
        check.finish()
    }

    #[test]
    fn empty_database_still_has_a_trailer() {
        let v = check_in_chunks(&with_trailer(b""), &[]).unwrap();
        assert_eq!(v.db_size, 0);
    }

    #[test]
    fn a_stream_shorter_than_the_trailer_is_cut_off() {
        assert_eq!(
            check_in_chunks(&[0u8; 31], &[5]),
            Err(Error::TooShort { size: 31 })
        );
    }

    #[test]
    fn a_missing_trailer_is_a_mismatch() {
        let err = check_in_chunks(&[7u8; 1000], &[100, 3]).unwrap_err();
        assert!(matches!(err, Error::Mismatch { db_size: 968, .. }));
    }

    proptest! {
        #[test]
        fn any_chunking_verifies_an_intact_stream(
            db in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(0usize..100, 0..30),
        ) {
            let stream = with_trailer(&db);
            let v = check_in_chunks(&stream, &cuts).unwrap();
            prop_assert_eq!(v.db_size, db.len() as u64);
            prop_assert_eq!(v.sha256, hex(&Sha256::digest(&db)));
        }

        #[test]
        fn any_flipped_bit_is_caught(
            db in proptest::collection::vec(any::<u8>(), 1..2000),
            pos in any::<proptest::sample::Index>(),
            bit in 0u8..8,
            cuts in proptest::collection::vec(0usize..100, 0..30),
        ) {
            let mut stream = with_trailer(&db);
            let i = pos.index(stream.len());
            stream[i] ^= 1 << bit;
            prop_assert!(check_in_chunks(&stream, &cuts).is_err());
        }
    }
}
