//! Dead letters are recoverable: written with their exact bytes, listed with
//! filters, replayed into the spool with their ids and order; a failed write
//! is an error; the file counts against `spool.max_bytes`; a running bridge's
//! lock stops a replay with a clear message; format-1 lines still list.

mod common;

use std::path::Path;
use std::process::Output;

use presence_bridge::metrics::Metrics;
use presence_bridge::publisher::dead_letter::tools::{
    self, Filter, Line, ReplayOptions, ReplayReport,
};
use presence_bridge::publisher::dead_letter::{DeadLetter, DeadLetterError, FILE_NAME};
use presence_bridge::spool::format::StoredRecord;
use presence_bridge::spool::store::{NewRecord, Store, StoreOptions};
use presence_bridge::spool::{FsyncPolicy, RecordKind, SpoolError};
use uuid::Uuid;

const PRESENCE: &str = "whatsapp.presence.v1";
const TENANT: &str = "tenant-x.presence";

fn options(dir: &Path, max_bytes: u64) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes: 1024 * 1024,
        fsync: FsyncPolicy::Always,
    }
}

/// Held while a child process is started and while a spool is opened: a
/// child forked before its exec holds copies of this process's open files,
/// the spool's LOCK among them, so a spool closed and reopened meanwhile would
/// look locked.
static FORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn open(dir: &Path) -> Store {
    open_with(dir, 64 * 1024 * 1024)
}

fn open_with(dir: &Path, max_bytes: u64) -> Store {
    let _fork = FORK.lock().unwrap_or_else(|p| p.into_inner());
    Store::open(options(dir, max_bytes)).unwrap().0
}

fn record(seq: u64, topic: &str, phone: &str, value: &[u8]) -> StoredRecord {
    StoredRecord {
        seq,
        arrival_ms: 1_764_590_000_000 + seq as i64,
        id: Uuid::now_v7(),
        kind: RecordKind::UNKNOWN,
        topic: topic.into(),
        key: phone.into(),
        value: value.to_vec(),
    }
}

fn dead_letter(store: &Store) -> (prometheus::Registry, DeadLetter) {
    let (registry, metrics) = Metrics::standalone();
    let dir = store.options().dir.clone();
    (
        registry,
        DeadLetter::new(&dir, store.external_bytes(), metrics, None),
    )
}

fn metric(registry: &prometheus::Registry, name: &str) -> String {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

fn letters(dir: &Path) -> Vec<tools::Letter> {
    tools::read_all(dir)
        .unwrap()
        .into_iter()
        .filter_map(|l| match l {
            Line::Letter(l) => Some(l),
            Line::Unreadable { .. } => None,
        })
        .collect()
}

/// Every undelivered record of the spool in `dir`, in sequence order.
fn pending(dir: &Path) -> Vec<StoredRecord> {
    let store = open(dir);
    let mut reader = store.reader();
    let mut out = Vec::new();
    loop {
        let (records, skipped) = reader.read(&store, 1000).unwrap();
        assert_eq!(skipped, 0);
        if records.is_empty() {
            return out;
        }
        out.extend(records);
    }
}

fn file_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(FILE_NAME)).map_or(0, |m| m.len())
}

