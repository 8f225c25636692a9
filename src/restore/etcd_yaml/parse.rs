//! Reading: the parts of a Pod we look at, with source spans for the values we may edit.

use std::collections::HashMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::*;

#[derive(Deserialize)]
pub(super) struct PodDoc {
    pub(super) kind: Option<String>,
    pub(super) spec: Option<PodSpecDoc>,
}

#[derive(Deserialize)]
pub(super) struct PodSpecDoc {
    pub(super) containers: Option<Vec<ContainerDoc>>,
    #[serde(rename = "initContainers")]
    pub(super) init_containers: Option<Vec<ContainerDoc>>,
    pub(super) volumes: Option<Vec<VolumeDoc>>,
}

#[derive(Deserialize)]
pub(super) struct ContainerDoc {
    pub(super) name: Option<String>,
    pub(super) command: Option<Vec<Spanned<String>>>,
    pub(super) args: Option<Vec<Spanned<String>>>,
    #[serde(rename = "volumeMounts")]
    pub(super) volume_mounts: Option<Vec<MountDoc>>,
}

#[derive(Deserialize)]
pub(super) struct MountDoc {
    pub(super) name: String,
    #[serde(rename = "mountPath")]
    pub(super) mount_path: Spanned<String>,
    #[serde(rename = "subPath")]
    pub(super) sub_path: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct VolumeDoc {
    pub(super) name: String,
    #[serde(rename = "hostPath")]
    pub(super) host_path: Option<HostPathDoc>,
}

#[derive(Deserialize)]
pub(super) struct HostPathDoc {
    pub(super) path: Spanned<String>,
}

/// The flags we read; anything else in command/args is left alone.
pub(super) const KNOWN_FLAGS: &[&str] = &[
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
pub(super) enum ListKind {
    Command,
    Args,
}

impl ListKind {
    pub(super) fn key(self) -> &'static str {
        match self {
            ListKind::Command => "command",
            ListKind::Args => "args",
        }
    }
}

/// Where one flag was found and how it is written.
#[derive(Debug, Clone)]
pub(super) struct FlagHit {
    pub(super) list: ListKind,
    /// `--` or `-`, as written.
    pub(super) dashes: String,
    /// The whole `--flag=value` item, or the `--flag` item of a split pair.
    pub(super) flag_item: (usize, Spanned<String>),
    /// The separate value item of a split pair.
    pub(super) value_item: Option<(usize, Spanned<String>)>,
    pub(super) value: String,
}

impl FlagHit {
    pub(super) fn line(&self) -> u64 {
        self.flag_item.1.referenced.line()
    }

    /// The item that ends this flag (for inserting after it).
    pub(super) fn last_item(&self) -> &(usize, Spanned<String>) {
        self.value_item.as_ref().unwrap_or(&self.flag_item)
    }
}

pub(super) struct Scanned {
    pub(super) etcd: EtcdYaml,
    pub(super) container_index: usize,
    pub(super) flags: HashMap<&'static str, FlagHit>,
    pub(super) mount_index: usize,
    pub(super) mount_span: Spanned<String>,
    pub(super) volume_index: usize,
    pub(super) host_span: Spanned<String>,
}

pub(super) fn yaml_error(e: &serde_saphyr::Error) -> Error {
    let rendered = e.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let location = e.location();
    Error::Yaml {
        message: first.trim_start_matches("error: ").to_string(),
        line: location.map(|l| l.line()),
        column: location.map(|l| l.column()),
    }
}

pub(super) fn scan(text: &str) -> Result<Scanned, Error> {
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
    let etcd = EtcdYaml {
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
        etcd,
        container_index,
        mount_index,
        mount_span: mount.mount_path.clone(),
        volume_index,
        host_span: host.path.clone(),
        flags,
    })
}

pub(super) fn missing_flag(flag: &'static str, etcd: &ContainerDoc) -> Error {
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
pub(super) fn split_flag(item: &str) -> Option<(&str, &str, Option<&str>)> {
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

pub(super) fn scan_flags(
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

pub(super) fn trim_slash(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
}

/// When `path` is `base` or below it, the rest of `path` (empty, or starting with `/`).
pub(super) fn path_below(path: &str, base: &str) -> Option<String> {
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
