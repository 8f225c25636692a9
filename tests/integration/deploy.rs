//! deploy/ as a platform team installs it: each kustomize overlay renders with the real
//! `kubectl kustomize`, every rendered object passes `kubernetes-validate --strict` against the
//! Kubernetes schemas, the real kubectl applies it server-side to the test API server (into an
//! empty cluster, so the Namespace must come first), and the security properties hold: only the
//! etcd client pair and CA from the node (never ca.key/server.key/peer.key, never the pki/etcd
//! directory), a non-root lifeboat container with RuntimeDefault seccomp, a Pod Security label,
//! read-only RBAC without subresources, a PodDisruptionBudget, images by digest.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::kube_api::{KubeApi, Seed};
use crate::support::{require, run_ok, which};

fn deploy_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

/// `kubectl kustomize DIR`, as text and as objects.
fn render(kubectl: &Path, rel: &str) -> (String, Vec<Value>) {
    let text = run_ok(Command::new(kubectl).arg("kustomize").arg(deploy_dir(rel)));
    let objects = text
        .split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            serde_saphyr::from_str::<Value>(d)
                .unwrap_or_else(|e| panic!("{rel} renders YAML that does not parse: {e}\n{d}"))
        })
        .collect();
    (text, objects)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn all<'a>(objects: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    objects.iter().filter(move |o| o["kind"] == kind)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Validates a rendered overlay offline against the Kubernetes schemas, in strict mode.
