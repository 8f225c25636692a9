//! Which backups to keep: a pure decision from one cluster+plan's listing, a [`RetentionPolicy`]
//! and `now`, following restic's `forget` rules under safety invariants that no policy overrides,
//! plus the sweep decision for objects left by crashed runs. No I/O and no clock reads here.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Why a [`RetentionPolicy`] was refused by [`RetentionPolicy::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No count rule is above zero and there is no `max_age`: the policy would delete every
    /// backup but the newest.
    #[error(
        "retention keeps no backup: set keep_last or one of hourly/daily/weekly/monthly/yearly \
         (or max_age alone, to keep every backup younger than it)"
    )]
    KeepsNothing,
    /// `max_age` is zero, which would delete every backup but the newest.
    #[error(
        "retention max_age is 0s, which deletes every backup but the newest: set a positive \
         duration such as \"180d\", or remove max_age"
    )]
    ZeroMaxAge,
}

/// The `retention` section of a backup plan: which complete backups to keep.
///
/// Rules follow restic's `forget`: a backup is kept if any rule keeps it, then `max_age` deletes
/// what is older than it. The newest complete backup is always kept, whatever the policy. Periods
/// (hour, day, ISO week, month, year) are taken in the plan's time zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Keep the `n` newest complete backups, whatever their age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the `n` most recent hours that have a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    /// Keep the newest backup of each of the `n` most recent days that have a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    /// Keep the newest backup of each of the `n` most recent ISO weeks (Monday to Sunday) that
    /// have a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    /// Keep the newest backup of each of the `n` most recent calendar months that have a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    /// Keep the newest backup of each of the `n` most recent calendar years that have a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly: Option<u32>,
    /// Delete backups older than this even when a rule above keeps them, e.g. "180d", "26w",
    /// "36h". The newest complete backup is kept even when it is older. With no count rule
    /// set, every backup younger than `max_age` is kept.
    #[serde(
        default,
        with = "max_age_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<crate::config::schema::DurationText>")]
    pub max_age: Option<Duration>,
}

impl RetentionPolicy {
    /// Refuses a policy that would keep nothing but the newest backup: no count rule above zero
    /// and no `max_age`, or a `max_age` of zero.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_age == Some(Duration::ZERO) {
            return Err(Error::ZeroMaxAge);
        }
        if !self.has_count_rule() && self.max_age.is_none() {
            return Err(Error::KeepsNothing);
        }
        Ok(())
    }

    /// Whether keep_last or any period rule is set above zero.
    fn has_count_rule(&self) -> bool {
        self.keep_last.unwrap_or(0) > 0 || Period::ALL.iter().any(|p| p.count(self) > 0)
    }
}

/// A calendar period that a bucket rule groups backups by, in the plan's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// One local hour; the two hours that share a wall-clock label when clocks go back are kept
    /// apart by their UTC offset.
    Hourly,
    /// One local calendar day.
    Daily,
    /// One ISO week, Monday to Sunday.
    Weekly,
    /// One calendar month.
    Monthly,
    /// One calendar year.
    Yearly,
}

impl Period {
    /// Every period, in the order rules are applied and reasons are listed.
    pub const ALL: [Period; 5] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::Yearly,
    ];

    /// The name of the policy field for this period ("hourly", "daily", ...).
    pub fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// How many periods of this kind the policy keeps (0 when absent).
    fn count(self, policy: &RetentionPolicy) -> u32 {
        let n = match self {
            Period::Hourly => policy.hourly,
            Period::Daily => policy.daily,
            Period::Weekly => policy.weekly,
            Period::Monthly => policy.monthly,
            Period::Yearly => policy.yearly,
        };
        n.unwrap_or(0)
    }

    /// The label of the period holding `time` in `tz`: equal labels mean the same period.
    fn label(self, time: DateTime<Utc>, tz: Tz) -> String {
        let local = time.with_timezone(&tz);
        match self {
            Period::Hourly => local.format("%Y-%m-%d %H:00 %:z").to_string(),
            Period::Daily => local.format("%Y-%m-%d").to_string(),
            Period::Weekly => {
                let week = local.iso_week();
                format!("{}-W{:02}", week.year(), week.week())
            }
            Period::Monthly => local.format("%Y-%m").to_string(),
            Period::Yearly => local.format("%Y").to_string(),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every backup of one cluster+plan, as the store listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Whether the listing is known to be whole. False when listing failed or may have stopped
    /// early: then [`decide`] deletes nothing.
    pub complete: bool,
    /// The backups found, in any order.
    pub backups: Vec<ListedBackup>,
}

/// One backup found in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBackup {
    /// The backup's id, as it appears in its object keys.
    pub id: String,
    /// When the backup started.
    pub time: DateTime<Utc>,
    /// Whether its manifest exists. Without one the backup is incomplete: retention leaves it
    /// to [`sweep_incomplete`].
    pub has_manifest: bool,
}

/// What to do with one backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Leave the backup in the store.
    Keep,
    /// Delete the backup's objects.
    Delete,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Keep => "keep",
            Action::Delete => "delete",
        })
    }
}

/// Why a backup is kept or deleted. `Display` gives the sentence shown to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The listing was not complete, so nothing is deleted.
    ListingIncomplete,
    /// The backup has no manifest; [`sweep_incomplete`] decides about it.
    HandledBySweep,
    /// The backup is dated after `now` (clock skew); it is kept and takes no rule's place.
    InFuture,
    /// The newest complete backup not dated in the future: never deleted.
    Newest,
    /// Among the `of` newest complete backups kept by keep_last, this is number `rank`.
    KeepLast {
        /// 1 for the newest.
        rank: u32,
        /// The policy's keep_last.
        of: u32,
    },
    /// The newest backup of the period `label`, the `rank`-th most recent of the `of` periods
    /// the rule keeps.
    Bucket {
        /// Which rule.
        period: Period,
        /// The period, e.g. "2026-11-25" or "2026-W48".
        label: String,
        /// 1 for the most recent period.
        rank: u32,
        /// The policy's count for this period.
        of: u32,
    },
    /// No count rule is set: every backup is kept, up to `max_age` when there is one.
    NoCountRule {
        /// The policy's max_age.
        max_age: Option<Duration>,
    },
    /// Older than `max_age`: deleted even if a rule keeps it.
    OlderThanMaxAge {
        /// The policy's max_age.
        max_age: Duration,
    },
    /// No rule keeps this backup.
    NotSelected,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ListingIncomplete => f.write_str("listing incomplete: deleting nothing"),
            Reason::HandledBySweep => f.write_str("incomplete: handled by sweep"),
            Reason::InFuture => f.write_str("dated in the future: kept"),
            Reason::Newest => f.write_str("newest complete backup"),
            Reason::KeepLast { rank, of } => write!(f, "keep_last {rank} of {of}"),
            Reason::Bucket {
                period,
                label,
                rank,
                of,
            } => write!(f, "{period} bucket {label} ({rank} of {of})"),
            Reason::NoCountRule { max_age: None } => f.write_str("no count rule set: keeping all"),
            Reason::NoCountRule {
                max_age: Some(max_age),
            } => write!(
                f,
                "no count rule set: keeping all younger than max_age {}",
                format_duration(*max_age)
            ),
            Reason::OlderThanMaxAge { max_age } => {
                write!(f, "older than max_age {}", format_duration(*max_age))
            }
            Reason::NotSelected => f.write_str("not selected by any rule"),
        }
    }
}

