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
            eprintln!("error: {}", lifeboat::error::chain(e.as_ref()));
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
        .with_writer(|| RedactingStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Standard error with the userinfo of every URL redacted: whatever a log line quotes (an
/// endpoint, an error from the S3 client), credentials in a URL never reach the log.
struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // tracing's formatter writes each event whole, so a URL is never split across calls.
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(lifeboat::error::redact_urls(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
