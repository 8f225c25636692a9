//! Reads kubeadm's etcd static pod manifest (`/etc/kubernetes/manifests/etcd.yaml`) and rewrites
//! it so etcd starts on a restored data directory. Pure: text in, text out. Every edit is made in
//! place on the original text, so comments, key order, quoting and indentation are kept.
//!
//! # What a rewrite changes
//!
//! Given the new host directory `N` holding the restored state and a cluster token `T`:
//!
//! - the data volume's `hostPath.path` becomes `N`;
//! - `--data-dir` and the data volume's `mountPath` follow the rule below;
//! - `--initial-cluster-token` becomes `T`; when it is absent it is added as the item right after
//!   `--data-dir`, in the same form (`--flag=value` or `--flag` `value`), quoting and indentation;
//! - `--initial-cluster-state` becomes `new` when it is present and [`Rewrite::set_cluster_state_new`]
//!   is set (an absent flag already means `new`, so it is not added).
//!
//! Nothing else in the file changes. [`rewrite`] checks this itself before returning: it re-parses
//! the new text and compares the whole document with the original, allowing only the edits above.
//!
//! # `--data-dir`, `mountPath` and `hostPath`
//!
//! kubeadm renders the same path three times: `--data-dir=/var/lib/etcd`, a `volumeMount` at
//! `/var/lib/etcd` and a `hostPath` volume at `/var/lib/etcd` (minikube: `/var/lib/minikube/etcd`).
//! Only `hostPath` has to change for etcd to see the restored state. We still change all three when
//! the in-container path mirrors the host path, as kubeadm writes it, because:
//!
//! - the result is exactly what kubeadm renders for `etcd.local.dataDir: N`, so once the
//!   `kubeadm-config` ConfigMap says the same, `kubeadm upgrade` regenerates the same manifest;
//! - `--data-dir` keeps naming a directory the on-call engineer can `ls` on the node, and the paths
//!   in etcd's logs are host paths. If `--data-dir` said `/var/lib/etcd` while the pod ran on `N`,
//!   someone cleaning up "old restore directories" would delete the live data.
//!
//! So: after a rewrite `--data-dir` equals the data mount's `mountPath`, and `hostPath.path` is `N`.
//! The `mountPath` becomes `N` only when it was equal to the old `hostPath.path` (the kubeadm
//! mirror). A manifest that deliberately mounts a different host directory (say `/mnt/disk/etcd` at
//! `/var/lib/etcd`) keeps its in-container path; only `hostPath` changes. When `--data-dir` was a
//! subdirectory of the mount, it becomes the mount itself, since `N` is the data dir.
//! `mountPath` never changes without `--data-dir` changing with it: a `--data-dir` outside every
//! mount would make etcd write inside the container, where the data is lost on restart.
//!
//! # `--initial-cluster-state` and `--initial-cluster-token`
//!
//! `etcdutl snapshot restore` writes a new member directory with the membership and token it was
//! given; it bootstraps a new cluster, so a restored member starts as `new`. A kubeadm member
//! that joined an existing cluster carries `--initial-cluster-state=existing`. etcd ignores the
//! `--initial-cluster*` flags once the data dir holds a WAL, but the manifest should say what the
//! member is. Left at `existing`, a member whose data dir went missing would try to join the
//! peers in `--initial-cluster`. The token is set to the one given to `etcdutl` for the same reason.
//!
//! # Not handled (refused with an error that says so)
//!
//! `--wal-dir` (a restore puts the WAL inside the data dir), `subPath` data mounts, a data volume
//! mounted by other containers, flags inside a shell string (`sh -c "etcd --data-dir=..."`), values
//! written as YAML aliases or over several lines, and duplicated flags.
//!
//! The caller must create and fill `N` before writing the manifest: kubeadm's volume is
//! `DirectoryOrCreate`, so a missing `N` would start etcd on an empty directory.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

/// Where kubeadm writes the etcd static pod manifest, used for the diff headers by default.
pub const DEFAULT_MANIFEST_PATH: &str = "/etc/kubernetes/manifests/etcd.yaml";

