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
//! Errors, by [`classify`](super::classify::classify): a record error (too large, invalid) dead-letters
//! that event and the lane goes on; a destination error holds the lane; a
//! retriable error or a lost result resends the lane from the failed event
//! after a backoff; a fatal producer error (or no progress at all for `STALL`
//! while a broker answers) purges the producer, builds a new one after a
//! backoff and resends every lane from its first unsettled event. A dead letter
//! that cannot be written is never settled: the lane is held and retries.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::KafkaError;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::classify::HoldReason;
use super::dead_letter::DeadLetter;
use super::destination::DestinationMetrics;
use super::produce::{BoxFuture, Produce};
use crate::health::Health;
use crate::metrics::{DeliveryResult, Metrics};
use crate::spool::format::StoredRecord;
use crate::spool::store::Store;

mod backoff;
mod deliver;
mod lane;

pub use backoff::random_seed;
use deliver::since;
use lane::{poll_fronts, Lane, Mode};

/// Events handed to the producer and not yet settled, per lane, at most.
pub const WINDOW: usize = 8192;
/// Bytes (value, key and topic) handed to the producer and not yet
/// settled, per lane, at most (one record always goes, whatever its size).
/// The producer keeps its own copy of each, so this bounds the memory an
/// outage or a slow broker holds: about 3 KiB per in-flight record in all.
/// 1 MiB is about 2,300 presence events, or 2,900 latest-state records,
/// per lane; the drain after an outage is not slower than with 8192.
pub const WINDOW_BYTES: usize = 1 << 20;
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
    /// Bytes in flight per lane, at most ([`WINDOW_BYTES`]; a simulation
    /// makes it small to reach it).
    pub window_bytes: usize,
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
                l.mode == Mode::Flowing && l.has_room(self.window_bytes) && l.carry.is_empty()
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
                        rebuild_at = Some(self.rebuild_later(
                            &producer,
                            &mut lanes,
                            &mut producer_backoff,
                            newest,
                        ));
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
                        rebuild_at = Some(self.rebuild_later(
                            &producer,
                            &mut lanes,
                            &mut producer_backoff,
                            newest,
                        ));
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
                if let Some(e) = lane.pop_front() {
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

    /// Gives up on a broken producer: fails what it holds, drains every lane
    /// to resend from its first unsettled event, and says when to build the
    /// next one (after `backoff`, which doubles up to the cap).
    fn rebuild_later(
        &self,
        producer: &P,
        lanes: &mut [Lane<P::Delivery>],
        backoff: &mut Duration,
        salt: u64,
    ) -> Instant {
        producer.purge();
        for lane in lanes.iter_mut() {
            let from = lane.first_unsettled();
            self.begin_drain(lane, from);
        }
        let at = Instant::now() + self.jitter(*backoff, salt);
        *backoff = (*backoff * 2).min(BACKOFF_CAP);
        at
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

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