/// The refused events of the tests below: two phones over two topics, one
/// value that is not UTF-8, one JSON value whose spacing a re-serialization
/// would change.
fn refused() -> Vec<(StoredRecord, &'static str)> {
    vec![
        (
            record(3, TENANT, "5544999990001", br#"{"id": 1,  "b":"x"}"#),
            "unknown_topic",
        ),
        (
            record(4, PRESENCE, "5544999990002", b"too big"),
            "too_large",
        ),
        (
            record(7, TENANT, "5544999990002", &[0xff, 0x00, 0xfe, b'\n']),
            "unknown_topic",
        ),
        (
            record(9, TENANT, "5544999990001", br#"{"id":2}"#),
            "unknown_topic",
        ),
        (
            record(12, PRESENCE, "5544999990001", b"also big"),
            "too_large",
        ),
    ]
}

async fn write_all(dl: &DeadLetter, recs: &[(StoredRecord, &'static str)]) {
    for (r, reason) in recs {
        dl.write(r, reason, "Broker: Unknown topic or partition")
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn dead_letters_replay_into_the_spool_with_their_ids_bytes_and_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let refused = refused();
    {
        let store = open(dir);
        // Something already waiting in the spool: replayed events come after it.
        store
            .append(
                &[NewRecord {
                    arrival_ms: 1,
                    id: Uuid::now_v7(),
                    kind: RecordKind::UNKNOWN,
                    topic: PRESENCE.into(),
                    key: "5544999990009".into(),
                    value: b"waiting".to_vec(),
                }],
                false,
            )
            .unwrap();
        let (registry, dl) = dead_letter(&store);
        write_all(&dl, &refused).await;
        assert_eq!(
            store
                .external_bytes()
                .load(std::sync::atomic::Ordering::Relaxed),
            file_len(dir)
        );
        assert_eq!(
            metric(&registry, "presence_bridge_dead_letter_bytes"),
            file_len(dir).to_string()
        );
    }

    // Listed in file order, exact bytes, and filtered.
    let all = letters(dir);
    assert_eq!(all.len(), refused.len());
    for (l, (r, reason)) in all.iter().zip(&refused) {
        assert_eq!(l.format, 2);
        assert_eq!(
            (l.seq, l.id, l.arrival_ms),
            (Some(r.seq), Some(r.id), Some(r.arrival_ms))
        );
        assert_eq!(
            (&l.topic, &l.key, &l.reason),
            (&r.topic, &r.key, &(*reason).to_owned())
        );
        assert_eq!(l.value, tools::Value::Exact(r.value.clone()));
        assert!(l.masked_key().starts_with("55") && l.masked_key().contains('*'));
        assert_ne!(l.masked_key(), r.key);
    }
    let unknown = Filter {
        reason: Some("unknown_topic".into()),
        topic: None,
    };
    let by_topic = Filter {
        reason: None,
        topic: Some(PRESENCE.into()),
    };
    assert_eq!(all.iter().filter(|l| unknown.matches(l)).count(), 3);
    assert_eq!(all.iter().filter(|l| by_topic.matches(l)).count(), 2);

    // A dry run changes nothing.
    let opts = ReplayOptions {
        filter: unknown.clone(),
        include_legacy: false,
    };
    let before = std::fs::read(dir.join(FILE_NAME)).unwrap();
    let plan = tools::plan(dir, &opts).unwrap();
    assert_eq!((plan.selected, plan.replayed), (3, 3));
    assert_eq!(std::fs::read(dir.join(FILE_NAME)).unwrap(), before);

    // Replay the unknown-topic ones.
    let report = {
        let store = open(dir);
        let report = tools::replay(&store, &opts).unwrap();
        assert_eq!(
            store
                .external_bytes()
                .load(std::sync::atomic::Ordering::Relaxed),
            file_len(dir)
        );
        report
    };
    assert_eq!(
        report,
        ReplayReport {
            selected: 3,
            replayed: 3,
            first_seq: Some(2),
            last_seq: Some(4),
            ..Default::default()
        }
    );

    // Back in the spool after what was waiting, same id, bytes, topic, key,
    // arrival, in dead-letter order; gone from the file, the rest untouched.
    let back = pending(dir);
    assert_eq!(back.len(), 4);
    assert_eq!(back[0].value, b"waiting");
    let expected: Vec<&StoredRecord> = refused
        .iter()
        .filter(|(_, reason)| *reason == "unknown_topic")
        .map(|(r, _)| r)
        .collect();
    for (got, want) in back[1..].iter().zip(&expected) {
        assert_eq!(
            (&got.id, &got.topic, &got.key, &got.value, got.arrival_ms),
            (
                &want.id,
                &want.topic,
                &want.key,
                &want.value,
                want.arrival_ms
            )
        );
    }
    let left = letters(dir);
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|l| l.reason == "too_large"));
    assert!(!dir.join(format!("{FILE_NAME}.tmp")).exists());

    // Nothing is replayed twice.
    let again = tools::replay(&open(dir), &opts).unwrap();
    assert_eq!((again.selected, again.replayed), (0, 0));
    assert_eq!(pending(dir).len(), 4);
}

#[tokio::test]
async fn a_replay_cut_short_before_the_file_was_rewritten_adds_no_second_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let refused = refused();
    {
        let store = open(dir);
        let (_, dl) = dead_letter(&store);
        write_all(&dl, &refused).await;
        // The state a crash between step 3 (append) and 4 (rewrite) leaves:
        // the first two are in the spool and still in the file.
        let copies: Vec<NewRecord> = refused[..2]
            .iter()
            .map(|(r, _)| NewRecord {
                arrival_ms: r.arrival_ms,
                id: r.id,
                kind: r.kind,
                topic: r.topic.clone(),
                key: r.key.clone(),
                value: r.value.clone(),
            })
            .collect();
        store.append(&copies, true).unwrap();
    }
    let report = tools::replay(&open(dir), &ReplayOptions::default()).unwrap();
    assert_eq!(
        (report.selected, report.replayed, report.already_in_spool),
        (5, 3, 2)
    );
    let ids: Vec<Uuid> = pending(dir).iter().map(|r| r.id).collect();
    let want: Vec<Uuid> = refused.iter().map(|(r, _)| r.id).collect();
    assert_eq!(ids, want, "each once, in order");
    assert!(letters(dir).is_empty());
}

#[tokio::test]
async fn a_failed_dead_letter_write_is_an_error_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    let (registry, dl) = dead_letter(&store);
    // The dead-letter path is a directory: nothing can be appended.
    std::fs::create_dir(dir.join(FILE_NAME)).unwrap();
    let r = record(1, PRESENCE, "5544999990001", b"x");
    let err = dl.write(&r, "too_large", "too large").await.unwrap_err();
    assert!(matches!(err, DeadLetterError::Write { .. }), "{err}");
    assert_eq!(
        metric(
            &registry,
            "presence_bridge_dead_letter_write_failures_total"
        ),
        "1"
    );
    // The error names the file, never the phone.
    assert!(!err.to_string().contains("5544999990001"));
}

#[tokio::test]
async fn a_line_cut_short_is_reported_kept_and_never_glued_to_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    let (_, dl) = dead_letter(&store);
    let refused = refused();
    write_all(&dl, &refused[..1]).await;
    let torn = br#"{"format":2,"seq":5,"id":"019a"#;
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(FILE_NAME))
        .and_then(|mut f| std::io::Write::write_all(&mut f, torn))
        .unwrap();
    write_all(&dl, &refused[1..2]).await;
    let lines = tools::read_all(dir).unwrap();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(matches!(lines[1], Line::Unreadable { line: 2, .. }));
    assert!(matches!(&lines[2], Line::Letter(l) if l.id == Some(refused[1].0.id)));

    let report = tools::replay(&store, &ReplayOptions::default()).unwrap();
    assert_eq!((report.replayed, report.unreadable), (2, 1));
    let text = std::fs::read(dir.join(FILE_NAME)).unwrap();
    assert_eq!(
        text,
        [torn.as_slice(), b"\n"].concat(),
        "the damaged line stays"
    );
}

