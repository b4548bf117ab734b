//! Test harness: a bridge on port 0 in front of an in-process MockCluster, an
//! HTTP client, and a Kafka reader. Each test gets its own topic. Waits are
//! for the event itself; `HANG` only guards a hang.
//!
//! The other harnesses: [`process`] (the real binary), [`handler`] (the
//! webhook handler alone, with a test's sink), [`raw`] (HTTP/1.1 by hand),
//! [`logs`] (log capture).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use presence_bridge::app::{self, Running};
use presence_bridge::config::{self, Settings};
use presence_bridge::envelope::EventKind;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

pub mod handler;
pub mod logs;
pub mod process;
pub mod raw;
pub mod rounds;

/// How long a wait for an event may take before the test calls it a hang:
/// only a guard, never a bound the behaviour under test is held to.
pub const HANG: Duration = Duration::from_secs(60);

/// Polls `check` until it gives `Some` (every 25 ms; `HANG` guards a hang).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + HANG;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub const TOKEN: &str = "test-token-0123456789";
pub const PARTITIONS: i32 = 3;
/// `kafka.latest.topic` by default: each cluster of a test has it.
pub const LATEST_TOPIC: &str = "whatsapp.presence.latest.v1";

pub fn unique_topic() -> String {
    format!("presence-test-{}", uuid::Uuid::now_v7().simple())
}

/// Settings for a test: loopback port 0 listeners, the given brokers and
/// topic, plus `extra` environment overrides.
pub fn settings(
    brokers: &str,
    topic: &str,
    spool: &std::path::Path,
    extra: &[(&str, &str)],
) -> Settings {
    let mut env: Vec<(String, String)> = vec![
        ("PRESENCE_BRIDGE__HTTP__LISTEN".into(), "127.0.0.1:0".into()),
        (
            "PRESENCE_BRIDGE__ADMIN__LISTEN".into(),
            "127.0.0.1:0".into(),
        ),
        ("PRESENCE_BRIDGE__KAFKA__BROKERS".into(), brokers.into()),
        ("PRESENCE_BRIDGE__KAFKA__TOPIC".into(), topic.into()),
        ("PRESENCE_BRIDGE__AUTH__TOKENS".into(), TOKEN.into()),
        (
            "PRESENCE_BRIDGE__SPOOL__DIR".into(),
            spool.display().to_string(),
        ),
        ("PRESENCE_BRIDGE__SHUTDOWN__DRAIN_SPOOL".into(), "0".into()),
    ];
    for (k, v) in extra {
        env.push(((*k).into(), (*v).into()));
    }
    config::load(None, env).expect("test settings are valid")
}

/// A bridge in front of its own mock cluster, with its own spool directory.
pub struct Bridge {
    pub spool: tempfile::TempDir,
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    pub api: Api,
}

impl std::ops::Deref for Bridge {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A broker (with the test topic) and a spool directory that outlive the
/// bridges started on them: for outages across a stop and a restart.
pub struct Restarts {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    pub topic: String,
    pub spool: tempfile::TempDir,
}

impl Restarts {
    pub fn new() -> Self {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let topic = unique_topic();
        cluster.create_topic(&topic, PARTITIONS, 1).expect("topic");
        // Every presence event is stored with its state for this topic.
        cluster
            .create_topic(LATEST_TOPIC, PARTITIONS, 1)
            .expect("latest topic");
        let spool = tempfile::tempdir().expect("temp dir");
        Self {
            cluster,
            topic,
            spool,
        }
    }

    /// Starts a bridge on the broker and the spool (not waiting for
    /// readiness: the broker may be down).
    pub async fn start(&self, extra: &[(&str, &str)]) -> Api {
        let brokers = self.cluster.bootstrap_servers();
        let s = settings(&brokers, &self.topic, self.spool.path(), extra);
        let running = app::start(s, brokers, None).await.expect("bridge starts");
        Bridge::attach(running, &self.topic)
    }

