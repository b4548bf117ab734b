//! The dead-letter place for events Kafka refused permanently: a JSON-lines
//! file in the spool directory (always), and a Kafka topic (when
//! `spool.dead_letter_topic` is set). Each line names the reason and the
//! broker's error, and carries the record as it would have been sent.
//!
//! The file holds phone numbers (the record's key and payload): it is data
//! with the same protection as the spool, never a log.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};

use super::KafkaPublisher;

pub const FILE_NAME: &str = "dead-letter.jsonl";

#[derive(Clone)]
pub struct DeadLetter {
    path: PathBuf,
    topic: Option<(String, KafkaPublisher)>,
}

impl DeadLetter {
    pub fn new(spool_dir: &std::path::Path, topic: Option<(String, KafkaPublisher)>) -> Self {
        Self {
            path: spool_dir.join(FILE_NAME),
            topic,
        }
    }

    /// Records one refused event. Never fails: problems are logged.
    pub async fn write(
        &self,
        seq: u64,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        reason: &'static str,
        error: &str,
    ) {
        let parsed = value.map(|v| {
            serde_json::from_slice::<Value>(v)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(v).into_owned()))
        });
        let line = json!({
            "seq": seq,
            "topic": topic,
            "key": key.map(|k| String::from_utf8_lossy(k).into_owned()),
            "reason": reason,
            "error": error,
            "deadLetteredAt": crate::presence::format_millis(time::OffsetDateTime::now_utc()),
            "value": parsed,
        });
        let mut text = line.to_string();
        text.push('\n');
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
            f.write_all(text.as_bytes())?;
            f.sync_data()
        })
        .await;
        match written {
            Ok(Ok(())) => tracing::error!(
                seq,
                reason,
                topic,
                "event refused permanently by Kafka; dead-lettered"
            ),
            Ok(Err(e)) => {
                tracing::error!(seq, reason, error = %e, "event refused permanently and the dead-letter file could not be written")
            }
            Err(e) => tracing::error!(seq, reason, error = %e, "dead-letter write did not run"),
        }
        if let (Some((dl_topic, publisher)), Some(v)) = (&self.topic, value) {
            let headers = OwnedHeaders::new().insert(Header {
                key: "dead_letter_reason",
                value: Some(reason),
            });
            let mut rec = FutureRecord::to(dl_topic).payload(v).headers(headers);
            if let Some(k) = key {
                rec = rec.key(k);
            }
            let sent = tokio::time::timeout(
                Duration::from_secs(10),
                publisher.producer().send(rec, Duration::from_secs(1)),
            )
            .await;
            if !matches!(sent, Ok(Ok(_))) {
                tracing::warn!(seq, topic = %dl_topic, "could not copy a dead letter to the dead-letter topic; it is in the file");
            }
        }
    }
}
