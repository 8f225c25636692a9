//! Encryption at rest as kube-apiserver does it, read side only: the API server's
//! EncryptionConfiguration (`--encryption-provider-config`) and the stored forms of its
//! providers. A stored value starts with `k8s:enc:<provider>:v1:<key name>:` when a provider
//! encrypted it, and is plain (the identity provider) otherwise:
//!
//! - `aescbc`: a 16-byte IV, then AES-CBC with PKCS#7 padding;
//! - `aesgcm`: a 12-byte nonce, then AES-GCM with the etcd key (e.g.
//!   `/registry/secrets/default/s1`) as additional authenticated data, so a value moved to
//!   another key does not decrypt;
//! - `secretbox`: a 24-byte nonce, then XSalsa20-Poly1305 (NaCl's secretbox);
//! - `kms` (v1 and v2): the key lives in an external KMS plugin, which lifeboat cannot reach
//!   offline: such values are reported, never guessed at.
//!
//! Which key decrypts a value: as the API server, the first `resources` entry that matches the
//! object's resource (`secrets`, `deployments.apps`, `*.apps`, `*.`, `*.*`), then the named key
//! of the named provider in it; failing that, the same key name and provider in any other
//! entry (a configuration rewritten since the value was stored).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine;
use serde::Deserialize;

/// A resource as the EncryptionConfiguration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResource {
    /// The API group, "" for the core group.
    pub group: String,
    /// The plural resource name.
    pub resource: String,
}

/// A parsed, validated EncryptionConfiguration.
#[derive(Debug, Clone)]
pub struct EncryptionConfig {
    path: PathBuf,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    resources: Vec<String>,
    providers: Vec<Provider>,
}

#[derive(Clone)]
enum Provider {
    Aescbc(Vec<Key>),
    Aesgcm(Vec<Key>),
    Secretbox(Vec<Key>),
    Identity,
    Kms { name: String },
}

impl std::fmt::Debug for Provider {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Aescbc(k) | Provider::Aesgcm(k) | Provider::Secretbox(k) => {
                let names: Vec<&str> = k.iter().map(|k| k.name.as_str()).collect();
                write!(f, "{}({names:?})", self.name())
            }
            Provider::Identity => write!(f, "identity"),
            Provider::Kms { name } => write!(f, "kms({name})"),
        }
    }
}

impl Provider {
    fn name(&self) -> &'static str {
        match self {
            Provider::Aescbc(_) => "aescbc",
            Provider::Aesgcm(_) => "aesgcm",
            Provider::Secretbox(_) => "secretbox",
            Provider::Identity => "identity",
            Provider::Kms { .. } => "kms",
        }
    }

    fn keys(&self) -> &[Key] {
        match self {
            Provider::Aescbc(k) | Provider::Aesgcm(k) | Provider::Secretbox(k) => k,
            Provider::Identity | Provider::Kms { .. } => &[],
        }
    }
}

#[derive(Clone)]
struct Key {
    name: String,
    secret: Vec<u8>,
}

/// Why a configuration or a value could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot read the EncryptionConfiguration {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an EncryptionConfiguration lifeboat can use.
    #[error("{path} is not a usable EncryptionConfiguration: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the entry, provider and key.
        reason: String,
    },
    /// The value names a key the configuration does not hold.
    #[error(
        "{etcd_key} is encrypted with {provider} key {key_name:?}, which {path} does not contain: give the EncryptionConfiguration the API server used when it wrote this value"
    )]
    NoKey {
        /// The etcd key of the value.
        etcd_key: String,
        /// The provider named in the value.
        provider: String,
        /// The key name in the value.
        key_name: String,
        /// The configuration.
        path: PathBuf,
    },
    /// The value is encrypted by a KMS plugin.
    #[error(
        "{etcd_key} is encrypted by the KMS plugin {plugin:?} ({version}), which lifeboat cannot reach offline: read it through the API server, or restore etcd with `lifeboat restore etcd`"
    )]
    Kms {
        /// The etcd key of the value.
        etcd_key: String,
        /// The plugin's name, from the value.
        plugin: String,
        /// `kms v1` or `kms v2`.
        version: String,
    },
    /// The value does not decrypt with the key it names.
    #[error(
        "{etcd_key} does not decrypt with {provider} key {key_name:?} of {path} ({reason}): the key's secret differs from the one the API server used, or the value is damaged"
    )]
    Decrypt {
        /// The etcd key of the value.
        etcd_key: String,
        /// The provider.
        provider: String,
        /// The key name.
        key_name: String,
        /// The configuration.
        path: PathBuf,
        /// What failed.
        reason: &'static str,
    },
    /// A prefix of a provider this version does not know.
    #[error(
        "{etcd_key} is encrypted with an encryption provider lifeboat does not know ({prefix:?})"
    )]
    UnknownProvider {
        /// The etcd key.
        etcd_key: String,
        /// The value's prefix.
        prefix: String,
    },
}

