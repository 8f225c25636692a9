//! Reads kubeadm's etcd static pod (`/etc/kubernetes/manifests/etcd.yaml`) and rewrites
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
//!   `kubeadm-config` ConfigMap says the same, `kubeadm upgrade` regenerates the same etcd.yaml;
//! - `--data-dir` keeps naming a directory the on-call engineer can `ls` on the node, and the paths
//!   in etcd's logs are host paths. If `--data-dir` said `/var/lib/etcd` while the pod ran on `N`,
//!   someone cleaning up "old restore directories" would delete the live data.
//!
//! So: after a rewrite `--data-dir` equals the data mount's `mountPath`, and `hostPath.path` is `N`.
//! The `mountPath` becomes `N` only when it was equal to the old `hostPath.path` (the kubeadm
//! mirror). An etcd.yaml that deliberately mounts a different host directory (say `/mnt/disk/etcd` at
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
//! `--initial-cluster*` flags once the data dir holds a WAL, but etcd.yaml should say what the
//! member is. Left at `existing`, a member whose data dir went missing would try to join the
//! peers in `--initial-cluster`. The token is set to the one given to `etcdutl` for the same reason.
//!
//! # Not handled (refused with an error that says so)
//!
//! `--wal-dir` (a restore puts the WAL inside the data dir), `subPath` data mounts, a data volume
//! mounted by other containers, flags inside a shell string (`sh -c "etcd --data-dir=..."`), values
//! written as YAML aliases or over several lines, and duplicated flags.
//!
//! The caller must create and fill `N` before writing etcd.yaml: kubeadm's volume is
//! `DirectoryOrCreate`, so a missing `N` would start etcd on an empty directory.

use std::fmt;

mod edits;
mod parse;
#[cfg(test)]
mod tests;
mod verify;

use edits::*;
use parse::*;
use verify::*;

/// Where kubeadm writes the etcd static pod; the diff headers name it unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/kubernetes/manifests/etcd.yaml";

/// Why etcd.yaml could not be read or rewritten. Each message says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not YAML, or not shaped like a Pod.
    #[error(
        "etcd.yaml could not be read as a Pod ({message}): compare it with the copy on \
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
        "etcd.yaml is a {kind}, not a Pod: point lifeboat at the etcd static pod \
         (kubeadm writes it to /etc/kubernetes/manifests/etcd.yaml)"
    )]
    NotAPod {
        /// The document's `kind`.
        kind: String,
    },

    /// `spec.containers` is missing or empty.
    #[error(
        "etcd.yaml has no spec.containers: is this kubeadm's etcd.yaml? Point lifeboat at \
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
         etcd.yaml?"
    )]
    MissingFlag {
        /// The flag, with its leading dashes.
        flag: String,
    },

    /// The flag only appears inside a longer string, such as a `sh -c` command line.
    #[error(
        "etcd.yaml line {line}: {flag} is inside a longer command string, not a list item of its \
         own; lifeboat only edits flags that are separate command/args items: make each flag its \
         own item (as kubeadm does) or rewrite etcd.yaml by hand"
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
         edit etcd.yaml by hand"
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
         that container its own volume, or edit etcd.yaml by hand"
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
         would read the old WAL from {wal_dir}: remove --wal-dir (and its volume) from \
         etcd.yaml before restoring, or restore by hand"
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
         lifeboat and etcd.yaml was not written: edit it by hand, pointing --data-dir and the \
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

/// The etcd settings read from etcd.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdYaml {
    /// Name of the etcd container.
    pub container: String,
    /// `--name`: this member's name.
    pub name: String,
    /// `--initial-cluster`: `name=peer-url` pairs, comma separated.
    pub initial_cluster: String,
    /// `--initial-advertise-peer-urls`: this member's peer URLs, comma separated.
    pub initial_advertise_peer_urls: String,
    /// `--initial-cluster-state`, when set (etcd's default is `new`).
    pub initial_cluster_state: Option<String>,
    /// `--initial-cluster-token`, when set.
    pub initial_cluster_token: Option<String>,
    /// `--data-dir`, as etcd sees it inside the container.
    pub data_dir: String,
    /// `--wal-dir`, when set.
    pub wal_dir: Option<String>,
    /// `--listen-client-urls`: where etcd serves clients, comma separated.
    pub listen_client_urls: String,
    /// `--advertise-client-urls`: the client URLs etcd tells others, comma separated.
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
    /// As in `--name`.
    pub name: String,
    /// As in `--initial-advertise-peer-urls`.
    pub peer_url: String,
}

impl EtcdYaml {
    /// Reads the etcd settings from the text of etcd.yaml.
    pub fn parse(text: &str) -> Result<EtcdYaml, Error> {
        Ok(scan(text)?.etcd)
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
    /// The path of etcd.yaml shown in the diff headers; default [`DEFAULT_PATH`].
    pub path: String,
}

impl Rewrite {
    /// A rewrite to `data_dir` with `cluster_token`, setting the cluster state to `new`, with diff
    /// headers naming [`DEFAULT_PATH`].
    pub fn new(data_dir: impl Into<String>, cluster_token: impl Into<String>) -> Rewrite {
        Rewrite {
            data_dir: data_dir.into(),
            cluster_token: cluster_token.into(),
            set_cluster_state_new: true,
            path: DEFAULT_PATH.to_string(),
        }
    }
}

/// The result of [`rewrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The new text of etcd.yaml.
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

/// Rewrites the text of etcd.yaml for a restore into `change.data_dir` (see the module docs).
///
/// Rewriting an already rewritten text with the same input changes nothing.
pub fn rewrite(text: &str, change: &Rewrite) -> Result<Rewritten, Error> {
    validate_data_dir(&change.data_dir)?;
    validate_token(&change.cluster_token)?;
    let scanned = scan(text)?;
    if let Some(wal_dir) = &scanned.etcd.wal_dir {
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
        let shown = change.path.trim_start_matches('/');
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
