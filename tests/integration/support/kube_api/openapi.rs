//! Minimal OpenAPI v3: the `/openapi/v3` index and one document per group-version listing each
//! resource's object paths with their GET/PUT/PATCH/DELETE operations, `x-kubernetes-group-version-kind`
//! and query parameters. kubectl reads the PATCH operation's `fieldValidation` parameter to
//! choose server-side field validation; without this it demands OpenAPI schemas and refuses to
//! apply. No schemas are served (`components.schemas` is empty), so kubectl's client-side apply
//! computes strategic patches from its built-in types, as against an older server.

use serde_json::{Map, Value, json};

use super::format::mix;
use super::resources::ResourceDef;
use super::store::State;

/// The index key of a group-version: `api/v1` or `apis/<group>/<version>`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every served group-version.
fn group_versions(state: &State) -> Vec<(String, String)> {
    let mut out = vec![(String::new(), "v1".to_string())];
    for (g, versions) in state.groups() {
        out.extend(versions.into_iter().map(|v| (g.clone(), v)));
    }
    out
}

/// A content hash for the document URL, so clients re-fetch after a CRD changes.
fn doc_hash(state: &State, group: &str, version: &str) -> String {
    let text: String = state
        .defs()
        .filter(|d| d.group == group && d.versions.iter().any(|v| v == version))
        .map(|d| format!("{}:{}:{};", d.plural, d.kind, d.namespaced))
        .collect();
    let h = text.bytes().fold(0u64, |acc, b| mix(acc ^ u64::from(b)));
    format!("{h:016X}")
}

/// `/openapi/v3`.
pub(super) fn index(state: &State) -> Value {
    let paths: Map<String, Value> = group_versions(state)
        .into_iter()
        .map(|(g, v)| {
            let key = gv_path(&g, &v);
            let url = format!("/openapi/v3/{key}?hash={}", doc_hash(state, &g, &v));
            (key, json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

fn parameter(name: &str, location: &str) -> Value {
    json!({ "name": name, "in": location, "required": location == "path",
            "schema": { "type": "string", "uniqueItems": true } })
}

fn operation(def: &ResourceDef, group: &str, version: &str, action: &str, query: &[&str]) -> Value {
    let mut params: Vec<Value> = query.iter().map(|q| parameter(q, "query")).collect();
    params.push(parameter("name", "path"));
    if def.namespaced {
        params.push(parameter("namespace", "path"));
    }
    json!({
        "operationId": format!("{action}{}", def.kind),
        "parameters": params,
        "responses": { "200": { "description": "OK" } },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": { "group": group, "version": version, "kind": def.kind },
    })
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/<group>/<version>`, if served.
pub(super) fn document(state: &State, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    for def in state
        .defs()
        .filter(|d| d.group == group && d.versions.iter().any(|v| v == version))
    {
        let prefix = format!("/{}", gv_path(group, version));
        let object = if def.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", def.plural)
        } else {
            format!("{prefix}/{}/{{name}}", def.plural)
        };
        let write = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
        let item = json!({
            "get": operation(def, group, version, "get", &["pretty"]),
            "put": operation(def, group, version, "put", &write),
            "patch": operation(def, group, version, "patch", &["dryRun", "fieldManager", "fieldValidation", "force", "pretty"]),
            "delete": operation(def, group, version, "delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
        });
        if def.status_subresource {
            let status = json!({
                "get": operation(def, group, version, "get", &["pretty"]),
                "put": operation(def, group, version, "put", &write),
                "patch": operation(def, group, version, "patch", &["dryRun", "fieldManager", "fieldValidation", "force", "pretty"]),
            });
            paths.insert(format!("{object}/status"), status);
        }
        paths.insert(object, item);
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.32.0-lifeboat-test" },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}
