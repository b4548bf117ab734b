//! `[kafka]`: brokers, the presence topic and the topic per instance, the
//! topics of the other callback kinds (`[kafka.received]`,
//! `[kafka.message_status]`, `[kafka.delivery]`, `[kafka.connection]`, each a
//! topic and a topic per instance), the CloudEvents content mode of each
//! (`content_mode`: structured or binary, one per topic), compression,
//! linger, the broker probe, and `kafka.properties` passed to librdkafka
//! (checked in [`super::properties`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::properties::{check_producer, check_properties, redacted_properties};
use super::values::{deserialize_setting, dotted, human, topic_name, Dur, OneOrMany, Setting};
use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize)]
pub struct KafkaSettings {
    /// Empty means "not configured": `serve` refuses to start without `--dev`.
    pub brokers: Vec<String>,
    pub topic: String,
    pub topic_by_instance: BTreeMap<String, String>,
    /// The content mode of the presence topics, and of every other topic
    /// whose section does not set its own.
    pub content_mode: ContentMode,
    /// `[kafka.received]`: messages (`ReceivedCallback`).
    pub received: Destination,
    /// `[kafka.message_status]`: `MessageStatusCallback`.
    pub message_status: Destination,
    /// `[kafka.delivery]`: `DeliveryCallback`.
    pub delivery: Destination,
    /// `[kafka.connection]`: `ConnectedCallback` and `DisconnectedCallback`.
    pub connection: Destination,
    /// `[kafka.latest]`: the compacted latest-presence topic; `None` when
    /// `kafka.latest.enabled = false`.
    #[serde(serialize_with = "latest_json")]
    pub latest: Option<Destination>,
    /// Passed to librdkafka as is; values of secret-looking keys are redacted
    /// when serialized.
    #[serde(serialize_with = "redacted_properties")]
    pub properties: BTreeMap<String, String>,
    pub compression: String,
    #[serde(with = "human")]
    pub linger: Duration,
    /// How often a metadata request checks that a broker answers (readiness,
    /// `presence_bridge_kafka_broker_reachable`).
    #[serde(with = "human")]
    pub probe_interval: Duration,
    /// The content mode of each configured topic (every event topic, and the
    /// rejected-input topic, added by the loader); see [`Self::content_mode_of`].
    #[serde(skip)]
    pub topic_modes: BTreeMap<String, (String, ContentMode)>,
}

/// `content_mode`: how a record carries its CloudEvent (the CloudEvents Kafka
/// protocol binding). The spool always holds the structured envelope; the
/// publisher lays it out at send time (`events::binary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentMode {
    /// The value is the whole envelope (`application/cloudevents+json`).
    #[default]
    Structured,
    /// The value is the event's `data`, every attribute a `ce_` header.
    Binary,
}

impl ContentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Structured => "structured",
            Self::Binary => "binary",
        }
    }
}

impl Setting for ContentMode {
    fn parse(v: &str) -> Result<Self, String> {
        match v {
            "structured" => Ok(Self::Structured),
            "binary" => Ok(Self::Binary),
            _ => Err("must be `structured` or `binary`".to_owned()),
        }
    }
}

deserialize_setting!(ContentMode);

/// The families of topics: presence (`kafka.topic`) and one per other kind
/// of callback, connected and disconnected sharing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Presence,
    Received,
    MessageStatus,
    Delivery,
    Connection,
}

/// Where one stream's events go: a topic, and another for some instances,
/// and how their records carry the CloudEvent.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Destination {
    pub topic: String,
    pub topic_by_instance: BTreeMap<String, String>,
    /// The section's `content_mode`, else `kafka.content_mode`.
    pub content_mode: ContentMode,
}

impl Destination {
    fn topic_for(&self, instance_id: &str) -> &str {
        self.topic_by_instance
            .get(instance_id)
            .map_or(self.topic.as_str(), String::as_str)
    }

