//! Property tests: random restore requests on random variations of the fixtures (comments,
//! quoting, unrelated flags, CRLF). The rewrite must change only the intended fields, leave every
//! other line byte-identical, and do nothing the second time.

use lifeboat::restore::etcd_yaml::{EtcdYaml, Rewrite, rewrite};
use proptest::prelude::*;
use serde_json::Value;

use super::support::{FIXTURES, fixture};

/// Flags the rewrite may touch, in `=` and split form.
const INTENDED_FLAGS: &[&str] = &[
    "--data-dir",
    "--initial-cluster-token",
    "--initial-cluster-state",
];

const EXTRA_FLAGS: &[&str] = &[
    "--log-level=info",
    "--snapshot-count=5000",
    "--auto-compaction-retention=8",
    "--enable-pprof",
    "--experimental-compact-hash-check-enabled=true",
    "--quota-backend-bytes=2147483648",
];

const COMMENTS: &[&str] = &[
    "# note",
    "# data lives in /var/lib/etcd",
    "# --data-dir=/var/lib/etcd --initial-cluster-state=existing",
    "#",
];

/// Applies one action per line, chosen by `seeds`; returns the varied text.
fn vary(text: &str, seeds: &[u8], crlf: bool) -> String {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let seed = seeds.get(i).copied().unwrap_or(0);
        let indent = &line[..line.len() - line.trim_start().len()];
        let mut line = line.to_string();
        match seed % 16 {
            0 => out.push(format!(
                "{indent}{}",
                COMMENTS[usize::from(seed / 16) % COMMENTS.len()]
            )),
            1 if !line.trim().is_empty() => line.push_str("  # trailing"),
            2 => line = requote(&line, '\''),
            3 => line = requote(&line, '"'),
            4 if is_flag_item(&line) => out.push(format!(
                "{indent}- {}",
                EXTRA_FLAGS[usize::from(seed / 16) % EXTRA_FLAGS.len()]
            )),
            _ => {}
        }
        out.push(line);
    }
    let mut varied = out.join("\n");
    varied.push('\n');
    if crlf {
        varied = varied.replace('\n', "\r\n");
    }
    varied
}

fn is_flag_item(line: &str) -> bool {
    let item = line.trim_start().strip_prefix("- ").unwrap_or_default();
    item.trim_start_matches(['\'', '"']).starts_with("--")
}

/// Quotes the plain scalar of a `- item`, `- key: value` or `key: value` line.
fn requote(line: &str, quote: char) -> String {
    let body_start = line.len() - line.trim_start().len();
    let mut start = body_start
        + if line[body_start..].starts_with("- ") {
            2
        } else {
            0
        };
    if let Some(colon) = line[start..].find(": ") {
        start += colon + 2;
    }
    let value = &line[start..];
    let plain = !value.is_empty()
        && !value.ends_with(':')
        && !value.contains(['#', '\'', '"', '{', '[', '&', '*', '!', '|', '>'])
        && !value.contains(": ")
        && !value.starts_with(' ');
    if plain {
        format!("{}{quote}{value}{quote}", &line[..start])
    } else {
        line.to_string()
    }
}

fn to_value(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("does not parse: {e}\n{text}"))
}

fn etcd_container(doc: &mut Value) -> &mut Value {
    let containers = doc["spec"]["containers"].as_array_mut().unwrap();
    let index = containers
        .iter()
        .position(|c| c["name"] == "etcd")
        .unwrap_or(0);
    &mut containers[index]
}

/// The document with the fields a rewrite may change blanked out.
fn without_intended_fields(mut doc: Value, volume: &str) -> Value {
    let etcd = etcd_container(&mut doc);
    for list in ["command", "args"] {
        if let Some(items) = etcd[list].as_array_mut() {
            let mut kept = Vec::new();
            let mut skip_next = false;
            for item in items.drain(..) {
                if std::mem::take(&mut skip_next) {
                    continue;
                }
                let s = item.as_str().unwrap_or_default();
                if INTENDED_FLAGS.contains(&s) {
                    skip_next = true;
                } else if !INTENDED_FLAGS
                    .iter()
                    .any(|f| s.starts_with(&format!("{f}=")))
                {
                    kept.push(item);
                }
            }
            *items = kept;
        }
    }
    for mount in etcd["volumeMounts"].as_array_mut().unwrap() {
        if mount["name"] == volume {
            mount["mountPath"] = Value::Null;
        }
    }
    for v in doc["spec"]["volumes"].as_array_mut().unwrap() {
        if v["name"] == volume {
            v["hostPath"]["path"] = Value::Null;
        }
    }
    doc
}

fn request() -> impl Strategy<Value = Rewrite> {
    (
        "/[a-z0-9][a-z0-9._-]{0,15}(/[a-zA-Z0-9][a-zA-Z0-9._-]{0,15}){0,3}",
        "[A-Za-z0-9][A-Za-z0-9._-]{0,40}",
        any::<bool>(),
    )
        .prop_map(|(dir, token, state_new)| {
            let mut r = Rewrite::new(dir, token);
            r.set_cluster_state_new = state_new;
            r
        })
}

