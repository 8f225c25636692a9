//! Validation of the file as written ([`raw`](super::raw)) into the runtime [`Config`]: every
//! range, syntax, file and cross-field rule, each refusal naming the file, line, column and field
//! and saying what to do. Reads only the files the config names (keys, certificates).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Spanned;
use url::Url;

use super::raw::{
    RawConfig, RawDrill, RawDrillPlan, RawEncryption, RawEtcd, RawLeaderElection, RawPlan, RawS3,
    RawServer, RawStorage, RawTls,
};
use super::{
    Config, Drill, Encryption, Error, Etcd, Kubernetes, LeaderElection, Plan, Resources, S3,
    Server, StaticCredentials, Storage, Tls,
};

/// Validates `raw`, read from `path` (named in every error).
pub(super) fn config(path: &Path, raw: RawConfig) -> Result<Config, Error> {
    Validator { path }.config(raw)
}

struct Validator<'a> {
    path: &'a Path,
}

impl Validator<'_> {
    fn invalid<T>(&self, at: &Spanned<T>, field: &str, message: impl Into<String>) -> Error {
        let (line, column) = if at.referenced.line() == 0 {
            (1, 1)
        } else {
            (at.referenced.line(), at.referenced.column())
        };
        Error::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            // A value quoted back may be a URL with credentials in it: never echo those.
            message: crate::error::redact_urls(&message.into()),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, Error> {
        let cluster = self.cluster(&raw.cluster)?;
        let storage = self.storage(raw.storage)?;
        let encryption = self.encryption(raw.encryption)?;
        let level = raw.compression.level.value;
        if !(1..=19).contains(&level) {
            return Err(self.invalid(
                &raw.compression.level,
                "compression.level",
                format!("zstd level {level} is out of range: use 1 (fastest) to 19 (smallest); 3 is the default"),
            ));
        }
        let etcd = raw.etcd.map(|e| self.etcd(e)).transpose()?;
        let mut plans = Vec::new();
        let schedules = raw.schedules.unwrap_or_default();
        let drill = self.drill(raw.drill.unwrap_or_default(), schedules.drill, &encryption)?;
        if let Some(p) = schedules.etcd {
            if etcd.is_none() {
                return Err(self.invalid(
                    &p.cron,
                    "schedules.etcd",
                    "an etcd schedule needs an etcd section: add etcd.endpoints",
                ));
            }
            plans.push(self.plan("etcd", crate::manifest::Kind::Etcd, p)?);
        }
        if let Some(p) = schedules.resources {
            plans.push(self.plan("resources", crate::manifest::Kind::Resources, p)?);
        }
        let raw_resources = raw.resources.unwrap_or_default();
        if raw_resources.page_size == 0 || raw_resources.page_size > 10_000 {
            return Err(Error::Missing {
                path: self.path.to_path_buf(),
                field: "resources.page_size".into(),
                message: format!(
                    "{} is out of range: use 1 to 10000 (500 is the default)",
                    raw_resources.page_size
                ),
            });
        }
        let resources = Resources {
            include_namespaces: raw_resources.include_namespaces,
            exclude_namespaces: raw_resources.exclude_namespaces,
            include_resources: raw_resources.include_resources,
            exclude_resources: raw_resources.exclude_resources,
            encrypt_resources: raw_resources.encrypt_resources,
            page_size: raw_resources.page_size,
            restore_skip_resources: raw_resources.restore_skip_resources,
        };
        let server = self.server(raw.server.unwrap_or_default())?;
        let leader_election = self.leader_election(raw.leader_election.unwrap_or_default())?;
        let raw_kubernetes = raw.kubernetes.unwrap_or_default();
        let kubernetes = Kubernetes {
            kubeconfig: match raw_kubernetes.kubeconfig {
                Some(k) => Some(self.readable(&k, "kubernetes.kubeconfig")?),
                None => None,
            },
            context: raw_kubernetes.context,
        };
        Ok(Config {
            path: self.path.to_path_buf(),
            cluster,
            storage,
            encryption,
            compression_level: level as i32,
            etcd,
            plans,
            server,
            leader_election,
            kubernetes,
            drill,
            resources,
        })
    }

    fn drill(
        &self,
        raw: RawDrill,
        plan: Option<RawDrillPlan>,
        encryption: &Encryption,
    ) -> Result<Drill, Error> {
        let identity_file = match &raw.identity_file {
            Some(f) => {
                crate::keys::check_private(Path::new(&f.value))
                    .map_err(|e| self.invalid(f, "drill.identity_file", e.to_string()))?;
                self.drill_identity_decrypts(f, encryption)?;
                Some(PathBuf::from(&f.value))
            }
            None => None,
        };
        let schedule = match plan {
            None => None,
            Some(p) => {
                if identity_file.is_none() {
                    return Err(self.invalid(
                        &p.cron,
                        "schedules.drill",
                        "scheduled drills decrypt backups: set drill.identity_file (mode 0600)",
                    ));
                }
                let zone = p
                    .time_zone
                    .as_ref()
                    .map(|z| z.value.as_str())
                    .unwrap_or("UTC");
                Some(
                    crate::policy::schedule::Schedule::parse(&p.cron.value, zone).map_err(|e| {
                        self.invalid(&p.cron, "schedules.drill.cron", e.to_string())
                    })?,
                )
            }
        };
        Ok(Drill {
            schedule,
            identity_file,
            etcd_bin_dir: raw.etcd_bin_dir.map(|d| PathBuf::from(d.value)),
        })
    }

    /// A drill decrypts with `drill.identity_file` alone, so at least one recipient must have
    /// its identity there. Not every one: a recovery key whose identity lives outside the
    /// cluster is the point of having several recipients.
    fn drill_identity_decrypts(
        &self,
        f: &Spanned<String>,
        encryption: &Encryption,
    ) -> Result<(), Error> {
        let Encryption::Age(recipients) = encryption else {
            return Ok(());
        };
        let ids = crate::keys::Identities::load(Path::new(&f.value))
            .map_err(|e| self.invalid(f, "drill.identity_file", e.to_string()))?;
        let keys: Vec<String> = recipients.iter().map(|r| r.to_string()).collect();
        if keys.iter().any(|k| ids.decrypts_for(k) != Some(false)) {
            return Ok(());
        }
        Err(self.invalid(
            f,
            "drill.identity_file",
            format!(
                "{} holds no identity for any of encryption.recipients ({}), so a drill could never decrypt a backup; the file holds the identities of {}: add one of those public keys to encryption.recipients, or point drill.identity_file at the identity of a recipient (`age-keygen -y FILE` prints a file's public keys)",
                f.value,
                keys.join(", "),
                ids.public_keys.join(", ")
            ),
        ))
    }

    fn plan(&self, name: &str, kind: crate::manifest::Kind, raw: RawPlan) -> Result<Plan, Error> {
        let field = |f: &str| format!("schedules.{name}.{f}");
        let zone = raw
            .time_zone
            .as_ref()
            .map(|z| z.value.as_str())
            .unwrap_or("UTC");
        let schedule =
            crate::policy::schedule::Schedule::parse(&raw.cron.value, zone).map_err(|e| {
                let at = match (&e, &raw.time_zone) {
                    (crate::policy::schedule::Error::UnknownTimeZone { .. }, Some(z)) => {
                        (z.referenced.line(), z.referenced.column())
                    }
                    _ => (raw.cron.referenced.line(), raw.cron.referenced.column()),
                };
                Error::Invalid {
                    path: self.path.to_path_buf(),
                    line: at.0.max(1),
                    column: at.1.max(1),
                    field: field(
                        if matches!(e, crate::policy::schedule::Error::UnknownTimeZone { .. }) {
                            "time_zone"
                        } else {
                            "cron"
                        },
                    ),
                    message: e.to_string(),
                }
            })?;
        let retention = match raw.retention {
            Some(r) => {
                r.value
                    .validate()
                    .map_err(|e| self.invalid(&r, &field("retention"), e.to_string()))?;
                Some(r.value)
            }
            None => None,
        };
        Ok(Plan {
            name: name.to_string(),
            kind,
            schedule,
            retention,
            retries: raw.retries,
            retry_backoff: self.duration(&raw.retry_backoff, &field("retry_backoff"))?,
            sweep_incomplete_after: self.duration(
                &raw.sweep_incomplete_after,
                &field("sweep_incomplete_after"),
            )?,
        })
    }

    fn server(&self, raw: RawServer) -> Result<Server, Error> {
        let listen = raw.listen.value.parse().map_err(|e| {
            self.invalid(
                &raw.listen,
                "server.listen",
                format!(
                    "\"{}\" is not an address:port ({e}): use e.g. 0.0.0.0:9464",
                    raw.listen.value
                ),
            )
        })?;
        Ok(Server {
            listen,
            shutdown_grace: self.duration(&raw.shutdown_grace, "server.shutdown_grace")?,
        })
    }

    fn leader_election(&self, raw: RawLeaderElection) -> Result<Option<LeaderElection>, Error> {
        if !raw.enabled {
            return Ok(None);
        }
        let lease_duration =
            self.duration(&raw.lease_duration, "leader_election.lease_duration")?;
        let renew_interval =
            self.duration(&raw.renew_interval, "leader_election.renew_interval")?;
        if renew_interval * 2 > lease_duration {
            return Err(self.invalid(&raw.renew_interval, "leader_election.renew_interval", "renew at least twice per lease_duration (e.g. 5s for 15s), or the lease lapses between renewals"));
        }
        let identity = raw
            .identity
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| format!("lifeboat-{}", std::process::id()));
        Ok(Some(LeaderElection {
            namespace: raw.namespace,
            lease_name: raw.lease_name,
            lease_duration,
            renew_interval,
            identity,
        }))
    }

    fn cluster(&self, name: &Spanned<String>) -> Result<String, Error> {
        let n = &name.value;
        let ok = !n.is_empty()
            && n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-')
            && !n.ends_with('-');
        if ok {
            Ok(n.clone())
        } else {
            Err(self.invalid(
                name,
                "cluster",
                format!("\"{n}\" is not a valid cluster name: use 1 to 63 lower-case letters, digits and '-', not starting or ending with '-' (e.g. prod-eu-1)"),
            ))
        }
    }

    fn storage(&self, raw: RawStorage) -> Result<Storage, Error> {
        let text = &raw.url.value;
        let url = Url::parse(text).map_err(|e| {
            self.invalid(
                &raw.url,
                "storage.url",
                format!(
                    "\"{text}\" is not a URL ({e}): use s3://bucket/prefix or file:///absolute/path"
                ),
            )
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.invalid(&raw.url, "storage.url", "credentials in the URL are refused (they would show up in logs and messages): use storage.s3.access_key_id_file/secret_access_key_file or the AWS environment"));
        }
        match url.scheme() {
            "s3" => {
                if url.host_str().unwrap_or("").is_empty() {
                    return Err(self.invalid(
                        &raw.url,
                        "storage.url",
                        format!("\"{text}\" names no bucket: use s3://bucket/prefix"),
                    ));
                }
            }
            "file" => {
                // The URL parser reads `file:dir` and `file:/dir` as file:///dir: a relative
                // path would silently land at the filesystem root, so the text must be the
                // absolute form itself.
                let absolute_form = text
                    .get(..8)
                    .is_some_and(|p| p.eq_ignore_ascii_case("file:///"));
                if !absolute_form
                    || url.host_str().is_some_and(|h| !h.is_empty())
                    || url.path().len() <= 1
                {
                    return Err(self.invalid(&raw.url, "storage.url", format!("\"{text}\" is not a file URL with an absolute directory: use file:///var/backups/lifeboat (three slashes)")));
                }
            }
            other => {
                return Err(self.invalid(
                    &raw.url,
                    "storage.url",
                    format!("scheme \"{other}\" is not supported: use s3://bucket/prefix (any S3-compatible server) or file:///absolute/path"),
                ));
            }
        }
        let part_mib = raw.part_size_mib.value;
        if !(5..=512).contains(&part_mib) {
            return Err(self.invalid(&raw.part_size_mib, "storage.part_size_mib", format!("{part_mib} MiB is out of range: S3 parts must be 5 to 512 MiB here (8 is the default)")));
        }
        let concurrency = raw.upload_concurrency.value;
        if !(1..=16).contains(&concurrency) {
            return Err(self.invalid(
                &raw.upload_concurrency,
                "storage.upload_concurrency",
                format!("{concurrency} is out of range: use 1 to 16 (4 is the default)"),
            ));
        }
        let s3 = self.s3(raw.s3)?;
        Ok(Storage {
            url,
            s3,
            part_size: (part_mib * 1024 * 1024) as usize,
            upload_concurrency: concurrency as usize,
            request_timeout: self.duration(&raw.request_timeout, "storage.request_timeout")?,
            retry_timeout: self.duration(&raw.retry_timeout, "storage.retry_timeout")?,
        })
    }

    fn s3(&self, raw: RawS3) -> Result<S3, Error> {
        let endpoint = match &raw.endpoint {
            None => None,
            Some(e) => {
                let text = &e.value;
                let parsed = Url::parse(text)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"));
                let Some(parsed) = parsed else {
                    return Err(self.invalid(e, "storage.s3.endpoint", format!("\"{text}\" is not an http(s) URL: use e.g. https://s3.example.com or http://127.0.0.1:9000")));
                };
                if parsed.scheme() == "http" && !raw.allow_http {
                    return Err(self.invalid(e, "storage.s3.endpoint", format!("\"{text}\" is plain http: set storage.s3.allow_http: true if this server is on a trusted network, or use https")));
                }
                Some(text.trim_end_matches('/').to_string())
            }
        };
        let credentials = match (&raw.access_key_id_file, &raw.secret_access_key_file) {
            (None, None) => None,
            (Some(id), Some(secret)) => Some(StaticCredentials {
                access_key_id: self.secret_file(id, "storage.s3.access_key_id_file")?,
                secret_access_key: self.secret_file(secret, "storage.s3.secret_access_key_file")?,
            }),
            (Some(one), None) | (None, Some(one)) => {
                return Err(self.invalid(one, "storage.s3", "set both access_key_id_file and secret_access_key_file, or neither (to use the AWS environment)"));
            }
        };
        Ok(S3 {
            virtual_hosted_style: raw.virtual_hosted_style.unwrap_or(endpoint.is_none()),
            endpoint,
            region: raw.region,
            allow_http: raw.allow_http,
            credentials,
        })
    }

    fn secret_file(&self, at: &Spanned<String>, field: &str) -> Result<String, Error> {
        let path = Path::new(&at.value);
        crate::keys::read_secret_file(path).map_err(|e| self.invalid(at, field, e.to_string()))
    }

    fn encryption(&self, raw: Option<RawEncryption>) -> Result<Encryption, Error> {
        let Some(raw) = raw else {
            return Err(Error::Missing {
                path: self.path.to_path_buf(),
                field: "encryption.recipients".into(),
                message: "no encryption recipients: add `encryption: { recipients: [\"age1...\"] }` (make a key pair with `lifeboat keygen`), or set `encryption: { allow_unencrypted: true }` to store backups in the clear".into(),
            });
        };
        if raw.recipients.is_empty() {
            if raw.allow_unencrypted {
                return Ok(Encryption::None);
            }
            return Err(Error::Missing {
                path: self.path.to_path_buf(),
                field: "encryption.recipients".into(),
                message: "no encryption recipients: add at least one age public key (`lifeboat keygen` makes a pair), or set allow_unencrypted: true to store backups in the clear".into(),
            });
        }
        let mut recipients = Vec::with_capacity(raw.recipients.len());
        for (i, r) in raw.recipients.iter().enumerate() {
            let key = r.value.trim();
            let parsed = key.parse::<age::x25519::Recipient>().map_err(|e| {
                self.invalid(
                    r,
                    &format!("encryption.recipients[{i}]"),
                    format!("\"{key}\" is not an age X25519 public key ({e}): it starts with age1; `lifeboat keygen` or `age-keygen -y key.txt` prints one"),
                )
            })?;
            if let Some(source) = crate::keys::example_recipient(key) {
                return Err(self.invalid(
                    r,
                    &format!("encryption.recipients[{i}]"),
                    format!("\"{key}\" is the example public key from {source}: nobody holds its identity, so backups encrypted to it could never be restored; make your own pair with `lifeboat keygen key.txt`, put the public key it prints here, and keep key.txt outside the cluster"),
                ));
            }
            recipients.push(parsed);
        }
        Ok(Encryption::Age(recipients))
    }

    fn etcd(&self, raw: RawEtcd) -> Result<Etcd, Error> {
        if raw.endpoints.is_empty() {
            return Err(Error::Missing {
                path: self.path.to_path_buf(),
                field: "etcd.endpoints".into(),
                message:
                    "no etcd endpoints: list at least one client URL, e.g. https://127.0.0.1:2379"
                        .into(),
            });
        }
        let mut endpoints = Vec::new();
        for (i, e) in raw.endpoints.iter().enumerate() {
            let text = &e.value;
            let url = Url::parse(text).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.port_or_known_default().is_some()
            });
            let Some(url) = url.filter(|u| u.username().is_empty() && u.password().is_none())
            else {
                return Err(self.invalid(
                    e,
                    &format!("etcd.endpoints[{i}]"),
                    format!("\"{text}\" is not an etcd client URL without credentials: use e.g. https://10.0.0.1:2379"),
                ));
            };
            if url.scheme() == "https" && raw.tls.is_none() {
                return Err(self.invalid(e, &format!("etcd.endpoints[{i}]"), format!("\"{text}\" uses https but etcd.tls is not set: add etcd.tls.ca_file (and cert_file/key_file if etcd checks client certificates)")));
            }
            endpoints.push(url);
        }
        let tls = raw.tls.map(|t| self.tls(t)).transpose()?;
        Ok(Etcd {
            endpoints,
            tls,
            timeout: self.duration(&raw.timeout, "etcd.timeout")?,
        })
    }

    fn tls(&self, raw: RawTls) -> Result<Tls, Error> {
        let ca_file = self.readable(&raw.ca_file, "etcd.tls.ca_file")?;
        let client = match (&raw.cert_file, &raw.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let cert = self.readable(cert, "etcd.tls.cert_file")?;
                crate::keys::check_private(Path::new(&key.value))
                    .map_err(|e| self.invalid(key, "etcd.tls.key_file", e.to_string()))?;
                Some((cert, PathBuf::from(&key.value)))
            }
            (Some(one), None) | (None, Some(one)) => {
                return Err(self.invalid(
                    one,
                    "etcd.tls",
                    "set both cert_file and key_file, or neither",
                ));
            }
        };
        Ok(Tls { ca_file, client })
    }

    fn readable(&self, at: &Spanned<String>, field: &str) -> Result<PathBuf, Error> {
        let path = PathBuf::from(&at.value);
        std::fs::File::open(&path)
            .map(|_| path.clone())
            .map_err(|e| self.invalid(at, field, format!("cannot read {}: {e}", path.display())))
    }

    fn duration(&self, at: &Spanned<String>, field: &str) -> Result<Duration, Error> {
        let text = &at.value;
        match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(self.invalid(at, field, "a zero duration is not allowed")),
            Err(e) => Err(self.invalid(
                at,
                field,
                format!("\"{text}\" is not a duration ({e}): write e.g. 30s, 5m, 2h"),
            )),
        }
    }
}
