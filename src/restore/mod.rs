//! Getting backups back: download, verify against the manifest, decrypt and decompress
//! ([`fetch`]). The guided restore of a control-plane node builds on this.

pub mod fetch;

pub use fetch::{Error, Outcome, fetch};
