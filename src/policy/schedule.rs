//! What runs when: cron schedules evaluated on a time zone's wall clock, plus the small
//! decisions the service loop makes around them (catch up after downtime, skip an overlapping
//! run). Everything here is pure: no I/O, no clock reads; `now` is always a parameter.
//!
//! # Expressions
//!
//! Five fields `minute hour day-of-month month day-of-week`, or six with seconds first, or one
//! of the macros `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and
//! `@hourly`. A field is `*` or a comma list of values `a`, ranges `a-b` and steps `*/n`,
//! `a-b/n`, `a/n` (from `a` to the end of the field). Months take `JAN`-`DEC`, days of week
//! `SUN`-`SAT` (any case); day of week 0 and 7 are both Sunday, and a day-of-week range may end
//! on Sunday (`FRI-SUN`, `5-0`). Extended syntax (`L`, `W`, `#`, `?`) is refused.
//!
//! Days follow Vixie cron: when both day fields are restricted (neither starts with `*`), a day
//! matches when *either* matches, so `0 0 13 * FRI` runs on every 13th and on every Friday. When
//! one of them starts with `*`, a day must match both, which for a plain `*` means only the
//! other field counts (and, as in Vixie cron, `*/2` in day-of-month still counts as `*` here).
//! An expression that can never fire (`0 0 30 2 *`) is refused by [`Schedule::parse`].
//!
//! # Daylight saving time
//!
//! Fields are matched against the local wall clock of the schedule's IANA time zone. When the
//! clock jumps:
//!
//! - A wall time that does not exist (the spring-forward gap, 02:00-03:00 in Europe/Berlin on the
//!   last Sunday of March) fires once, at the first instant after the gap: `30 2 * * *` runs at
//!   03:00 CEST that day. Several skipped times collapse into that one run.
//! - A wall time that happens twice (the fall-back overlap, 02:00-03:00 in Berlin on the last
//!   Sunday of October) fires once, at its first occurrence: 02:30 CEST, not again at 02:30 CET.
//! - Exception: a schedule whose hour field allows every hour (`*/15 * * * *`, `0 * * * *`,
//!   `*/10 * * * * *`) is an interval in disguise, so it follows the clock as displayed: it fires
//!   at every instant whose wall time matches. It runs at both occurrences of the repeated hour
//!   and skips the times that do not exist, which keeps its runs evenly spaced in real time
//!   (an hourly `30 * * * *` runs at 01:30 CET and 03:30 CEST, with no extra run at 03:00).
//!
//! So a daily `0 2 * * *` runs exactly once every local day, at 02:00 whenever 02:00 exists, and
//! a daily `0 3 * * *` stays at 03:00 local on both sides of either change. The tz data comes from
//! chrono-tz and has rules up to 2099; later years are evaluated as standard time.

use std::fmt;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone, Timelike, Utc,
};
use chrono_tz::{GapInfo, Tz};

/// One of the fields of a cron expression, named in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Seconds, the first of six fields.
    Second,
    /// Minutes.
    Minute,
    /// Hours, 0-23 on the local wall clock.
    Hour,
    /// Day of month, 1-31.
    DayOfMonth,
    /// Month, 1-12 or JAN-DEC.
    Month,
    /// Day of week, 0-7 (0 and 7 are Sunday) or SUN-SAT.
    DayOfWeek,
}

impl Field {
    /// The smallest value the field accepts.
    fn min(self) -> u32 {
        match self {
            Field::DayOfMonth | Field::Month => 1,
            _ => 0,
        }
    }

    /// The largest value the field accepts.
    fn max(self) -> u32 {
        match self {
            Field::Second | Field::Minute => 59,
            Field::Hour => 23,
            Field::DayOfMonth => 31,
            Field::Month => 12,
            Field::DayOfWeek => 7,
        }
    }

    /// Where `*` and an open step `a/n` end: Saturday for day of week, so that `1/2` does not
    /// pick up Sunday again as 7.
    fn open_max(self) -> u32 {
        match self {
            Field::DayOfWeek => 6,
            other => other.max(),
        }
    }

    /// The allowed values, as written in error messages.
    fn allowed(self) -> &'static str {
        match self {
            Field::Second | Field::Minute => "0-59",
            Field::Hour => "0-23",
            Field::DayOfMonth => "1-31",
            Field::Month => "1-12 or JAN-DEC",
            Field::DayOfWeek => "0-7 or SUN-SAT (0 and 7 are both Sunday)",
        }
    }

    /// Names accepted in place of numbers, the first one standing for `min()`.
    fn names(self) -> &'static [&'static str] {
        match self {
            Field::Month => &[
                "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
            ],
            Field::DayOfWeek => &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
            _ => &[],
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        })
    }
}

/// Why a schedule was refused; each message names the value and says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The expression does not have 5 or 6 fields.
    #[error(
        "cron expression \"{expr}\" has {count} fields: write 5 fields (minute hour day-of-month \
         month day-of-week), 6 with seconds first, or a macro like @daily"
    )]
    FieldCount {
        /// The expression as written.
        expr: String,
        /// How many whitespace-separated fields it has.
        count: usize,
    },
    /// An `@` macro that is not one of the known ones.
    #[error(
        "cron expression \"{expr}\" uses an unknown macro: use one of @yearly, @annually, \
         @monthly, @weekly, @daily, @midnight or @hourly, or write the 5 fields"
    )]
    UnknownMacro {
        /// The expression as written.
        expr: String,
    },
    /// A number outside the field's range.
    #[error(
        "cron expression \"{expr}\": {value} is out of range for the {field} field: use {allowed}"
    )]
    OutOfRange {
        /// The expression as written.
        expr: String,
        /// The field holding the value.
        field: Field,
        /// The offending value.
        value: u64,
        /// The allowed values, e.g. "0-23".
        allowed: &'static str,
    },
    /// A part of a field that is neither a number, a name, `*`, a range nor a step.
    #[error(
        "cron expression \"{expr}\": \"{token}\" in the {field} field is not a value: use \
         {allowed}, `*`, lists (a,b), ranges (a-b) and steps (*/n, a-b/n)"
    )]
    InvalidToken {
        /// The expression as written.
        expr: String,
        /// The field holding the token.
        field: Field,
        /// The list item that could not be read.
        token: String,
        /// The allowed values, e.g. "1-12 or JAN-DEC".
        allowed: &'static str,
    },
    /// Quartz-style extensions (`L`, `W`, `#`, `?`).
    #[error(
        "cron expression \"{expr}\": \"{token}\" in the {field} field is extended cron syntax \
         (L, W, # or ?) that lifeboat does not support: list the days explicitly, and write `*` \
         where Quartz wants `?`"
    )]
    Unsupported {
        /// The expression as written.
        expr: String,
        /// The field holding the token.
        field: Field,
        /// The list item using the extension.
        token: String,
    },
    /// A step that is not a whole number of at least 1.
    #[error(
        "cron expression \"{expr}\": the step in \"{token}\" ({field} field) must be a whole \
         number of at least 1, as in */5"
    )]
    BadStep {
        /// The expression as written.
        expr: String,
        /// The field holding the step.
        field: Field,
        /// The list item with the step.
        token: String,
    },
    /// A range whose start is after its end.
    #[error(
        "cron expression \"{expr}\": the range \"{token}\" in the {field} field runs backwards: \
         write the smaller value first, and to wrap around list two ranges, as in 22-23,0-2"
    )]
    ReversedRange {
        /// The expression as written.
        expr: String,
        /// The field holding the range.
        field: Field,
        /// The range as written.
        token: String,
    },
    /// The fields are valid one by one but no date satisfies them.
    #[error(
        "cron expression \"{expr}\" never fires: none of the months it allows has the day of \
         month it names (February has at most 29 days; April, June, September and November have \
         30): pick a day that exists in those months"
    )]
    NeverFires {
        /// The expression as written.
        expr: String,
    },
    /// A time zone name that is not in the IANA database.
    #[error(
        "unknown time zone \"{zone}\": use an IANA name such as UTC, Europe/Berlin or \
         America/New_York (`timedatectl list-timezones` lists them)"
    )]
    UnknownTimeZone {
        /// The name as written.
        zone: String,
    },
}

