//! Presence as state: the latest-presence record written beside each
//! presence event, and the typing timers that expire a COMPOSING or
//! RECORDING with nothing newer within `presence.typing_ttl`.
//!
//! Data flows one way: the webhook hands an accepted presence event to
//! [`PresenceState::accept`], which queues the event and the contact's state
//! ([`events::state`], the compacted `kafka.latest` topic) to the spool as one
//! request (both committed or neither), and arms, moves or cancels the
//! contact's timer. [`PresenceState::run`] fires due timers: an expiry event
//! on the presence topic ([`events::expired`], keyed by phone, so a phone's
//! order holds) and a `PAUSED` state with reason `typing_expired`, again as
//! one spool request. Both the queueing and the timers change under one
//! lock, so the spool's order is the order the state saw: an expiry is never
//! written after a newer event of its contact.
//!
//! Bounds: at most `presence.max_typing_timers` timers ([`timers`]); past
//! that a typing event is still delivered with its `typingExpiresAt`, and a
//! consumer expires it on its own. At start, [`recover`] re-arms the timers
//! of the typing events still in the spool.

mod forget;
mod recover;
mod timers;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge, Opts, Registry};
use time::OffsetDateTime;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::KafkaSettings;
use crate::envelope::{expired, new_event_id, state, OutboundRecord};
use crate::presence::{Phone, PresenceEvent};
use crate::sink::{Committing, Sink, SinkError};

pub use forget::{forget, ForgetError, Forgotten};
pub use recover::{recover, Recovered};
use timers::Timers;
pub use timers::Typing;

/// How long a timer whose expiry could not be queued (the spool full or
/// failing) waits before it tries again.
const RETRY: Duration = Duration::from_secs(1);
/// Expiries queued under one hold of the lock at most.
const FIRE_BATCH: usize = 512;

/// The metrics of presence as state.
#[derive(Clone)]
pub struct StateMetrics {
    timers: IntGauge,
    dropped: IntCounter,
    expired: IntCounter,
    failed: IntCounter,
}

impl StateMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let ns = "presence_bridge";
        let timers = IntGauge::with_opts(
            Opts::new(
                "typing_timers",
                "Typing contacts (COMPOSING, RECORDING) with a timer that expires them after presence.typing_ttl.",
            )
            .namespace(ns),
        )?;
        let dropped = IntCounter::with_opts(
            Opts::new(
                "typing_timers_dropped_total",
                "Typing events delivered without a timer: presence.max_typing_timers was reached (consumers still have typingExpiresAt).",
            )
            .namespace(ns),
        )?;
        let expired = IntCounter::with_opts(
            Opts::new(
                "typing_expired_total",
                "Typing states expired by the bridge: an expiry event and a PAUSED state committed to the spool.",
            )
            .namespace(ns),
        )?;
        let failed = IntCounter::with_opts(
            Opts::new(
                "typing_expiry_failures_total",
                "Expiries the spool refused (full or failing); each is retried every second until written or superseded.",
            )
            .namespace(ns),
        )?;
        registry.register(Box::new(timers.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(expired.clone()))?;
        registry.register(Box::new(failed.clone()))?;
        Ok(Self {
            timers,
            dropped,
            expired,
            failed,
        })
    }

    /// A set on its own registry (tests).
    pub fn standalone() -> Self {
        Self::new(&Registry::new()).expect("fresh registry")
    }

    pub fn timers(&self) -> i64 {
        self.timers.get()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    pub fn expired(&self) -> u64 {
        self.expired.get()
    }
}

/// The presence state in front of the sink (see the module docs).
pub struct PresenceState<S> {
    sink: S,
    topics: KafkaSettings,
    ttl: Option<Duration>,
    timers: Mutex<Timers>,
    /// Wakes [`PresenceState::run`] when a timer becomes the earliest.
    wake: Notify,
    metrics: StateMetrics,
}

