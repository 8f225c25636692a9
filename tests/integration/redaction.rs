//! Credentials written into a URL (an etcd endpoint, `storage.s3.endpoint`) were echoed in
//! config errors and store errors. No message and no log line may carry them.

use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::support::{free_port, tempdir};

const SECRET: &str = "hunter2-s3cret";

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} leaks the password: {text}");
}

/// etcd endpoints with userinfo were echoed in the config error.
#[test]
fn an_etcd_endpoint_with_credentials_is_refused_without_echoing_them() {
    let dir = tempdir();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(dir.path().to_path_buf()),
        &format!("http://root:{SECRET}@127.0.0.1:2379"),
    ));
    let stderr = lb.fails(&["backup", "etcd"]);
    assert!(stderr.contains("etcd.endpoints[0]"), "{stderr}");
    assert!(stderr.contains("***@127.0.0.1:2379"), "{stderr}");
    assert_clean("the config error", &stderr);
}

/// storage.s3.endpoint with userinfo was echoed in store errors and in the retry log lines.
#[test]
fn an_s3_endpoint_with_credentials_is_never_echoed() {
    let port = free_port();
    let mut setup = Setup::new(
        StoreAt::S3 {
            endpoint: format!("http://admin:{SECRET}@127.0.0.1:{port}"),
            bucket: "b".into(),
            prefix: "p".into(),
        },
        "http://127.0.0.1:1",
    );
    setup.retry_timeout = "1s".into();
    let lb = Lifeboat::new(setup);
    for args in [
        &["backup", "etcd"][..],
        &["list"][..],
        &["verify", "latest"][..],
    ] {
        let out = lb
            .cmd()
            .args(args)
            .env("LIFEBOAT_LOG", "debug")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}: nothing listens there");
        assert_clean(
            &format!("lifeboat {args:?}"),
            &String::from_utf8_lossy(&out.stderr),
        );
        assert_clean(
            &format!("lifeboat {args:?} stdout"),
            &String::from_utf8_lossy(&out.stdout),
        );
    }
}
