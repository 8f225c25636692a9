//! A test Kubernetes API server: in memory, plain HTTP on 127.0.0.1 with a free port, faithful
//! where kubectl and a backup tool depend on it (discovery, paging, writes, apply, errors).
//! Start one with [`KubeApi::start`]; it stops when the handle is dropped.
//!
//! ```text
//! let api = KubeApi::start(Seed::Standard(300));
//! let url = api.url(); // "http://127.0.0.1:PORT", for kube::Config or kubectl --server
//! api.fail_list("secrets", Fault::forbidden());
//! api.expire_continue_tokens();
//! api.list_order("namespaces", ListOrder::Reversed);
//! ```
//!
//! Faithful (checked against kubectl 1.32 and the real server's wire format):
//! - discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<g>`, `/apis/<g>/<v>` with verbs,
//!   scope, kind, singular and short names, categories and `<plural>/status` entries; aggregated
//!   discovery (`apidiscovery.k8s.io` v2 and v2beta1) by `Accept`, answered with the matching
//!   Content-Type; CRDs appear in both as soon as they are created and vanish when deleted;
//! - objects: uid, resourceVersion from one global counter (unchanged by no-op writes),
//!   creationTimestamp, generation (bumped on spec changes for Deployments, CRDs and custom
//!   resources), managedFields, the status subresource split, finalizers, generateName;
//! - LIST in a namespace, across namespaces and cluster-scoped, in etcd key order, with `limit`,
//!   opaque `continue` tokens served from a snapshot of the first page, `remainingItemCount`,
//!   label selectors and field selectors on the fields the real server indexes (`metadata.name`,
//!   `metadata.namespace`, Event `involvedObject.*`, ...); built-in list items carry no
//!   apiVersion/kind, as on a real server; an expired token answers `410 Expired` with a fresh
//!   inconsistent token in the Status metadata;
//! - `meta.k8s.io/v1` Table output for `kubectl get`;
//! - POST (409 AlreadyExists, 404 for a missing namespace, 500 when resourceVersion is set),
//!   PUT (409 Conflict on a stale resourceVersion), DELETE (Status Success, or the object
//!   when it is kept for finalizers), DELETE collection, `dryRun=All` everywhere;
//! - errors as `v1 Status` with the real reasons, codes and message wording.
//!
//! Approximated (documented where it lives):
//! - server-side apply (`patch` module): leaf-field ownership, conflicts with other managers
//!   unless `force`, removal of fields a manager stops applying; lists are atomic, where the real
//!   server merges associative lists (`containers` by `name`) and tracks `k:` keys;
//! - strategic merge patch: merge patch plus lists of objects merged by a guessed key (`name`,
//!   `containerPort`, `port`, ...) and kubectl's `$setElementOrder`/`$patch` directives; refused
//!   for custom resources (415) as on a real server;
//! - no watch (`watch` is left out of discovery verbs; watch requests get 405); OpenAPI v3 only
//!   as path and parameter documents without schemas (enough for kubectl to choose server-side
//!   field validation, which then checks nothing); protobuf bodies only for what `kubectl
//!   create namespace|configmap|secret|serviceaccount` sends, answers always JSON; no
//!   authentication or authorization (except injected 403s), no admission beyond namespace
//!   existence, little validation (names, Deployment selectors, CRD names);
//! - controllers: a namespace gets `default` ServiceAccount and `kube-root-ca.crt` at once;
//!   deleting a namespace or CRD removes its contents at once (no Terminating phase);
//! - `resourceVersion=0`/`NotOlderThan` lists are served like consistent lists (and honour
//!   `limit`); `resourceVersionMatch=Exact` works only for the current resourceVersion;
//! - custom resources of every served version are stored once and only relabelled.

#![allow(
    dead_code,
    reason = "test support: each test binary uses a different part of this module"
)]

mod client;
mod discovery;
mod faults;
mod format;
mod handlers;
mod openapi;
mod paging;
mod patch;
mod protobuf;
mod resources;
mod routes;
mod seed;
mod server;
mod status;
mod store;
mod strategy;
mod table;
mod writes;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};

// The public API for tests; a test binary that uses only part of it must not warn.
#[allow(
    unused_imports,
    reason = "re-exports for tests; each test binary uses some"
)]
pub use self::{
    client::RawResponse,
    faults::Fault,
    paging::ListOrder,
    seed::{SECRET_MARKER, SEED_NAMESPACES, SeedSummary, widget_crd},
    server::RequestRecord,
    status::ApiError,
};

use store::State;

/// What the server holds when it starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Seed {
    /// Only what every cluster has: `default`, `kube-system`, `kube-public`,
    /// `kube-node-lease`, each with its `default` ServiceAccount and `kube-root-ca.crt`.
    Empty,
    /// [`Seed::Empty`] plus [`KubeApi::seed_standard`] with this `n`.
    Standard(usize),
}

/// A running test API server; dropping it stops the server.
pub struct KubeApi {
    state: Arc<Mutex<State>>,
    server: server::Server,
    url: String,
    summary: Option<SeedSummary>,
}