fn validate(validator: &Path, rel: &str, text: &str) {
    let dir = crate::support::tempdir();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(validator)
        .arg("--strict")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{rel} does not validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The checks every overlay must pass; returns the Deployment's pod spec.
fn check_security(rel: &str, objects: &[Value]) -> Value {
    // The Namespace carries the Pod Security level the pod needs: hostPath => privileged.
    let ns = find(objects, "Namespace", "lifeboat").expect("a Namespace");
    let level = ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        .as_str()
        .unwrap_or_else(|| panic!("{rel}: the Namespace has no pod-security enforce label"));
    assert_eq!(
        objects.iter().position(|o| o["kind"] == "Namespace"),
        Some(0),
        "{rel}: the Namespace must be created first"
    );

    let deployment = find(objects, "Deployment", "lifeboat").expect("a Deployment");
    let pod = deployment["spec"]["template"]["spec"].clone();
    assert_ne!(pod["hostNetwork"], true, "{rel}: no hostNetwork");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{rel}: pod seccomp"
    );
    assert!(
        pod["securityContext"]["fsGroup"].is_null(),
        "{rel}: kubelet makes Secret files group-readable under fsGroup, which lifeboat refuses"
    );

    // hostPath: single files of the etcd client pair and CA, mounted by the init step only.
    let allowed: BTreeSet<&str> = [
        "/etc/kubernetes/pki/etcd/ca.crt",
        "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
        "/etc/kubernetes/pki/etcd/healthcheck-client.key",
        "/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "/etc/kubernetes/pki/apiserver-etcd-client.key",
    ]
    .into();
    let mut host_volumes = BTreeSet::new();
    let mut empty_dirs = BTreeSet::new();
    for v in pod["volumes"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap().to_string();
        if let Some(path) = v["hostPath"]["path"].as_str() {
            for secret in ["ca.key", "server.key", "peer.key"] {
                assert!(!path.ends_with(secret), "{rel}: mounts {path}");
            }
            assert!(
                allowed.contains(path.trim_end_matches('/')),
                "{rel}: hostPath {path} is not one of the etcd client files {allowed:?}"
            );
            assert_eq!(
                v["hostPath"]["type"], "File",
                "{rel}: {path} must be a File"
            );
            host_volumes.insert(name);
        } else if v.get("emptyDir").is_some() {
            empty_dirs.insert(name);
        }
    }
    assert!(
        !host_volumes.is_empty(),
        "{rel}: the etcd client files come from the node"
    );
    // baseline and restricted both forbid hostPath volumes.
    assert_eq!(level, "privileged", "{rel}: hostPath needs privileged");

    let main = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "lifeboat")
        .expect("the lifeboat container");
    let sc = &main["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{rel}: runAsNonRoot");
    assert!(sc["runAsUser"].as_u64().is_some_and(|u| u != 0), "{rel}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{rel}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{rel}");
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"], "{rel}");
    assert!(
        sc["capabilities"]["add"].is_null(),
        "{rel}: no capabilities"
    );
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{rel}");
    let mounts = main["volumeMounts"].as_array().unwrap();
    for m in mounts {
        let name = m["name"].as_str().unwrap();
        assert!(
            !host_volumes.contains(name),
            "{rel}: the lifeboat container mounts a node file ({name})"
        );
    }
    let tmp = mounts
        .iter()
        .find(|m| m["mountPath"] == "/tmp")
        .unwrap_or_else(|| panic!("{rel}: no writable /tmp"));
    assert!(empty_dirs.contains(tmp["name"].as_str().unwrap()), "{rel}");
    assert_ne!(tmp["readOnly"], true, "{rel}: /tmp is writable");

    // The init step: root only to read the root-only key; nothing but CHOWN.
    for c in pod["initContainers"].as_array().into_iter().flatten() {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{rel}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{rel}");
        assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"], "{rel}");
        assert_eq!(strs(&sc["capabilities"]["add"]), ["CHOWN"], "{rel}");
        assert_ne!(sc["privileged"], true, "{rel}");
    }

    // Images by registry and digest.
    for c in pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pod["initContainers"].as_array().into_iter().flatten())
    {
        let image = c["image"].as_str().unwrap();
        let (repo, digest) = image
            .split_once("@sha256:")
            .unwrap_or_else(|| panic!("{rel}: image {image} is not pinned by digest"));
        assert!(repo.contains('/') && repo.contains('.'), "{rel}: {image}");
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{rel}: {image}"
        );
    }

    // Scheduling that works on 1, 2 and 3 control-plane nodes.
    assert!(
        pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            .is_null(),
        "{rel}: required anti-affinity leaves a replica Pending on one node"
    );
    let rolling = &deployment["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(rolling["maxSurge"], 0, "{rel}");
    assert_eq!(rolling["maxUnavailable"], 1, "{rel}");

    // A PodDisruptionBudget that selects the pods and lets one go at a time.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let pdb = all(objects, "PodDisruptionBudget")
        .next()
        .unwrap_or_else(|| panic!("{rel}: no PodDisruptionBudget"));
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "{rel}: the PDB selects the pods");
    }
    assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{rel}");

    // Metrics on a named port that the shipped NetworkPolicy restricts.
    let np = all(objects, "NetworkPolicy")
        .next()
        .unwrap_or_else(|| panic!("{rel}: no NetworkPolicy"));
    let port = &np["spec"]["ingress"][0]["ports"][0]["port"];
    assert!(
        main["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| &p["name"] == port),
        "{rel}: the NetworkPolicy names the container's port ({port})"
    );

    // The Lease role: get/update on the one Lease by name; create (not name-scopable) alone.
    let role = find(objects, "Role", "lifeboat-leader-election").expect("the Lease role");
    for rule in role["rules"].as_array().unwrap() {
        assert_eq!(strs(&rule["resources"]), ["leases"], "{rel}");
        let verbs = strs(&rule["verbs"]);
        if verbs == ["create"] {
            continue;
        }
        assert!(
            verbs.iter().all(|v| v == "get" || v == "update"),
            "{rel}: {verbs:?}"
        );
        assert_eq!(strs(&rule["resourceNames"]), ["lifeboat"], "{rel}");
    }
    pod
}

/// The export's ClusterRole: list (and get on discovery URLs) only, no subresources.
fn check_export_role(rel: &str, objects: &[Value]) {
    let role = find(objects, "ClusterRole", "lifeboat-export")
        .unwrap_or_else(|| panic!("{rel}: no export ClusterRole"));
    for rule in role["rules"].as_array().unwrap() {
        let verbs = strs(&rule["verbs"]);
        if rule.get("nonResourceURLs").is_some() {
            assert_eq!(verbs, ["get"], "{rel}");
            continue;
        }
        // `get` on "*" would reach nodes/proxy and pods/exec: only list, which no subresource has.
        assert_eq!(verbs, ["list"], "{rel}");
        for r in strs(&rule["resources"]) {
            assert!(!r.contains('/'), "{rel}: subresource {r}");
        }
    }
}

