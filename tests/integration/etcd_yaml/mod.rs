//! The etcd.yaml rewrite of the guided restore: golden files for real-world kubeadm manifests and
//! property tests on random variations of them.

mod golden;
mod properties;
mod support;
