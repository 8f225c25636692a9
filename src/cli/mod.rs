//! The command line: one file per subcommand. `anyhow` lives here and in main.rs only.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod backup;
pub mod drill;
pub mod keygen;
pub mod list;
pub mod prune;
pub mod restore;
pub mod schedule;
pub mod serve;
pub mod verify;

/// lifeboat keeps Kubernetes clusters recoverable: encrypted etcd snapshots in object storage,
/// verified and restorable.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about, max_term_width = 100)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, env = "LIFEBOAT_CONFIG", default_value = lifeboat::config::DEFAULT_PATH)]
    pub config: PathBuf,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LIFEBOAT_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event, for log collectors.
    Json,
}

/// Output formats of listing commands.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// A table for people.
    Text,
    /// JSON for scripts.
    Json,
}

/// The kinds of backup, as named on the command line.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum KindArg {
    /// etcd snapshots.
    Etcd,
    /// Kubernetes resource exports.
    Resources,
}

impl From<KindArg> for lifeboat::manifest::Kind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Etcd => lifeboat::manifest::Kind::Etcd,
            KindArg::Resources => lifeboat::manifest::Kind::Resources,
        }
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take one backup now and store it.
    #[command(subcommand)]
    Backup(backup::Target),
    /// List the complete backups in the store, oldest first.
    List(list::Args),
    /// Download a backup and check it against its manifest (and, with --identity, decrypt it
    /// and check etcd's own hash).
    Verify(verify::Args),
    /// Get a backup back.
    #[command(subcommand)]
    Restore(Box<restore::Target>),
    /// Generate an age X25519 key pair for encryption.recipients.
    Keygen(keygen::Args),
    /// Run as a service: scheduled backups, retention, /metrics, /healthz, /readyz.
    Serve,
    /// Apply retention now (or show with --dry-run what it would delete, and why).
    Prune(prune::Args),
    /// Show when each plan runs next.
    Schedule(schedule::Args),
    /// Restore a backup into a throwaway local etcd and check it against its manifest.
    Drill(drill::Args),
}

/// Loads the configuration named on the command line.
pub fn load_config(cli_config: &std::path::Path) -> anyhow::Result<lifeboat::config::Config> {
    Ok(lifeboat::config::Config::load(cli_config)?)
}

/// Loads the age identity file given with `--identity`, if any, before anything is downloaded.
pub fn load_identities(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::sync::Arc<lifeboat::keys::Identities>>> {
    Ok(path
        .map(lifeboat::keys::Identities::load)
        .transpose()?
        .map(std::sync::Arc::new))
}

/// Opens the configured store.
pub fn open_store(cfg: &lifeboat::config::Config) -> anyhow::Result<lifeboat::store::Store> {
    Ok(lifeboat::store::Store::open(&cfg.storage)?)
}

/// Formats a byte count for people: 1.5 GiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