    fn topics(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.topic).chain(self.topic_by_instance.values())
    }
}

impl KafkaSettings {
    /// The topic for a presence event of this instance.
    pub fn topic_for(&self, instance_id: &str) -> &str {
        self.topic_by_instance
            .get(instance_id)
            .map_or(self.topic.as_str(), String::as_str)
    }

    /// The topic for an event of `stream` from this instance.
    pub fn stream_topic(&self, stream: Stream, instance_id: &str) -> &str {
        match stream {
            Stream::Presence => self.topic_for(instance_id),
            Stream::Received => self.received.topic_for(instance_id),
            Stream::MessageStatus => self.message_status.topic_for(instance_id),
            Stream::Delivery => self.delivery.topic_for(instance_id),
            Stream::Connection => self.connection.topic_for(instance_id),
        }
    }

    /// How records to `topic` carry their CloudEvent: the mode of the section
    /// that names it; `kafka.content_mode` for a topic no section names (one
    /// left in the spool by an earlier configuration).
    pub fn content_mode_of(&self, topic: &str) -> ContentMode {
        self.topic_modes
            .get(topic)
            .map_or(self.content_mode, |(_, mode)| *mode)
    }

    /// Records that `key` writes `topic` in `mode`; a topic named by two
    /// sections in different modes is an error naming the second key.
    pub fn claim_topic_mode(
        &mut self,
        key: &str,
        topic: &str,
        mode: ContentMode,
    ) -> Result<(), ConfigError> {
        match self.topic_modes.get(topic) {
            Some((other, m)) if *m != mode => Err(invalid(
                key,
                format!(
                    "topic `{topic}` is {} here but {} by {other}; a topic has one content mode",
                    mode.as_str(),
                    m.as_str()
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.topic_modes
                    .insert(topic.to_owned(), (key.to_owned(), mode));
                Ok(())
            }
        }
    }

    /// Every section's topics with their content mode, for
    /// [`Self::claim_topic_mode`]: `(content_mode key, topic, mode)`.
    fn sections(&self) -> Vec<(String, String, ContentMode)> {
        let mut out: Vec<(String, String, ContentMode)> = std::iter::once(&self.topic)
            .chain(self.topic_by_instance.values())
            .map(|t| {
                (
                    "kafka.content_mode".to_owned(),
                    t.clone(),
                    self.content_mode,
                )
            })
            .collect();
        let streams = [
            ("kafka.received", &self.received),
            ("kafka.message_status", &self.message_status),
            ("kafka.delivery", &self.delivery),
            ("kafka.connection", &self.connection),
        ];
        let streams = streams
            .into_iter()
            .chain(self.latest.as_ref().map(|d| ("kafka.latest", d)));
        for (section, d) in streams {
            for t in d.topics() {
                out.push((format!("{section}.content_mode"), t.clone(), d.content_mode));
            }
        }
        out
    }

    /// The latest-presence topic of this instance; `None` when off.
    pub fn latest_topic(&self, instance_id: &str) -> Option<&str> {
        self.latest.as_ref().map(|d| d.topic_for(instance_id))
    }

    /// Every latest-presence topic (none when off).
    pub fn latest_topics(&self) -> impl Iterator<Item = &String> {
        self.latest.iter().flat_map(Destination::topics)
    }

    /// Every event topic, `kafka.topic` first (with repeats), then the
    /// latest-presence topics.
    pub fn event_topics(&self) -> impl Iterator<Item = &String> {
        self.stream_topics().chain(self.latest_topics())
    }

    /// The topics of the callbacks' events (without the latest-presence ones).
    fn stream_topics(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.topic)
            .chain(self.topic_by_instance.values())
            .chain(self.received.topics())
            .chain(self.message_status.topics())
            .chain(self.delivery.topics())
            .chain(self.connection.topics())
    }
}

/// `kafka.compression`: the codecs librdkafka's `compression.type` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    const ALL: [(&'static str, Self); 5] = [
        ("none", Self::None),
        ("gzip", Self::Gzip),
        ("snappy", Self::Snappy),
        ("lz4", Self::Lz4),
        ("zstd", Self::Zstd),
    ];

    /// librdkafka's name of the codec.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map_or("none", |(name, _)| name)
    }
}

