//! Getting backups back: download, verify against the manifest, decrypt and decompress
//! ([`fetch`]); and the pure rewrite of kubeadm's etcd.yaml ([`etcd_yaml`]) that the
//! guided restore of a control-plane node builds on.

pub mod etcd_yaml;
pub mod etcdutl;
pub mod fetch;
pub mod guided;
pub mod resources;

pub use fetch::{Error, Outcome, fetch, fetch_with_progress};
