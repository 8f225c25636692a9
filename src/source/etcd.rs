//! The etcd snapshot source: connect to the first member that answers, record its status, and
//! stream Maintenance.Snapshot into the pipeline while checking etcd's trailing sha256. etcd keeps
//! a read transaction open while it streams, so this stage forwards chunks without delay.

use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use thiserror::Error;
use tokio::time::timeout;
use url::Url;

use crate::config;
use crate::error::chain;
use crate::manifest::{self, BackupId, EtcdSource, Kind};
use crate::snapshot::{self, TrailerCheck};
use crate::source::{Closed, Output, Produced, Producer, Started};

/// Why the snapshot could not be taken.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read the etcd TLS file {path}: {source}")]
    TlsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("etcd.tls.{field} {path} {problem}")]
    TlsFileContent {
        field: &'static str,
        path: String,
        problem: &'static str,
    },
    #[error(
        "etcd.endpoints has {endpoint}, but etcd.tls is set and TLS is only spoken with https:// endpoints: write it as {https}"
    )]
    HttpWithTls { endpoint: String, https: String },
    #[error(
        "etcd at {endpoint} speaks TLS, and lifeboat spoke plain HTTP to it: write the endpoint as {https} and set etcd.tls (kubeadm: ca_file /etc/kubernetes/pki/etcd/ca.crt, cert_file and key_file /etc/kubernetes/pki/etcd/healthcheck-client.crt and .key)"
    )]
    NeedsHttps { endpoint: String, https: String },
    #[error(
        "cannot connect to etcd at {endpoint}: {reason}; check etcd.endpoints and that etcd is running and reachable from here"
    )]
    Connect { endpoint: String, reason: String },
    #[error(
        "TLS with etcd at {endpoint} failed: its server certificate is not signed by etcd.tls.ca_file {ca_file} ({reason}); point ca_file at the CA that signed etcd's --cert-file (kubeadm: /etc/kubernetes/pki/etcd/ca.crt)"
    )]
    ServerNotTrusted {
        endpoint: String,
        ca_file: String,
        reason: String,
    },
    #[error(
        "etcd at {endpoint} requires a client certificate (--client-cert-auth), and etcd.tls has none: set etcd.tls.cert_file and key_file to a client pair signed by etcd's --trusted-ca-file (kubeadm: /etc/kubernetes/pki/etcd/healthcheck-client.crt and .key)"
    )]
    ClientCertMissing { endpoint: String, reason: String },
    #[error(
        "etcd at {endpoint} refused the client certificate {cert_file} ({reason}): it must be signed by the CA in etcd's --trusted-ca-file and allow client authentication (kubeadm: /etc/kubernetes/pki/etcd/healthcheck-client.crt)"
    )]
    ClientCertRefused {
        endpoint: String,
        cert_file: String,
        reason: String,
    },
    #[error(
        "etcd at {endpoint} does not speak TLS ({reason}): write the endpoint as {http}, or enable TLS on etcd"
    )]
    NotTls {
        endpoint: String,
        http: String,
        reason: String,
    },
    #[error(
        "TLS with etcd at {endpoint} failed: {reason}; check that etcd.tls.ca_file signed etcd's server certificate (etcd's --cert-file) and that cert_file/key_file are a client pair signed by etcd's --trusted-ca-file"
    )]
    Tls { endpoint: String, reason: String },
    #[error(
        "etcd at {endpoint} did not answer within {timeout:?}; check that it is healthy (`etcdctl endpoint health`) or raise etcd.timeout"
    )]
    Timeout { endpoint: String, timeout: Duration },
    #[error("no etcd endpoint answered: {}", .attempts.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    NoEndpoint { attempts: Vec<Error> },
    #[error(
        "the snapshot stream from etcd at {endpoint} broke after {received} bytes: {reason}; etcd may have restarted or the network dropped: run the backup again"
    )]
    Stream {
        endpoint: String,
        received: u64,
        reason: String,
    },
    #[error(
        "etcd at {endpoint} sent nothing for {timeout:?} after {received} bytes of the snapshot; check etcd's health and load, or raise etcd.timeout"
    )]
    Stalled {
        endpoint: String,
        received: u64,
        timeout: Duration,
    },
    #[error(
        "the snapshot from etcd at {endpoint} failed etcd's own integrity check: {source}; run the backup again"
    )]
    Integrity {
        endpoint: String,
        #[source]
        source: snapshot::Error,
    },
    #[error("the snapshot stream was stopped because a later stage failed")]
    Cancelled,
}

/// A connection to one etcd member and what it said about itself.
pub struct Member {
    client: Client,
    timeout: Duration,
    /// The member's status, as recorded in the manifest (without the snapshot's own facts).
    pub status: Status,
}

