//! The forwarder: reads the spool, publishes through the idempotent producer,
//! and settles each event in the spool only after the broker acknowledged it
//! (or it was dead-lettered).
//!
//! Lanes. Order is promised per phone, and a phone's events always go to one
//! topic, so events for different topics have no order between them. The
//! forwarder runs one lane per topic (destination), each with its own spool
//! reader, in-flight window and cursor in the spool's settled set
//! ([`crate::spool::settle`]). A destination that refuses us (unknown topic,
//! not authorized, authentication, policy) holds only its own lane: its events
//! stay on disk, in order, and it retries with capped exponential backoff and
//! jitter, sending one event at a time until one is taken; every other lane
//! keeps flowing. A broker outage holds every lane (nothing resolves).
//!
//! Order within a lane. Records are handed to librdkafka in spool order and
//! settled in the same order (the window is a FIFO; a later delivery waits for
//! earlier ones). The producer runs with `message.timeout.ms = 0`: librdkafka
//! never gives up on a retriable error, it retries in order under idempotence.
//! When a lane's front delivery fails, the lane stops sending, waits until
//! every delivery it has in flight has resolved (so nothing of it is still
//! inside the client), then sends again from the failed event. Events after
//! it that the broker had taken meanwhile are sent again: duplicates with the
//! same CloudEvents id, counted in `presence_bridge_kafka_resent_total`.
//!
//! Errors, by [`classify`]: a record error (too large, invalid) dead-letters
//! that event and the lane goes on; a destination error holds the lane; a
//! retriable error or a lost result resends the lane from the failed event
//! after a backoff; a fatal producer error (or no progress at all for `STALL`
//! while a broker answers) purges the producer, builds a new one after a
//! backoff and resends every lane from its first unsettled event. A dead letter
//! that cannot be written is never settled: the lane is held and retries.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode as C;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::classify::{classify, ErrorClass, HoldReason};
use super::dead_letter::DeadLetter;
use super::destination::DestinationMetrics;
use super::produce::{BoxFuture, Produce};
use crate::envelope::{rejected, v1};
use crate::health::Health;
use crate::metrics::{DeliveryResult, Metrics};
use crate::publisher::metrics::DeadLetterReason;
use crate::spool::format::StoredRecord;
use crate::spool::store::{Reader, Store};

/// Events handed to the producer and not yet settled, per lane, at most.
pub const WINDOW: usize = 8192;
/// Records read from the spool (memory or disk) at a time.
const READ_BATCH: usize = 1024;
/// No delivery for this long while a broker answers: the producer is stuck
/// (every lane), or a lane's partition has no leader (that lane, shown only).
pub const STALL: Duration = Duration::from_secs(60);
/// Backoff before a held lane retries or a producer is rebuilt: doubles from
/// the first to the cap, with jitter.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(250);
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Checkpoints and gauges are refreshed this often.
const TICK: Duration = Duration::from_millis(200);

/// Where events Kafka refused for good go. `Err` means the event was NOT
/// kept there: it stays in the spool and the lane retries.
pub trait Park: Send + Sync {
    fn park<'a>(
        &'a self,
        rec: &'a StoredRecord,
        reason: &'static str,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
}

