//! The command line: one file per subcommand. `anyhow` lives here and in main.rs only.
//! Options every subcommand shares (`--config`, `--log-format`, `--output`) are declared once,
//! here; what a command reports goes to stdout (text or, with `-o json`, one JSON document),
//! logs and progress go to stderr.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

pub mod apply;
pub mod backup;
pub mod completions;
pub mod delete;
pub mod diff;
pub mod drill;
pub mod from_etcd;
pub mod keygen;
pub mod list;
pub mod progress;
pub mod prune;
pub mod restore;
pub mod schedule;
pub mod serve;
pub mod verify;

/// The version and the git commit it was built from, for `--version`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LIFEBOAT_COMMIT"),
    ")"
);

/// The version of every `-o json` document's schema (docs/CLI.md); bumped on a change that
/// removes or renames a field.
pub const JSON_VERSION: u32 = 1;

/// lifeboat keeps Kubernetes clusters recoverable: encrypted etcd snapshots in object storage,
/// verified and restorable.
#[derive(Debug, Parser)]
#[command(
    name = "lifeboat",
    version = VERSION,
    about,
    max_term_width = 100,
    after_help = "Examples:\n  lifeboat backup etcd\n  lifeboat list -o json\n  lifeboat verify --backup latest --identity key.txt\n  lifeboat completions bash > /etc/bash_completion.d/lifeboat"
)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, env = "LIFEBOAT_CONFIG", default_value = lifeboat::config::DEFAULT_PATH)]
    pub config: PathBuf,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LIFEBOAT_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Output format on stdout: text for people, or one JSON document for scripts (schemas in
    /// docs/CLI.md).
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

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

/// Output formats of the commands that report.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// Sentences and tables for people.
    Text,
    /// One JSON document for scripts.
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
    #[command(after_help = list::EXAMPLES)]
    List(list::Args),
    /// Download a backup and check it against its manifest (and, with --identity, decrypt it
    /// and check etcd's own hash).
    #[command(after_help = verify::EXAMPLES)]
    Verify(verify::Args),
    /// Get a backup back.
    #[command(subcommand)]
    Restore(Box<restore::Target>),
    /// Show what changed between a resource export and the live cluster, or another export.
    #[command(after_help = diff::EXAMPLES)]
    Diff(diff::Args),
    /// Delete one backup (manifest first, then its payload). Refuses the newest full backup of
    /// its kind unless --force.
    #[command(after_help = delete::EXAMPLES)]
    Delete(delete::Args),
    /// Generate an age X25519 key pair for encryption.recipients.
    #[command(after_help = keygen::EXAMPLES)]
    Keygen(keygen::Args),
    /// Run as a service: scheduled backups, retention, /metrics, /healthz, /readyz.
    #[command(after_help = serve::EXAMPLES)]
    Serve,
    /// Apply retention now (or show with --dry-run what it would delete, and why).
    #[command(after_help = prune::EXAMPLES)]
    Prune(prune::Args),
    /// Show when each plan runs next.
    #[command(after_help = schedule::EXAMPLES)]
    Schedule(schedule::Args),
    /// Restore a backup into a throwaway local etcd and check it against its manifest.
    #[command(after_help = drill::EXAMPLES)]
    Drill(drill::Args),
    /// Print a shell completion script to stdout.
    #[command(after_help = completions::EXAMPLES)]
    Completions(completions::Args),
}

/// The options declared once on `lifeboat` itself and valid after any subcommand.
const GLOBAL_OPTIONS: [&str; 3] = ["config", "log_format", "output"];

/// The command line as parsed: [`Cli`], with the global options shown once, in their own
/// section of `lifeboat --help`, and only named in a line at the end of each subcommand's help
/// (clap would otherwise repeat them, in full, in every subcommand's help).
pub fn command() -> clap::Command {
    let visible = <Cli as clap::CommandFactory>::command();
    let mut help = String::from("Global options (before or after the subcommand):\n");
    for arg in visible.get_arguments().filter(|a| a.is_global_set()) {
        help.push_str(&describe_option(arg));
    }
    if let Some(examples) = visible.get_after_help() {
        help = format!("{help}\n{examples}");
    }
    let mut cmd = visible.after_help(help);
    // Hidden before clap propagates them, so every subcommand gets them hidden too; they still
    // parse everywhere.
    for id in GLOBAL_OPTIONS {
        cmd = cmd.mut_arg(id, |a| a.hide(true));
    }
    note_globals_below(cmd)
}

/// One option's entry in the global options section, from its own definition.
fn describe_option(arg: &clap::Arg) -> String {
    let flag = match (arg.get_short(), arg.get_long()) {
        (Some(s), Some(l)) => format!("-{s}, --{l}"),
        (None, Some(l)) => format!("    --{l}"),
        (Some(s), None) => format!("-{s}"),
        (None, None) => arg.get_id().to_string(),
    };
    let value = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| v.to_string())
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    let mut facts = vec![];
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .map(|v| v.get_name().to_string())
        .collect();
    if !possible.is_empty() {
        facts.push(format!("possible values: {}", possible.join(", ")));
    }
    if let Some(default) = arg.get_default_values().first() {
        facts.push(format!("default: {}", default.to_string_lossy()));
    }
    if let Some(env) = arg.get_env() {
        facts.push(format!("env: {}", env.to_string_lossy()));
    }
    let text = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    format!(
        "  {flag} <{value}>\n          {text}\n          [{}]\n",
        facts.join("] [")
    )
}

/// Ends the help of every subcommand, at every depth, with the line naming the global options.
fn note_globals_below(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    names.into_iter().fold(cmd, |cmd, name| {
        cmd.mut_subcommand(name, |sub| {
            let sub = note_globals_below(sub);
            let note =
                "Global options (see `lifeboat --help`): -c/--config, --log-format, -o/--output.";
            let help = match sub.get_after_help() {
                Some(h) => format!("{h}\n\n{note}"),
                None => note.to_string(),
            };
            sub.after_help(help)
        })
    })
}

/// How a backup is named on the command line: `--backup latest|ID`, and where a command took a
/// positional backup before, that too.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArg {
    /// `latest` or a backup id from `lifeboat list` [default: latest].
    #[arg(long = "backup", value_name = "latest|ID")]
    pub named: Option<String>,
}

impl BackupArg {
    /// The backup asked for, `latest` when none was named.
    pub fn which(&self) -> &str {
        self.named.as_deref().unwrap_or("latest")
    }

    /// The backup asked for, parsed: `latest` or a well-formed id.
    pub fn selector(&self) -> anyhow::Result<lifeboat::store::Selector> {
        Ok(self.which().parse()?)
    }
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

/// One `-o json` document: the schema version and the command, then the command's own fields.
#[derive(Serialize)]
struct Document<'a, T: Serialize> {
    version: u32,
    command: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

/// Prints `body` as the JSON document of `command` on stdout (and nothing else goes there).
pub fn print_json<T: Serialize>(command: &str, body: &T) -> anyhow::Result<()> {
    let doc = Document {
        version: JSON_VERSION,
        command,
        body,
    };
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definitions_are_consistent() {
        // clap's own checks (duplicate short flags, bad conflicts) over every subcommand.
        super::command().debug_assert();
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
