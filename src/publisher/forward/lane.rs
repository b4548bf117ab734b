//! A lane: one destination's reader, carry, in-flight window and mode
//! (flowing, draining, waiting), and filling its window from the spool.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode as C;
use tokio::time::Instant;

use super::{ForwardError, Forwarder, BACKOFF_FIRST, READ_BATCH, WINDOW};
use crate::envelope::{rejected, v1, EventKind};
use crate::publisher::classify::{classify, ErrorClass, HoldReason};
use crate::publisher::produce::Produce;
use crate::spool::format::StoredRecord;
use crate::spool::store::Reader;

pub(super) struct InFlight<D> {
    pub(super) rec: StoredRecord,
    /// `None` when the producer refused the record before queueing it.
    pub(super) delivery: Option<D>,
    pub(super) finished: Option<Result<(), KafkaError>>,
    /// Its result was counted in `presence_bridge_kafka_deliveries_total`.
    pub(super) counted: bool,
}

impl<D: Future<Output = Result<(), KafkaError>> + Unpin> InFlight<D> {
    /// Takes the delivery's result if it is there, registering `cx` otherwise.
    pub(super) fn poll_done(&mut self, cx: &mut Context<'_>) -> bool {
        if self.finished.is_none() {
            if let Some(d) = self.delivery.as_mut() {
                if let Poll::Ready(r) = Pin::new(d).poll(cx) {
                    self.finished = Some(r);
                }
            }
        }
        self.finished.is_some()
    }

    pub(super) fn done_now(&mut self) -> bool {
        self.poll_done(&mut Context::from_waker(Waker::noop()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Flowing,
    /// A delivery failed: wait until everything in flight has resolved.
    Draining,
    /// Resend from the failed event at this time.
    Waiting(Instant),
}

pub(super) struct Lane<D> {
    pub(super) topic: String,
    pub(super) ce_type: &'static str,
    pub(super) reader: Reader,
    /// Read from the spool, not yet handed to the producer.
    pub(super) carry: VecDeque<StoredRecord>,
    /// Handed to the producer, not yet settled, oldest first. Taken from
    /// the front with [`Lane::pop_front`] and put back with
    /// [`Lane::push_front`], which keep `window_bytes`.
    pub(super) window: VecDeque<InFlight<D>>,
    /// [`in_flight_bytes`] of every record in `window`.
    pub(super) window_bytes: usize,
    pub(super) mode: Mode,
    /// Set while the destination refuses us (or is stalled), for operators.
    pub(super) held: Option<HoldReason>,
    /// While draining: the event to send again first.
    pub(super) resend_from: Option<u64>,
    /// One event at a time until one is taken (after a hold).
    pub(super) probing: bool,
    /// The producer refused an event of this lane before queueing it, for a
    /// reason other than the event itself: send nothing more until it is dealt with.
    pub(super) refused_at_send: bool,
    pub(super) backoff: Duration,
    /// Highest sequence ever handed to the producer (resends are counted).
    pub(super) max_sent: u64,
    pub(super) last_progress: Instant,
    /// Arrival of the oldest unsettled event last seen in the window or the
    /// carry, kept while the lane waits with both empty (after a failure).
    pub(super) oldest_seen: Option<i64>,
}

impl<D> Lane<D> {
    pub(super) fn first_unsettled(&self) -> u64 {
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
    pub(super) fn failed_ahead(&mut self) -> bool
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

    pub(super) fn limit(&self) -> usize {
        if self.probing {
            1
        } else {
            WINDOW
        }
    }

    /// Another record may be handed to the producer: fewer than
    /// [`Lane::limit`] in flight and, unless the window is empty, fewer
    /// than `max_bytes` (the forwarder's `window_bytes`,
    /// [`WINDOW_BYTES`](super::WINDOW_BYTES)).
    pub(super) fn has_room(&self, max_bytes: usize) -> bool {
        self.window.len() < self.limit()
            && (self.window.is_empty() || self.window_bytes < max_bytes)
    }

    pub(super) fn push_back(&mut self, f: InFlight<D>) {
        self.window_bytes += in_flight_bytes(&f.rec);
        self.window.push_back(f);
    }

    pub(super) fn push_front(&mut self, f: InFlight<D>) {
        self.window_bytes += in_flight_bytes(&f.rec);
        self.window.push_front(f);
    }

    pub(super) fn pop_front(&mut self) -> Option<InFlight<D>> {
        let f = self.window.pop_front()?;
        self.window_bytes -= in_flight_bytes(&f.rec);
        Some(f)
    }

    pub(super) fn oldest_arrival(&self) -> Option<i64> {
        self.window
            .front()
            .map(|f| f.rec.arrival_ms)
            .or_else(|| self.carry.front().map(|c| c.arrival_ms))
    }
}

impl<P: Produce> Forwarder<P> {
    pub(super) fn add_lane(&self, lanes: &mut Vec<Lane<P::Delivery>>, topic: &str) {
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
            window_bytes: 0,
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
    pub(super) async fn fill(
        &self,
        producer: &P,
        lane: &mut Lane<P::Delivery>,
        committed: u64,
        stopping: bool,
    ) -> Result<(), ForwardError> {
        let mut read_any = false;
        while lane.has_room(self.window_bytes) {
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
                                    crate::metrics::DropReason::CorruptRecord,
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
            // The record says what it is: its stored kind, else (a version-1
            // spool record) its envelope's `type`; the lane's guess from the
            // topic only for a value that is not our envelope.
            let ce_type = EventKind::from_code(rec.kind.0)
                .map(EventKind::ce_type)
                .or_else(|| crate::envelope::ce_type_of(&rec.value))
                .unwrap_or(lane.ce_type);
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
                    lane.push_back(InFlight {
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
}

/// What a record in flight counts against the window's byte bound.
fn in_flight_bytes(rec: &StoredRecord) -> usize {
    rec.value.len() + rec.key.len() + rec.topic.len()
}

/// The first lane whose front delivery is done; registers for wake-ups otherwise.
pub(super) fn poll_fronts<D: Future<Output = Result<(), KafkaError>> + Unpin>(
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
