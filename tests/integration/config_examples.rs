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

/// The line that points editors (yaml-language-server) at the schema.
const SCHEMA_REFERENCE: &str = "# yaml-language-server: $schema=./lifeboat.schema.json";

fn repo_path(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn examples() -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(repo_path("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    found.sort();
    found
}

#[test]
fn the_committed_schema_is_generated_from_the_config_types() {
    let path = repo_path(lifeboat::config::schema::COMMITTED_PATH);
    let generated = lifeboat::config::schema::generate();
    if std::env::var("LIFEBOAT_WRITE_SCHEMA").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what the config types generate: run \
         `LIFEBOAT_WRITE_SCHEMA=1 cargo test --test integration config_examples::` and commit it",
        path.display()
    );
    // The doc comments are the descriptions, and unknown keys are refused, as lifeboat does.
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    let cluster = schema["properties"]["cluster"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(cluster.contains("lower-case letters"), "{cluster}");
    for definition in ["Duration", "Cron", "StorageUrl", "EtcdUrl", "Plan"] {
        assert!(
            schema["$defs"][definition].is_object(),
            "no $defs.{definition} in {}",
            path.display()
        );
    }
}

/// Runs check-jsonschema on `files`: (success, its output).
fn check_jsonschema(validator: &Path, files: &[&Path]) -> (bool, String) {
    let out = std::process::Command::new(validator)
        .arg("--schemafile")
        .arg(repo_path(lifeboat::config::schema::COMMITTED_PATH))
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", validator.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_example_passes_the_schema_and_wrong_configs_fail_it_and_lifeboat() {
    use crate::support::{require, which};
    let examples = examples();
    for path in &examples {
        let text = crate::support::read(path);
        assert_eq!(
            text.lines().next(),
            Some(SCHEMA_REFERENCE),
            "{} should start with the schema reference for editors",
            path.display()
        );
    }
    let Some(validator) = require("check-jsonschema", which("check-jsonschema")) else {
        return;
    };
    let files: Vec<&Path> = examples.iter().map(|p| p.as_path()).collect();
    let (ok, output) = check_jsonschema(&validator, &files);
    assert!(ok, "config/*.yaml do not pass the schema:\n{output}");

    // Deliberately wrong files, each refused by the schema validator and by lifeboat alike.
    let minimal = crate::support::read(&repo_path("config/minimal.yaml"));
    let dir = crate::support::tempdir();
    let cases = [
        (
            "unknown field",
            "etcd:\n  endpoints: [\"http://127.0.0.1:2379\"]\n  timout: 5s\n",
            "timout",
            "unknown field `timout`",
        ),
        (
            "wrong type",
            "compression:\n  level: fast\n",
            "fast",
            "invalid i64",
        ),
        (
            "not a duration",
            "etcd:\n  endpoints: [\"http://127.0.0.1:2379\"]\n  timeout: soon\n",
            "soon",
            "\"soon\" is not a duration",
        ),
    ];
    let etcd_section = "etcd:\n  endpoints: [\"http://127.0.0.1:2379\"]\n";
    assert!(
        minimal.ends_with(etcd_section),
        "config/minimal.yaml changed shape"
    );
    for (what, section, schema_says, lifeboat_says) in cases {
        let wrong = format!("{}{section}", minimal.strip_suffix(etcd_section).unwrap());
        let file = dir.path().join(format!("{}.yaml", what.replace(' ', "-")));
        std::fs::write(&file, &wrong).unwrap();
        let (ok, output) = check_jsonschema(&validator, &[&file]);
        assert!(!ok, "the schema accepted a config with a {what}:\n{wrong}");
        assert!(output.contains(schema_says), "{what}: {output}");
        let (_files, text) = crate::support::with_scratch_files(&wrong);
        let err = lifeboat::config::Config::parse(&file, &text)
            .expect_err("lifeboat refuses it too")
            .to_string();
        assert!(err.contains(lifeboat_says), "{what}: {err}");
    }
}

#[test]
fn the_schema_accepts_the_durations_and_cron_expressions_lifeboat_accepts() {
    // The schema's patterns must never refuse a file lifeboat runs with; what they refuse,
    // lifeboat refuses too.
    use crate::support::{require, which};
    let Some(validator) = require("check-jsonschema", which("check-jsonschema")) else {
        return;
    };
    let config = |timeout: &str, cron: &str| {
        format!(
            "cluster: dev\nstorage: {{url: \"file:///var/backups/lifeboat\"}}\n\
             encryption: {{allow_unencrypted: true}}\n\
             etcd: {{endpoints: [\"http://127.0.0.1:2379\"], timeout: \"{timeout}\"}}\n\
             schedules: {{etcd: {{cron: \"{cron}\"}}}}\n"
        )
    };
    let dir = crate::support::tempdir();
    let accepted = [
        ("30s", "0 */6 * * *"),
        ("1h 30m", "0 0 */6 * * *"),
        ("4.2s", "@DAILY"),
        ("500ms", "30 4 * * SUN"),
        ("2 hours", "0 2 1,15 * MON-FRI"),
        ("1d12h", " @weekly "),
    ];
    let mut files = Vec::new();
    for (i, (timeout, cron)) in accepted.iter().enumerate() {
        let text = config(timeout, cron);
        if let Err(e) = lifeboat::config::Config::parse(Path::new("accepted.yaml"), &text) {
            panic!("lifeboat refuses {timeout:?} / {cron:?}: {e}");
        }
        let file = dir.path().join(format!("accepted-{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        files.push(file);
    }
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (ok, output) = check_jsonschema(&validator, &paths);
    assert!(ok, "the schema refuses what lifeboat accepts:\n{output}");

    for (timeout, cron) in [("soon", "@daily"), ("5", "@daily"), ("30s", "0 */6 * *")] {
        let text = config(timeout, cron);
        assert!(
            lifeboat::config::Config::parse(Path::new("refused.yaml"), &text).is_err(),
            "lifeboat accepts {timeout:?} / {cron:?}"
        );
        let file = dir.path().join("refused.yaml");
        std::fs::write(&file, text).unwrap();
        let (ok, _) = check_jsonschema(&validator, &[&file]);
        assert!(!ok, "the schema accepts {timeout:?} / {cron:?}");
    }
}

/// The configs shipped in deploy/ are what most users start from: they reference the schema
/// for editors and pass it, as the examples do.
#[test]
fn the_deploy_configs_reference_and_pass_the_schema() {
    use crate::support::{require, which};
    let files: Vec<std::path::PathBuf> = [
        "deploy/base/lifeboat.yaml",
        "deploy/overlays/drills/lifeboat.yaml",
        "deploy/overlays/resources/lifeboat.yaml",
    ]
    .iter()
    .map(|f| repo_path(f))
    .collect();
    for path in &files {
        let text = crate::support::read(path);
        let first = text.lines().next().unwrap_or_default();
        let target = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{} should start with the schema reference", path.display()));
        let resolved = path.parent().unwrap().join(target);
        assert!(
            resolved.is_file(),
            "{}: the schema reference {target} does not resolve",
            path.display()
        );
    }
    let Some(validator) = require("check-jsonschema", which("check-jsonschema")) else {
        return;
    };
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (ok, output) = check_jsonschema(&validator, &refs);
    assert!(
        ok,
        "deploy/**/lifeboat.yaml do not pass the schema:\n{output}"
    );
}
