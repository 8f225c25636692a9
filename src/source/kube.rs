//! The Kubernetes resource source: discover every listable resource (aggregated discovery,
//! falling back to per-group discovery; preferred versions only; subresources skipped), then
//! LIST each one in pages (`limit`, `continue`), cleaning every object for re-apply and handing
//! it on as soon as its page arrives, so memory is bounded by a page (plus the names written),
//! not by the cluster. Every object of a list is written once, whatever order the server lists
//! in: the `namespace/name` of each object written is remembered for its resource, so a page
//! that repeats an object, or a relist after `410 Gone` (expired continue token), writes nothing
//! twice and loses nothing. A resource that cannot be listed completely (a failure, or 410 on
//! every relist) is recorded with the reason, and the others are still exported.

use std::collections::HashMap;

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::config;
use crate::error::chain;

/// Why the export could not start.
#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "discovering the API server's resources failed: {reason}; check kubernetes.kubeconfig/context and that the service account may get /api and /apis"
    )]
    Discovery { reason: String },
    #[error("the export was stopped because a later stage failed")]
    Cancelled,
}

/// One resource to export.
#[derive(Debug, Clone)]
pub struct Target {
    /// Group, version, kind and plural.
    pub ar: ApiResource,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// `plural.group`, or `plural` for the core group: the name used in config and messages.
    pub key: String,
}

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The resources to export, sorted by key.
    pub targets: Vec<Target>,
    /// `aggregated` or `legacy`.
    pub mode: &'static str,
    /// The API server's gitVersion.
    pub server_version: String,
}

/// One object ready for the archive.
#[derive(Debug)]
pub struct Item {
    /// Its archive path.
    pub path: String,
    /// Its YAML, possibly age-encrypted.
    pub data: Vec<u8>,
}

/// How one resource's export went (recorded in index.json).
#[derive(Debug, Clone, Serialize)]
pub struct ResourceResult {
    /// `plural.group` or `plural`.
    pub resource: String,
    /// API group ("" for core).
    pub group: String,
    /// Version exported.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or not.
    pub namespaced: bool,
    /// Objects written.
    pub objects: u64,
    /// Of those, objects written as age files.
    pub encrypted: u64,
    /// The list's resourceVersion (of the last consistent list).
    pub resource_version: Option<String>,
    /// How often the list restarted after 410 Gone.
    pub restarts: u32,
    /// Objects the server listed again (a repeat within a list, or an object already written
    /// before a restart) and that were not written a second time.
    pub repeats_skipped: u64,
    /// Set when the resource could not be listed completely.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `plural.group` key of a resource.
pub fn resource_key(ar: &ApiResource) -> String {
    if ar.group.is_empty() {
        ar.plural.clone()
    } else {
        format!("{}.{}", ar.plural, ar.group)
    }
}

/// Discovers the resources to export under the configured filters.
pub async fn discover(client: &kube::Client, cfg: &config::Resources) -> Result<Discovered, Error> {
    let failed = |e: kube::Error| Error::Discovery { reason: chain(&e) };
    // A server without aggregated discovery may answer the legacy document, which parses as an
    // empty aggregated list: only a result that has the core group counts as aggregated.
    let (discovery, mode) = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) if d.has_group("") => (d, "aggregated"),
        other => {
            if let Err(e) = other {
                tracing::debug!(error = %chain(&e), "Aggregated discovery unavailable; using per-group discovery.");
            }
            (
                Discovery::new(client.clone()).run().await.map_err(failed)?,
                "legacy",
            )
        }
    };
    let server_version = client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_else(|_| "unknown".into());
    let mut targets: Vec<Target> = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(_, caps): &(ApiResource, ApiCapabilities)| caps.supports_operation(verbs::LIST))
        .map(|(ar, caps)| Target {
            key: resource_key(&ar),
            namespaced: caps.scope == Scope::Namespaced,
            ar,
        })
        .filter(|t| !t.ar.plural.contains('/'))
        .filter(|t| cfg.include_resources.is_empty() || cfg.include_resources.contains(&t.key))
        .filter(|t| !cfg.exclude_resources.contains(&t.key))
        .collect();
    if targets.is_empty() {
        return Err(Error::Discovery {
            reason: "no listable resource was found (check resources.include_resources and the service account's RBAC): an empty export is not a backup".into(),
        });
    }
    targets.sort_by(|a, b| a.key.cmp(&b.key));
    targets.dedup_by(|a, b| a.key == b.key);
    Ok(Discovered {
        targets,
        mode,
        server_version,
    })
}

