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
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .build()
                .unwrap(),
        )
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
