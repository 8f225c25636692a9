//! Golden files: each fixture's rewritten text, diff and change list are checked byte for byte.
//! Set LIFEBOAT_BLESS=1 to write the expected files after a deliberate change, then review them.

use lifeboat::restore::etcd_yaml::{ClusterMember, EtcdYaml, rewrite};

use super::support::{FIXTURES, NEW_DIR, TOKEN, fixture, fixture_path, golden_request};

fn check_or_bless(file: &str, actual: &str) {
    if std::env::var_os("LIFEBOAT_BLESS").is_some() {
        std::fs::write(fixture_path(file), actual).unwrap();
        return;
    }
    let expected = fixture(file);
    if expected != actual {
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual)
            .unified_diff()
            .header("expected", "actual")
            .to_string();
        panic!("{file} differs from the golden file:\n{diff}");
    }
}

#[test]
fn rewritten_text_diff_and_changes_match_golden_files() {
    for name in FIXTURES {
        let out = rewrite(&fixture(&format!("{name}.yaml")), &golden_request())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        check_or_bless(&format!("{name}.rewritten.yaml"), &out.text);
        check_or_bless(&format!("{name}.diff"), &out.diff);
        let changes: String = out.changes.iter().map(|c| format!("{c}\n")).collect();
        check_or_bless(&format!("{name}.changes"), &changes);
    }
}

#[test]
fn golden_outputs_are_fixed_points() {
    for name in FIXTURES {
        let done = fixture(&format!("{name}.rewritten.yaml"));
        let again = rewrite(&done, &golden_request()).unwrap();
        assert_eq!(again.text, done, "{name}");
        assert!(again.changes.is_empty(), "{name}: {:?}", again.changes);
        assert_eq!(again.diff, "", "{name}");
    }
}

#[test]
fn golden_outputs_read_back_as_restored() {
    for name in FIXTURES {
        let m = EtcdYaml::parse(&fixture(&format!("{name}.rewritten.yaml"))).unwrap();
        assert_eq!(m.data_volume.host_path, NEW_DIR, "{name}");
        assert_eq!(m.data_volume.host_data_dir, NEW_DIR, "{name}");
        assert_eq!(m.data_dir, m.data_volume.mount_path, "{name}");
        assert_eq!(m.initial_cluster_token.as_deref(), Some(TOKEN), "{name}");
        assert!(
            matches!(m.initial_cluster_state.as_deref(), None | Some("new")),
            "{name}"
        );
    }
}

#[test]
fn parse_reads_each_fixture() {
    let single = EtcdYaml::parse(&fixture("kubeadm-single.yaml")).unwrap();
    assert_eq!(single.name, "cp-1");
    assert_eq!(single.initial_cluster_state, None);
    assert_eq!(
        single.listen_client_urls,
        "https://127.0.0.1:2379,https://10.0.0.11:2379"
    );
    assert_eq!(single.advertise_client_urls, "https://10.0.0.11:2379");
    assert_eq!(single.initial_advertise_peer_urls, "https://10.0.0.11:2380");

    let ha = EtcdYaml::parse(&fixture("kubeadm-ha-member.yaml")).unwrap();
    assert_eq!(ha.name, "cp-3");
    assert_eq!(ha.initial_cluster_state.as_deref(), Some("existing"));
    let members = ha.initial_cluster_members().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(
        members[1],
        ClusterMember {
            name: "cp-1".into(),
            peer_url: "https://10.0.0.11:2380".into()
        }
    );

    let minikube = EtcdYaml::parse(&fixture("minikube.yaml")).unwrap();
    assert_eq!(minikube.data_dir, "/var/lib/minikube/etcd");
    assert_eq!(minikube.data_volume.host_path, "/var/lib/minikube/etcd");

    let args = EtcdYaml::parse(&fixture("flags-in-args.yaml")).unwrap();
    assert_eq!(args.initial_cluster_token.as_deref(), Some("etcd-prod-eu1"));
    assert_eq!(args.data_volume.mount_path, "/var/lib/etcd");
    assert_eq!(args.data_volume.host_data_dir, "/mnt/nvme0/etcd");

    let split = EtcdYaml::parse(&fixture("split-flags.yaml")).unwrap();
    assert_eq!(split.name, "cp-b");
    assert_eq!(split.data_dir, "/var/lib/etcd");
    assert_eq!(split.initial_cluster_members().unwrap().len(), 3);
    assert_eq!(split.initial_cluster_state.as_deref(), Some("existing"));
}
