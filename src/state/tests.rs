//! The presence state on tokio's paused clock, with a sink that records what
//! it is given: the cases, and a seeded model check of the expiry rule.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{RawRoot, Settings};
use crate::envelope::{EventKind, Record};

const TTL: Duration = Duration::from_millis(15_500);

/// Keeps every record, in order; refuses them while `refuse` is set.
#[derive(Clone, Default)]
struct Recorder {
    records: Arc<Mutex<Vec<OutboundRecord>>>,
    refuse: Arc<AtomicBool>,
}

impl Sink for Recorder {
    async fn accept(&self, record: OutboundRecord) -> Result<(), SinkError> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(SinkError::Full);
        }
        self.records.lock().unwrap().push(record);
        Ok(())
    }
}

impl Recorder {
    fn take(&self) -> Vec<OutboundRecord> {
        std::mem::take(&mut *self.records.lock().unwrap())
    }
}

fn settings(latest: bool) -> KafkaSettings {
    let mut raw = RawRoot::default();
    raw.kafka.latest.enabled = latest;
    Settings::try_from(raw).unwrap().kafka
}

fn start(
    ttl: Option<Duration>,
    cap: u64,
    latest: bool,
) -> (Arc<PresenceState<Recorder>>, Recorder, CancellationToken) {
    let sink = Recorder::default();
    let state = Arc::new(PresenceState::new(
        sink.clone(),
        settings(latest),
        ttl,
        cap,
        StateMetrics::standalone(),
    ));
    let stop = CancellationToken::new();
    tokio::spawn(state.clone().run(stop.clone()));
    (state, sink, stop)
}

fn event(phone: &str, status: &str) -> PresenceEvent {
    let body = format!(
        r#"{{"type":"PresenceChatCallback","phone":"{phone}","status":"{status}","lastSeen":null,"instanceId":"i1"}}"#
    );
    PresenceEvent::from_json(body.as_bytes()).unwrap()
}

