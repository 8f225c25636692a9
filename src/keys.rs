//! Key material: age identities for decryption, generating key pairs, and reading secret files.
//! Files holding secrets must not be readable by group or others; a trailing newline is ignored.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use thiserror::Error;

/// Why key material could not be used.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is readable by group or others (mode {mode:04o}): run `chmod 600 {path}` (in Kubernetes set defaultMode: 0400 on the secret volume)"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is empty: it should hold the secret on one line")]
    Empty { path: PathBuf },
    #[error(
        "{path} holds no age identity ({reason}): pass the file written by `lifeboat keygen` or `age-keygen`, with a line starting AGE-SECRET-KEY-1"
    )]
    BadIdentity { path: PathBuf, reason: String },
    #[error(
        "{path} already exists: choose another --output, or remove it if the key in it is no longer needed"
    )]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Refuses a file that group or others can read.
pub fn check_private(path: &Path) -> Result<(), Error> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Reads a one-line secret (a key id, a password) from a private file.
pub fn read_secret_file(path: &Path) -> Result<String, Error> {
    check_private(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let secret = text.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(secret)
}

/// The age identities in one identity file, with its path for messages.
pub struct Identities {
    /// The file they came from.
    pub path: PathBuf,
    /// The identities; never logged.
    pub identities: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl Identities {
    /// Loads an age identity file (as written by `lifeboat keygen` or `age-keygen`).
    pub fn load(path: &Path) -> Result<Identities, Error> {
        check_private(path)?;
        let bad = |reason: String| Error::BadIdentity {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file =
            age::IdentityFile::from_buffer(bytes.as_slice()).map_err(|e| bad(e.to_string()))?;
        let identities = file.into_identities().map_err(|e| bad(e.to_string()))?;
        if identities.is_empty() {
            return Err(bad("no keys found".into()));
        }
        Ok(Identities {
            path: path.to_path_buf(),
            identities,
        })
    }

    /// The identities as age wants them.
    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities
            .iter()
            .map(|i| i.as_ref() as &dyn age::Identity)
    }
}

/// A new X25519 key pair, as the text of an identity file and its public key.
pub struct KeyPair {
    /// The identity file's contents, in age-keygen's format. Secret.
    pub file_text: String,
    /// The public key (`age1...`) to put in `encryption.recipients`.
    pub public_key: String,
}

/// Generates a key pair; `created` is written into the file's comment.
pub fn generate(created: chrono::DateTime<chrono::Utc>) -> KeyPair {
    let identity = age::x25519::Identity::generate();
    let public_key = identity.to_public().to_string();
    let file_text = format!(
        "# created: {}\n# public key: {public_key}\n{}\n",
        created.format("%Y-%m-%dT%H:%M:%SZ"),
        identity.to_string().expose_secret()
    );
    KeyPair {
        file_text,
        public_key,
    }
}

/// Writes a new secret file with mode 0600, refusing to overwrite an existing one.
pub fn write_new_private(path: &Path, text: &str) -> Result<(), Error> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                Error::Write {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_loads_back_and_matches_its_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        let pair = generate(chrono::Utc::now());
        write_new_private(&path, &pair.file_text).unwrap();
        let ids = Identities::load(&path).unwrap();
        assert_eq!(ids.identities.len(), 1);
        assert!(pair.public_key.parse::<age::x25519::Recipient>().is_ok());
        assert!(matches!(
            write_new_private(&path, "x"),
            Err(Error::Exists { .. })
        ));
    }

    #[test]
    fn world_readable_secrets_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "abc\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret_file(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&path).unwrap(), "abc");
    }
}
