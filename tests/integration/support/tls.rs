//! TLS material for tests, made with the openssl CLI: a CA, a server pair for 127.0.0.1 and a
//! client pair signed by it, and a second, unrelated CA (with a client pair of its own, for
//! "foreign client certificate" tests).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{require, run_ok, which};

/// Generated files.
pub struct Pki {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// The CA's private key (for "ca_file holds a private key" tests).
    pub ca_key: PathBuf,
    /// A client pair signed by the other CA: etcd must refuse it.
    pub foreign_client_cert: PathBuf,
    pub foreign_client_key: PathBuf,
}

/// Makes a PKI in `dir`, or skips (fails under CI) without openssl.
pub fn make(dir: &Path) -> Option<Pki> {
    let openssl = require("openssl", which("openssl"))?;
    let o = |args: &[&str]| {
        run_ok(Command::new(&openssl).current_dir(dir).args(args));
    };
    for ca in ["ca", "other-ca"] {
        o(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.crt"),
        ]);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, ext, ca) in [
        ("server", "server.ext", "ca"),
        ("client", "client.ext", "ca"),
        ("foreign-client", "client.ext", "other-ca"),
    ] {
        o(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        o(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext,
            "-out",
            &format!("{name}.crt"),
        ]);
        std::fs::set_permissions(
            dir.join(format!("{name}.key")),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    Some(Pki {
        ca: dir.join("ca.crt"),
        other_ca: dir.join("other-ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        ca_key: dir.join("ca.key"),
        foreign_client_cert: dir.join("foreign-client.crt"),
        foreign_client_key: dir.join("foreign-client.key"),
    })
}