/// Every hour of the day: schedules with this hour mask follow the displayed clock.
const ALL_HOURS: u64 = (1 << 24) - 1;

/// How far [`Schedule::next_after`] looks for a date before giving up. Every schedule that
/// [`Schedule::parse`] accepts fires within one 400-year Gregorian cycle.
const SEARCH_YEARS: i32 = 401;

/// How far around an instant a fall-back is looked for. Since 1970 the tz data has no two clock
/// changes less than six days apart and no fall-back longer than 7 hours, so a day each way
/// sees the whole of any overlap and never two changes.
const OVERLAP_REACH: TimeDelta = TimeDelta::hours(26);

/// A parsed cron schedule in a time zone: when backups run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    expr: String,
    tz: Tz,
    seconds: u64,
    minutes: u64,
    hours: u64,
    /// Bits 1-31.
    days: u64,
    /// Bits 1-12.
    months: u64,
    /// Bits 0-6, Sunday is 0.
    weekdays: u64,
    /// Both day fields are restricted, so either may match (Vixie cron).
    day_or: bool,
}

impl Schedule {
    /// Parses a cron expression (5 fields, 6 with seconds first, or a macro such as `@daily`)
    /// to be evaluated on the wall clock of `time_zone`, an IANA name such as `Europe/Berlin`.
    pub fn parse(expr: &str, time_zone: &str) -> Result<Schedule, Error> {
        let tz: Tz = time_zone
            .trim()
            .parse()
            .map_err(|_| Error::UnknownTimeZone {
                zone: time_zone.to_owned(),
            })?;
        let expr = expr.trim();
        let body = match expr.strip_prefix('@') {
            Some(name) => expand_macro(name).ok_or_else(|| Error::UnknownMacro {
                expr: expr.to_owned(),
            })?,
            None => expr,
        };
        let fields: Vec<&str> = body.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            count => {
                return Err(Error::FieldCount {
                    expr: expr.to_owned(),
                    count,
                });
            }
        };
        let [minute, hour, day, month, weekday] = rest else {
            unreachable!("five fields remain after the seconds");
        };
        let schedule = Schedule {
            expr: expr.to_owned(),
            tz,
            seconds: parse_field(expr, Field::Second, second)?,
            minutes: parse_field(expr, Field::Minute, minute)?,
            hours: parse_field(expr, Field::Hour, hour)?,
            days: parse_field(expr, Field::DayOfMonth, day)?,
            months: parse_field(expr, Field::Month, month)?,
            weekdays: parse_field(expr, Field::DayOfWeek, weekday)?,
            day_or: !day.starts_with('*') && !weekday.starts_with('*'),
        };
        if !schedule.can_fire() {
            return Err(Error::NeverFires {
                expr: expr.to_owned(),
            });
        }
        Ok(schedule)
    }

    /// The expression as written (trimmed).
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// The time zone whose wall clock the schedule follows.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `after`. `None` only past the end of chrono's
    /// calendar; every schedule that parses fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.hours == ALL_HOURS {
            // Interval-like: every instant whose wall time matches. First passes through
            // the clock and second passes through a repeated hour are two increasing sequences.
            let first = self.first_pass_after(after, false);
            let second = self.second_pass_after(after);
            match (first, second) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        } else {
            self.first_pass_after(after, true)
        }
    }

    /// The next `n` fire times after `after`, in order (for `lifeboat schedule --next 5`).
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::with_capacity(n.min(1024));
        let mut cursor = after;
        while fires.len() < n {
            let Some(fire) = self.next_after(cursor) else {
                break;
            };
            fires.push(fire);
            cursor = fire;
        }
        fires
    }

    /// The real time between the next two fire times after `now`: what the operator should
    /// expect between backups (the "expected interval" metric and the stale-backup alert).
    /// Zero only past the end of chrono's calendar.
    pub fn expected_interval(&self, now: DateTime<Utc>) -> Duration {
        let Some(first) = self.next_after(now) else {
            return Duration::ZERO;
        };
        let Some(second) = self.next_after(first) else {
            return Duration::ZERO;
        };
        (second - first).to_std().unwrap_or(Duration::ZERO)
    }

    /// Whether some month the schedule allows has a day it allows (a weekday always exists).
    fn can_fire(&self) -> bool {
        if self.day_or {
            return true;
        }
        // Every month/day pair that exists meets every weekday within a 400-year cycle.
        (1..=12)
            .filter(|&month| has(self.months, month))
            .any(|month| next_bit(self.days, 1).is_some_and(|day| day <= max_days(month)))
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let day = has(self.days, date.day());
        let weekday = has(self.weekdays, date.weekday().num_days_from_sunday());
        if self.day_or {
            day || weekday
        } else {
            day && weekday
        }
    }

    /// The first wall-clock time at or after `from` that the fields match, skipping whole
    /// months, days, hours and minutes at a time.
    fn next_local_match(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut date = from.date();
        let mut time = (from.hour(), from.minute(), from.second());
        let last_year = from.year().checked_add(SEARCH_YEARS)?;
        while date.year() <= last_year {
            if !has(self.months, date.month()) {
                let (year, month) = match date.month() {
                    12 => (date.year() + 1, 1),
                    month => (date.year(), month + 1),
                };
                date = NaiveDate::from_ymd_opt(year, month, 1)?;
                time = (0, 0, 0);
                continue;
            }
            if self.day_matches(date)
                && let Some(found) = self.next_time(time)
            {
                return Some(date.and_time(found));
            }
            date = date.succ_opt()?;
            time = (0, 0, 0);
        }
        None
    }

    /// The first time of day at or after `(hour, minute, second)` that the fields match.
    fn next_time(&self, (hour, minute, second): (u32, u32, u32)) -> Option<NaiveTime> {
        let first_minute = next_bit(self.minutes, 0)?;
        let first_second = next_bit(self.seconds, 0)?;
        let h = next_bit(self.hours, hour)?;
        if h > hour {
            return NaiveTime::from_hms_opt(h, first_minute, first_second);
        }
        if let Some(m) = next_bit(self.minutes, minute) {
            if m > minute {
                return NaiveTime::from_hms_opt(hour, m, first_second);
            }
            if let Some(s) = next_bit(self.seconds, second) {
                return NaiveTime::from_hms_opt(hour, minute, s);
            }
            if let Some(m) = next_bit(self.minutes, minute + 1) {
                return NaiveTime::from_hms_opt(hour, m, first_second);
            }
        }
        let h = next_bit(self.hours, hour + 1)?;
        NaiveTime::from_hms_opt(h, first_minute, first_second)
    }

    /// The earliest fire after `after` counting each matching wall time once: at its only or
    /// first occurrence, or (when `gap_fires`) at the end of the gap it falls in; without
    /// `gap_fires` times in a gap are skipped. This map from wall time to instant never goes
    /// backwards, so the first match at or after [`Self::start_wall`] is the answer.
    fn first_pass_after(&self, after: DateTime<Utc>, gap_fires: bool) -> Option<DateTime<Utc>> {
        let mut wall = self.start_wall(after, gap_fires)?;
        loop {
            wall = self.next_local_match(wall)?;
            let fire = match self.tz.from_local_datetime(&wall) {
                LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at,
                LocalResult::None => {
                    let end = GapInfo::new(&wall, &self.tz)?.end?;
                    if !gap_fires {
                        wall = end.naive_local();
                        continue;
                    }
                    end
                }
            }
            .with_timezone(&Utc);
            debug_assert!(fire > after, "{self}: {fire} is not after {after}");
            if fire > after {
                return Some(fire);
            }
            wall = wall.checked_add_signed(TimeDelta::seconds(1))?;
        }
    }

    /// The smallest wall time whose first-pass instant is after `after`.
    fn start_wall(&self, after: DateTime<Utc>, gap_fires: bool) -> Option<NaiveDateTime> {
        let next = DateTime::from_timestamp(after.timestamp(), 0)?
            .checked_add_signed(TimeDelta::seconds(1))?;
        let wall = next.with_timezone(&self.tz).naive_local();
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Ambiguous(first, second) if second.with_timezone(&Utc) == next => {
                // `next` is in the second pass through a repeated hour: the first passes of the
                // whole overlap are behind us, so start where the overlap ends.
                let first = first.with_timezone(&Utc);
                let change = self.change_between(first, next);
                let before = self.offset_at(first);
                change
                    .naive_utc()
                    .checked_add_signed(TimeDelta::seconds(i64::from(before)))
            }
            _ => {
                let previous = wall.checked_sub_signed(TimeDelta::seconds(1))?;
                if gap_fires && self.tz.from_local_datetime(&previous) == LocalResult::None {
                    // `next` is the first instant after a gap: the gap's times fire there too.
                    if let Some((begin, _)) = GapInfo::new(&previous, &self.tz)?.begin {
                        return Some(begin);
                    }
                }
                Some(wall)
            }
        }
    }

    /// For interval-like schedules: the earliest second occurrence of a repeated wall time
    /// that is after `after` (there is one only when a fall-back is near).
    fn second_pass_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = DateTime::from_timestamp(after.timestamp(), 0)?
            .checked_add_signed(TimeDelta::seconds(1))?;
        let low = next.checked_sub_signed(OVERLAP_REACH)?;
        let high = next.checked_add_signed(OVERLAP_REACH)?;
        let (before, later) = (self.offset_at(low), self.offset_at(high));
        if later >= before {
            return None;
        }
        let change = self.change_between(low, high).naive_utc();
        let overlap_start = change.checked_add_signed(TimeDelta::seconds(i64::from(later)))?;
        let overlap_end = change.checked_add_signed(TimeDelta::seconds(i64::from(before)))?;
        let next_wall = next
            .naive_utc()
            .checked_add_signed(TimeDelta::seconds(i64::from(later)))?;
        let wall = self.next_local_match(overlap_start.max(next_wall))?;
        if wall >= overlap_end {
            return None;
        }
        let at = wall.checked_sub_signed(TimeDelta::seconds(i64::from(later)))?;
        Some(at.and_utc())
    }

    /// The UTC offset in seconds at an instant.
    fn offset_at(&self, at: DateTime<Utc>) -> i32 {
        self.tz
            .offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc()
    }

    /// The first instant in `(low, high]` with another offset than `low`, found by bisection;
    /// the caller knows the offsets at `low` and `high` differ and only one change lies between.
    fn change_between(&self, low: DateTime<Utc>, high: DateTime<Utc>) -> DateTime<Utc> {
        let before = self.offset_at(low);
        let (mut low, mut high) = (low.timestamp(), high.timestamp());
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            let at = DateTime::from_timestamp(middle, 0).expect("between two valid instants");
            if self.offset_at(at) == before {
                low = middle;
            } else {
                high = middle;
            }
        }
        DateTime::from_timestamp(high, 0).expect("a valid instant")
    }
}