/// The decision about one listed backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The backup's id.
    pub id: String,
    /// When the backup started.
    pub time: DateTime<Utc>,
    /// Keep or delete.
    pub action: Action,
    /// Why, deciding reason first, never empty. A backup deleted for `max_age` lists after it
    /// the rules it overrode.
    pub reasons: Vec<Reason>,
}

impl Verdict {
    fn new(backup: &ListedBackup, action: Action, reasons: Vec<Reason>) -> Self {
        Verdict {
            id: backup.id.clone(),
            time: backup.time,
            action,
            reasons,
        }
    }

    /// The reasons as one sentence, e.g. "keep_last 1 of 4; daily bucket 2026-11-25 (1 of 7)"
    /// or "older than max_age 180d (overrides monthly bucket 2026-05 (6 of 6))".
    pub fn explain(&self) -> String {
        let join = |reasons: &[Reason], sep: &str| {
            reasons
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(sep)
        };
        match (self.action, self.reasons.split_first()) {
            (_, None) => String::new(),
            (Action::Delete, Some((first, rest))) if !rest.is_empty() => {
                format!("{first} (overrides {})", join(rest, ", "))
            }
            _ => join(&self.reasons, "; "),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}): {}",
            self.action,
            self.id,
            self.time.to_rfc3339(),
            self.explain()
        )
    }
}

/// The outcome of [`decide`]: one verdict per listed backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Every listed backup exactly once, newest first (equal times: greater id first).
    pub verdicts: Vec<Verdict>,
}

impl Decision {
    /// The backups to keep, newest first.
    pub fn kept(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| v.action == Action::Keep)
    }

    /// The backups to delete, newest first.
    pub fn deleted(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| v.action == Action::Delete)
    }
}

/// Decides which backups of one cluster+plan to keep and which to delete.
///
/// Complete backups not dated after `now` are walked newest to oldest. keep_last keeps the n
/// newest; each period rule with n keeps the newest backup of each of the n most recent periods
/// (in `tz`) that have one; a backup is kept if any rule keeps it, with every such rule as a
/// reason. With no count rule set, every backup is kept. Then `max_age` deletes every kept
/// backup with `now - time > max_age`.
///
/// These hold whatever the policy: the newest complete backup not dated after `now` is kept
/// (even past `max_age`); backups dated after `now` are kept and take no rule's place; an
/// incomplete listing deletes nothing; backups without a manifest are kept here (reason
/// "incomplete: handled by sweep") and left to [`sweep_incomplete`].
pub fn decide(listing: &Listing, policy: &RetentionPolicy, now: DateTime<Utc>, tz: Tz) -> Decision {
    let mut order: Vec<&ListedBackup> = listing.backups.iter().collect();
    order.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));

    if !listing.complete {
        let verdicts = order
            .iter()
            .map(|b| Verdict::new(b, Action::Keep, vec![Reason::ListingIncomplete]))
            .collect();
        return Decision { verdicts };
    }

    let candidates: Vec<&ListedBackup> = order
        .iter()
        .copied()
        .filter(|b| b.has_manifest && b.time <= now)
        .collect();
    let mut selected = select(&candidates, policy, tz).into_iter();
    // A max_age too long for TimeDelta caps nothing.
    let max_age_limit = policy
        .max_age
        .map(|age| TimeDelta::from_std(age).unwrap_or(TimeDelta::MAX));

    let mut verdicts = Vec::with_capacity(order.len());
    let mut seen_newest = false;
    for backup in order {
        let verdict = if !backup.has_manifest {
            Verdict::new(backup, Action::Keep, vec![Reason::HandledBySweep])
        } else if backup.time > now {
            Verdict::new(backup, Action::Keep, vec![Reason::InFuture])
        } else {
            // Candidates are `order` filtered by the two tests above, so they arrive in step.
            let rules = selected.next().unwrap_or_default();
            if !seen_newest {
                seen_newest = true;
                let mut reasons = vec![Reason::Newest];
                reasons.extend(rules);
                Verdict::new(backup, Action::Keep, reasons)
            } else if rules.is_empty() {
                Verdict::new(backup, Action::Delete, vec![Reason::NotSelected])
            } else if let (Some(max_age), Some(limit)) = (policy.max_age, max_age_limit)
                && now - backup.time > limit
            {
                let mut reasons = vec![Reason::OlderThanMaxAge { max_age }];
                reasons.extend(rules);
                Verdict::new(backup, Action::Delete, reasons)
            } else {
                Verdict::new(backup, Action::Keep, rules)
            }
        };
        verdicts.push(verdict);
    }
    Decision { verdicts }
}

/// The reasons each candidate (newest first) is kept by the count rules; empty when none keeps it.
fn select(candidates: &[&ListedBackup], policy: &RetentionPolicy, tz: Tz) -> Vec<Vec<Reason>> {
    let mut reasons = vec![Vec::new(); candidates.len()];
    if !policy.has_count_rule() {
        for r in &mut reasons {
            r.push(Reason::NoCountRule {
                max_age: policy.max_age,
            });
        }
        return reasons;
    }

    let keep_last = policy.keep_last.unwrap_or(0);
    for (rank, r) in (1..=keep_last).zip(reasons.iter_mut()) {
        r.push(Reason::KeepLast {
            rank,
            of: keep_last,
        });
    }

    for period in Period::ALL {
        let of = period.count(policy);
        let mut rank = 0;
        let mut last: Option<String> = None;
        for (backup, r) in candidates.iter().zip(reasons.iter_mut()) {
            if rank == of {
                break;
            }
            let label = period.label(backup.time, tz);
            if last.as_ref() == Some(&label) {
                continue;
            }
            rank += 1;
            r.push(Reason::Bucket {
                period,
                label: label.clone(),
                rank,
                of,
            });
            last = Some(label);
        }
    }
    reasons
}

/// The ids that have objects but no manifest, as the store listed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepListing {
    /// Whether the listing is known to be whole. False when listing failed or may have stopped
    /// early: a manifest may then have been missed, so [`sweep_incomplete`] sweeps nothing.
    pub complete: bool,
    /// The ids without a manifest, in any order.
    pub entries: Vec<IncompleteEntry>,
}

/// One backup id that has objects but no manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteEntry {
    /// The backup's id, as it appears in its object keys.
    pub id: String,
    /// The last-modified time of its newest object.
    pub newest_object: DateTime<Utc>,
}