/// Removes what must not be re-applied, as documented in docs/FORMAT.md: server-set metadata
/// (managedFields, resourceVersion, uid, creationTimestamp, generation, selfLink) and status.
pub fn clean(mut obj: Value, ar: &ApiResource) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
        map.insert("apiVersion".into(), Value::String(ar.api_version.clone()));
        map.insert("kind".into(), Value::String(ar.kind.clone()));
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "managedFields",
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "generation",
                "selfLink",
            ] {
                meta.remove(field);
            }
        }
    }
    obj
}

/// How many times one resource's list restarts after `410 Gone` before it is given up as partial.
pub const MAX_RESTARTS: u32 = 5;

/// Lists one resource page by page into `out`. Never fails the whole export: errors end up in
/// the result. Returns `Err(Cancelled)` only when the archive stage went away.
pub async fn export(
    client: &kube::Client,
    target: &Target,
    cfg: &config::Resources,
    recipients: Option<&[age::x25519::Recipient]>,
    out: &mpsc::Sender<Item>,
) -> Result<ResourceResult, Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &target.ar);
    let encrypt = cfg.encrypt_resources.contains(&target.key);
    let mut result = ResourceResult {
        resource: target.key.clone(),
        group: target.ar.group.clone(),
        version: target.ar.version.clone(),
        kind: target.ar.kind.clone(),
        namespaced: target.namespaced,
        objects: 0,
        encrypted: 0,
        resource_version: None,
        restarts: 0,
        repeats_skipped: 0,
        error: None,
    };
    let mut listed = Listed::default();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(cfg.page_size);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = match api.list(&params).await {
            Ok(p) => p,
            Err(kube::Error::Api(s)) if s.code == 410 && result.restarts < MAX_RESTARTS => {
                result.restarts += 1;
                tracing::info!(resource = %target.key, restarts = result.restarts, written = result.objects, "Continue token expired (410 Gone): restarting this resource's list; objects already written are not written again.");
                token = None;
                continue;
            }
            Err(kube::Error::Api(s)) if s.code == 410 => {
                result.error = Some(format!(
                    "{}: the list was restarted {MAX_RESTARTS} times after 410 Gone (continue token expired) and never completed, so objects may be missing ({} written): {}; the list took longer than the API server keeps its history (etcd compaction): raise resources.page_size so it needs fewer pages, or run the export again",
                    target.key, result.objects, s.message
                ));
                tracing::warn!(resource = %target.key, restarts = result.restarts, objects = result.objects, "Listing kept expiring (410 Gone); the export goes on without the rest of this resource.");
                return Ok(result);
            }
            Err(e) => {
                result.error = Some(format!("{}: {}", target.key, chain(&e)));
                tracing::warn!(resource = %target.key, error = %chain(&e), "Listing failed; the export goes on without the rest of this resource.");
                return Ok(result);
            }
        };
        let first_page = token.is_none();
        if first_page {
            result.resource_version = page.metadata.resource_version.clone();
            listed.start_pass();
        }
        let more = page
            .metadata
            .continue_
            .as_deref()
            .is_some_and(|c| !c.is_empty());
        for obj in &page.items {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let namespace = obj.metadata.namespace.clone();
            let order_key = format!("{}/{name}", namespace.as_deref().unwrap_or(""));
            match listed.see(order_key) {
                Seen::New => {}
                Seen::Again => {
                    result.repeats_skipped += 1;
                    continue;
                }
            }
            if target.namespaced {
                let ns = namespace.as_deref().unwrap_or("");
                if (!cfg.include_namespaces.is_empty()
                    && !cfg.include_namespaces.iter().any(|n| n == ns))
                    || cfg.exclude_namespaces.iter().any(|n| n == ns)
                {
                    continue;
                }
            }
            let path = crate::archive::object_path(
                target
                    .namespaced
                    .then_some(namespace.as_deref().unwrap_or("default")),
                &target.ar.group,
                &target.ar.plural,
                &name,
                encrypt && recipients.is_some(),
            );
            let yaml = match serde_json::to_value(obj)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    serde_saphyr::to_string(&clean(v, &target.ar)).map_err(|e| e.to_string())
                }) {
                Ok(y) => y.into_bytes(),
                Err(e) => {
                    result.error = Some(format!("{}: cannot serialize {name}: {e}", target.key));
                    return Ok(result);
                }
            };
            let (data, encrypted) = match (encrypt, recipients) {
                (true, Some(r)) => match crate::archive::encrypt(r, &yaml) {
                    Ok(d) => (d, true),
                    Err(e) => {
                        result.error =
                            Some(format!("{}: encrypting {name} failed: {e}", target.key));
                        return Ok(result);
                    }
                },
                _ => (yaml, false),
            };
            out.send(Item { path, data })
                .await
                .map_err(|_| Error::Cancelled)?;
            result.encrypted += u64::from(encrypted);
            result.objects += 1;
        }
        if first_page && more {
            // The server announces how many objects the whole list holds; a shortfall at its
            // end is the only sign that a page was skipped.
            if let Some(remaining) = page.metadata.remaining_item_count {
                listed.expect(remaining.max(0) as u64);
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(next) => token = Some(next),
            None => {
                if let Some((announced, distinct)) = listed.shortfall() {
                    result.error = Some(format!(
                        "{}: the API server announced {announced} objects for this list (remainingItemCount on its first page) but listed only {distinct} distinct ones, so objects may be missing; something between lifeboat and the API server (a proxy, an aggregated API server) changes the list's pages: run the export again, or point kubernetes.kubeconfig at the API server itself",
                        target.key
                    ));
                    tracing::warn!(resource = %target.key, announced, distinct, "The list came back shorter than announced; this resource is partial.");
                }
                return Ok(result);
            }
        }
    }
}