/// The provider and key name a stored value was encrypted with (`None` for a plain value):
/// for reporting encrypted objects when no configuration was given. The key name of a `kms`
/// value is its plugin's name.
pub fn encrypted_with(value: &[u8]) -> Option<(String, String)> {
    let parsed = parse_prefix(value)?;
    let provider = match parsed.version {
        "v1" => parsed.provider.to_string(),
        v => format!("{} {v}", parsed.provider),
    };
    Some((provider, parsed.key_name.to_string()))
}

struct Prefixed<'a> {
    provider: &'a str,
    version: &'a str,
    key_name: &'a str,
    prefix_len: usize,
}

/// `k8s:enc:<provider>:<version>:<key name>:` at the start of `value`.
fn parse_prefix(value: &[u8]) -> Option<Prefixed<'_>> {
    let rest = value.strip_prefix(b"k8s:enc:")?;
    let mut fields = Vec::with_capacity(3);
    let mut at = 0;
    for _ in 0..3 {
        let end = rest[at..].iter().position(|&b| b == b':')? + at;
        fields.push(std::str::from_utf8(&rest[at..end]).ok()?);
        at = end + 1;
    }
    Some(Prefixed {
        provider: fields[0],
        version: fields[1],
        key_name: fields[2],
        prefix_len: b"k8s:enc:".len() + at,
    })
}

impl EncryptionConfig {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<EncryptionConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        EncryptionConfig::parse(&text, path)
    }

    /// Parses and validates `text`, read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<EncryptionConfig, Error> {
        let invalid = |reason: String| Error::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let raw: raw::Config = serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.kind.as_deref() != Some("EncryptionConfiguration") {
            return Err(invalid(format!(
                "its kind is {:?}, not EncryptionConfiguration (the file of kube-apiserver's --encryption-provider-config)",
                raw.kind.unwrap_or_default()
            )));
        }
        let mut entries = Vec::new();
        for (i, e) in raw.resources.into_iter().enumerate() {
            let mut providers = Vec::new();
            for (j, p) in e.providers.into_iter().enumerate() {
                let at = format!("resources[{i}].providers[{j}]");
                providers.push(provider(p, &at).map_err(invalid)?);
            }
            entries.push(Entry {
                resources: e.resources,
                providers,
            });
        }
        Ok(EncryptionConfig {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The plain form of `value`, stored at `etcd_key` for an object of `resource`.
    pub fn decrypt<'v>(
        &self,
        resource: &GroupResource,
        etcd_key: &[u8],
        value: &'v [u8],
    ) -> Result<Cow<'v, [u8]>, Error> {
        let Some(parsed) = parse_prefix(value) else {
            return Ok(Cow::Borrowed(value));
        };
        let etcd_key_text = String::from_utf8_lossy(etcd_key).to_string();
        if parsed.provider == "kms" {
            return Err(Error::Kms {
                etcd_key: etcd_key_text,
                plugin: parsed.key_name.to_string(),
                version: format!("kms {}", parsed.version),
            });
        }
        if !matches!(parsed.provider, "aescbc" | "aesgcm" | "secretbox") || parsed.version != "v1" {
            return Err(Error::UnknownProvider {
                etcd_key: etcd_key_text,
                prefix: String::from_utf8_lossy(&value[..parsed.prefix_len]).to_string(),
            });
        }
        let first = self.entries.iter().find(|e| matches(e, resource));
        let in_entry = |e: &Entry| {
            e.providers
                .iter()
                .filter(|p| p.name() == parsed.provider)
                .flat_map(|p| p.keys())
                .find(|k| k.name == parsed.key_name)
                .cloned()
        };
        let key = first
            .and_then(in_entry)
            .or_else(|| self.entries.iter().find_map(in_entry))
            .ok_or_else(|| Error::NoKey {
                etcd_key: etcd_key_text.clone(),
                provider: parsed.provider.to_string(),
                key_name: parsed.key_name.to_string(),
                path: self.path.clone(),
            })?;
        let body = &value[parsed.prefix_len..];
        let failed = |reason| Error::Decrypt {
            etcd_key: etcd_key_text.clone(),
            provider: parsed.provider.to_string(),
            key_name: parsed.key_name.to_string(),
            path: self.path.clone(),
            reason,
        };
        let plain = match parsed.provider {
            "aescbc" => aescbc(&key.secret, body).map_err(failed)?,
            "aesgcm" => aesgcm(&key.secret, body, etcd_key).map_err(failed)?,
            _ => secretbox(&key.secret, body).map_err(failed)?,
        };
        Ok(Cow::Owned(plain))
    }
}

