//! presence-bridge: Z-API WhatsApp chat-presence webhooks in, versioned
//! CloudEvents in Kafka out, keyed by phone so each phone's events stay in order.
//!
//! # Layout
//! Data flows one way: bytes → [`presence::RawCallback`] → validated
//! [`presence::PresenceEvent`] → [`envelope::OutboundRecord`] → [`sink::Sink`]
//! (the durable [`spool`]) → the [`publisher`]'s forwarder → Kafka.
//!
//! - [`cli`]: the command line (`serve`, `check-config`, `tail`), exit codes.
//! - [`config`]: layered configuration into typed, validated [`config::Settings`].
//! - [`bounds`]: shared limits (token length, body budgets); a leaf that
//!   `config` and `ingress` both import.
//! - [`app`]: wires the parts, owns shutdown and its deadline.
//! - [`transport`]: [`server`] (the accept loop shared by both listeners:
//!   connection slots, who gives way under attack, graceful drain), [`tls`]
//!   (native HTTPS, certificate reload) and [`admin`] (the admin handler).
//! - [`ingress`]: the webhook routes, tokens, client allowlist and rate limits,
//!   the handler, and the one place statuses are decided.
//! - [`presence`]: pure validation and normalization of the provider's callback,
//!   re-exported from the workspace crate `zapi` (`crates/zapi`).
//! - [`envelope`]: the wire contract, one frozen file per major version.
//! - [`sink`]: the seam between ingress and whatever keeps accepted events.
//! - [`state`]: presence as state: the latest-presence record queued with
//!   each presence event, the typing timers and their expiries, recovery of
//!   the timers from the spool, and the tombstone of `presence forget`.
//! - [`spool`]: the durable retry buffer (segmented log, group commit, recovery,
//!   what is settled per topic).
//! - [`publisher`]: the idempotent Kafka producer behind the `Produce` seam,
//!   the error policy, the forwarder (one lane per destination topic), dead
//!   letters.
//! - [`health`], [`metrics`]: what `/livez`, `/readyz` and `/metrics` report;
//!   [`memtrim`] hands memory back after a burst of bodies.
//! - [`dev`]: the embedded development broker of `serve --dev`.
//! - [`tail`]: the operator's topic reader.
//! - [`logging`]: text or JSON logs; phones masked, tokens never logged.
//! - [`zapi_api`]: the provider's instance API for `zapi register` and
//!   `zapi check` (webhook registration, `GET …/me`).
//! - [`lograte`]: bounds the log lines remote clients can cause (quotas per
//!   reason and interval, summaries with counts).

pub mod app;
pub mod bounds;
pub mod cli;
pub mod config;
pub mod dev;
pub mod envelope;
pub mod health;
pub mod ingress;
pub mod logging;
pub mod lograte;
pub mod memtrim;
pub mod metrics;
pub mod presence;
pub mod publisher;
pub mod sink;
pub mod state;
/// The durable retry buffer: the `spool` crate, re-exported at its old path.
pub use ::spool;
pub mod tail;
pub mod transport;
pub mod zapi_api;

/// The transport pieces, at the paths they had before `transport/` grouped them.
pub use transport::{admin, server, tls};