/// Whether an object was listed before.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// First time: export it.
    New,
    /// Listed already (earlier in this list, or before a restart): it was handled then.
    Again,
}

/// The names (`namespace/name`) one resource's list has produced, across restarts, and how
/// complete the current pass is. Names, not objects: memory grows with the count of objects,
/// not their size. Pure, so the rules are tested without a server.
#[derive(Debug, Default)]
struct Listed {
    /// Every name listed so far, with the pass (1 = first list, 2 = first restart, ...) that
    /// last listed it.
    names: HashMap<String, u32>,
    pass: u32,
    /// Distinct names the current pass listed (including names written by an earlier pass).
    distinct_in_pass: u64,
    /// How many objects the current pass's list announced: its first page's distinct names
    /// plus the server's remainingItemCount.
    announced: Option<u64>,
}

impl Listed {
    /// A list starts (again) from its first page.
    fn start_pass(&mut self) {
        self.pass += 1;
        self.distinct_in_pass = 0;
        self.announced = None;
    }

    /// One listed object.
    fn see(&mut self, name: String) -> Seen {
        let pass = self.pass;
        match self.names.insert(name, pass) {
            None => {
                self.distinct_in_pass += 1;
                Seen::New
            }
            Some(before) => {
                if before != pass {
                    self.distinct_in_pass += 1;
                }
                Seen::Again
            }
        }
    }

    /// The first page said `remaining` more objects follow it.
    fn expect(&mut self, remaining: u64) {
        self.announced = Some(self.distinct_in_pass + remaining);
    }

    /// `(announced, distinct)` when the finished pass listed fewer objects than announced.
    fn shortfall(&self) -> Option<(u64, u64)> {
        self.announced
            .filter(|a| self.distinct_in_pass < *a)
            .map(|a| (a, self.distinct_in_pass))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(listed: &mut Listed, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .filter(|n| listed.see(n.to_string()) == Seen::New)
            .map(|n| n.to_string())
            .collect()
    }

    /// Regression: objects sorting at or before the last one written were skipped on every
    /// page, so a list in another order lost objects silently.
    #[test]
    fn a_list_in_any_order_exports_every_object_once() {
        let mut listed = Listed::default();
        listed.start_pass();
        assert_eq!(
            list(&mut listed, &["/ns-a", "/ns-b", "/kube-system"]),
            ["/ns-a", "/ns-b", "/kube-system"]
        );
        let mut listed = Listed::default();
        listed.start_pass();
        assert_eq!(
            list(&mut listed, &["ns-b/x", "ns-a/y", "ns-a/z", "ns-a/y"]),
            ["ns-b/x", "ns-a/y", "ns-a/z"]
        );
        assert_eq!(listed.shortfall(), None);
    }

    #[test]
    fn a_restart_writes_only_what_the_first_pass_did_not() {
        let mut listed = Listed::default();
        listed.start_pass();
        assert_eq!(list(&mut listed, &["a/1", "a/2"]), ["a/1", "a/2"]);
        listed.expect(2);
        // 410: the relist comes in another order, a/2 was deleted meanwhile, b/1 is new.
        listed.start_pass();
        assert_eq!(list(&mut listed, &["b/1", "a/1"]), ["b/1"]);
        listed.expect(1);
        assert_eq!(list(&mut listed, &["a/3"]), ["a/3"]);
        assert_eq!(
            listed.shortfall(),
            None,
            "the relist is complete on its own"
        );
    }

    #[test]
    fn a_list_shorter_than_announced_is_a_shortfall() {
        let mut listed = Listed::default();
        listed.start_pass();
        list(&mut listed, &["a/1", "a/2"]);
        listed.expect(3);
        // The next pages repeat a/2 and skip two objects.
        list(&mut listed, &["a/2", "a/5"]);
        assert_eq!(listed.shortfall(), Some((5, 3)));
    }
}
