//! The API server's registry as etcd stores it, read straight out of a snapshot file: every
//! etcd snapshot is a selective backup. The pipeline reads like the data's path:
//!
//! - [`bbolt`]: the snapshot's bbolt file, read-only, in bounded memory;
//! - [`mvcc`]: etcd's revisions on top of it: each key's newest value at a revision,
//!   tombstones honoured, compaction checked;
//! - [`layout`]: which resource, namespace and name a key holds (pure);
//! - [`encryption`]: encryption at rest, as the API server's EncryptionConfiguration says;
//! - [`decode`]: the stored value (protobuf, JSON, CBOR) to the object's JSON form (pure);
//! - [`read`] (here): all of it, yielding the same [`Input`]s an export's archive yields, so
//!   restore to a directory, apply and diff work the same whichever kind of backup it was.

pub mod bbolt;
pub mod decode;
pub mod encryption;
pub mod layout;
pub mod mvcc;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::apply::live::Input;
use crate::apply::select::Selection;
use crate::objects::{Object, ResourceType, object_path, resource_key};
use layout::{Key, Location};

/// How to read a snapshot.
#[derive(Debug, Clone)]
pub struct Options {
    /// kube-apiserver's `--etcd-prefix` (normally [`layout::DEFAULT_PREFIX`]).
    pub prefix: String,
    /// The state at this revision instead of the newest.
    pub revision: Option<i64>,
    /// The API server's EncryptionConfiguration, to read values encrypted at rest.
    pub encryption: Option<Arc<encryption::EncryptionConfig>>,
    /// Which objects to read. Labels are not known before a value is decoded, so the label
    /// selector is left to the consumer; every other rule prunes keys before their values are
    /// read.
    pub selection: Selection,
}

/// What a read found, besides the objects.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// The revision read.
    pub revision: i64,
    /// The snapshot's newest revision.
    pub current: i64,
    /// The revision compacted up to (older states are gone), if any.
    pub compacted: Option<i64>,
    /// Objects yielded readable.
    pub objects: u64,
    /// Selected keys whose newest event at the revision is a deletion.
    pub deleted: u64,
    /// Objects that could not be read (yielded as [`Input::Unreadable`], with why).
    pub unreadable: u64,
    /// Of those, values encrypted at rest that no EncryptionConfiguration was given for, by
    /// provider.
    pub encrypted: BTreeMap<String, u64>,
    /// Keys that are not objects (allocation ranges, master leases, keys outside the
    /// prefix), by what they are: skipped.
    pub not_objects: BTreeMap<String, u64>,
    /// Warnings about objects that were read (fields a newer Kubernetes added, custom
    /// resources without their CRD in the snapshot).
    pub warnings: Vec<String>,
}

/// Why a snapshot could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a readable bbolt file.
    #[error("cannot read {path} as an etcd snapshot")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: bbolt::Error,
    },
    /// The MVCC store in it cannot be walked.
    #[error("cannot read the revisions of etcd snapshot {path}")]
    Walk {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: mvcc::Error,
    },
}

/// Reads the objects of the snapshot at `path`, calling `each` for every selected one (any
/// order); `each` may stop the read early with `ControlFlow::Break`. Blocking: run it on a
/// blocking thread.
pub fn read(
    path: &Path,
    options: &Options,
    mut each: impl FnMut(Input) -> ControlFlow<()>,
) -> Result<Report, Error> {
    let db = bbolt::Db::open(path).map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let walk_error = |source| Error::Walk {
        path: path.to_path_buf(),
        source,
    };
    let revisions = mvcc::revisions(&db).map_err(walk_error)?;
    let mut report = Report {
        current: revisions.current,
        compacted: revisions.compacted,
        ..Report::default()
    };
    let mut reader = Reader::new(options);
    let mut not_objects: BTreeMap<String, u64> = BTreeMap::new();
    // Every CRD in the snapshot, selected or not: custom resources are checked against them.
    let mut crds: BTreeSet<String> = BTreeSet::new();
    let wanted = |key: &[u8]| -> bool {
        let Ok(key) = std::str::from_utf8(key) else {
            *not_objects
                .entry("keys that are not UTF-8".into())
                .or_default() += 1;
            return false;
        };
        match layout::parse(key, &options.prefix) {
            Key::Object(at) => {
                if at.group == Some("apiextensions.k8s.io")
                    && at.plural == "customresourcedefinitions"
                {
                    crds.insert(at.name.to_string());
                }
                selected(&options.selection, &at)
            }
            Key::NotObject(what) => {
                *not_objects.entry(what.to_string()).or_default() += 1;
                false
            }
            Key::Foreign => {
                *not_objects
                    .entry(format!(
                        "keys outside {} or of no object's shape",
                        options.prefix
                    ))
                    .or_default() += 1;
                false
            }
        }
    };
    let walked = mvcc::state_at(&db, options.revision, wanted, |kv| {
        match each(reader.input(&kv.key, &kv.value)) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(Stop),
        }
    });
    let walk = match walked {
        Ok(walk) => walk,
        Err(mvcc::WalkError::Stopped(Stop)) => reader.stopped_walk(),
        Err(mvcc::WalkError::Read(source)) => return Err(walk_error(source)),
    };
    report.revision = walk.revision;
    report.deleted = walk.deleted;
    report.not_objects = not_objects;
    reader.finish(&mut report, &crds);
    Ok(report)
}

/// `each` asked to stop.
#[derive(Debug)]
struct Stop;

