//! `lifeboat completions bash|zsh|fish`: the shell completion script, generated from the same
//! clap definitions the binary parses with, so it never falls behind the commands.

use clap::CommandFactory;

/// Examples shown after `lifeboat completions --help`.
pub const EXAMPLES: &str = "Examples:\n  lifeboat completions bash > /etc/bash_completion.d/lifeboat\n  lifeboat completions zsh > \"${fpath[1]}/_lifeboat\"\n  lifeboat completions fish > ~/.config/fish/completions/lifeboat.fish";

/// The shells lifeboat writes completions for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    /// bash (bash-completion).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// Arguments of `completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Runs `completions`: the script goes to stdout.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    let mut out = std::io::stdout();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "lifeboat", &mut out);
    Ok(())
}
