//! The apply sink: writes a backup's selected objects into a live cluster with server-side
//! apply (field manager `lifeboat`), phase by phase as [`rules`](super::rules) orders them,
//! waiting after the CustomResourceDefinitions until they are Established. `--dry-run` sends
//! every write with `dryRun=All`: the API server validates and admits exactly what would
//! happen, and stores nothing. A live object that exists is left alone (`--existing skip`,
//! reported with how it differs) or applied over (`--existing update`, a field-manager conflict
//! reported unless `--force-conflicts`). One failed object never stops the others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope};
use serde::Serialize;
use serde_json::Value;

use super::diff::{differing_fields, summarize_fields};
use super::rules::{Decision, NamespaceMapping, Phase, Removed, Restored, Skip, decide};
use super::select::{ObjectRef, Selection};
use tokio_util::sync::CancellationToken;

use crate::objects::{Object, ResourceType};
use crate::progress::Progress;

/// The field manager lifeboat applies as: `kubectl get -o yaml --show-managed-fields` shows
/// which fields a restore set.
pub const FIELD_MANAGER: &str = "lifeboat";

/// How long to wait for a restored CustomResourceDefinition to become Established.
pub const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do with a live object that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Existing {
    /// Leave it alone and report how it differs.
    #[default]
    Skip,
    /// Apply the backup's version over it.
    Update,
}

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Which objects.
    pub selection: Selection,
    /// Resource keys never restored (config `restore.skip_resources`).
    pub skip_resources: Vec<String>,
    /// Namespace renames.
    pub mapping: NamespaceMapping,
    /// Existing objects.
    pub existing: Existing,
    /// Send everything with dryRun=All.
    pub dry_run: bool,
    /// Take over fields another manager owns (server-side apply `force`).
    pub force_conflicts: bool,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// It did not exist and was created (or would be, in a dry run).
    Created,
    /// It existed and the backup's version was applied over it.
    Updated {
        /// The fields that differed before.
        fields: Vec<String>,
        /// Fields that still differ after the apply: set since the backup by another field
        /// manager, absent from the backup, so server-side apply leaves them.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        still_differs: Vec<String>,
    },
    /// It existed and the apply changed nothing.
    Unchanged {
        /// As for [`Outcome::Updated`].
        #[serde(skip_serializing_if = "Vec::is_empty")]
        still_differs: Vec<String>,
    },
    /// It existed and was not touched (`--existing skip`).
    LeftAlone {
        /// The fields in which the live object differs from the backup (empty: it matches).
        fields: Vec<String>,
    },
    /// Not applied, on purpose.
    Skipped {
        /// Why.
        #[serde(flatten)]
        skip: Skip,
    },
    /// An encrypted object that could not be read (no identity given).
    Encrypted,
    /// A dry run could not ask the API server about it: its namespace or its definition is
    /// created by this restore, which a dry run does not store.
    Unchecked {
        /// What it waits for.
        reason: String,
    },
    /// Another field manager owns fields the backup sets; not forced.
    Conflict {
        /// The API server's message.
        reason: String,
    },
    /// The API server refused it, or it could not be sent.
    Failed {
        /// Why, in the API server's words where it gave any.
        reason: String,
    },
}

impl Outcome {
    /// Whether this outcome counts as a failure for the exit code.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Conflict { .. } | Outcome::Failed { .. })
    }

    /// A short name for summaries: created, updated, unchanged, left-alone, skipped, ...
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated { .. } => "updated",
            Outcome::Unchanged { .. } => "unchanged",
            Outcome::LeftAlone { .. } => "left-alone",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Encrypted => "encrypted",
            Outcome::Unchecked { .. } => "unchecked",
            Outcome::Conflict { .. } => "conflict",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// One object's result.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectResult {
    /// The object, as named in the backup.
    pub object: ObjectRef,
    /// Its resource key.
    pub resource: String,
    /// The phase it was applied in, if it was not skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Fields removed before the apply, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<Removed>,
}

/// Everything the apply did, in the order it did it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Whether nothing was stored (dryRun=All).
    pub dry_run: bool,
    /// Whether the run was interrupted (SIGINT, SIGTERM) before every object was applied: the
    /// objects listed are those handled so far.
    pub interrupted: bool,
    /// Per object.
    pub objects: Vec<ObjectResult>,
}