/// Why a manifest could not be read or rewritten. Each message says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not YAML, or not shaped like a Pod.
    #[error(
        "etcd.yaml could not be read as a Pod manifest ({message}): compare it with the copy on \
         another control-plane node or a kubeadm backup under /etc/kubernetes/tmp/, fix it, and \
         run the restore again"
    )]
    Yaml {
        /// The parser's message, with its line and column.
        message: String,
        /// 1-based line of the problem, when known.
        line: Option<u64>,
        /// 1-based column of the problem, when known.
        column: Option<u64>,
    },

    /// The document is some other Kubernetes object.
    #[error(
        "etcd.yaml is a {kind}, not a Pod: point lifeboat at the etcd static pod manifest \
         (kubeadm writes it to /etc/kubernetes/manifests/etcd.yaml)"
    )]
    NotAPod {
        /// The document's `kind`.
        kind: String,
    },

    /// `spec.containers` is missing or empty.
    #[error(
        "etcd.yaml has no spec.containers: is this kubeadm's etcd manifest? Point lifeboat at \
         /etc/kubernetes/manifests/etcd.yaml"
    )]
    NoContainers,

    /// Several containers, none of them named `etcd`.
    #[error(
        "etcd.yaml has {} containers ({}) and none is named etcd: name the etcd container `etcd` \
         and run the restore again",
        .names.len(),
        .names.join(", ")
    )]
    NoEtcdContainer {
        /// The names of the containers found.
        names: Vec<String>,
    },

    /// A required flag is in neither `command` nor `args` of the etcd container.
    #[error(
        "etcd.yaml has no {flag} flag in the etcd container's command or args: is this kubeadm's \
         etcd manifest?"
    )]
    MissingFlag {
        /// The flag, with its leading dashes.
        flag: String,
    },

    /// The flag only appears inside a longer string, such as a `sh -c` command line.
    #[error(
        "etcd.yaml line {line}: {flag} is inside a longer command string, not a list item of its \
         own; lifeboat only edits flags that are separate command/args items: make each flag its \
         own item (as kubeadm does) or rewrite the manifest by hand"
    )]
    FlagInShellString {
        /// The flag, with its leading dashes.
        flag: String,
        /// 1-based line of the string.
        line: u64,
    },

    /// `--flag` written on its own as the last list item.
    #[error(
        "etcd.yaml line {line}: {flag} is the last item of the list and has no value: write it \
         as {flag}=VALUE"
    )]
    FlagWithoutValue {
        /// The flag, with its leading dashes.
        flag: String,
        /// 1-based line of the flag.
        line: u64,
    },

    /// `--flag` followed by another flag instead of a value.
    #[error(
        "etcd.yaml line {line}: {flag} is followed by {next}, another flag, not a value: write it \
         as {flag}=VALUE"
    )]
    FlagFollowedByFlag {
        /// The flag, with its leading dashes.
        flag: String,
        /// The item that follows it.
        next: String,
        /// 1-based line of the flag.
        line: u64,
    },

    /// The same flag is given twice; etcd silently uses the last one.
    #[error(
        "etcd.yaml sets {flag} twice (lines {first_line} and {second_line}) and etcd silently \
         uses the last one: delete the one that is wrong and run the restore again"
    )]
    DuplicateFlag {
        /// The flag, with its leading dashes.
        flag: String,
        /// 1-based line of the first occurrence.
        first_line: u64,
        /// 1-based line of the second occurrence.
        second_line: u64,
    },

    /// `--data-dir` lies outside every volume mount of the etcd container.
    #[error(
        "--data-dir={data_dir} is not inside any volumeMount of the etcd container (mounts: {}); \
         etcd keeps its data inside the container, so there is no host directory to restore into: \
         mount a hostPath volume at {data_dir} as kubeadm does (volume etcd-data)",
        if .mounts.is_empty() { "none".to_string() } else { .mounts.join(", ") }
    )]
    DataDirNotMounted {
        /// The `--data-dir` value.
        data_dir: String,
        /// The etcd container's mount paths.
        mounts: Vec<String>,
    },

    /// The volume mounted at the data dir is not declared in `spec.volumes`.
    #[error(
        "the etcd container mounts volume {volume} at {mount_path}, but spec.volumes has no volume \
         named {volume}: add it (kubeadm: hostPath {mount_path}, type DirectoryOrCreate) or fix \
         the name"
    )]
    DataVolumeMissing {
        /// The volume name in the mount.
        volume: String,
        /// Where it is mounted.
        mount_path: String,
    },

    /// The volume holding the data dir is not a `hostPath` volume.
    #[error(
        "volume {volume}, which holds etcd's --data-dir, is not a hostPath volume: lifeboat \
         restores into a directory on the node and cannot repoint other volume types; restore \
         into that volume by hand"
    )]
    DataVolumeNotHostPath {
        /// The volume name.
        volume: String,
    },

    /// The data mount uses `subPath`.
    #[error(
        "the etcd container mounts volume {volume} with subPath {sub_path}; lifeboat does not \
         rewrite subPath mounts: mount the data directory without subPath (as kubeadm does) or \
         edit the manifest by hand"
    )]
    DataMountHasSubPath {
        /// The volume name.
        volume: String,
        /// The `subPath` value.
        sub_path: String,
    },

    /// The data volume is mounted somewhere else too.
    #[error(
        "volume {volume}, which holds etcd's data, is also mounted at {mount_path} in container \
         {container}; pointing it at the restored directory would change that mount too: give \
         that container its own volume, or edit the manifest by hand"
    )]
    DataVolumeShared {
        /// The volume name.
        volume: String,
        /// The other container's name.
        container: String,
        /// Where the other mount is.
        mount_path: String,
    },

    /// `--wal-dir` keeps the WAL outside the data dir.
    #[error(
        "etcd.yaml sets --wal-dir={wal_dir}; a restore puts the WAL inside the data dir, and etcd \
         would read the old WAL from {wal_dir}: remove --wal-dir (and its volume) from the \
         manifest before restoring, or restore by hand"
    )]
    WalDirSet {
        /// The `--wal-dir` value.
        wal_dir: String,
    },

    /// A value to edit is a YAML alias of a value defined elsewhere.
    #[error(
        "etcd.yaml line {line}: {what} is a YAML alias (*name); editing it in place would change \
         every use of the anchor: write the value out in full and run the restore again"
    )]
    Alias {
        /// The field.
        what: String,
        /// 1-based line of the alias.
        line: u64,
    },

    /// A value to edit carries a YAML anchor that aliases elsewhere may refer to.
    #[error(
        "etcd.yaml line {line}: {what} carries a YAML anchor (&name); editing it in place would \
         change every alias of it too: remove the anchor, write out its aliases in full, and run \
         the restore again"
    )]
    Anchor {
        /// The field.
        what: String,
        /// 1-based line of the value.
        line: u64,
    },

    /// A value to edit spans several lines.
    #[error(
        "etcd.yaml line {line}: {what} is written over several lines; write it on one line and \
         run the restore again"
    )]
    MultiLineValue {
        /// The field.
        what: String,
        /// 1-based line where the value starts.
        line: u64,
    },

    /// `--initial-cluster` has an entry that is not `name=peer-url`.
    #[error(
        "--initial-cluster={value} has an entry {entry:?} that is not name=peer-url: fix \
         --initial-cluster in etcd.yaml (kubeadm writes name=https://IP:2380,...)"
    )]
    InvalidInitialCluster {
        /// The whole flag value.
        value: String,
        /// The malformed entry.
        entry: String,
    },

    /// The requested restore data dir is not acceptable.
    #[error(
        "restore data dir {value:?} {reason}: use an absolute path such as \
         /var/lib/etcd-restore-20261127T135500Z, made of letters, digits, '.', '_', '-' and '/'"
    )]
    InvalidDataDir {
        /// The path given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The requested cluster token is not acceptable.
    #[error(
        "cluster token {value:?} {reason}: use 1 to 128 letters, digits, '.', '_' or '-', not \
         starting with '-' (the same token given to etcdutl snapshot restore)"
    )]
    InvalidToken {
        /// The token given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The rewritten text failed the self-check. A bug in lifeboat.
    #[error(
        "lifeboat's rewrite of etcd.yaml failed its own check ({detail}); this is a bug in \
         lifeboat and the manifest was not written: edit it by hand, pointing --data-dir and the \
         data volume's hostPath.path (and mountPath, if it equals hostPath) at {data_dir} and \
         setting --initial-cluster-token={token}"
    )]
    Verification {
        /// What did not match.
        detail: String,
        /// The requested data dir.
        data_dir: String,
        /// The requested token.
        token: String,
    },
}

/// The etcd settings read from a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdManifest {
    /// Name of the etcd container.
    pub container: String,
    /// `--name`: this member's name.
    pub name: String,
    /// `--initial-cluster`: `name=peer-url` pairs, comma separated.
    pub initial_cluster: String,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: String,
    /// `--initial-cluster-state`, when set (etcd's default is `new`).
    pub initial_cluster_state: Option<String>,
    /// `--initial-cluster-token`, when set.
    pub initial_cluster_token: Option<String>,
    /// `--data-dir`, as etcd sees it inside the container.
    pub data_dir: String,
    /// `--wal-dir`, when set.
    pub wal_dir: Option<String>,
    /// `--listen-client-urls`.
    pub listen_client_urls: String,
    /// `--advertise-client-urls`.
    pub advertise_client_urls: String,
    /// The hostPath volume that holds the data dir.
    pub data_volume: DataVolume,
}

/// The hostPath volume behind etcd's `--data-dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataVolume {
    /// Volume name (kubeadm: `etcd-data`).
    pub name: String,
    /// Where the etcd container mounts it.
    pub mount_path: String,
    /// `hostPath.path` of the volume.
    pub host_path: String,
    /// The data dir as a path on the node: `host_path` plus the part of `--data-dir` below
    /// `mount_path`.
    pub host_data_dir: String,
}

/// One `name=peer-url` entry of `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMember {
    /// Member name.
    pub name: String,
    /// Peer URL.
    pub peer_url: String,
}

impl EtcdManifest {
    /// Reads the etcd settings from the manifest text.
    pub fn parse(text: &str) -> Result<EtcdManifest, Error> {
        Ok(scan(text)?.manifest)
    }

