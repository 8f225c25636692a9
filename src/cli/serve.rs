//! `lifeboat serve`: the long-running service (schedules, retention, metrics, leader election).
//! SIGTERM or Ctrl-C stops it gracefully; it then exits 0.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// Examples shown after `lifeboat serve --help`.
pub const EXAMPLES: &str =
    "Examples:\n  lifeboat serve -c /etc/lifeboat/lifeboat.yaml --log-format json";

/// Runs `serve`.
pub async fn run(config: &Path) -> anyhow::Result<()> {
    let cfg = super::load_config(config)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(super::backup::cancel_on_signal(shutdown.clone()));
    let metrics = Arc::new(lifeboat::service::metrics::Metrics::new());
    lifeboat::service::run(cfg, metrics, shutdown).await?;
    Ok(())
}
