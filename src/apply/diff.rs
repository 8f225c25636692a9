//! What changed between two sets of cleaned objects (two resource exports, or an export and the
//! live cluster): objects added, removed and changed, with a unified YAML diff of each changed
//! one. Pure: both sides arrive cleaned the same way (`objects::clean`), so server-set
//! fields (managedFields, resourceVersion, status, ...) never show up as changes.
//!
//! Secrets are compared with each `data` and `stringData` value replaced by its sha256, and
//! rendered with each value replaced by a placeholder, so the diff shows label, annotation,
//! type and key changes and names the keys whose values changed, never a value or its hash,
//! unless the caller asks to show them (`--identity` and `--show-secrets`).
//! Objects are compared as JSON values first and rendered as YAML only when they differ, so a
//! diff of 100k mostly unchanged objects costs little more than reading them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::select::ObjectRef;

/// How one object differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the newer side.
    Added,
    /// Only in the older side.
    Removed,
    /// In both, different.
    Changed,
}

/// One object that differs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// The object.
    pub object: ObjectRef,
    /// How it differs.
    pub change: Change,
    /// For a changed object: a unified diff of its YAML, older side first. For a concealed
    /// Secret, values show as [`HIDDEN`]; `None` when only its values changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Set for a Secret whose values are not shown.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub concealed: bool,
    /// For a concealed Secret: the keys in both sides whose values differ (`a` for `data.a`,
    /// `stringData.a`), sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hidden_values: Vec<String>,
}

/// What a concealed Secret's values show as.
pub const HIDDEN: &str = "<hidden>";

/// The differences, sorted by object, and how many objects matched.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Objects that differ.
    pub entries: Vec<Entry>,
    /// Objects in both sides, equal.
    pub unchanged: u64,
}

impl Report {
    /// How many entries have `change`.
    pub fn count(&self, change: Change) -> usize {
        self.entries.iter().filter(|e| e.change == change).count()
    }
}

/// How to compare.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Show Secrets' contents in diffs instead of comparing them by hash.
    pub show_secrets: bool,
    /// Labels for the two sides in diff headers, e.g. the backup ids or "live".
    pub labels: (String, String),
}

/// Compares `older` with `newer`.
pub fn diff(
    older: &BTreeMap<ObjectRef, Value>,
    newer: &BTreeMap<ObjectRef, Value>,
    options: &Options,
) -> Report {
    let mut report = Report::default();
    for (r, old) in older {
        let Some(new) = newer.get(r) else {
            report.entries.push(Entry {
                object: r.clone(),
                change: Change::Removed,
                diff: None,
                concealed: false,
                hidden_values: Vec::new(),
            });
            continue;
        };
        if is_secret(r) && !options.show_secrets {
            let (old, old_values) = conceal_secret(old);
            let (new, new_values) = conceal_secret(new);
            if old == new && old_values == new_values {
                report.unchanged += 1;
                continue;
            }
            let hidden_values = old_values
                .iter()
                .filter(|(k, h)| new_values.get(*k).is_some_and(|n| n != *h))
                .map(|((field, key), _)| match *field {
                    "data" => key.clone(),
                    _ if key.is_empty() => field.to_string(),
                    _ => format!("{field}.{key}"),
                })
                .collect();
            report.entries.push(Entry {
                object: r.clone(),
                change: Change::Changed,
                diff: (old != new).then(|| unified(&old, &new, r, &options.labels)),
                concealed: true,
                hidden_values,
            });
            continue;
        }
        if old == new {
            report.unchanged += 1;
            continue;
        }
        report.entries.push(Entry {
            object: r.clone(),
            change: Change::Changed,
            diff: Some(unified(old, new, r, &options.labels)),
            concealed: false,
            hidden_values: Vec::new(),
        });
    }
    for r in newer.keys().filter(|r| !older.contains_key(*r)) {
        report.entries.push(Entry {
            object: r.clone(),
            change: Change::Added,
            diff: None,
            concealed: false,
            hidden_values: Vec::new(),
        });
    }
    report.entries.sort_by(|a, b| a.object.cmp(&b.object));
    report
}

fn is_secret(r: &ObjectRef) -> bool {
    r.group.is_empty() && r.kind == "Secret"
}

