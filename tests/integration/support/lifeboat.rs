//! Runs the real lifeboat binary with a generated config and key, like a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where backups go in a test.
#[derive(Clone)]
pub enum StoreAt {
    /// A `file://` directory.
    File(PathBuf),
    /// A bucket (and prefix) on an S3 endpoint.
    S3 {
        endpoint: String,
        bucket: String,
        prefix: String,
    },
}

/// A lifeboat set up for one test: config file, age key pair, working directory.
pub struct Lifeboat {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub identity: PathBuf,
    pub public_key: String,
    pub store: StoreAt,
    pub cluster: String,
}

/// Knobs for the generated config.
#[derive(Clone)]
pub struct Setup {
    pub store: StoreAt,
    pub etcd_endpoints: Vec<String>,
    pub etcd_tls: Option<(PathBuf, Option<(PathBuf, PathBuf)>)>,
    pub etcd_timeout: String,
    pub retry_timeout: String,
    pub request_timeout: String,
    pub part_size_mib: u32,
    pub upload_concurrency: u32,
    pub extra: String,
}

impl Setup {
    /// Defaults for a store and one etcd endpoint.
    pub fn new(store: StoreAt, etcd: &str) -> Setup {
        Setup {
            store,
            etcd_endpoints: vec![etcd.to_string()],
            etcd_tls: None,
            etcd_timeout: "10s".into(),
            retry_timeout: "5s".into(),
            request_timeout: "30s".into(),
            part_size_mib: 8,
            upload_concurrency: 4,
            extra: String::new(),
        }
    }
}

impl Lifeboat {
    /// Writes the config and a fresh key pair (made by `lifeboat keygen`).
    pub fn new(setup: Setup) -> Lifeboat {
        let dir = super::tempdir();
        let identity = dir.path().join("key.txt");
        let out = Command::new(bin())
            .arg("keygen")
            .arg("--output-file")
            .arg(&identity)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public_key = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let config = dir.path().join("lifeboat.yaml");
        let mut lb = Lifeboat {
            dir,
            config,
            identity,
            public_key,
            store: setup.store.clone(),
            cluster: "test-cluster".into(),
        };
        lb.write_config(&setup);
        lb
    }

    /// Rewrites the config from `setup`.
    pub fn write_config(&mut self, setup: &Setup) {
        let storage = match &setup.store {
            StoreAt::File(dir) => format!("storage:\n  url: file://{}\n", dir.display()),
            StoreAt::S3 {
                endpoint,
                bucket,
                prefix,
            } => format!(
                "storage:\n  url: s3://{bucket}/{prefix}\n  s3:\n    endpoint: {endpoint}\n    region: us-east-1\n    allow_http: true\n"
            ),
        };
        let storage = format!(
            "{storage}  retry_timeout: {}\n  request_timeout: {}\n  part_size_mib: {}\n  upload_concurrency: {}\n",
            setup.retry_timeout,
            setup.request_timeout,
            setup.part_size_mib,
            setup.upload_concurrency
        );
        let mut etcd = format!(
            "etcd:\n  endpoints: [{}]\n  timeout: {}\n",
            setup.etcd_endpoints.join(", "),
            setup.etcd_timeout
        );
        if let Some((ca, client)) = &setup.etcd_tls {
            etcd.push_str(&format!("  tls:\n    ca_file: {}\n", ca.display()));
            if let Some((cert, key)) = client {
                etcd.push_str(&format!(
                    "    cert_file: {}\n    key_file: {}\n",
                    cert.display(),
                    key.display()
                ));
            }
        }
        let text = format!(
            "cluster: {}\n{storage}encryption:\n  recipients: [\"{}\"]\n{etcd}{}",
            self.cluster, self.public_key, setup.extra
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// A command for the lifeboat binary with this config and S3 test credentials.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--config")
            .arg(&self.config)
            .env("AWS_ACCESS_KEY_ID", super::s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", super::s3::SECRET_KEY)
            .env_remove("AWS_PROFILE")
            .env("LIFEBOAT_LOG", "info");
        c
    }

    /// Runs lifeboat with `args` and returns its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs lifeboat and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "lifeboat {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs lifeboat, asserts failure, and returns stderr (the user-facing message).
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "lifeboat {args:?} should have failed:\nstdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(out.status.code(), Some(1), "failures exit with 1: {stderr}");
        stderr
    }

    /// `list --output json`, parsed.
    pub fn list(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["list", "--output", "json"])).unwrap()
    }

    /// Ids of the complete backups `list` shows.
    pub fn backup_ids(&self) -> Vec<String> {
        self.list()["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// The path of a file in this test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The lifeboat binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lifeboat"))
}