impl Park for DeadLetter {
    fn park<'a>(
        &'a self,
        rec: &'a StoredRecord,
        reason: &'static str,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.write(rec, reason, error)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Asks a running forwarder to stop, flushing until `deadline`.
#[derive(Clone, Default)]
pub struct StopSignal {
    token: CancellationToken,
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl StopSignal {
    pub fn stop(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(deadline);
        self.token.cancel();
    }

    fn deadline(&self) -> Instant {
        self.deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(Instant::now)
    }
}

/// Why the forwarder ended (it ends only on stop, or when it cannot run).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot create the Kafka producer: {0}")]
    Producer(KafkaError),
    #[error("the spool reader task died")]
    ReaderDied,
}

pub struct Forwarder<P: Produce> {
    pub store: Arc<Store>,
    /// Builds a fresh producer (at start and after a fatal error).
    pub make_producer: Box<dyn Fn() -> Result<P, KafkaError> + Send + Sync>,
    pub committed: watch::Receiver<u64>,
    pub metrics: Metrics,
    pub destinations: DestinationMetrics,
    pub dead_letter: Arc<dyn Park>,
    pub health: Arc<Health>,
    /// Events with a sequence at or below this were in the spool at start.
    pub replay_until: u64,
    /// Records for this topic are taken for captured rejected input when
    /// their value does not say what it is (every record the bridge writes
    /// does: the `ce_type` header comes from the envelope's own `type`).
    pub rejected_topic: Option<String>,
    /// Topics that get a lane from the start (the configured ones); topics
    /// found in the spool get one too.
    pub topics: Vec<String>,
    /// Seeds the backoff jitter (a simulation replays from it).
    pub seed: u64,
}

struct InFlight<D> {
    rec: StoredRecord,
    /// `None` when the producer refused the record before queueing it.
    delivery: Option<D>,
    finished: Option<Result<(), KafkaError>>,
    /// Its result was counted in `presence_bridge_kafka_deliveries_total`.
    counted: bool,
}

impl<D: Future<Output = Result<(), KafkaError>> + Unpin> InFlight<D> {
    /// Takes the delivery's result if it is there, registering `cx` otherwise.
    fn poll_done(&mut self, cx: &mut Context<'_>) -> bool {
        if self.finished.is_none() {
            if let Some(d) = self.delivery.as_mut() {
                if let Poll::Ready(r) = Pin::new(d).poll(cx) {
                    self.finished = Some(r);
                }
            }
        }
        self.finished.is_some()
    }

