//! The guided restore end to end with real etcd: a kubeadm-style node (static-pod manifests run
//! by a stand-in kubelet) is backed up to S3, loses its data, and `lifeboat restore etcd --yes`
//! brings it back through a regenerated etcd.yaml; the same for a 3-member cluster; and the
//! failure paths: a corrupt backup or wrong key change nothing, a failing etcdutl leaves the node
//! restorable with the printed commands; SIGINT/SIGTERM mid-flow print the observed state and a
//! rollback that works; a wrong CA is refused before the node changes; a failed run does not
//! block its re-run; a failed move is reported as it stands on disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::etcd::{Version, require_version};
use crate::support::kubelet::Kubelet;
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::support::s3::{Moto, require_moto};
use crate::support::tls::Pki;
use crate::support::{free_port, run_ok, wait_for};

/// One control-plane node: its manifests directory and host filesystem under a temp dir.
struct Node {
    root: tempfile::TempDir,
    name: String,
    client: u16,
    peer: u16,
    kubelet: Option<Kubelet>,
    /// The restore tool in the etcd bin dir: etcdutl, or etcdctl for etcd 3.4.
    tool: &'static str,
    /// etcd serves clients over TLS with --client-cert-auth, with this PKI.
    tls: Option<Pki>,
}

impl Node {
    fn new(name: &str) -> Node {
        let root = crate::support::tempdir();
        std::fs::create_dir_all(root.path().join("etc/kubernetes/manifests")).unwrap();
        Node {
            root,
            name: name.into(),
            client: free_port(),
            peer: free_port(),
            kubelet: None,
            tool: "etcdutl",
            tls: None,
        }
    }

    fn manifests(&self) -> PathBuf {
        self.root.path().join("etc/kubernetes/manifests")
    }

    fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer)
    }

    fn host_data(&self) -> PathBuf {
        self.root.path().join("var/lib/etcd")
    }

    /// Writes kubeadm-shaped etcd.yaml and kube-apiserver.yaml. `mapped`: the container sees
    /// /var/lib/etcd, which the hostPath maps to a directory under this node's root (as on a
    /// real node, where both are /var/lib/etcd); otherwise all three paths are the host path.
    fn write_manifests(&self, initial_cluster: &str, mapped: bool) {
        let host = self.host_data().display().to_string();
        let (data_dir, mount) = if mapped {
            ("/var/lib/etcd".to_string(), "/var/lib/etcd".to_string())
        } else {
            (host.clone(), host.clone())
        };
        let (name, client, peer) = (&self.name, self.client_url(), self.peer_url());
        let tls = match &self.tls {
            Some(pki) => format!(
                "    - --cert-file={}\n    - --client-cert-auth=true\n    - --key-file={}\n    - --trusted-ca-file={}\n",
                pki.server_cert.display(),
                pki.server_key.display(),
                pki.ca.display()
            ),
            None => String::new(),
        };
        let etcd = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n    kubeadm.kubernetes.io/etcd.advertise-client-urls: {client}\n  labels:\n    component: etcd\n    tier: control-plane\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - etcd\n    - --advertise-client-urls={client}\n{tls}    - --data-dir={data_dir}\n    - --initial-advertise-peer-urls={peer}\n    - --initial-cluster={initial_cluster}\n    - --initial-cluster-state=new\n    - --listen-client-urls={client}\n    - --listen-peer-urls={peer}\n    - --name={name}\n    - --snapshot-count=10000\n    image: registry.k8s.io/etcd:3.5.9-0\n    name: etcd\n    volumeMounts:\n    - mountPath: {mount}\n      name: etcd-data\n  hostNetwork: true\n  priorityClassName: system-node-critical\n  volumes:\n  - hostPath:\n      path: {host}\n      type: DirectoryOrCreate\n    name: etcd-data\nstatus: {{}}\n"
        );
        std::fs::write(self.manifests().join("etcd.yaml"), etcd).unwrap();
        std::fs::write(
            self.manifests().join("kube-apiserver.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.32.0\n",
        )
        .unwrap();
    }

    fn start_kubelet(&mut self, bin: &Path) {
        self.kubelet = Some(Kubelet::start(
            &self.manifests(),
            bin,
            self.root.path().join("pod.log"),
        ));
    }

    fn healthy(&self, bin: &Path) -> bool {
        let mut cmd = Command::new(bin.join("etcdctl"));
        cmd.env("ETCDCTL_API", "3").args([
            "--endpoints",
            &self.client_url(),
            "--command-timeout=2s",
        ]);
        if let Some(pki) = &self.tls {
            cmd.arg(format!("--cacert={}", pki.ca.display()))
                .arg(format!("--cert={}", pki.client_cert.display()))
                .arg(format!("--key={}", pki.client_key.display()));
        }
        cmd.args(["get", "health-probe"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn restore_args(&self, lb: &Lifeboat, bin: &Path) -> Vec<String> {
        vec![
            "restore".into(),
            "etcd".into(),
            "--identity".into(),
            lb.identity.display().to_string(),
            "--manifest".into(),
            self.manifests().join("etcd.yaml").display().to_string(),
            "--etcdutl".into(),
            bin.join(self.tool).display().to_string(),
            "--wait".into(),
            "60s".into(),
        ]
    }

    /// Directories a restore created beside the manifests (backup dir) or the data (new dir).
    fn created_dirs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for dir in [
            self.root.path().join("etc/kubernetes"),
            self.root.path().join("var/lib"),
        ] {
            for e in std::fs::read_dir(dir).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                if name.starts_with("lifeboat-restore-") || name.starts_with("etcd-restore-") {
                    out.push(name);
                }
            }
        }
        out
    }
}

