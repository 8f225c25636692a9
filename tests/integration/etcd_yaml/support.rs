//! Fixture loading and the restore request shared by the golden and property tests.

use std::path::PathBuf;

use lifeboat::restore::etcd_yaml::Rewrite;

/// The input etcd.yaml files under tests/fixtures/etcd-yaml/, without the `.yaml` suffix.
pub const FIXTURES: &[&str] = &[
    "kubeadm-single",
    "kubeadm-ha-member",
    "minikube",
    "flags-in-args",
    "split-flags",
];

/// The restore directory used by the golden files.
pub const NEW_DIR: &str = "/var/lib/etcd-restore-20261127T135500Z-1a2b";

/// The cluster token used by the golden files.
pub const TOKEN: &str = "lifeboat-20261127T135500Z-1a2b";

/// Path of a file under tests/fixtures/etcd-yaml/.
pub fn fixture_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/etcd-yaml")
        .join(file)
}

/// Contents of a file under tests/fixtures/etcd-yaml/.
pub fn fixture(file: &str) -> String {
    let path = fixture_path(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The request the golden files were made with.
pub fn golden_request() -> Rewrite {
    Rewrite::new(NEW_DIR, TOKEN)
}