impl<S: Sink> PresenceState<S> {
    /// `ttl`: `presence.typing_ttl` (`None`: off); `max_timers`:
    /// `presence.max_typing_timers`.
    pub fn new(
        sink: S,
        topics: KafkaSettings,
        ttl: Option<Duration>,
        max_timers: u64,
        metrics: StateMetrics,
    ) -> Self {
        Self {
            sink,
            topics,
            ttl,
            timers: Mutex::new(Timers::new(
                usize::try_from(max_timers).unwrap_or(usize::MAX),
            )),
            wake: Notify::new(),
            metrics,
        }
    }

    /// True when there is anything to do beyond writing the event: a latest
    /// topic or a typing TTL.
    pub fn is_active(&self) -> bool {
        self.ttl.is_some() || self.topics.latest.is_some()
    }

    /// Re-arms timers found by [`recover`] (at start, before the webhook
    /// listens). A typing state already past its expiry fires at once.
    pub async fn restore(&self, found: Vec<(String, Typing)>) -> usize {
        if self.ttl.is_none() {
            return 0;
        }
        let mut t = self.timers.lock().await;
        let now_ms = now_ms();
        let now = Instant::now();
        let mut armed = 0;
        for (key, mut typing) in found {
            let left = u64::try_from(typing.expires_ms.saturating_sub(now_ms)).unwrap_or(0);
            typing.deadline = now + Duration::from_millis(left);
            if t.arm(key, typing) {
                armed += 1;
            } else {
                self.metrics.dropped.inc();
            }
        }
        self.metrics.timers.set(t.len() as i64);
        drop(t);
        self.wake.notify_one();
        armed
    }

    /// Takes an accepted presence event: queues it (with `typingExpiresAt`
    /// when it is a typing status and the TTL is on) and the contact's
    /// latest state as one request, moves the contact's timer, and resolves
    /// once both records are committed. `topic` is the event's topic.
    pub async fn accept(
        &self,
        event: &PresenceEvent,
        topic: &str,
        id: Uuid,
        time: OffsetDateTime,
    ) -> Result<(), SinkError> {
        let arrival_ms = unix_ms(time);
        let ttl = self
            .ttl
            .filter(|_| is_typing(event.status.as_str()) && event.status.is_known());
        let expires_ms = ttl.map(|t| arrival_ms.saturating_add(t.as_millis() as i64));
        let mut records = Vec::with_capacity(2);
        records.push(OutboundRecord::new_typing(
            event, topic, id, time, expires_ms,
        ));
        let instance = event.instance_id.as_str();
        if let Some(latest) = self.topics.latest_topic(instance) {
            let s = state::State {
                instance_id: instance,
                phone: &event.phone,
                status: event.status.as_str(),
                status_known: event.status.is_known(),
                since_ms: arrival_ms,
                last_seen_ms: event.last_seen_ms,
                typing_expires_ms: expires_ms,
                reason: state::Reason::Reported,
                event_id: id,
            };
            records.push(OutboundRecord::state(&s, latest, new_event_id(), time));
        }
        let key = state::key(instance, event.phone.as_str());
        let (committing, gen) = {
            let mut t = self.timers.lock().await;
            let committing = self.sink.queue_all(records).await?;
            let gen = match (ttl, expires_ms) {
                (Some(ttl), Some(expires_ms)) => {
                    let typing = Typing {
                        deadline: Instant::now() + ttl,
                        expires_ms,
                        since_ms: arrival_ms,
                        status: typing_status(event.status.as_str()),
                        last_seen_ms: event.last_seen_ms,
                        cause: id,
                        gen: 0,
                    };
                    let was_empty = t.is_empty();
                    let armed = t.arm(key.as_str(), typing);
                    if !armed {
                        self.metrics.dropped.inc();
                    } else if was_empty {
                        self.wake.notify_one();
                    }
                    armed.then(|| t.gen_of(&key)).flatten()
                }
                _ => {
                    t.cancel(&key);
                    None
                }
            };
            self.metrics.timers.set(t.len() as i64);
            (committing, gen)
        };
        let result = committing.await;
        if result.is_err() {
            // Not written: a timer for it would expire an event no one got.
            if let Some(gen) = gen {
                let mut t = self.timers.lock().await;
                t.cancel_if(&key, gen);
                self.metrics.timers.set(t.len() as i64);
            }
        }
        result
    }