impl Setting for Compression {
    fn parse(v: &str) -> Result<Self, String> {
        let v = v.to_ascii_lowercase();
        Self::ALL
            .iter()
            .find(|(name, _)| *name == v)
            .map(|(_, c)| *c)
            .ok_or_else(|| "must be one of none, gzip, snappy, lz4, zstd".to_owned())
    }
}

deserialize_setting!(Compression);

raw_section! {
    /// `[kafka]` as read.
    pub struct RawKafka {
        brokers: OneOrMany<String> = OneOrMany::default(),
        topic: String = "whatsapp.presence.v1".into(),
        topic_by_instance: HashMap<String, Nested> = HashMap::new(),
        content_mode: ContentMode = ContentMode::Structured,
        received: RawDestination = RawDestination::default(),
        message_status: RawDestination = RawDestination::default(),
        delivery: RawDestination = RawDestination::default(),
        connection: RawDestination = RawDestination::default(),
        latest: RawLatest = RawLatest::default(),
        properties: HashMap<String, Nested> = HashMap::new(),
        compression: Compression = Compression::Lz4,
        linger: Dur = Dur::millis(5),
        probe_interval: Dur = Dur::secs(5),
    }
}

raw_section! {
    /// `[kafka.received]` and the other streams' sections as read; a missing
    /// `topic` is the stream's default.
    pub struct RawDestination {
        topic: Option<String> = None,
        topic_by_instance: HashMap<String, Nested> = HashMap::new(),
        content_mode: Option<ContentMode> = None,
    }
}

raw_section! {
    /// `[kafka.latest]` as read: the compacted latest-presence topic.
    pub struct RawLatest {
        enabled: bool = true,
        topic: Option<String> = None,
        topic_by_instance: HashMap<String, Nested> = HashMap::new(),
        content_mode: Option<ContentMode> = None,
    }
}

/// `[kafka.latest]` as `check-config` shows it: `enabled`, then the
/// destination's keys when on.
fn latest_json<S: serde::Serializer>(
    latest: &Option<Destination>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(None)?;
    m.serialize_entry("enabled", &latest.is_some())?;
    if let Some(d) = latest {
        m.serialize_entry("topic", &d.topic)?;
        m.serialize_entry("topic_by_instance", &d.topic_by_instance)?;
        m.serialize_entry("content_mode", &d.content_mode)?;
    }
    m.end()
}

/// The latest-presence topic used when `kafka.latest.topic` is not set.
pub const DEFAULT_LATEST_TOPIC: &str = "whatsapp.presence.latest.v1";

/// A stream's section into its destination: `section` names the keys in
/// errors (`kafka.received`), `default` is its topic when none is given,
/// `mode` its content mode when none is given (`kafka.content_mode`).
fn destination(
    section: &str,
    default: &str,
    mode: ContentMode,
    raw: RawDestination,
) -> Result<Destination, ConfigError> {
    let topic = raw.topic.unwrap_or_else(|| default.to_owned());
    topic_name(&format!("{section}.topic"), &topic)?;
    let key = format!("{section}.topic_by_instance");
    let topic_by_instance = flatten(&key, raw.topic_by_instance)?;
    for (instance, topic) in &topic_by_instance {
        topic_name(&format!("{key}.{instance}"), topic)?;
    }
    Ok(Destination {
        topic,
        topic_by_instance,
        content_mode: raw.content_mode.unwrap_or(mode),
    })
}

/// A map value: a string, or a nested map when the key had dots in it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Nested {
    Leaf(String),
    Int(i64),
    Bool(bool),
    Map(HashMap<String, Nested>),
}

