//! Access to the Kubernetes API: a kube client from the configured kubeconfig and context, the
//! in-cluster service account, or the usual KUBECONFIG / ~/.kube/config.

use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use thiserror::Error;

use crate::config;

/// Why no Kubernetes client could be made.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read the kubeconfig {path}; check kubernetes.kubeconfig")]
    Kubeconfig {
        path: String,
        #[source]
        source: KubeconfigError,
    },
    #[error(
        "cannot use the context {context} of the default kubeconfig (KUBECONFIG or ~/.kube/config); check kubernetes.context, or set kubernetes.kubeconfig"
    )]
    Context {
        context: String,
        #[source]
        source: KubeconfigError,
    },
    #[error(
        "no Kubernetes access: not running in a cluster and no usable kubeconfig; set kubernetes.kubeconfig, or disable leader_election outside a cluster"
    )]
    Infer {
        #[source]
        source: InferConfigError,
    },
    #[error("cannot create a Kubernetes client")]
    Client {
        #[source]
        source: kube::Error,
    },
}

/// A client for the configured cluster.
pub async fn client(cfg: &config::Kubernetes) -> Result<kube::Client, Error> {
    Ok(client_with_url(cfg).await?.0)
}

/// A client for the configured cluster, and the API server's URL (for the backup's record and
/// for messages).
pub async fn client_with_url(cfg: &config::Kubernetes) -> Result<(kube::Client, String), Error> {
    let options = KubeConfigOptions {
        context: cfg.context.clone(),
        ..Default::default()
    };
    let config = match (&cfg.kubeconfig, &cfg.context) {
        (Some(path), _) => {
            let bad = |source| Error::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(bad)?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(bad)?
        }
        (None, Some(context)) => {
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|source| Error::Context {
                    context: context.clone(),
                    source,
                })?
        }
        (None, None) => kube::Config::infer()
            .await
            .map_err(|source| Error::Infer { source })?,
    };
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|source| Error::Client { source })?;
    Ok((client, url))
}