    /// Fires due timers until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if self.ttl.is_none() {
            return;
        }
        loop {
            let next = self.timers.lock().await.next_deadline();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => continue,
                _ = sleep_until(next) => {}
            }
            self.fire_due().await;
        }
    }

    /// Queues the expiries of every due timer (a batch at a time), then
    /// waits for their commits; one the spool refused is armed again.
    async fn fire_due(&self) {
        loop {
            let mut waiting: Vec<(Arc<str>, Typing, Committing)> = Vec::new();
            let more = {
                let mut t = self.timers.lock().await;
                let now = Instant::now();
                let mut more = false;
                while let Some((key, typing)) = t.pop_due(now) {
                    if waiting.len() == FIRE_BATCH {
                        t.arm(key, typing);
                        more = true;
                        break;
                    }
                    match self
                        .sink
                        .queue_all(self.expiry_records(&key, &typing))
                        .await
                    {
                        Ok(c) => waiting.push((key, typing, c)),
                        Err(e) => {
                            self.metrics.failed.inc();
                            tracing::warn!(error = %e, "cannot queue a typing expiry; retrying");
                            t.arm(
                                key,
                                Typing {
                                    deadline: now + RETRY,
                                    ..typing
                                },
                            );
                            break;
                        }
                    }
                }
                self.metrics.timers.set(t.len() as i64);
                more
            };
            for (key, typing, committing) in waiting {
                match committing.await {
                    Ok(()) => self.metrics.expired.inc(),
                    Err(e) => {
                        self.metrics.failed.inc();
                        tracing::warn!(error = %e, "a typing expiry was not written; retrying");
                        let mut t = self.timers.lock().await;
                        // Unless a newer event of the contact came meanwhile.
                        if t.gen_of(&key).is_none() {
                            t.arm(
                                key,
                                Typing {
                                    deadline: Instant::now() + RETRY,
                                    ..typing
                                },
                            );
                        }
                        self.metrics.timers.set(t.len() as i64);
                    }
                }
            }
            if !more {
                return;
            }
        }
    }

    /// The expiry event (presence topic) and the PAUSED state (latest topic)
    /// of a timer that ran out.
    fn expiry_records(&self, key: &str, typing: &Typing) -> Vec<OutboundRecord> {
        let Some((instance, phone)) = state::split_key(key) else {
            return Vec::new();
        };
        let Ok(phone) = Phone::parse(phone) else {
            return Vec::new();
        };
        let time = OffsetDateTime::now_utc();
        let id = new_event_id();
        let e = expired::Expiry {
            instance_id: instance,
            phone: &phone,
            previous_status: typing.status,
            typing_since_ms: typing.since_ms,
            expired_at_ms: typing.expires_ms,
            cause_id: typing.cause,
        };
        let topic = self.topics.topic_for(instance);
        let mut records = vec![OutboundRecord::expired(&e, topic, id, time)];
        if let Some(latest) = self.topics.latest_topic(instance) {
            let s = state::State {
                instance_id: instance,
                phone: &phone,
                status: "PAUSED",
                status_known: true,
                since_ms: typing.expires_ms,
                last_seen_ms: typing.last_seen_ms,
                typing_expires_ms: None,
                reason: state::Reason::TypingExpired,
                event_id: id,
            };
            records.push(OutboundRecord::state(&s, latest, new_event_id(), time));
        }
        records
    }
}

/// COMPOSING and RECORDING: the statuses that expire.
pub fn is_typing(status: &str) -> bool {
    matches!(status, "COMPOSING" | "RECORDING")
}

fn typing_status(status: &str) -> &'static str {
    if status == "RECORDING" {
        "RECORDING"
    } else {
        "COMPOSING"
    }
}

fn unix_ms(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn now_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
