//! The lifeboat binary: parse the command line, set up logging, dispatch to a subcommand, and
//! turn any error into one clear message and a non-zero exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", lifeboat::store::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Backup(target) => cli::backup::run(&cli.config, target).await,
        Command::List(args) => cli::list::run(&cli.config, args).await,
        Command::Verify(args) => cli::verify::run(&cli.config, args).await,
        Command::Restore(target) => cli::restore::run(&cli.config, *target).await,
        Command::Keygen(args) => cli::keygen::run(args),
        Command::Serve => cli::serve::run(&cli.config).await,
        Command::Prune(args) => cli::prune::run(&cli.config, args).await,
        Command::Schedule(args) => cli::schedule::run(&cli.config, args),
        Command::Drill(args) => cli::drill::run(&cli.config, args).await,
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LIFEBOAT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
