//! Putting a backup's objects back into a live cluster, and showing what changed: which
//! objects a run works on ([`select`]), what a restore does with each of them and in which
//! order ([`rules`]), and the comparison of two sets of objects ([`diff`]). All three are pure;
//! the sinks that talk to the API server build on them.

pub mod diff;
pub mod live;
pub mod rules;
pub mod select;
