//! Every metric lifeboat exports, declared once. Plan metrics are labelled by cluster and plan;
//! dashboards/lifeboat.json and deploy/prometheus-rules.yaml are written against these names.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The registry and every metric in it.
pub struct Metrics {
    registry: Registry,
    /// `lifeboat_build_info{version}`: always 1.
    pub build_info: IntGaugeVec,
    /// Unix time the newest complete backup finished (from the store at start, then per run).
    pub last_success: GaugeVec,
    /// Unix time the most recent attempt ended, whatever its result.
    pub last_attempt: GaugeVec,
    /// Duration of successful runs.
    pub duration: HistogramVec,
    /// Stored bytes of the last successful backup.
    pub last_stored_bytes: IntGaugeVec,
    /// Runs by result: success, failure, partial.
    pub runs: IntCounterVec,
    /// Failed attempts by pipeline stage.
    pub failures: IntCounterVec,
    /// Complete backups currently in the store.
    pub backups_stored: IntGaugeVec,
    /// Manifests in the store that cannot be read (damaged, too new, or in the wrong directory).
    pub backups_unreadable: IntGaugeVec,
    /// Backups deleted by retention.
    pub retention_deleted: IntCounterVec,
    /// Fires skipped because the previous run was still going.
    pub skipped_overlap: IntCounterVec,
    /// The plan's expected interval between runs, in seconds.
    pub interval: GaugeVec,
    /// etcd database size seen at the last snapshot.
    pub etcd_db_size: IntGaugeVec,
    /// etcd revision seen at the last snapshot.
    pub etcd_revision: IntGaugeVec,
    /// 1 on the replica running the schedules, 0 on standbys.
    pub leader: IntGaugeVec,
    /// Unix time of the last successful restore drill.
    pub drill_last_success: GaugeVec,
    /// Restore drills by result (success, failure).
    pub drill_runs: IntCounterVec,
}

const PLAN: &[&str] = &["cluster", "plan"];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "lifeboat_backup_duration_seconds",
                "Duration of successful backup runs.",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
            ]),
            PLAN,
        )
        .expect("valid metric");
        registry
            .register(Box::new(duration.clone()))
            .expect("registered once");
        let m = Metrics {
            build_info: int_gauge(
                "lifeboat_build_info",
                "Build information; always 1.",
                &["version"],
            ),
            last_success: gauge(
                "lifeboat_backup_last_success_timestamp_seconds",
                "Unix time the newest complete backup of the plan finished.",
                PLAN,
            ),
            last_attempt: gauge(
                "lifeboat_backup_last_attempt_timestamp_seconds",
                "Unix time the plan's most recent attempt ended, successful or not.",
                PLAN,
            ),
            duration,
            last_stored_bytes: int_gauge(
                "lifeboat_backup_last_stored_bytes",
                "Stored (compressed, encrypted) size of the last successful backup.",
                PLAN,
            ),
            runs: counter(
                "lifeboat_backup_runs_total",
                "Backup runs by result (success, failure, partial).",
                &["cluster", "plan", "result"],
            ),
            failures: counter(
                "lifeboat_backup_failures_total",
                "Failed backup attempts by stage (config, snapshot, encode, upload, commit, retention).",
                &["cluster", "plan", "stage"],
            ),
            backups_stored: int_gauge(
                "lifeboat_backups_stored",
                "Complete backups of the plan in the store.",
                PLAN,
            ),
            backups_unreadable: int_gauge(
                "lifeboat_backups_unreadable",
                "Manifests of the plan in the store that cannot be read (damaged, from a newer lifeboat, or describing another directory).",
                PLAN,
            ),
            retention_deleted: counter(
                "lifeboat_retention_deleted_total",
                "Backups deleted by retention.",
                PLAN,
            ),
            skipped_overlap: counter(
                "lifeboat_backup_skipped_overlap_total",
                "Scheduled runs skipped because the previous run was still going.",
                PLAN,
            ),
            interval: gauge(
                "lifeboat_schedule_interval_seconds",
                "Expected seconds between runs of the plan (for staleness alerts).",
                PLAN,
            ),
            etcd_db_size: int_gauge(
                "lifeboat_etcd_db_size_bytes",
                "etcd database size seen at the last snapshot.",
                &["cluster"],
            ),
            etcd_revision: int_gauge(
                "lifeboat_etcd_revision",
                "etcd revision seen at the last snapshot.",
                &["cluster"],
            ),
            leader: int_gauge(
                "lifeboat_leader",
                "1 on the replica that runs the schedules, 0 on standbys.",
                &["cluster"],
            ),
            drill_last_success: gauge(
                "lifeboat_drill_last_success_timestamp_seconds",
                "Unix time of the last restore drill that passed.",
                &["cluster"],
            ),
            drill_runs: counter(
                "lifeboat_drill_runs_total",
                "Restore drills by result (success, failure).",
                &["cluster", "result"],
            ),
            registry,
        };
        m.build_info.with_label_values(&[crate::VERSION]).set(1);
        m
    }

    /// Sets every per-plan series to its starting value so that dashboards and alerts see the
    /// plan before its first run (counters at 0).
    pub fn init_plan(&self, cluster: &str, plan: &str) {
        let l = [cluster, plan];
        for result in ["success", "failure", "partial"] {
            self.runs.with_label_values(&[cluster, plan, result]);
        }
        for stage in [
            "config",
            "snapshot",
            "encode",
            "upload",
            "commit",
            "retention",
        ] {
            self.failures.with_label_values(&[cluster, plan, stage]);
        }
        self.retention_deleted.with_label_values(&l);
        self.skipped_overlap.with_label_values(&l);
        self.backups_stored.with_label_values(&l);
        self.backups_unreadable.with_label_values(&l);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics");
        String::from_utf8(out).expect("metrics are UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
