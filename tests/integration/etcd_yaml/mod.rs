//! The etcd.yaml rewrite of the guided restore: golden files for real-world kubeadm etcd.yaml files and
//! property tests on random variations of them.

mod golden;
mod properties;
mod support;