/// What to do with the objects of one incomplete backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SweepAction {
    /// Delete its objects: the run that wrote them is gone.
    Sweep,
    /// Leave them: the backup may still be running, or the listing cannot be trusted.
    Wait,
}

impl fmt::Display for SweepAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SweepAction::Sweep => "sweep",
            SweepAction::Wait => "wait",
        })
    }
}

/// Why an incomplete backup is swept or left. `Display` gives the sentence shown to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepReason {
    /// The listing was not complete, so nothing is swept.
    ListingIncomplete,
    /// The newest object is older than the grace period: a crashed run left it.
    Abandoned {
        /// How long ago the newest object was written.
        age: Duration,
        /// The grace period.
        grace: Duration,
    },
    /// The newest object is within the grace period: the backup may still be running.
    WithinGrace {
        /// How long ago the newest object was written.
        age: Duration,
        /// The grace period.
        grace: Duration,
    },
    /// The newest object is dated after `now` (clock skew): left alone.
    InFuture,
}

impl fmt::Display for SweepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SweepReason::ListingIncomplete => {
                f.write_str("listing incomplete: sweeping nothing, a manifest may have been missed")
            }
            SweepReason::Abandoned { age, grace } => write!(
                f,
                "no manifest and newest object written {} ago, past the grace of {}: left by a \
                 crashed run",
                format_duration(*age),
                format_duration(*grace)
            ),
            SweepReason::WithinGrace { age, grace } => write!(
                f,
                "no manifest yet, newest object written {} ago, within the grace of {}: may \
                 still be running",
                format_duration(*age),
                format_duration(*grace)
            ),
            SweepReason::InFuture => f.write_str("newest object dated in the future: waiting"),
        }
    }
}

/// The sweep decision about one incomplete backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepVerdict {
    /// The backup's id.
    pub id: String,
    /// Sweep or wait.
    pub action: SweepAction,
    /// Why.
    pub reason: SweepReason,
}

impl fmt::Display for SweepVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.action, self.id, self.reason)
    }
}

/// Decides which incomplete backups (objects but no manifest) to sweep: those whose newest object
/// is older than `grace` (`now - newest_object > grace`). Younger ones may still be running and
/// are left, as are those dated after `now`; an incomplete listing sweeps nothing. One verdict per
/// entry, in input order.
pub fn sweep_incomplete(
    listing: &SweepListing,
    now: DateTime<Utc>,
    grace: Duration,
) -> Vec<SweepVerdict> {
    listing
        .entries
        .iter()
        .map(|entry| {
            let (action, reason) = if !listing.complete {
                (SweepAction::Wait, SweepReason::ListingIncomplete)
            } else {
                match (now - entry.newest_object).to_std() {
                    Err(_) => (SweepAction::Wait, SweepReason::InFuture),
                    Ok(age) if age > grace => {
                        (SweepAction::Sweep, SweepReason::Abandoned { age, grace })
                    }
                    Ok(age) => (SweepAction::Wait, SweepReason::WithinGrace { age, grace }),
                }
            };
            SweepVerdict {
                id: entry.id.clone(),
                action,
                reason,
            }
        })
        .collect()
}

/// How far the local clock may be from the store's, or behind the newest backup's finish
/// time, before retention refuses to act on it.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Why "now" is not plausible enough to delete anything by it. A clock that runs ahead makes
/// every backup look old; one that runs behind makes the newest look as if from the future.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// `now` is before the newest backup finished.
    #[error(
        "this node's clock says {now}, before backup {id} finished ({finished}): the clock is behind, so retention deleted nothing; fix the node's time (chrony/NTP) and run prune again"
    )]
    BeforeNewestBackup {
        now: DateTime<Utc>,
        id: String,
        finished: DateTime<Utc>,
    },
    /// `now` is far from the store's own clock.
    #[error(
        "this node's clock says {now} but the store's clock says {store} ({skew} apart, more than the {limit} allowed), so retention deleted nothing: fix the node's time (chrony/NTP) and run prune again"
    , skew = format_duration(*skew), limit = format_duration(*limit))]
    FarFromStore {
        now: DateTime<Utc>,
        store: DateTime<Utc>,
        skew: Duration,
        limit: Duration,
    },
}

/// Checks that `now` is plausible before retention acts on it: not before the newest backup's
/// finish time (`newest`, as id and time) and within `limit` of the store's clock (`store`,
/// the Last-Modified of an object written just now). Each is allowed `limit` of skew.
pub fn check_clock(
    now: DateTime<Utc>,
    newest: Option<(&str, DateTime<Utc>)>,
    store: Option<DateTime<Utc>>,
    limit: Duration,
) -> Result<(), ClockError> {
    let limit_delta = TimeDelta::from_std(limit).unwrap_or(TimeDelta::MAX);
    if let Some(store) = store {
        let skew = (now - store).abs();
        if skew > limit_delta {
            return Err(ClockError::FarFromStore {
                now,
                store,
                skew: Duration::from_secs(skew.num_seconds().unsigned_abs()),
                limit,
            });
        }
    }
    if let Some((id, finished)) = newest
        && now + limit_delta < finished
    {
        return Err(ClockError::BeforeNewestBackup {
            now,
            id: id.to_string(),
            finished,
        });
    }
    Ok(())
}

/// Formats a duration the way operators write it in the config ("180d", "1d 12h", "90s"), in a
/// form humantime parses back. Sub-second durations fall back to humantime's own format.
fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() != 0 {
        return humantime::format_duration(duration).to_string();
    }
    let mut secs = duration.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let mut parts = Vec::new();
    for (unit, suffix) in [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")] {
        if secs >= unit {
            parts.push(format!("{}{suffix}", secs / unit));
            secs %= unit;
        }
    }
    parts.join(" ")
}

/// Serde helper for `max_age`: a humantime string such as "180d", or null/absent for none.
mod max_age_serde {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => s.serialize_some(&super::format_duration(*duration)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_option(MaxAgeVisitor)
    }

    struct MaxAgeVisitor;

