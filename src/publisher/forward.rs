//! The forwarder: reads the spool in sequence order, publishes through the
//! idempotent producer, and acknowledges each event to the spool only after
//! the broker acknowledged it.
//!
//! Order. Records are handed to librdkafka in spool order and acknowledged in
//! the same order (the window is a FIFO; a later delivery waits for earlier
//! ones). The producer runs with `message.timeout.ms = 0`: librdkafka never
//! gives up on a retriable error, it retries in order under idempotence, with
//! capped exponential backoff and jitter between reconnects and retries
//! (`reconnect.backoff.ms`/`.max.ms`, `retry.backoff.ms`/`.max.ms`). So during
//! an outage the window fills, the forwarder stops reading, the spool grows,
//! and when the broker returns the window drains first, then the backlog, then
//! new traffic: nothing newer overtakes anything older, per phone or otherwise.
//!
//! When the producer itself is broken (a fatal idempotence error, or no
//! progress for `STALL` while a broker has answered metadata requests for all
//! of that time, not just since it came back from an outage) the forwarder
//! purges it, waits a capped exponential backoff with jitter, builds a new
//! producer and rewinds to the oldest unacknowledged event. Events the old
//! producer had already delivered are then sent again: duplicates are bounded
//! by the window, keep their CloudEvents id, and consumers can drop them by id.
//!
//! Permanent refusals (too large, not authorized, unknown topic) go to the
//! dead-letter file (and topic, if configured) with the reason, and are then
//! acknowledged: one bad event never blocks the ones behind it.

use std::collections::VecDeque;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use rdkafka::types::RDKafkaErrorCode as C;
use rdkafka::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::classify::{classify, ErrorClass};
use super::dead_letter::DeadLetter;
use super::KafkaPublisher;
use crate::envelope::{
    rejected, v1, CONTENT_TYPE, HEADER_CE_ID, HEADER_CE_TYPE, HEADER_CONTENT_TYPE,
};
use crate::health::Health;
use crate::metrics::{DeliveryResult, Metrics};
use crate::spool::format::StoredRecord;
use crate::spool::store::{Reader, Store};

/// Events handed to librdkafka and not yet acknowledged, at most.
pub const WINDOW: usize = 8192;
/// Records read from the spool (memory or disk) at a time.
const READ_BATCH: usize = 1024;
/// No delivery for this long while a broker answers: the producer is stuck.
const STALL: Duration = Duration::from_secs(60);
/// Backoff before rebuilding a producer: doubles from the first to the cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Checkpoints and gauges are refreshed this often.
const TICK: Duration = Duration::from_millis(200);

/// What the forwarder loop carries from one turn to the next.
struct State {
    publisher: KafkaPublisher,
    reader: Reader,
    /// Read from the spool but not yet handed to librdkafka (after QueueFull).
    carry: VecDeque<StoredRecord>,
    /// Handed to librdkafka, not yet acknowledged, oldest first.
    window: VecDeque<InFlight>,
    backoff: Duration,
}

struct InFlight {
    seq: u64,
    arrival_ms: i64,
    id: uuid::Uuid,
    delivery: DeliveryFuture,
    /// The delivery's result, when it was taken early by [`poll_now`].
    finished: Option<<DeliveryFuture as Future>::Output>,
}

/// The delivery's result if it is already there, without waiting.
fn poll_now(entry: &mut InFlight) -> bool {
    if entry.finished.is_none() {
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(r) = Pin::new(&mut entry.delivery).poll(&mut cx) {
            entry.finished = Some(r);
        }
    }
    entry.finished.is_some()
}

/// Asks a running forwarder to stop, flushing until `deadline`.
#[derive(Clone, Default)]
pub struct StopSignal {
    token: CancellationToken,
    deadline: Arc<Mutex<Option<tokio::time::Instant>>>,
}

impl StopSignal {
    pub fn stop(&self, deadline: tokio::time::Instant) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(deadline);
        self.token.cancel();
    }

    fn deadline(&self) -> tokio::time::Instant {
        self.deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(tokio::time::Instant::now)
    }
}

pub struct Forwarder {
    pub store: Arc<Store>,
    /// Builds a fresh producer (used at start and after a fatal error).
    pub make_publisher: Box<dyn Fn() -> Result<KafkaPublisher, KafkaError> + Send + Sync>,
    pub committed: watch::Receiver<u64>,
    pub metrics: Metrics,
    pub dead_letter: DeadLetter,
    pub health: Arc<Health>,
    /// Events with a sequence at or below this were in the spool at start.
    pub replay_until: u64,
    /// Records for this topic are captured rejected input, not presence events
    /// (their `ce_type` header differs).
    pub rejected_topic: Option<String>,
}