    /// Splits `--initial-cluster` into its members, in order.
    pub fn initial_cluster_members(&self) -> Result<Vec<ClusterMember>, Error> {
        self.initial_cluster
            .split(',')
            .map(|entry| match entry.split_once('=') {
                Some((name, url)) if !name.is_empty() && !url.is_empty() => Ok(ClusterMember {
                    name: name.to_string(),
                    peer_url: url.to_string(),
                }),
                _ => Err(Error::InvalidInitialCluster {
                    value: self.initial_cluster.clone(),
                    entry: entry.to_string(),
                }),
            })
            .collect()
    }
}

/// What to change for a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// Host directory holding the restored state, e.g. `/var/lib/etcd-restore-20261127T135500Z`.
    pub data_dir: String,
    /// Cluster token given to `etcdutl snapshot restore`.
    pub cluster_token: String,
    /// Change `--initial-cluster-state=existing` to `new` (see the module docs).
    pub set_cluster_state_new: bool,
    /// Path shown in the diff headers.
    pub manifest_path: String,
}

impl Rewrite {
    /// A rewrite to `data_dir` with `cluster_token`, setting the cluster state to `new`, with diff
    /// headers naming [`DEFAULT_MANIFEST_PATH`].
    pub fn new(data_dir: impl Into<String>, cluster_token: impl Into<String>) -> Rewrite {
        Rewrite {
            data_dir: data_dir.into(),
            cluster_token: cluster_token.into(),
            set_cluster_state_new: true,
            manifest_path: DEFAULT_MANIFEST_PATH.to_string(),
        }
    }
}

/// The result of [`rewrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The new manifest text.
    pub text: String,
    /// What changed, in the order the fields appear in the file. Empty when nothing had to change.
    pub changes: Vec<Change>,
    /// Unified diff from the old text to the new one; empty when nothing changed.
    pub diff: String,
}

/// One changed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Which field.
    pub field: Field,
    /// The old value; `None` when the field was added.
    pub old: Option<String>,
    /// The new value.
    pub new: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.old {
            Some(old) => write!(f, "{}: {} -> {}", self.field, old, self.new),
            None => write!(f, "{}: added {}", self.field, self.new),
        }
    }
}

/// A field that a rewrite may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `--data-dir`.
    DataDir,
    /// `--initial-cluster-token`.
    InitialClusterToken,
    /// `--initial-cluster-state`.
    InitialClusterState,
    /// The `mountPath` of the etcd container's mount of the named volume.
    MountPath {
        /// The volume name.
        volume: String,
    },
    /// The `hostPath.path` of the named volume.
    HostPath {
        /// The volume name.
        volume: String,
    },
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::DataDir => f.write_str("--data-dir"),
            Field::InitialClusterToken => f.write_str("--initial-cluster-token"),
            Field::InitialClusterState => f.write_str("--initial-cluster-state"),
            Field::MountPath { volume } => write!(f, "volumeMounts[{volume}].mountPath"),
            Field::HostPath { volume } => write!(f, "volumes[{volume}].hostPath.path"),
        }
    }
}

/// Rewrites the manifest text for a restore into `change.data_dir` (see the module docs).
///
/// Rewriting an already rewritten text with the same input changes nothing.
pub fn rewrite(text: &str, change: &Rewrite) -> Result<Rewritten, Error> {
    validate_data_dir(&change.data_dir)?;
    validate_token(&change.cluster_token)?;
    let scanned = scan(text)?;
    if let Some(wal_dir) = &scanned.manifest.wal_dir {
        return Err(Error::WalDirSet {
            wal_dir: wal_dir.clone(),
        });
    }
    let plan = plan(text, &scanned, change)?;
    let new_text = apply_edits(text, &plan.edits);
    verify(text, &new_text, &scanned, &plan, change)?;

    let mut changes = plan.changes;
    changes.sort_by_key(|(pos, _)| *pos);
    let diff = if new_text == text {
        String::new()
    } else {
        let shown = change.manifest_path.trim_start_matches('/');
        similar::TextDiff::from_lines(text, &new_text)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a/{shown}"), &format!("b/{shown}"))
            .to_string()
    };
    Ok(Rewritten {
        text: new_text,
        changes: changes.into_iter().map(|(_, c)| c).collect(),
        diff,
    })
}

// ---------------------------------------------------------------------------------------------
// Reading: the parts of a Pod we look at, with source spans for the values we may edit.

#[derive(Deserialize)]
struct PodDoc {
    kind: Option<String>,
    spec: Option<PodSpecDoc>,
}

#[derive(Deserialize)]
struct PodSpecDoc {
    containers: Option<Vec<ContainerDoc>>,
    #[serde(rename = "initContainers")]
    init_containers: Option<Vec<ContainerDoc>>,
    volumes: Option<Vec<VolumeDoc>>,
}

#[derive(Deserialize)]
struct ContainerDoc {
    name: Option<String>,
    command: Option<Vec<Spanned<String>>>,
    args: Option<Vec<Spanned<String>>>,
    #[serde(rename = "volumeMounts")]
    volume_mounts: Option<Vec<MountDoc>>,
}

#[derive(Deserialize)]
struct MountDoc {
    name: String,
    #[serde(rename = "mountPath")]
    mount_path: Spanned<String>,
    #[serde(rename = "subPath")]
    sub_path: Option<String>,
}

#[derive(Deserialize)]
struct VolumeDoc {
    name: String,
    #[serde(rename = "hostPath")]
    host_path: Option<HostPathDoc>,
}

#[derive(Deserialize)]
struct HostPathDoc {
    path: Spanned<String>,
}

/// The flags we read; anything else in command/args is left alone.
const KNOWN_FLAGS: &[&str] = &[
    "name",
    "initial-cluster",
    "initial-advertise-peer-urls",
    "initial-cluster-state",
    "initial-cluster-token",
    "data-dir",
    "wal-dir",
    "listen-client-urls",
    "advertise-client-urls",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Command,
    Args,
}

impl ListKind {
    fn key(self) -> &'static str {
        match self {
            ListKind::Command => "command",
            ListKind::Args => "args",
        }
    }
}

/// Where one flag was found and how it is written.
#[derive(Debug, Clone)]
struct FlagHit {
    list: ListKind,
    /// `--` or `-`, as written.
    dashes: String,
    /// The whole `--flag=value` item, or the `--flag` item of a split pair.
    flag_item: (usize, Spanned<String>),
    /// The separate value item of a split pair.
    value_item: Option<(usize, Spanned<String>)>,
    value: String,
}

impl FlagHit {
    fn line(&self) -> u64 {
        self.flag_item.1.referenced.line()
    }

    /// The item that ends this flag (for inserting after it).
    fn last_item(&self) -> &(usize, Spanned<String>) {
        self.value_item.as_ref().unwrap_or(&self.flag_item)
    }
}

struct Scanned {
    manifest: EtcdManifest,
    container_index: usize,
    flags: HashMap<&'static str, FlagHit>,
    mount_index: usize,
    mount_span: Spanned<String>,
    volume_index: usize,
    host_span: Spanned<String>,
}

fn yaml_error(e: &serde_saphyr::Error) -> Error {
    let rendered = e.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let location = e.location();
    Error::Yaml {
        message: first.trim_start_matches("error: ").to_string(),
        line: location.map(|l| l.line()),
        column: location.map(|l| l.column()),
    }
}

