//! Presence as state through a real bridge and MockCluster: the compacted
//! latest-presence topic holds each contact's newest state after a mixed
//! stream, a COMPOSING without a follow-up expires (an expiry event keyed by
//! the phone, after the COMPOSING in its partition, and PAUSED in the latest
//! topic), and the typing events left in a spool re-arm their timers when a
//! bridge starts on it.

mod common;

use std::collections::HashMap;

use common::*;
use hyper::StatusCode;
use presence_bridge::envelope::{self, expired, state, EventKind, OutboundRecord};
use presence_bridge::presence::PresenceEvent;
use presence_bridge::spool::store::{NewRecord, Store};
use presence_bridge::spool::RecordKind;

fn body(instance: &str, phone: &str, status: &str) -> String {
    format!(
        r#"{{"type":"PresenceChatCallback","phone":"{phone}","status":"{status}","lastSeen":null,"instanceId":"{instance}"}}"#
    )
}

/// A seeded stream over two instances and three phones: the latest topic
/// ends with each contact's last status; the contact left COMPOSING ends
/// PAUSED (typing_expired) after an expiry event on the presence topic.
#[tokio::test]
async fn the_latest_topic_holds_each_contacts_newest_state() {
    let r = Restarts::new();
    let latest = unique_topic();
    r.cluster.create_topic(&latest, PARTITIONS, 1).unwrap();
    let api = r
        .start(&[
            ("PRESENCE_BRIDGE__KAFKA__LATEST__TOPIC", latest.as_str()),
            ("PRESENCE_BRIDGE__PRESENCE__TYPING_TTL", "1s"),
        ])
        .await;
    api.wait_ready().await;

    let instances = ["inst-a", "inst-b"];
    let phones = ["5511900000001", "5511900000002", "5511900000003"];
    let statuses = ["AVAILABLE", "PAUSED", "UNAVAILABLE", "AVAILABLE"];
    let mut last: HashMap<String, &str> = HashMap::new();
    let mut seed = 0x15_u64;
    let mut posted = 0;
    for _ in 0..60 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let instance = instances[(seed >> 33) as usize % 2];
        let phone = phones[(seed >> 40) as usize % 3];
        let status = statuses[(seed >> 50) as usize % statuses.len()];
        let reply = api.post_json(&body(instance, phone, status)).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        last.insert(state::key(instance, phone), status);
        posted += 1;
    }
    // One contact left typing: nothing follows, it expires.
    let reply = api
        .post_json(&body("inst-a", "5511900000009", "COMPOSING"))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let composing_id = reply.id();
    last.insert(state::key("inst-a", "5511900000009"), "PAUSED");
    posted += 1;

    api.wait_for("presence_bridge_typing_expired_total", 1.0)
        .await;
    let brokers = r.cluster.bootstrap_servers();

    // The presence topic: every event, then the expiry after its COMPOSING.
    let events = read_topic(&brokers, &r.topic, posted + 1).await;
    assert_eq!(events.len(), posted + 1);
    let composing = events
        .iter()
        .find(|e| e.value["id"] == composing_id.as_str())
        .expect("the COMPOSING was delivered");
    let expiry: Vec<_> = events
        .iter()
        .filter(|e| e.value["type"] == expired::TYPE)
        .collect();
    assert_eq!(expiry.len(), 1, "one expiry");
    let expiry = expiry[0];
    assert_eq!(expiry.key, "5511900000009");
    assert_eq!(expiry.partition, composing.partition);
    assert!(
        expiry.offset > composing.offset,
        "the expiry follows its event"
    );
    assert_eq!(expiry.value["data"]["causeId"], composing_id.as_str());
    let expires_at = composing.value["data"]["typingExpiresAt"].as_str().unwrap();
    assert_eq!(expiry.value["data"]["expiredAt"], expires_at);

    // The latest topic: one record per event and expiry; the newest per key
    // (the highest offset of its partition) is the contact's last state.
    let states = read_topic(&brokers, &latest, posted + 1).await;
    assert_eq!(states.len(), posted + 1);
    let mut newest: HashMap<String, &Record> = HashMap::new();
    for s in &states {
        assert_eq!(s.value["type"], state::TYPE);
        assert_eq!(s.value["partitionkey"], s.key.as_str());
        let keep = newest.get(&s.key).is_none_or(|n| n.offset < s.offset);
        if keep {
            newest.insert(s.key.clone(), s);
        }
    }
    assert_eq!(newest.len(), last.len());
    for (key, status) in &last {
        let s = newest[key];
        assert_eq!(s.value["data"]["status"], *status, "{key}");
    }
    let paused = newest[&state::key("inst-a", "5511900000009")];
    assert_eq!(paused.value["data"]["reason"], "typing_expired");
    assert_eq!(paused.value["data"]["eventId"], expiry.value["id"]);
    api.stop().await;
}