/// Whether entry `e` names `resource`.
fn matches(e: &Entry, resource: &GroupResource) -> bool {
    e.resources.iter().any(|r| {
        let (plural, group) = r.split_once('.').unwrap_or((r.as_str(), ""));
        (plural == "*" || plural == resource.resource) && (group == "*" || group == resource.group)
    })
}

fn provider(p: raw::Provider, at: &str) -> Result<Provider, String> {
    let mut given: Vec<Provider> = Vec::new();
    if let Some(k) = p.aescbc {
        given.push(Provider::Aescbc(keys(k, "aescbc", at, &[16, 24, 32])?));
    }
    if let Some(k) = p.aesgcm {
        given.push(Provider::Aesgcm(keys(k, "aesgcm", at, &[16, 24, 32])?));
    }
    if let Some(k) = p.secretbox {
        given.push(Provider::Secretbox(keys(k, "secretbox", at, &[32])?));
    }
    if p.identity.is_some() {
        given.push(Provider::Identity);
    }
    if let Some(kms) = p.kms {
        given.push(Provider::Kms { name: kms.name });
    }
    match given.len() {
        1 => Ok(given.remove(0)),
        0 => Err(format!(
            "{at} names no provider lifeboat knows (aescbc, aesgcm, secretbox, identity, kms)"
        )),
        _ => Err(format!(
            "{at} names several providers: give one per list item"
        )),
    }
}

fn keys(k: raw::Keys, provider: &str, at: &str, lengths: &[usize]) -> Result<Vec<Key>, String> {
    if k.keys.is_empty() {
        return Err(format!("{at}.{provider} has no keys"));
    }
    k.keys
        .into_iter()
        .map(|key| {
            let secret = base64::engine::general_purpose::STANDARD
                .decode(key.secret.trim())
                .map_err(|e| {
                    format!(
                        "{at}.{provider} key {:?}: its secret is not base64 ({e})",
                        key.name
                    )
                })?;
            if !lengths.contains(&secret.len()) {
                return Err(format!(
                    "{at}.{provider} key {:?} is {} bytes long; {provider} takes {} bytes",
                    key.name,
                    secret.len(),
                    lengths
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Ok(Key {
                name: key.name,
                secret,
            })
        })
        .collect()
}

fn aescbc(key: &[u8], body: &[u8]) -> Result<Vec<u8>, &'static str> {
    use cbc::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
    if body.len() < 32 || !body.len().is_multiple_of(16) {
        return Err("the value is not an IV and whole AES blocks");
    }
    let (iv, data) = body.split_at(16);
    let plain = match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(|_| "bad key")?
            .decrypt_padded_vec_mut::<Pkcs7>(data),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv)
            .map_err(|_| "bad key")?
            .decrypt_padded_vec_mut::<Pkcs7>(data),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(|_| "bad key")?
            .decrypt_padded_vec_mut::<Pkcs7>(data),
    };
    plain.map_err(|_| "the padding is wrong")
}

fn aesgcm(key: &[u8], body: &[u8], aad: &[u8]) -> Result<Vec<u8>, &'static str> {
    if body.len() < 12 + 16 {
        return Err("the value is shorter than a nonce and a tag");
    }
    let (nonce, data) = body.split_at(12);
    let nonce = aes_gcm::Nonce::from_slice(nonce);
    let payload = Payload { msg: data, aad };
    let opened = match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .map_err(|_| "bad key")?
            .decrypt(nonce, payload),
        24 => aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(key)
            .map_err(|_| "bad key")?
            .decrypt(nonce, payload),
        _ => aes_gcm::Aes256Gcm::new_from_slice(key)
            .map_err(|_| "bad key")?
            .decrypt(nonce, payload),
    };
    opened.map_err(|_| "authentication failed")
}

fn secretbox(key: &[u8], body: &[u8]) -> Result<Vec<u8>, &'static str> {
    use crypto_secretbox::aead::{Aead as _, KeyInit as _};
    if body.len() < 24 + 16 {
        return Err("the value is shorter than a nonce and a tag");
    }
    let (nonce, data) = body.split_at(24);
    crypto_secretbox::XSalsa20Poly1305::new_from_slice(key)
        .map_err(|_| "bad key")?
        .decrypt(crypto_secretbox::Nonce::from_slice(nonce), data)
        .map_err(|_| "authentication failed")
}