impl KubeApi {
    /// Starts a server on 127.0.0.1 with a free port. Panics if no port can be bound (test
    /// support: there is nothing a test could do about it).
    pub fn start(seed: Seed) -> KubeApi {
        let mut state = State::new();
        writes::bootstrap(&mut state);
        let summary = match seed {
            Seed::Empty => None,
            Seed::Standard(n) => Some(seed::seed_standard(&mut state, n)),
        };
        state.log.clear();
        let state = Arc::new(Mutex::new(state));
        let server = server::spawn(Arc::clone(&state)).unwrap_or_else(|e| {
            panic!("kube_api: cannot start the test API server on 127.0.0.1: {e}")
        });
        let url = format!("http://{}", server.addr);
        KubeApi {
            state,
            server,
            url,
            summary,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// A kubeconfig for this server (context `lifeboat-test`, namespace `default`, no
    /// credentials), for kubectl or `kube::Config::from_custom_kubeconfig`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lifeboat-test\n  cluster:\n    server: {}\n\
             contexts:\n- name: lifeboat-test\n  context:\n    cluster: lifeboat-test\n    user: lifeboat-test\n    namespace: default\n\
             current-context: lifeboat-test\nusers:\n- name: lifeboat-test\n  user: {{}}\n",
            self.url
        )
    }

    /// Seeds the standard data set (see [`Seed::Standard`]); returns the store's new counts.
    pub fn seed_standard(&self, n: usize) -> SeedSummary {
        seed::seed_standard(&mut self.state(), n)
    }

    /// The summary of the seed given to [`KubeApi::start`], if it was [`Seed::Standard`].
    pub fn seed_summary(&self) -> Option<&SeedSummary> {
        self.summary.as_ref()
    }

    /// Counts of everything the store holds now, in the shape of a [`SeedSummary`].
    pub fn summary(&self) -> SeedSummary {
        seed::summarize(&self.state())
    }

    /// Creates an object through the same path as POST (namespace from the object, else
    /// `default`). CRDs start serving their resource at once.
    pub fn create(&self, obj: Value) -> Result<Value, ApiError> {
        writes::create_internal(&mut self.state(), obj, "lifeboat-test")
    }

    /// Also serves policy/v1 PodDisruptionBudgets and networking.k8s.io/v1 NetworkPolicies
    /// (for deploy/'s manifests; the default catalog leaves them out).
    pub fn serve_deploy_kinds(&self) {
        self.state().add_builtins(resources::deploy_kinds());
    }

    /// Replaces an object's status, as a controller would through `/status`.
    pub fn set_status(&self, obj: &Value, status: Value) -> Result<Value, ApiError> {
        writes::set_status_internal(&mut self.state(), obj, status)
    }

    fn resolve(state: &State, resource: &str) -> resources::ResourceDef {
        state.resolve(resource).unwrap_or_else(|| {
            let known: Vec<String> = state.defs().map(|d| d.key()).collect();
            panic!(
                "kube_api: no resource \"{resource}\"; served are {}",
                known.join(", ")
            )
        })
    }

    /// One object by resource (`configmaps`, `deployments.apps`, `widgets.example.com`, `cm`),
    /// namespace and name, with apiVersion and kind set.
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let state = self.state();
        let def = Self::resolve(&state, resource);
        state
            .get(&def, namespace.filter(|_| def.namespaced), name)
            .map(|o| {
                let mut o = o.clone();
                o["apiVersion"] = json!(def.api_version(def.preferred()));
                o["kind"] = json!(def.kind);
                o
            })
    }

    /// Every object of a resource across namespaces, in key order.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        let state = self.state();
        let def = Self::resolve(&state, resource);
        state.scan(&def, None).map(|(_, v)| (**v).clone()).collect()
    }

    /// How many objects a resource has.
    pub fn count(&self, resource: &str) -> usize {
        let state = self.state();
        let def = Self::resolve(&state, resource);
        state.count(&def)
    }

    /// The resourceVersion of the latest write.
    pub fn resource_version(&self) -> u64 {
        self.state().current_rv()
    }

    /// Expires every continue token issued so far: their next use gets `410 Expired`.
    pub fn expire_continue_tokens(&self) {
        self.state().paging.expire_all();
    }

    /// Makes each continue token expire once `lists` other LIST calls were answered after it
    /// was issued (`Some(0)`: every token is already expired when used); `None` turns this off.
    pub fn expire_continue_after(&self, lists: Option<u64>) {
        self.state().paging.set_ttl(lists);
    }

    /// Makes LIST of a resource (`namespaces`, `secrets`, ...) answer in `order` instead of
    /// etcd's key order, from the next list on.
    pub fn list_order(&self, resource: &str, order: ListOrder) {
        self.state().paging.set_order(resource, order);
    }

    /// Makes every continuation page of a resource's list start with the previous page's last
    /// object again (an object listed twice, across pages).
    pub fn repeat_across_pages(&self, resource: &str) {
        self.state().paging.set_repeat_last(resource, true);
    }

    /// How many LIST calls (pages included) the server answered.
    pub fn list_calls(&self) -> u64 {
        self.state().paging.list_calls()
    }

    /// Makes LIST of a resource (`secrets`, `deployments.apps`, ...) fail with `fault`.
    pub fn fail_list(&self, resource: &str, fault: Fault) {
        self.state().faults.push(faults::FaultRule {
            resource: resource.to_string(),
            fault,
        });
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Serves only legacy discovery from now on, like an API server older than 1.26.
    pub fn disable_aggregated_discovery(&self) {
        self.state().aggregated_discovery = false;
    }

    /// The requests answered so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().log.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state().log.clear();
    }

    /// Sends one raw HTTP request (`path` may carry a query) and returns the whole answer.
    /// Panics if the connection fails.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        client::request(self.addr(), method, path, headers, body)
            .unwrap_or_else(|e| panic!("kube_api: {method} {path} to {} failed: {e}", self.url))
    }

    /// `GET path` with `Accept: application/json`.
    pub fn get_raw(&self, path: &str) -> RawResponse {
        self.request("GET", path, &[("Accept", "application/json")], b"")
    }
}
