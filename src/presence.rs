//! The presence domain, re-exported from the `zapi` crate (`crates/zapi`), the
//! one place that knows Z-API's wire format: a raw `PresenceChatCallback` in, a
//! validated [`PresenceEvent`] out, with its errors, [`Phone`], status,
//! [`InstanceId`] and time formatting.
//!
//! This module keeps the paths `presence_bridge::presence::...` and
//! `crate::presence::...` working; new code may use `zapi::...` directly.

pub use zapi::*;