impl TryFrom<RawKafka> for KafkaSettings {
    type Error = ConfigError;

    fn try_from(k: RawKafka) -> Result<Self, ConfigError> {
        let brokers = k.brokers.0;
        for b in &brokers {
            if b.is_empty() || b.contains(char::is_whitespace) || !b.contains(':') {
                return Err(invalid("kafka.brokers", format!("`{b}` is not HOST:PORT")));
            }
        }
        topic_name("kafka.topic", &k.topic)?;
        let topic_by_instance = flatten("kafka.topic_by_instance", k.topic_by_instance)?;
        for (instance, topic) in &topic_by_instance {
            topic_name(&format!("kafka.topic_by_instance.{instance}"), topic)?;
        }
        let mode = k.content_mode;
        let received = destination("kafka.received", "whatsapp.messages.v1", mode, k.received)?;
        let message_status = destination(
            "kafka.message_status",
            "whatsapp.message-status.v1",
            mode,
            k.message_status,
        )?;
        let delivery = destination("kafka.delivery", "whatsapp.delivery.v1", mode, k.delivery)?;
        let connection = destination(
            "kafka.connection",
            "whatsapp.connection.v1",
            mode,
            k.connection,
        )?;
        let latest = if k.latest.enabled {
            let raw = RawDestination {
                topic: k.latest.topic,
                topic_by_instance: k.latest.topic_by_instance,
                content_mode: k.latest.content_mode,
            };
            Some(destination(
                "kafka.latest",
                DEFAULT_LATEST_TOPIC,
                mode,
                raw,
            )?)
        } else {
            None
        };
        let properties = flatten("kafka.properties", k.properties)?;
        check_properties(&properties)?;
        let linger = k.linger.0;
        if !linger.subsec_nanos().is_multiple_of(1_000_000) || linger > Duration::from_secs(900) {
            return Err(invalid(
                "kafka.linger",
                "must be whole milliseconds, at most 900s (librdkafka's linger.ms)",
            ));
        }
        let mut kafka = Self {
            brokers,
            topic: k.topic,
            topic_by_instance,
            content_mode: mode,
            received,
            message_status,
            delivery,
            connection,
            latest,
            properties,
            compression: k.compression.as_str().to_owned(),
            linger,
            probe_interval: k.probe_interval.0,
            topic_modes: BTreeMap::new(),
        };
        // A compacted topic keeps one record per key: sharing one with a
        // stream would lose that stream's history.
        for t in kafka.latest_topics() {
            if kafka.stream_topics().any(|s| s == t) {
                return Err(invalid(
                    "kafka.latest.topic",
                    format!("`{t}` is also an event topic; the latest-presence topic is compacted and needs a topic of its own"),
                ));
            }
        }
        for (key, topic, mode) in kafka.sections() {
            kafka.claim_topic_mode(&key, &topic, mode)?;
        }
        check_producer(&kafka)?;
        Ok(kafka)
    }
}

/// Maps may arrive nested when their keys contain dots (`security.protocol`
/// becomes `{security: {protocol: ..}}` through the environment); joins them back.
fn flatten(
    key: &str,
    map: HashMap<String, Nested>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    fn walk(prefix: &str, map: HashMap<String, Nested>, out: &mut BTreeMap<String, String>) {
        for (k, v) in map {
            match v {
                Nested::Leaf(s) => {
                    out.insert(dotted(prefix, k), s);
                }
                Nested::Int(i) => {
                    out.insert(dotted(prefix, k), i.to_string());
                }
                Nested::Bool(b) => {
                    out.insert(dotted(prefix, k), b.to_string());
                }
                Nested::Map(m) => walk(&dotted(prefix, k), m, out),
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", map, &mut out);
    if let Some(empty) = out.keys().find(|k| k.is_empty()) {
        return Err(invalid(key, format!("empty key `{empty}`")));
    }
    Ok(out)
}