async fn post(state: &PresenceState<Recorder>, phone: &str, status: &str) -> Uuid {
    let id = new_event_id();
    state
        .accept(
            &event(phone, status),
            "whatsapp.presence.v1",
            id,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    id
}

/// What a record says, in short: `presence COMPOSING`, `state PAUSED typing_expired`, `expired`.
fn show(r: &OutboundRecord) -> String {
    match crate::envelope::decode(&r.value).unwrap() {
        Record::Presence(e) => format!("presence {}", e.data.status),
        Record::PresenceState(e) => format!("state {} {}", e.data.status, e.data.reason),
        Record::PresenceExpired(e) => format!("expired {}", e.data.previous_status),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_typing_status_with_nothing_newer_expires_after_the_ttl() {
    let (state, sink, _stop) = start(Some(TTL), 10, true);
    let id = post(&state, "5544999999999", "COMPOSING").await;
    let first = sink.take();
    assert_eq!(
        first.iter().map(show).collect::<Vec<_>>(),
        ["presence COMPOSING", "state COMPOSING reported"]
    );
    assert_eq!(first[1].key, "i1:5544999999999");
    assert_eq!(first[1].kind, EventKind::PresenceState);
    let v = crate::envelope::v1::Envelope::decode(&first[0].value).unwrap();
    assert!(v.data.typing_expires_at.is_some());
    assert_eq!(state.metrics.timers(), 1);

    tokio::time::sleep(TTL - Duration::from_millis(1)).await;
    assert!(sink.take().is_empty(), "expired before the ttl");
    tokio::time::sleep(Duration::from_millis(2)).await;
    let expired = sink.take();
    assert_eq!(
        expired.iter().map(show).collect::<Vec<_>>(),
        ["expired COMPOSING", "state PAUSED typing_expired"]
    );
    // Same key as the presence events: the phone's order holds.
    assert_eq!(expired[0].key, "5544999999999");
    assert_eq!(expired[0].topic, "whatsapp.presence.v1");
    assert_eq!(expired[1].topic, "whatsapp.presence.latest.v1");
    let e = crate::envelope::expired::Envelope::decode(&expired[0].value).unwrap();
    assert_eq!(e.data.cause_id, id);
    assert_eq!(state.metrics.timers(), 0);
    assert_eq!(state.metrics.expired(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_newer_event_cancels_or_moves_the_timer() {
    let (state, sink, _stop) = start(Some(TTL), 10, true);
    post(&state, "5544999999991", "COMPOSING").await;
    post(&state, "5544999999992", "RECORDING").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    post(&state, "5544999999991", "AVAILABLE").await;
    let again = post(&state, "5544999999992", "RECORDING").await;
    sink.take();
    // The first contact's timer is gone, the second's moved by 10 s.
    tokio::time::sleep(TTL - Duration::from_secs(9)).await;
    assert!(sink.take().is_empty());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let expired = sink.take();
    assert_eq!(
        expired.iter().map(show).collect::<Vec<_>>(),
        ["expired RECORDING", "state PAUSED typing_expired"]
    );
    assert_eq!(expired[0].key, "5544999999992");
    let e = crate::envelope::expired::Envelope::decode(&expired[0].value).unwrap();
    assert_eq!(e.data.cause_id, again);
}

#[tokio::test(start_paused = true)]
async fn past_the_cap_typing_events_are_delivered_without_a_timer() {
    let (state, sink, _stop) = start(Some(TTL), 2, false);
    for phone in ["5544999999991", "5544999999992", "5544999999993"] {
        post(&state, phone, "COMPOSING").await;
    }
    // Only the events: the latest topic is off.
    assert_eq!(sink.take().len(), 3);
    assert_eq!(state.metrics.dropped(), 1);
    assert_eq!(state.metrics.timers(), 2);
    tokio::time::sleep(TTL * 2).await;
    let expired: Vec<String> = sink.take().iter().map(|r| r.key.clone()).collect();
    assert_eq!(expired, ["5544999999991", "5544999999992"]);
}

#[tokio::test(start_paused = true)]
async fn with_the_ttl_off_nothing_expires_and_the_state_is_still_written() {
    let (state, sink, _stop) = start(None, 10, true);
    post(&state, "5544999999999", "COMPOSING").await;
    let got = sink.take();
    assert_eq!(got.len(), 2);
    let v = crate::envelope::v1::Envelope::decode(&got[0].value).unwrap();
    assert_eq!(v.data.typing_expires_at, None);
    tokio::time::sleep(TTL * 3).await;
    assert!(sink.take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_expiry_the_sink_refuses_is_retried_until_written() {
    let (state, sink, _stop) = start(Some(TTL), 10, true);
    post(&state, "5544999999999", "COMPOSING").await;
    sink.take();
    sink.refuse.store(true, Ordering::SeqCst);
    tokio::time::sleep(TTL + RETRY * 3).await;
    assert!(sink.take().is_empty());
    assert_eq!(state.metrics.timers(), 1, "kept for a retry");
    sink.refuse.store(false, Ordering::SeqCst);
    tokio::time::sleep(RETRY * 2).await;
    let got = sink.take();
    assert_eq!(
        got.iter().map(show).collect::<Vec<_>>(),
        ["expired COMPOSING", "state PAUSED typing_expired"]
    );
    assert_eq!(state.metrics.expired(), 1);
}

/// SplitMix64: seeded, replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A seeded stream of presence events over a few contacts, at whole
/// seconds (the TTL is 15.5 s, so no event lands on an expiry): each
/// contact's records must be exactly what the rule says: its events in
/// order, each with its state, and an expiry (and PAUSED) right after a
/// typing event whose next event came later than the TTL, or never.
#[tokio::test(start_paused = true)]
async fn a_seeded_stream_expires_exactly_what_the_rule_says() {
    let seed = std::env::var("STATE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0015_u64);
    for round in 0..8 {
        let mut rng = Rng(seed + round);
        let (state, sink, stop) = start(Some(TTL), 1000, true);
        let t0 = tokio::time::Instant::now();
        let phones = ["5544999999991", "5544999999992", "5544999999993"];
        let statuses = [
            "COMPOSING",
            "RECORDING",
            "PAUSED",
            "AVAILABLE",
            "UNAVAILABLE",
        ];
        // phone -> the expected records, in order.
        let mut want: std::collections::HashMap<&str, Vec<String>> = Default::default();
        // phone -> (time of its last event, its status).
        let mut last: std::collections::HashMap<&str, (u64, &str)> = Default::default();
        let mut now = 0u64;
        for _ in 0..200 {
            now += rng.below(12) * 1000;
            let phone = phones[rng.below(3) as usize];
            let status = statuses[rng.below(5) as usize];
            // Typing states that ran out by now, in expiry order.
            let mut due: Vec<(u64, &str, &str)> = last
                .iter()
                .filter(|(_, (t, s))| is_typing(s) && t + TTL.as_millis() as u64 <= now)
                .map(|(p, (t, s))| (*t, *p, *s))
                .collect();
            due.sort();
            for (_, p, s) in due {
                let w = want.entry(p).or_default();
                w.push(format!("expired {s}"));
                w.push("state PAUSED typing_expired".into());
                last.remove(p);
            }
            tokio::time::sleep_until(t0 + Duration::from_millis(now)).await;
            post(&state, phone, status).await;
            let w = want.entry(phone).or_default();
            w.push(format!("presence {status}"));
            w.push(format!("state {status} reported"));
            last.insert(phone, (now, status));
        }
        for (p, (_, s)) in last.iter() {
            if is_typing(s) {
                let w = want.entry(p).or_default();
                w.push(format!("expired {s}"));
                w.push("state PAUSED typing_expired".into());
            }
        }
        tokio::time::sleep(TTL * 2).await;
        stop.cancel();
        let records = sink.take();
        for phone in phones {
            let key = state::key("i1", phone);
            let got: Vec<String> = records
                .iter()
                .filter(|r| r.key == phone || r.key == key)
                .map(show)
                .collect();
            assert_eq!(
                got,
                want.remove(phone).unwrap_or_default(),
                "seed {} (STATE_SEED={seed}, round {round}), phone {phone}",
                seed + round
            );
        }
    }
}