/// Typing events left in a spool (a bridge stopped before they expired)
/// re-arm their timers at the next start: an expired one fires at once. A
/// contact whose typing event was followed by another status, or by its
/// expiry, gets none.
#[tokio::test]
async fn typing_events_in_the_spool_rearm_their_timers_at_start() {
    let r = Restarts::new();
    let now = time::OffsetDateTime::now_utc();
    let past = now - time::Duration::seconds(30);
    let past_ms = (past.unix_timestamp_nanos() / 1_000_000) as i64;
    let typing = |phone: &str| {
        let e = PresenceEvent::from_json(body("i1", phone, "COMPOSING").as_bytes()).unwrap();
        OutboundRecord::new_typing(
            &e,
            &r.topic,
            envelope::new_event_id(),
            past,
            Some(past_ms + 15_000),
        )
    };
    let a = typing("5511900000001");
    let b = typing("5511900000002");
    let b_then = {
        let e =
            PresenceEvent::from_json(body("i1", "5511900000002", "AVAILABLE").as_bytes()).unwrap();
        OutboundRecord::new(&e, &r.topic, envelope::new_event_id(), past)
    };
    let c = typing("5511900000003");
    let c_phone = presence_bridge::presence::Phone::parse("5511900000003").unwrap();
    let c_expired = OutboundRecord::expired(
        &expired::Expiry {
            instance_id: "i1",
            phone: &c_phone,
            previous_status: "COMPOSING",
            typing_since_ms: past_ms,
            expired_at_ms: past_ms + 15_000,
            cause_id: c.id,
        },
        &r.topic,
        envelope::new_event_id(),
        past,
    );
    let a_id = a.id;
    {
        let (store, _) =
            Store::open(presence_bridge::spool::testkit::options(r.spool.path())).unwrap();
        let records: Vec<NewRecord> = [a, b, b_then, c, c_expired]
            .into_iter()
            .map(|o| NewRecord {
                arrival_ms: o.arrival_ms,
                id: o.id,
                kind: RecordKind(o.kind.code()),
                topic: o.topic,
                key: o.key,
                value: o.value,
            })
            .collect();
        store.append(&records, true).unwrap();
    }

    let api = r.start(&[]).await;
    api.wait_ready().await;
    api.wait_for("presence_bridge_typing_expired_total", 1.0)
        .await;
    // The five records left in the spool, and the expiry of a.
    let events = read_topic(&r.cluster.bootstrap_servers(), &r.topic, 6).await;
    let expiries: Vec<_> = events
        .iter()
        .filter(|e| e.value["type"] == expired::TYPE)
        .collect();
    // The one written before the restart, and the one re-armed for a.
    assert_eq!(expiries.len(), 2, "{expiries:#?}");
    let rearmed = expiries
        .iter()
        .find(|e| e.value["data"]["causeId"] == a_id.to_string().as_str())
        .expect("a's timer was re-armed and fired");
    assert_eq!(rearmed.key, "5511900000001");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.value["type"] == envelope::v1::TYPE)
            .count(),
        4
    );
    assert_eq!(api.metric("presence_bridge_typing_timers"), 0.0);
    assert!(EventKind::from_code(9) == Some(EventKind::PresenceExpired));
    api.stop().await;
}