    /// Every record of the topic (see [`read_all`]).
    pub async fn read_all(&self) -> Vec<Record> {
        read_all(&self.cluster.bootstrap_servers(), &self.topic).await
    }
}

/// A running bridge seen from outside: HTTP, admin and metrics.
pub struct Api {
    pub running: Running,
    pub topic: String,
    pub client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Bridge {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let topic = unique_topic();
        cluster.create_topic(&topic, PARTITIONS, 1).expect("topic");
        cluster
            .create_topic(LATEST_TOPIC, PARTITIONS, 1)
            .expect("latest topic");
        let spool = tempfile::tempdir().expect("temp dir");
        let s = settings(&cluster.bootstrap_servers(), &topic, spool.path(), extra);
        let running = app::start(s, cluster.bootstrap_servers(), None)
            .await
            .expect("bridge starts");
        let api = Self::attach(running, &topic);
        api.wait_ready().await;
        Self {
            spool,
            cluster,
            api,
        }
    }

    /// Shuts the bridge down and waits for the drain; the broker and the
    /// spool go after it.
    pub async fn stop(self) -> presence_bridge::app::ShutdownReport {
        let Self {
            spool,
            cluster,
            api,
        } = self;
        api.running.shutdown();
        let report = api.into_running().wait().await;
        drop((cluster, spool));
        report
    }

    /// Reads `n` messages of the test topic from the beginning (bounded wait).
    pub async fn read(&self, n: usize) -> Vec<Record> {
        read_topic(&self.cluster.bootstrap_servers(), &self.api.topic, n).await
    }

    /// Every record of the test topic (see [`read_all`]).
    pub async fn read_all(&self) -> Vec<Record> {
        read_all(&self.cluster.bootstrap_servers(), &self.api.topic).await
    }

    /// Wraps an already running bridge (the caller owns the broker and spool).
    pub fn attach(running: Running, topic: &str) -> Api {
        Api {
            running,
            topic: topic.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl Api {
    pub fn into_running(self) -> Running {
        self.running
    }

    /// Shuts the bridge down and waits for the drain.
    pub async fn stop(self) -> presence_bridge::app::ShutdownReport {
        self.running.shutdown();
        self.running.wait().await
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.running.webhook_addr, path_and_query)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.running.admin_addr, path)
    }

    /// Polls `/readyz` until 200.
    pub async fn wait_ready(&self) {
        eventually("the bridge is ready", || async {
            (self.get(&self.admin_url("/readyz")).await.0 == StatusCode::OK).then_some(())
        })
        .await
    }

    pub async fn get(&self, url: &str) -> (StatusCode, String) {
        let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
        let resp = self.client.request(req).await.expect("GET");
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// POSTs `body` as JSON with the test token in the query string.
    pub async fn post_json(&self, body: &str) -> Reply {
        self.send(
            Method::POST,
            &format!("/webhooks/zapi/presence?token={TOKEN}"),
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        self.send_bytes(method, path, headers, body.as_bytes().to_vec())
            .await
    }

    /// Like [`Api::send`] with any bytes as the body.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let resp = self.client.request(req).await.expect("request");
        Reply::read(resp).await
    }

    pub fn metrics(&self) -> String {
        String::from_utf8(presence_bridge::metrics::render(&self.running.registry)).unwrap()
    }

    /// The value of one sample, e.g. `presence_bridge_events_rejected_total{reason="invalid_phone"}`.
    pub fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics(), sample)
    }

    /// Waits until a sample equals `want`.
    pub async fn wait_for_value(&self, sample: &str, want: f64) {
        let what = format!("{sample} == {want}");
        eventually(&what, || async {
            (self.metric(sample) == want).then_some(())
        })
        .await
    }

    /// Waits until a sample reaches `want`.
    pub async fn wait_for(&self, sample: &str, want: f64) {
        let what = format!("{sample} >= {want}");
        eventually(&what, || async {
            (self.metric(sample) >= want).then_some(())
        })
        .await
    }
}

pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no sample {sample} in metrics"))
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn read(resp: hyper::Response<hyper::body::Incoming>) -> Self {
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("an id").to_owned()
    }
}

/// One Kafka record as read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub headers: BTreeMap<String, String>,
    /// The envelope: the value, or (a binary-mode record) the envelope its
    /// headers and value make (`events::binary::to_structured`).
    pub value: Value,
    /// The record's value as it was in Kafka.
    pub payload: Vec<u8>,
}