#[tokio::test]
async fn dead_letters_count_against_spool_max_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let max = 16 * 1024;
    let event = |n: u8| NewRecord {
        arrival_ms: 1,
        id: Uuid::now_v7(),
        kind: RecordKind::UNKNOWN,
        topic: PRESENCE.into(),
        key: "5544999990001".into(),
        value: vec![n; 1000],
    };
    {
        let store = open_with(dir, max);
        store.append(&[event(1)], false).unwrap();
        let (_, dl) = dead_letter(&store);
        let big = record(1, PRESENCE, "5544999990001", &[b'a'; 4000]);
        for _ in 0..3 {
            dl.write(&big, "too_large", "too large").await.unwrap();
        }
        assert!(file_len(dir) > 12_000);
        // Segments (~1 KB) + dead letters (> 12 KB) + 4 KB more > 16 KiB.
        let refused = store.append(&[event(2), event(3), event(4)], false);
        assert!(matches!(refused, Err(SpoolError::Full)), "{refused:?}");
        // Without the dead letters it would have fitted.
        store
            .external_bytes()
            .store(0, std::sync::atomic::Ordering::Relaxed);
        store.append(&[event(5)], false).unwrap();
    }
    // After a restart the file's size is counted again from the start.
    let store = open_with(dir, max);
    let (_, _dl) = dead_letter(&store);
    let refused = store.append(&[event(6), event(7), event(8)], false);
    assert!(matches!(refused, Err(SpoolError::Full)), "{refused:?}");
}

/// A format-1 line as the code before format 2 wrote it (value parsed as JSON).
fn legacy_line(id: Uuid, key: &str) -> String {
    let value = serde_json::json!({
        "specversion": "1.0",
        "id": id.hyphenated().to_string(),
        "time": "2026-11-24T12:00:00.000Z",
        "partitionkey": key,
    });
    let line = serde_json::json!({
        "seq": 3,
        "topic": PRESENCE,
        "key": key,
        "reason": "not_authorized",
        "error": "Broker: Topic authorization failed",
        "deadLetteredAt": "2026-11-24T12:00:01.000Z",
        "value": value,
    });
    format!("{line}\n")
}