/// The file as written, before validation.
mod raw {
    use super::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Config {
        #[allow(dead_code)]
        pub api_version: Option<String>,
        pub kind: Option<String>,
        #[serde(default)]
        pub resources: Vec<Entry>,
    }

    #[derive(Deserialize)]
    pub struct Entry {
        #[serde(default)]
        pub resources: Vec<String>,
        #[serde(default)]
        pub providers: Vec<Provider>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Provider {
        pub aescbc: Option<Keys>,
        pub aesgcm: Option<Keys>,
        pub secretbox: Option<Keys>,
        pub identity: Option<serde::de::IgnoredAny>,
        pub kms: Option<Kms>,
    }

    #[derive(Deserialize)]
    pub struct Keys {
        #[serde(default)]
        pub keys: Vec<Key>,
    }

    #[derive(Deserialize)]
    pub struct Key {
        pub name: String,
        pub secret: String,
    }

    /// Only the name matters offline; the endpoint, cache size, timeout … are ignored.
    #[derive(Deserialize)]
    pub struct Kms {
        pub name: String,
    }
}

#[cfg(test)]
mod tests {
    //! The stored values below were produced by tests/integration/support/k8s_encrypt.py
    //! (Python's cryptography and PyNaCl), not by this module:
    //! `printf 'hello, etcd' | python3 k8s_encrypt.py PROVIDER KEYNAME KEY /registry/secrets/ns/s1 | base64 -w0`
    use super::*;

    const CBC_KEY: &str = "c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/IDMyYnk=";
    const GCM_KEY: &str = "MTIzNDU2Nzg5MDEyMzQ1Ng==";
    const BOX_KEY: &str = "cGFzc3dvcmRwYXNzd29yZHBhc3N3b3JkcGFzc3dvcmQ=";
    const ETCD_KEY: &[u8] = b"/registry/secrets/ns/s1";

    fn config(extra: &str) -> EncryptionConfig {
        let text = format!(
            "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys: [{{name: key1, secret: {CBC_KEY}}}]
      - aesgcm:
          keys: [{{name: key2, secret: {GCM_KEY}}}]
      - secretbox:
          keys: [{{name: key3, secret: {BOX_KEY}}}]
      - kms:
          name: vault
          endpoint: unix:///kms.sock
          cachesize: 100
      - identity: {{}}
{extra}"
        );
        EncryptionConfig::parse(&text, Path::new("enc.yaml")).unwrap()
    }

    fn stored(b64: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }

    fn secrets() -> GroupResource {
        GroupResource {
            group: String::new(),
            resource: "secrets".into(),
        }
    }

    const AESCBC: &str =
        "azhzOmVuYzphZXNjYmM6djE6a2V5MTpT2pziPmbnGDoXpTyXm/CkdjqYhvPElzKPDpGIvVBIxw==";
    const AESGCM: &str =
        "azhzOmVuYzphZXNnY206djE6a2V5MjpL81T912+KFeQAIXBCVrnBOy5Zrz1U8jlXnLNhsi/6XYSJbyfT3N8=";
    const SECRETBOX: &str = "azhzOmVuYzpzZWNyZXRib3g6djE6a2V5MzqUDB/9QQpXTFDEl5wGomP0zGiSQUvezv3H5sAmTG2j7s1DAFPCsRtY2WT/lBavMP6BnV0=";

    #[test]
    fn each_provider_decrypts_what_an_independent_implementation_encrypted() {
        let c = config("");
        for v in [AESCBC, AESGCM, SECRETBOX] {
            let value = stored(v);
            let plain = c.decrypt(&secrets(), ETCD_KEY, &value).unwrap();
            assert_eq!(&*plain, b"hello, etcd");
        }
    }

    #[test]
    fn aesgcm_binds_the_value_to_its_etcd_key() {
        let err = config("")
            .decrypt(&secrets(), b"/registry/secrets/ns/other", &stored(AESGCM))
            .unwrap_err();
        assert!(err.to_string().contains("authentication failed"), "{err}");
    }

    #[test]
    fn a_plain_value_passes_through_untouched() {
        let plain = config("")
            .decrypt(&secrets(), ETCD_KEY, b"k8s\x00\x0a\x02")
            .unwrap();
        assert!(matches!(plain, Cow::Borrowed(b"k8s\x00\x0a\x02")));
        assert_eq!(encrypted_with(b"{\"kind\":\"Secret\"}"), None);
    }