/// A member's status just before the snapshot.
#[derive(Debug, Clone)]
pub struct Status {
    /// The endpoint that answered.
    pub endpoint: String,
    /// etcd's version.
    pub server_version: String,
    /// Cluster id.
    pub cluster_id: u64,
    /// Member id.
    pub member_id: u64,
    /// Store revision.
    pub revision: i64,
    /// Database size on disk.
    pub db_size: i64,
    /// Keys at `revision`.
    pub key_count: Option<u64>,
}

impl Status {
    /// The manifest's record of this member, with the snapshot's verified facts.
    pub fn into_manifest(self, verified: snapshot::Verified) -> EtcdSource {
        EtcdSource {
            endpoint: self.endpoint,
            server_version: self.server_version,
            cluster_id: format!("{:x}", self.cluster_id),
            member_id: format!("{:x}", self.member_id),
            revision: self.revision,
            db_size: verified.db_size,
            snapshot_sha256: verified.sha256,
            key_count: self.key_count,
        }
    }
}

/// The number of keys in the store at exactly `revision` (a count-only range over all keys).
pub async fn key_count_at(client: &mut Client, revision: i64) -> Result<u64, etcd_client::Error> {
    let opts = etcd_client::GetOptions::new()
        .with_from_key()
        .with_count_only()
        .with_revision(revision);
    Ok(client.get("\0", Some(opts)).await?.count().max(0) as u64)
}

/// Connects to the first configured endpoint that answers a status request.
pub async fn connect(cfg: &config::Etcd) -> Result<Member, Error> {
    connect_logged(cfg, true).await
}

/// [`connect`] without a warning per endpoint that did not answer: for callers that poll
/// (the guided restore's health wait) and report what they saw themselves.
pub async fn connect_quietly(cfg: &config::Etcd) -> Result<Member, Error> {
    connect_logged(cfg, false).await
}

async fn connect_logged(cfg: &config::Etcd, log: bool) -> Result<Member, Error> {
    if cfg.tls.is_some()
        && let Some(http) = cfg.endpoints.iter().find(|u| u.scheme() == "http")
    {
        return Err(Error::HttpWithTls {
            endpoint: display(http),
            https: with_scheme(http, "https"),
        });
    }
    let options = connect_options(cfg)?;
    let mut attempts = Vec::new();
    for endpoint in &cfg.endpoints {
        match connect_one(endpoint, options.clone(), cfg).await {
            Ok(member) => return Ok(member),
            Err(e) => {
                if log {
                    tracing::warn!(endpoint = %display(endpoint), error = %e, "etcd endpoint did not answer.");
                }
                attempts.push(e);
            }
        }
    }
    if attempts.len() == 1 {
        return Err(attempts.remove(0));
    }
    Err(Error::NoEndpoint { attempts })
}

/// An endpoint as messages show it: without a trailing slash, without credentials.
fn display(u: &Url) -> String {
    crate::error::redact_urls(u.as_str().trim_end_matches('/'))
}

/// `u` with another scheme, as messages suggest it.
fn with_scheme(u: &Url, scheme: &str) -> String {
    let mut s = display(u);
    if let Some(rest) = s.split_once("://").map(|(_, r)| r.to_string()) {
        s = format!("{scheme}://{rest}");
    }
    s
}

fn connect_options(cfg: &config::Etcd) -> Result<ConnectOptions, Error> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(cfg.timeout)
        .with_keep_alive(Duration::from_secs(10), cfg.timeout);
    if let Some(tls) = &cfg.tls {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|source| Error::TlsFile {
                path: p.display().to_string(),
                source,
            })
        };
        let ca = read(&tls.ca_file)?;
        check_pem("ca_file", &tls.ca_file, &ca)?;
        let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = &tls.client {
            let (cert_pem, key_pem) = (read(cert)?, read(key)?);
            check_pem("cert_file", cert, &cert_pem)?;
            check_pem("key_file", key, &key_pem)?;
            t = t.identity(Identity::from_pem(cert_pem, key_pem));
        }
        options = options.with_tls(t);
    }
    Ok(options)
}

