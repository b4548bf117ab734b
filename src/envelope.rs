//! The wire contract with every downstream team, re-exported from the `events`
//! crate (`crates/events`): the CloudEvents envelope of each kind of record
//! (`v1`, the presence event; `rejected`, captured rejected input), the
//! [`OutboundRecord`] the publisher sends, and the types a Rust consumer
//! decodes records into.
//!
//! This module keeps the paths `presence_bridge::envelope::...` and
//! `crate::envelope::...` working; new code may use `events::...` directly.

pub use events::*;
