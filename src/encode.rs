//! The streaming encode stage: plain bytes → zstd → age (X25519 recipients) → stored bytes,
//! with the size and sha256 of the stored bytes tallied on the fly; and the inverse for reading.
//! The stages are synchronous `Write`/`Read` adapters, run on a blocking thread by the pipeline.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::snapshot::hex;

/// Encoded output is handed to the uploader in chunks of this size.
pub const OUTPUT_CHUNK: usize = 1024 * 1024;

/// Why encoding or decoding failed.
#[derive(Debug, Error)]
pub enum Error {
    #[error("could not set up age encryption to the configured recipients: {reason}")]
    Recipients { reason: String },
    #[error("compressing or encrypting the backup failed: {0}")]
    Io(#[source] io::Error),
    #[error("the upload stage stopped before encoding finished")]
    OutputClosed,
    #[error(
        "the stored object is not an age file ({reason}); was it written unencrypted? check the manifest's payload.encryption"
    )]
    NotAge { reason: String },
    #[error(
        "none of the identities in {identity_file} can decrypt this backup: it was encrypted to {recipients}; use the identity file whose public key is among them"
    )]
    WrongIdentity {
        identity_file: String,
        recipients: String,
    },
    #[error("decrypting the backup failed: {reason}")]
    Decrypt { reason: String },
}

/// How to encode: the zstd level and, unless storing in the clear, the age recipients.
#[derive(Clone)]
pub struct Settings {
    /// zstd compression level.
    pub level: i32,
    /// age recipients; `None` stores compressed but unencrypted bytes.
    pub recipients: Option<Vec<age::x25519::Recipient>>,
}

impl Settings {
    /// The payload object's name for these settings.
    pub fn payload_name(&self, stem: &str) -> String {
        match self.recipients {
            Some(_) => format!("{stem}.zst.age"),
            None => format!("{stem}.zst"),
        }
    }
}

/// Sizes and digest of an encoded stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Bytes fed in.
    pub plain_size: u64,
    /// Bytes written out (what is stored).
    pub stored_size: u64,
    /// sha256 of the bytes written out, hex.
    pub stored_sha256: String,
}

/// Counts and hashes every byte written through it.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W> Hashing<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Bytes passed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The inner value, the byte count and the hex sha256.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.size, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

enum Chain<W: Write> {
    Encrypted(zstd::Encoder<'static, age::stream::StreamWriter<Hashing<W>>>),
    Plain(zstd::Encoder<'static, Hashing<W>>),
}

/// The encode stage as one `Write`: plain bytes in, stored bytes out to `W`.
pub struct Encoder<W: Write> {
    chain: Chain<W>,
    plain_size: u64,
}

impl<W: Write> Encoder<W> {
    /// Starts an encoded stream into `out`; the age header is written immediately.
    pub fn new(settings: &Settings, out: W) -> Result<Self, Error> {
        let hashing = Hashing::new(out);
        let chain = match &settings.recipients {
            Some(recipients) => {
                let encryptor = age::Encryptor::with_recipients(
                    recipients.iter().map(|r| r as &dyn age::Recipient),
                )
                .map_err(|e| Error::Recipients {
                    reason: e.to_string(),
                })?;
                let age = encryptor.wrap_output(hashing).map_err(Error::Io)?;
                Chain::Encrypted(zstd_encoder(age, settings.level)?)
            }
            None => Chain::Plain(zstd_encoder(hashing, settings.level)?),
        };
        Ok(Encoder {
            chain,
            plain_size: 0,
        })
    }

    /// Feeds plain bytes.
    pub fn write_all(&mut self, buf: &[u8]) -> Result<(), Error> {
        let result = match &mut self.chain {
            Chain::Encrypted(z) => z.write_all(buf),
            Chain::Plain(z) => z.write_all(buf),
        };
        result.map_err(classify)?;
        self.plain_size += buf.len() as u64;
        Ok(())
    }

    /// Ends the zstd frame and the age stream; returns the sink and the tally.
    pub fn finish(self) -> Result<(W, Tally), Error> {
        let hashing = match self.chain {
            Chain::Encrypted(z) => z.finish().and_then(|age| age.finish()),
            Chain::Plain(z) => z.finish(),
        }
        .map_err(classify)?;
        let (mut out, stored_size, stored_sha256) = hashing.finish();
        out.flush().map_err(classify)?;
        Ok((
            out,
            Tally {
                plain_size: self.plain_size,
                stored_size,
                stored_sha256,
            },
        ))
    }
}

fn zstd_encoder<W: Write>(w: W, level: i32) -> Result<zstd::Encoder<'static, W>, Error> {
    let mut z = zstd::Encoder::new(w, level).map_err(Error::Io)?;
    z.include_checksum(true).map_err(Error::Io)?;
    Ok(z)
}

fn classify(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Error::OutputClosed
    } else {
        Error::Io(e)
    }
}

/// A `Write` that hands what it receives to an async consumer in [`OUTPUT_CHUNK`]-sized pieces.
/// A closed channel surfaces as `BrokenPipe`.
pub struct ChunkSender {
    buf: BytesMut,
    tx: mpsc::Sender<Bytes>,
}