fn scan(text: &str) -> Result<Scanned, Error> {
    let doc: PodDoc = serde_saphyr::from_str(text).map_err(|e| yaml_error(&e))?;
    if let Some(kind) = doc.kind.filter(|k| k != "Pod") {
        return Err(Error::NotAPod { kind });
    }
    let spec = doc.spec.ok_or(Error::NoContainers)?;
    let containers = spec.containers.unwrap_or_default();
    if containers.is_empty() {
        return Err(Error::NoContainers);
    }
    let container_index = match containers
        .iter()
        .position(|c| c.name.as_deref() == Some("etcd"))
    {
        Some(i) => i,
        None if containers.len() == 1 => 0,
        None => {
            return Err(Error::NoEtcdContainer {
                names: containers
                    .iter()
                    .map(|c| c.name.clone().unwrap_or_else(|| "<unnamed>".to_string()))
                    .collect(),
            });
        }
    };
    let etcd = &containers[container_index];

    let mut flags: HashMap<&'static str, FlagHit> = HashMap::new();
    for (kind, list) in [
        (ListKind::Command, &etcd.command),
        (ListKind::Args, &etcd.args),
    ] {
        scan_flags(kind, list.as_deref().unwrap_or_default(), &mut flags)?;
    }
    let value_of = |flag: &'static str| flags.get(flag).map(|h| h.value.clone());
    let required = |flag: &'static str| -> Result<String, Error> {
        value_of(flag).ok_or_else(|| missing_flag(flag, etcd))
    };

    let data_dir = required("data-dir")?;
    let name = required("name")?;
    let initial_cluster = required("initial-cluster")?;
    let initial_advertise_peer_urls = required("initial-advertise-peer-urls")?;
    let listen_client_urls = required("listen-client-urls")?;
    let advertise_client_urls = required("advertise-client-urls")?;

    // The data mount: the deepest mount at or above --data-dir, as the kubelet would resolve it.
    let mounts = etcd.volume_mounts.as_deref().unwrap_or_default();
    let (mount_index, mount, rel) = mounts
        .iter()
        .enumerate()
        .filter_map(|(i, m)| path_below(&data_dir, &m.mount_path.value).map(|rel| (i, m, rel)))
        .max_by_key(|(_, m, _)| trim_slash(&m.mount_path.value).len())
        .ok_or_else(|| Error::DataDirNotMounted {
            data_dir: data_dir.clone(),
            mounts: mounts.iter().map(|m| m.mount_path.value.clone()).collect(),
        })?;
    if let Some(sub_path) = mount.sub_path.as_ref().filter(|s| !s.is_empty()) {
        return Err(Error::DataMountHasSubPath {
            volume: mount.name.clone(),
            sub_path: sub_path.clone(),
        });
    }
    let all_containers = containers
        .iter()
        .chain(spec.init_containers.as_deref().unwrap_or_default());
    for (ci, c) in all_containers.enumerate() {
        for (mi, m) in c.volume_mounts.iter().flatten().enumerate() {
            let same = ci == container_index && mi == mount_index;
            if m.name == mount.name && !same {
                return Err(Error::DataVolumeShared {
                    volume: mount.name.clone(),
                    container: c.name.clone().unwrap_or_else(|| "<unnamed>".to_string()),
                    mount_path: m.mount_path.value.clone(),
                });
            }
        }
    }
    let volumes = spec.volumes.unwrap_or_default();
    let (volume_index, volume) = volumes
        .iter()
        .enumerate()
        .find(|(_, v)| v.name == mount.name)
        .ok_or_else(|| Error::DataVolumeMissing {
            volume: mount.name.clone(),
            mount_path: mount.mount_path.value.clone(),
        })?;
    let host = volume
        .host_path
        .as_ref()
        .ok_or_else(|| Error::DataVolumeNotHostPath {
            volume: volume.name.clone(),
        })?;

    let host_path = host.path.value.clone();
    let host_data_dir = format!("{}{}", trim_slash(&host_path), rel);
    let manifest = EtcdManifest {
        container: etcd.name.clone().unwrap_or_default(),
        name,
        initial_cluster,
        initial_advertise_peer_urls,
        initial_cluster_state: value_of("initial-cluster-state"),
        initial_cluster_token: value_of("initial-cluster-token"),
        data_dir,
        wal_dir: value_of("wal-dir"),
        listen_client_urls,
        advertise_client_urls,
        data_volume: DataVolume {
            name: mount.name.clone(),
            mount_path: mount.mount_path.value.clone(),
            host_path,
            host_data_dir,
        },
    };
    Ok(Scanned {
        manifest,
        container_index,
        mount_index,
        mount_span: mount.mount_path.clone(),
        volume_index,
        host_span: host.path.clone(),
        flags,
    })
}

fn missing_flag(flag: &'static str, etcd: &ContainerDoc) -> Error {
    let spelled = format!("--{flag}");
    let with_value = format!("{spelled}=");
    let in_string = etcd
        .command
        .iter()
        .chain(etcd.args.iter())
        .flatten()
        .find(|item| {
            let mut words = item.value.split_whitespace();
            words.clone().count() > 1 && words.any(|w| w == spelled || w.starts_with(&with_value))
        });
    match in_string {
        Some(item) => Error::FlagInShellString {
            flag: spelled,
            line: item.referenced.line(),
        },
        None => Error::MissingFlag { flag: spelled },
    }
}

/// Splits `--flag=value`, `--flag`, `-flag=value` into dashes, name and value.
fn split_flag(item: &str) -> Option<(&str, &str, Option<&str>)> {
    let dashes = if item.starts_with("--") {
        "--"
    } else if item.starts_with('-') {
        "-"
    } else {
        return None;
    };
    let body = &item[dashes.len()..];
    match body.split_once('=') {
        Some((name, value)) => Some((dashes, name, Some(value))),
        None => Some((dashes, body, None)),
    }
}

fn scan_flags(
    list: ListKind,
    items: &[Spanned<String>],
    flags: &mut HashMap<&'static str, FlagHit>,
) -> Result<(), Error> {
    let mut i = 0;
    while i < items.len() {
        let item = &items[i];
        let Some((dashes, name, value)) = split_flag(&item.value) else {
            i += 1;
            continue;
        };
        let Some(known) = KNOWN_FLAGS.iter().copied().find(|k| *k == name) else {
            i += 1;
            continue;
        };
        let line = item.referenced.line();
        let (value, value_item) = match value {
            Some(v) => (v.to_string(), None),
            None => {
                let spelled = format!("{dashes}{known}");
                let next = items.get(i + 1).ok_or_else(|| Error::FlagWithoutValue {
                    flag: spelled.clone(),
                    line,
                })?;
                if next.value.starts_with("--") {
                    return Err(Error::FlagFollowedByFlag {
                        flag: spelled,
                        next: next.value.clone(),
                        line,
                    });
                }
                (next.value.clone(), Some((i + 1, next.clone())))
            }
        };
        let hit = FlagHit {
            list,
            dashes: dashes.to_string(),
            flag_item: (i, item.clone()),
            value_item,
            value,
        };
        i += if hit.value_item.is_some() { 2 } else { 1 };
        if let Some(first) = flags.get(known) {
            return Err(Error::DuplicateFlag {
                flag: format!("--{known}"),
                first_line: first.line(),
                second_line: hit.line(),
            });
        }
        flags.insert(known, hit);
    }
    Ok(())
}

fn trim_slash(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
}

