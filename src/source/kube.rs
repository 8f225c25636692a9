//! The Kubernetes resource source: discover every listable resource (aggregated discovery,
//! falling back to per-group discovery; preferred versions only; subresources skipped), then
//! LIST each one in pages (`limit`, `continue`), cleaning every object for re-apply and handing
//! it on as soon as its page arrives, so memory is bounded by a page, not by the cluster. A
//! `410 Gone` (expired continue token) restarts that resource's list, skipping objects up to the
//! last one written (lists come in etcd key order, so one key is all that must be remembered).
//! A resource that fails to list is recorded, and the others are still exported.

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::config;
use crate::store::chain;

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
        error: None,
    };
    // The key (`namespace/name`) of the last object written: after a restart, everything up to
    // it was already written.
    let mut last_written: Option<String> = None;
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(cfg.page_size);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = match api.list(&params).await {
            Ok(p) => p,
            Err(kube::Error::Api(s)) if s.code == 410 && result.restarts < 5 => {
                result.restarts += 1;
                tracing::info!(resource = %target.key, restarts = result.restarts, "Continue token expired (410 Gone): restarting this resource's list.");
                token = None;
                continue;
            }
            Err(e) => {
                result.error = Some(format!("{}: {}", target.key, chain(&e)));
                tracing::warn!(resource = %target.key, error = %chain(&e), "Listing failed; the export goes on without the rest of this resource.");
                return Ok(result);
            }
        };
        if token.is_none() {
            result.resource_version = page.metadata.resource_version.clone();
        }
        for obj in page.items {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let namespace = obj.metadata.namespace.clone();
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
            let order_key = format!("{}/{name}", namespace.as_deref().unwrap_or(""));
            if last_written
                .as_ref()
                .is_some_and(|last| order_key.as_str() <= last.as_str())
            {
                continue;
            }
            let yaml = match serde_json::to_value(&obj)
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
            last_written = Some(order_key);
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(next) => token = Some(next),
            None => return Ok(result),
        }
    }
}
