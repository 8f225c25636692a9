//! lifeboat's integration tests: the real binary against real etcd (3.5 and 3.4), a real S3
//! server (moto) and `file://` stores, plus the standard age/zstd/aws tools. Helpers live in
//! `support/`.

mod support;

mod config_examples;
mod deploy;
mod drill;
mod etcd_hints;
mod etcd_yaml;
mod faults;
mod guided_restore;
mod kube_api_server;
mod prometheus;
mod resources;
mod roundtrip;
mod service;
mod standard_tools;
