//! Every example in config/ parses and validates, so the documented files never rot.

use std::path::Path;

#[test]
fn every_example_in_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let scratch = crate::support::tempdir();
    // Examples point at kubeadm's paths; give them real files with private modes.
    for name in [
        "ca.crt",
        "healthcheck-client.crt",
        "healthcheck-client.key",
        "access-key-id",
        "secret-access-key",
        "key.txt",
    ] {
        let p = scratch.path().join(name);
        std::fs::write(&p, "x\n").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = crate::support::read(&path)
            .replace(
                "/etc/kubernetes/pki/etcd/",
                &format!("{}/", scratch.path().display()),
            )
            .replace(
                "/etc/lifeboat/s3/",
                &format!("{}/", scratch.path().display()),
            )
            .replace(
                "/etc/lifeboat/drill/",
                &format!("{}/", scratch.path().display()),
            );
        if let Err(e) = lifeboat::config::Config::parse(&path, &text) {
            panic!("{} does not parse: {e}", path.display());
        }
        seen += 1;
    }
    assert!(
        seen >= 2,
        "config/ should hold the full reference and a minimal example"
    );
}
