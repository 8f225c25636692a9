//! The config's refusals and defaults, through [`Config::parse`]: each message names the file,
//! line, column and field, and says what to do.

use super::*;

// A key generated for these tests, its identity thrown away (age's README key is refused).
const KEY: &str = "age1ax88nr85vx2gj3g3prt3f6uzmjjyflv8gu0hnqs84gjvevkyzchswp27kk";

fn parse(text: &str) -> Result<Config, Error> {
    Config::parse(Path::new("lifeboat.yaml"), text)
}

fn base(extra: &str) -> String {
    format!(
        "cluster: prod-eu-1\nstorage:\n  url: s3://bucket/prefix\nencryption:\n  recipients: [\"{KEY}\"]\n{extra}"
    )
}

#[test]
fn a_minimal_config_gets_the_documented_defaults() {
    let cfg = parse(&base("etcd:\n  endpoints: [http://127.0.0.1:2379]\n")).unwrap();
    assert_eq!(cfg.cluster, "prod-eu-1");
    assert_eq!(cfg.storage.part_size, 8 * 1024 * 1024);
    assert_eq!(cfg.storage.upload_concurrency, 4);
    assert_eq!(cfg.compression_level, 3);
    let etcd = cfg.etcd.unwrap();
    assert_eq!(etcd.timeout, Duration::from_secs(30));
    assert!(matches!(cfg.encryption, Encryption::Age(ref r) if r.len() == 1));
    assert!(
        cfg.storage.s3.virtual_hosted_style,
        "AWS (no endpoint) uses virtual-hosted style"
    );
}

#[test]
fn unknown_keys_are_refused_with_line_column_and_field() {
    let err = parse(&base(
        "etcd:\n  endpoints: [http://127.0.0.1:2379]\n  timout: 5s\n",
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string().split(", expected").next().unwrap(),
        "lifeboat.yaml:8:3: unknown field `timout`"
    );
}

#[test]
fn bad_values_name_file_line_column_field_and_the_fix() {
    let cases = [
        (
            "cluster: Prod\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\n",
            "lifeboat.yaml:1:10: cluster: \"Prod\" is not a valid cluster name",
        ),
        (
            "cluster: p\nstorage:\n  url: ftp://x/y\nencryption: {allow_unencrypted: true}\n",
            "lifeboat.yaml:3:8: storage.url: scheme \"ftp\" is not supported",
        ),
        (
            "cluster: p\nstorage:\n  url: file://relative/dir\nencryption: {allow_unencrypted: true}\n",
            "lifeboat.yaml:3:8: storage.url: \"file://relative/dir\" is not a file URL with an absolute directory",
        ),
        // Regression: `file:relative-dir` was accepted and wrote to /relative-dir.
        (
            "cluster: p\nstorage:\n  url: file:relative-dir\nencryption: {allow_unencrypted: true}\n",
            "lifeboat.yaml:3:8: storage.url: \"file:relative-dir\" is not a file URL with an absolute directory: use file:///var/backups/lifeboat (three slashes)",
        ),
        (
            "cluster: p\nstorage:\n  url: file:/var/backups\nencryption: {allow_unencrypted: true}\n",
            "lifeboat.yaml:3:8: storage.url: \"file:/var/backups\" is not a file URL with an absolute directory",
        ),
        (
            "cluster: p\nstorage:\n  url: s3://b\n  s3:\n    endpoint: http://minio:9000\nencryption: {allow_unencrypted: true}\n",
            "lifeboat.yaml:5:15: storage.s3.endpoint: \"http://minio:9000\" is plain http: set storage.s3.allow_http: true",
        ),
        (
            "cluster: p\nstorage:\n  url: s3://b\nencryption:\n  recipients: [age1nope]\n",
            "lifeboat.yaml:5:16: encryption.recipients[0]: \"age1nope\" is not an age X25519 public key",
        ),
        (
            "cluster: p\nstorage:\n  url: s3://b\n  part_size_mib: 1\nencryption: {allow_unencrypted: true}\n",
            "lifeboat.yaml:4:18: storage.part_size_mib: 1 MiB is out of range",
        ),
        (
            "cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\netcd:\n  endpoints: [http://e:2379]\n  timeout: soon\n",
            "lifeboat.yaml:6:12: etcd.timeout: \"soon\" is not a duration",
        ),
        (
            "cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\netcd:\n  endpoints: [https://e:2379]\n",
            "lifeboat.yaml:5:15: etcd.endpoints[0]: \"https://e:2379\" uses https but etcd.tls is not set",
        ),
        (
            "cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\netcd:\n  endpoints: [http://e:2379]\n  tls: {ca_file: /nonexistent/ca.crt}\n",
            "lifeboat.yaml:6:18: etcd.tls.ca_file: cannot read /nonexistent/ca.crt",
        ),
    ];
    let cases = cases.into_iter().chain([
        ("cluster: p\nstorage:\n  url: s3://AKIAX:s3cr3t@b/p\nencryption: {allow_unencrypted: true}\n", "lifeboat.yaml:3:8: storage.url: credentials in the URL are refused"),
        ("cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\netcd: {endpoints: [http://e:2379]}\nschedules:\n  etcd:\n    cron: \"0 */6 * *\"\n", "lifeboat.yaml:7:11: schedules.etcd.cron: cron expression \"0 */6 * *\" has 4 fields"),
        ("cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\netcd: {endpoints: [http://e:2379]}\nschedules:\n  etcd:\n    cron: \"@daily\"\n    time_zone: Europe/Berlni\n", "lifeboat.yaml:8:16: schedules.etcd.time_zone:"),
        ("cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\netcd: {endpoints: [http://e:2379]}\nschedules:\n  etcd:\n    cron: \"@daily\"\n    retention: {keep_last: 0}\n", "lifeboat.yaml:8:16: schedules.etcd.retention: retention keeps no backup"),
        ("cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\nschedules:\n  etcd:\n    cron: \"@daily\"\n", "lifeboat.yaml:6:11: schedules.etcd: an etcd schedule needs an etcd section"),
        ("cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\nserver: {listen: localhost}\n", "lifeboat.yaml:4:18: server.listen: \"localhost\" is not an address:port"),
        ("cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\nleader_election: {enabled: true, lease_duration: 10s, renew_interval: 8s}\n", "lifeboat.yaml:4:71: leader_election.renew_interval: renew at least twice"),
    ]);
    for (text, want) in cases {
        let got = parse(text).unwrap_err().to_string();
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}…");
    }
}