    fn done_now(&mut self) -> bool {
        self.poll_done(&mut Context::from_waker(Waker::noop()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Flowing,
    /// A delivery failed: wait until everything in flight has resolved.
    Draining,
    /// Resend from the failed event at this time.
    Waiting(Instant),
}

struct Lane<D> {
    topic: String,
    ce_type: &'static str,
    reader: Reader,
    /// Read from the spool, not yet handed to the producer.
    carry: VecDeque<StoredRecord>,
    /// Handed to the producer, not yet settled, oldest first.
    window: VecDeque<InFlight<D>>,
    mode: Mode,
    /// Set while the destination refuses us (or is stalled), for operators.
    held: Option<HoldReason>,
    /// While draining: the event to send again first.
    resend_from: Option<u64>,
    /// One event at a time until one is taken (after a hold).
    probing: bool,
    /// The producer refused an event of this lane before queueing it, for a
    /// reason other than the event itself: send nothing more until it is dealt with.
    refused_at_send: bool,
    backoff: Duration,
    /// Highest sequence ever handed to the producer (resends are counted).
    max_sent: u64,
    last_progress: Instant,
    /// Arrival of the oldest unsettled event last seen in the window or the
    /// carry, kept while the lane waits with both empty (after a failure).
    oldest_seen: Option<i64>,
}

impl<D> Lane<D> {
    fn first_unsettled(&self) -> u64 {
        if let Some(r) = self.resend_from {
            return r;
        }
        self.window
            .front()
            .map(|f| f.rec.seq)
            .or_else(|| self.carry.front().map(|r| r.seq))
            .unwrap_or_else(|| self.reader.next_seq())
    }

    /// A delivery at the head of the window, among those already resolved,
    /// failed for a reason other than the record itself: send nothing more.
    fn failed_ahead(&mut self) -> bool
    where
        D: Future<Output = Result<(), KafkaError>> + Unpin,
    {
        for f in self.window.iter_mut() {
            if !f.done_now() {
                return false;
            }
            if let Some(Err(e)) = &f.finished {
                if classify(e) != ErrorClass::Record {
                    return true;
                }
            }
        }
        false
    }

    fn limit(&self) -> usize {
        if self.probing {
            1
        } else {
            WINDOW
        }
    }

    fn oldest_arrival(&self) -> Option<i64> {
        self.window
            .front()
            .map(|f| f.rec.arrival_ms)
            .or_else(|| self.carry.front().map(|c| c.arrival_ms))
    }
}

/// What the main loop woke up for.
enum Wake {
    Stop,
    Front(usize),
    Committed,
    Tick,
    Timer,
}

impl<P: Produce> Forwarder<P> {
    /// Runs until `stop`, then flushes until the stop deadline and checkpoints.
    /// Ends early only if it cannot run at all.
    pub async fn run(self, stop: StopSignal) -> Result<(), ForwardError> {
        let mut producer = (self.make_producer)().map_err(ForwardError::Producer)?;
        self.destinations.read_pending_from(&self.store);
        let mut lanes: Vec<Lane<P::Delivery>> = Vec::new();
        for t in &self.topics {
            self.add_lane(&mut lanes, t);
        }
        for t in self.store.topics() {
            self.add_lane(&mut lanes, &t);
        }
        let mut committed = self.committed.clone();
        committed.borrow_and_update();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_progress = Instant::now();
        let mut reachable_since: Option<Instant> = None;
        // A producer rebuild waits for every lane to drain, then for this time.
        let mut rebuild_at: Option<Instant> = None;
        let mut producer_backoff = BACKOFF_FIRST;
        let mut writer_gone = false;

        loop {
            let newest = *committed.borrow();
            let now = Instant::now();
            if let Some(at) = rebuild_at {
                if now >= at && lanes.iter().all(|l| l.window.is_empty()) {
                    match (self.make_producer)() {
                        Ok(p) => producer = p,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot rebuild the Kafka producer; retrying with the old one")
                        }
                    }
                    rebuild_at = None;
                }
            }
            for lane in lanes.iter_mut() {
                if let Mode::Waiting(until) = lane.mode {
                    if now >= until {
                        lane.mode = Mode::Flowing;
                        lane.probing = true;
                    }
                }
                if lane.mode == Mode::Flowing && rebuild_at.is_none() {
                    self.fill(&producer, lane, newest, false).await?;
                }
            }
            let room = lanes.iter().any(|l| {
                l.mode == Mode::Flowing && l.window.len() < l.limit() && l.carry.is_empty()
            });
            let timer = lanes
                .iter()
                .filter_map(|l| match l.mode {
                    Mode::Waiting(t) => Some(t),
                    _ => None,
                })
                // A due rebuild waits for the lanes to drain, not for a timer.
                .chain(rebuild_at.filter(|t| *t > now))
                .min();
            let wake = tokio::select! {
                biased;
                _ = stop.token.cancelled() => Wake::Stop,
                i = poll_fn(|cx| poll_fronts(&mut lanes, cx)) => Wake::Front(i),
                changed = committed.changed(), if room && !writer_gone => {
                    // The spool writer ended: nothing new will be committed (the
                    // supervisor stops the bridge); keep delivering what is there.
                    writer_gone = changed.is_err();
                    Wake::Committed
                }
                _ = tick.tick() => Wake::Tick,
                _ = sleep_until(timer), if timer.is_some() => Wake::Timer,
            };
            match wake {
                Wake::Stop => break,
                Wake::Committed | Wake::Timer => {}
                Wake::Front(i) => {
                    last_progress = Instant::now();
                    let fatal = self.settle_front(&mut lanes[i]).await;
                    if fatal {
                        tracing::warn!("the Kafka producer is broken; rebuilding it and resending every destination's unsettled events");
                        producer.purge();
                        for lane in lanes.iter_mut() {
                            let from = lane.first_unsettled();
                            self.begin_drain(lane, from);
                        }
                        rebuild_at = Some(Instant::now() + self.jitter(producer_backoff, newest));
                        producer_backoff = (producer_backoff * 2).min(BACKOFF_CAP);
                    } else {
                        producer_backoff = BACKOFF_FIRST;
                    }
                }
                Wake::Tick => {
                    for t in self.store.topics() {
                        self.add_lane(&mut lanes, &t);
                    }
                    // Stalled only if a broker has answered for the whole STALL: right
                    // after an outage the old producer's retries are still landing, and
                    // replacing it then would duplicate them.
                    if !self.health.broker_reachable() {
                        reachable_since = None;
                    } else if reachable_since.is_none() {
                        reachable_since = Some(Instant::now());
                    }
                    let answered = reachable_since.is_some_and(|t| t.elapsed() > STALL);
                    for lane in lanes.iter_mut() {
                        let stuck = !lane.window.is_empty()
                            && lane.last_progress.elapsed() > STALL
                            && answered;
                        if stuck && lane.held.is_none() {
                            tracing::warn!(topic = %lane.topic, "no delivery for this destination while the broker answers (a partition without a leader?)");
                            lane.held = Some(HoldReason::Stalled);
                        } else if !stuck && lane.held == Some(HoldReason::Stalled) {
                            lane.held = None;
                        }
                    }
                    let busy = lanes.iter().any(|l| !l.window.is_empty());
                    if busy && rebuild_at.is_none() && last_progress.elapsed() > STALL && answered {
                        tracing::warn!(waited = ?last_progress.elapsed(), "no delivery progress while the broker answers; rebuilding the producer");
                        last_progress = Instant::now();
                        producer.purge();
                        for lane in lanes.iter_mut() {
                            let from = lane.first_unsettled();
                            self.begin_drain(lane, from);
                        }
                        rebuild_at = Some(Instant::now() + self.jitter(producer_backoff, newest));
                        producer_backoff = (producer_backoff * 2).min(BACKOFF_CAP);
                    }
                    self.refresh(&mut lanes).await;
                }
            }
        }

        // Stopping: hand the producer what was committed but not sent yet (the
        // requests answered just before the stop among it), give deliveries
        // until the deadline, then keep each lane's settled prefix. The rest
        // stays in the spool for the next start.
        let newest = self.store.stats().committed;
        for lane in lanes.iter_mut() {
            if lane.mode == Mode::Flowing && rebuild_at.is_none() {
                self.fill(&producer, lane, newest, true).await?;
            }
        }
        let left = stop.deadline().saturating_duration_since(Instant::now());
        producer.flush(left).await;
        for lane in lanes.iter_mut() {
            if lane.mode != Mode::Flowing {
                continue;
            }
            let mut settled = 0;
            while let Some(front) = lane.window.front_mut() {
                if !front.done_now() {
                    let Some(d) = front.delivery.as_mut() else {
                        break;
                    };
                    match tokio::time::timeout(Duration::from_millis(5), d).await {
                        Ok(r) => front.finished = Some(r),
                        Err(_) => break,
                    }
                }
                if !matches!(front.finished, Some(Ok(()))) {
                    break;
                }
                if let Some(e) = lane.window.pop_front() {
                    if !e.counted {
                        self.metrics
                            .delivery_finished(DeliveryResult::Delivered, None);
                    }
                    self.delivered(&e.rec);
                    settled += 1;
                }
            }
            self.sync_cursor(lane, settled);
        }
        let store = self.store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.checkpoint()).await {
            tracing::error!(error = %e, "final checkpoint failed; delivered events will be sent again");
        }
        let pending = self.store.stats().pending;
        if pending > 0 {
            tracing::info!(pending, "events left in the spool for the next start");
        }
        Ok(())
    }

    fn add_lane(&self, lanes: &mut Vec<Lane<P::Delivery>>, topic: &str) {
        if lanes.iter().any(|l| l.topic == topic) {
            return;
        }
        let ce_type = match &self.rejected_topic {
            Some(t) if t == topic => rejected::TYPE,
            _ => v1::TYPE,
        };
        lanes.push(Lane {
            topic: topic.to_owned(),
            ce_type,
            reader: self.store.reader_for(topic),
            carry: VecDeque::new(),
            window: VecDeque::new(),
            mode: Mode::Flowing,
            held: None,
            resend_from: None,
            probing: false,
            refused_at_send: false,
            backoff: BACKOFF_FIRST,
            max_sent: self.store.stats().committed.min(self.replay_until),
            last_progress: Instant::now(),
            oldest_seen: None,
        });
    }

    /// Fills a lane's window from its carry, then the spool (from memory when
    /// the tail vouches for the next records, else from disk). Stops at the
    /// first failed delivery so nothing more is sent behind it.
    async fn fill(
        &self,
        producer: &P,
        lane: &mut Lane<P::Delivery>,
        committed: u64,
        stopping: bool,
    ) -> Result<(), ForwardError> {
        let mut read_any = false;
        while lane.window.len() < lane.limit() {
            if lane.refused_at_send || lane.failed_ahead() {
                break;
            }
            if lane.carry.is_empty() {
                if committed < lane.reader.next_seq() {
                    break; // nothing new on disk
                }
                let want = READ_BATCH.min(lane.limit() - lane.window.len());
                if let Some(cached) = lane.reader.read_cached(&self.store, want) {
                    if cached.is_empty() {
                        read_any = true;
                        break;
                    }
                    lane.carry.extend(cached);
                } else {
                    let before = lane.reader.next_seq();
                    let store = self.store.clone();
                    let topic = lane.topic.clone();
                    let mut reader = std::mem::replace(&mut lane.reader, store.reader_for(&topic));
                    let read = tokio::task::spawn_blocking(move || {
                        let r = reader.read(&store, want);
                        (reader, r)
                    })
                    .await;
                    let Ok((r, result)) = read else {
                        return Err(ForwardError::ReaderDied);
                    };
                    lane.reader = r;
                    read_any = true;
                    match result {
                        Ok((records, skipped)) => {
                            if skipped > 0 {
                                self.metrics.spool_dropped(
                                    crate::spool::metrics::DropReason::CorruptRecord,
                                    skipped,
                                );
                                tracing::error!(
                                    events = skipped,
                                    "damaged spool records skipped while reading (events lost)"
                                );
                            }
                            lane.carry.extend(records);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "reading the spool failed; retrying");
                            break;
                        }
                    }
                    if lane.carry.is_empty() {
                        // Only other topics' records so far: the cursor moves on,
                        // and the next read goes on from there (if it moved).
                        if lane.reader.next_seq() > committed || lane.reader.next_seq() == before {
                            break;
                        }
                        continue;
                    }
                }
            }
            let Some(rec) = lane.carry.pop_front() else {
                break;
            };
            // The record says what it is (its envelope's `type`); the lane's
            // guess from the topic only for a value that is not our envelope.
            let ce_type = crate::envelope::ce_type_of(&rec.value).unwrap_or(lane.ce_type);
            let sent = producer.send(&rec, ce_type);
            match sent {
                Err(e) if e.rdkafka_error_code() == Some(C::QueueFull) => {
                    lane.carry.push_front(rec);
                    break;
                }
                Err(_) if stopping => {
                    lane.carry.push_front(rec);
                    break;
                }
                sent => {
                    if rec.seq <= lane.max_sent {
                        self.destinations.resent(&lane.topic, 1);
                    }
                    lane.max_sent = lane.max_sent.max(rec.seq);
                    let (delivery, finished, stop) = match sent {
                        Ok(d) => (Some(d), None, false),
                        // Refused before it was queued: dealt with in order, at the
                        // front. Nothing more is sent behind a refusal that is not
                        // the record's own fault.
                        Err(e) => {
                            let stop = classify(&e) != ErrorClass::Record;
                            (None, Some(Err(e)), stop)
                        }
                    };
                    lane.window.push_back(InFlight {
                        rec,
                        delivery,
                        finished,
                        counted: false,
                    });
                    if stop {
                        lane.refused_at_send = true;
                        break;
                    }
                }
            }
        }
        if read_any && lane.window.is_empty() && lane.carry.is_empty() {
            self.sync_cursor(lane, 0);
        }
        Ok(())
    }