/// A Secret with each `data` and `stringData` value replaced by [`HIDDEN`] (key names are not
/// secret), and a sha256 of each value by field and key: two Secrets
/// are equal exactly when both parts are, and only the first is ever shown.
fn conceal_secret(obj: &Value) -> (Value, BTreeMap<(&'static str, String), [u8; 32]>) {
    let mut out = obj.clone();
    let mut values = BTreeMap::new();
    let Some(map) = out.as_object_mut() else {
        return (out, values);
    };
    for field in ["data", "stringData"] {
        let Some(entries) = map.get_mut(field) else {
            continue;
        };
        let Some(entries) = entries.as_object_mut() else {
            // Not a map of values: hide it whole.
            values.insert(
                (field, String::new()),
                Sha256::digest(canonical(entries).as_bytes()).into(),
            );
            *entries = Value::String(HIDDEN.into());
            continue;
        };
        for (key, value) in entries.iter_mut() {
            values.insert(
                (field, key.clone()),
                Sha256::digest(canonical(value).as_bytes()).into(),
            );
            *value = Value::String(HIDDEN.into());
        }
    }
    (out, values)
}

/// JSON with every object's keys sorted, whatever order the source had.
fn canonical(v: &Value) -> String {
    serde_json::to_string(&sorted(v)).expect("a JSON value serializes")
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// A unified diff of two objects' YAML, keys sorted so that only real changes show.
fn unified(old: &Value, new: &Value, r: &ObjectRef, labels: &(String, String)) -> String {
    let render = |v: &Value| serde_saphyr::to_string(&sorted(v)).unwrap_or_else(|e| format!("{e}"));
    let (old, new) = (render(old), render(new));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{} ({})", r.describe(), labels.0),
            &format!("{} ({})", r.describe(), labels.1),
        )
        .to_string()
}

/// The paths of the fields in which `a` and `b` differ (`spec.replicas`, `data.key`), sorted,
/// for a one-line summary; arrays count as one field.
pub fn differing_fields(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(a, b, &mut String::new(), &mut out);
    out.sort();
    out
}

fn walk(a: &Value, b: &Value, path: &mut String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => walk(l, r, path, out),
                    _ => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (l, r) if l != r => out.push(if path.is_empty() {
            "(whole object)".into()
        } else {
            path.clone()
        }),
        _ => {}
    }
}

