//! A real S3 server for tests: moto's standalone server on a free 127.0.0.1 port. Buckets are
//! created over plain HTTP; moto accepts any credentials.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

use super::{free_port, require, wait_for, which};

/// Credentials the tests give lifeboat and the aws CLI (moto does not check them).
pub const ACCESS_KEY: &str = "lifeboat-test";
pub const SECRET_KEY: &str = "lifeboat-test-secret";

/// The moto_server binary, or a skip (a failure under CI).
pub fn require_moto() -> Option<PathBuf> {
    require(
        "moto_server (pip install 'moto[server]')",
        which("moto_server"),
    )
}

/// A running moto server.
pub struct Moto {
    pub port: u16,
    pub endpoint: String,
    child: Child,
}

impl Moto {
    /// Starts moto and waits for it to answer.
    pub fn start(bin: &std::path::Path) -> Moto {
        let port = free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        wait_for("moto to answer", Duration::from_secs(30), || {
            moto.request("GET", "/", b"").is_some()
        });
        moto
    }

    /// Sends one raw HTTP/1.1 request; returns (status, body) or None if nothing answered.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).ok()?;
        s.write_all(body).ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((status, body))
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = self
            .request("PUT", &format!("/{name}"), b"")
            .expect("moto answers");
        assert_eq!(status, 200, "create bucket {name}: {body}");
    }

    /// How many multipart uploads are open (started, neither completed nor aborted) in a bucket.
    pub fn open_multipart_uploads(&self, bucket: &str) -> usize {
        let (status, body) = self
            .request("GET", &format!("/{bucket}?uploads"), b"")
            .expect("moto answers");
        assert_eq!(status, 200, "list uploads: {body}");
        body.matches("<UploadId>").count()
    }

    /// An object_store client for this server, to inspect and damage stored objects.
    pub fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        client_for(&self.endpoint, bucket)
    }

    /// Stops the server at once.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The s3s-fs binary (a second, independent S3 server, in Rust), or a skip (a failure under CI).
pub fn require_s3s_fs() -> Option<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin").join("s3s-fs"))
        .filter(|p| p.is_file());
    require(
        "s3s-fs (cargo install s3s-fs@0.14.1 --features binary)",
        which("s3s-fs").or(cargo_bin),
    )
}

/// A running s3s-fs server: buckets are subdirectories of its root; it checks signatures, so
/// clients must use [`ACCESS_KEY`] and [`SECRET_KEY`].
pub struct S3sFs {
    pub port: u16,
    pub endpoint: String,
    pub root: tempfile::TempDir,
    child: Child,
}

impl S3sFs {
    /// Starts s3s-fs on a fresh root and waits for it to answer.
    pub fn start(bin: &std::path::Path) -> S3sFs {
        let port = free_port();
        let root = super::tempdir();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let server = S3sFs {
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
            child,
        };
        wait_for("s3s-fs to answer", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        server
    }

    /// Creates a bucket (a directory of the root).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.path().join(name)).unwrap();
    }

    /// An object_store client for this server.
    pub fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        client_for(&self.endpoint, bucket)
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An object_store client for the S3 server at `endpoint`, with the test credentials.
pub fn client_for(endpoint: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .unwrap(),
    )
}

/// Either S3 server, for tests that run against both.
pub enum Server {
    Moto(Moto),
    S3sFs(S3sFs),
}

impl Server {
    /// Every S3 server installed here (under CI: both, or the test fails).
    pub fn all() -> Vec<Server> {
        let mut out = Vec::new();
        if let Some(bin) = require_moto() {
            out.push(Server::Moto(Moto::start(&bin)));
        }
        if let Some(bin) = require_s3s_fs() {
            out.push(Server::S3sFs(S3sFs::start(&bin)));
        }
        out
    }

    /// The server's name, for assertion messages.
    pub fn name(&self) -> &'static str {
        match self {
            Server::Moto(_) => "moto",
            Server::S3sFs(_) => "s3s-fs",
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Server::Moto(m) => m.port,
            Server::S3sFs(s) => s.port,
        }
    }

    pub fn endpoint(&self) -> &str {
        match self {
            Server::Moto(m) => &m.endpoint,
            Server::S3sFs(s) => &s.endpoint,
        }
    }

    pub fn create_bucket(&self, name: &str) {
        match self {
            Server::Moto(m) => m.create_bucket(name),
            Server::S3sFs(s) => s.create_bucket(name),
        }
    }

    pub fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        client_for(self.endpoint(), bucket)
    }
}
