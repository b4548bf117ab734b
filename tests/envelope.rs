//! What downstream teams receive: golden envelopes for the provider's examples,
//! the JSON Schema on every message, per-phone order, and topic routing.

mod common;
#[path = "../crates/events/tests/support/golden.rs"]
mod golden;

use std::collections::HashMap;

use common::*;
use hyper::StatusCode;

#[tokio::test]
async fn provider_examples_match_their_golden_envelopes() {
    let cases = golden::cases();
    let b = Bridge::start().await;
    let schema = envelope_schema();
    let mut ids = HashMap::new();
    for case in &cases {
        let r = b.post_json(&case.input).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {:?}", case.name, r.body);
        ids.insert(r.id(), case.name.clone());
    }
    let records = b.read(cases.len()).await;
    for rec in records {
        assert_valid_envelope(&schema, &rec.value);
        let id = rec.value["id"].as_str().unwrap().to_owned();
        let name = ids
            .remove(&id)
            .expect("every record is one we posted, once");
        let time = rec.value["time"].as_str().unwrap();
        assert!(golden::is_rfc3339_millis_utc(time), "{name}: time {time}");
        assert_eq!(rec.headers["event-id"], id, "{name}");

        // A typing status carries its expiry (the default presence.typing_ttl,
        // 15 s, after the arrival); the golden files are written without a TTL.
        let mut value = rec.value.clone();
        let status = value["data"]["status"].as_str().unwrap().to_owned();
        let expires = value["data"]
            .as_object_mut()
            .unwrap()
            .remove("typingExpiresAt");
        if matches!(status.as_str(), "COMPOSING" | "RECORDING") {
            let at = |s: &str| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .unwrap()
            };
            let expires = expires.unwrap_or_else(|| panic!("{name}: no typingExpiresAt"));
            assert_eq!(
                at(expires.as_str().unwrap()) - at(time),
                time::Duration::seconds(15),
                "{name}"
            );
        } else {
            assert_eq!(expires, None, "{name}: typingExpiresAt on {status}");
        }

        let got = golden::masked(&rec.key, serde_json::json!(rec.headers), &value);
        let expected = &cases.iter().find(|c| c.name == name).unwrap().expected;
        assert_eq!(&got, expected, "golden mismatch for {name}");
    }
    assert!(ids.is_empty(), "not delivered: {ids:?}");
}

#[tokio::test]
async fn each_phone_keeps_its_order_in_one_partition() {
    let b = Bridge::start().await;
    let phones = [
        "5511900000001",
        "5511900000002",
        "5511900000003",
        "5511900000004",
        "5511900000005",
    ];
    let statuses = [
        "AVAILABLE",
        "COMPOSING",
        "PAUSED",
        "RECORDING",
        "UNAVAILABLE",
    ];
    let mut posted: HashMap<&str, Vec<String>> = HashMap::new();
    // Concurrent posters, one per phone, each in sequence.
    let mut tasks = Vec::new();
    for phone in phones {
        let client = b.client.clone();
        let url = b.url(&format!("/webhooks/zapi/presence?token={TOKEN}"));
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..12 {
                let body = callback(phone, statuses[i % statuses.len()]);
                let req = hyper::Request::post(&url)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .unwrap();
                let r = Reply::read(client.request(req).await.unwrap()).await;
                assert_eq!(r.status, StatusCode::OK);
                ids.push(r.id());
            }
            (phone, ids)
        }));
    }
    for t in tasks {
        let (phone, ids) = t.await.unwrap();
        posted.insert(phone, ids);
    }
    let records = b.read(60).await;
    let schema = envelope_schema();
    let mut seen: HashMap<String, Vec<(i32, i64, String)>> = HashMap::new();
    for r in records {
        assert_valid_envelope(&schema, &r.value);
        assert_eq!(r.key, r.value["data"]["phone"]);
        seen.entry(r.key.clone()).or_default().push((
            r.partition,
            r.offset,
            r.value["id"].as_str().unwrap().to_owned(),
        ));
    }
    for (phone, ids) in posted {
        let mut got = seen.remove(phone).unwrap();
        let partitions: std::collections::HashSet<i32> = got.iter().map(|g| g.0).collect();
        assert_eq!(partitions.len(), 1, "{phone} spread over partitions");
        got.sort_by_key(|g| g.1);
        let got_ids: Vec<String> = got.into_iter().map(|g| g.2).collect();
        assert_eq!(got_ids, ids, "order of {phone}");
    }
}

#[tokio::test]
async fn topic_by_instance_routes_tenants() {
    let b = Bridge::start_with(&[(
        "PRESENCE_BRIDGE__KAFKA__TOPIC_BY_INSTANCE__TENANT-A",
        "tenant-a-presence",
    )])
    .await;
    b.cluster
        .create_topic("tenant-a-presence", PARTITIONS, 1)
        .unwrap();
    let body = r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"PAUSED","lastSeen":null,"instanceId":"tenant-a"}"#;
    let routed = b.post_json(body).await;
    assert_eq!(routed.status, StatusCode::OK, "{:?}", routed.body);
    let default = b.post_json(&callback("5544999999999", "PAUSED")).await;
    assert_eq!(default.status, StatusCode::OK);
    let tenant = read_topic(&b.cluster.bootstrap_servers(), "tenant-a-presence", 1).await;
    assert_eq!(tenant[0].value["id"], routed.id().as_str());
    let main = b.read(1).await;
    assert_eq!(main[0].value["id"], default.id().as_str());
}