/// "spec.replicas, data.url (and 3 more)", for one line.
pub fn summarize_fields(fields: &[String], show: usize) -> String {
    let mut text = fields
        .iter()
        .take(show)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if fields.len() > show {
        text.push_str(&format!(" (and {} more)", fields.len() - show));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(objs: &[Value]) -> BTreeMap<ObjectRef, Value> {
        objs.iter()
            .map(|o| (ObjectRef::of(o).unwrap(), o.clone()))
            .collect()
    }

    fn cm(name: &str, data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "a"}, "data": data})
    }

    fn secret(name: &str, data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "a"}, "data": data})
    }

    fn labels() -> Options {
        Options {
            show_secrets: false,
            labels: ("backup A".into(), "live".into()),
        }
    }

    #[test]
    fn added_removed_and_changed_objects_are_reported_in_order() {
        let older = set(&[
            cm("kept", json!({"k": "v"})),
            cm("gone", json!({})),
            cm("edited", json!({"replicas": "1"})),
        ]);
        let newer = set(&[
            cm("kept", json!({"k": "v"})),
            cm("edited", json!({"replicas": "3"})),
            cm("new", json!({})),
        ]);
        let report = diff(&older, &newer, &labels());
        let got: Vec<(&str, Change)> = report
            .entries
            .iter()
            .map(|e| (e.object.name.as_str(), e.change))
            .collect();
        assert_eq!(
            got,
            [
                ("edited", Change::Changed),
                ("gone", Change::Removed),
                ("new", Change::Added)
            ]
        );
        assert_eq!(report.unchanged, 1);
        let d = report.entries[0].diff.as_deref().unwrap();
        assert!(
            d.contains("-  replicas: '1'") || d.contains("-  replicas: \"1\""),
            "{d}"
        );
        assert!(
            d.contains("ConfigMap a/edited (backup A)") && d.contains("(live)"),
            "{d}"
        );
    }

    #[test]
    fn differing_fields_name_each_changed_leaf_once() {
        let a = json!({"spec": {"replicas": 1, "template": {"x": [1]}}, "data": {"a": "1"}});
        let b =
            json!({"spec": {"replicas": 3, "template": {"x": [2]}}, "data": {"a": "1", "b": "2"}});
        let fields = differing_fields(&a, &b);
        assert_eq!(fields, ["data.b", "spec.replicas", "spec.template.x"]);
        assert_eq!(
            summarize_fields(&fields, 2),
            "data.b, spec.replicas (and 1 more)"
        );
        assert!(differing_fields(&a, &a).is_empty());
    }

    #[test]
    fn key_order_is_not_a_change() {
        let a: Value = serde_json::from_str(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"a"},"data":{"x":"1","y":"2"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"kind":"ConfigMap","data":{"y":"2","x":"1"},"metadata":{"namespace":"a","name":"c"},"apiVersion":"v1"}"#).unwrap();
        let report = diff(&set(&[a]), &set(&[b]), &labels());
        assert_eq!((report.entries.len(), report.unchanged), (0, 1));
    }

    #[test]
    fn a_secret_is_compared_by_hash_and_its_contents_are_never_shown() {
        let older = set(&[
            secret("db", json!({"password": "aHVudGVyMg=="})),
            secret("same", json!({"k": "dg=="})),
        ]);
        let newer = set(&[
            secret("db", json!({"password": "c3dvcmRmaXNo"})),
            secret("same", json!({"k": "dg=="})),
        ]);
        let report = diff(&older, &newer, &labels());
        assert_eq!(report.entries.len(), 1);
        let e = &report.entries[0];
        assert_eq!(
            (e.change, e.concealed, e.diff.as_deref()),
            (Change::Changed, true, None)
        );
        let json = serde_json::to_string(&report).unwrap();
        assert!(
            !json.contains("aHVudGVyMg") && !json.contains("c3dvcmRmaXNo"),
            "{json}"
        );
        // Asked to, the diff shows them.
        let shown = diff(
            &older,
            &newer,
            &Options {
                show_secrets: true,
                ..labels()
            },
        );
        assert!(
            shown.entries[0]
                .diff
                .as_deref()
                .unwrap()
                .contains("c3dvcmRmaXNo")
        );
    }

    /// Regression: a Secret whose labels changed (data unchanged) was reported only as
    /// "contents differ; compared by hash", hiding what changed.
    #[test]
    fn a_concealed_secret_shows_metadata_and_key_changes_and_names_changed_values() {
        let mut relabelled = secret("db", json!({"password": "aHVudGVyMg==", "user": "YQ=="}));
        relabelled["metadata"]["labels"] = json!({"tier": "db"});
        relabelled["data"]["extra"] = json!("c3dvcmRmaXNo");
        relabelled["data"]["user"] = json!("Yg==");
        let older = set(&[
            secret("db", json!({"password": "aHVudGVyMg==", "user": "YQ=="})),
            secret("values", json!({"a": "MQ==", "b": "Mg==", "c": "Mw=="})),
        ]);
        let newer = set(&[
            relabelled,
            secret("values", json!({"a": "OQ==", "b": "Mg==", "c": "OA=="})),
        ]);
        let report = diff(&older, &newer, &labels());
        assert_eq!(report.count(Change::Changed), 2);
        let db = &report.entries[0];
        let d = db
            .diff
            .as_deref()
            .expect("metadata and keys changed: a diff");
        assert!(d.contains("+    tier: db"), "{d}");
        assert!(d.contains("+  extra:") && d.contains(HIDDEN), "{d}");
        assert_eq!(db.hidden_values, ["user"]);
        let values = &report.entries[1];
        assert_eq!(values.diff, None, "only values changed: nothing to show");
        assert_eq!(values.hidden_values, ["a", "c"]);
        let json = serde_json::to_string(&report).unwrap();
        for value in [
            "aHVudGVyMg",
            "c3dvcmRmaXNo",
            "YQ==",
            "Yg==",
            "OQ==",
            "OA==",
            "MQ==",
        ] {
            assert!(!json.contains(value), "{value} leaked: {json}");
        }
    }

    #[test]
    fn moving_a_value_between_data_and_string_data_is_a_change() {
        let a = set(&[
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "a"}, "data": {"k": "v"}}),
        ]);
        let b = set(&[
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "a"}, "stringData": {"k": "v"}}),
        ]);
        assert_eq!(diff(&a, &b, &labels()).count(Change::Changed), 1);
    }
}
