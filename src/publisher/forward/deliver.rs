//! Delivery results: settling acknowledged events, dead-lettering refused
//! records, holding a destination, and draining a lane to resend it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode as C;
use tokio::time::Instant;

use super::lane::{Lane, Mode};
use super::{Forwarder, BACKOFF_CAP, BACKOFF_FIRST};
use crate::metrics::DeliveryResult;
use crate::publisher::classify::{classify, ErrorClass, HoldReason};
use crate::publisher::metrics::DeadLetterReason;
use crate::publisher::produce::Produce;
use crate::spool::format::StoredRecord;

impl<P: Produce> Forwarder<P> {
    /// Handles a lane's finished front delivery (and the successful ones right
    /// behind it). True when the producer is broken and must be replaced.
    pub(super) async fn settle_front(&self, lane: &mut Lane<P::Delivery>) -> bool {
        let Some(mut entry) = lane.pop_front() else {
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
                    if let Some(e) = lane.pop_front() {
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
                    lane.push_front(entry);
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
    pub(super) fn begin_drain(&self, lane: &mut Lane<P::Delivery>, from: u64) {
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

    /// An acknowledged event is settled (its report was counted already).
    pub(super) fn delivered(&self, rec: &StoredRecord) {
        self.metrics.delivery_acknowledged(since(rec.arrival_ms));
        if rec.seq <= self.replay_until {
            self.metrics.spool_replayed(1);
        }
    }

    /// Moves the lane's cursor in the spool up to its first unsettled event.
    pub(super) fn sync_cursor(&self, lane: &Lane<P::Delivery>, settled: u64) {
        let through = lane.first_unsettled().saturating_sub(1);
        self.store.advance(&lane.topic, through, settled);
    }

    /// Tells the metrics and `/readyz` how a destination is doing.
    pub(super) fn show(&self, lane: &Lane<P::Delivery>) {
        let pending = self.store.pending_of(&lane.topic);
        self.destinations
            .state(&lane.topic, lane.held.is_some(), pending);
        self.health
            .destination_state(&lane.topic, lane.held.map(HoldReason::as_str), pending);
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

pub(super) fn since(arrival_ms: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(arrival_ms);
    Duration::from_millis(now.saturating_sub(arrival_ms).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

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