impl Forwarder {
    /// Runs until `stop`, then flushes until the stop deadline and checkpoints.
    pub async fn run(self, stop: StopSignal) {
        let publisher = match (self.make_publisher)() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot create the Kafka producer; events stay in the spool");
                return;
            }
        };
        let mut st = State {
            publisher,
            reader: self.store.reader(),
            carry: VecDeque::new(),
            window: VecDeque::new(),
            backoff: BACKOFF_FIRST,
        };
        let mut last_progress = Instant::now();
        let mut reachable_since: Option<Instant> = None;
        let mut committed = self.committed.clone();
        committed.borrow_and_update();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            // Fill the window: first what QueueFull left over, then the spool.
            let newest = *committed.borrow();
            if !self.fill(&mut st, newest, false).await {
                return;
            }

            let room = st.window.len() < WINDOW && st.carry.is_empty();
            let mut front = st.window.pop_front();
            let has_front = front.is_some();
            let done = tokio::select! {
                biased;
                _ = stop.token.cancelled() => {
                    if let Some(f) = front.take() {
                        st.window.push_front(f);
                    }
                    break;
                }
                done = async {
                    let f = front.as_mut().expect("guarded");
                    match f.finished.take() {
                        Some(r) => r,
                        None => (&mut f.delivery).await,
                    }
                }, if has_front => Some(done),
                _ = committed.changed(), if room => None,
                _ = tick.tick() => {
                    self.refresh(&st.window, &st.carry).await;
                    None
                }
            };
            let Some(done) = done else {
                if let Some(f) = front.take() {
                    st.window.push_front(f);
                }
                // Stalled only if a broker has answered for the whole STALL: right
                // after an outage the old producer's retries are still landing, and
                // replacing it then would duplicate them.
                if !self.health.broker_reachable() {
                    reachable_since = None;
                } else if reachable_since.is_none() {
                    reachable_since = Some(Instant::now());
                }
                let stalled = !st.window.is_empty()
                    && last_progress.elapsed() > STALL
                    && reachable_since.is_some_and(|t| t.elapsed() > STALL);
                if stalled {
                    tracing::warn!(waited = ?last_progress.elapsed(), "no delivery progress while the broker answers; rebuilding the producer");
                    last_progress = Instant::now();
                    if !self.rewind(&mut st, &stop).await {
                        break;
                    }
                }
                continue;
            };
            let Some(entry) = front.take() else { continue };
            last_progress = Instant::now();
            match done {
                Ok(Ok(_)) => {
                    self.delivered(entry.seq, entry.arrival_ms);
                    st.backoff = BACKOFF_FIRST;
                    // Deliveries finish in bursts: take every successful one that is
                    // already done without another trip through select.
                    while let Some(next) = st.window.front_mut() {
                        if !poll_now(next) || !matches!(next.finished, Some(Ok(Ok(_)))) {
                            break;
                        }
                        if let Some(e) = st.window.pop_front() {
                            self.delivered(e.seq, e.arrival_ms);
                        }
                    }
                }
                Ok(Err((e, msg))) if classify(&e) == ErrorClass::Permanent => {
                    let rec = in_flight_record(&entry, &msg);
                    if !self.dead_letter(&rec, &e).await && !self.rewind(&mut st, &stop).await {
                        break;
                    }
                }
                other => {
                    match other {
                        Ok(Err((e, _))) => {
                            tracing::warn!(error = %e, "delivery failed; rebuilding the producer and rewinding")
                        }
                        _ => tracing::warn!(
                            "delivery result lost; rebuilding the producer and rewinding"
                        ),
                    }
                    self.metrics
                        .delivery_finished(DeliveryResult::RetriableError, None);
                    if !self.rewind(&mut st, &stop).await {
                        break;
                    }
                }
            }
        }

        // Stopping: hand librdkafka what was committed but not sent yet (the
        // requests answered just before the stop among it), give deliveries
        // until the deadline, then keep the acknowledged prefix. The rest
        // stays in the spool for the next start.
        let newest = self.store.stats().committed;
        if !self.fill(&mut st, newest, true).await {
            return;
        }
        let left = stop
            .deadline()
            .saturating_duration_since(tokio::time::Instant::now());
        let unflushed = st.publisher.flush(left).await;
        while let Some(mut entry) = st.window.pop_front() {
            let done = match entry.finished.take() {
                Some(r) => Ok(r),
                None => tokio::time::timeout(Duration::from_millis(5), &mut entry.delivery).await,
            };
            match done {
                Ok(Ok(Ok(_))) => self.delivered(entry.seq, entry.arrival_ms),
                _ => break,
            }
        }
        let store = self.store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.checkpoint()).await {
            tracing::error!(error = %e, "final checkpoint failed; delivered events will be sent again");
        }
        let pending = self.store.stats().pending;
        if pending > 0 || unflushed > 0 {
            tracing::info!(pending, "events left in the spool for the next start");
        }
    }

    /// Fills the window: first what QueueFull left over, then the spool
    /// (from memory when the tail holds the next records, else from disk).
    /// A record librdkafka refuses for good is dead-lettered once the window
    /// before it is settled, unless `stopping` (then it stays in the spool for
    /// the next start, and nothing here waits on the broker). False when the
    /// reading task died (the runtime is going away).
    async fn fill(&self, st: &mut State, committed: u64, stopping: bool) -> bool {
        while st.window.len() < WINDOW {
            if st.carry.is_empty() {
                if committed < st.reader.next_seq() {
                    break; // nothing new on disk
                }
                let want = READ_BATCH.min(WINDOW - st.window.len());
                // Caught up: the records just committed are still in memory.
                let cached = st.reader.read_cached(&self.store, want);
                if !cached.is_empty() {
                    st.carry.extend(cached);
                    continue;
                }
                let store = self.store.clone();
                let mut reader = std::mem::replace(&mut st.reader, self.store.reader());
                let read = tokio::task::spawn_blocking(move || {
                    let r = reader.read(&store, want);
                    (reader, r)
                })
                .await;
                let Ok((r, result)) = read else { return false };
                st.reader = r;
                match result {
                    Ok((records, skipped)) => {
                        if skipped > 0 {
                            self.metrics.spool_dropped("corrupt_record", skipped);
                            tracing::error!(
                                regions = skipped,
                                "damaged spool records skipped while reading"
                            );
                        }
                        st.carry.extend(records);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reading the spool failed; retrying");
                        break;
                    }
                }
                if st.carry.is_empty() {
                    break;
                }
            }
            let Some(rec) = st.carry.pop_front() else {
                break;
            };
            match send(&st.publisher, &rec, self.ce_type(&rec)) {
                Ok(delivery) => st.window.push_back(InFlight {
                    seq: rec.seq,
                    arrival_ms: rec.arrival_ms,
                    id: rec.id,
                    delivery,
                    finished: None,
                }),
                Err(e) if e.rdkafka_error_code() == Some(C::QueueFull) => {
                    st.carry.push_front(rec);
                    break;
                }
                Err(e) => match classify(&e) {
                    ErrorClass::Permanent if !stopping => {
                        // Refused before it was queued; still in order: everything
                        // before it must be acknowledged first.
                        self.settle_window(&mut st.window).await;
                        if !self.dead_letter(&rec, &e).await {
                            st.carry.push_front(rec);
                            break;
                        }
                    }
                    _ => {
                        st.carry.push_front(rec);
                        break;
                    }
                },
            }
        }

        true
    }

    fn ce_type(&self, rec: &StoredRecord) -> &'static str {
        match &self.rejected_topic {
            Some(t) if *t == rec.topic => rejected::TYPE,
            _ => v1::TYPE,
        }
    }

    fn delivered(&self, seq: u64, arrival_ms: i64) {
        self.metrics
            .delivery_finished(DeliveryResult::Delivered, Some(since(arrival_ms)));
        self.ack(seq, false);
    }

    fn ack(&self, seq: u64, dead_lettered: bool) {
        if dead_lettered {
            self.metrics
                .delivery_finished(DeliveryResult::PermanentError, None);
        }
        if seq <= self.replay_until {
            self.metrics.spool_replayed(1);
        }
        self.store.ack(seq, 1);
    }

    /// Waits for every in-flight delivery, acknowledging in order (used before
    /// a permanent refusal is acknowledged, so acknowledgements stay ordered).
    async fn settle_window(&self, window: &mut VecDeque<InFlight>) {
        while let Some(mut entry) = window.pop_front() {
            let done = match entry.finished.take() {
                Some(r) => r,
                None => (&mut entry.delivery).await,
            };
            match done {
                Ok(Ok(_)) => self.delivered(entry.seq, entry.arrival_ms),
                Ok(Err((e, msg))) if classify(&e) == ErrorClass::Permanent => {
                    let rec = in_flight_record(&entry, &msg);
                    if !self.dead_letter(&rec, &e).await {
                        entry.finished = Some(Ok(Err((e, msg))));
                        window.push_front(entry);
                        return;
                    }
                }
                _ => {
                    window.push_front(entry);
                    return;
                }
            }
        }
    }

    /// Throws the producer away and starts again from the oldest
    /// unacknowledged event after a backoff. False if stopped meanwhile.
    async fn rewind(&self, st: &mut State, stop: &StopSignal) -> bool {
        st.publisher.purge();
        st.window.clear();
        st.carry.clear();
        let wait = jitter(st.backoff);
        st.backoff = (st.backoff * 2).min(BACKOFF_CAP);
        tokio::select! {
            _ = stop.token.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
        match (self.make_publisher)() {
            Ok(p) => st.publisher = p,
            Err(e) => {
                tracing::error!(error = %e, "cannot rebuild the Kafka producer; retrying with the old one")
            }
        }
        st.reader.seek(self.store.stats().watermark + 1);
        true
    }

    /// Updates the spool gauges and writes a checkpoint if the watermark moved.
    async fn refresh(&self, window: &VecDeque<InFlight>, carry: &VecDeque<StoredRecord>) {
        let stats = self.store.stats();
        let oldest = window
            .front()
            .map(|f| f.arrival_ms)
            .or_else(|| carry.front().map(|c| c.arrival_ms));
        let age = match oldest {
            Some(ms) if stats.pending > 0 => since(ms),
            _ => Duration::ZERO,
        };
        self.metrics.spool_levels(stats.pending, stats.bytes, age);
        self.health.spool_levels(stats.pending, stats.bytes);
        let store = self.store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.checkpoint()).await {
            tracing::error!(error = %e, "spool checkpoint failed; will retry");
        }
    }

    /// Moves an event Kafka refused for good to the dead-letter place, then
    /// acknowledges it so it never blocks the ones behind it. False when the
    /// dead letter could not be written: then the event is not acknowledged.
    async fn dead_letter(&self, rec: &StoredRecord, e: &KafkaError) -> bool {
        let reason = dead_letter_reason(e);
        if self
            .dead_letter
            .write(rec, reason, &e.to_string())
            .await
            .is_err()
        {
            return false;
        }
        self.metrics.dead_lettered(reason);
        self.ack(rec.seq, true);
        true
    }
}

