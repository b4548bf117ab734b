//! A consumer of the compacted latest-presence topic (`kafka.latest.topic`,
//! default `whatsapp.presence.latest.v1`): it keeps the current presence of
//! every contact in memory and prints a line each time one changes.
//!
//!   cargo run --example latest_presence -- BROKERS TOPIC [--until-idle SECONDS]
//!   cargo run --example latest_presence -- localhost:9094 whatsapp.presence.latest.v1
//!
//! What it shows a consumer of the topic has to do:
//! - read every partition from the beginning (no consumer group offsets): the
//!   topic is compacted, so that is the newest state of every contact, plus
//!   whatever history compaction has not removed yet;
//! - keep one state per key `<instanceId>:<phone>`, the newest record wins
//!   (a key's records are on one partition, in order);
//! - a record with a null value is a tombstone (`presence-bridge presence
//!   forget`): the contact's state is deleted;
//! - a COMPOSING or RECORDING state carries `typingExpiresAt`: past that time,
//!   with nothing newer, the contact is PAUSED. The bridge writes that PAUSED
//!   itself, but a consumer that reads the state after a bridge restart (or
//!   before the bridge's record arrives) takes it as PAUSED on its own;
//! - decode with the envelope types the bridge writes with
//!   (`presence_bridge::envelope::state`, the `events` crate), ignore record
//!   types it does not know, and never print a phone in full.
//!
//! Output, one line each, phones masked (`55*********99`):
//!   `change INSTANCE PHONE STATUS reason=REASON since=TIME [typingExpiresAt=TIME]`
//!   `forget INSTANCE PHONE`
//!   on `--until-idle` (no record for SECONDS): `state INSTANCE PHONE STATUS
//!   reason=REASON` per contact, sorted, then `contacts N`, and it exits 0.

use std::collections::HashMap;
use std::time::Duration;

use presence_bridge::envelope::state;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What can stop the example.
#[derive(Debug, thiserror::Error)]
enum ExampleError {
    #[error("usage: latest_presence BROKERS TOPIC [--until-idle SECONDS] ({0})")]
    Usage(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic {0} does not exist or has no partitions")]
    NoSuchTopic(String),
}

/// The reason shown for a typing state this consumer expired by itself.
const LOCAL_EXPIRY: &str = "typing_expired_locally";

struct Args {
    brokers: String,
    topic: String,
    until_idle: Option<Duration>,
}

fn parse_args() -> Result<Args, ExampleError> {
    let mut positional = Vec::new();
    let mut until_idle = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--until-idle" {
            let v = it
                .next()
                .ok_or_else(|| ExampleError::Usage("--until-idle needs SECONDS".into()))?;
            let secs: f64 = v
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                .ok_or_else(|| ExampleError::Usage(format!("bad SECONDS {v:?}")))?;
            until_idle = Some(Duration::from_secs_f64(secs));
        } else {
            positional.push(a);
        }
    }
    match <[String; 2]>::try_from(positional) {
        Ok([brokers, topic]) => Ok(Args {
            brokers,
            topic,
            until_idle,
        }),
        Err(p) => Err(ExampleError::Usage(format!(
            "{} positional arguments",
            p.len()
        ))),
    }
}

/// A contact's state as this consumer sees it.
struct Contact {
    data: state::Data,
    /// The typing state ran past `typingExpiresAt` with nothing newer.
    expired_locally: bool,
}

impl Contact {
    fn status(&self) -> &str {
        if self.expired_locally {
            "PAUSED"
        } else {
            &self.data.status
        }
    }

    fn reason(&self) -> &str {
        if self.expired_locally {
            LOCAL_EXPIRY
        } else {
            &self.data.reason
        }
    }

    /// When a typing state ends if nothing newer comes.
    fn typing_deadline(&self) -> Option<OffsetDateTime> {
        if self.expired_locally || !matches!(self.data.status.as_str(), "COMPOSING" | "RECORDING") {
            return None;
        }
        let t = self.data.typing_expires_at.as_deref()?;
        OffsetDateTime::parse(t, &Rfc3339).ok()
    }
}

/// A phone safe to print: the bridge's own masking (`55*********99`).
fn mask(phone: &str) -> String {
    match zapi::Phone::parse(phone) {
        Ok(p) => p.masked().to_string(),
        Err(_) => "*".repeat(phone.chars().count().clamp(1, 24)),
    }
}

/// The instance and masked phone of a key, for printing.
fn who(key: &str) -> (String, String) {
    match state::split_key(key) {
        Some((instance, phone)) => (instance.to_owned(), mask(phone)),
        None => ("?".into(), mask(key)),
    }
}

fn header<'a>(msg: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a [u8]> {
    msg.headers()?
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))
        .and_then(|h| h.value)
}

