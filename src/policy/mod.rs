//! Pure policy, free of I/O and tested without servers: [`schedule`] decides what runs when
//! (standard cron in a time zone, overlap, catch-up), [`retention`] which backups are kept.

pub mod retention;
pub mod schedule;
