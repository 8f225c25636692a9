//! `lifeboat keygen`: an age X25519 key pair, for users without age installed. The identity
//! file has age-keygen's format, so `age -d -i` reads it.

use std::path::PathBuf;

/// Arguments of `keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the identity (private key) to this new file, mode 0600, instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs `keygen`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let pair = lifeboat::keys::generate(chrono::Utc::now());
    match &args.output {
        Some(path) => {
            lifeboat::keys::write_new_private(path, &pair.file_text)?;
            eprintln!(
                "Wrote the identity to {} (keep it outside the cluster, e.g. in your password manager).",
                path.display()
            );
            eprintln!("Public key, for encryption.recipients:");
            println!("{}", pair.public_key);
        }
        None => {
            eprintln!("Public key: {}", pair.public_key);
            print!("{}", pair.file_text);
        }
    }
    Ok(())
}
