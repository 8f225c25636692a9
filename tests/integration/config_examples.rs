//! Every example in config/ parses and validates, so the documented files never rot.

use std::path::Path;

#[test]
fn every_example_in_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let original = crate::support::read(&path);
        // Regression: the examples carried age's README key, which lifeboat accepted. They carry
        // lifeboat's own example key now, which a copied example is refused for, naming it.
        assert!(
            !original.contains(lifeboat::keys::AGE_README_EXAMPLE_RECIPIENT),
            "{} uses age's README key",
            path.display()
        );
        assert!(
            original.contains(lifeboat::keys::LIFEBOAT_EXAMPLE_RECIPIENT),
            "{} should show lifeboat's example recipient",
            path.display()
        );
        // As copied: real files, but the example recipient left in place.
        let keep = "EXAMPLE-RECIPIENT-KEPT";
        let (_copied_files, as_copied) = crate::support::with_scratch_files(
            &original.replace(lifeboat::keys::LIFEBOAT_EXAMPLE_RECIPIENT, keep),
        );
        let as_copied = as_copied.replace(keep, lifeboat::keys::LIFEBOAT_EXAMPLE_RECIPIENT);
        let err = lifeboat::config::Config::parse(&path, &as_copied)
            .expect_err("the example recipient is refused")
            .to_string();
        assert!(
            err.contains("encryption.recipients[0]") && err.contains("lifeboat keygen"),
            "{}: {err}",
            path.display()
        );
        // Examples point at kubeadm's and lifeboat's paths; give them real private files.
        let (_files, text) = crate::support::with_scratch_files(&original);
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