async fn seed(endpoint: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let client = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap();
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..200 {
        let key = format!("/registry/configmaps/default/cm-{i:04}");
        let value = crate::support::test_value(i + 7, 2048);
        client
            .kv_client()
            .put(key.clone(), value.clone(), None)
            .await
            .unwrap();
        expected.insert(key, value);
    }
    expected
}

async fn dump(endpoint: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut client = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap();
    let resp = client
        .get(
            "/registry/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    resp.kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_string(), kv.value().to_vec()))
        .collect()
}

async fn wipe(endpoint: &str) {
    let mut client = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap();
    client
        .delete(
            "/registry/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeadm_node_is_restored_from_s3_through_a_regenerated_etcd_yaml() {
    restore_single_node(Version::V35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd34_node_is_restored_with_etcdctl() {
    restore_single_node(Version::V34).await;
}

async fn restore_single_node(version: Version) {
    let Some(bin) = require_version(version) else {
        return;
    };
    let Some(moto_bin) = require_moto() else {
        return;
    };
    let mut node = Node::new("cp-1");
    node.tool = if version == Version::V34 {
        "etcdctl"
    } else {
        "etcdutl"
    };
    node.write_manifests(&format!("cp-1={}", node.peer_url()), true);
    node.start_kubelet(&bin);
    wait_for("the static etcd pod", Duration::from_secs(30), || {
        node.healthy(&bin)
    });
    let expected = seed(&node.client_url()).await;

    let moto = Moto::start(&moto_bin);
    moto.create_bucket("backups");
    let store = StoreAt::S3 {
        endpoint: moto.endpoint.clone(),
        bucket: "backups".into(),
        prefix: "restore".into(),
    };
    let lb = Lifeboat::new(Setup::new(store, &node.client_url()));
    lb.ok(&["backup", "etcd"]);
    let id = lb.backup_ids().pop().unwrap();
    wipe(&node.client_url()).await;
    assert!(
        dump(&node.client_url()).await.is_empty(),
        "the cluster's state is lost"
    );
    let original = std::fs::read_to_string(node.manifests().join("etcd.yaml")).unwrap();

    // --dry-run: downloads and verifies, shows the plan and the diff, changes nothing.
    let mut args = node.restore_args(&lb, &bin);
    args.push("--dry-run".into());
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lb.ok(&args_ref);
    assert!(
        out.contains("Restore plan for member cp-1") && out.contains("Dry run"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "+      path: {}",
            node.root
                .path()
                .join(format!("var/lib/etcd-restore-{id}"))
                .display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("--initial-cluster-token=etcd-cluster-{id}")),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(node.manifests().join("etcd.yaml")).unwrap(),
        original
    );
    assert!(
        node.created_dirs().is_empty(),
        "a dry run creates nothing: {:?}",
        node.created_dirs()
    );

    // Without a terminal and without --yes it refuses.
    let args = node.restore_args(&lb, &bin);
    let err = lb.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("pass --yes"), "{err}");

    let mut args = node.restore_args(&lb, &bin);
    args.push("--yes".into());
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lb.ok(&args_ref);
    assert!(out.contains("Restored."), "{out}");

    assert!(
        dump(&node.client_url()).await == expected,
        "the keys are back"
    );
    let regenerated = std::fs::read_to_string(node.manifests().join("etcd.yaml")).unwrap();
    let new_dir = node.root.path().join(format!("var/lib/etcd-restore-{id}"));
    assert!(
        regenerated.contains(&format!("path: {}", new_dir.display())),
        "{regenerated}"
    );
    assert!(
        regenerated.contains(&format!("- --initial-cluster-token=etcd-cluster-{id}")),
        "{regenerated}"
    );
    assert!(
        regenerated.contains("- --data-dir=/var/lib/etcd\n"),
        "the container path stays: {regenerated}"
    );
    assert!(new_dir.join("member").is_dir());
    assert!(
        node.host_data().join("member").is_dir(),
        "the old data dir is never touched"
    );
    assert!(
        node.manifests().join("kube-apiserver.yaml").exists(),
        "kube-apiserver.yaml is back"
    );
    let backup_dir = node
        .created_dirs()
        .into_iter()
        .find(|d| d.starts_with("lifeboat-restore-"))
        .unwrap();
    let saved = node.root.path().join("etc/kubernetes").join(backup_dir);
    assert_eq!(
        std::fs::read_to_string(saved.join("etcd.yaml")).unwrap(),
        original,
        "the original manifest is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_cluster_is_restored_from_one_backup() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let mut nodes: Vec<Node> = ["cp-1", "cp-2", "cp-3"]
        .iter()
        .map(|n| Node::new(n))
        .collect();
    let initial = nodes
        .iter()
        .map(|n| format!("{}={}", n.name, n.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    for n in &mut nodes {
        n.write_manifests(&initial, false);
        n.start_kubelet(&bin);
    }
    wait_for("the 3-member cluster", Duration::from_secs(60), || {
        nodes.iter().all(|n| n.healthy(&bin))
    });
    let expected = seed(&nodes[0].client_url()).await;
    let store = crate::support::tempdir();
    let mut setup = Setup::new(
        StoreAt::File(store.path().to_path_buf()),
        &nodes[0].client_url(),
    );
    setup.etcd_endpoints = nodes.iter().map(|n| n.client_url()).collect();
    let lb = Lifeboat::new(setup);
    lb.ok(&["backup", "etcd"]);
    let id = lb.backup_ids().pop().unwrap();
    wipe(&nodes[0].client_url()).await;

    // Every member restores the same backup with the same token, at the same time: each waits
    // until the others are back and the cluster has quorum.
    let token = "etcd-cluster-drill-3";
    let mut runs = Vec::new();
    for n in &nodes {
        let mut args = n.restore_args(&lb, &bin);
        args.extend([
            "--backup".into(),
            id.clone(),
            "--cluster-token".into(),
            token.into(),
            "--yes".into(),
        ]);
        let mut cmd = tokio::process::Command::from(lb.cmd());
        cmd.args(&args).kill_on_drop(true);
        runs.push(cmd.output());
    }
    for (n, out) in nodes.iter().zip(futures::future::join_all(runs).await) {
        let out = out.unwrap();
        assert!(
            out.status.success(),
            "{} failed:\n{}\n{}",
            n.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for n in &nodes {
        assert!(
            dump(&n.client_url()).await == expected,
            "member {} serves the restored keys",
            n.name
        );
        let yaml = std::fs::read_to_string(n.manifests().join("etcd.yaml")).unwrap();
        assert!(
            yaml.contains(&format!("--initial-cluster-token={token}")),
            "{yaml}"
        );
    }
    let mut client = etcd_client::Client::connect([nodes[1].client_url()], None)
        .await
        .unwrap();
    assert_eq!(client.member_list().await.unwrap().members().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_backup_or_key_changes_nothing_and_a_failing_etcdutl_leaves_a_way_back() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let mut node = Node::new("cp-1");
    node.write_manifests(&format!("cp-1={}", node.peer_url()), true);
    node.start_kubelet(&bin);
    wait_for("the static etcd pod", Duration::from_secs(30), || {
        node.healthy(&bin)
    });
    seed(&node.client_url()).await;
    let store = crate::support::tempdir();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(store.path().to_path_buf()),
        &node.client_url(),
    ));
    lb.ok(&["backup", "etcd"]);
    let id = lb.backup_ids().pop().unwrap();
    let original = std::fs::read_to_string(node.manifests().join("etcd.yaml")).unwrap();
    let unchanged = |node: &Node| {
        assert_eq!(
            std::fs::read_to_string(node.manifests().join("etcd.yaml")).unwrap(),
            original
        );
        assert!(node.manifests().join("kube-apiserver.yaml").exists());
        assert!(node.created_dirs().is_empty(), "{:?}", node.created_dirs());
    };

    // On a terminal it asks, and anything but "yes" changes nothing.
    let args = node.restore_args(&lb, &bin);
    let line = std::iter::once(crate::support::lifeboat::bin().display().to_string())
        .chain(["--config".into(), lb.config.display().to_string()])
        .chain(args)
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut tty = Command::new("script");
    tty.args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = tty.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"no\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("Type 'yes' to continue") && shown.contains("not confirmed"),
        "{shown}"
    );
    unchanged(&node);

    // A wrong identity: refused before anything on the node changes.
    let other = lb.path("other.txt");
    lb.ok(&["keygen", "--output-file", other.to_str().unwrap()]);
    let mut args = node.restore_args(&lb, &bin);
    args[3] = other.display().to_string();
    args.push("--yes".into());
    let err = lb.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("none of the identities"), "{err}");
    unchanged(&node);

    // A corrupt backup: the same.
    let object = store
        .path()
        .join(format!("test-cluster/etcd/{id}/snapshot.db.zst.age"));
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    std::fs::write(&object, &bytes).unwrap();
    let mut args = node.restore_args(&lb, &bin);
    args.push("--yes".into());
    let err = lb.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("does not match its manifest"), "{err}");
    unchanged(&node);
    bytes[at] ^= 0x40;
    std::fs::write(&object, &bytes).unwrap();

    // etcdutl fails half way: the message says how the node stands and how to roll back.
    let fake = lb.path("etcdutl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncase \"$*\" in\n  version) echo 'etcdutl version: 3.5.1';;\n  *--help*) {real} snapshot restore --help;;\n  *) for a in \"$@\"; do case \"$a\" in --data-dir=*) mkdir -p \"${{a#--data-dir=}}/member\";; esac; done; echo 'Error: simulated: disk full' >&2; exit 1;;\nesac\n",
            real = bin.join("etcdutl").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut args = node.restore_args(&lb, &bin);
    args[7] = fake.display().to_string();
    args.push("--yes".into());
    let err = lb.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("restoring the snapshot failed") && err.contains("simulated: disk full"),
        "{err}"
    );
    let rollback = err
        .split("To roll back: ")
        .nth(1)
        .expect("a rollback command")
        .lines()
        .next()
        .unwrap();
    let rollback = rollback.split(";").next().unwrap().trim();
    assert!(
        !node.manifests().join("etcd.yaml").exists(),
        "etcd is stopped"
    );
    assert!(err.contains("The verified snapshot is kept at"), "{err}");
    run_ok(Command::new("sh").arg("-c").arg(rollback));
    wait_for(
        "the original etcd after the rollback",
        Duration::from_secs(30),
        || node.healthy(&bin),
    );
    assert_eq!(
        std::fs::read_to_string(node.manifests().join("etcd.yaml")).unwrap(),
        original
    );
    assert!(node.manifests().join("kube-apiserver.yaml").exists());
}

/// A lifeboat run in the background whose output is collected as it comes, so a test can act
/// (send a signal, freeze the kubelet) at a chosen step.
struct Background {
    child: std::process::Child,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(mut cmd: Command) -> Background {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut readers = Vec::new();
        let pipes: [(Box<dyn std::io::Read + Send>, _); 2] = [
            (Box::new(child.stdout.take().unwrap()), stdout.clone()),
            (Box::new(child.stderr.take().unwrap()), stderr.clone()),
        ];
        for (pipe, sink) in pipes {
            readers.push(std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut s = sink.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            }));
        }
        Background {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn output(&self) -> String {
        format!(
            "{}{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }

    fn wait_for_output(&self, needle: &str, limit: Duration) {
        let start = std::time::Instant::now();
        while !self.output().contains(needle) {
            assert!(
                start.elapsed() < limit,
                "no {needle:?} after {limit:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, name: &str) {
        run_ok(
            Command::new("kill")
                .arg(format!("-{name}"))
                .arg(self.child.id().to_string()),
        );
    }

    /// Waits for the exit (at most `limit`); (success, stdout, stderr).
    fn finish(mut self, limit: Duration) -> (bool, String, String) {
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("lifeboat did not exit within {limit:?}:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        (status.success(), out, err)
    }
}

/// The command after "To roll back: ", as printed.
fn rollback_line(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("To roll back: "))
        .unwrap_or_else(|| panic!("no rollback command in:\n{text}"))
        .trim()
        .to_string()
}

/// A single kubeadm-style node with a running static etcd holding seeded keys, backed up to a
/// file store.
async fn backed_up_node(
    version: Version,
    tls: bool,
) -> Option<(
    Node,
    PathBuf,
    Lifeboat,
    tempfile::TempDir,
    std::collections::BTreeMap<String, Vec<u8>>,
    Option<tempfile::TempDir>,
)> {
    let bin = require_version(version)?;
    let mut node = Node::new("cp-1");
    node.tool = if version == Version::V34 {
        "etcdctl"
    } else {
        "etcdutl"
    };
    let pki_dir = if tls {
        let dir = crate::support::tempdir();
        node.tls = Some(crate::support::tls::make(dir.path())?);
        Some(dir)
    } else {
        None
    };
    node.write_manifests(&format!("cp-1={}", node.peer_url()), true);
    node.start_kubelet(&bin);
    wait_for("the static etcd pod", Duration::from_secs(30), || {
        node.healthy(&bin)
    });
    let store = crate::support::tempdir();
    let mut setup = Setup::new(
        StoreAt::File(store.path().to_path_buf()),
        &node.client_url(),
    );
    if let Some(pki) = &node.tls {
        setup.etcd_tls = Some((
            pki.ca.clone(),
            Some((pki.client_cert.clone(), pki.client_key.clone())),
        ));
    }
    let lb = Lifeboat::new(setup);
    let expected = if tls {
        std::collections::BTreeMap::new()
    } else {
        seed(&node.client_url()).await
    };
    lb.ok(&["backup", "etcd"]);
    Some((node, bin, lb, store, expected, pki_dir))
}

/// Regression: Ctrl-C while the guided restore waited for etcd to stop left the control plane
/// down with no instructions, and a relative --manifest printed a rollback into `/`.
async fn sigint_while_etcd_will_not_stop(version: Version) {
    let Some((node, bin, lb, _store, expected, _)) = backed_up_node(version, false).await else {
        return;
    };
    let original = std::fs::read_to_string(node.manifests().join("etcd.yaml")).unwrap();
    let kubelet = node.kubelet.as_ref().unwrap();
    kubelet.freeze();
    let mut args = node.restore_args(&lb, &bin);
    args[5] = "etc/kubernetes/manifests/etcd.yaml".into();
    args.push("--yes".into());
    let mut cmd = lb.cmd();
    cmd.args(&args).current_dir(node.root.path());
    let run = Background::start(cmd);
    run.wait_for_output("waiting for etcd to stop", Duration::from_secs(60));
    run.signal("INT");
    let (ok, out, err) = run.finish(Duration::from_secs(30));
    assert!(!ok, "{out}\n{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("interrupted by SIGINT while waiting for etcd to stop"),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "etcd: running (127.0.0.1:{} accepts connections)",
            node.client
        )),
        "the state says what was observed: {all}"
    );
    let root = node.root.path().display().to_string();
    let rollback = rollback_line(&all);
    assert!(
        rollback.starts_with(&format!("mv -f {root}/etc/kubernetes/lifeboat-restore-"))
            && rollback.ends_with(&format!("{root}/etc/kubernetes/manifests/")),
        "absolute paths, beside the manifests directory: {rollback}"
    );
    assert!(!node.manifests().join("etcd.yaml").exists());
    // The printed command works from any directory.
    run_ok(Command::new("sh").arg("-c").arg(&rollback).current_dir("/"));
    kubelet.thaw();
    assert_eq!(
        std::fs::read_to_string(node.manifests().join("etcd.yaml")).unwrap(),
        original
    );
    assert!(node.manifests().join("kube-apiserver.yaml").exists());
    wait_for("etcd after the rollback", Duration::from_secs(30), || {
        node.healthy(&bin)
    });
    assert!(
        dump(&node.client_url()).await == expected,
        "nothing was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_while_waiting_for_etcd35_to_stop_prints_the_observed_state_and_a_working_rollback()
{
    sigint_while_etcd_will_not_stop(Version::V35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_while_waiting_for_etcd34_to_stop_prints_the_observed_state_and_a_working_rollback()
{
    sigint_while_etcd_will_not_stop(Version::V34).await;
}

/// Regression: a signal after the new etcd.yaml was written left no instructions; and the
/// health wait printed the same warning hundreds of times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_waiting_for_the_restored_etcd_reports_it_down_and_the_rollback_works() {
    let Some((node, bin, lb, _store, expected, _)) = backed_up_node(Version::V35, false).await
    else {
        return;
    };
    let original = std::fs::read_to_string(node.manifests().join("etcd.yaml")).unwrap();
    let kubelet = node.kubelet.as_ref().unwrap();
    let mut args = node.restore_args(&lb, &bin);
    args.push("--yes".into());
    let mut cmd = lb.cmd();
    cmd.args(&args);
    let run = Background::start(cmd);
    // The old etcd stops; then the kubelet hangs and never starts the restored one.
    run.wait_for_output("Restoring into", Duration::from_secs(60));
    kubelet.freeze();
    run.wait_for_output("etcd is down", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    run.signal("TERM");
    let (ok, out, err) = run.finish(Duration::from_secs(30));
    assert!(!ok);
    let all = format!("{out}{err}");
    assert!(
        all.contains("interrupted by SIGTERM while waiting for the restored etcd"),
        "{all}"
    );
    assert_eq!(
        all.matches("etcd is down").count(),
        1,
        "said once, not every probe: {all}"
    );
    assert!(all.contains("the regenerated one"), "{all}");
    assert!(
        all.contains(&format!(
            "etcd: not running (nothing accepts connections on 127.0.0.1:{})",
            node.client
        )),
        "{all}"
    );
    assert!(all.contains("To keep the restore instead"), "{all}");
    run_ok(Command::new("sh").arg("-c").arg(rollback_line(&all)));
    kubelet.thaw();
    wait_for("the original etcd", Duration::from_secs(30), || {
        node.healthy(&bin)
    });
    assert_eq!(
        std::fs::read_to_string(node.manifests().join("etcd.yaml")).unwrap(),
        original
    );
    assert!(node.manifests().join("kube-apiserver.yaml").exists());
    assert!(dump(&node.client_url()).await == expected);
}

/// Regression: with a wrong etcd.tls.ca_file the guided restore stopped the control plane,
/// restored, then waited the whole --wait for an etcd it could not talk to (hundreds of
/// warnings) and advised rolling back a restore that had worked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_file_is_refused_before_the_node_changes_and_told_apart_from_a_down_etcd() {
    let Some((node, bin, mut lb, store, _, _pki_dir)) = backed_up_node(Version::V35, true).await
    else {
        return;
    };
    let pki = node.tls.as_ref().unwrap();
    let original = std::fs::read_to_string(node.manifests().join("etcd.yaml")).unwrap();
    let mut setup = Setup::new(
        StoreAt::File(store.path().to_path_buf()),
        &node.client_url(),
    );
    setup.etcd_tls = Some((
        pki.other_ca.clone(),
        Some((pki.client_cert.clone(), pki.client_key.clone())),
    ));
    lb.write_config(&setup);
    for extra in ["--dry-run", "--yes"] {
        let mut args = node.restore_args(&lb, &bin);
        args.push(extra.into());
        let err = lb.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            err.contains("lifeboat cannot check this node's etcd")
                && err.contains(&format!(
                    "not signed by etcd.tls.ca_file {}",
                    pki.other_ca.display()
                ))
                && err.contains("--skip-etcd-check"),
            "{extra}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(node.manifests().join("etcd.yaml")).unwrap(),
            original
        );
        assert!(node.manifests().join("kube-apiserver.yaml").exists());
        assert!(node.created_dirs().is_empty(), "{:?}", node.created_dirs());
    }

    // Forced past the check, the restore works, but the wait says what it sees: etcd down
    // while it restarts, then an authentication failure, each said once, not hundreds of times.
    let mut args = node.restore_args(&lb, &bin);
    args[9] = "20s".into();
    args.extend(["--yes".into(), "--skip-etcd-check".into()]);
    let out = lb.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.matches("lifeboat cannot authenticate to etcd").count() <= 2,
        "{all}"
    );
    assert!(
        all.contains("last seen: lifeboat cannot authenticate"),
        "{all}"
    );
    assert!(all.contains("Do not roll back on this alone"), "{all}");
    assert!(
        all.lines().filter(|l| l.contains("WARN")).count() < 5,
        "no warning per probe: {all}"
    );
    assert!(node.healthy(&bin), "the restored etcd runs fine");
}

/// Regression: the verified snapshot a failed guided restore keeps made the next run fail
/// with "choose another --to-file" (a flag never given), while the dry run passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_guided_restore_does_not_block_its_own_rerun() {
    let Some((node, bin, lb, _store, expected, _)) = backed_up_node(Version::V35, false).await
    else {
        return;
    };
    let id = lb.backup_ids().pop().unwrap();
    let fake = lb.path("etcdutl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncase \"$*\" in\n  version) echo 'etcdutl version: 3.5.1';;\n  *--help*) {real} snapshot restore --help;;\n  *) echo 'Error: simulated: disk full' >&2; exit 1;;\nesac\n",
            real = bin.join("etcdutl").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut args = node.restore_args(&lb, &bin);
    args[7] = fake.display().to_string();
    args.push("--yes".into());
    let err = lb.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let kept = node
        .root
        .path()
        .join(format!("var/lib/etcd-restore-{id}.snapshot.db"));
    assert!(
        err.contains(&format!(
            "The verified snapshot is kept at {}",
            kept.display()
        )),
        "{err}"
    );
    run_ok(Command::new("sh").arg("-c").arg(rollback_line(&err)));
    wait_for("etcd after the rollback", Duration::from_secs(30), || {
        node.healthy(&bin)
    });

    // Another file where the kept one should be: both the dry run and the real run refuse,
    // naming --snapshot, before anything changes.
    let good = lb.path("kept.db");
    std::fs::rename(&kept, &good).unwrap();
    std::fs::write(&kept, b"not a snapshot").unwrap();
    for extra in ["--dry-run", "--yes"] {
        let mut args = node.restore_args(&lb, &bin);
        args.push(extra.into());
        let err = lb.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            err.contains(&format!("pass --snapshot {}", kept.display()))
                && !err.contains("--to-file"),
            "{extra}: {err}"
        );
        assert!(node.manifests().join("etcd.yaml").exists());
    }
    std::fs::rename(&good, &kept).unwrap();

    // The kept file itself: the dry run says it will be reused, and the real run reuses it.
    let mut args = node.restore_args(&lb, &bin);
    args.push("--dry-run".into());
    let out = lb.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("Reusing {}", kept.display())),
        "{said}"
    );
    assert!(kept.exists(), "the dry run leaves the kept file");
    wipe(&node.client_url()).await;
    let mut args = node.restore_args(&lb, &bin);
    args.push("--yes".into());
    let out = lb.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("Restored."), "{out}");
    assert!(dump(&node.client_url()).await == expected);

    // A run killed during its download left a partial file where the next one downloads to:
    // the next run removes it instead of failing on it.
    let second = node.root.path().join("var/lib/etcd-second");
    let partial = node
        .root
        .path()
        .join("var/lib/etcd-second.snapshot.db.lifeboat-partial");
    std::fs::write(&partial, b"half a download").unwrap();
    let mut args = node.restore_args(&lb, &bin);
    args.extend([
        "--data-dir".into(),
        second.display().to_string(),
        "--yes".into(),
    ]);
    let out = lb.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("Restored."), "{out}");
    assert!(!partial.exists());
    assert!(dump(&node.client_url()).await == expected);
}

/// Makes `file` impossible to rename or remove, for as long as the guard lives: immutable as
/// root, else a read-only directory.
struct Stuck(PathBuf, bool);

impl Stuck {
    fn new(file: &Path) -> Stuck {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if root {
            run_ok(Command::new("chattr").arg("+i").arg(file));
        } else {
            std::fs::set_permissions(
                file.parent().unwrap(),
                std::os::unix::fs::PermissionsExt::from_mode(0o555),
            )
            .unwrap();
        }
        Stuck(file.to_path_buf(), root)
    }
}

impl Drop for Stuck {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        } else {
            let _ = std::fs::set_permissions(
                self.0.parent().unwrap(),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            );
        }
    }
}

