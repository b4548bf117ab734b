//! Timers after a restart: the typing events still in the spool re-arm
//! theirs. The spool keeps a segment until every record in it is delivered,
//! so what is found is every typing event not yet delivered, and those
//! delivered whose segment was not yet deleted (the active segment, and any
//! older one that still holds an undelivered record). A typing event whose
//! segment was deleted before the restart has no timer afterwards: its
//! contact never gets an expiry from the bridge, and consumers expire it by
//! its `typingExpiresAt`.

use std::collections::HashMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{typing_status, Typing};
use crate::envelope::{expired, state, v1, EventKind};
use crate::spool::store::Store;
use crate::spool::SpoolError;

/// Records read at a time.
const BATCH: usize = 4096;

/// What a scan of the spool found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The typing contacts whose last event in the spool is a typing event
    /// with an expiry and no expiry after it, by key.
    pub typing: Vec<(String, Typing)>,
    /// Presence and expiry records read.
    pub scanned: u64,
}

/// Reads every record the spool still holds, oldest first (blocking I/O:
/// call it from a blocking thread, before the webhook listens).
pub fn recover(store: &Store) -> Result<Recovered, SpoolError> {
    let mut reader = store.reader();
    reader.seek(1);
    let mut typing: HashMap<String, Typing> = HashMap::new();
    let mut scanned = 0;
    loop {
        let (records, _) = reader.read(store, BATCH)?;
        if records.is_empty() {
            break;
        }
        for rec in records {
            match EventKind::from_code(rec.kind.0) {
                Some(EventKind::Presence) => {
                    scanned += 1;
                    let Ok(e) = v1::Envelope::decode(&rec.value) else {
                        continue;
                    };
                    let key = state::key(&e.data.instance_id, &e.data.phone);
                    match typing_of(&e) {
                        Some(t) => {
                            typing.insert(key, t);
                        }
                        None => {
                            typing.remove(&key);
                        }
                    }
                }
                Some(EventKind::PresenceExpired) => {
                    scanned += 1;
                    if let Ok(e) = expired::Envelope::decode(&rec.value) {
                        let key = state::key(&e.data.instance_id, &e.data.phone);
                        if typing.get(&key).is_some_and(|t| t.cause == e.data.cause_id) {
                            typing.remove(&key);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Recovered {
        typing: typing.into_iter().collect(),
        scanned,
    })
}

fn typing_of(e: &v1::Envelope) -> Option<Typing> {
    if !super::is_typing(&e.data.status) {
        return None;
    }
    Some(Typing {
        deadline: tokio::time::Instant::now(),
        expires_ms: ms(e.data.typing_expires_at.as_deref()?)?,
        since_ms: ms(&e.time)?,
        status: typing_status(&e.data.status),
        last_seen_ms: e.data.last_seen.as_deref().and_then(ms),
        cause: e.id,
        gen: 0,
    })
}

fn ms(rfc3339: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(rfc3339, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}