impl fmt::Display for Schedule {
    /// The expression as written and the zone, e.g. `0 2 * * * (Europe/Berlin)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expr, self.tz.name())
    }
}

/// What to do when a fire time arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireDecision {
    /// No backup is running: start one.
    Start,
    /// The previous backup is still running: skip this fire (and count it) rather than run two
    /// snapshots against the same etcd at once or queue runs behind a slow one.
    SkipOverlap,
}

/// Decides a fire time: start a backup unless one is still `running`.
pub fn on_fire(running: bool) -> FireDecision {
    if running {
        FireDecision::SkipOverlap
    } else {
        FireDecision::Start
    }
}

/// Whether the service should take a backup now instead of waiting for the next fire time:
/// true when there is no complete backup, or when a fire time passed after the newest complete
/// one (`newest_complete` is its snapshot time), i.e. a scheduled run was missed while the
/// service was down or its run failed. Unlike comparing the backup's age with the expected
/// interval, this stays quiet over the weekend of a weekdays-only schedule.
pub fn catch_up_due(
    schedule: &Schedule,
    newest_complete: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    match newest_complete {
        None => true,
        Some(newest) => schedule.next_after(newest).is_some_and(|fire| fire <= now),
    }
}

/// The fields a macro stands for.
fn expand_macro(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        _ => return None,
    })
}

/// Parses one field into a bit mask of the values it allows (day of week 7 folded into 0).
fn parse_field(expr: &str, field: Field, text: &str) -> Result<u64, Error> {
    let mut mask = 0;
    for item in text.split(',') {
        mask |= parse_item(expr, field, item)?;
    }
    if field == Field::DayOfWeek && has(mask, 7) {
        mask = (mask & !(1 << 7)) | 1;
    }
    Ok(mask)
}