impl Report {
    /// Per resource key: outcome label → count.
    pub fn summary(&self) -> BTreeMap<String, BTreeMap<&'static str, u64>> {
        let mut out: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
        for r in &self.objects {
            *out.entry(r.resource.clone())
                .or_default()
                .entry(r.outcome.label())
                .or_default() += 1;
        }
        out
    }

    /// How many objects failed (refused or in conflict).
    pub fn failures(&self) -> usize {
        self.objects
            .iter()
            .filter(|r| r.outcome.is_failure())
            .count()
    }
}

/// One object read from a backup, or the fact that it is encrypted and could not be read.
#[derive(Debug, Clone)]
pub enum Input {
    /// Readable, cleaned.
    Object(Object),
    /// Stored encrypted and no identity was given.
    Encrypted {
        /// Its archive path.
        path: String,
    },
    /// Its YAML could not be read.
    Unreadable {
        /// Its archive path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Who an object is, from its archive path alone (its kind is not in the path: the resource
/// key stands in for it).
fn ref_from_path(path: &str) -> (String, ObjectRef) {
    let (namespace, key, name) =
        crate::objects::identity_of(path).unwrap_or((None, String::new(), path));
    let group = key
        .split_once('.')
        .map(|(_, g)| g.to_string())
        .unwrap_or_default();
    (
        key.clone(),
        ObjectRef {
            group,
            kind: key,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        },
    )
}

/// Applies `inputs` to the cluster behind `client`, as `request` says, stopping between two
/// objects when `interrupt` is cancelled. Returns the report;
/// fails as a whole only when the cluster cannot be reached at all.
pub async fn apply(
    client: &kube::Client,
    inputs: Vec<Input>,
    request: &Request,
    progress: &Progress,
    interrupt: &CancellationToken,
) -> Report {
    let mut report = Report {
        dry_run: request.dry_run,
        ..Report::default()
    };
    // First pass: what comes back at all, so an object whose controller comes back with it is
    // left to the controller.
    let mut restored = Restored::default();
    let mut selected = Vec::new();
    for input in inputs {
        match input {
            Input::Object(Object {
                resource, value, ..
            }) => {
                let resource = resource.key();
                if !request.selection.accepts(&resource, &value) {
                    continue;
                }
                if let Some(r) = ObjectRef::of(&value) {
                    restored.add(&r);
                }
                selected.push((resource, value));
            }
            Input::Encrypted { path } | Input::Unreadable { path, .. }
                if !selected_by_path(&request.selection, &path) => {}
            Input::Encrypted { path } => {
                let (resource, object) = ref_from_path(&path);
                report.objects.push(ObjectResult {
                    object,
                    resource,
                    phase: None,
                    outcome: Outcome::Encrypted,
                    removed: Vec::new(),
                });
            }
            Input::Unreadable { path, reason } => {
                let (resource, object) = ref_from_path(&path);
                report.objects.push(ObjectResult {
                    object,
                    resource,
                    phase: None,
                    outcome: Outcome::Failed {
                        reason: format!("{path} in the backup cannot be read: {reason}"),
                    },
                    removed: Vec::new(),
                });
            }
        }
    }
    let mut phases: BTreeMap<Phase, Vec<Planned>> = BTreeMap::new();
    for (resource, value) in selected {
        let r = ObjectRef::of(&value).expect("selected objects have a reference");
        match decide(
            &resource,
            &value,
            &restored,
            &request.skip_resources,
            &request.mapping,
        ) {
            Decision::Skip(skip) => report.objects.push(ObjectResult {
                object: r,
                resource,
                phase: None,
                outcome: Outcome::Skipped { skip },
                removed: Vec::new(),
            }),
            Decision::Apply {
                phase,
                object,
                removed,
            } => phases
                .entry(phase)
                .or_default()
                .push((resource, r, object, removed)),
        }
    }
    progress.set_total(phases.values().map(|v| v.len() as u64).sum());

    let mut resolver = Resolver::new(client.clone());
    // In a dry run, what this restore would create but does not store.
    let mut pending_namespaces: HashSet<String> = HashSet::new();
    let mut pending_kinds: HashSet<(String, String)> = HashSet::new();
    for (phase, mut objects) in phases {
        objects.sort_by(|a, b| a.1.cmp(&b.1));
        let mut established = Vec::new();
        for (resource, r, object, removed) in objects {
            if interrupt.is_cancelled() {
                report.interrupted = true;
                return report;
            }
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
            let group = object["apiVersion"]
                .as_str()
                .and_then(|v| v.split_once('/'))
                .map_or("", |(g, _)| g);
            let kind = object["kind"].as_str().unwrap_or_default();
            let outcome = if pending_namespaces.contains(namespace) {
                Outcome::Unchecked {
                    reason: format!(
                        "namespace {namespace} does not exist yet; this restore creates it, and a dry run does not"
                    ),
                }
            } else if pending_kinds.contains(&(group.to_string(), kind.to_string())) {
                Outcome::Unchecked {
                    reason: format!(
                        "{kind} is defined by a CustomResourceDefinition this restore creates, and a dry run does not"
                    ),
                }
            } else {
                apply_one(&mut resolver, &object, &removed, request).await
            };
            if request.dry_run && outcome == Outcome::Created {
                match phase {
                    Phase::Namespaces => {
                        pending_namespaces.insert(
                            object["metadata"]["name"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        );
                    }
                    Phase::Definitions => {
                        let spec = &object["spec"];
                        pending_kinds.insert((
                            spec["group"].as_str().unwrap_or_default().to_string(),
                            spec["names"]["kind"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        ));
                    }
                    _ => {}
                }
            }
            if phase == Phase::Definitions
                && matches!(outcome, Outcome::Created | Outcome::Updated { .. })
            {
                established.push(r.name.clone());
            }
            progress.advance(1);
            tracing::debug!(object = %r, outcome = outcome.label(), "Object applied.");
            report.objects.push(ObjectResult {
                object: r,
                resource,
                phase: Some(phase),
                outcome,
                removed,
            });
        }
        if phase == Phase::Definitions && !request.dry_run {
            for name in established {
                if let Err(reason) = wait_established(client, &name).await {
                    tracing::warn!(crd = %name, reason, "A restored CustomResourceDefinition is not Established; its custom resources will likely fail.");
                }
            }
            // New kinds exist now: forget what discovery said before.
            resolver.forget_missing();
        }
    }
    report
}

fn selected_by_path(selection: &Selection, path: &str) -> bool {
    crate::objects::identity_of(path)
        .is_some_and(|(namespace, key, name)| selection.accepts_identity(&key, namespace, name))
}

/// An object to apply: its resource key, who it is, what is sent, and what was removed.
type Planned = (String, ObjectRef, Value, Vec<Removed>);

/// A kind's resource and whether it is namespaced, or why the API server does not serve it.
type Resolved = Result<(ApiResource, bool), String>;

/// Finds the resource (plural, scope) of each kind, asking the API server once per kind.
struct Resolver {
    client: kube::Client,
    known: HashMap<(String, String, String), Resolved>,
}

impl Resolver {
    fn new(client: kube::Client) -> Self {
        Resolver {
            client,
            known: HashMap::new(),
        }
    }

    async fn resolve(
        &mut self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), String> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        let key = (group.clone(), version.clone(), kind.to_string());
        if let Some(found) = self.known.get(&key) {
            return found.clone();
        }
        let gvk = GroupVersionKind::gvk(&group, &version, kind);
        let found = match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((ar, caps)) => Ok((ar, caps.scope == Scope::Namespaced)),
            Err(e) => Err(format!(
                "the API server does not serve {kind} in {api_version} ({}): restore its CustomResourceDefinition first (with --resource, add --resource customresourcedefinitions.apiextensions.k8s.io), or install the API service that provides it",
                api_reason(&e)
            )),
        };
        self.known.insert(key, found.clone());
        found
    }

    fn forget_missing(&mut self) {
        self.known.retain(|_, v| v.is_ok());
    }
}

async fn apply_one(
    resolver: &mut Resolver,
    object: &Value,
    removed: &[Removed],
    request: &Request,
) -> Outcome {
    let failed = |reason: String| Outcome::Failed { reason };
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (ar, namespaced) = match resolver.resolve(api_version, kind).await {
        Ok(found) => found,
        Err(reason) => return failed(reason),
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match (namespaced, object["metadata"]["namespace"].as_str()) {
        (true, Some(ns)) => Api::namespaced_with(resolver.client.clone(), ns, &ar),
        (true, None) => return failed("a namespaced object without metadata.namespace".into()),
        (false, _) => Api::all_with(resolver.client.clone(), &ar),
    };
    let live = match api.get_opt(name).await {
        Ok(live) => live,
        Err(e) => return failed(api_reason(&e)),
    };
    let resource = ResourceType::of(&ar, namespaced);
    // How a live object differs from what is sent, leaving out server-set metadata and the
    // fields the restore removed on purpose (a Service's cluster IP is not a difference).
    let differences = |live: &DynamicObject| {
        let live = serde_json::to_value(live).unwrap_or(Value::Null);
        let live = crate::objects::clean(live, &resource);
        differing_fields(&live, object)
            .into_iter()
            .filter(|f| {
                !f.starts_with("metadata.")
                    || f.starts_with("metadata.labels")
                    || f.starts_with("metadata.annotations")
            })
            .filter(|f| {
                !removed.iter().any(|r| {
                    f == &r.field
                        || f.strip_prefix(r.field.as_str())
                            .is_some_and(|rest| rest.starts_with('.'))
                })
            })
            .collect::<Vec<_>>()
    };
    let differs = live.as_ref().map(differences);
    if let (Some(fields), Existing::Skip) = (&differs, request.existing) {
        return Outcome::LeftAlone {
            fields: fields.clone(),
        };
    }
    let mut params = PatchParams::apply(FIELD_MANAGER);
    if request.dry_run {
        params = params.dry_run();
    }
    if request.force_conflicts {
        params = params.force();
    }
    let before = live
        .as_ref()
        .and_then(|l| l.metadata.resource_version.clone());
    match api.patch(name, &params, &Patch::Apply(object)).await {
        Ok(applied) => {
            let still_differs = differences(&applied);
            match (before, differs) {
                (None, _) => Outcome::Created,
                (Some(before), Some(fields))
                    if applied.metadata.resource_version.as_deref() == Some(before.as_str())
                        || fields.is_empty() =>
                {
                    Outcome::Unchanged { still_differs }
                }
                (Some(_), fields) => Outcome::Updated {
                    fields: fields.unwrap_or_default(),
                    still_differs,
                },
            }
        }
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "Conflict" => Outcome::Conflict {
            reason: format!(
                "{}; rerun with --force-conflicts to take these fields over, or leave them to their owner",
                s.message
            ),
        },
        Err(e) => failed(api_reason(&e)),
    }
}

fn api_reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => crate::error::chain(other),
    }
}

/// Waits until the CustomResourceDefinition `name` reports Established=True.
async fn wait_established(client: &kube::Client, name: &str) -> Result<(), String> {
    let ar = ApiResource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        plural: "customresourcedefinitions".into(),
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let deadline = tokio::time::Instant::now() + ESTABLISHED_TIMEOUT;
    loop {
        let crd = api.get(name).await.map_err(|e| api_reason(&e))?;
        let established = crd
            .data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c["type"].as_str() == Some("Established")
                        && c["status"].as_str() == Some("True")
                })
            });
        if established {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not Established after {ESTABLISHED_TIMEOUT:?}; check `kubectl get crd {name} -o yaml` for its conditions"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A summary line per resource: `deployments.apps: 3 created, 1 left-alone`.
pub fn summary_lines(report: &Report) -> Vec<String> {
    report
        .summary()
        .into_iter()
        .map(|(resource, counts)| {
            let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
            format!("{resource}: {}", parts.join(", "))
        })
        .collect()
}

fn still_differ(fields: &[String]) -> String {
    if fields.is_empty() {
        return String::new();
    }
    format!(
        "; still differs from the backup in {}: fields another field manager set since the backup, which server-side apply leaves in place (remove them by hand, e.g. kubectl edit)",
        summarize_fields(fields, 3)
    )
}

/// One line describing an object's result, for the text report.
pub fn describe(r: &ObjectResult) -> String {
    let what = match &r.outcome {
        Outcome::Created => "created".to_string(),
        Outcome::Updated {
            fields,
            still_differs,
        } => format!(
            "updated ({}){}",
            summarize_fields(fields, 3),
            still_differ(still_differs)
        ),
        Outcome::Unchanged { still_differs } => {
            format!("unchanged{}", still_differ(still_differs))
        }
        Outcome::LeftAlone { fields } if fields.is_empty() => {
            "exists, left alone (matches the backup)".into()
        }
        Outcome::LeftAlone { fields } => format!(
            "exists, left alone; differs in {} (--existing update applies the backup's version)",
            summarize_fields(fields, 3)
        ),
        Outcome::Skipped { skip } => format!("skipped: {skip}"),
        Outcome::Encrypted => "skipped: stored encrypted; give --identity to restore it".into(),
        Outcome::Unchecked { reason } => format!("not checked: {reason}"),
        Outcome::Conflict { reason } => format!("conflict: {reason}"),
        Outcome::Failed { reason } => format!("failed: {reason}"),
    };
    format!("{}: {what}", r.object)
}
