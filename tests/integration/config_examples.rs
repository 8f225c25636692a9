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
        // Examples point at kubeadm's and lifeboat's paths; give them real private files.
        let (_files, text) = crate::support::with_scratch_files(&crate::support::read(&path));
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