/// Whether the object at `at` may be selected, from its key alone (the same rules as
/// [`Selection::accepts_identity`]); a built-in resource this version does not know is kept,
/// since its group is only known once its value is read.
fn selected(selection: &Selection, at: &Location) -> bool {
    let group = match at.group {
        Some(group) => group,
        None => match layout::builtin_group(at.plural) {
            Some(group) => group,
            None => return true,
        },
    };
    selection.accepts_identity(&resource_key(group, at.plural), at.namespace, at.name)
}

/// Turns key–value pairs into inputs, remembering resource types and what it saw.
struct Reader<'a> {
    options: &'a Options,
    types: HashMap<(String, String, String, bool), Arc<ResourceType>>,
    objects: u64,
    unreadable: u64,
    encrypted: BTreeMap<String, u64>,
    warnings: Vec<String>,
    /// Custom resources read (`plural.group` → count).
    custom: BTreeMap<String, u64>,
}

impl<'a> Reader<'a> {
    fn new(options: &'a Options) -> Reader<'a> {
        Reader {
            options,
            types: HashMap::new(),
            objects: 0,
            unreadable: 0,
            encrypted: BTreeMap::new(),
            warnings: Vec::new(),
            custom: BTreeMap::new(),
        }
    }

    fn stopped_walk(&self) -> mvcc::Walk {
        mvcc::Walk::default()
    }

    /// One key's value as an input: an object, or unreadable with why.
    fn input(&mut self, key: &[u8], value: &[u8]) -> Input {
        let key_text = String::from_utf8_lossy(key);
        let Key::Object(at) = layout::parse(&key_text, &self.options.prefix) else {
            // `wanted` let only object keys through.
            unreachable!("a key that is not an object's was selected: {key_text}");
        };
        let group_guess = at
            .group
            .or_else(|| layout::builtin_group(at.plural))
            .unwrap_or("");
        let unreadable = |reason: String| Input::Unreadable {
            path: object_path(at.namespace, group_guess, at.plural, at.name, false),
            reason,
        };
        let plain = match &self.options.encryption {
            Some(config) => {
                let resource = encryption::GroupResource {
                    group: group_guess.to_string(),
                    resource: at.plural.to_string(),
                };
                match config.decrypt(&resource, key, value) {
                    Ok(plain) => plain,
                    Err(e) => {
                        self.unreadable += 1;
                        return unreadable(crate::error::chain(&e));
                    }
                }
            }
            None => {
                if let Some((provider, key_name)) = encryption::encrypted_with(value) {
                    self.unreadable += 1;
                    *self.encrypted.entry(provider.to_string()).or_default() += 1;
                    return unreadable(format!(
                        "encrypted at rest with {provider} key {key_name:?}: pass --encryption-config with the API server's EncryptionConfiguration to read it"
                    ));
                }
                std::borrow::Cow::Borrowed(value)
            }
        };
        let decoded = match decode::decode(&plain) {
            Ok(decoded) => decoded,
            Err(e) => {
                self.unreadable += 1;
                return unreadable(format!(
                    "its value cannot be decoded: {}",
                    crate::error::chain(&e)
                ));
            }
        };
        for w in decoded.warnings {
            self.warnings.push(format!("{key_text}: {w}"));
        }
        let mut value = decoded.value;
        let (group, version) = match value.get("apiVersion").and_then(Value::as_str) {
            Some(av) => match av.split_once('/') {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (String::new(), av.to_string()),
            },
            None => {
                self.unreadable += 1;
                return unreadable("its value has no apiVersion".into());
            }
        };
        let Some(kind) = value
            .get("kind")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            self.unreadable += 1;
            return unreadable("its value has no kind".into());
        };
        // The key is who the object is; the value's metadata says the same unless it was
        // written by hand, and the key wins.
        if let Some(meta) = value
            .as_object_mut()
            .map(|o| {
                o.entry("metadata")
                    .or_insert_with(|| Value::Object(Default::default()))
            })
            .and_then(Value::as_object_mut)
        {
            meta.insert("name".into(), Value::String(at.name.to_string()));
            match at.namespace {
                Some(ns) => meta.insert("namespace".into(), Value::String(ns.to_string())),
                None => meta.remove("namespace"),
            };
        }
        let namespaced = at.namespace.is_some();
        let plural = at.plural.to_string();
        let resource = self
            .types
            .entry((group.clone(), version.clone(), kind.clone(), namespaced))
            .or_insert_with(|| {
                Arc::new(ResourceType {
                    group: group.clone(),
                    version,
                    kind,
                    plural: plural.clone(),
                    namespaced,
                })
            })
            .clone();
        if at.group.is_some()
            && group != "apiextensions.k8s.io"
            && group != "apiregistration.k8s.io"
        {
            *self
                .custom
                .entry(resource_key(&group, &plural))
                .or_default() += 1;
        }
        self.objects += 1;
        Input::Object(Object::new(resource, value))
    }

    fn finish(self, report: &mut Report, crds: &BTreeSet<String>) {
        report.objects = self.objects;
        report.unreadable = self.unreadable;
        report.encrypted = self.encrypted;
        report.warnings = self.warnings;
        for (key, n) in self.custom {
            if !crds.contains(&key) {
                report.warnings.push(format!(
                    "{n} objects of {key} have no CustomResourceDefinition {key} in this snapshot (it was deleted): they are read as stored, and applying them needs the CRD first"
                ));
            }
        }
    }
}