impl ChunkSender {
    /// Sends into `tx`; must be used from a blocking thread.
    pub fn new(tx: mpsc::Sender<Bytes>) -> Self {
        ChunkSender {
            buf: BytesMut::with_capacity(OUTPUT_CHUNK),
            tx,
        }
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(OUTPUT_CHUNK);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "upload stage closed"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = OUTPUT_CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= OUTPUT_CHUNK {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered()
    }
}

/// Runs the encode stage on a blocking thread: plain chunks from `input`, stored chunks to
/// `output`. Ends when `input` closes; an error drops both channels so the other stages stop.
pub fn spawn(
    settings: Settings,
    mut input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
) -> tokio::task::JoinHandle<Result<Tally, Error>> {
    tokio::task::spawn_blocking(move || {
        let mut encoder = Encoder::new(&settings, ChunkSender::new(output))?;
        while let Some(chunk) = input.blocking_recv() {
            encoder.write_all(&chunk)?;
        }
        let (_sender, tally) = encoder.finish()?;
        Ok(tally)
    })
}

/// Decrypts one standalone age file (an encrypted object of a resource export).
pub fn decoder_plain<'a, R: Read + 'a>(
    stored: R,
    identities: &crate::keys::Identities,
) -> Result<Box<dyn Read + 'a>, Error> {
    let decryptor = age::Decryptor::new(stored).map_err(|e| Error::NotAge {
        reason: e.to_string(),
    })?;
    let reader = decryptor.decrypt(identities.iter()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => Error::WrongIdentity {
            identity_file: identities.path.display().to_string(),
            recipients: "the export's recipients (see the manifest)".into(),
        },
        other => Error::Decrypt {
            reason: other.to_string(),
        },
    })?;
    Ok(Box::new(reader))
}

/// Opens a stored payload for reading: age decryption (when `identities` is given) and zstd.
/// `recipients` only serve the message when no identity matches.
pub fn decoder<'a, R: Read + 'a>(
    stored: R,
    identities: Option<&crate::keys::Identities>,
    recipients: &[String],
) -> Result<Box<dyn Read + 'a>, Error> {
    let plain: Box<dyn Read + 'a> = match identities {
        Some(ids) => {
            let decryptor = age::Decryptor::new(stored).map_err(|e| Error::NotAge {
                reason: e.to_string(),
            })?;
            let reader = decryptor.decrypt(ids.iter()).map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => Error::WrongIdentity {
                    identity_file: ids.path.display().to_string(),
                    recipients: if recipients.is_empty() {
                        "unknown recipients".into()
                    } else {
                        recipients.join(", ")
                    },
                },
                other => Error::Decrypt {
                    reason: other.to_string(),
                },
            })?;
            Box::new(reader)
        }
        None => Box::new(stored),
    };
    Ok(Box::new(zstd::Decoder::new(plain).map_err(Error::Io)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (age::x25519::Identity, Settings) {
        let id = age::x25519::Identity::generate();
        let settings = Settings {
            level: 3,
            recipients: Some(vec![id.to_public()]),
        };
        (id, settings)
    }

    #[test]
    fn encoded_bytes_decode_back_and_the_tally_describes_them() {
        let (id, settings) = key();
        let plain: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut enc = Encoder::new(&settings, Vec::new()).unwrap();
        for chunk in plain.chunks(32 * 1024) {
            enc.write_all(chunk).unwrap();
        }
        let (stored, tally) = enc.finish().unwrap();
        assert_eq!(tally.plain_size, plain.len() as u64);
        assert_eq!(tally.stored_size, stored.len() as u64);
        assert_eq!(tally.stored_sha256, hex(&Sha256::digest(&stored)));
        assert!(stored.starts_with(b"age-encryption.org/v1\n"));

        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("key.txt");
        crate::keys::write_new_private(
            &key_path,
            &format!(
                "{}\n",
                age::secrecy::ExposeSecret::expose_secret(&id.to_string())
            ),
        )
        .unwrap();
        let ids = crate::keys::Identities::load(&key_path).unwrap();
        let mut out = Vec::new();
        decoder(stored.as_slice(), Some(&ids), &[])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain);
    }

    #[test]
    fn the_wrong_identity_is_named_with_the_recipients() {
        let (_id, settings) = key();
        let mut enc = Encoder::new(&settings, Vec::new()).unwrap();
        enc.write_all(b"hello").unwrap();
        let (stored, _) = enc.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("other.txt");
        crate::keys::write_new_private(
            &key_path,
            &crate::keys::generate(chrono::Utc::now()).file_text,
        )
        .unwrap();
        let ids = crate::keys::Identities::load(&key_path).unwrap();
        let err = decoder(stored.as_slice(), Some(&ids), &["age1abc".into()])
            .err()
            .unwrap();
        assert!(matches!(err, Error::WrongIdentity { .. }), "{err}");
        assert!(err.to_string().contains("age1abc"));
    }

    #[test]
    fn unencrypted_payloads_are_plain_zstd() {
        let settings = Settings {
            level: 1,
            recipients: None,
        };
        let mut enc = Encoder::new(&settings, Vec::new()).unwrap();
        enc.write_all(b"plain snapshot").unwrap();
        let (stored, _) = enc.finish().unwrap();
        assert_eq!(
            zstd::decode_all(stored.as_slice()).unwrap(),
            b"plain snapshot"
        );
    }
}