/// Applies the rendered overlay to an empty test API server, as `kubectl apply -k` would.
fn apply(kubectl: &Path, rel: &str, text: &str) -> KubeApi {
    let api = KubeApi::start(Seed::Empty);
    // PodDisruptionBudget and NetworkPolicy are not in the test server's default catalog.
    api.serve_deploy_kinds();
    let dir = crate::support::tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, text).unwrap();
    let kc = || {
        let mut c = Command::new(kubectl);
        c.arg("--kubeconfig").arg(&kubeconfig);
        c
    };
    run_ok(kc().args(["apply", "--server-side", "-f"]).arg(&file));
    assert!(
        api.get("namespaces", None, "lifeboat").is_some(),
        "{rel}: applied"
    );
    api
}

/// The embedded lifeboat.yaml is a valid configuration (with its files provided).
fn check_config(rel: &str, api: &KubeApi, objects: &[Value]) -> lifeboat::config::Config {
    let cm = all(objects, "ConfigMap")
        .find(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("lifeboat-config-")
        })
        .unwrap_or_else(|| panic!("{rel}: no hashed lifeboat-config ConfigMap"));
    let name = cm["metadata"]["name"].as_str().unwrap();
    let stored = api
        .get("configmaps", Some("lifeboat"), name)
        .expect("configmap applied");
    let (_files, text) =
        crate::support::with_scratch_files(stored["data"]["lifeboat.yaml"].as_str().unwrap());
    lifeboat::config::Config::parse(Path::new(rel), &text)
        .unwrap_or_else(|e| panic!("{rel}: the ConfigMap's lifeboat.yaml: {e}"))
}

#[test]
fn every_deploy_overlay_renders_validates_applies_and_is_locked_down() {
    // Regression: `kubectl apply -k deploy/` failed (no kustomization), and the pod ran as root
    // with hostNetwork, the whole pki/etcd directory and get/list on `*/*`.
    let Some(kubectl) = require("kubectl", which("kubectl")) else {
        return;
    };
    let Some(validator) = require("kubernetes-validate", which("kubernetes-validate")) else {
        return;
    };
    // The validator is strict: an unknown field fails (so a pass below means something).
    validate_refuses_unknown_fields(&validator);

    for rel in ["base", "overlays/resources", "overlays/drills"] {
        let (text, objects) = render(&kubectl, rel);
        validate(&validator, rel, &text);
        let pod = check_security(rel, &objects);
        let api = apply(&kubectl, rel, &text);
        let deployment = api
            .get("deployments.apps", Some("lifeboat"), "lifeboat")
            .expect("deployment applied");
        assert_eq!(deployment["spec"]["replicas"], 2);
        assert!(
            api.get(
                "roles.rbac.authorization.k8s.io",
                Some("lifeboat"),
                "lifeboat-leader-election"
            )
            .is_some()
        );
        assert!(
            api.get("poddisruptionbudgets.policy", Some("lifeboat"), "lifeboat")
                .is_some()
        );
        let cfg = check_config(rel, &api, &objects);
        assert!(cfg.leader_election.is_some(), "{rel}");
        let export_role = api.get(
            "clusterroles.rbac.authorization.k8s.io",
            None,
            "lifeboat-export",
        );
        let plans: Vec<&str> = cfg.plans.iter().map(|p| p.name.as_str()).collect();
        match rel {
            "base" => {
                // etcd snapshots only: no read access to the cluster's objects at all.
                assert!(find(&objects, "ClusterRole", "lifeboat-export").is_none());
                assert!(export_role.is_none());
                assert_eq!(plans, ["etcd"]);
            }
            "overlays/resources" => {
                check_export_role(rel, &objects);
                assert!(export_role.is_some());
                assert_eq!(plans, ["etcd", "resources"]);
            }
            "overlays/drills" => {
                assert!(find(&objects, "ClusterRole", "lifeboat-export").is_none());
                assert!(cfg.drill.schedule.is_some() && cfg.drill.identity_file.is_some());
                let init = &pod["initContainers"][0];
                assert!(
                    init["volumeMounts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|m| m["name"] == "drill-identity"),
                    "the init step copies the drill identity"
                );
            }
            _ => unreachable!(),
        }
    }
}

fn validate_refuses_unknown_fields(validator: &Path) {
    let dir = crate::support::tempdir();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\nautomountToken: true\n",
    )
    .unwrap();
    let out = Command::new(validator)
        .arg("--strict")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "kubernetes-validate --strict accepted an unknown field"
    );
}