/// Parses one list item: `*`, `a`, `a-b`, each optionally followed by `/step`.
fn parse_item(expr: &str, field: Field, item: &str) -> Result<u64, Error> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => {
            let step = step
                .parse::<u32>()
                .ok()
                .filter(|&step| step >= 1)
                .ok_or_else(|| Error::BadStep {
                    expr: expr.to_owned(),
                    field,
                    token: item.to_owned(),
                })?;
            (range, Some(step))
        }
        None => (item, None),
    };
    let (low, high) = if range == "*" {
        (field.min(), field.open_max())
    } else if let Some((low, high)) = range.split_once('-') {
        let low = parse_value(expr, field, item, low)?;
        let mut high = parse_value(expr, field, item, high)?;
        if field == Field::DayOfWeek && high == 0 && low > 0 {
            high = 7;
        }
        if low > high {
            return Err(Error::ReversedRange {
                expr: expr.to_owned(),
                field,
                token: item.to_owned(),
            });
        }
        (low, high)
    } else {
        let value = parse_value(expr, field, item, range)?;
        match step {
            Some(_) => (value, field.open_max().max(value)),
            None => (value, value),
        }
    };
    let step = step.unwrap_or(1) as usize;
    Ok((low..=high)
        .step_by(step)
        .fold(0, |mask, v| mask | (1 << v)))
}

/// Parses a number or a name within a field; `item` is the list item, for messages.
fn parse_value(expr: &str, field: Field, item: &str, text: &str) -> Result<u32, Error> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let value: u64 = text.parse().unwrap_or(u64::MAX);
        if value < u64::from(field.min()) || value > u64::from(field.max()) {
            return Err(Error::OutOfRange {
                expr: expr.to_owned(),
                field,
                value,
                allowed: field.allowed(),
            });
        }
        return Ok(value as u32);
    }
    if let Some(index) = field
        .names()
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        return Ok(field.min() + index as u32);
    }
    let extended = matches!(field, Field::DayOfMonth | Field::DayOfWeek)
        && (text == "?"
            || text.contains('#')
            || text.eq_ignore_ascii_case("L")
            || text.eq_ignore_ascii_case("LW")
            || text.len() > 1
                && (text.ends_with(['L', 'l', 'W', 'w']))
                && text[..text.len() - 1].bytes().all(|b| b.is_ascii_digit()));
    if extended {
        return Err(Error::Unsupported {
            expr: expr.to_owned(),
            field,
            token: item.to_owned(),
        });
    }
    Err(Error::InvalidToken {
        expr: expr.to_owned(),
        field,
        token: item.to_owned(),
        allowed: field.allowed(),
    })
}

/// Whether bit `value` is set.
fn has(mask: u64, value: u32) -> bool {
    value < 64 && mask & (1 << value) != 0
}

/// The smallest set bit at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let above = mask & (u64::MAX << from);
    (above != 0).then(|| above.trailing_zeros())
}

