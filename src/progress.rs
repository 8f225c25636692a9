//! How far a long operation has got: a byte counter that the pipeline advances and a display
//! (the CLI's progress bar, a log line) polls. Lock-free, so the hot path pays one atomic add.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes done so far and, when known, the total.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    /// 0 while unknown.
    total: AtomicU64,
}

impl Progress {
    /// Counts `n` more bytes done.
    pub fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the expected total, in bytes, once it is known.
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    /// Bytes done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// The expected total in bytes, if known.
    pub fn total(&self) -> Option<u64> {
        Some(self.total.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_and_knows_an_unknown_total() {
        let p = Progress::default();
        assert_eq!(p.total(), None);
        p.advance(3);
        p.advance(4);
        p.set_total(10);
        assert_eq!((p.done(), p.total()), (7, Some(10)));
    }
}