    /// Handles a lane's finished front delivery (and the successful ones right
    /// behind it). True when the producer is broken and must be replaced.
    async fn settle_front(&self, lane: &mut Lane<P::Delivery>) -> bool {
        let Some(mut entry) = lane.window.pop_front() else {
            return false;
        };
        lane.last_progress = Instant::now();
        let result = entry.finished.take().unwrap_or(Err(KafkaError::Canceled));
        if !entry.counted {
            entry.counted = true;
            self.metrics
                .delivery_finished(delivery_result(&result), None);
        }
        if lane.mode == Mode::Draining {
            if lane.window.is_empty() {
                self.end_drain(lane);
            }
            return false;
        }
        match result {
            Ok(()) => {
                self.delivered(&entry.rec);
                let mut settled = 1;
                lane.backoff = BACKOFF_FIRST;
                lane.probing = false;
                lane.held = None;
                // Deliveries finish in bursts: take every successful one that is
                // already done without another trip through select.
                while let Some(next) = lane.window.front_mut() {
                    if !next.done_now() || !matches!(next.finished, Some(Ok(()))) {
                        break;
                    }
                    if let Some(e) = lane.window.pop_front() {
                        self.metrics
                            .delivery_finished(DeliveryResult::Delivered, None);
                        self.delivered(&e.rec);
                        settled += 1;
                    }
                }
                self.sync_cursor(lane, settled);
                false
            }
            Err(e) => match classify(&e) {
                ErrorClass::Record => {
                    let reason = dead_letter_reason(&e);
                    match self
                        .dead_letter
                        .park(&entry.rec, reason.as_str(), &e.to_string())
                        .await
                    {
                        Ok(()) => {
                            self.metrics.dead_lettered(reason);
                            if entry.rec.seq <= self.replay_until {
                                self.metrics.spool_replayed(1);
                            }
                            tracing::error!(seq = entry.rec.seq, reason = reason.as_str(), topic = %entry.rec.topic, "event refused permanently by Kafka; dead-lettered");
                            self.sync_cursor(lane, 1);
                        }
                        Err(why) => {
                            tracing::error!(seq = entry.rec.seq, error = %why, "the dead-letter place cannot be written; the event stays in the spool and its destination is held");
                            self.hold(lane, HoldReason::DeadLetterWrite, entry.rec.seq);
                        }
                    }
                    false
                }
                ErrorClass::Destination(reason) => {
                    if lane.held != Some(reason) {
                        tracing::error!(topic = %lane.topic, reason = reason.as_str(), error = %e, "destination refuses events; holding them in the spool and retrying with backoff, other destinations go on");
                    }
                    self.hold(lane, reason, entry.rec.seq);
                    false
                }
                ErrorClass::Retriable => {
                    tracing::warn!(topic = %lane.topic, error = %e, "delivery failed; sending this destination's events again from the failed one");
                    self.begin_drain(lane, entry.rec.seq);
                    false
                }
                ErrorClass::Fatal => {
                    // Resolved: it is drained with the rest once every lane resends.
                    entry.finished = Some(Err(e));
                    lane.window.push_front(entry);
                    true
                }
            },
        }
    }

