//! Micro-benchmarks of the per-event hot path (criterion):
//! parse + validate + normalize, envelope encoding, and both together, plus
//! the spool's record framing.
//!
//!   cargo bench --bench pipeline

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use presence_bridge::envelope::{new_event_id, OutboundRecord};
use presence_bridge::presence::PresenceEvent;
use presence_bridge::spool::format::{encode_parts, Head, RecordKind};

const BODIES: [&str; 3] = [
    r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"COMPOSING","lastSeen":null,"instanceId":"3C0A1B2C3D4E5F"}"#,
    r#"{"type":"PresenceChatCallback","phone":"+55 (11) 98765-4321","status":"paused","lastSeen":1700000000123,"instanceId":"3C0A1B2C3D4E5F","momment":1700000000999}"#,
    r#"{"type":"PresenceChatCallback","phone":"120363019502650977@g.us","status":"AVAILABLE","lastSeen":"2024-01-02T00:04:05.678-03:00","instanceId":"3C0A1B2C3D4E5F"}"#,
];

fn bench(c: &mut Criterion) {
    let now = time::OffsetDateTime::now_utc();
    let mut g = c.benchmark_group("per_event");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_validate_normalize", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(PresenceEvent::from_json(black_box(BODIES[i % 3].as_bytes())).unwrap())
        })
    });
    let events: Vec<PresenceEvent> = BODIES
        .iter()
        .map(|b| PresenceEvent::from_json(b.as_bytes()).unwrap())
        .collect();
    g.bench_function("envelope_encode", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(OutboundRecord::new(
                &events[i % 3],
                "whatsapp.presence.v1",
                new_event_id(),
                now,
            ))
        })
    });
    g.bench_function("parse_to_envelope", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            let e = PresenceEvent::from_json(BODIES[i % 3].as_bytes()).unwrap();
            black_box(OutboundRecord::new(
                &e,
                "whatsapp.presence.v1",
                new_event_id(),
                now,
            ))
        })
    });
    let rec = OutboundRecord::new(&events[0], "whatsapp.presence.v1", new_event_id(), now);
    let head = Head {
        seq: 1,
        arrival_ms: rec.arrival_ms,
        id: &rec.id,
        kind: RecordKind(rec.kind.code()),
    };
    g.bench_function("spool_frame", |b| {
        let mut buf = Vec::with_capacity(4096);
        b.iter(|| {
            buf.clear();
            encode_parts(&head, &rec.topic, &rec.key, &rec.value, &mut buf);
            black_box(buf.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
