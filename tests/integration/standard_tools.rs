//! A backup is readable with standard tools alone, exactly as docs/FORMAT.md shows:
//! `aws s3 cp ... - | age -d -i key.txt | zstd -d > snap.db && etcdutl snapshot restore snap.db`.

use std::process::Command;

use crate::support::etcd::{Etcd, Version, require_version};
use crate::support::lifeboat::{Lifeboat, Setup, StoreAt};
use crate::support::s3::{ACCESS_KEY, Moto, SECRET_KEY, require_moto};
use crate::support::{require, run_ok, which};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_age_and_zstd_read_a_backup_that_etcdutl_restores() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    let Some(moto_bin) = require_moto() else {
        return;
    };
    for tool in ["aws", "age", "zstd", "sha256sum"] {
        if require(tool, which(tool)).is_none() {
            return;
        }
    }
    let mut etcd = Etcd::start(Version::V35, &bin);
    let expected = etcd.seed(100, 16 * 1024).await;
    let moto = Moto::start(&moto_bin);
    moto.create_bucket("backups");
    let lb = Lifeboat::new(Setup::new(
        StoreAt::S3 {
            endpoint: moto.endpoint.clone(),
            bucket: "backups".into(),
            prefix: "clusters".into(),
        },
        &etcd.client_url,
    ));
    lb.ok(&["backup", "etcd"]);
    let id = lb.backup_ids().pop().unwrap();
    let dir = format!("s3://backups/clusters/test-cluster/etcd/{id}");
    let snap = lb.path("snap.db");
    let data_dir = lb.path("restored");
    let script = format!(
        "set -euo pipefail
         aws --endpoint-url {ep} s3 cp {dir}/manifest.json manifest.json
         want=$(python3 -c 'import json;print(json.load(open(\"manifest.json\"))[\"payload\"][\"stored_sha256\"])')
         got=$(aws --endpoint-url {ep} s3 cp {dir}/snapshot.db.zst.age - | sha256sum | cut -d' ' -f1)
         test \"$want\" = \"$got\"
         aws --endpoint-url {ep} s3 cp {dir}/snapshot.db.zst.age - | age -d -i {key} | zstd -d > {snap}
         {etcdutl} snapshot restore {snap} --data-dir {data} --name default \
            --initial-cluster default=http://127.0.0.1:{peer} --initial-advertise-peer-urls http://127.0.0.1:{peer}",
        ep = moto.endpoint,
        key = lb.identity.display(),
        snap = snap.display(),
        etcdutl = bin.join("etcdutl").display(),
        data = data_dir.display(),
        peer = crate::support::free_port(),
    );
    run_ok(
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(lb.dir.path())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    );
    etcd.kill();
    let restored = Etcd::start_with(Version::V35, &bin, None, Some(&data_dir));
    assert!(
        restored.dump().await == expected,
        "values differ after a standard-tools restore"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_store_backup_opens_with_age_and_zstd() {
    let Some(bin) = require_version(Version::V35) else {
        return;
    };
    for tool in ["age", "zstd"] {
        if require(tool, which(tool)).is_none() {
            return;
        }
    }
    let etcd = Etcd::start(Version::V35, &bin);
    etcd.seed(20, 1024).await;
    let store = crate::support::tempdir();
    let lb = Lifeboat::new(Setup::new(
        StoreAt::File(store.path().to_path_buf()),
        &etcd.client_url,
    ));
    lb.ok(&["backup", "etcd"]);
    let id = lb.backup_ids().pop().unwrap();
    let object = store
        .path()
        .join(format!("test-cluster/etcd/{id}/snapshot.db.zst.age"));
    let snap = lb.path("snap.db");
    run_ok(Command::new("bash").arg("-c").arg(format!(
        "set -euo pipefail; age -d -i {} < {} | zstd -d > {}",
        lb.identity.display(),
        object.display(),
        snap.display()
    )));
    run_ok(
        Command::new(bin.join("etcdutl"))
            .args(["snapshot", "status", "-w", "json"])
            .arg(&snap),
    );
}