    impl<'de> Visitor<'de> for MaxAgeVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"180d\", \"26w\" or \"36h\"")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            humantime::parse_duration(text.trim())
                .map(Some)
                .map_err(|err| {
                    E::custom(format!(
                        "max_age {text:?} is not a duration ({err}): write it like \"180d\", \
                     \"26w\" or \"36h\""
                    ))
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn backup(id: impl Into<String>, time: DateTime<Utc>) -> ListedBackup {
        ListedBackup {
            id: id.into(),
            time,
            has_manifest: true,
        }
    }

    fn listing(backups: Vec<ListedBackup>) -> Listing {
        Listing {
            complete: true,
            backups,
        }
    }

    /// One backup an hour, on the hour, from `start` for `hours` hours; ids are RFC 3339 times.
    fn hourly_timeline(start: DateTime<Utc>, hours: i64) -> Vec<ListedBackup> {
        (0..hours)
            .map(|h| {
                let time = start + TimeDelta::hours(h);
                backup(time.to_rfc3339(), time)
            })
            .collect()
    }

    fn example_policy() -> RetentionPolicy {
        RetentionPolicy {
            keep_last: Some(4),
            hourly: Some(24),
            daily: Some(7),
            weekly: Some(4),
            monthly: Some(6),
            yearly: None,
            max_age: Some(Duration::from_secs(180 * 86_400)),
        }
    }

    fn kept_ids(decision: &Decision) -> Vec<String> {
        decision.kept().map(|v| v.id.clone()).collect()
    }

    fn verdict<'a>(decision: &'a Decision, id: &str) -> &'a Verdict {
        decision.verdicts.iter().find(|v| v.id == id).unwrap()
    }

    fn reasons_text(decision: &Decision, id: &str) -> Vec<String> {
        verdict(decision, id)
            .reasons
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn example_policy_on_sixty_days_of_hourly_backups() {
        // 2026-10-01 00:00 .. 2026-11-29 23:00 UTC; 2026-11-29 is a Sunday (end of ISO week 48).
        let backups = hourly_timeline(utc(2026, 10, 1, 0, 0), 60 * 24);
        let newest = utc(2026, 11, 29, 23, 0);
        let decision = decide(&listing(backups), &example_policy(), newest, Tz::UTC);

        assert_eq!(decision.verdicts.len(), 1440);
        // 24 hourly (covering keep_last 4), 6 more daily (Nov 23..28 at 23:00), 3 more weekly
        // (Sundays Nov 22, 15, 8), 1 more monthly (Oct 31): 34.
        let kept = kept_ids(&decision);
        assert_eq!(kept.len(), 34, "{kept:#?}");
        assert_eq!(decision.deleted().count(), 1440 - 34);

        let count_rule = |name: &str| {
            decision
                .verdicts
                .iter()
                .filter(|v| v.reasons.iter().any(|r| reason_rule(r) == Some(name)))
                .count()
        };
        assert_eq!(count_rule("keep_last"), 4);
        assert_eq!(count_rule("hourly"), 24);
        assert_eq!(count_rule("daily"), 7);
        assert_eq!(count_rule("weekly"), 4);
        assert_eq!(count_rule("monthly"), 2, "only two months have backups");

        let expected_older: Vec<String> = [
            utc(2026, 11, 28, 23, 0),
            utc(2026, 11, 27, 23, 0),
            utc(2026, 11, 26, 23, 0),
            utc(2026, 11, 25, 23, 0),
            utc(2026, 11, 24, 23, 0),
            utc(2026, 11, 23, 23, 0),
            utc(2026, 11, 22, 23, 0),
            utc(2026, 11, 15, 23, 0),
            utc(2026, 11, 8, 23, 0),
            utc(2026, 10, 31, 23, 0),
        ]
        .iter()
        .map(|t| t.to_rfc3339())
        .collect();
        assert_eq!(kept[24..], expected_older[..]);

        assert_eq!(
            reasons_text(&decision, &newest.to_rfc3339()),
            [
                "newest complete backup",
                "keep_last 1 of 4",
                "hourly bucket 2026-11-29 23:00 +00:00 (1 of 24)",
                "daily bucket 2026-11-29 (1 of 7)",
                "weekly bucket 2026-W48 (1 of 4)",
                "monthly bucket 2026-11 (1 of 6)",
            ]
        );
        assert_eq!(
            reasons_text(&decision, &utc(2026, 11, 29, 21, 0).to_rfc3339()),
            [
                "keep_last 3 of 4",
                "hourly bucket 2026-11-29 21:00 +00:00 (3 of 24)"
            ]
        );
        assert_eq!(
            reasons_text(&decision, &utc(2026, 11, 27, 23, 0).to_rfc3339()),
            ["daily bucket 2026-11-27 (3 of 7)"]
        );
        assert_eq!(
            reasons_text(&decision, &utc(2026, 10, 31, 23, 0).to_rfc3339()),
            ["monthly bucket 2026-10 (2 of 6)"]
        );
        let dropped = verdict(&decision, &utc(2026, 11, 29, 0, 0).to_rfc3339());
        assert_eq!(dropped.action, Action::Keep);
        let dropped = verdict(&decision, &utc(2026, 11, 28, 22, 0).to_rfc3339());
        assert_eq!(dropped.action, Action::Delete);
        assert_eq!(dropped.explain(), "not selected by any rule");
    }

    fn reason_rule(reason: &Reason) -> Option<&'static str> {
        match reason {
            Reason::KeepLast { .. } => Some("keep_last"),
            Reason::Bucket { period, .. } => Some(period.name()),
            _ => None,
        }
    }

    #[test]
    fn max_age_caps_what_the_rules_keep() {
        let backups = hourly_timeline(utc(2026, 10, 1, 0, 0), 60 * 24);
        let newest = utc(2026, 11, 29, 23, 0);
        let policy = RetentionPolicy {
            max_age: Some(Duration::from_secs(20 * 86_400)),
            ..example_policy()
        };
        let decision = decide(&listing(backups), &policy, newest, Tz::UTC);

        // Nov 8 23:00 (21 days old) and Oct 31 23:00 (29 days old) are kept by rules but capped.
        assert_eq!(decision.kept().count(), 32);
        let capped = verdict(&decision, &utc(2026, 11, 8, 23, 0).to_rfc3339());
        assert_eq!(capped.action, Action::Delete);
        assert_eq!(
            capped.explain(),
            "older than max_age 20d (overrides weekly bucket 2026-W45 (4 of 4))"
        );
        assert_eq!(
            verdict(&decision, &utc(2026, 11, 15, 23, 0).to_rfc3339()).action,
            Action::Keep
        );
    }

    #[test]
    fn max_age_is_strict_and_measured_from_now() {
        let now = utc(2026, 6, 1, 0, 0);
        let day = Duration::from_secs(86_400);
        let backups = vec![
            backup("newest", now),
            backup("exactly-one-day", now - TimeDelta::days(1)),
            backup(
                "a-minute-more",
                now - TimeDelta::days(1) - TimeDelta::minutes(1),
            ),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(3),
            max_age: Some(day),
            ..RetentionPolicy::default()
        };
        let decision = decide(&listing(backups), &policy, now, Tz::UTC);
        assert_eq!(verdict(&decision, "exactly-one-day").action, Action::Keep);
        let capped = verdict(&decision, "a-minute-more");
        assert_eq!(capped.action, Action::Delete);
        assert_eq!(capped.reasons[0].to_string(), "older than max_age 1d");
    }

    #[test]
    fn newest_complete_backup_survives_max_age_and_an_empty_policy() {
        let now = utc(2026, 6, 1, 0, 0);
        let backups = vec![
            backup("old", now - TimeDelta::days(400)),
            backup("older", now - TimeDelta::days(500)),
        ];
        let policy = RetentionPolicy {
            daily: Some(7),
            max_age: Some(Duration::from_secs(180 * 86_400)),
            ..RetentionPolicy::default()
        };
        let decision = decide(&listing(backups), &policy, now, Tz::UTC);
        assert_eq!(kept_ids(&decision), ["old"]);
        assert_eq!(
            verdict(&decision, "older").explain(),
            "older than max_age 180d (overrides daily bucket 2025-01-17 (2 of 7))"
        );

        let zero = RetentionPolicy {
            keep_last: Some(0),
            ..RetentionPolicy::default()
        };
        let backups = vec![backup("a", now), backup("b", now - TimeDelta::hours(1))];
        let decision = decide(&listing(backups), &zero, now, Tz::UTC);
        assert_eq!(kept_ids(&decision), ["a", "b"], "no count rule keeps all");
        assert_eq!(
            verdict(&decision, "b").explain(),
            "no count rule set: keeping all"
        );
    }

    #[test]
    fn max_age_alone_keeps_everything_younger() {
        let now = utc(2026, 6, 1, 0, 0);
        let backups = (0..10)
            .map(|d| backup(format!("d{d}"), now - TimeDelta::days(d)))
            .collect();
        let policy = RetentionPolicy {
            max_age: Some(Duration::from_secs(5 * 86_400)),
            ..RetentionPolicy::default()
        };
        let decision = decide(&listing(backups), &policy, now, Tz::UTC);
        assert_eq!(kept_ids(&decision), ["d0", "d1", "d2", "d3", "d4", "d5"]);
        assert_eq!(
            verdict(&decision, "d5").explain(),
            "no count rule set: keeping all younger than max_age 5d"
        );
        assert_eq!(
            verdict(&decision, "d6").explain(),
            "older than max_age 5d (overrides no count rule set: keeping all younger than \
             max_age 5d)"
        );
    }

    #[test]
    fn incomplete_listing_deletes_nothing() {
        let now = utc(2026, 6, 1, 0, 0);
        let mut backups = hourly_timeline(now - TimeDelta::days(30), 30 * 24);
        backups[3].has_manifest = false;
        let policy = RetentionPolicy {
            keep_last: Some(1),
            max_age: Some(Duration::from_secs(3_600)),
            ..RetentionPolicy::default()
        };
        let decision = decide(
            &Listing {
                complete: false,
                backups,
            },
            &policy,
            now,
            Tz::UTC,
        );
        assert_eq!(decision.verdicts.len(), 720);
        assert!(
            decision.verdicts.iter().all(|v| v.action == Action::Keep
                && v.explain() == "listing incomplete: deleting nothing")
        );
    }

    #[test]
    fn incomplete_backups_are_left_to_the_sweep_and_take_no_rule_place() {
        let now = utc(2026, 6, 1, 12, 0);
        let mut running = backup("running", now - TimeDelta::minutes(5));
        running.has_manifest = false;
        let mut crashed = backup("crashed", now - TimeDelta::days(3));
        crashed.has_manifest = false;
        let backups = vec![
            running,
            backup("done", now - TimeDelta::hours(1)),
            backup("previous", now - TimeDelta::hours(2)),
            crashed,
        ];
        let policy = RetentionPolicy {
            keep_last: Some(1),
            ..RetentionPolicy::default()
        };
        let decision = decide(&listing(backups), &policy, now, Tz::UTC);
        assert_eq!(kept_ids(&decision), ["running", "done", "crashed"]);
        assert_eq!(
            verdict(&decision, "running").explain(),
            "incomplete: handled by sweep"
        );
        assert_eq!(
            verdict(&decision, "done").explain(),
            "newest complete backup; keep_last 1 of 1"
        );
        assert_eq!(verdict(&decision, "previous").action, Action::Delete);
    }

    #[test]
    fn backups_dated_in_the_future_are_kept_without_displacing_real_ones() {
        let now = utc(2026, 6, 1, 12, 0);
        let backups = vec![
            backup("skewed", utc(2099, 1, 1, 0, 0)),
            backup("real", now - TimeDelta::hours(1)),
            backup("older", now - TimeDelta::hours(2)),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(1),
            max_age: Some(Duration::from_secs(60)),
            ..RetentionPolicy::default()
        };
        let decision = decide(&listing(backups), &policy, now, Tz::UTC);
        assert_eq!(kept_ids(&decision), ["skewed", "real"]);
        assert_eq!(
            verdict(&decision, "skewed").explain(),
            "dated in the future: kept"
        );
        assert_eq!(
            verdict(&decision, "real").explain(),
            "newest complete backup; keep_last 1 of 1"
        );
    }

    #[test]
    fn verdicts_are_newest_first_whatever_the_input_order() {
        let now = utc(2026, 6, 1, 12, 0);
        let backups = vec![
            backup("b", now - TimeDelta::hours(2)),
            backup("c", now - TimeDelta::hours(1)),
            backup("a", now - TimeDelta::hours(2)),
        ];
        let decision = decide(&listing(backups), &example_policy(), now, Tz::UTC);
        let ids: Vec<_> = decision.verdicts.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
    }

    #[test]
    fn berlin_daily_buckets_follow_local_midnight_across_dst() {
        // 2026-10-25: Berlin goes from CEST (+02:00) to CET (+01:00) at 01:00 UTC.
        let backups = hourly_timeline(utc(2026, 10, 23, 0, 0), 4 * 24);
        let now = utc(2026, 10, 26, 23, 0);
        let policy = RetentionPolicy {
            daily: Some(4),
            ..RetentionPolicy::default()
        };

        let berlin = decide(&listing(backups.clone()), &policy, now, Tz::Europe__Berlin);
        let kept: Vec<_> = berlin.kept().map(|v| v.time).collect();
        assert_eq!(
            kept,
            [
                utc(2026, 10, 26, 23, 0), // 2026-10-27 00:00 CET: a day of its own
                utc(2026, 10, 26, 22, 0), // 2026-10-26 23:00 CET
                utc(2026, 10, 25, 22, 0), // 2026-10-25 23:00 CET (a 25-hour day)
                utc(2026, 10, 24, 21, 0), // 2026-10-24 23:00 CEST
            ]
        );
        assert_eq!(
            verdict(&berlin, &utc(2026, 10, 25, 22, 0).to_rfc3339()).explain(),
            "daily bucket 2026-10-25 (3 of 4)"
        );

        let in_utc = decide(&listing(backups), &policy, now, Tz::UTC);
        let kept: Vec<_> = in_utc.kept().map(|v| v.time).collect();
        assert_eq!(
            kept,
            [
                utc(2026, 10, 26, 23, 0),
                utc(2026, 10, 25, 23, 0),
                utc(2026, 10, 24, 23, 0),
                utc(2026, 10, 23, 23, 0),
            ]
        );
    }

    #[test]
    fn berlin_spring_forward_day_has_one_bucket() {
        // 2026-03-29: Berlin skips 02:00-03:00 local; the day lasts 23 hours (22:00..21:00 UTC).
        let backups = hourly_timeline(utc(2026, 3, 28, 0, 0), 3 * 24);
        let now = utc(2026, 3, 30, 23, 0);
        let policy = RetentionPolicy {
            daily: Some(3),
            ..RetentionPolicy::default()
        };
        let decision = decide(&listing(backups), &policy, now, Tz::Europe__Berlin);
        let kept: Vec<_> = decision.kept().map(|v| v.time).collect();
        assert_eq!(
            kept,
            [
                utc(2026, 3, 30, 23, 0), // 2026-03-31 01:00 CEST
                utc(2026, 3, 30, 21, 0), // 2026-03-30 23:00 CEST
                utc(2026, 3, 29, 21, 0), // 2026-03-29 23:00 CEST
            ]
        );
    }

    #[test]
    fn berlin_repeated_hour_makes_two_hourly_buckets() {
        // 00:30 UTC is 02:30 CEST and 01:30 UTC is 02:30 CET on 2026-10-25.
        let backups = vec![
            backup("first", utc(2026, 10, 25, 0, 30)),
            backup("second", utc(2026, 10, 25, 1, 30)),
        ];
        let policy = RetentionPolicy {
            hourly: Some(2),
            ..RetentionPolicy::default()
        };
        let now = utc(2026, 10, 25, 2, 0);
        let decision = decide(&listing(backups), &policy, now, Tz::Europe__Berlin);
        assert_eq!(kept_ids(&decision), ["second", "first"]);
        assert_eq!(
            verdict(&decision, "first").explain(),
            "hourly bucket 2026-10-25 02:00 +02:00 (2 of 2)"
        );
        assert_eq!(
            reasons_text(&decision, "second")[1],
            "hourly bucket 2026-10-25 02:00 +01:00 (1 of 2)"
        );
    }

    #[test]
    fn weekly_buckets_use_iso_weeks_across_the_year_end() {
        // 2026-12-31 (Thu) and 2027-01-03 (Sun) are both in ISO week 2026-W53.
        let backups = vec![
            backup("sun", utc(2027, 1, 3, 12, 0)),
            backup("thu", utc(2026, 12, 31, 12, 0)),
            backup("prev-sun", utc(2026, 12, 27, 12, 0)),
        ];
        let policy = RetentionPolicy {
            weekly: Some(2),
            yearly: Some(2),
            ..RetentionPolicy::default()
        };
        let decision = decide(&listing(backups), &policy, utc(2027, 1, 4, 0, 0), Tz::UTC);
        assert_eq!(
            reasons_text(&decision, "sun"),
            [
                "newest complete backup",
                "weekly bucket 2026-W53 (1 of 2)",
                "yearly bucket 2027 (1 of 2)",
            ]
        );
        assert_eq!(
            verdict(&decision, "thu").explain(),
            "yearly bucket 2026 (2 of 2)"
        );
        assert_eq!(
            verdict(&decision, "prev-sun").explain(),
            "weekly bucket 2026-W52 (2 of 2)"
        );
    }

    #[test]
    fn buckets_count_only_periods_that_have_a_backup() {
        let now = utc(2026, 6, 30, 0, 0);
        let backups = vec![
            backup("jun", utc(2026, 6, 1, 0, 0)),
            backup("jan", utc(2026, 1, 1, 0, 0)),
            backup("2025-mar", utc(2025, 3, 1, 0, 0)),
        ];
        let policy = RetentionPolicy {
            monthly: Some(3),
            ..RetentionPolicy::default()
        };
        let decision = decide(&listing(backups), &policy, now, Tz::UTC);
        assert_eq!(kept_ids(&decision), ["jun", "jan", "2025-mar"]);
        assert_eq!(
            verdict(&decision, "2025-mar").explain(),
            "monthly bucket 2025-03 (3 of 3)"
        );
    }

    #[test]
    fn verdict_display_names_action_id_and_time() {
        let now = utc(2026, 6, 1, 0, 0);
        let decision = decide(
            &listing(vec![backup("x", now)]),
            &example_policy(),
            now,
            Tz::UTC,
        );
        assert_eq!(
            decision.verdicts[0].to_string(),
            "keep x (2026-06-01T00:00:00+00:00): newest complete backup; keep_last 1 of 4; \
             hourly bucket 2026-06-01 00:00 +00:00 (1 of 24); daily bucket 2026-06-01 (1 of 7); \
             weekly bucket 2026-W23 (1 of 4); monthly bucket 2026-06 (1 of 6)"
        );
    }

    #[test]
    fn validate_refuses_a_policy_that_keeps_nothing() {
        let err = RetentionPolicy::default().validate().unwrap_err();
        assert_eq!(err, Error::KeepsNothing);
        assert!(err.to_string().starts_with(
            "retention keeps no backup: set keep_last or one of hourly/daily/weekly/monthly/yearly"
        ));
        let zeros = RetentionPolicy {
            keep_last: Some(0),
            daily: Some(0),
            ..RetentionPolicy::default()
        };
        assert_eq!(zeros.validate(), Err(Error::KeepsNothing));
        let zero_age = RetentionPolicy {
            daily: Some(7),
            max_age: Some(Duration::ZERO),
            ..RetentionPolicy::default()
        };
        assert_eq!(zero_age.validate(), Err(Error::ZeroMaxAge));

        assert_eq!(example_policy().validate(), Ok(()));
        let age_only = RetentionPolicy {
            max_age: Some(Duration::from_secs(86_400)),
            ..RetentionPolicy::default()
        };
        assert_eq!(age_only.validate(), Ok(()));
        let one_rule = RetentionPolicy {
            yearly: Some(1),
            ..RetentionPolicy::default()
        };
        assert_eq!(one_rule.validate(), Ok(()));
    }

    fn parse(json: &str) -> Result<RetentionPolicy, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn policy_deserializes_snake_case_fields() {
        let policy = parse(
            r#"{"keep_last": 4, "hourly": 24, "daily": 7, "weekly": 4, "monthly": 6,
                "yearly": 2, "max_age": "180d"}"#,
        )
        .unwrap();
        assert_eq!(
            policy,
            RetentionPolicy {
                yearly: Some(2),
                ..example_policy()
            }
        );
        assert_eq!(parse("{}").unwrap(), RetentionPolicy::default());
        assert_eq!(parse(r#"{"max_age": null}"#).unwrap().max_age, None);
        assert_eq!(
            parse(r#"{"max_age": "26w"}"#).unwrap().max_age,
            Some(Duration::from_secs(26 * 7 * 86_400))
        );
    }

    #[test]
    fn policy_serializes_max_age_as_written() {
        let text = serde_json::to_string(&example_policy()).unwrap();
        assert_eq!(
            text,
            r#"{"keep_last":4,"hourly":24,"daily":7,"weekly":4,"monthly":6,"max_age":"180d"}"#
        );
        assert_eq!(parse(&text).unwrap(), example_policy());
    }

    #[test]
    fn policy_refuses_unknown_fields() {
        let err = parse(r#"{"keep_latest": 4}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `keep_latest`"),
            "{err}"
        );
        let err = parse(r#"{"keepLast": 4}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `keepLast`"),
            "{err}"
        );
    }

    #[test]
    fn bad_max_age_says_how_to_write_one() {
        let err = parse(r#"{"max_age": "six months"}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("max_age \"six months\" is not a duration ("),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("write it like \"180d\", \"26w\" or \"36h\""),
            "{err}"
        );
    }

    #[test]
    fn durations_format_as_operators_write_them() {
        let d = |secs| format_duration(Duration::from_secs(secs));
        assert_eq!(d(180 * 86_400), "180d");
        assert_eq!(d(86_400 + 12 * 3_600), "1d 12h");
        assert_eq!(d(90), "1m 30s");
        assert_eq!(d(0), "0s");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1s 500ms");
    }

    #[test]
    fn sweep_waits_for_running_backups_and_sweeps_abandoned_ones() {
        let now = utc(2026, 6, 1, 12, 0);
        let entry = |id: &str, newest_object| IncompleteEntry {
            id: id.to_string(),
            newest_object,
        };
        let listing = SweepListing {
            complete: true,
            entries: vec![
                entry("running", now - TimeDelta::minutes(10)),
                entry(
                    "crashed",
                    now - TimeDelta::hours(3) - TimeDelta::minutes(12),
                ),
                entry("at-grace", now - TimeDelta::hours(1)),
                entry("skewed", now + TimeDelta::hours(1)),
            ],
        };
        let verdicts = sweep_incomplete(&listing, now, Duration::from_secs(3_600));
        let shown: Vec<String> = verdicts.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "wait running: no manifest yet, newest object written 10m ago, within the grace \
                 of 1h: may still be running",
                "sweep crashed: no manifest and newest object written 3h 12m ago, past the grace \
                 of 1h: left by a crashed run",
                "wait at-grace: no manifest yet, newest object written 1h ago, within the grace \
                 of 1h: may still be running",
                "wait skewed: newest object dated in the future: waiting",
            ]
        );
    }

    #[test]
    fn sweep_on_an_incomplete_listing_sweeps_nothing() {
        let now = utc(2026, 6, 1, 12, 0);
        let listing = SweepListing {
            complete: false,
            entries: vec![IncompleteEntry {
                id: "crashed".to_string(),
                newest_object: now - TimeDelta::days(30),
            }],
        };
        let verdicts = sweep_incomplete(&listing, now, Duration::from_secs(3_600));
        assert_eq!(verdicts.len(), 1);
        assert_eq!(verdicts[0].action, SweepAction::Wait);
        assert_eq!(verdicts[0].reason, SweepReason::ListingIncomplete);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    const DAY: i64 = 86_400;

    fn base() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    /// Listings over a few days, a few months or a few years, so that buckets both repeat and
    /// spread; some backups lack a manifest.
    fn listing_over(span: i64) -> impl Strategy<Value = Listing> {
        (
            prop::bool::weighted(0.85),
            prop::collection::vec((0..=span, prop::bool::weighted(0.85)), 0..40),
        )
            .prop_map(|(complete, items)| Listing {
                complete,
                backups: items
                    .into_iter()
                    .enumerate()
                    .map(|(i, (offset, has_manifest))| ListedBackup {
                        id: format!("b{i:02}"),
                        time: base() + TimeDelta::seconds(offset),
                        has_manifest,
                    })
                    .collect(),
            })
    }

    /// A listing and a `now` that is usually after every backup, sometimes before some.
    fn listing_and_now() -> impl Strategy<Value = (Listing, DateTime<Utc>)> {
        prop_oneof![Just(3 * DAY), Just(90 * DAY), Just(3 * 365 * DAY)].prop_flat_map(|span| {
            (
                listing_over(span),
                prop_oneof![
                    4 => Just(span + 1),
                    1 => 0..=span,
                ]
                .prop_map(|offset| base() + TimeDelta::seconds(offset)),
            )
        })
    }

    fn count() -> impl Strategy<Value = Option<u32>> {
        prop::option::of(0u32..6)
    }

    fn policy(with_max_age: bool) -> impl Strategy<Value = RetentionPolicy> {
        let max_age = if with_max_age {
            prop::option::of((1u64..400 * 86_400).prop_map(Duration::from_secs)).boxed()
        } else {
            Just(None).boxed()
        };
        (
            count(),
            count(),
            count(),
            count(),
            count(),
            count(),
            max_age,
        )
            .prop_map(
                |(keep_last, hourly, daily, weekly, monthly, yearly, max_age)| RetentionPolicy {
                    keep_last,
                    hourly,
                    daily,
                    weekly,
                    monthly,
                    yearly,
                    max_age,
                },
            )
    }

    fn tz() -> impl Strategy<Value = Tz> {
        prop::sample::select(vec![
            Tz::UTC,
            Tz::Europe__Berlin,
            Tz::America__New_York,
            Tz::Asia__Kolkata,
            Tz::Australia__Lord_Howe,
            Tz::Pacific__Chatham,
        ])
    }

    /// Complete backups not dated after `now`, newest first (the order `decide` walks).
    fn candidates(listing: &Listing, now: DateTime<Utc>) -> Vec<&ListedBackup> {
        let mut c: Vec<_> = listing
            .backups
            .iter()
            .filter(|b| b.has_manifest && b.time <= now)
            .collect();
        c.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
        c
    }

    fn action_of(decision: &Decision, id: &str) -> Action {
        decision
            .verdicts
            .iter()
            .find(|v| v.id == id)
            .unwrap()
            .action
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn never_deletes_the_newest_complete_backup(
            (listing, now) in listing_and_now(), policy in policy(true), tz in tz(),
        ) {
            let decision = decide(&listing, &policy, now, tz);
            if let Some(newest) = candidates(&listing, now).first() {
                prop_assert_eq!(action_of(&decision, &newest.id), Action::Keep);
            }
            let newest_overall = listing.backups.iter().filter(|b| b.has_manifest).max_by_key(|b| b.time);
            if let Some(newest) = newest_overall {
                prop_assert_eq!(action_of(&decision, &newest.id), Action::Keep);
            }
        }

        #[test]
        fn deletes_only_complete_backups_not_in_the_future(
            (listing, now) in listing_and_now(), policy in policy(true), tz in tz(),
        ) {
            let decision = decide(&listing, &policy, now, tz);
            for v in decision.deleted() {
                let b = listing.backups.iter().find(|b| b.id == v.id).unwrap();
                prop_assert!(b.has_manifest && b.time <= now, "{}", v);
            }
        }

        #[test]
        fn deletes_nothing_when_the_listing_is_incomplete(
            (mut listing, now) in listing_and_now(), policy in policy(true), tz in tz(),
        ) {
            listing.complete = false;
            let decision = decide(&listing, &policy, now, tz);
            prop_assert_eq!(decision.deleted().count(), 0);
        }

        #[test]
        fn keeps_the_keep_last_newest_unless_past_max_age(
            (mut listing, now) in listing_and_now(), policy in policy(true), tz in tz(),
        ) {
            listing.complete = true;
            let decision = decide(&listing, &policy, now, tz);
            let n = policy.keep_last.unwrap_or(0) as usize;
            for b in candidates(&listing, now).into_iter().take(n) {
                let capped = policy.max_age.is_some_and(|age| {
                    (now - b.time).to_std().is_ok_and(|elapsed| elapsed > age)
                });
                if !capped {
                    prop_assert_eq!(action_of(&decision, &b.id), Action::Keep, "{}", b.id);
                }
            }
        }

        #[test]
        fn deciding_again_on_the_kept_set_deletes_nothing(
            (listing, now) in listing_and_now(), policy in policy(false), tz in tz(),
        ) {
            let first = decide(&listing, &policy, now, tz);
            let kept = Listing {
                complete: listing.complete,
                backups: listing
                    .backups
                    .iter()
                    .filter(|b| action_of(&first, &b.id) == Action::Keep)
                    .cloned()
                    .collect(),
            };
            let second = decide(&kept, &policy, now, tz);
            prop_assert_eq!(second.deleted().count(), 0);
        }

        #[test]
        fn deciding_again_is_stable_with_max_age_too(
            (listing, now) in listing_and_now(), policy in policy(true), tz in tz(),
        ) {
            let first = decide(&listing, &policy, now, tz);
            let kept = Listing {
                complete: listing.complete,
                backups: listing
                    .backups
                    .iter()
                    .filter(|b| action_of(&first, &b.id) == Action::Keep)
                    .cloned()
                    .collect(),
            };
            let second = decide(&kept, &policy, now, tz);
            prop_assert_eq!(second.deleted().count(), 0);
        }

        #[test]
        fn every_entry_appears_exactly_once_with_a_reason(
            (listing, now) in listing_and_now(), policy in policy(true), tz in tz(),
        ) {
            let decision = decide(&listing, &policy, now, tz);
            let mut input: Vec<_> = listing.backups.iter().map(|b| (b.id.clone(), b.time)).collect();
            let mut output: Vec<_> = decision.verdicts.iter().map(|v| (v.id.clone(), v.time)).collect();
            input.sort();
            output.sort();
            prop_assert_eq!(input, output);
            prop_assert!(decision.verdicts.iter().all(|v| !v.reasons.is_empty()));
        }

        #[test]
        fn input_order_does_not_matter(
            (listing, now) in listing_and_now(), policy in policy(true), tz in tz(),
            seed in any::<u64>(),
        ) {
            let mut shuffled = listing.clone();
            // A cheap deterministic permutation: rotate, then reverse.
            let len = shuffled.backups.len();
            if len > 0 {
                shuffled.backups.rotate_left((seed % len as u64) as usize);
                shuffled.backups.reverse();
            }
            prop_assert_eq!(decide(&listing, &policy, now, tz), decide(&shuffled, &policy, now, tz));
        }

        #[test]
        fn bucket_rules_keep_at_most_their_count(
            (listing, now) in listing_and_now(), policy in policy(true), tz in tz(),
        ) {
            let decision = decide(&listing, &policy, now, tz);
            for period in Period::ALL {
                let n = decision
                    .verdicts
                    .iter()
                    .filter(|v| v.reasons.iter().any(|r| matches!(r, Reason::Bucket { period: p, .. } if *p == period)))
                    .count();
                prop_assert!(n <= period.count(&policy) as usize);
            }
        }

        #[test]
        fn sweep_never_touches_a_backup_within_grace(
            offsets in prop::collection::vec(-DAY..10 * DAY, 0..20),
            grace_secs in 0u64..(2 * DAY as u64),
            complete in any::<bool>(),
        ) {
            let now = base() + TimeDelta::days(30);
            let listing = SweepListing {
                complete,
                entries: offsets
                    .iter()
                    .enumerate()
                    .map(|(i, offset)| IncompleteEntry {
                        id: format!("i{i}"),
                        newest_object: now - TimeDelta::seconds(*offset),
                    })
                    .collect(),
            };
            let grace = Duration::from_secs(grace_secs);
            let verdicts = sweep_incomplete(&listing, now, grace);
            prop_assert_eq!(verdicts.len(), listing.entries.len());
            for (entry, verdict) in listing.entries.iter().zip(&verdicts) {
                prop_assert_eq!(&entry.id, &verdict.id);
                let swept = verdict.action == SweepAction::Sweep;
                let old = (now - entry.newest_object).to_std().is_ok_and(|age| age > grace);
                prop_assert_eq!(swept, complete && old);
            }
        }

        #[test]
        fn max_age_round_trips_through_its_text(secs in 1u64..(1000 * DAY as u64)) {
            let duration = Duration::from_secs(secs);
            prop_assert_eq!(humantime::parse_duration(&format_duration(duration)).unwrap(), duration);
        }
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;
    use chrono::TimeZone;

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
    }

    /// A node clock 40 days ahead deleted 3 of 4 backups under max_age: 30d.
    #[test]
    fn a_clock_far_ahead_of_the_store_is_refused() {
        let now = t(1, 12) + TimeDelta::days(40);
        let err =
            check_clock(now, Some(("b", t(1, 11))), Some(t(1, 12)), MAX_CLOCK_SKEW).unwrap_err();
        assert!(matches!(err, ClockError::FarFromStore { .. }), "{err}");
        assert!(err.to_string().contains("40d apart"), "{err}");
    }

    #[test]
    fn a_clock_behind_the_newest_backup_is_refused() {
        let err = check_clock(
            t(1, 9),
            Some(("20261101T110000Z-1a2b", t(1, 11))),
            None,
            MAX_CLOCK_SKEW,
        )
        .unwrap_err();
        assert!(
            matches!(err, ClockError::BeforeNewestBackup { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("20261101T110000Z-1a2b"), "{err}");
    }

    #[test]
    fn small_skew_and_old_backups_are_fine() {
        let now = t(20, 12);
        // The newest backup is weeks old (the service was down): that alone is no reason.
        check_clock(
            now,
            Some(("b", t(1, 11))),
            Some(now - TimeDelta::seconds(90)),
            MAX_CLOCK_SKEW,
        )
        .unwrap();
        check_clock(
            now,
            Some(("b", now + TimeDelta::seconds(30))),
            Some(now + TimeDelta::seconds(200)),
            MAX_CLOCK_SKEW,
        )
        .unwrap();
        check_clock(now, None, None, MAX_CLOCK_SKEW).unwrap();
    }

    #[test]
    fn a_clock_behind_the_store_is_refused_too() {
        let now = t(1, 12);
        let err =
            check_clock(now, None, Some(now + TimeDelta::hours(2)), MAX_CLOCK_SKEW).unwrap_err();
        assert!(matches!(err, ClockError::FarFromStore { .. }), "{err}");
    }
}