/// Regression: when moving kube-apiserver.yaml failed after its fallback copy was made, the
/// message said the backup directory was empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_move_of_kube_apiserver_yaml_is_reported_as_it_stands_on_disk() {
    let Some((node, bin, lb, _store, _, _)) = backed_up_node(Version::V35, false).await else {
        return;
    };
    let api = node.manifests().join("kube-apiserver.yaml");
    let stuck = Stuck::new(&api);
    let mut args = node.restore_args(&lb, &bin);
    args.push("--yes".into());
    let err = lb.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    drop(stuck);
    assert!(
        err.contains("moving kube-apiserver.yaml out failed"),
        "{err}"
    );
    let backup = node.root.path().join("etc/kubernetes").join(
        node.created_dirs()
            .into_iter()
            .find(|d| d.starts_with("lifeboat-restore-"))
            .expect("the backup dir was created"),
    );
    assert!(
        !backup.join("kube-apiserver.yaml").exists(),
        "the half-done move was undone"
    );
    assert!(
        err.contains(&format!(
            "kube-apiserver.yaml: in {} only",
            node.manifests().display()
        )) && err.contains(&format!("{}/etcd.yaml: absent", backup.display())),
        "the message matches the disk: {err}"
    );
    assert!(err.contains("Nothing to roll back"), "{err}");
    assert!(node.healthy(&bin), "etcd was never stopped");
}
