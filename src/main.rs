//! The lifeboat binary: parse the command line, set up logging, dispatch to a subcommand, and
//! turn any error into one clear message and a non-zero exit code.

mod cli;

use std::process::ExitCode;

use clap::FromArgMatches;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, LogFormat, Output};

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&cli::command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
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
    let (config, output) = (cli.config.as_path(), cli.output);
    match cli.command {
        Command::Backup(target) => cli::backup::run(config, output, target).await,
        Command::List(args) => cli::list::run(config, output, args).await,
        Command::Verify(args) => cli::verify::run(config, output, args).await,
        Command::Restore(target) => cli::restore::run(config, output, *target).await,
        Command::Delete(args) => cli::delete::run(config, output, args).await,
        Command::Diff(args) => cli::diff::run(config, output, args).await,
        Command::Keygen(args) => cli::keygen::run(output, args),
        Command::Serve => {
            no_json(
                output,
                "serve",
                "it runs until stopped and reports through /metrics",
            )?;
            cli::serve::run(config).await
        }
        Command::Prune(args) => cli::prune::run(config, output, args).await,
        Command::Schedule(args) => cli::schedule::run(config, output, args),
        Command::Drill(args) => cli::drill::run(config, output, args).await,
        Command::Completions(args) => {
            no_json(output, "completions", "it prints a shell script")?;
            cli::completions::run(args)
        }
    }
}

/// Refuses `-o json` for a command that has nothing to report, rather than ignoring it.
fn no_json(output: Output, command: &str, why: &str) -> anyhow::Result<()> {
    if output == Output::Json {
        anyhow::bail!("`lifeboat {command}` has no JSON output ({why}): drop -o json");
    }
    Ok(())
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
        let text = lifeboat::error::redact_urls(&text);
        // Above a progress bar, if one is drawn, not through it.
        cli::progress::above_bar(|| std::io::stderr().write_all(text.as_bytes()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
