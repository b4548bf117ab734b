//! `presence-bridge tail`: an operator's view of the topic. Prints every
//! message as one JSON line `{topic, partition, offset, timestamp, key,
//! headers, value}` on stdout, the value parsed as JSON when it is JSON.
//!
//! Brokers come from the configuration; when none are configured, `tail` asks
//! the admin listener of a running `serve --dev` (`/dev/kafka`) where its
//! embedded broker is, so it works against the quick start with no flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::admin::DEV_DISCOVERY_PATH;
use crate::config::Settings;
use crate::publisher::{BridgeContext, Scrubber};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartAt {
    /// Every message still in the topic.
    Beginning,
    /// Only messages produced from now on.
    End,
}

#[derive(Debug, Clone)]
pub struct TailOptions {
    pub topic: Option<String>,
    pub from: StartAt,
    /// Stop after this many messages.
    pub limit: Option<u64>,
    /// Stop when no message arrived for this long.
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("no kafka.brokers configured and no `serve --dev` answered on {0} ({1}); set PRESENCE_BRIDGE__KAFKA__BROKERS or start `presence-bridge serve --dev`")]
    NoBrokers(SocketAddr, String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic `{0}` does not exist or has no partitions")]
    NoSuchTopic(String),
    #[error("writing to stdout: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs until `limit` messages were printed, the idle timeout passed, or `stop`.
pub async fn run(
    settings: &Settings,
    opts: TailOptions,
    stop: CancellationToken,
) -> Result<u64, TailError> {
    let (brokers, topic) = if settings.kafka.brokers.is_empty() {
        discover(settings.admin.listen).await?
    } else {
        (
            settings.kafka.brokers.join(","),
            settings.kafka.topic.clone(),
        )
    };
    let topic = opts.topic.clone().unwrap_or(topic);
    let mut cfg = ClientConfig::new();
    for (k, v) in &settings.kafka.properties {
        cfg.set(k, v);
    }
    cfg.set("bootstrap.servers", &brokers)
        .set(
            "group.id",
            format!("presence-bridge-tail-{}", uuid::Uuid::now_v7()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");

    let scrubber = Scrubber::new(&settings.kafka.properties);
    let partitions = {
        let (cfg, scrubber) = (cfg.clone(), scrubber.clone());
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<i32>, TailError> {
            let probe: BaseConsumer<BridgeContext> = cfg
                .create_with_context(BridgeContext::new(scrubber.clone()))
                .map_err(|e| scrubber.error(e))?;
            let md = probe.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            Ok(md
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect())
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??
    };
    if partitions.is_empty() {
        return Err(TailError::NoSuchTopic(topic));
    }
    let consumer: StreamConsumer<BridgeContext> = cfg
        .create_with_context(BridgeContext::new(scrubber.clone()))
        .map_err(|e| scrubber.error(e))?;
    let mut tpl = TopicPartitionList::new();
    let offset = match opts.from {
        StartAt::Beginning => Offset::Beginning,
        StartAt::End => Offset::End,
    };
    for p in partitions {
        tpl.add_partition_offset(&topic, p, offset)?;
    }
    consumer.assign(&tpl)?;
    {
        use std::io::Write as _;
        // A closed stderr loses the line; it never stops `tail`.
        let _ = writeln!(
            std::io::stderr().lock(),
            "tail: reading {topic} from {brokers} (Ctrl-C to stop)"
        );
    }

    let mut printed = 0u64;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    while opts.limit.is_none_or(|l| printed < l) {
        let idle = opts.idle_timeout.unwrap_or(Duration::MAX);
        let msg = tokio::select! {
            _ = stop.cancelled() => break,
            r = tokio::time::timeout(idle, consumer.recv()) => match r {
                Err(_) => break,
                Ok(m) => m?,
            },
        };
        writeln!(out, "{}", render(&msg))?;
        out.flush()?;
        printed += 1;
    }
    Ok(printed)
}

/// One message as a JSON line.
fn render(msg: &impl Message) -> Value {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut headers = BTreeMap::new();
    if let Some(hs) = msg.headers() {
        for h in hs.iter() {
            headers.insert(h.key.to_owned(), h.value.map(text));
        }
    }
    let value = msg
        .payload()
        .map(|p| serde_json::from_slice::<Value>(p).unwrap_or_else(|_| Value::String(text(p))));
    json!({
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp": msg.timestamp().to_millis(),
        "key": msg.key().map(text),
        "headers": headers,
        "value": value,
    })
}

/// Asks `serve --dev`'s admin listener for its embedded broker.
async fn discover(admin: SocketAddr) -> Result<(String, String), TailError> {
    let addr = if admin.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), admin.port())
    } else {
        admin
    };
    let fail = |e: &dyn std::fmt::Display| TailError::NoBrokers(addr, e.to_string());
    let body = tokio::time::timeout(Duration::from_secs(5), get(addr, DEV_DISCOVERY_PATH))
        .await
        .map_err(|e| fail(&e))?
        .map_err(|e| fail(&e))?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| fail(&e))?;
    match (v["bootstrap"].as_str(), v["topic"].as_str()) {
        (Some(b), Some(t)) => Ok((b.to_owned(), t.to_owned())),
        _ => Err(fail(&"the admin listener is not in --dev mode")),
    }
}

async fn get(
    addr: SocketAddr,
    path: &str,
) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        return Err(format!("{path} answered {}", resp.status()).into());
    }
    Ok(resp.into_body().collect().await?.to_bytes())
}
