//! lifeboat's integration tests: the real binary against real etcd (3.5 and 3.4), a real S3
//! server (moto) and `file://` stores, plus the standard age/zstd/aws tools. Helpers live in
//! `support/`.

mod support;

mod apply;
mod apply_edges;
mod cli_json;
mod cli_misc;
mod config_examples;
mod deploy;
mod dockerfile;
mod drill;
mod etcd_hints;
mod etcd_yaml;
mod export_order;
mod faults;
mod guided_restore;
mod in_memory;
mod kube_api_server;
mod leadership;
mod prometheus;
mod redaction;
mod registry_objects;
mod registry_snapshot;
mod resources;
mod roundtrip;
mod service;
mod standard_tools;
mod store;
mod tampered_export;
mod verify_kinds;