#[test]
fn the_init_step_hands_lifeboat_private_copies_of_exactly_the_files_it_needs() {
    // Regression: with the etcd key root-only on the node, a non-root lifeboat could not read
    // it; group-readable copies (fsGroup) would be refused by lifeboat's own mode check.
    let Some(kubectl) = require("kubectl", which("kubectl")) else {
        return;
    };
    let (_text, objects) = render(&kubectl, "overlays/drills");
    let pod = &find(&objects, "Deployment", "lifeboat").unwrap()["spec"]["template"]["spec"];
    let init = &pod["initContainers"][0];
    assert_eq!(strs(&init["command"])[..2], ["/bin/sh", "-ec"]);
    let script = init["command"][2].as_str().unwrap();

    let dir = crate::support::tempdir();
    let root = dir.path();
    let input = |rel: &str, text: &str| {
        let p = root.join("in").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        // As on the node and in a Secret volume: root-only (here: owner-only).
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    };
    let drill = ::lifeboat::keys::generate(chrono::Utc::now());
    for f in [
        "ca.crt",
        "healthcheck-client.crt",
        "healthcheck-client.key",
        "ca.key",
    ] {
        input(&format!("etcd/{f}"), f);
    }
    input("s3/access-key-id", "AKIDEXAMPLE\n");
    input("s3/secret-access-key", "s3cr3t\n");
    input("drill/key.txt", &drill.file_text);
    std::fs::create_dir(root.join("keys")).unwrap();

    // Run the script as written, with its directories moved under the temp dir. Not as root,
    // files cannot be given to 65532: then they stay with the running user.
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata(root).unwrap().uid();
    let mut script = script
        .replace("/in/", &format!("{}/in/", root.display()))
        .replace("/keys/", &format!("{}/keys/", root.display()));
    let owner = if me == 0 {
        65532
    } else {
        script = script.replace("install -o 65532 -g 65532", "install");
        me
    };
    run_ok(Command::new("sh").arg("-ec").arg(&script));

    let mut copied = Vec::new();
    for sub in ["etcd", "s3", "drill"] {
        for e in std::fs::read_dir(root.join("keys").join(sub)).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            assert_eq!(meta.uid(), owner, "{:?}", e.path());
            let name = format!("{sub}/{}", e.file_name().to_string_lossy());
            let mode = meta.mode() & 0o777;
            let want = if name.ends_with(".crt") { 0o444 } else { 0o400 };
            assert_eq!(mode, want, "{name}: mode {mode:o}");
            copied.push(name);
        }
    }
    copied.sort();
    assert_eq!(
        copied,
        [
            "drill/key.txt",
            "etcd/ca.crt",
            "etcd/healthcheck-client.crt",
            "etcd/healthcheck-client.key",
            "s3/access-key-id",
            "s3/secret-access-key"
        ]
    );

    // lifeboat accepts the copies: the ConfigMap's config, pointed at them, parses, with the
    // key files' modes, the S3 secrets and the drill identity checked as in the pod.
    let cm = all(&objects, "ConfigMap").next().unwrap();
    let text = cm["data"]["lifeboat.yaml"]
        .as_str()
        .unwrap()
        .replace("/etc/lifeboat/keys/", &format!("{}/keys/", root.display()))
        .replace(
            ::lifeboat::keys::LIFEBOAT_EXAMPLE_RECIPIENT,
            &drill.public_key,
        );
    let cfg = lifeboat::config::Config::parse(Path::new("configmap"), &text)
        .unwrap_or_else(|e| panic!("lifeboat refuses the init step's copies: {e}"));
    let creds = cfg.storage.s3.credentials.unwrap();
    assert_eq!(creds.access_key_id, "AKIDEXAMPLE");
}