    #[test]
    fn a_wrong_secret_or_a_flipped_byte_is_an_error_naming_the_key() {
        let wrong = format!(
            "apiVersion: v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - secretbox:
          keys: [{{name: key3, secret: {CBC_KEY}}}]
"
        );
        let c = EncryptionConfig::parse(&wrong, Path::new("enc.yaml")).unwrap();
        let err = c
            .decrypt(&secrets(), ETCD_KEY, &stored(SECRETBOX))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("secretbox key \"key3\"") && err.contains("authentication failed"),
            "{err}"
        );
        for v in [AESCBC, AESGCM, SECRETBOX] {
            let mut bytes = stored(v);
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            assert!(config("").decrypt(&secrets(), ETCD_KEY, &bytes).is_err());
            bytes.truncate(30);
            assert!(config("").decrypt(&secrets(), ETCD_KEY, &bytes).is_err());
        }
    }

    #[test]
    fn kms_values_name_their_plugin_and_say_they_cannot_be_read_offline() {
        let err = config("")
            .decrypt(&secrets(), ETCD_KEY, b"k8s:enc:kms:v2:vault:\x0a\x01x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("KMS plugin \"vault\" (kms v2)"), "{err}");
        assert_eq!(
            encrypted_with(b"k8s:enc:kms:v2:vault:xyz"),
            Some(("kms v2".into(), "vault".into()))
        );
        assert_eq!(
            encrypted_with(&stored(AESCBC)),
            Some(("aescbc".into(), "key1".into()))
        );
    }

    #[test]
    fn a_key_name_the_config_lacks_is_named() {
        let mut v = b"k8s:enc:aescbc:v1:old-key:".to_vec();
        v.extend([0u8; 32]);
        let err = config("")
            .decrypt(&secrets(), ETCD_KEY, &v)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("aescbc key \"old-key\", which enc.yaml does not contain"),
            "{err}"
        );
    }

    #[test]
    fn the_first_matching_entry_wins_then_any_entry_with_the_key() {
        let e = |r: &[&str]| Entry {
            resources: r.iter().map(|s| s.to_string()).collect(),
            providers: vec![],
        };
        let gr = |g: &str, r: &str| GroupResource {
            group: g.into(),
            resource: r.into(),
        };
        assert!(matches(&e(&["secrets"]), &gr("", "secrets")));
        assert!(!matches(&e(&["secrets"]), &gr("apps", "secrets")));
        assert!(matches(
            &e(&["deployments.apps"]),
            &gr("apps", "deployments")
        ));
        assert!(matches(&e(&["*.apps"]), &gr("apps", "replicasets")));
        assert!(matches(&e(&["*."]), &gr("", "configmaps")));
        assert!(!matches(&e(&["*."]), &gr("apps", "deployments")));
        assert!(matches(&e(&["*.*"]), &gr("example.com", "widgets")));
        // A second entry with another secret under the same key name: the first match wins.
        let c = config(&format!(
            "  - resources: ['*.*']
    providers:
      - secretbox:
          keys: [{{name: key3, secret: {}}}]
",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        ));
        assert!(c.decrypt(&secrets(), ETCD_KEY, &stored(SECRETBOX)).is_ok());
        // A resource only `*.*` matches still finds key1 of the secrets entry (rotated config).
        let cm = gr("", "configmaps");
        assert!(c.decrypt(&cm, ETCD_KEY, &stored(AESCBC)).is_ok());
    }

    #[test]
    fn a_config_with_bad_keys_or_providers_is_refused_naming_them() {
        let bad = |providers: &str| {
            let text = format!(
                "kind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{providers}"
            );
            EncryptionConfig::parse(&text, Path::new("enc.yaml"))
                .unwrap_err()
                .to_string()
        };
        let e = bad("      - aescbc:\n          keys: [{name: k, secret: 'not base64!'}]\n");
        assert!(
            e.contains("resources[0].providers[0].aescbc key \"k\"") && e.contains("base64"),
            "{e}"
        );
        let e = bad(
            "      - secretbox:\n          keys: [{name: k, secret: MTIzNDU2Nzg5MDEyMzQ1Ng==}]\n",
        );
        assert!(
            e.contains("is 16 bytes long; secretbox takes 32 bytes"),
            "{e}"
        );
        let e = bad("      - rot13: {}\n");
        assert!(e.contains("rot13"), "{e}");
        let e = EncryptionConfig::parse("kind: Pod\n", Path::new("enc.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not EncryptionConfiguration"), "{e}");
    }
}
