//! The sentence lifeboat prints when it cannot talk to etcd names the actual mistake, against a
//! real etcd with TLS and --client-cert-auth (3.5 and 3.4): an http:// endpoint with a tls:
//! block, an http:// endpoint against a TLS-only etcd, no client certificate, a client
//! certificate from a foreign CA, a server certificate the CA does not sign, and a ca_file that
//! holds a private key.

use std::path::PathBuf;

use crate::support::etcd::{Etcd, ServerTls, Version, require_version};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::support::tls::Pki;

struct TlsEtcd {
    etcd: Etcd,
    pki: Pki,
    _pki_dir: tempfile::TempDir,
    _store: tempfile::TempDir,
    lb: Lifeboat,
    setup: Setup,
}

fn start(version: Version) -> Option<TlsEtcd> {
    let bin = require_version(version)?;
    let pki_dir = crate::support::tempdir();
    let pki = crate::support::tls::make(pki_dir.path())?;
    let tls = ServerTls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: pki.ca.clone(),
    };
    let etcd = Etcd::start_with(version, &bin, Some(&tls), None);
    let store = crate::support::tempdir();
    let mut setup = Setup::new(StoreAt::File(store.path().to_path_buf()), &etcd.client_url);
    setup.etcd_timeout = "5s".into();
    setup.etcd_tls = Some((
        pki.ca.clone(),
        Some((pki.client_cert.clone(), pki.client_key.clone())),
    ));
    let lb = Lifeboat::new(setup.clone());
    Some(TlsEtcd {
        etcd,
        pki,
        _pki_dir: pki_dir,
        _store: store,
        lb,
        setup,
    })
}

impl TlsEtcd {
    /// The error line of `backup etcd` with the endpoint and TLS block given.
    fn error_with(
        &mut self,
        endpoint: &str,
        tls: Option<(PathBuf, Option<(PathBuf, PathBuf)>)>,
    ) -> String {
        let mut setup = self.setup.clone();
        setup.etcd_endpoints = vec![endpoint.to_string()];
        setup.etcd_tls = tls;
        self.lb.write_config(&setup);
        let err = self.lb.fails(&["backup", "etcd"]);
        err.lines()
            .rfind(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line in:\n{err}"))
            .to_string()
    }

    fn http_url(&self) -> String {
        self.etcd.client_url.replacen("https://", "http://", 1)
    }

    fn client(&self) -> Option<(PathBuf, PathBuf)> {
        Some((self.pki.client_cert.clone(), self.pki.client_key.clone()))
    }
}

fn each_mistake_gets_its_own_sentence(version: Version) {
    let Some(mut t) = start(version) else {
        return;
    };
    // The right settings work, so every failure below is the one mistake it makes.
    t.lb.write_config(&t.setup);
    t.lb.ok(&["backup", "etcd"]);
    let https = t.etcd.client_url.clone();
    let http = t.http_url();

    // Regression: an http:// endpoint with a tls: block blamed the CA.
    let line = t.error_with(&http, Some((t.pki.ca.clone(), t.client())));
    assert!(
        line.contains(&format!("write it as {https}")) && !line.contains("ca_file"),
        "{line}"
    );

    // Regression: an http:// endpoint against a TLS-only etcd blamed the CA (or the network).
    let line = t.error_with(&http, None);
    assert!(
        line.contains(&format!("etcd at {http} speaks TLS"))
            && line.contains(&format!("write the endpoint as {https}")),
        "{line}"
    );

    // Regression: a missing client certificate gave the same message as a foreign one.
    let missing = t.error_with(&https, Some((t.pki.ca.clone(), None)));
    assert!(
        missing.contains("requires a client certificate (--client-cert-auth)")
            && missing.contains("set etcd.tls.cert_file and key_file"),
        "{missing}"
    );
    let foreign = t.error_with(
        &https,
        Some((
            t.pki.ca.clone(),
            Some((
                t.pki.foreign_client_cert.clone(),
                t.pki.foreign_client_key.clone(),
            )),
        )),
    );
    assert!(
        foreign.contains(&format!(
            "refused the client certificate {}",
            t.pki.foreign_client_cert.display()
        )) && foreign.contains("--trusted-ca-file"),
        "{foreign}"
    );
    assert_ne!(missing, foreign);

    // A CA that did not sign etcd's server certificate: the CA is named.
    let line = t.error_with(&https, Some((t.pki.other_ca.clone(), t.client())));
    assert!(
        line.contains(&format!(
            "its server certificate is not signed by etcd.tls.ca_file {}",
            t.pki.other_ca.display()
        )),
        "{line}"
    );

    // Regression: a ca_file holding a private key (here with the CA certificate, so TLS would
    // work) was accepted.
    let bundle = t.lb.path("ca-and-key.pem");
    let mut pem = std::fs::read(&t.pki.ca).unwrap();
    pem.extend(std::fs::read(&t.pki.ca_key).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let line = t.error_with(&https, Some((bundle.clone(), t.client())));
    assert!(
        line.contains(&format!(
            "etcd.tls.ca_file {} holds a private key",
            bundle.display()
        )),
        "{line}"
    );
    assert_eq!(t.lb.backup_ids().len(), 1, "no failed run added a backup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd35_tls_mistakes_each_get_their_own_sentence() {
    each_mistake_gets_its_own_sentence(Version::V35);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd34_tls_mistakes_each_get_their_own_sentence() {
    each_mistake_gets_its_own_sentence(Version::V34);
}