pub async fn read_topic(brokers: &str, topic: &str, n: usize) -> Vec<Record> {
    read_from(&reader(brokers, topic), n).await
}

/// Every record the topic holds now: each partition read up to its high
/// watermark, so extras and duplicates show (`read_topic` stops at `n`).
/// Wait for what should be there first (e.g. the spool drained).
pub async fn read_all(brokers: &str, topic: &str) -> Vec<Record> {
    let consumer = reader(brokers, topic);
    let mut total = 0;
    for p in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, HANG)
            .expect("watermarks");
        total += usize::try_from(high - low).unwrap();
    }
    read_from(&consumer, total).await
}

fn reader(brokers: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", uuid::Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

async fn read_from(consumer: &StreamConsumer, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    while out.len() < n {
        let msg = tokio::time::timeout(HANG, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records arrived", out.len()))
            .expect("recv");
        let mut headers = BTreeMap::new();
        if let Some(hs) = msg.headers() {
            for h in hs.iter() {
                headers.insert(
                    h.key.to_owned(),
                    String::from_utf8(h.value.unwrap().to_vec()).unwrap(),
                );
            }
        }
        let payload = msg.payload().unwrap().to_vec();
        let value: Value =
            if presence_bridge::envelope::binary::is_binary(headers.keys().map(String::as_str)) {
                let envelope = presence_bridge::envelope::binary::to_structured(
                    headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), Some(v.as_bytes()))),
                    &payload,
                )
                .expect("a binary-mode record");
                serde_json::from_slice(&envelope).unwrap()
            } else {
                serde_json::from_slice(&payload).unwrap()
            };
        // Every message any test reads must satisfy its kind's published
        // schema; dead letters copied to their topic are the same envelopes.
        let kind = EventKind::ALL
            .iter()
            .position(|k| value["type"] == k.ce_type())
            .unwrap_or_else(|| panic!("a record of no known type: {:.300}", value.to_string()));
        assert_valid_envelope(&SCHEMAS[kind], &value);
        out.push(Record {
            partition: msg.partition(),
            offset: msg.offset(),
            key: String::from_utf8(msg.key().unwrap().to_vec()).unwrap(),
            headers,
            value,
            payload,
        });
    }
    out
}

/// The schema of each of [`EventKind::ALL`], compiled once.
static SCHEMAS: std::sync::LazyLock<Vec<jsonschema::Validator>> = std::sync::LazyLock::new(|| {
    EventKind::ALL
        .iter()
        .map(|k| schema(presence_bridge::envelope::schema::of_kind(*k)))
        .collect()
});

/// A published schema (`crates/events/schemas/`, as the events crate ships it), compiled.
fn schema(text: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&serde_json::from_str(text).unwrap()).expect("schema compiles")
}

/// The envelope JSON Schema, compiled.
pub fn envelope_schema() -> jsonschema::Validator {
    schema(presence_bridge::envelope::schema::PRESENCE_V1)
}

pub fn assert_valid_envelope(schema: &jsonschema::Validator, value: &Value) {
    let errors: Vec<String> = schema
        .iter_errors(value)
        .map(|e| format!("{:.300}", e.to_string()))
        .collect();
    assert!(
        errors.is_empty(),
        "envelope violates the schema: {errors:?}\n{:.2000}",
        value.to_string()
    );
}

pub fn callback(phone: &str, status: &str) -> String {
    format!(
        r#"{{"type":"PresenceChatCallback","phone":"{phone}","status":"{status}","lastSeen":null,"instanceId":"instance.id"}}"#
    )
}

pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Opens a connection and sends the head and the first half of a POST body;
/// returns once the bridge serves the connection (the gauge counts it), with
/// the rest of the body to send.
pub async fn half_sent_request(api: &Api, body: &str) -> (tokio::net::TcpStream, String) {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(api.running.webhook_addr)
        .await
        .unwrap();
    let head = format!(
        "POST /webhooks/zapi/presence?token={TOKEN} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.split_at(body.len() / 2);
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(first.as_bytes()).await.unwrap();
    // A wait for the event itself, not a sleep as proof.
    api.wait_for("presence_bridge_http_connections_open", 1.0)
        .await;
    (s, rest.to_owned())
}