    fn hold(&self, lane: &mut Lane<P::Delivery>, reason: HoldReason, from: u64) {
        self.destinations.error(&lane.topic, reason);
        lane.held = Some(reason);
        self.show(lane);
        self.begin_drain(lane, from);
    }

    /// Stops sending on a lane and resends from `from` once nothing of it is
    /// in flight any more.
    fn begin_drain(&self, lane: &mut Lane<P::Delivery>, from: u64) {
        lane.resend_from = Some(from);
        lane.refused_at_send = false;
        lane.carry.clear();
        lane.reader.seek(from);
        lane.mode = Mode::Draining;
        if lane.window.is_empty() {
            self.end_drain(lane);
        }
    }

    fn end_drain(&self, lane: &mut Lane<P::Delivery>) {
        lane.resend_from = None;
        let salt =
            lane.reader.next_seq() ^ lane.topic.len() as u64 ^ lane.backoff.as_millis() as u64;
        lane.mode = Mode::Waiting(Instant::now() + self.jitter(lane.backoff, salt));
        lane.backoff = (lane.backoff * 2).min(BACKOFF_CAP);
    }

    /// A duration between half of `d` and `d`, from the seed and `salt`
    /// (deterministic: a simulation replays from its seed).
    fn jitter(&self, d: Duration, salt: u64) -> Duration {
        jitter(d, self.seed ^ salt.rotate_left(17))
    }

