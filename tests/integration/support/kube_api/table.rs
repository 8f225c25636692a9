//! Server-side printing: the `meta.k8s.io/v1 Table` kubectl asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`. Columns follow the real printers for
//! the common kinds (ConfigMap DATA, Secret TYPE, ...) and a CRD's `additionalPrinterColumns`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::format::{human_age, parse_rfc3339, unix_now};
use super::resources::ResourceDef;

/// Whether an `Accept` header asks for a Table (in any position).
pub(super) fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').skip(1).map(str::trim).collect();
        params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && (params.contains(&"v=v1") || params.contains(&"v=v1beta1"))
    })
}

fn age(obj: &Value) -> String {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(parse_rfc3339)
        .map(|t| human_age(unix_now() - t))
        .unwrap_or_else(|| "<unknown>".into())
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, |m| m.len())
}

fn str_or(v: &Value, fallback: &str) -> Value {
    json!(v.as_str().unwrap_or(fallback))
}

/// Evaluates the simple JSONPath forms CRDs use: `.spec.size`, `.status.items[0].name`.
fn json_path(obj: &Value, path: &str) -> Value {
    let mut cur = obj;
    for seg in path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
    {
        let (key, index) = match seg.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        cur = &cur[key];
        if let Some(i) = index {
            cur = &cur[i];
        }
    }
    cur.clone()
}

type Column = (&'static str, &'static str, fn(&Value) -> Value);

fn builtin_columns(def: &ResourceDef) -> Vec<Column> {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "configmaps") => vec![("Data", "integer", |o| {
            json!(count(&o["data"]) + count(&o["binaryData"]))
        })],
        ("", "secrets") => vec![
            ("Type", "string", |o| str_or(&o["type"], "Opaque")),
            ("Data", "integer", |o| json!(count(&o["data"]))),
        ],
        ("", "namespaces") => vec![("Status", "string", |o| str_or(&o["status"]["phase"], ""))],
        ("", "services") => vec![
            ("Type", "string", |o| {
                str_or(&o["spec"]["type"], "ClusterIP")
            }),
            ("Cluster-IP", "string", |o| {
                str_or(&o["spec"]["clusterIP"], "<none>")
            }),
        ],
        ("apps", "deployments") => vec![
            ("Ready", "string", |o| {
                let ready = o["status"]["readyReplicas"].as_i64().unwrap_or(0);
                let want = o["spec"]["replicas"].as_i64().unwrap_or(0);
                json!(format!("{ready}/{want}"))
            }),
            ("Up-to-date", "integer", |o| {
                json!(o["status"]["updatedReplicas"].as_i64().unwrap_or(0))
            }),
            ("Available", "integer", |o| {
                json!(o["status"]["availableReplicas"].as_i64().unwrap_or(0))
            }),
        ],
        _ => Vec::new(),
    }
}

fn column(name: &str, kind: &str, priority: i64) -> Value {
    json!({
        "name": name,
        "type": kind,
        "format": if name == "Name" { "name" } else { "" },
        "description": format!("{name} column"),
        "priority": priority,
    })
}

/// A Table of `items`; `list_meta` becomes the Table's metadata (resourceVersion, continue).
pub(super) fn table(
    def: &ResourceDef,
    items: &[Arc<Value>],
    list_meta: Value,
    include_object: Option<&str>,
) -> Value {
    let builtin = builtin_columns(def);
    let mut definitions = vec![column("Name", "string", 0)];
    for (name, kind, _) in &builtin {
        definitions.push(column(name, kind, 0));
    }
    for c in &def.printer_columns {
        definitions.push(column(&c.name, &c.kind, c.priority));
    }
    definitions.push(column("Age", "string", 0));
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![json!(o["metadata"]["name"])];
            cells.extend(builtin.iter().map(|(_, _, f)| f(o)));
            for c in &def.printer_columns {
                let v = json_path(o, &c.json_path);
                let v = match (c.kind.as_str(), v.as_str().and_then(parse_rfc3339)) {
                    ("date", Some(t)) => json!(human_age(unix_now() - t)),
                    _ => v,
                };
                cells.push(v);
            }
            cells.push(json!(age(o)));
            let mut row = json!({ "cells": cells });
            match include_object.unwrap_or("Metadata") {
                "None" => {}
                "Object" => row["object"] = (**o).clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_header_asks_for_a_table() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }

    #[test]
    fn json_paths_read_nested_fields() {
        let o = json!({ "spec": { "size": 3, "items": [{ "n": "a" }] } });
        assert_eq!(json_path(&o, ".spec.size"), json!(3));
        assert_eq!(json_path(&o, ".spec.items[0].n"), json!("a"));
        assert_eq!(json_path(&o, ".spec.none"), Value::Null);
    }
}
