//! Applying retention to a store: list, let the pure `retention` decide, then delete. Deleting a
//! backup removes its manifest first, so it stops being a backup before its payload goes; a
//! leftover payload is an incomplete id directory that the sweep removes later.

use chrono::{DateTime, Utc};

use crate::config::Plan;
use crate::manifest::BackupId;
use crate::policy::retention::{
    self, Action, Decision, IncompleteEntry, ListedBackup, RetentionPolicy, SweepAction,
    SweepListing, SweepVerdict,
};
use crate::store::{self, Store};

/// Why a prune deleted nothing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Clock(#[from] retention::ClockError),
}

/// A partial resource export, which retention does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    /// The backup.
    pub id: BackupId,
    /// Whether a newer full backup exists, so this one is deleted.
    pub superseded: bool,
}

/// What a prune decided and did.
#[derive(Debug)]
pub struct Report {
    /// Keep/delete for every complete backup, with reasons (empty without a policy).
    pub decision: Decision,
    /// Sweep verdicts for id directories without a manifest.
    pub sweep: Vec<SweepVerdict>,
    /// Partial resource exports, oldest first.
    pub partials: Vec<Partial>,
    /// Backups actually deleted (0 on a dry run).
    pub deleted: usize,
    /// Incomplete id directories actually removed.
    pub swept: usize,
    /// Complete backups left in the store.
    pub remaining: usize,
    /// Manifests that exist but cannot be read (never deleted by retention).
    pub unreadable: usize,
}

/// Decides retention for one cluster and plan and, unless `dry_run`, deletes what it says.
/// A failed listing deletes nothing, and neither does an implausible `now` (before the newest
/// backup finished, or far from the store's clock). A plan without a retention policy deletes
/// no backup (but still sweeps crashed runs).
pub async fn prune(
    store: &Store,
    cluster: &str,
    plan: &Plan,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Report, Error> {
    let kind = plan.kind;
    let policy: Option<&RetentionPolicy> = plan.retention.as_ref();
    let tz = plan.schedule.time_zone();
    let sweep_after = plan.sweep_incomplete_after;
    let listing = store.list(cluster, kind).await?;
    let store_now = store.clock(cluster).await?;
    let newest = listing
        .complete
        .iter()
        .max_by_key(|m| m.finished_at)
        .map(|m| (m.id.as_str(), m.finished_at));
    retention::check_clock(now, newest, Some(store_now), retention::MAX_CLOCK_SKEW)?;
    // Partial resource exports do not count for retention: each is kept until a newer full
    // backup exists, then deleted as superseded.
    let newest_full = listing
        .complete
        .iter()
        .filter(|m| m.is_full())
        .map(|m| m.started_at)
        .max();
    let partials: Vec<Partial> = listing
        .complete
        .iter()
        .filter(|m| !m.is_full())
        .map(|m| Partial {
            id: m.id.clone(),
            superseded: newest_full.is_some_and(|t| t > m.started_at),
        })
        .collect();
    let backups = listing
        .complete
        .iter()
        .filter(|m| m.is_full())
        .map(|m| ListedBackup {
            id: m.id.to_string(),
            time: m.started_at,
            has_manifest: true,
        })
        .collect();
    let decision = match policy {
        Some(policy) => retention::decide(
            &retention::Listing {
                complete: true,
                backups,
            },
            policy,
            now,
            tz,
        ),
        None => Decision { verdicts: vec![] },
    };
    let sweep = retention::sweep_incomplete(
        &SweepListing {
            complete: true,
            entries: listing
                .incomplete
                .iter()
                .map(|i| IncompleteEntry {
                    id: i.id.clone(),
                    newest_object: i.newest,
                })
                .collect(),
        },
        now,
        sweep_after,
    );
    let mut report = Report {
        remaining: listing.complete.len(),
        decision,
        sweep,
        partials,
        deleted: 0,
        swept: 0,
        unreadable: listing.unreadable.len(),
    };
    if dry_run {
        return Ok(report);
    }
    // Retention speaks of ids as text; the listing's manifests carry them as ids.
    let backup_id = |text: &str| {
        listing
            .complete
            .iter()
            .map(|m| &m.id)
            .find(|id| id.as_str() == text)
            .expect("retention decides only about listed backups")
    };
    for verdict in report
        .decision
        .verdicts
        .iter()
        .filter(|v| v.action == Action::Delete)
    {
        store
            .delete_backup(cluster, kind, backup_id(&verdict.id))
            .await?;
        report.deleted += 1;
        report.remaining -= 1;
        tracing::info!(backup_id = %verdict.id, reason = %verdict.explain(), "Backup deleted by retention.");
    }
    for Partial { id, .. } in report.partials.iter().filter(|p| p.superseded) {
        store.delete_backup(cluster, kind, id).await?;
        report.deleted += 1;
        report.remaining -= 1;
        tracing::info!(backup_id = %id, "Partial backup deleted: a newer full backup exists.");
    }
    for verdict in report
        .sweep
        .iter()
        .filter(|v| v.action == SweepAction::Sweep)
    {
        store
            .delete_dir(&store.id_dir(cluster, kind, &verdict.id))
            .await?;
        report.swept += 1;
        tracing::info!(id = %verdict.id, reason = %verdict.reason, "Incomplete backup directory swept.");
    }
    Ok(report)
}
