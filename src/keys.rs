//! Key material: age identities for decryption, generating key pairs, and reading secret files.
//! Files holding secrets must not be readable by group or others; a trailing newline is ignored.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use thiserror::Error;

/// The example public key of age's README (`age-keygen -o key.txt` prints it there). Nobody on
/// your team holds its identity: backups encrypted to it could never be restored.
pub const AGE_README_EXAMPLE_RECIPIENT: &str =
    "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/// The example public key in lifeboat's own config/ and deploy/ files. It was generated with
/// `lifeboat keygen` and its identity thrown away, so it is refused like age's.
pub const LIFEBOAT_EXAMPLE_RECIPIENT: &str =
    "age1f6rhlg4plttnyad9e99w7nlpcd5exjk8cnflun3unwf06fjvragqsea2a7";

/// Where a documented example public key comes from, if `recipient` is one.
pub fn example_recipient(recipient: &str) -> Option<&'static str> {
    match recipient.trim() {
        AGE_README_EXAMPLE_RECIPIENT => Some("age's README"),
        LIFEBOAT_EXAMPLE_RECIPIENT => Some("lifeboat's example configuration"),
        _ => None,
    }
}

/// Why an identity file holds no usable age identity.
#[derive(Debug)]
pub enum NoIdentity {
    /// age cannot parse it.
    Parse(std::io::Error),
    /// age parsed it but cannot use its identities (a plugin that is not installed, say).
    Unusable(age::DecryptError),
    /// It parses, but holds no key.
    Empty,
}

impl std::fmt::Display for NoIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoIdentity::Parse(e) => f.write_str(&crate::error::chain(e)),
            NoIdentity::Unusable(e) => f.write_str(&crate::error::chain(e)),
            NoIdentity::Empty => f.write_str("no keys found"),
        }
    }
}

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
        "{path} holds no age identity ({why}): pass the file written by `lifeboat keygen` or `age-keygen`, with a line starting AGE-SECRET-KEY-1"
    )]
    BadIdentity {
        path: PathBuf,
        /// Shown in the middle of the message, before the advice, so not a `source`.
        why: NoIdentity,
    },
    #[error(
        "{path} already exists: choose another --output-file (or FILE argument), or remove it if the key in it is no longer needed"
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
    /// The public keys (`age1...`) of the X25519 identities among them.
    pub public_keys: Vec<String>,
    /// How many identities are not X25519 keys (plugin identities), whose recipients cannot be
    /// derived from the file.
    pub others: usize,
}

impl Identities {
    /// Loads an age identity file (as written by `lifeboat keygen` or `age-keygen`).
    pub fn load(path: &Path) -> Result<Identities, Error> {
        check_private(path)?;
        let bad = |why: NoIdentity| Error::BadIdentity {
            path: path.to_path_buf(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file = age::IdentityFile::from_buffer(bytes.as_slice())
            .map_err(|e| bad(NoIdentity::Parse(e)))?;
        let identities = file
            .into_identities()
            .map_err(|e| bad(NoIdentity::Unusable(e)))?;
        if identities.is_empty() {
            return Err(bad(NoIdentity::Empty));
        }
        let (public_keys, others) = public_keys(&String::from_utf8_lossy(&bytes));
        Ok(Identities {
            path: path.to_path_buf(),
            identities,
            public_keys,
            others,
        })
    }

    /// Whether one of these identities decrypts what is encrypted to `recipient`; `None` when
    /// the file holds plugin identities, whose recipients cannot be told from the file.
    pub fn decrypts_for(&self, recipient: &str) -> Option<bool> {
        if self.public_keys.iter().any(|k| k == recipient.trim()) {
            Some(true)
        } else if self.others > 0 {
            None
        } else {
            Some(false)
        }
    }

    /// The identities as age wants them.
    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities
            .iter()
            .map(|i| i.as_ref() as &dyn age::Identity)
    }
}

/// The public keys of the X25519 identities in an identity file's text, and the number of
/// other (plugin) identity lines.
fn public_keys(text: &str) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut others = 0;
    for line in text.lines().map(str::trim) {
        if line.starts_with("AGE-SECRET-KEY-1") {
            match line.parse::<age::x25519::Identity>() {
                Ok(identity) => keys.push(identity.to_public().to_string()),
                Err(_) => others += 1,
            }
        } else if line.starts_with("AGE-PLUGIN-") {
            others += 1;
        }
    }
    (keys, others)
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
    fn an_identity_file_knows_the_public_keys_it_decrypts_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        let (a, b) = (generate(chrono::Utc::now()), generate(chrono::Utc::now()));
        write_new_private(&path, &format!("{}{}", a.file_text, b.file_text)).unwrap();
        let ids = Identities::load(&path).unwrap();
        assert_eq!(
            ids.public_keys,
            [a.public_key.clone(), b.public_key.clone()]
        );
        assert_eq!(ids.decrypts_for(&a.public_key), Some(true));
        assert_eq!(ids.decrypts_for(&b.public_key), Some(true));
        let other = generate(chrono::Utc::now()).public_key;
        assert_eq!(ids.decrypts_for(&other), Some(false));
        assert_eq!(ids.decrypts_for(AGE_README_EXAMPLE_RECIPIENT), Some(false));
    }

    #[test]
    fn the_documented_example_keys_are_recognised() {
        assert_eq!(
            example_recipient(AGE_README_EXAMPLE_RECIPIENT),
            Some("age's README")
        );
        assert!(example_recipient(LIFEBOAT_EXAMPLE_RECIPIENT).is_some());
        assert!(example_recipient(&generate(chrono::Utc::now()).public_key).is_none());
        // Both are real X25519 public keys, so only this check stops them.
        for k in [AGE_README_EXAMPLE_RECIPIENT, LIFEBOAT_EXAMPLE_RECIPIENT] {
            assert!(k.parse::<age::x25519::Recipient>().is_ok(), "{k}");
        }
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
