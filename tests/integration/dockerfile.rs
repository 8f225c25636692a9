//! The Dockerfile's promises, checked statically because no container engine runs here: pinned
//! base images, etcd and etcdutl copied in from a pinned etcd image, protoc with its well-known
//! types in the build stage, a numeric non-root USER matching the deploy manifests, the
//! lifeboat ENTRYPOINT, and a .dockerignore that keeps target/ and .git out of the context.

use std::collections::BTreeMap;
use std::path::Path;

fn repo_file(rel: &str) -> String {
    crate::support::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
}

/// The Dockerfile as instructions (continuation lines joined, comments dropped).
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (op, rest) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((op.to_ascii_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    out
}

/// Whether an image reference names one exact build: a digest, or a tag with a full
/// `major.minor.patch` version (`1.89.0-bookworm`, `v3.5.21`, `12.11-slim` for Debian point
/// releases), never `latest` or a moving `1-bookworm`.
fn pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let Some((_, tag)) = image.rsplit_once(':') else {
        return false;
    };
    let version = tag.trim_start_matches('v');
    let numeric: String = version
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let parts = numeric.trim_end_matches('.').split('.').count();
    let debian_point = image.starts_with("debian:") && parts >= 2;
    parts >= 3 || debian_point
}

#[test]
fn the_dockerfile_pins_its_bases_runs_non_root_and_carries_etcd_and_etcdutl() {
    // Regression: the image ran as root (USER 0), had no etcd/etcdutl (drills failed) and built
    // from moving tags (rust:1-bookworm, debian:bookworm-slim).
    let text = repo_file("Dockerfile");
    let ins = instructions(&text);

    // Stages: every FROM pinned; remember stage names.
    let mut stages: BTreeMap<String, String> = BTreeMap::new();
    let mut last_stage_start = 0;
    for (i, (op, args)) in ins.iter().enumerate() {
        if op == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let image = words[0];
            assert!(
                pinned(image),
                "FROM {image} is not pinned to an exact version"
            );
            if let Some(pos) = words.iter().position(|w| w.eq_ignore_ascii_case("as")) {
                stages.insert(words[pos + 1].to_string(), image.to_string());
            }
            last_stage_start = i;
        }
    }
    assert!(
        stages.len() >= 2,
        "a build stage and an etcd stage: {stages:?}"
    );
    let etcd_image = stages
        .values()
        .find(|i| i.contains("etcd"))
        .expect("a stage from etcd's release image");
    assert!(
        etcd_image.contains(":v3.5."),
        "etcd 3.5 (matches the clusters lifeboat supports): {etcd_image}"
    );

    // The build stage has protoc and the well-known types, and builds the release binary locked.
    let runs: Vec<&String> = ins
        .iter()
        .filter(|(op, _)| op == "RUN")
        .map(|(_, a)| a)
        .collect();
    assert!(
        runs.iter()
            .any(|r| r.contains("protobuf-compiler") && r.contains("libprotobuf-dev")),
        "protoc needs libprotobuf-dev's google/protobuf/*.proto"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("cargo build --release --locked --bin lifeboat")),
        "{runs:?}"
    );

    // The final stage copies the three binaries from named stages.
    let final_stage = &ins[last_stage_start..];
    let copies: Vec<(String, String)> = final_stage
        .iter()
        .filter(|(op, _)| op == "COPY")
        .filter_map(|(_, a)| {
            let w: Vec<&str> = a.split_whitespace().collect();
            let from = w.first()?.strip_prefix("--from=")?;
            Some((from.to_string(), w.last()?.to_string()))
        })
        .collect();
    for bin in ["etcd", "etcdutl", "lifeboat"] {
        let dest = format!("/usr/local/bin/{bin}");
        let (from, _) = copies
            .iter()
            .find(|(_, d)| *d == dest)
            .unwrap_or_else(|| panic!("the image does not carry {dest}: {copies:?}"));
        assert!(
            stages.contains_key(from),
            "COPY --from={from} names no stage"
        );
    }

    // A numeric, non-root USER in the final stage, the same the Deployment runs as.
    let user = final_stage
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, a)| a.clone())
        .expect("the final stage sets USER");
    let uid: u32 =
        user.split(':').next().unwrap().parse().unwrap_or_else(|_| {
            panic!("USER {user} is not numeric (runAsNonRoot cannot check it)")
        });
    assert_ne!(uid, 0, "the image runs as root");
    let deployment = repo_file("deploy/base/deployment.yaml");
    assert!(
        deployment.contains(&format!("runAsUser: {uid}")),
        "deploy/base/deployment.yaml runs lifeboat as the image's user {uid}"
    );

    // ENTRYPOINT in exec form, the lifeboat binary.
    let entry = final_stage
        .iter()
        .rev()
        .find(|(op, _)| op == "ENTRYPOINT")
        .map(|(_, a)| a.clone())
        .expect("an ENTRYPOINT");
    assert_eq!(entry, r#"["/usr/local/bin/lifeboat"]"#);

    // The build context leaves out the target dir, git history and local demo state.
    let ignore = repo_file(".dockerignore");
    let entries: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for must in ["target", ".git", "demo"] {
        assert!(
            entries.contains(&must),
            ".dockerignore does not exclude {must}"
        );
    }
}

#[test]
fn moving_image_tags_are_not_pinned() {
    // The checker itself: the old Dockerfile's FROM lines fail it, exact versions pass.
    for moving in [
        "rust:1-bookworm",
        "debian:bookworm-slim",
        "gcr.io/etcd-development/etcd:latest",
        "rust",
    ] {
        assert!(!pinned(moving), "{moving}");
    }
    for exact in [
        "rust:1.89.0-bookworm",
        "debian:12.11-slim",
        "gcr.io/etcd-development/etcd:v3.5.21",
        "debian:bookworm-slim@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        assert!(pinned(exact), "{exact}");
    }
}
