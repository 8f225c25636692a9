//! The in-memory state behind the server: objects per resource in key order (`namespace/name`,
//! like etcd's keys), the global resourceVersion counter, the catalog of served resources
//! (built-ins plus one per established CRD), paging snapshots, faults and the request log.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::faults::FaultRule;
use super::paging::Paging;
use super::resources::{self, ResourceDef};
use super::server::RequestRecord;

/// Everything the server knows; guarded by one mutex, so each request sees a consistent store.
pub(super) struct State {
    rv: u64,
    serial: u64,
    objects: BTreeMap<String, BTreeMap<String, Arc<Value>>>,
    builtins: Vec<ResourceDef>,
    /// Custom resources, by the name of the CRD that serves them.
    crds: BTreeMap<String, ResourceDef>,
    pub paging: Paging,
    pub faults: Vec<FaultRule>,
    pub log: Vec<RequestRecord>,
    /// Whether requests are recorded in `log`.
    pub record: bool,
    /// Whether /api and /apis answer aggregated discovery when asked.
    pub aggregated_discovery: bool,
}

/// The storage key of an object: `namespace/name`, or `name` for cluster-scoped objects.
pub(super) fn object_key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

impl State {
    pub(super) fn new() -> Self {
        State {
            rv: 1,
            serial: 0,
            objects: BTreeMap::new(),
            builtins: resources::builtins(),
            crds: BTreeMap::new(),
            paging: Paging::default(),
            faults: Vec::new(),
            log: Vec::new(),
            record: true,
            aggregated_discovery: true,
        }
    }

    /// Serves more built-in resources from now on.
    pub(super) fn add_builtins(&mut self, defs: Vec<ResourceDef>) {
        self.builtins.extend(defs);
    }

    /// Every served resource: built-ins first, then custom resources by CRD name.
    pub(super) fn defs(&self) -> impl Iterator<Item = &ResourceDef> {
        self.builtins.iter().chain(self.crds.values())
    }

    /// The resource served at `group/version` under `plural`.
    pub(super) fn find(&self, group: &str, version: &str, plural: &str) -> Option<ResourceDef> {
        self.defs()
            .find(|d| {
                d.group == group && d.plural == plural && d.versions.iter().any(|v| v == version)
            })
            .cloned()
    }

    /// The resource for an object's `apiVersion` and `kind`, and the version asked for.
    pub(super) fn find_kind(&self, api_version: &str, kind: &str) -> Option<(ResourceDef, String)> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.defs()
            .find(|d| d.group == group && d.kind == kind && d.versions.iter().any(|v| v == version))
            .map(|d| (d.clone(), version.to_string()))
    }

    /// The resource a test names: `configmaps`, `deployments.apps`, `widgets.example.com`, `cm`.
    pub(super) fn resolve(&self, spec: &str) -> Option<ResourceDef> {
        self.defs()
            .find(|d| d.key() == spec)
            .or_else(|| self.defs().find(|d| d.answers_to(spec)))
            .cloned()
    }

    /// API groups in discovery order (core excluded), each with its versions, preferred first.
    pub(super) fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for d in self.defs().filter(|d| !d.group.is_empty()) {
            let entry = match out.iter_mut().find(|(g, _)| *g == d.group) {
                Some(e) => e,
                None => {
                    out.push((d.group.clone(), Vec::new()));
                    out.last_mut().expect("just pushed")
                }
            };
            for v in &d.versions {
                if !entry.1.contains(v) {
                    entry.1.push(v.clone());
                }
            }
        }
        for (_, versions) in &mut out {
            versions.sort_by(|a, b| resources::version_order(a, b));
        }
        out
    }

    /// Takes the next resourceVersion.
    pub(super) fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// The resourceVersion of the latest write.
    pub(super) fn current_rv(&self) -> u64 {
        self.rv
    }

    /// A fresh number for UIDs and generated names.
    pub(super) fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    pub(super) fn get(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&Value> {
        self.objects
            .get(&def.key())?
            .get(&object_key(namespace, name))
            .map(|v| &**v)
    }

    /// Stores an object under its metadata's namespace and name.
    pub(super) fn put(&mut self, def: &ResourceDef, obj: Value) {
        let meta = &obj["metadata"];
        let key = object_key(
            meta["namespace"].as_str().filter(|_| def.namespaced),
            meta["name"].as_str().unwrap_or_default(),
        );
        self.objects
            .entry(def.key())
            .or_default()
            .insert(key, Arc::new(obj));
    }

    pub(super) fn remove(
        &mut self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let removed = self
            .objects
            .get_mut(&def.key())?
            .remove(&object_key(namespace, name))?;
        Some(Arc::unwrap_or_clone(removed))
    }

    /// The objects of a resource in key order, in one namespace or all.
    pub(super) fn scan<'a>(
        &'a self,
        def: &ResourceDef,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a Arc<Value>)> + 'a {
        self.objects
            .get(&def.key())
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |(k, _)| {
                namespace.is_none_or(|ns| k.split_once('/').is_some_and(|(n, _)| n == ns))
            })
    }

    /// How many objects a resource has.
    pub(super) fn count(&self, def: &ResourceDef) -> usize {
        self.objects.get(&def.key()).map_or(0, BTreeMap::len)
    }

    /// Starts serving a CRD's custom resource.
    pub(super) fn register_crd(&mut self, crd_name: &str, def: ResourceDef) {
        self.crds.insert(crd_name.to_string(), def);
    }

    /// Stops serving a CRD's custom resource and drops its objects, as the real server's
    /// CRD finalizer does.
    pub(super) fn unregister_crd(&mut self, crd_name: &str) {
        if let Some(def) = self.crds.remove(crd_name) {
            self.objects.remove(&def.key());
        }
    }

    /// Removes every namespaced object in a namespace (the namespace controller's job).
    pub(super) fn purge_namespace(&mut self, namespace: &str) {
        let prefix = format!("{namespace}/");
        for objects in self.objects.values_mut() {
            objects.retain(|k, _| !k.starts_with(&prefix));
        }
    }
}