/// The spooled record behind a delivery librdkafka gave back.
fn in_flight_record(entry: &InFlight, msg: &rdkafka::message::OwnedMessage) -> StoredRecord {
    StoredRecord {
        seq: entry.seq,
        arrival_ms: entry.arrival_ms,
        id: entry.id,
        topic: msg.topic().to_owned(),
        key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
        value: msg.payload().unwrap_or_default().to_vec(),
    }
}

fn send(
    publisher: &KafkaPublisher,
    rec: &StoredRecord,
    ce_type: &'static str,
) -> Result<DeliveryFuture, KafkaError> {
    let id = rec.id.hyphenated().to_string();
    let headers = OwnedHeaders::new_with_capacity(3)
        .insert(Header {
            key: HEADER_CONTENT_TYPE,
            value: Some(CONTENT_TYPE),
        })
        .insert(Header {
            key: HEADER_CE_ID,
            value: Some(id.as_str()),
        })
        .insert(Header {
            key: HEADER_CE_TYPE,
            value: Some(ce_type),
        });
    let record = FutureRecord::to(&rec.topic)
        .key(rec.key.as_str())
        .payload(rec.value.as_slice())
        .headers(headers);
    publisher.producer().send_result(record).map_err(|(e, _)| e)
}

/// Closed set of dead-letter reasons (metric label values).
fn dead_letter_reason(e: &KafkaError) -> &'static str {
    match e.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge) => {
            "too_large"
        }
        Some(
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::TransactionalIdAuthorizationFailed,
        ) => "not_authorized",
        Some(
            C::UnknownTopic | C::UnknownPartition | C::UnknownTopicOrPartition | C::InvalidTopic,
        ) => "unknown_topic",
        _ => "rejected",
    }
}

fn since(arrival_ms: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(arrival_ms);
    Duration::from_millis(now.saturating_sub(arrival_ms).max(0) as u64)
}

/// A random duration between half of `d` and `d`.
fn jitter(d: Duration) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(d.as_nanos() as u64);
    let r = (h.finish() % 1000) as u32;
    d / 2 + d / 2 * r / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_whole() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(2));
            assert!(
                j >= Duration::from_secs(1) && j <= Duration::from_secs(2),
                "{j:?}"
            );
        }
    }

    #[test]
    fn dead_letter_reasons_are_a_closed_set() {
        for code in [
            C::MessageSizeTooLarge,
            C::TopicAuthorizationFailed,
            C::UnknownTopic,
            C::InvalidRecord,
        ] {
            let r = dead_letter_reason(&KafkaError::MessageProduction(code));
            assert!(crate::metrics::DEAD_LETTER_REASONS.contains(&r), "{r}");
        }
    }
}