/// When `path` is `base` or below it, the rest of `path` (empty, or starting with `/`).
fn path_below(path: &str, base: &str) -> Option<String> {
    let (path, base) = (trim_slash(path), trim_slash(base));
    if base == "/" {
        return Some(if path == "/" {
            String::new()
        } else {
            path.to_string()
        });
    }
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.starts_with('/')).then(|| rest.to_string())
}

// ---------------------------------------------------------------------------------------------
// Validating the request.

fn validate_data_dir(dir: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidDataDir {
            value: dir.to_string(),
            reason,
        })
    };
    if !dir.starts_with('/') {
        return bad("is not an absolute path");
    }
    if dir == "/" {
        return bad("is the root directory");
    }
    if dir.len() > 4096 {
        return bad("is longer than 4096 bytes");
    }
    if dir.ends_with('/') {
        return bad("ends with '/'");
    }
    if !dir
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        return bad("has characters other than letters, digits, '.', '_', '-' and '/'");
    }
    if dir[1..]
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return bad("has an empty, '.' or '..' component");
    }
    Ok(())
}

fn validate_token(token: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidToken {
            value: token.to_string(),
            reason,
        })
    };
    if token.is_empty() {
        return bad("is empty");
    }
    if token.len() > 128 {
        return bad("is longer than 128 characters");
    }
    if token.starts_with('-') {
        return bad("starts with '-'");
    }
    if !token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return bad("has characters other than letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Planning the edits.

/// Replace `start..end` of the original text with `text` (an insertion when `start == end`).
#[derive(Debug, Clone)]
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

/// What the parsed document must look like after the edits, as JSON pointer operations.
#[derive(Debug, Clone)]
enum JsonOp {
    Set {
        pointer: String,
        value: String,
    },
    Insert {
        array: String,
        index: usize,
        values: Vec<String>,
    },
}

#[derive(Default)]
struct Plan {
    edits: Vec<Edit>,
    changes: Vec<(usize, Change)>,
    json: Vec<JsonOp>,
    /// `--data-dir` and the data `mountPath` after the rewrite (they end up equal).
    expect_mount_path: String,
}

/// Byte range of a scalar in the text, refusing aliases and multi-line values.
fn span_of(text: &str, value: &Spanned<String>, what: &str) -> Result<(usize, usize), Error> {
    let line = value.referenced.line();
    if value.referenced != value.defined {
        return Err(Error::Alias {
            what: what.to_string(),
            line,
        });
    }
    let span = value.referenced.span();
    let (Some(start), Some(len)) = (span.byte_offset(), span.byte_len()) else {
        return Err(Error::MultiLineValue {
            what: what.to_string(),
            line,
        });
    };
    let (start, end) = (start as usize, (start + len) as usize);
    let line_start = text
        .get(..start)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let before = text.get(line_start..start).unwrap_or_default().trim_end();
    let last_word = before
        .rsplit([' ', '\t', '[', '{', ','])
        .next()
        .unwrap_or_default();
    if last_word.starts_with('&') {
        return Err(Error::Anchor {
            what: what.to_string(),
            line,
        });
    }
    match text.get(start..end) {
        Some(token) if !token.contains('\n') && !token.is_empty() => Ok((start, end)),
        _ => Err(Error::MultiLineValue {
            what: what.to_string(),
            line,
        }),
    }
}

/// `value` written in the same quoting style as the scalar `original`.
fn render_like(original: &str, value: &str) -> String {
    match original.as_bytes().first() {
        Some(b'\'') => format!("'{}'", value.replace('\'', "''")),
        Some(b'"') => double_quoted(value),
        _ if plain_safe(value) => value.to_string(),
        _ => double_quoted(value),
    }
}

fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `value` reads back as the same string when written unquoted, in block or flow context,
/// under YAML 1.1 (Kubernetes) and 1.2 alike. Deliberately narrow.
fn plain_safe(value: &str) -> bool {
    const WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let mut chars = value.chars();
    let first_ok = match chars.next() {
        Some('/') => true,
        Some('-') => matches!(chars.next(), Some(c) if c != ' '),
        Some(c) => c.is_ascii_alphabetic(),
        None => false,
    };
    first_ok
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '='))
        && !WORDS.contains(&value.to_ascii_lowercase().as_str())
}

fn container_pointer(scanned: &Scanned) -> String {
    format!("/spec/containers/{}", scanned.container_index)
}

fn item_pointer(scanned: &Scanned, list: ListKind, index: usize) -> String {
    format!("{}/{}/{}", container_pointer(scanned), list.key(), index)
}

/// Sets a flag's value in place, keeping its form and quoting.
fn set_flag(
    text: &str,
    scanned: &Scanned,
    flag: &'static str,
    field: Field,
    new: &str,
    plan: &mut Plan,
) -> Result<(), Error> {
    let Some(hit) = scanned.flags.get(flag) else {
        return Ok(());
    };
    if hit.value == new {
        return Ok(());
    }
    let what = format!("--{flag}");
    let (index, item, new_item) = match &hit.value_item {
        None => {
            let (index, item) = &hit.flag_item;
            (*index, item, format!("{}{}={}", hit.dashes, flag, new))
        }
        Some((index, item)) => (*index, item, new.to_string()),
    };
    let (start, end) = span_of(text, item, &what)?;
    plan.edits.push(Edit {
        start,
        end,
        text: render_like(&text[start..end], &new_item),
    });
    plan.json.push(JsonOp::Set {
        pointer: item_pointer(scanned, hit.list, index),
        value: new_item,
    });
    plan.changes.push((
        start,
        Change {
            field,
            old: Some(hit.value.clone()),
            new: new.to_string(),
        },
    ));
    Ok(())
}

/// Adds `--initial-cluster-token` right after `--data-dir`, in its form, quoting and indentation.
fn insert_token(text: &str, scanned: &Scanned, token: &str, plan: &mut Plan) -> Result<(), Error> {
    let anchor = &scanned.flags["data-dir"];
    let (flag_start, flag_end) = span_of(text, &anchor.flag_item.1, "--data-dir")?;
    let flag_style = &text[flag_start..flag_end];
    // (value to write, rendered item)
    let items: Vec<(String, String)> = match &anchor.value_item {
        None => {
            let item = format!("{}initial-cluster-token={}", anchor.dashes, token);
            vec![(item.clone(), render_like(flag_style, &item))]
        }
        Some((_, value)) => {
            let (vs, ve) = span_of(text, value, "--data-dir")?;
            let name = format!("{}initial-cluster-token", anchor.dashes);
            vec![
                (name.clone(), render_like(flag_style, &name)),
                (token.to_string(), render_like(&text[vs..ve], token)),
            ]
        }
    };
    let (last_index, last) = anchor.last_item();
    let (start, end) = span_of(text, last, "--data-dir")?;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let prefix = &text[line_start..start];
    let block_item = {
        let p = prefix.trim_start_matches([' ', '\t']);
        p.starts_with('-') && p.len() > 1 && p[1..].chars().all(|c| c == ' ' || c == '\t')
    };
    let (at, rendered) = if block_item {
        match text[end..].find('\n') {
            Some(nl) => {
                let at = end + nl + 1;
                let eol = if text[..end + nl].ends_with('\r') {
                    "\r\n"
                } else {
                    "\n"
                };
                let lines: String = items
                    .iter()
                    .map(|(_, r)| format!("{prefix}{r}{eol}"))
                    .collect();
                (at, lines)
            }
            None => {
                let lines: String = items
                    .iter()
                    .map(|(_, r)| format!("\n{prefix}{r}"))
                    .collect();
                (text.len(), lines)
            }
        }
    } else {
        // A flow sequence: `[etcd, --data-dir=/x]`.
        let joined: String = items.iter().map(|(_, r)| format!(", {r}")).collect();
        (end, joined)
    };
    plan.edits.push(Edit {
        start: at,
        end: at,
        text: rendered,
    });
    plan.json.push(JsonOp::Insert {
        array: format!("{}/{}", container_pointer(scanned), anchor.list.key()),
        index: last_index + 1,
        values: items.into_iter().map(|(v, _)| v).collect(),
    });
    plan.changes.push((
        at,
        Change {
            field: Field::InitialClusterToken,
            old: None,
            new: token.to_string(),
        },
    ));
    Ok(())
}

