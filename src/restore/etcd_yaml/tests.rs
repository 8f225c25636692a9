//! The rewrite on kubeadm's, minikube's and hand-written etcd.yaml files.

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
    let m = EtcdYaml::parse(KUBEADM).unwrap();
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
    let e = EtcdYaml::parse(&text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "etcd.yaml has no --data-dir flag in the etcd container's command or args: is this \
             kubeadm's etcd.yaml?"
    );
}

#[test]
fn flags_inside_a_shell_string_are_refused() {
    let text = KUBEADM.replace(
            "    - etcd\n    - --advertise-client-urls=https://10.0.0.11:2379\n    - --data-dir=/var/lib/etcd\n",
            "    - sh\n    - -c\n    - etcd --data-dir=/var/lib/etcd --advertise-client-urls=x\n",
        );
    assert!(matches!(
        EtcdYaml::parse(&text).unwrap_err(),
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
        EtcdYaml::parse(&text).unwrap_err(),
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
        EtcdYaml::parse(&text).unwrap_err(),
        Error::FlagWithoutValue { line: 15, .. }
    ));
    let text = KUBEADM.replace("    - --data-dir=/var/lib/etcd\n", "    - --data-dir\n");
    assert!(matches!(
        EtcdYaml::parse(&text).unwrap_err(),
        Error::FlagFollowedByFlag { line: 11, .. }
    ));
}

#[test]
fn unmounted_data_dir_is_refused() {
    let text = KUBEADM.replace("--data-dir=/var/lib/etcd", "--data-dir=/var/lib/etcd2");
    assert_eq!(
        EtcdYaml::parse(&text).unwrap_err(),
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
        EtcdYaml::parse(&empty).unwrap_err(),
        Error::DataVolumeNotHostPath { .. }
    ));
    let renamed = KUBEADM.replace(
        "DirectoryOrCreate\n    name: etcd-data\n",
        "DirectoryOrCreate\n    name: other\n",
    );
    assert!(matches!(
        EtcdYaml::parse(&renamed).unwrap_err(),
        Error::DataVolumeMissing { .. }
    ));
}

#[test]
fn other_objects_and_containers_are_refused() {
    assert!(matches!(
        EtcdYaml::parse("kind: Deployment\nspec: {}\n").unwrap_err(),
        Error::NotAPod { .. }
    ));
    assert_eq!(
        EtcdYaml::parse("kind: Pod\nspec:\n  containers: []\n").unwrap_err(),
        Error::NoContainers
    );
    let two = KUBEADM
        .replace("    name: etcd\n", "    name: db\n")
        .replace(
            "  volumes:\n",
            "  - name: sidecar\n    image: busybox\n  volumes:\n",
        );
    assert_eq!(
        EtcdYaml::parse(&two).unwrap_err().to_string(),
        "etcd.yaml has 2 containers (db, sidecar) and none is named etcd: name the etcd \
             container `etcd` and run the restore again"
    );
    assert!(matches!(
        EtcdYaml::parse("a: [\n").unwrap_err(),
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
        EtcdYaml::parse(&shared).unwrap_err(),
        Error::DataVolumeShared { .. }
    ));
    let sub = KUBEADM.replace(
        "      name: etcd-data\n  volumes:",
        "      name: etcd-data\n      subPath: etcd\n  volumes:",
    );
    assert!(matches!(
        EtcdYaml::parse(&sub).unwrap_err(),
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
    let m = EtcdYaml::parse(&out.text).unwrap();
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
    let m = EtcdYaml::parse(&out.text).unwrap();
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
    let before = EtcdYaml::parse(&text).unwrap();
    assert_eq!(before.data_volume.host_data_dir, "/srv/etcd/data");
    let out = rewrite(&text, &Rewrite::new(NEW_DIR, "tok")).unwrap();
    let m = EtcdYaml::parse(&out.text).unwrap();
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