/// A record's value as a state. Structured content mode (the default): the
/// value is the whole CloudEvent. Binary mode (`ce_specversion` header, a
/// `content-type` that is not `application/cloudevents...`): the value is the
/// data and the attributes are `ce_` headers.
fn decode(msg: &BorrowedMessage<'_>, value: &[u8]) -> Result<Option<state::Data>, String> {
    let binary = header(msg, "ce_specversion").is_some()
        && !header(msg, "content-type").is_some_and(|c| c.starts_with(b"application/cloudevents"));
    if binary {
        let kind = header(msg, "ce_type").unwrap_or_default();
        if kind != state::TYPE.as_bytes() {
            return Ok(None);
        }
        return serde_json::from_slice(value)
            .map(Some)
            .map_err(|e| e.to_string());
    }
    match state::Envelope::decode(value) {
        Ok(env) => Ok(Some(env.data)),
        Err(presence_bridge::envelope::DecodeError::WrongType { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

struct View {
    contacts: HashMap<String, Contact>,
}

impl View {
    fn print_change(key: &str, c: &Contact) {
        let (instance, phone) = who(key);
        let mut line = format!(
            "change {instance} {phone} {} reason={} since={}",
            c.status(),
            c.reason(),
            if c.expired_locally {
                c.data.typing_expires_at.as_deref().unwrap_or(&c.data.since)
            } else {
                &c.data.since
            }
        );
        if let (false, Some(t)) = (c.expired_locally, &c.data.typing_expires_at) {
            line.push_str(" typingExpiresAt=");
            line.push_str(t);
        }
        println!("{line}");
    }

    /// A state record: the newest of its key wins.
    fn update(&mut self, key: &str, data: state::Data, now: OffsetDateTime) {
        if self.contacts.get(key).is_some_and(|c| c.data == data) {
            return; // the same record again (a retried write): nothing changed
        }
        let mut c = Contact {
            data,
            expired_locally: false,
        };
        // Read late (from the beginning, or after a bridge restart): a typing
        // state already past its expiry is PAUSED now.
        if c.typing_deadline().is_some_and(|d| d <= now) {
            c.expired_locally = true;
        }
        Self::print_change(key, &c);
        self.contacts.insert(key.to_owned(), c);
    }

    /// A tombstone: the contact's state is deleted.
    fn forget(&mut self, key: &str) {
        if self.contacts.remove(key).is_some() {
            let (instance, phone) = who(key);
            println!("forget {instance} {phone}");
        }
    }

    /// Typing states past their `typingExpiresAt` become PAUSED.
    fn expire(&mut self, now: OffsetDateTime) {
        let keys: Vec<String> = self
            .contacts
            .iter()
            .filter(|(_, c)| c.typing_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(c) = self.contacts.get_mut(&k) {
                c.expired_locally = true;
                Self::print_change(&k, c);
            }
        }
    }

    fn print_all(&self) {
        let mut lines: Vec<String> = self
            .contacts
            .iter()
            .map(|(k, c)| {
                let (instance, phone) = who(k);
                format!(
                    "state {instance} {phone} {} reason={}",
                    c.status(),
                    c.reason()
                )
            })
            .collect();
        lines.sort();
        for l in lines {
            println!("{l}");
        }
        println!("contacts {}", self.contacts.len());
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latest_presence: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), ExampleError> {
    let args = parse_args()?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        // No offsets are committed: every start reads the whole topic again.
        .set(
            "group.id",
            format!("latest-presence-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false")
        .create()?;

    // Every partition, from the beginning.
    let topic = args.topic.clone();
    let metadata = tokio::task::block_in_place(|| {
        consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))
    })?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == args.topic) {
        if t.error().is_some() {
            continue;
        }
        for p in t.partitions() {
            tpl.add_partition_offset(&args.topic, p.id(), Offset::Beginning)?;
        }
    }
    if tpl.count() == 0 {
        return Err(ExampleError::NoSuchTopic(args.topic));
    }
    consumer.assign(&tpl)?;
    eprintln!(
        "latest_presence: reading {} ({} partitions) from the beginning",
        args.topic,
        tpl.count()
    );

    let mut view = View {
        contacts: HashMap::new(),
    };
    let mut skipped = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut idle_since = tokio::time::Instant::now();
    loop {
        let idle_left = args
            .until_idle
            .map(|d| d.saturating_sub(idle_since.elapsed()));
        if idle_left == Some(Duration::ZERO) {
            break;
        }
        tokio::select! {
            m = consumer.recv() => {
                let msg = m?;
                idle_since = tokio::time::Instant::now();
                let now = OffsetDateTime::now_utc();
                let Some(key) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    skipped += 1;
                    eprintln!("latest_presence: partition {} offset {}: no key, skipped", msg.partition(), msg.offset());
                    continue;
                };
                let key = key.to_owned();
                match msg.payload() {
                    None => view.forget(&key),
                    Some(value) => match decode(&msg, value) {
                        Ok(Some(data)) => view.update(&key, data, now),
                        Ok(None) => {} // a record type this consumer does not know
                        Err(e) => {
                            skipped += 1;
                            eprintln!("latest_presence: partition {} offset {}: undecodable ({e}), skipped", msg.partition(), msg.offset());
                        }
                    },
                }
            }
            _ = tick.tick() => view.expire(OffsetDateTime::now_utc()),
        }
    }
    view.expire(OffsetDateTime::now_utc());
    view.print_all();
    if skipped > 0 {
        eprintln!("latest_presence: {skipped} record(s) skipped");
    }
    Ok(())
}