fn plan(text: &str, scanned: &Scanned, change: &Rewrite) -> Result<Plan, Error> {
    let m = &scanned.manifest;
    let volume = &m.data_volume;
    let mut plan = Plan::default();

    // See the module docs: keep the kubeadm mirror (in-container path == host path) when it holds.
    let mirrored = trim_slash(&volume.mount_path) == trim_slash(&volume.host_path);
    let new_mount_path = if mirrored {
        change.data_dir.clone()
    } else {
        volume.mount_path.clone()
    };
    plan.expect_mount_path = new_mount_path.clone();

    set_flag(
        text,
        scanned,
        "data-dir",
        Field::DataDir,
        &new_mount_path,
        &mut plan,
    )?;
    if scanned.flags.contains_key("initial-cluster-token") {
        set_flag(
            text,
            scanned,
            "initial-cluster-token",
            Field::InitialClusterToken,
            &change.cluster_token,
            &mut plan,
        )?;
    } else {
        insert_token(text, scanned, &change.cluster_token, &mut plan)?;
    }
    if change.set_cluster_state_new {
        set_flag(
            text,
            scanned,
            "initial-cluster-state",
            Field::InitialClusterState,
            "new",
            &mut plan,
        )?;
    }

    let mut set_path = |span: &Spanned<String>, field: Field, pointer: String, new: &str| {
        if span.value == new {
            return Ok(());
        }
        let (start, end) = span_of(text, span, &field.to_string())?;
        plan.edits.push(Edit {
            start,
            end,
            text: render_like(&text[start..end], new),
        });
        plan.json.push(JsonOp::Set {
            pointer,
            value: new.to_string(),
        });
        plan.changes.push((
            start,
            Change {
                field,
                old: Some(span.value.clone()),
                new: new.to_string(),
            },
        ));
        Ok::<(), Error>(())
    };
    set_path(
        &scanned.mount_span,
        Field::MountPath {
            volume: volume.name.clone(),
        },
        format!(
            "{}/volumeMounts/{}/mountPath",
            container_pointer(scanned),
            scanned.mount_index
        ),
        &new_mount_path,
    )?;
    set_path(
        &scanned.host_span,
        Field::HostPath {
            volume: volume.name.clone(),
        },
        format!("/spec/volumes/{}/hostPath/path", scanned.volume_index),
        &change.data_dir,
    )?;
    Ok(plan)
}

fn apply_edits(text: &str, edits: &[Edit]) -> String {
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| (e.start, e.end));
    let mut out = String::with_capacity(text.len() + 128);
    let mut at = 0;
    for edit in sorted {
        out.push_str(&text[at..edit.start]);
        out.push_str(&edit.text);
        at = edit.end;
    }
    out.push_str(&text[at..]);
    out
}

// ---------------------------------------------------------------------------------------------
// Checking the result: the new text must parse to the old document plus exactly the planned edits.

