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
use std::sync::Arc;

use bytes::Bytes;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use serde::Serialize;
use thiserror::Error;

use crate::archive::TarWriter;
use crate::error::chain;
use crate::manifest::{self, BackupId, Kind, ResourcesSource};
use crate::objects::{self, Object, Refused, ResourceType, Selection, Sink};
use crate::source::{Closed, Output, Produced, Producer, Started};

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
    /// Group, version, kind and plural, as the API client needs them.
    pub ar: ApiResource,
    /// The same, as objects carry it.
    pub resource: Arc<ResourceType>,
    /// `plural.group`, or `plural` for the core group: the name used in config and messages.
    pub key: String,
}

impl Target {
    fn new(ar: ApiResource, namespaced: bool) -> Target {
        let resource = ResourceType::of(&ar, namespaced);
        Target {
            key: resource.key(),
            resource: Arc::new(resource),
            ar,
        }
    }
}

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The resources to export, sorted by key.
    pub targets: Vec<Target>,
    /// How they were discovered.
    pub mode: manifest::Discovery,
    /// The API server's gitVersion.
    pub server_version: String,
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

/// Discovers the resources to export under the configured selection.
pub async fn discover(client: &kube::Client, selection: &Selection) -> Result<Discovered, Error> {
    let failed = |e: kube::Error| Error::Discovery { reason: chain(&e) };
    // A server without aggregated discovery may answer the legacy document, which parses as an
    // empty aggregated list: only a result that has the core group counts as aggregated.
    let (discovery, mode) = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) if d.has_group("") => (d, manifest::Discovery::Aggregated),
        other => {
            if let Err(e) = other {
                tracing::debug!(error = %chain(&e), "Aggregated discovery unavailable; using per-group discovery.");
            }
            (
                Discovery::new(client.clone()).run().await.map_err(failed)?,
                manifest::Discovery::Legacy,
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
        .map(|(ar, caps)| Target::new(ar, caps.scope == Scope::Namespaced))
        .filter(|t| !t.ar.plural.contains('/'))
        .filter(|t| selection.resource(&t.key))
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

/// How many times one resource's list restarts after `410 Gone` before it is given up as partial.
pub const MAX_RESTARTS: u32 = 5;

/// Lists one resource page by page, cleaned objects of the selected namespaces into `out`.
/// Never fails the whole export: errors end up in the result. Returns `Err(Cancelled)` only
/// when the sink went away.
pub async fn export(
    client: &kube::Client,
    target: &Target,
    selection: &Selection,
    page_size: u32,
    out: &mut impl Sink,
) -> Result<ResourceResult, Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &target.ar);
    let mut result = ResourceResult {
        resource: target.key.clone(),
        group: target.ar.group.clone(),
        version: target.ar.version.clone(),
        kind: target.ar.kind.clone(),
        namespaced: target.resource.namespaced,
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
        let mut params = ListParams::default().limit(page_size);
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
        for obj in page.items {
            let order_key = format!(
                "{}/{}",
                obj.metadata.namespace.as_deref().unwrap_or(""),
                obj.metadata.name.as_deref().unwrap_or("")
            );
            match listed.see(order_key) {
                Seen::New => {}
                Seen::Again => {
                    result.repeats_skipped += 1;
                    continue;
                }
            }
            let name = obj.metadata.name.clone().unwrap_or_default();
            let raw = match serde_json::to_value(obj) {
                Ok(v) => v,
                Err(e) => {
                    result.error = Some(format!("{}: cannot serialize {name}: {e}", target.key));
                    return Ok(result);
                }
            };
            let object = Object::new(target.resource.clone(), raw);
            if !selection.namespace(object.namespace.as_deref()) {
                continue;
            }
            match out.put(object).await {
                Ok(encrypted) => {
                    result.encrypted += u64::from(encrypted);
                    result.objects += 1;
                }
                Err(Refused::Object(reason)) => {
                    result.error = Some(format!("{}: {reason}", target.key));
                    return Ok(result);
                }
                Err(Refused::Closed) => return Err(Error::Cancelled),
            }
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

/// Tar bytes gathered before they are handed to the encode stage (etcd's chunk size, too).
const TAR_CHUNK: usize = 32 * 1024;

/// The export's sink: each object encoded ([`objects::encode`]) into the archive's tar stream,
/// handed on in [`TAR_CHUNK`] pieces.
struct ArchiveSink<'a> {
    tar: TarWriter,
    selection: &'a Selection,
    recipients: Option<&'a [age::x25519::Recipient]>,
    out: Output,
}

impl ArchiveSink<'_> {
    /// Appends one file to the tar stream.
    async fn add(&mut self, path: &str, data: &[u8]) -> Result<(), Refused> {
        self.tar
            .add(path, data)
            .map_err(|e| Refused::Object(format!("adding {path} to the archive failed: {e}")))?;
        if self.tar.buffered() >= TAR_CHUNK {
            let chunk = self.tar.take();
            send(&self.out, chunk).await?;
        }
        Ok(())
    }

    /// Ends the tar stream and hands on its last bytes.
    async fn finish(self) -> Result<(), Refused> {
        let last = self
            .tar
            .finish()
            .map_err(|e| Refused::Object(format!("ending the archive failed: {e}")))?;
        send(&self.out, last).await
    }
}

async fn send(out: &Output, bytes: Vec<u8>) -> Result<(), Refused> {
    if bytes.is_empty() {
        return Ok(());
    }
    out.send(Bytes::from(bytes))
        .await
        .map_err(|Closed| Refused::Closed)
}

impl Sink for ArchiveSink<'_> {
    async fn put(&mut self, obj: Object) -> Result<bool, Refused> {
        let encoded =
            objects::encode(&obj, self.selection, self.recipients).map_err(Refused::Object)?;
        self.add(&encoded.path, &encoded.data).await?;
        Ok(encoded.encrypted)
    }
}

