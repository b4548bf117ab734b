//! Rounds of presence events posted per phone, and the check that a topic
//! holds exactly them: each once, per phone in posting order (outage and
//! scale-in tests).

use std::collections::HashMap;

use hyper::StatusCode;

use super::{callback, Api, Record, Reply, TOKEN};

/// Posts `per_phone` events for every phone of `phones` (statuses taken in
/// turn from `statuses`), phones concurrently; returns
/// the accepted ids per phone in posting order.
pub async fn post_round(
    b: &Api,
    phones: &[&'static str],
    statuses: &'static [&'static str],
    per_phone: usize,
    posted: &mut HashMap<String, Vec<String>>,
) {
    let mut tasks = Vec::new();
    for &phone in phones {
        let client = b.client.clone();
        let url = b.url(&format!("/webhooks/zapi/presence?token={TOKEN}"));
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..per_phone {
                let req = hyper::Request::post(&url)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(callback(
                        phone,
                        statuses[i % statuses.len()],
                    ))))
                    .unwrap();
                let r = Reply::read(client.request(req).await.unwrap()).await;
                assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
                ids.push(r.id());
            }
            (phone, ids)
        }));
    }
    for t in tasks {
        let (phone, ids) = t.await.unwrap();
        posted.entry(phone.to_owned()).or_default().extend(ids);
    }
}

/// Checks that `records` (the whole topic, [`super::Api::read_all`]) hold exactly the
/// posted ids: each once, per phone in posting order, nothing else.
pub fn check_delivery<'a>(
    records: impl IntoIterator<Item = &'a Record>,
    posted: &HashMap<String, Vec<String>>,
) {
    let mut seen: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for r in records {
        let id = r.value["id"].as_str().unwrap().to_owned();
        assert!(ids.insert(id.clone()), "{id} delivered twice");
        seen.entry(r.key.clone()).or_default().push((r.offset, id));
    }
    for (phone, want) in posted {
        let mut got = seen.remove(phone).unwrap_or_default();
        got.sort();
        let got: Vec<String> = got.into_iter().map(|g| g.1).collect();
        assert_eq!(&got, want, "order or completeness of {phone}");
    }
    assert!(seen.is_empty(), "records nobody posted: {seen:?}");
}
