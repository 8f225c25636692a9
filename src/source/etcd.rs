//! The etcd snapshot source: connect to the first member that answers, record its status, and
//! stream Maintenance.Snapshot into the pipeline while checking etcd's trailing sha256. etcd keeps
//! a read transaction open while it streams, so this stage forwards chunks without delay.

use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::timeout;
use url::Url;

use crate::config;
use crate::manifest::EtcdSource;
use crate::snapshot::{self, TrailerCheck};
use crate::store::chain;

/// Why the snapshot could not be taken.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read the etcd TLS file {path}: {source}")]
    TlsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot connect to etcd at {endpoint}: {reason}; check etcd.endpoints and that etcd is running and reachable from here"
    )]
    Connect { endpoint: String, reason: String },
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
    let options = connect_options(cfg)?;
    let mut attempts = Vec::new();
    for endpoint in &cfg.endpoints {
        match connect_one(endpoint, options.clone(), cfg.timeout).await {
            Ok(member) => return Ok(member),
            Err(e) => {
                tracing::warn!(endpoint = %endpoint, error = %e, "etcd endpoint did not answer.");
                attempts.push(e);
            }
        }
    }
    if attempts.len() == 1 {
        return Err(attempts.remove(0));
    }
    Err(Error::NoEndpoint { attempts })
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
        let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca_file)?));
        if let Some((cert, key)) = &tls.client {
            t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(t);
    }
    Ok(options)
}

async fn connect_one(
    endpoint: &Url,
    options: ConnectOptions,
    limit: Duration,
) -> Result<Member, Error> {
    let ep = endpoint.as_str().trim_end_matches('/').to_string();
    let failed = |e: etcd_client::Error| classify(&ep, &e);
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
    let (client, status, key_count) =
        timeout(limit, attempt).await.map_err(|_| Error::Timeout {
            endpoint: ep.clone(),
            timeout: limit,
        })??;
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

fn classify(endpoint: &str, e: &etcd_client::Error) -> Error {
    let reason = chain(e);
    let lower = reason.to_ascii_lowercase();
    if [
        "certificate",
        "tls",
        "handshake",
        "unknownissuer",
        "bad_certificate",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        Error::Tls {
            endpoint: endpoint.to_string(),
            reason,
        }
    } else {
        Error::Connect {
            endpoint: endpoint.to_string(),
            reason,
        }
    }
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
    pub async fn stream_snapshot(
        mut self,
        out: mpsc::Sender<Bytes>,
    ) -> Result<snapshot::Verified, Error> {
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
                .map_err(|_| Error::Cancelled)?;
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