/// The producer of a resource export: every selected resource listed into `resources.tar`,
/// index.json last.
pub struct Export {
    /// The client, connected to `api_server`.
    pub client: kube::Client,
    /// The API server's URL, for the manifest and index.json.
    pub api_server: String,
    /// What discovery found: the resources to list.
    pub discovered: Discovered,
    /// Which namespaces to export, and which resources to encrypt.
    pub selection: Selection,
    /// Objects per LIST page (`resources.page_size`).
    pub page_size: u32,
    /// Recipients of the encrypted resources' objects; `None` stores them in the clear
    /// (`encryption.allow_unencrypted`).
    pub recipients: Option<Vec<age::x25519::Recipient>>,
}

impl Producer for Export {
    fn kind(&self) -> Kind {
        Kind::Resources
    }

    fn stem(&self) -> &'static str {
        "resources.tar"
    }

    fn log_start(&self, id: &BackupId) {
        tracing::info!(backup_id = %id, api_server = %self.api_server, resources = self.discovered.targets.len(), discovery = %self.discovered.mode, "Resource export started.");
    }

    async fn produce(self, run: &Started, out: Output) -> Produced<manifest::Source> {
        let mut sink = ArchiveSink {
            tar: TarWriter::new(run.started_at.timestamp().max(0) as u64),
            selection: &self.selection,
            recipients: self.recipients.as_deref(),
            out,
        };
        let targets = &self.discovered.targets;
        let mut results = Vec::with_capacity(targets.len());
        for target in targets {
            match export(
                &self.client,
                target,
                &self.selection,
                self.page_size,
                &mut sink,
            )
            .await
            {
                Ok(r) => results.push(r),
                Err(_) => return Produced::Cancelled,
            }
        }
        let objects: u64 = results.iter().map(|r| r.objects).sum();
        let encrypted_objects: u64 = results.iter().map(|r| r.encrypted).sum();
        let errors: Vec<String> = results.iter().filter_map(|r| r.error.clone()).collect();
        let index = serde_json::json!({
            "version": 1,
            "cluster": run.cluster,
            "started_at": run.started_at,
            "api_server": self.api_server,
            "api_server_version": self.discovered.server_version,
            "discovery": self.discovered.mode,
            "objects": objects,
            "encrypted_objects": encrypted_objects,
            "errors": errors,
            "resources": results,
        });
        let index = serde_json::to_vec_pretty(&index).expect("index serializes");
        let ended = match sink.add("index.json", &index).await {
            Ok(()) => sink.finish().await,
            Err(e) => Err(e),
        };
        match ended {
            Ok(()) => {}
            Err(Refused::Closed) => return Produced::Cancelled,
            Err(Refused::Object(reason)) => {
                return Produced::Failed(
                    crate::encode::Error::Io(std::io::Error::other(reason)).into(),
                );
            }
        }
        Produced::Done(manifest::Source::Resources(ResourcesSource {
            api_server: self.api_server,
            api_server_version: self.discovered.server_version,
            discovery: self.discovered.mode,
            resource_count: results.len() as u64,
            objects,
            encrypted_objects,
            encrypted_resources: self.selection.encrypt_resources.clone(),
            recipients: self
                .recipients
                .iter()
                .flatten()
                .map(|r| r.to_string())
                .collect(),
            partial: !errors.is_empty(),
            errors,
        }))
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

/// Collects the objects of a live listing, for a sink that needs them all (diff).
#[derive(Default)]
struct Collect(Vec<Object>);

impl Sink for Collect {
    async fn put(&mut self, obj: Object) -> Result<bool, Refused> {
        self.0.push(obj);
        Ok(false)
    }
}

/// What [`list_all`] listed from the live cluster.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every object listed, cleaned as the export cleans them.
    pub objects: Vec<Object>,
    /// The keys (`plural.group`, or `plural`) of the resources listed, sorted: a resource not
    /// here was not asked for (excluded by the selection, or not served).
    pub resources: Vec<String>,
    /// The resources that could not be listed completely, with why (as index.json records
    /// them).
    pub errors: Vec<String>,
}

/// Every object of the resources `selection` picks, listed from the live cluster and cleaned
/// as the export cleans them, with the resources listed and those that could not be listed
/// completely.
pub async fn list_all(
    client: &kube::Client,
    selection: &Selection,
    page_size: u32,
) -> Result<Listing, Error> {
    let discovered = discover(client, selection).await?;
    let mut collected = Collect::default();
    let mut errors = Vec::new();
    for target in &discovered.targets {
        let result = export(client, target, selection, page_size, &mut collected).await?;
        errors.extend(result.error);
    }
    Ok(Listing {
        objects: collected.0,
        resources: discovered.targets.iter().map(|t| t.key.clone()).collect(),
        errors,
    })
}