    /// An acknowledged event is settled (its report was counted already).
    fn delivered(&self, rec: &StoredRecord) {
        self.metrics.delivery_acknowledged(since(rec.arrival_ms));
        if rec.seq <= self.replay_until {
            self.metrics.spool_replayed(1);
        }
    }

    /// Moves the lane's cursor in the spool up to its first unsettled event.
    fn sync_cursor(&self, lane: &Lane<P::Delivery>, settled: u64) {
        let through = lane.first_unsettled().saturating_sub(1);
        self.store.advance(&lane.topic, through, settled);
    }

    /// Tells the metrics and `/readyz` how a destination is doing.
    fn show(&self, lane: &Lane<P::Delivery>) {
        let pending = self.store.pending_of(&lane.topic);
        self.destinations
            .state(&lane.topic, lane.held.is_some(), pending);
        self.health
            .destination_state(&lane.topic, lane.held.map(HoldReason::as_str), pending);
    }

    /// Updates the gauges and writes a checkpoint if anything settled. The
    /// spool's levels are read from the store at each scrape; only the
    /// oldest unsettled event's arrival comes from here.
    async fn refresh(&self, lanes: &mut [Lane<P::Delivery>]) {
        let stats = self.store.stats();
        for lane in lanes.iter_mut() {
            lane.oldest_seen = match lane.oldest_arrival() {
                Some(ms) => Some(ms),
                None if self.store.pending_of(&lane.topic) > 0 => lane.oldest_seen,
                None => None,
            };
        }
        let oldest = lanes.iter().filter_map(|l| l.oldest_seen).min();
        let age = match oldest {
            Some(ms) if stats.pending > 0 => since(ms),
            _ => Duration::ZERO,
        };
        self.metrics.spool_oldest_arrival(oldest);
        self.metrics.spool_levels(stats.pending, stats.bytes, age);
        self.health.spool_levels(stats.pending, stats.bytes);
        for lane in lanes.iter() {
            self.show(lane);
        }
        let store = self.store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.checkpoint()).await {
            tracing::error!(error = %e, "spool checkpoint failed; will retry");
        }
    }
}

