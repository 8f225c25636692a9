//! Discovery documents: `/version`, the legacy `/api`, `/apis`, `/apis/<group>` and
//! `APIResourceList` documents, and aggregated discovery (`apidiscovery.k8s.io` v2 and v2beta1
//! `APIGroupDiscoveryList`) chosen by the `Accept` header, as kubectl 1.26+ and client-go ask.

use serde_json::{Value, json};

use super::resources::{ResourceDef, STATUS_VERBS, VERBS};
use super::store::State;

/// The Kubernetes version the server claims to be.
pub(super) const SERVER_MINOR: &str = "32";

pub(super) fn version() -> Value {
    json!({
        "major": "1",
        "minor": SERVER_MINOR,
        "gitVersion": format!("v1.{SERVER_MINOR}.0-lifeboat-test"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/api`: the legacy core group's versions.
pub(super) fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }]
    })
}

fn api_group(name: &str, versions: &[String]) -> Value {
    let list: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{name}/{v}"), "version": v }))
        .collect();
    json!({
        "name": name,
        "versions": list,
        "preferredVersion": list[0],
    })
}

/// `/apis`: every named group.
pub(super) fn group_list(state: &State) -> Value {
    let groups: Vec<Value> = state
        .groups()
        .iter()
        .map(|(g, v)| api_group(g, v))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/<group>`, if the group is served.
pub(super) fn group(state: &State, name: &str) -> Option<Value> {
    let groups = state.groups();
    let (_, versions) = groups.iter().find(|(g, _)| g == name)?;
    let mut g = api_group(name, versions);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn served_in<'a>(
    state: &'a State,
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'a ResourceDef> {
    state
        .defs()
        .filter(move |d| d.group == group && d.versions.iter().any(|v| v == version))
}

fn put_names(entry: &mut Value, def: &ResourceDef) {
    if !def.short_names.is_empty() {
        entry["shortNames"] = json!(def.short_names);
    }
    if !def.categories.is_empty() {
        entry["categories"] = json!(def.categories);
    }
}

/// `/api/v1` or `/apis/<group>/<version>`, if served.
pub(super) fn resource_list(state: &State, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for d in served_in(state, group, version) {
        let mut entry = json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": VERBS,
        });
        put_names(&mut entry, d);
        resources.push(entry);
        if d.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", d.plural),
                "singularName": "",
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": STATUS_VERBS,
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

fn discovery_version(state: &State, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = served_in(state, group, version)
        .map(|d| {
            let kind = json!({ "group": group, "version": version, "kind": d.kind });
            let mut entry = json!({
                "resource": d.plural,
                "responseKind": kind,
                "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": d.singular,
                "verbs": VERBS,
            });
            put_names(&mut entry, d);
            if d.status_subresource {
                entry["subresources"] = json!([{
                    "subresource": "status",
                    "responseKind": kind,
                    "verbs": STATUS_VERBS,
                }]);
            }
            entry
        })
        .collect();
    json!({ "version": version, "resources": resources, "freshness": "Current" })
}

/// The aggregated discovery document for `/api` (`core`) or `/apis`, in the asked version
/// (`v2` or `v2beta1`; both have the same shape for what this server serves).
pub(super) fn aggregated(state: &State, core: bool, version: &str) -> Value {
    let items: Vec<Value> = if core {
        vec![json!({
            "metadata": { "creationTimestamp": null },
            "versions": [discovery_version(state, "", "v1")],
        })]
    } else {
        state
            .groups()
            .iter()
            .map(|(g, versions)| {
                let vs: Vec<Value> = versions
                    .iter()
                    .map(|v| discovery_version(state, g, v))
                    .collect();
                json!({ "metadata": { "name": g, "creationTimestamp": null }, "versions": vs })
            })
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// The aggregated discovery version an `Accept` header asks for first, if any.
pub(super) fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for media in accept.split(',') {
        let params: Vec<(&str, &str)> = media
            .split(';')
            .skip(1)
            .filter_map(|p| p.trim().split_once('='))
            .collect();
        let param = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        if param("g") == Some("apidiscovery.k8s.io") && param("as") == Some("APIGroupDiscoveryList")
        {
            match param("v") {
                Some("v2") => return Some("v2"),
                Some("v2beta1") => return Some("v2beta1"),
                _ => {}
            }
        }
    }
    None
}

/// The Content-Type of an aggregated discovery response.
pub(super) fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_picks_the_first_aggregated_version() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                       application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                       application/json";
        assert_eq!(wants_aggregated(kubectl), Some("v2"));
        assert_eq!(
            wants_aggregated(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            ),
            Some("v2beta1")
        );
        assert_eq!(wants_aggregated("application/json, */*"), None);
    }

    #[test]
    fn deployments_list_their_status_subresource() {
        let state = State::new();
        let list = resource_list(&state, "apps", "v1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["deployments", "deployments/status"]);
    }
}