#[test]
fn encryption_is_required_unless_explicitly_waived() {
    let no_section = "cluster: p\nstorage: {url: s3://b}\n";
    let err = parse(no_section).unwrap_err().to_string();
    assert!(
        err.contains("lifeboat keygen") && err.contains("allow_unencrypted"),
        "{err}"
    );
    let empty = "cluster: p\nstorage: {url: s3://b}\nencryption: {recipients: []}\n";
    assert!(parse(empty).is_err());
    let waived = "cluster: p\nstorage: {url: s3://b}\nencryption: {allow_unencrypted: true}\n";
    assert!(matches!(
        parse(waived).unwrap().encryption,
        Encryption::None
    ));
}

#[test]
fn secret_files_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let id = dir.path().join("id");
    let secret = dir.path().join("secret");
    std::fs::write(&id, "AKIDEXAMPLE\n").unwrap();
    std::fs::write(&secret, "s3cr3t\n").unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!(
        "cluster: p\nstorage:\n  url: s3://b\n  s3:\n    access_key_id_file: {}\n    secret_access_key_file: {}\nencryption: {{allow_unencrypted: true}}\n",
        id.display(),
        secret.display()
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("lifeboat.yaml:6:29: storage.s3.secret_access_key_file:"),
        "{err}"
    );
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let creds = parse(&text).unwrap().storage.s3.credentials.unwrap();
    assert_eq!(creds.access_key_id, "AKIDEXAMPLE");
    assert_eq!(creds.secret_access_key, "s3cr3t");
    assert!(
        !format!("{creds:?}").contains("s3cr3t"),
        "Debug must not show the secret"
    );
}

#[test]
fn the_example_recipient_from_ages_readme_is_refused_naming_the_field() {
    // Regression: the sample config's recipient was age's README key, accepted silently.
    for (key, source) in [
        (crate::keys::AGE_README_EXAMPLE_RECIPIENT, "age's README"),
        (
            crate::keys::LIFEBOAT_EXAMPLE_RECIPIENT,
            "lifeboat's example configuration",
        ),
    ] {
        let text = format!(
            "cluster: p\nstorage:\n  url: s3://b\nencryption:\n  recipients:\n    - {KEY}\n    - {key}\n"
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("lifeboat.yaml:7:7: encryption.recipients[1]:"),
            "{err}"
        );
        assert!(
            err.contains(source) && err.contains("lifeboat keygen"),
            "{err}"
        );
    }
}

fn identity_file(dir: &Path, name: &str) -> (PathBuf, String) {
    let pair = crate::keys::generate(chrono::Utc::now());
    let path = dir.join(name);
    crate::keys::write_new_private(&path, &pair.file_text).unwrap();
    (path, pair.public_key)
}

#[test]
fn a_drill_identity_that_decrypts_for_no_recipient_is_refused() {
    // Regression: drill.identity_file was only checked for its mode; a drill with the wrong
    // key failed at 04:30 on Sunday instead of at startup.
    let dir = tempfile::tempdir().unwrap();
    let (drill, drill_public) = identity_file(dir.path(), "drill.txt");
    let config = |recipients: &[&str]| {
        format!(
            "cluster: p\nstorage:\n  url: s3://b\nencryption:\n  recipients: [{}]\ndrill:\n  identity_file: {}\n",
            recipients.join(", "),
            drill.display()
        )
    };
    let err = parse(&config(&[KEY])).unwrap_err().to_string();
    assert!(
        err.starts_with("lifeboat.yaml:7:18: drill.identity_file:"),
        "{err}"
    );
    assert!(
        err.contains(KEY) && err.contains(&drill_public) && err.contains("never decrypt"),
        "{err}"
    );
    // The drill key plus an offline recovery key whose identity is elsewhere: accepted.
    let cfg = parse(&config(&[KEY, &drill_public])).unwrap();
    assert_eq!(cfg.drill.identity_file.as_deref(), Some(drill.as_path()));
    // A file that holds no identity at all is refused too.
    let junk = dir.path().join("junk.txt");
    crate::keys::write_new_private(&junk, "x\n").unwrap();
    let err = parse(
        &config(&[&drill_public])
            .replace(&drill.display().to_string(), &junk.display().to_string()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("drill.identity_file") && err.contains("AGE-SECRET-KEY-1"),
        "{err}"
    );
}

#[test]
fn without_encryption_the_drill_identity_is_not_matched() {
    let dir = tempfile::tempdir().unwrap();
    let (drill, _) = identity_file(dir.path(), "drill.txt");
    let text = format!(
        "cluster: p\nstorage:\n  url: s3://b\nencryption: {{allow_unencrypted: true}}\ndrill:\n  identity_file: {}\n",
        drill.display()
    );
    assert!(parse(&text).is_ok());
}
