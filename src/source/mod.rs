//! Where backups come from. Each source streams its bytes into the pipeline and reports the
//! facts that go into the manifest.

pub mod etcd;
pub mod kube;