/// The first lane whose front delivery is done; registers for wake-ups otherwise.
fn poll_fronts<D: Future<Output = Result<(), KafkaError>> + Unpin>(
    lanes: &mut [Lane<D>],
    cx: &mut Context<'_>,
) -> Poll<usize> {
    for (i, lane) in lanes.iter_mut().enumerate() {
        if let Some(front) = lane.window.front_mut() {
            if front.poll_done(cx) {
                return Poll::Ready(i);
            }
        }
    }
    Poll::Pending
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// How a delivery report is counted in `presence_bridge_kafka_deliveries_total`.
fn delivery_result(r: &Result<(), KafkaError>) -> DeliveryResult {
    match r {
        Ok(()) => DeliveryResult::Delivered,
        Err(e) => match classify(e) {
            ErrorClass::Retriable => DeliveryResult::RetriableError,
            ErrorClass::Record => DeliveryResult::PermanentError,
            ErrorClass::Destination(_) => DeliveryResult::DestinationError,
            ErrorClass::Fatal => DeliveryResult::Fatal,
        },
    }
}

/// Closed set of dead-letter reasons (metric label values).
fn dead_letter_reason(e: &KafkaError) -> DeadLetterReason {
    match e.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge) => {
            DeadLetterReason::TooLarge
        }
        _ => DeadLetterReason::Rejected,
    }
}

fn since(arrival_ms: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(arrival_ms);
    Duration::from_millis(now.saturating_sub(arrival_ms).max(0) as u64)
}

/// A duration between half of `d` and `d`, chosen by `seed` (splitmix64).
fn jitter(d: Duration, seed: u64) -> Duration {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let r = (z % 1000) as u32;
    d / 2 + d / 2 * r / 1000
}

/// A seed for the jitter of a real run.
pub fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_whole() {
        for seed in 0..100 {
            let j = jitter(Duration::from_secs(2), seed);
            assert!(
                j >= Duration::from_secs(1) && j <= Duration::from_secs(2),
                "{j:?}"
            );
        }
    }

    #[test]
    fn each_report_is_counted_by_its_class() {
        let err = |c| Err(KafkaError::MessageProduction(c));
        assert_eq!(delivery_result(&Ok(())), DeliveryResult::Delivered);
        assert_eq!(
            delivery_result(&Err(KafkaError::Canceled)),
            DeliveryResult::RetriableError
        );
        assert_eq!(
            delivery_result(&err(C::MessageSizeTooLarge)),
            DeliveryResult::PermanentError
        );
        assert_eq!(
            delivery_result(&err(C::TopicAuthorizationFailed)),
            DeliveryResult::DestinationError
        );
        assert_eq!(
            delivery_result(&err(C::OutOfOrderSequenceNumber)),
            DeliveryResult::Fatal
        );
    }

    #[test]
    fn dead_letter_reasons_are_a_closed_set() {
        for code in [
            C::MessageSizeTooLarge,
            C::InvalidRecord,
            C::InvalidTimestamp,
        ] {
            let r = dead_letter_reason(&KafkaError::MessageProduction(code)).as_str();
            assert!(crate::metrics::DEAD_LETTER_REASONS.contains(&r), "{r}");
        }
    }
}