/// The most days a month can have (February in a leap year).
fn max_days(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().expect("an RFC 3339 instant")
    }

    fn schedule(expr: &str, zone: &str) -> Schedule {
        Schedule::parse(expr, zone).unwrap_or_else(|e| panic!("{expr} in {zone}: {e}"))
    }

    /// The next `n` fires after `after`, as RFC 3339 UTC strings for readable assertions.
    fn fires(expr: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
        schedule(expr, zone)
            .upcoming(utc(after), n)
            .iter()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    fn error(expr: &str) -> String {
        Schedule::parse(expr, "UTC")
            .expect_err("the expression is invalid")
            .to_string()
    }

    #[test]
    fn five_fields_fire_at_second_zero() {
        assert_eq!(
            fires("30 2 * * *", "UTC", "2026-05-01T00:00:00Z", 2),
            ["2026-05-01T02:30:00Z", "2026-05-02T02:30:00Z"]
        );
    }

    #[test]
    fn six_fields_take_seconds_first() {
        assert_eq!(
            fires("*/10 * * * * *", "UTC", "2026-05-01T12:00:05Z", 4),
            [
                "2026-05-01T12:00:10Z",
                "2026-05-01T12:00:20Z",
                "2026-05-01T12:00:30Z",
                "2026-05-01T12:00:40Z"
            ]
        );
        assert_eq!(
            fires("30 0 12 * * *", "UTC", "2026-05-01T12:00:30Z", 1),
            ["2026-05-02T12:00:30Z"]
        );
    }

    #[test]
    fn macros_equal_their_expansions() {
        for (name, fields) in [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
            ("@DAILY", "0 0 * * *"),
        ] {
            let from_macro = schedule(name, "UTC");
            let from_fields = schedule(fields, "UTC");
            assert_eq!(from_macro.expression(), name);
            let after = utc("2026-05-06T07:08:09Z");
            assert_eq!(
                from_macro.upcoming(after, 3),
                from_fields.upcoming(after, 3),
                "{name}"
            );
        }
        assert_eq!(
            fires("@weekly", "UTC", "2026-05-01T00:00:00Z", 1),
            ["2026-05-03T00:00:00Z"]
        );
    }

    #[test]
    fn names_are_case_insensitive_and_equal_numbers() {
        let named = schedule("0 0 * jan-Mar,DEC mon-fri", "UTC");
        let numbered = schedule("0 0 * 1-3,12 1-5", "UTC");
        assert_eq!(
            (named.months, named.weekdays),
            (numbered.months, numbered.weekdays)
        );
    }

    #[test]
    fn day_of_week_seven_is_sunday() {
        assert_eq!(schedule("0 0 * * 7", "UTC").weekdays, 1);
        assert_eq!(schedule("0 0 * * 0", "UTC").weekdays, 1);
        assert_eq!(schedule("0 0 * * 5-7", "UTC").weekdays, 0b110_0001);
        assert_eq!(schedule("0 0 * * FRI-SUN", "UTC").weekdays, 0b110_0001);
        assert_eq!(schedule("0 0 * * 5-0", "UTC").weekdays, 0b110_0001);
    }

    #[test]
    fn steps_ranges_and_lists() {
        let s = schedule("5/20 1-10/3 1,15 * *", "UTC");
        assert_eq!(s.minutes, (1 << 5) | (1 << 25) | (1 << 45));
        assert_eq!(s.hours, (1 << 1) | (1 << 4) | (1 << 7) | (1 << 10));
        assert_eq!(s.days, (1 << 1) | (1 << 15));
        assert_eq!(schedule("0 */6 * * *", "UTC").hours, 0x041041);
        // A step longer than the field keeps only its start.
        assert_eq!(schedule("*/90 * * * *", "UTC").minutes, 1);
        // An open step on day of week ends on Saturday, not again on Sunday as 7.
        assert_eq!(schedule("0 0 * * 1/2", "UTC").weekdays, 0b10_1010);
    }

    #[test]
    fn field_count_error_says_how_many_fields_to_write() {
        assert_eq!(
            error("0 */6 * *"),
            "cron expression \"0 */6 * *\" has 4 fields: write 5 fields (minute hour \
             day-of-month month day-of-week), 6 with seconds first, or a macro like @daily"
        );
        assert!(error("").contains("has 0 fields"));
        assert!(error("0 0 0 * * * *").contains("has 7 fields"));
    }

    #[test]
    fn out_of_range_errors_name_the_field_and_range() {
        for (expr, wanted) in [
            (
                "61 * * * *",
                "61 is out of range for the minute field: use 0-59",
            ),
            (
                "0 24 * * *",
                "24 is out of range for the hour field: use 0-23",
            ),
            (
                "0 0 0 * *",
                "0 is out of range for the day-of-month field: use 1-31",
            ),
            (
                "0 0 32 * *",
                "32 is out of range for the day-of-month field: use 1-31",
            ),
            (
                "0 0 * 13 *",
                "13 is out of range for the month field: use 1-12 or JAN-DEC",
            ),
            (
                "0 0 * * 8",
                "8 is out of range for the day-of-week field: use 0-7 or SUN-SAT",
            ),
            (
                "60 0 0 * * *",
                "60 is out of range for the second field: use 0-59",
            ),
            ("0 1-99 * * *", "99 is out of range for the hour field"),
        ] {
            let message = error(expr);
            assert!(message.contains(wanted), "{expr}: {message}");
            assert!(message.starts_with(&format!("cron expression \"{expr}\"")));
        }
    }

    #[test]
    fn syntax_errors_say_what_to_write() {
        assert!(error("0 0 * * FRX").contains("\"FRX\" in the day-of-week field is not a value"));
        assert!(error("1,,2 * * * *").contains("\"\" in the minute field is not a value"));
        assert!(error("*/0 * * * *").contains("the step in \"*/0\""));
        assert!(error("*/x * * * *").contains("at least 1"));
        assert!(error("0 5-1 * * *").contains("runs backwards"));
        assert!(error("0 0 * * SAT-MON").contains("runs backwards"));
        for expr in [
            "0 0 L * *",
            "0 0 ? * MON",
            "0 0 * * 5#3",
            "0 0 15W * *",
            "0 0 * * 5L",
        ] {
            assert!(error(expr).contains("extended cron syntax"), "{expr}");
        }
        assert!(error("@reboot").contains("unknown macro"));
        assert!(error("@daily 5").contains("unknown macro"));
    }

    #[test]
    fn impossible_dates_are_refused_up_front() {
        for expr in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 FEB *"] {
            let message = error(expr);
            assert!(message.contains("never fires"), "{expr}: {message}");
        }
        // With a weekday as well, Vixie cron's OR makes the schedule fire on those weekdays.
        schedule("0 0 30 2 MON", "UTC");
        // 29 February exists in leap years; 2100 is not one.
        assert_eq!(
            fires("0 0 29 2 *", "UTC", "2097-03-01T00:00:00Z", 1),
            ["2104-02-29T00:00:00Z"]
        );
    }

    #[test]
    fn unknown_time_zone_is_refused() {
        let message = Schedule::parse("0 2 * * *", "Europe/Berln")
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("unknown time zone \"Europe/Berln\": use an IANA name"));
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        let s = schedule("0 0 13 * FRI", "UTC");
        let got = s.upcoming(utc("2025-12-31T00:00:00Z"), 60);
        let mut wanted = Vec::new();
        let mut day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        while wanted.len() < 60 {
            if day.day() == 13 || day.weekday() == chrono::Weekday::Fri {
                wanted.push(day.and_hms_opt(0, 0, 0).unwrap().and_utc());
            }
            day = day.succ_opt().unwrap();
        }
        assert_eq!(got, wanted);
        assert!(
            got.contains(&utc("2026-04-13T00:00:00Z")),
            "a Monday the 13th"
        );
        assert!(
            got.contains(&utc("2026-01-02T00:00:00Z")),
            "a Friday the 2nd"
        );
    }

    /// Vixie cron treats a day field starting with `*` as unrestricted for the OR rule, so
    /// `*/2` and a weekday must both match.
    #[test]
    fn star_step_day_of_month_ands_with_day_of_week() {
        for fire in schedule("0 0 */2 * MON", "UTC").upcoming(utc("2026-01-01T00:00:00Z"), 20) {
            assert_eq!(fire.weekday(), chrono::Weekday::Mon);
            assert_eq!(fire.day() % 2, 1, "{fire}");
        }
        let weekdays_only = schedule("0 9 * * MON-FRI", "UTC");
        let fires = weekdays_only.upcoming(utc("2026-05-01T10:00:00Z"), 2);
        assert_eq!(
            fires,
            [utc("2026-05-04T09:00:00Z"), utc("2026-05-05T09:00:00Z")]
        );
    }

    #[test]
    fn next_after_is_strict_and_honours_fractions_of_a_second() {
        let s = schedule("* * * * * *", "UTC");
        assert_eq!(
            s.next_after(utc("2026-05-01T12:00:00Z")),
            Some(utc("2026-05-01T12:00:01Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-05-01T12:00:00.5Z")),
            Some(utc("2026-05-01T12:00:01Z"))
        );
        let daily = schedule("0 2 * * *", "UTC");
        assert_eq!(
            daily.next_after(utc("2026-05-01T02:00:00Z")),
            Some(utc("2026-05-02T02:00:00Z"))
        );
    }

    #[test]
    fn berlin_spring_forward_runs_a_skipped_time_once_after_the_gap() {
        // 2026-03-29: 02:00 CET (01:00Z) jumps to 03:00 CEST.
        let berlin = "Europe/Berlin";
        assert_eq!(
            fires("0 2 * * *", berlin, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T01:00:00Z", // 02:00 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST, first instant after the gap
                "2026-03-30T00:00:00Z", // 02:00 CEST
            ]
        );
        assert_eq!(
            fires("30 2 * * *", berlin, "2026-03-29T00:00:00Z", 1),
            ["2026-03-29T01:00:00Z"]
        );
        // Several skipped times collapse into one run.
        assert_eq!(
            fires("* 2 * * *", berlin, "2026-03-28T23:00:00Z", 3),
            [
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:00:00Z",
                "2026-03-30T00:01:00Z"
            ]
        );
        let s = schedule("0 2 * * *", berlin);
        assert_eq!(
            s.next_after(utc("2026-03-29T00:59:59Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-03-29T01:00:00Z")),
            Some(utc("2026-03-30T00:00:00Z"))
        );
    }

    #[test]
    fn berlin_daily_three_oclock_stays_at_three_local() {
        let berlin = "Europe/Berlin";
        assert_eq!(
            fires("0 3 * * *", berlin, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T02:00:00Z", // 03:00 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST
                "2026-03-30T01:00:00Z", // 03:00 CEST
            ]
        );
        assert_eq!(
            fires("0 3 * * *", berlin, "2026-10-23T12:00:00Z", 3),
            [
                "2026-10-24T01:00:00Z", // 03:00 CEST
                "2026-10-25T02:00:00Z", // 03:00 CET
                "2026-10-26T02:00:00Z", // 03:00 CET
            ]
        );
    }

    #[test]
    fn berlin_fall_back_runs_a_repeated_time_once_at_its_first_occurrence() {
        // 2026-10-25: 03:00 CEST (01:00Z) falls back to 02:00 CET.
        let berlin = "Europe/Berlin";
        assert_eq!(
            fires("0 2 * * *", berlin, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:00:00Z", "2026-10-26T01:00:00Z"]
        );
        assert_eq!(
            fires("30 2 * * *", berlin, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
        assert_eq!(
            fires("* 2 * * *", berlin, "2026-10-25T00:58:00Z", 2),
            ["2026-10-25T00:59:00Z", "2026-10-26T01:00:00Z"]
        );
        // Asked during the second pass through 02:xx, it waits for the next day.
        assert_eq!(
            fires("* 2 * * *", berlin, "2026-10-25T01:30:00Z", 1),
            ["2026-10-26T01:00:00Z"]
        );
    }

    #[test]
    fn every_hour_schedules_follow_real_time_across_both_changes() {
        let berlin = "Europe/Berlin";
        let quarter_hours = fires("*/15 * * * *", berlin, "2026-10-24T23:30:00Z", 10);
        assert_eq!(
            quarter_hours,
            [
                "2026-10-24T23:45:00Z", // 01:45 CEST
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T00:15:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T00:45:00Z",
                "2026-10-25T01:00:00Z", // 02:00 CET, the repeated hour
                "2026-10-25T01:15:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T01:45:00Z",
                "2026-10-25T02:00:00Z", // 03:00 CET
            ]
        );
        // Asked during the first pass, the second pass still comes.
        assert_eq!(
            fires("0 * * * *", berlin, "2026-10-25T00:50:00Z", 2),
            ["2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"]
        );
        assert_eq!(
            fires("*/15 * * * *", berlin, "2026-03-29T00:30:00Z", 3),
            [
                "2026-03-29T00:45:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:15:00Z"
            ]
        );
        // No extra 03:00 run for an hourly job whose 02:30 does not exist.
        assert_eq!(
            fires("30 * * * *", berlin, "2026-03-29T00:00:00Z", 2),
            ["2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z"]
        );
        assert_eq!(
            fires("30 * * * *", berlin, "2026-10-24T23:00:00Z", 4),
            [
                "2026-10-24T23:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T02:30:00Z"
            ]
        );
        let seconds = schedule("*/10 * * * * *", berlin);
        let fires = seconds.upcoming(utc("2026-10-25T00:59:30Z"), 6);
        for pair in fires.windows(2) {
            assert_eq!(pair[1] - pair[0], TimeDelta::seconds(10));
        }
    }

    #[test]
    fn new_york_changes() {
        let new_york = "America/New_York";
        // 2026-03-08: 02:00 EST (07:00Z) jumps to 03:00 EDT.
        assert_eq!(
            fires("30 2 * * *", new_york, "2026-03-07T00:00:00Z", 3),
            [
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z"
            ]
        );
        // 2026-11-01: 02:00 EDT (06:00Z) falls back to 01:00 EST.
        assert_eq!(
            fires("30 1 * * *", new_york, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        assert_eq!(
            fires("0 * * * *", new_york, "2026-11-01T04:30:00Z", 3),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T07:00:00Z"
            ]
        );
        assert_eq!(
            fires("0 3 * * *", new_york, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T08:00:00Z", "2026-11-02T08:00:00Z"]
        );
    }

    #[test]
    fn lord_howe_half_hour_changes() {
        let lord_howe = "Australia/Lord_Howe";
        // 2026-10-04: 02:00 (+10:30) jumps to 02:30 (+11).
        assert_eq!(
            fires("15 2 * * *", lord_howe, "2026-10-03T00:00:00Z", 1),
            ["2026-10-03T15:30:00Z"]
        );
        // 2026-04-05: 02:00 (+11) falls back to 01:30 (+10:30).
        assert_eq!(
            fires("45 1 * * *", lord_howe, "2026-04-04T00:00:00Z", 2),
            ["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"]
        );
    }

    #[test]
    fn expected_interval_is_the_gap_between_the_next_two_fires() {
        let hour = 3600;
        let daily = schedule("0 12 * * *", "Europe/Berlin");
        assert_eq!(
            daily.expected_interval(utc("2026-05-01T13:00:00Z")),
            Duration::from_secs(24 * hour)
        );
        assert_eq!(
            daily.expected_interval(utc("2026-03-28T10:00:00Z")),
            Duration::from_secs(23 * hour),
            "the day the clocks go forward is 23 hours long"
        );
        assert_eq!(
            schedule("*/15 * * * *", "UTC").expected_interval(utc("2026-05-01T13:05:00Z")),
            Duration::from_secs(15 * 60)
        );
    }

    #[test]
    fn catch_up_when_a_fire_time_passed_since_the_newest_backup() {
        let s = schedule("0 2 * * *", "UTC");
        let now = utc("2026-05-02T10:00:00Z");
        assert!(catch_up_due(&s, None, now));
        assert!(!catch_up_due(&s, Some(utc("2026-05-02T02:00:05Z")), now));
        assert!(catch_up_due(&s, Some(utc("2026-05-01T02:00:05Z")), now));
        assert!(catch_up_due(
            &s,
            Some(utc("2026-05-01T02:00:05Z")),
            utc("2026-05-02T02:00:00Z")
        ));
        assert!(!catch_up_due(
            &s,
            Some(utc("2026-05-01T02:00:05Z")),
            utc("2026-05-02T01:59:59Z")
        ));
    }

    /// Comparing a backup's age with the expected interval would ask for a catch-up every
    /// weekend for a weekdays-only schedule.
    #[test]
    fn no_catch_up_over_the_weekend_for_a_weekday_schedule() {
        let s = schedule("0 9 * * MON-FRI", "UTC");
        let friday = utc("2026-05-01T09:00:10Z");
        assert!(!catch_up_due(&s, Some(friday), utc("2026-05-03T20:00:00Z")));
        assert!(catch_up_due(&s, Some(friday), utc("2026-05-04T09:30:00Z")));
    }

    #[test]
    fn a_fire_during_a_running_backup_is_skipped() {
        assert_eq!(on_fire(false), FireDecision::Start);
        assert_eq!(on_fire(true), FireDecision::SkipOverlap);
    }

    #[test]
    fn display_shows_expression_and_zone() {
        assert_eq!(
            schedule(" 0 2 * * * ", "Europe/Berlin").to_string(),
            "0 2 * * * (Europe/Berlin)"
        );
        assert_eq!(schedule("@daily", "UTC").to_string(), "@daily (UTC)");
    }

    #[test]
    fn upcoming_lists_fires_in_order() {
        assert_eq!(
            fires("0 0 1 * *", "UTC", "2026-11-15T00:00:00Z", 3),
            [
                "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
                "2027-02-01T00:00:00Z"
            ]
        );
        assert!(
            schedule("@daily", "UTC")
                .upcoming(utc("2026-01-01T00:00:00Z"), 0)
                .is_empty()
        );
    }

    /// Property tests against oracles that match the fields directly, without the skipping
    /// search or the parser's bit masks.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// One list item of a generated field, rendered to text and matched by the oracle.
        #[derive(Debug, Clone)]
        enum Item {
            Star,
            StarStep(u32),
            Value(u32),
            Range(u32, u32),
            RangeStep(u32, u32, u32),
            ValueStep(u32, u32),
        }

        impl Item {
            fn render(&self, field: Field, names: bool) -> String {
                let value = |v: u32| -> String {
                    let list = field.names();
                    if names && !list.is_empty() && v != 7 {
                        let name = list[(v - field.min()) as usize];
                        if v.is_multiple_of(2) {
                            name.to_ascii_lowercase()
                        } else {
                            name.to_owned()
                        }
                    } else {
                        v.to_string()
                    }
                };
                match *self {
                    Item::Star => "*".to_owned(),
                    Item::StarStep(n) => format!("*/{n}"),
                    Item::Value(a) => value(a),
                    Item::Range(a, b) => format!("{}-{}", value(a), value(b)),
                    Item::RangeStep(a, b, n) => format!("{}-{}/{n}", value(a), value(b)),
                    Item::ValueStep(a, n) => format!("{}/{n}", value(a)),
                }
            }

            /// Whether the item allows `x`, read straight from its definition.
            fn covers(&self, field: Field, x: u32) -> bool {
                let (min, end) = (field.min(), field.open_max());
                match *self {
                    Item::Star => (min..=end).contains(&x),
                    Item::StarStep(n) => (min..=end).contains(&x) && (x - min).is_multiple_of(n),
                    Item::Value(a) => x == a,
                    Item::Range(a, b) => (a..=b).contains(&x),
                    Item::RangeStep(a, b, n) => (a..=b).contains(&x) && (x - a).is_multiple_of(n),
                    Item::ValueStep(a, n) => {
                        (a..=end.max(a)).contains(&x) && (x - a).is_multiple_of(n)
                    }
                }
            }
        }

        /// A generated expression: seconds (if six fields), minute, hour, day of month,
        /// month, day of week.
        #[derive(Debug, Clone)]
        struct Spec {
            six: bool,
            names: bool,
            fields: [Vec<Item>; 6],
        }

        const FIELDS: [Field; 6] = [
            Field::Second,
            Field::Minute,
            Field::Hour,
            Field::DayOfMonth,
            Field::Month,
            Field::DayOfWeek,
        ];

        impl Spec {
            fn render(&self) -> String {
                let first = if self.six { 0 } else { 1 };
                (first..6)
                    .map(|i| {
                        self.fields[i]
                            .iter()
                            .map(|item| item.render(FIELDS[i], self.names))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            }

            fn allows(&self, i: usize, x: u32) -> bool {
                if i == 0 && !self.six {
                    return x == 0;
                }
                let field = FIELDS[i];
                let items = &self.fields[i];
                items.iter().any(|item| item.covers(field, x))
                    || (field == Field::DayOfWeek
                        && x == 0
                        && items.iter().any(|item| item.covers(field, 7)))
            }

            fn starred(&self, i: usize) -> bool {
                matches!(self.fields[i][0], Item::Star | Item::StarStep(_))
            }

            fn date_matches(&self, date: NaiveDate) -> bool {
                if !self.allows(4, date.month()) {
                    return false;
                }
                let day = self.allows(3, date.day());
                let weekday = self.allows(5, date.weekday().num_days_from_sunday());
                if self.starred(3) || self.starred(5) {
                    day && weekday
                } else {
                    day || weekday
                }
            }

            fn time_matches(&self, time: NaiveTime) -> bool {
                self.allows(2, time.hour())
                    && self.allows(1, time.minute())
                    && self.allows(0, time.second())
            }

            /// Whether some allowed month has an allowed day (ignoring weekdays).
            fn some_day_exists(&self) -> bool {
                (1..=12).any(|m| self.allows(4, m) && (1..=max_days(m)).any(|d| self.allows(3, d)))
            }
        }

        fn item(field: Field) -> BoxedStrategy<Item> {
            let (min, max) = (field.min(), field.max());
            let pair = (min..=max, min..=max).prop_map(|(a, b)| (a.min(b), a.max(b)));
            prop_oneof![
                4 => Just(Item::Star),
                1 => (1..=max + 1).prop_map(Item::StarStep),
                2 => (min..=max).prop_map(Item::Value),
                1 => pair.clone().prop_map(|(a, b)| Item::Range(a, b)),
                1 => (pair, 1..=max).prop_map(|((a, b), n)| Item::RangeStep(a, b, n)),
                1 => (min..=max, 1..=max).prop_map(|(a, n)| Item::ValueStep(a, n)),
            ]
            .boxed()
        }

        fn items(field: Field) -> impl Strategy<Value = Vec<Item>> {
            prop::collection::vec(item(field), 1..=3)
        }

        fn spec() -> impl Strategy<Value = Spec> {
            (
                any::<bool>(),
                any::<bool>(),
                (
                    items(Field::Second),
                    items(Field::Minute),
                    items(Field::Hour),
                    items(Field::DayOfMonth),
                    items(Field::Month),
                    items(Field::DayOfWeek),
                ),
            )
                .prop_map(|(six, names, (s, m, h, dom, mon, dow))| Spec {
                    six,
                    names,
                    fields: [s, m, h, dom, mon, dow],
                })
        }

        /// An instant between 2000 and 2036, sometimes with a fraction of a second.
        fn instant() -> impl Strategy<Value = DateTime<Utc>> {
            (
                946_684_800i64..2_082_758_400,
                prop_oneof![Just(0u32), 0u32..1_000_000_000],
            )
                .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).unwrap())
        }

        /// Scans every second (or minute, for five fields) of every matching UTC day.
        fn oracle_utc(spec: &Spec, after: DateTime<Utc>, days: u64) -> Option<DateTime<Utc>> {
            let seconds = if spec.six { 0..60 } else { 0..1 };
            let mut date = after.date_naive();
            for _ in 0..days {
                if spec.date_matches(date) {
                    for h in 0..24 {
                        for m in 0..60 {
                            for s in seconds.clone() {
                                let time = NaiveTime::from_hms_opt(h, m, s).unwrap();
                                let at = date.and_time(time).and_utc();
                                if at > after && spec.time_matches(time) {
                                    return Some(at);
                                }
                            }
                        }
                    }
                }
                date = date.succ_opt().unwrap();
            }
            None
        }

        const DAILY_ZONES: [&str; 5] = [
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
            "UTC",
        ];

        /// The daily zones plus zones whose clocks changed at midnight or by 45 minutes.
        const ZONES: [&str; 8] = [
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
            "UTC",
            "America/Sao_Paulo",
            "America/Havana",
            "Pacific/Chatham",
        ];

        /// An instant near a clock change of `zone` (within a day and a half) or, if it has
        /// none that year, anywhere in the year.
        fn near_change(zone: Tz, year: i32, pick: usize, shift_secs: i64) -> DateTime<Utc> {
            let start = NaiveDate::from_ymd_opt(year, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap();
            let start = start.and_utc();
            let offset = |t: DateTime<Utc>| {
                zone.offset_from_utc_datetime(&t.naive_utc())
                    .fix()
                    .local_minus_utc()
            };
            let mut changes = Vec::new();
            let mut t = start;
            while t.year() == year {
                let next = t + TimeDelta::hours(6);
                if offset(next) != offset(t) {
                    changes.push(next);
                }
                t = next;
            }
            let base = if changes.is_empty() {
                start + TimeDelta::days(pick as i64 % 365)
            } else {
                changes[pick % changes.len()]
            };
            base + TimeDelta::seconds(shift_secs)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// (a) In UTC, next_after agrees with scanning every matching day field by field.
            #[test]
            fn next_after_agrees_with_a_scan_in_utc(spec in spec(), after in instant()) {
                let expr = spec.render();
                match Schedule::parse(&expr, "UTC") {
                    Err(Error::NeverFires { .. }) => {
                        prop_assert!(!spec.some_day_exists(), "{expr} was refused but can fire");
                        prop_assert!(spec.starred(3) || spec.starred(5), "{expr} is OR-ed");
                    }
                    Err(e) => prop_assert!(false, "{expr} was refused: {e}"),
                    Ok(schedule) => {
                        let horizon = 9 * 366;
                        let wanted = oracle_utc(&spec, after, horizon);
                        let got = schedule.next_after(after);
                        match wanted {
                            Some(_) => prop_assert_eq!(got, wanted, "{}", expr),
                            None => prop_assert!(
                                got.is_some_and(|t| t > after + TimeDelta::days(horizon as i64 - 1)),
                                "{expr}: the scan found nothing for 9 years, next_after {got:?}"
                            ),
                        }
                    }
                }
            }

            /// (b) next_after is strictly later, monotonic, and nothing fires in between.
            #[test]
            fn next_after_is_strict_monotonic_and_minimal(
                spec in spec(),
                zone in prop::sample::select(&ZONES[..]),
                year in 2000i32..2036,
                pick in any::<usize>(),
                shift in -130_000i64..130_000,
                nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000],
                later in 0i64..864_000,
            ) {
                let expr = spec.render();
                let Ok(schedule) = Schedule::parse(&expr, zone) else {
                    return Ok(());
                };
                let tz = schedule.time_zone();
                let after = near_change(tz, year, pick, shift) + TimeDelta::nanoseconds(nanos.into());
                let fire = schedule.next_after(after).expect("a parsed schedule fires");
                prop_assert!(fire > after);
                let middle = after + (fire - after) / 2;
                prop_assert_eq!(schedule.next_after(middle), Some(fire), "{} from {}", expr, middle);
                let just_before = fire - TimeDelta::nanoseconds(1);
                prop_assert_eq!(schedule.next_after(just_before), Some(fire), "{}", expr);
                let from_later = schedule.next_after(after + TimeDelta::seconds(later)).unwrap();
                prop_assert!(from_later >= fire, "{expr}: {from_later} before {fire}");
                // Every fire is a matching wall time, or the end of a gap.
                let wall = fire.with_timezone(&tz).naive_local();
                let matches = spec.date_matches(wall.date()) && spec.time_matches(wall.time());
                let gap_end = matches!(
                    tz.from_local_datetime(&(wall - TimeDelta::seconds(1))),
                    LocalResult::None
                );
                prop_assert!(matches || (gap_end && schedule.hours != ALL_HOURS),
                    "{expr} in {zone} fired at {wall}");
            }

            /// (c) A daily `M H * * *` fires once every local day, at H:M when it exists, at
            /// its first occurrence when it is repeated, and right after the gap otherwise.
            #[test]
            fn daily_fires_once_per_local_day(
                zone in prop::sample::select(&DAILY_ZONES[..]),
                minute in 0u32..60,
                hour in 0u32..24,
                year in 2000i32..2036,
            ) {
                let schedule = Schedule::parse(&format!("{minute} {hour} * * *"), zone).unwrap();
                let tz = schedule.time_zone();
                let mut day = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
                let midnight = tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap());
                let mut cursor = midnight.earliest().unwrap().with_timezone(&Utc)
                    - TimeDelta::seconds(1);
                while day.year() == year {
                    let fire = schedule.next_after(cursor).unwrap();
                    prop_assert_eq!(fire.with_timezone(&tz).date_naive(), day);
                    let wall = day.and_hms_opt(hour, minute, 0).unwrap();
                    let wanted = match tz.from_local_datetime(&wall) {
                        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at,
                        LocalResult::None => GapInfo::new(&wall, &tz).unwrap().end.unwrap(),
                    };
                    prop_assert_eq!(fire, wanted.with_timezone(&Utc), "{} {}", zone, wall);
                    cursor = fire;
                    day = day.succ_opt().unwrap();
                }
            }

            /// Schedules over every hour fire at each instant whose wall clock matches,
            /// checked by scanning real minutes around clock changes.
            #[test]
            fn every_hour_schedules_match_a_scan_of_real_minutes(
                minutes in items(Field::Minute),
                hours in prop::sample::select(&["*", "*/1", "0-23"][..]),
                weekdays in items(Field::DayOfWeek),
                zone in prop::sample::select(&ZONES[..]),
                year in 2000i32..2036,
                pick in any::<usize>(),
                shift in -130_000i64..130_000,
            ) {
                let spec = Spec {
                    six: false,
                    names: false,
                    fields: [vec![Item::Value(0)], minutes, vec![Item::Star], vec![Item::Star],
                        vec![Item::Star], weekdays],
                };
                let rendered = spec.render();
                let mut fields: Vec<&str> = rendered.split(' ').collect();
                fields[1] = hours;
                let expr = fields.join(" ");
                let schedule = Schedule::parse(&expr, zone).unwrap();
                let tz = schedule.time_zone();
                let after = near_change(tz, year, pick, shift);
                let mut at = DateTime::from_timestamp(after.timestamp() / 60 * 60, 0).unwrap();
                let wanted = loop {
                    at += TimeDelta::minutes(1);
                    let wall = at.with_timezone(&tz).naive_local();
                    if at > after && spec.date_matches(wall.date()) && spec.time_matches(wall.time()) {
                        break at;
                    }
                };
                prop_assert_eq!(schedule.next_after(after), Some(wanted), "{} in {}", expr, zone);
            }
        }
    }
}