fn varied_fixture() -> impl Strategy<Value = (String, String)> {
    (
        0..FIXTURES.len(),
        prop::collection::vec(any::<u8>(), 120),
        any::<bool>(),
    )
        .prop_map(|(index, seeds, crlf)| {
            let name = FIXTURES[index];
            let text = vary(&fixture(&format!("{name}.yaml")), &seeds, crlf);
            (name.to_string(), text)
        })
}

/// The lines of `after` with the inserted token lines taken out.
fn without_inserted_lines<'a>(before: &EtcdYaml, after: &'a str) -> Vec<&'a str> {
    let mut lines: Vec<&str> = after.split_inclusive('\n').collect();
    if before.initial_cluster_token.is_none() {
        let at = lines
            .iter()
            .position(|l| l.contains("initial-cluster-token") && !l.trim_start().starts_with('#'))
            .expect("token line inserted");
        let split_form = !lines[at].contains("initial-cluster-token=");
        lines.remove(at);
        if split_form {
            lines.remove(at);
        }
    }
    lines
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn rewrite_changes_only_the_intended_fields(
        (name, text) in varied_fixture(),
        req in request(),
    ) {
        let before = EtcdYaml::parse(&text).unwrap();
        let out = rewrite(&text, &req).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));

        // Re-parses, and nothing but the intended fields differs.
        let volume = &before.data_volume.name;
        prop_assert_eq!(
            without_intended_fields(to_value(&text), volume),
            without_intended_fields(to_value(&out.text), volume)
        );

        // The intended fields hold the intended values.
        let after = EtcdYaml::parse(&out.text).unwrap();
        let mirrored = before.data_volume.mount_path == before.data_volume.host_path;
        let mount = if mirrored { req.data_dir.clone() } else { before.data_volume.mount_path.clone() };
        prop_assert_eq!(&after.data_volume.host_path, &req.data_dir);
        prop_assert_eq!(&after.data_volume.host_data_dir, &req.data_dir);
        prop_assert_eq!(&after.data_volume.mount_path, &mount);
        prop_assert_eq!(&after.data_dir, &mount);
        prop_assert_eq!(after.initial_cluster_token.as_deref(), Some(req.cluster_token.as_str()));
        let state = match before.initial_cluster_state.as_deref() {
            Some(_) if req.set_cluster_state_new => Some("new"),
            other => other,
        };
        prop_assert_eq!(after.initial_cluster_state.as_deref(), state);
        prop_assert_eq!(&after.name, &before.name);
        prop_assert_eq!(&after.initial_cluster, &before.initial_cluster);

        // Every line outside the changed ones is byte-identical; each changed line differs from
        // the old one only by one old value replaced with its new value.
        let old_lines: Vec<&str> = text.split_inclusive('\n').collect();
        let new_lines = without_inserted_lines(&before, &out.text);
        prop_assert_eq!(old_lines.len(), new_lines.len());
        let modified: Vec<_> = out.changes.iter().filter(|c| c.old.is_some()).collect();
        let mut differing = 0;
        for (old, new) in old_lines.iter().zip(&new_lines) {
            if old == new {
                continue;
            }
            differing += 1;
            let explained = modified.iter().any(|c| {
                let from = c.old.as_deref().unwrap();
                old.replacen(from, &c.new, 1) == **new
            });
            prop_assert!(explained, "unexplained line change:\n-{}+{}", old, new);
        }
        prop_assert_eq!(differing, modified.len());

        // Rewriting again changes nothing.
        let again = rewrite(&out.text, &req).unwrap();
        prop_assert_eq!(&again.text, &out.text);
        prop_assert!(again.changes.is_empty());
    }

    #[test]
    fn inserted_token_follows_data_dir_in_its_form(
        (_name, text) in varied_fixture(),
        req in request(),
    ) {
        let before = EtcdYaml::parse(&text).unwrap();
        prop_assume!(before.initial_cluster_token.is_none());
        let out = rewrite(&text, &req).unwrap();
        let mut doc = to_value(&out.text);
        let etcd = etcd_container(&mut doc);
        let items: Vec<&str> = ["command", "args"]
            .iter()
            .filter_map(|l| etcd[*l].as_array())
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let at = items
            .iter()
            .position(|i| i.starts_with("--data-dir"))
            .unwrap();
        let joined = format!("--initial-cluster-token={}", req.cluster_token);
        if items[at].contains('=') {
            prop_assert_eq!(items[at + 1], joined.as_str());
        } else {
            prop_assert_eq!(items[at + 2], "--initial-cluster-token");
            prop_assert_eq!(items[at + 3], req.cluster_token.as_str());
        }
    }
}
