//! Access to the Kubernetes API: a kube client from the configured kubeconfig and context, the
//! in-cluster service account, or the usual KUBECONFIG / ~/.kube/config.

use kube::config::{KubeConfigOptions, Kubeconfig};
use thiserror::Error;

use crate::config;

/// Why no Kubernetes client could be made.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read the kubeconfig {path}: {reason}; check kubernetes.kubeconfig")]
    Kubeconfig { path: String, reason: String },
    #[error(
        "no Kubernetes access: not running in a cluster and no usable kubeconfig ({reason}); set kubernetes.kubeconfig, or disable leader_election outside a cluster"
    )]
    Infer { reason: String },
    #[error("cannot create a Kubernetes client: {reason}")]
    Client { reason: String },
}

/// A client for the configured cluster.
pub async fn client(cfg: &config::Kubernetes) -> Result<kube::Client, Error> {
    Ok(client_with_url(cfg).await?.0)
}

/// A client for the configured cluster, and the API server's URL (for manifests and messages).
pub async fn client_with_url(cfg: &config::Kubernetes) -> Result<(kube::Client, String), Error> {
    let options = KubeConfigOptions {
        context: cfg.context.clone(),
        ..Default::default()
    };
    let config =
        match &cfg.kubeconfig {
            Some(path) => {
                let bad = |reason: String| Error::Kubeconfig {
                    path: path.display().to_string(),
                    reason,
                };
                let file = Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| bad(e.to_string()))?
            }
            None if cfg.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| Error::Infer {
                    reason: e.to_string(),
                })?,
            None => kube::Config::infer().await.map_err(|e| Error::Infer {
                reason: e.to_string(),
            })?,
        };
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| Error::Client {
        reason: e.to_string(),
    })?;
    Ok((client, url))
}
