//! The crate's error: one variant per pipeline module, each carrying that module's typed error.
//! `stage()` says where in the pipeline a backup failed, for logs and metrics; [`chain`] prints
//! an error with its causes on one line, the way every message and log line shows one.

use thiserror::Error;

/// Where in the pipeline something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Reading or validating the configuration, or loading keys.
    Config,
    /// Talking to etcd or reading its snapshot stream.
    Snapshot,
    /// Compressing or encrypting.
    Encode,
    /// Writing to or reading from the object store.
    Upload,
    /// Writing the manifest that makes a backup exist.
    Commit,
    /// Downloading, verifying or decrypting a stored backup.
    Restore,
}

impl Stage {
    /// The lower-case name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Config => "config",
            Stage::Snapshot => "snapshot",
            Stage::Encode => "encode",
            Stage::Upload => "upload",
            Stage::Commit => "commit",
            Stage::Restore => "restore",
        }
    }
}

/// Everything that can go wrong in lifeboat, by pipeline module.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    #[error(transparent)]
    Keys(#[from] crate::keys::Error),
    #[error(transparent)]
    Etcd(#[from] crate::source::etcd::Error),
    #[error(transparent)]
    Kube(#[from] crate::source::kube::Error),
    #[error(transparent)]
    KubeClient(#[from] crate::kubernetes::Error),
    #[error(transparent)]
    Encode(#[from] crate::encode::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::Error),
    #[error(transparent)]
    Restore(#[from] crate::restore::Error),
}

impl Error {
    /// The pipeline stage this error belongs to.
    pub fn stage(&self) -> Stage {
        match self {
            Error::Config(_) | Error::Keys(_) => Stage::Config,
            Error::Etcd(_) | Error::Kube(_) | Error::KubeClient(_) => Stage::Snapshot,
            Error::Encode(_) => Stage::Encode,
            Error::Store(e) if e.is_commit() => Stage::Commit,
            Error::Store(_) => Stage::Upload,
            Error::Manifest(_) | Error::Restore(_) => Stage::Restore,
        }
    }
}

/// An error and its causes (`source()`, then its source, ...) on one line, joined by ": ",
/// with the userinfo of every URL redacted ([`redact_urls`]). A cause whose text is already part
/// of what is printed is skipped: object_store and kube often repeat their source in their own
/// message, and a line should say each thing once.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(cause) = cur {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = cause.source();
    }
    redact_urls(&out)
}

/// `text` with the userinfo (`user:password@`) of every URL in it replaced by `***@`, so that
/// credentials written into an endpoint never reach a message or a log line. Anything that is
/// not a URL passes through unchanged.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#', whitespace or quote.
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{chain, redact_urls};

    /// An error with an optional cause, for the chain tests.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    fn layers(texts: &[&'static str]) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |inner, text| Some(Layer(text, inner.map(Box::new))))
            .expect("at least one layer")
    }

    #[test]
    fn chain_joins_every_cause() {
        assert_eq!(
            chain(&layers(&[
                "deleting k failed",
                "Generic S3 error",
                "connection refused"
            ])),
            "deleting k failed: Generic S3 error: connection refused"
        );
        assert_eq!(chain(&layers(&["alone"])), "alone");
    }

    #[test]
    fn chain_skips_a_cause_already_in_the_message() {
        // object_store repeats its source: "Generic S3 error: refused" caused by "refused".
        assert_eq!(
            chain(&layers(&[
                "reading k failed",
                "Generic S3 error: refused",
                "refused",
                "",
                "os error 111"
            ])),
            "reading k failed: Generic S3 error: refused: os error 111"
        );
    }

    #[test]
    fn chain_redacts_userinfo_in_causes() {
        assert_eq!(
            chain(&layers(&[
                "cannot reach the store",
                "error sending request for url (https://key:s3cret@minio:9000/b)"
            ])),
            "cannot reach the store: error sending request for url (https://***@minio:9000/b)"
        );
    }

    #[test]
    fn redacts_userinfo_of_every_url() {
        assert_eq!(
            redact_urls("cannot reach https://admin:s3cret@minio:9000/bucket and http://u@h:1"),
            "cannot reach https://***@minio:9000/bucket and http://***@h:1"
        );
        assert_eq!(
            redact_urls("\"https://user:p@ss@e:2379\" uses https"),
            "\"https://***@e:2379\" uses https"
        );
    }

    #[test]
    fn leaves_urls_without_userinfo_and_plain_text_alone() {
        for text in [
            "https://10.0.0.1:2379 refused",
            "s3://bucket/prefix/a@b.txt",
            "no url here, just an @ sign",
            "file:///var/lib/lifeboat",
            "",
        ] {
            assert_eq!(redact_urls(text), text);
        }
    }
}
