//! `lifeboat keygen`: an age X25519 key pair, for users without age installed. The identity
//! file has age-keygen's format, so `age -d -i` reads it.

use std::path::PathBuf;

use serde::Serialize;

use super::Output;

/// Examples shown after `lifeboat keygen --help`.
pub const EXAMPLES: &str = "Examples:\n  lifeboat keygen key.txt            # prints the public key for encryption.recipients\n  lifeboat keygen --output-file key.txt -o json\n  lifeboat keygen > key.txt           # the identity on stdout, the public key on stderr";

/// Arguments of `keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the identity (private key) to this new file, mode 0600, instead of stdout.
    #[arg(value_name = "FILE", conflicts_with = "output_file")]
    pub file: Option<PathBuf>,
    /// The same as FILE.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
}

/// `keygen -o json` (docs/CLI.md).
#[derive(Serialize)]
struct Report<'a> {
    public_key: &'a str,
    /// Where the identity was written, when a file was given.
    identity_file: Option<&'a std::path::Path>,
    /// The identity file's text, when no file was given (keep it secret).
    identity: Option<&'a str>,
}

/// Runs `keygen`.
pub fn run(output: Output, args: Args) -> anyhow::Result<()> {
    let pair = lifeboat::keys::generate(chrono::Utc::now());
    let path = args.file.or(args.output_file);
    if let Some(path) = &path {
        lifeboat::keys::write_new_private(path, &pair.file_text)?;
        eprintln!(
            "Wrote the identity to {} (keep it outside the cluster, e.g. in your password manager).",
            path.display()
        );
    }
    if output == Output::Json {
        return super::print_json(
            "keygen",
            &Report {
                public_key: &pair.public_key,
                identity_file: path.as_deref(),
                identity: path.is_none().then_some(pair.file_text.as_str()),
            },
        );
    }
    match &path {
        Some(_) => {
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