fn verify(
    old: &str,
    new: &str,
    scanned: &Scanned,
    plan: &Plan,
    change: &Rewrite,
) -> Result<(), Error> {
    let fail = |detail: String| Error::Verification {
        detail,
        data_dir: change.data_dir.clone(),
        token: change.cluster_token.clone(),
    };
    let mut expected: Value = serde_saphyr::from_str(old).map_err(|e| yaml_error(&e))?;
    // Sets address items by their index in the old text, so they go before any insertion.
    let (sets, inserts): (Vec<&JsonOp>, Vec<&JsonOp>) = plan
        .json
        .iter()
        .partition(|op| matches!(op, JsonOp::Set { .. }));
    for op in sets.into_iter().chain(inserts) {
        match op {
            JsonOp::Set { pointer, value } => {
                let slot = expected
                    .pointer_mut(pointer)
                    .ok_or_else(|| fail(format!("no value at {pointer}")))?;
                *slot = Value::String(value.clone());
            }
            JsonOp::Insert {
                array,
                index,
                values,
            } => {
                let list = expected
                    .pointer_mut(array)
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| fail(format!("no list at {array}")))?;
                for (offset, v) in values.iter().enumerate() {
                    list.insert(index + offset, Value::String(v.clone()));
                }
            }
        }
    }
    let actual: Value = serde_saphyr::from_str(new)
        .map_err(|e| fail(format!("the new text does not parse: {}", yaml_error(&e))))?;
    if actual != expected {
        return Err(fail(
            "the new text differs from the old one in more than the planned fields".to_string(),
        ));
    }

    let after = scan(new)
        .map_err(|e| fail(format!("the new text does not read back: {e}")))?
        .manifest;
    let before = &scanned.manifest;
    let checks = [
        (
            "--data-dir",
            Some(after.data_dir.as_str()),
            plan.expect_mount_path.as_str(),
        ),
        (
            "mountPath",
            Some(after.data_volume.mount_path.as_str()),
            plan.expect_mount_path.as_str(),
        ),
        (
            "hostPath",
            Some(after.data_volume.host_path.as_str()),
            change.data_dir.as_str(),
        ),
        (
            "host data dir",
            Some(after.data_volume.host_data_dir.as_str()),
            change.data_dir.as_str(),
        ),
        (
            "--initial-cluster-token",
            after.initial_cluster_token.as_deref(),
            change.cluster_token.as_str(),
        ),
    ];
    for (what, got, want) in checks {
        if got != Some(want) {
            return Err(fail(format!("{what} reads back as {got:?}, not {want:?}")));
        }
    }
    let want_state = match &before.initial_cluster_state {
        Some(_) if change.set_cluster_state_new => Some("new".to_string()),
        other => other.clone(),
    };
    if after.initial_cluster_state != want_state {
        return Err(fail(format!(
            "--initial-cluster-state reads back as {:?}, not {want_state:?}",
            after.initial_cluster_state
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBEADM: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://10.0.0.11:2379
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://10.0.0.11:2380
    - --initial-cluster=cp-1=https://10.0.0.11:2380
    - --listen-client-urls=https://127.0.0.1:2379,https://10.0.0.11:2379
    - --name=cp-1
    image: registry.k8s.io/etcd:3.5.9-0
    name: etcd
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
  volumes:
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
";

    const NEW_DIR: &str = "/var/lib/etcd-restore-20261127T135500Z-1a2b";

    fn err(text: &str) -> Error {
        rewrite(text, &Rewrite::new(NEW_DIR, "tok")).unwrap_err()
    }

    #[test]
    fn parse_reads_kubeadm_settings() {
        let m = EtcdManifest::parse(KUBEADM).unwrap();
        assert_eq!(m.container, "etcd");
        assert_eq!(m.name, "cp-1");
        assert_eq!(m.data_dir, "/var/lib/etcd");
        assert_eq!(m.initial_cluster_state, None);
        assert_eq!(m.initial_cluster_token, None);
        assert_eq!(
            m.data_volume,
            DataVolume {
                name: "etcd-data".into(),
                mount_path: "/var/lib/etcd".into(),
                host_path: "/var/lib/etcd".into(),
                host_data_dir: "/var/lib/etcd".into(),
            }
        );
        assert_eq!(
            m.initial_cluster_members().unwrap(),
            vec![ClusterMember {
                name: "cp-1".into(),
                peer_url: "https://10.0.0.11:2380".into()
            }]
        );
    }

    #[test]
    fn missing_data_dir_says_where_it_looked() {
        let text = KUBEADM.replace("    - --data-dir=/var/lib/etcd\n", "");
        let e = EtcdManifest::parse(&text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "etcd.yaml has no --data-dir flag in the etcd container's command or args: is this \
             kubeadm's etcd manifest?"
        );
    }

    #[test]
    fn flags_inside_a_shell_string_are_refused() {
        let text = KUBEADM.replace(
            "    - etcd\n    - --advertise-client-urls=https://10.0.0.11:2379\n    - --data-dir=/var/lib/etcd\n",
            "    - sh\n    - -c\n    - etcd --data-dir=/var/lib/etcd --advertise-client-urls=x\n",
        );
        assert!(matches!(
            EtcdManifest::parse(&text).unwrap_err(),
            Error::FlagInShellString { line: 11, .. }
        ));
    }

    #[test]
    fn duplicate_flag_is_refused_with_both_lines() {
        let text = KUBEADM.replace(
            "    - --name=cp-1\n",
            "    - --name=cp-1\n    - --data-dir=/srv/etcd\n",
        );
        assert_eq!(
            EtcdManifest::parse(&text).unwrap_err(),
            Error::DuplicateFlag {
                flag: "--data-dir".into(),
                first_line: 11,
                second_line: 16
            }
        );
    }

    #[test]
    fn split_flag_at_end_of_list_has_no_value() {
        let text = KUBEADM.replace("    - --name=cp-1\n", "    - --name\n");
        assert!(matches!(
            EtcdManifest::parse(&text).unwrap_err(),
            Error::FlagWithoutValue { line: 15, .. }
        ));
        let text = KUBEADM.replace("    - --data-dir=/var/lib/etcd\n", "    - --data-dir\n");
        assert!(matches!(
            EtcdManifest::parse(&text).unwrap_err(),
            Error::FlagFollowedByFlag { line: 11, .. }
        ));
    }

    #[test]
    fn unmounted_data_dir_is_refused() {
        let text = KUBEADM.replace("--data-dir=/var/lib/etcd", "--data-dir=/var/lib/etcd2");
        assert_eq!(
            EtcdManifest::parse(&text).unwrap_err(),
            Error::DataDirNotMounted {
                data_dir: "/var/lib/etcd2".into(),
                mounts: vec!["/var/lib/etcd".into()]
            }
        );
    }

    #[test]
    fn non_hostpath_and_missing_volumes_are_refused() {
        let empty = KUBEADM.replace(
            "  - hostPath:\n      path: /var/lib/etcd\n      type: DirectoryOrCreate\n",
            "  - emptyDir: {}\n",
        );
        assert!(matches!(
            EtcdManifest::parse(&empty).unwrap_err(),
            Error::DataVolumeNotHostPath { .. }
        ));
        let renamed = KUBEADM.replace(
            "DirectoryOrCreate\n    name: etcd-data\n",
            "DirectoryOrCreate\n    name: other\n",
        );
        assert!(matches!(
            EtcdManifest::parse(&renamed).unwrap_err(),
            Error::DataVolumeMissing { .. }
        ));
    }

    #[test]
    fn other_objects_and_containers_are_refused() {
        assert!(matches!(
            EtcdManifest::parse("kind: Deployment\nspec: {}\n").unwrap_err(),
            Error::NotAPod { .. }
        ));
        assert_eq!(
            EtcdManifest::parse("kind: Pod\nspec:\n  containers: []\n").unwrap_err(),
            Error::NoContainers
        );
        let two = KUBEADM
            .replace("    name: etcd\n", "    name: db\n")
            .replace(
                "  volumes:\n",
                "  - name: sidecar\n    image: busybox\n  volumes:\n",
            );
        assert_eq!(
            EtcdManifest::parse(&two).unwrap_err().to_string(),
            "etcd.yaml has 2 containers (db, sidecar) and none is named etcd: name the etcd \
             container `etcd` and run the restore again"
        );
        assert!(matches!(
            EtcdManifest::parse("a: [\n").unwrap_err(),
            Error::Yaml { line: Some(_), .. }
        ));
    }

    #[test]
    fn wal_dir_alias_and_multiline_values_are_refused() {
        let wal = KUBEADM.replace(
            "    - --name=cp-1\n",
            "    - --name=cp-1\n    - --wal-dir=/var/lib/etcd/wal\n",
        );
        assert!(matches!(err(&wal), Error::WalDirSet { .. }));

        let alias = KUBEADM
            .replace(
                "    - mountPath: /var/lib/etcd\n",
                "    - mountPath: &d /var/lib/etcd\n",
            )
            .replace("      path: /var/lib/etcd\n", "      path: *d\n");
        assert_eq!(
            err(&alias),
            Error::Anchor {
                what: "volumeMounts[etcd-data].mountPath".into(),
                line: 19
            }
        );
        let alias_only = alias.replace("mountPath: &d /var/lib/etcd", "mountPath: /var/lib/etcd");
        let alias_only = alias_only.replace(
            "  volumes:\n",
            "  volumes:\n  - name: spare\n    hostPath:\n      path: &d /var/lib/etcd\n",
        );
        assert_eq!(
            err(&alias_only),
            Error::Alias {
                what: "volumes[etcd-data].hostPath.path".into(),
                line: 26
            }
        );

        let folded = KUBEADM.replace(
            "      path: /var/lib/etcd\n",
            "      path: >-\n        /var/lib/etcd\n",
        );
        assert!(matches!(err(&folded), Error::MultiLineValue { .. }));
    }

    #[test]
    fn shared_data_volume_and_subpath_are_refused() {
        let shared = KUBEADM.replace(
            "  volumes:\n",
            "  - name: backup\n    image: busybox\n    volumeMounts:\n    - mountPath: /data\n      name: etcd-data\n  volumes:\n",
        );
        assert!(matches!(
            EtcdManifest::parse(&shared).unwrap_err(),
            Error::DataVolumeShared { .. }
        ));
        let sub = KUBEADM.replace(
            "      name: etcd-data\n  volumes:",
            "      name: etcd-data\n      subPath: etcd\n  volumes:",
        );
        assert!(matches!(
            EtcdManifest::parse(&sub).unwrap_err(),
            Error::DataMountHasSubPath { .. }
        ));
    }

    #[test]
    fn bad_requests_are_refused_before_reading() {
        for dir in ["relative", "/", "/a/", "/a//b", "/a/../b", "/a b", "/a'b"] {
            assert!(
                matches!(err_for(dir, "t"), Error::InvalidDataDir { .. }),
                "{dir}"
            );
        }
        for token in ["", "-x", "a b", "a:b", &"x".repeat(129)] {
            assert!(
                matches!(err_for(NEW_DIR, token), Error::InvalidToken { .. }),
                "{token}"
            );
        }
    }

    fn err_for(dir: &str, token: &str) -> Error {
        rewrite(KUBEADM, &Rewrite::new(dir, token)).unwrap_err()
    }

    #[test]
    fn kubeadm_mirror_moves_all_three_paths() {
        let out = rewrite(KUBEADM, &Rewrite::new(NEW_DIR, "tok")).unwrap();
        let m = EtcdManifest::parse(&out.text).unwrap();
        assert_eq!(m.data_dir, NEW_DIR);
        assert_eq!(m.data_volume.mount_path, NEW_DIR);
        assert_eq!(m.data_volume.host_path, NEW_DIR);
        assert_eq!(m.initial_cluster_token.as_deref(), Some("tok"));
        let shown: Vec<String> = out.changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                format!("--data-dir: /var/lib/etcd -> {NEW_DIR}"),
                "--initial-cluster-token: added tok".to_string(),
                format!("volumeMounts[etcd-data].mountPath: /var/lib/etcd -> {NEW_DIR}"),
                format!("volumes[etcd-data].hostPath.path: /var/lib/etcd -> {NEW_DIR}"),
            ]
        );
        assert!(out.diff.starts_with(
            "--- a/etc/kubernetes/manifests/etcd.yaml\n+++ b/etc/kubernetes/manifests/etcd.yaml\n"
        ));
    }

    #[test]
    fn distinct_host_directory_keeps_in_container_path() {
        let text = KUBEADM.replace(
            "      path: /var/lib/etcd\n",
            "      path: /mnt/disk/etcd\n",
        );
        let out = rewrite(&text, &Rewrite::new(NEW_DIR, "tok")).unwrap();
        let m = EtcdManifest::parse(&out.text).unwrap();
        assert_eq!(m.data_dir, "/var/lib/etcd");
        assert_eq!(m.data_volume.mount_path, "/var/lib/etcd");
        assert_eq!(m.data_volume.host_path, NEW_DIR);
        assert_eq!(m.data_volume.host_data_dir, NEW_DIR);
    }

    #[test]
    fn data_dir_below_the_mount_becomes_the_mount() {
        let text = KUBEADM
            .replace("--data-dir=/var/lib/etcd", "--data-dir=/var/lib/etcd/data")
            .replace("      path: /var/lib/etcd\n", "      path: /srv/etcd\n");
        let before = EtcdManifest::parse(&text).unwrap();
        assert_eq!(before.data_volume.host_data_dir, "/srv/etcd/data");
        let out = rewrite(&text, &Rewrite::new(NEW_DIR, "tok")).unwrap();
        let m = EtcdManifest::parse(&out.text).unwrap();
        assert_eq!(m.data_dir, "/var/lib/etcd");
        assert_eq!(m.data_volume.host_data_dir, NEW_DIR);
    }

    #[test]
    fn crlf_file_gets_crlf_insertion() {
        let text = KUBEADM.replace('\n', "\r\n");
        let out = rewrite(&text, &Rewrite::new(NEW_DIR, "tok")).unwrap();
        assert!(out.text.contains("    - --initial-cluster-token=tok\r\n"));
        assert!(!out.text.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn flow_sequence_gets_item_inserted_inline() {
        let text = "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd, \"--data-dir=/var/lib/etcd\", --name=a, --initial-cluster=a=https://h:2380,\n      --initial-advertise-peer-urls=https://h:2380, --listen-client-urls=https://h:2379,\n      --advertise-client-urls=https://h:2379]\n    volumeMounts: [{name: data, mountPath: /var/lib/etcd}]\n  volumes: [{name: data, hostPath: {path: /var/lib/etcd}}]\n";
        let out = rewrite(text, &Rewrite::new(NEW_DIR, "tok")).unwrap();
        assert!(out.text.contains(&format!(
            "command: [etcd, \"--data-dir={NEW_DIR}\", \"--initial-cluster-token=tok\", --name=a,"
        )));
        assert!(
            out.text
                .contains(&format!("{{name: data, mountPath: {NEW_DIR}}}"))
        );
    }

    #[test]
    fn split_value_that_would_read_as_a_number_is_quoted() {
        let text = KUBEADM.replace(
            "    - --data-dir=/var/lib/etcd\n",
            "    - --data-dir\n    - /var/lib/etcd\n",
        );
        let out = rewrite(&text, &Rewrite::new(NEW_DIR, "1234")).unwrap();
        assert!(
            out.text
                .contains("    - --initial-cluster-token\n    - \"1234\"\n")
        );
        let out = rewrite(&text, &Rewrite::new(NEW_DIR, "yes")).unwrap();
        assert!(
            out.text
                .contains("    - --initial-cluster-token\n    - \"yes\"\n")
        );
    }

    #[test]
    fn file_without_final_newline_keeps_it_that_way() {
        let text = "kind: Pod\nspec:\n  volumes:\n  - name: d\n    hostPath:\n      path: /var/lib/etcd\n  containers:\n  - name: etcd\n    volumeMounts:\n    - {name: d, mountPath: /var/lib/etcd}\n    command:\n    - etcd\n    - --name=a\n    - --initial-cluster=a=https://h:2380\n    - --initial-advertise-peer-urls=https://h:2380\n    - --listen-client-urls=https://h:2379\n    - --advertise-client-urls=https://h:2379\n    - --data-dir=/var/lib/etcd";
        let out = rewrite(text, &Rewrite::new(NEW_DIR, "tok")).unwrap();
        assert!(out.text.ends_with(&format!(
            "    - --data-dir={NEW_DIR}\n    - --initial-cluster-token=tok"
        )));
    }

    #[test]
    fn second_rewrite_changes_nothing() {
        let rw = Rewrite::new(NEW_DIR, "tok");
        let once = rewrite(KUBEADM, &rw).unwrap();
        let twice = rewrite(&once.text, &rw).unwrap();
        assert_eq!(twice.text, once.text);
        assert!(twice.changes.is_empty());
        assert!(twice.diff.is_empty());
    }

    #[test]
    fn path_below_is_component_wise() {
        assert_eq!(
            path_below("/var/lib/etcd", "/var/lib/etcd/"),
            Some(String::new())
        );
        assert_eq!(
            path_below("/var/lib/etcd/x", "/var/lib/etcd"),
            Some("/x".into())
        );
        assert_eq!(path_below("/var/lib/etcd2", "/var/lib/etcd"), None);
        assert_eq!(path_below("/var", "/"), Some("/var".into()));
    }

    #[test]
    fn render_keeps_quoting_style() {
        assert_eq!(render_like("'--a=b'", "--a=c"), "'--a=c'");
        assert_eq!(render_like("\"--a=b\"", "--a=c"), "\"--a=c\"");
        assert_eq!(render_like("--a=b", "--a=c"), "--a=c");
        assert_eq!(render_like("x", "true"), "\"true\"");
        assert_eq!(render_like("x", "007"), "\"007\"");
    }
}