#[tokio::test]
async fn format_1_lines_still_list_and_replay_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let old_id = Uuid::now_v7();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(FILE_NAME), legacy_line(old_id, "5544999990003")).unwrap();
    {
        let store = open(dir);
        let (_, dl) = dead_letter(&store);
        write_all(&dl, &refused()[..1]).await;
    }
    let all = letters(dir);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].format, 1);
    assert_eq!(all[0].id, Some(old_id));
    assert_eq!(all[0].reason, "not_authorized");
    assert_eq!(all[0].seq, Some(3));
    assert_eq!(all[0].masked_key(), "55*********03");

    let out = cli(dir, &["dead-letter", "list", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["format"], 1);
    assert_eq!(rows[0]["id"], old_id.hyphenated().to_string());
    assert_eq!(rows[0]["replayable"], false);

    let plain = tools::replay(&open(dir), &ReplayOptions::default()).unwrap();
    assert_eq!((plain.replayed, plain.skipped_legacy), (1, 1));
    assert_eq!(letters(dir).len(), 1, "the format-1 line stays");
    let legacy = tools::replay(
        &open(dir),
        &ReplayOptions {
            filter: Filter::default(),
            include_legacy: true,
        },
    )
    .unwrap();
    assert_eq!(legacy.replayed, 1);
    let back = pending(dir);
    assert_eq!(back.len(), 2);
    assert_eq!(back[1].id, old_id);
    assert_eq!(back[1].key, "5544999990003");
    assert_eq!(back[1].arrival_ms, 1_795_521_600_000);
    let v: serde_json::Value = serde_json::from_slice(&back[1].value).unwrap();
    assert_eq!(v["id"], old_id.hyphenated().to_string());
    assert!(letters(dir).is_empty());
}

fn cli(spool: &Path, args: &[&str]) -> Output {
    let _fork = FORK.lock().unwrap_or_else(|p| p.into_inner());
    common::process::command(Path::new("."))
        .env("PRESENCE_BRIDGE__SPOOL__DIR", spool)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_commands_filter_mask_phones_and_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let refused = refused();
    {
        let store = open(dir);
        let (_, dl) = dead_letter(&store);
        write_all(&dl, &refused).await;
    }
    let out = cli(dir, &["dead-letter", "list", "--reason", "too_large"]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.contains(&refused[1].0.id.hyphenated().to_string()));
    assert!(table.contains("55*********02"), "{table}");
    assert!(!table.contains("5544999990002"), "a phone in full: {table}");

    let out = cli(
        dir,
        &[
            "dead-letter",
            "list",
            "--json",
            "--topic",
            TENANT,
            "--reason",
            "unknown_topic",
        ],
    );
    let json = String::from_utf8(out.stdout).unwrap();
    assert_eq!(json.lines().count(), 3, "{json}");
    assert!(!json.contains("55449999900"), "a phone in full: {json}");

    let out = cli(dir, &["dead-letter", "replay", "--reason", "too_large"]);
    assert!(out.status.success(), "{out:?}");
    let report: ReplayReport = {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["replayed"], 2, "{v}");
        ReplayReport {
            selected: v["selected"].as_u64().unwrap(),
            replayed: 2,
            ..Default::default()
        }
    };
    assert_eq!(report.selected, 2);
    let ids: Vec<Uuid> = pending(dir).iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![refused[1].0.id, refused[4].0.id]);
    assert_eq!(letters(dir).len(), 3);
}

#[tokio::test]
async fn replay_refuses_while_a_bridge_holds_the_spool() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let running = open(dir); // holds LOCK, as a running bridge does
    let (_, dl) = dead_letter(&running);
    write_all(&dl, &refused()).await;
    let before = std::fs::read(dir.join(FILE_NAME)).unwrap();

    let out = cli(dir, &["dead-letter", "replay", "--reason", "too_large"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("a running bridge holds"), "{err}");
    assert!(err.contains("stop the bridge"), "{err}");
    assert!(
        err.contains("presence-bridge dead-letter replay --reason too_large"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join(FILE_NAME)).unwrap(), before);

    // Listing and a dry run work beside a running bridge.
    let out = cli(dir, &["dead-letter", "list"]);
    assert!(out.status.success(), "{out:?}");
    let out = cli(dir, &["dead-letter", "replay", "--dry-run"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it before the real replay"));
    drop(running);
}