/// What is wrong with the PEM contents of the TLS file named by `field`, if anything.
pub fn pem_problem(field: &str, pem: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(pem);
    let has_cert = text.contains("-----BEGIN CERTIFICATE-----");
    let has_key = text.contains("PRIVATE KEY-----");
    match field {
        "ca_file" if has_key => Some(
            "holds a private key: ca_file must hold only the CA certificate (kubeadm: /etc/kubernetes/pki/etcd/ca.crt); never hand lifeboat a private key as the CA",
        ),
        "ca_file" if !has_cert => Some(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----): point it at the CA certificate that signed etcd's server certificate (kubeadm: /etc/kubernetes/pki/etcd/ca.crt)",
        ),
        "cert_file" if !has_cert => Some(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----): point it at the client certificate (kubeadm: /etc/kubernetes/pki/etcd/healthcheck-client.crt)",
        ),
        "key_file" if !has_key => Some(
            "holds no PEM private key: point it at the client certificate's key (kubeadm: /etc/kubernetes/pki/etcd/healthcheck-client.key)",
        ),
        _ => None,
    }
}

fn check_pem(field: &'static str, path: &std::path::Path, pem: &[u8]) -> Result<(), Error> {
    match pem_problem(field, pem) {
        Some(problem) => Err(Error::TlsFileContent {
            field,
            path: path.display().to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

async fn connect_one(
    endpoint: &Url,
    options: ConnectOptions,
    cfg: &config::Etcd,
) -> Result<Member, Error> {
    let limit = cfg.timeout;
    let ep = endpoint.as_str().trim_end_matches('/').to_string();
    let shown = display(endpoint);
    let failed = |e: etcd_client::Error| classify(endpoint, &chain(&e), cfg.tls.as_ref());
    let attempt = async {
        let mut client = Client::connect([ep.as_str()], Some(options))
            .await
            .map_err(failed)?;
        let status = client.status().await.map_err(failed)?;
        // The number of keys at exactly that revision, so a restore drill can compare.
        let revision = status.header().map(|h| h.revision()).unwrap_or_default();
        let count = key_count_at(&mut client, revision).await.ok();
        Ok::<_, Error>((client, status, count))
    };
    let outcome = match timeout(limit, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            endpoint: shown.clone(),
            timeout: limit,
        }),
    };
    let (client, status, key_count) = match outcome {
        Ok(ok) => ok,
        // Plain HTTP/2 to a TLS port fails in ways that look like a network problem: ask the
        // port whether it speaks TLS, so the message can say "use https://".
        Err(e @ (Error::Connect { .. } | Error::Timeout { .. }))
            if endpoint.scheme() == "http" && speaks_tls(endpoint, limit).await =>
        {
            tracing::debug!(endpoint = %shown, error = %e, "The http:// endpoint speaks TLS.");
            return Err(Error::NeedsHttps {
                endpoint: shown,
                https: with_scheme(endpoint, "https"),
            });
        }
        Err(e) => return Err(e),
    };
    let header = status.header();
    Ok(Member {
        client,
        timeout: limit,
        status: Status {
            endpoint: ep.clone(),
            server_version: status.version().to_string(),
            cluster_id: header.map(|h| h.cluster_id()).unwrap_or_default(),
            member_id: header.map(|h| h.member_id()).unwrap_or_default(),
            revision: header.map(|h| h.revision()).unwrap_or_default(),
            db_size: status.db_size(),
            key_count,
        },
    })
}

/// Sorts a failed connection into the error whose message names the fix. `reason` is the
/// error chain as tonic and rustls put it.
fn classify(endpoint: &Url, reason: &str, tls: Option<&config::Tls>) -> Error {
    let shown = display(endpoint);
    let lower = reason.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let reason = crate::error::redact_urls(reason);
    if has(&["unknownissuer", "badsignature", "unknown issuer"]) {
        return Error::ServerNotTrusted {
            endpoint: shown,
            ca_file: tls
                .map(|t| t.ca_file.display().to_string())
                .unwrap_or_default(),
            reason,
        };
    }
    if has(&["certificaterequired", "certificate required"]) {
        return Error::ClientCertMissing {
            endpoint: shown,
            reason,
        };
    }
    let refused = has(&[
        "badcertificate",
        "bad certificate",
        "unknownca",
        "certificateunknown",
        "unsupportedcertificate",
        "handshakefailure",
        "accessdenied",
    ]);
    // etcd 3.4 (older Go TLS) closes the connection after a TLS 1.3 handshake whose client
    // certificate it rejects, without an alert: with TLS set, that is the likely cause.
    let closed_after_tls = tls.is_some()
        && endpoint.scheme() == "https"
        && has(&["connection closed", "connection reset", "broken pipe"]);
    if refused || closed_after_tls {
        return match tls.and_then(|t| t.client.as_ref()) {
            None => Error::ClientCertMissing {
                endpoint: shown,
                reason,
            },
            Some((cert, _)) => Error::ClientCertRefused {
                endpoint: shown,
                cert_file: cert.display().to_string(),
                reason,
            },
        };
    }
    if endpoint.scheme() == "https" && has(&["invalidcontenttype", "corrupt message"]) {
        return Error::NotTls {
            http: with_scheme(endpoint, "http"),
            endpoint: shown,
            reason,
        };
    }
    if has(&["certificate", "tls", "handshake"]) {
        Error::Tls {
            endpoint: shown,
            reason,
        }
    } else {
        Error::Connect {
            endpoint: shown,
            reason,
        }
    }
}

/// Whether the port behind `endpoint` answers a TLS ClientHello with a TLS record (a
/// ServerHello or an alert): the mark of a TLS-only etcd that was given an http:// URL.
async fn speaks_tls(endpoint: &Url, limit: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (Some(host), Some(port)) = (endpoint.host_str(), endpoint.port_or_known_default()) else {
        return false;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let limit = limit.min(Duration::from_secs(5));
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        stream.write_all(&client_hello()).await?;
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    matches!(timeout(limit, probe).await, Ok(Ok([0x15 | 0x16, 0x03])))
}

/// A minimal TLS 1.2 ClientHello (common ECDHE suites, groups and signature schemes), enough
/// for any TLS server to answer with a ServerHello or an alert.
fn client_hello() -> Vec<u8> {
    fn u16s(values: &[u16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }
    fn with_len(body: &[u8], width: usize) -> Vec<u8> {
        let len = (body.len() as u32).to_be_bytes();
        let mut out = len[4 - width..].to_vec();
        out.extend_from_slice(body);
        out
    }
    let suites = u16s(&[
        0xc02f, 0xc02b, 0xc030, 0xc02c, 0xcca8, 0xcca9, 0x009c, 0x002f,
    ]);
    let mut extensions = Vec::new();
    for (kind, data) in [
        (0x000a_u16, with_len(&u16s(&[0x001d, 0x0017, 0x0018]), 2)),
        (0x000b, vec![1, 0]),
        (
            0x000d,
            with_len(
                &u16s(&[
                    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
                ]),
                2,
            ),
        ),
    ] {
        extensions.extend_from_slice(&kind.to_be_bytes());
        extensions.extend(with_len(&data, 2));
    }
    let mut hello = vec![0x03, 0x03];
    hello.extend_from_slice(&[0x5a; 32]);
    hello.push(0);
    hello.extend(with_len(&suites, 2));
    hello.extend_from_slice(&[1, 0]);
    hello.extend(with_len(&extensions, 2));
    let mut handshake = vec![0x01];
    handshake.extend(with_len(&hello, 3));
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(with_len(&handshake, 2));
    record
}

impl Member {
    /// A linearizable read: succeeds only when the cluster has a leader and quorum.
    pub async fn linearizable_read(mut self) -> Result<(), String> {
        timeout(self.timeout, self.client.get("lifeboat-health", None))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
            .map(|_| ())
            .map_err(|e| chain(&e))
    }

    /// Streams the snapshot into `out`, verifying etcd's trailing hash as it goes. A stall
    /// longer than the configured timeout, a broken stream or a bad hash fail the snapshot.
    pub async fn stream_snapshot(mut self, out: Output) -> Result<snapshot::Verified, Error> {
        let endpoint = self.status.endpoint.clone();
        let mut check = TrailerCheck::new();
        let broke = |received: u64, e: &etcd_client::Error| Error::Stream {
            endpoint: endpoint.clone(),
            received,
            reason: chain(e),
        };
        let stalled = |received: u64| Error::Stalled {
            endpoint: endpoint.clone(),
            received,
            timeout: self.timeout,
        };
        let mut stream = timeout(self.timeout, self.client.snapshot())
            .await
            .map_err(|_| stalled(0))?
            .map_err(|e| broke(0, &e))?;
        let mut remaining = None;
        loop {
            let message = timeout(self.timeout, stream.message())
                .await
                .map_err(|_| stalled(check.bytes_seen()))?
                .map_err(|e| broke(check.bytes_seen(), &e))?;
            let Some(message) = message else { break };
            remaining = Some(message.remaining_bytes());
            let blob = message.blob();
            if blob.is_empty() {
                continue;
            }
            check.update(blob);
            out.send(Bytes::copy_from_slice(blob))
                .await
                .map_err(|Closed| Error::Cancelled)?;
        }
        if let Some(left) = remaining.filter(|&r| r != 0) {
            return Err(Error::Stream {
                endpoint,
                received: check.bytes_seen(),
                reason: format!("the stream ended with {left} bytes still announced"),
            });
        }
        let received = check.bytes_seen();
        let verified = check.finish().map_err(|source| Error::Integrity {
            endpoint: endpoint.clone(),
            source,
        })?;
        tracing::debug!(endpoint = %endpoint, bytes = received, "Snapshot stream complete.");
        Ok(verified)
    }
}

/// A member is the producer of an etcd backup: its snapshot stream, checked against etcd's own
/// hash, and the status it reported.
impl Producer for Member {
    fn kind(&self) -> Kind {
        Kind::Etcd
    }

    fn stem(&self) -> &'static str {
        "snapshot.db"
    }

    /// The database size the member reported, plus etcd's 32-byte trailing hash.
    fn expected_size(&self) -> Option<u64> {
        u64::try_from(self.status.db_size)
            .ok()
            .filter(|&n| n > 0)
            .map(|n| n + snapshot::HASH_LEN as u64)
    }

    fn log_start(&self, id: &BackupId) {
        let status = &self.status;
        tracing::info!(backup_id = %id, endpoint = %status.endpoint, revision = status.revision, db_size = status.db_size, "Snapshot started.");
    }

    async fn produce(self, _run: &Started, out: Output) -> Produced<manifest::Source> {
        let status = self.status.clone();
        match self.stream_snapshot(out).await {
            Ok(verified) => Produced::Done(manifest::Source::Etcd(status.into_manifest(verified))),
            Err(Error::Cancelled) => Produced::Cancelled,
            Err(e) => Produced::Failed(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(client: bool) -> config::Tls {
        config::Tls {
            ca_file: "/pki/ca.crt".into(),
            client: client.then(|| ("/pki/client.crt".into(), "/pki/client.key".into())),
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_ca_file_holding_a_private_key_is_refused() {
        let cert = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let key = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_problem("ca_file", cert), None);
        assert!(pem_problem("ca_file", key).unwrap().contains("private key"));
        let both = [cert.as_slice(), key.as_slice()].concat();
        assert!(
            pem_problem("ca_file", &both)
                .unwrap()
                .contains("private key")
        );
        assert!(
            pem_problem("ca_file", b"x\n")
                .unwrap()
                .contains("no PEM certificate")
        );
        assert!(
            pem_problem("key_file", cert)
                .unwrap()
                .contains("no PEM private key")
        );
        assert_eq!(
            pem_problem("key_file", b"-----BEGIN EC PRIVATE KEY-----\n"),
            None
        );
        assert!(pem_problem("cert_file", key).is_some());
    }

    #[test]
    fn each_tls_failure_gets_its_own_error() {
        let https = url("https://127.0.0.1:2379");
        let e = classify(
            &https,
            "invalid peer certificate: UnknownIssuer",
            Some(&tls(true)),
        );
        assert!(matches!(e, Error::ServerNotTrusted { .. }), "{e}");
        let e = classify(
            &https,
            "received fatal alert: CertificateRequired",
            Some(&tls(false)),
        );
        assert!(matches!(e, Error::ClientCertMissing { .. }), "{e}");
        let e = classify(
            &https,
            "received fatal alert: BadCertificate",
            Some(&tls(true)),
        );
        assert!(matches!(e, Error::ClientCertRefused { .. }), "{e}");
        let e = classify(
            &https,
            "received fatal alert: BadCertificate",
            Some(&tls(false)),
        );
        assert!(matches!(e, Error::ClientCertMissing { .. }), "{e}");
        let e = classify(
            &https,
            "received corrupt message of type InvalidContentType",
            Some(&tls(true)),
        );
        assert!(matches!(e, Error::NotTls { .. }), "{e}");
        let e = classify(
            &url("http://127.0.0.1:2379"),
            "tcp connect error: Connection refused",
            None,
        );
        assert!(matches!(e, Error::Connect { .. }), "{e}");
    }

    #[tokio::test]
    async fn an_http_endpoint_with_a_tls_block_says_use_https() {
        let cfg = config::Etcd {
            endpoints: vec![url("http://10.0.0.1:2379")],
            tls: Some(tls(true)),
            timeout: Duration::from_secs(1),
        };
        let e = connect(&cfg).await.err().unwrap();
        assert!(
            e.to_string().contains("write it as https://10.0.0.1:2379"),
            "{e}"
        );
    }

    #[test]
    fn the_tls_probe_is_a_well_formed_client_hello() {
        let hello = client_hello();
        assert_eq!(&hello[..3], &[0x16, 0x03, 0x01]);
        let record_len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
        assert_eq!(record_len, hello.len() - 5);
        assert_eq!(hello[5], 0x01, "a ClientHello");
        let body_len = u32::from_be_bytes([0, hello[6], hello[7], hello[8]]) as usize;
        assert_eq!(body_len, hello.len() - 9);
    }
}
