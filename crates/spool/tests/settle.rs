//! The per-topic settled set across restarts: a topic settles on its own, a
//! segment goes once every topic's records in it are settled, a restart
//! resends exactly the unsettled records, and sequence numbers are never
//! reused (a reused number would be counted as settled by a cursor that had
//! passed it: the simulation found that as lost events).

use spool::store::{NewRecord, Store, StoreOptions};
use spool::FsyncPolicy;

fn opts(dir: &std::path::Path) -> StoreOptions {
    StoreOptions {
        max_bytes: 1 << 20,
        // Small segments: every batch below rolls to a new one.
        segment_bytes: 200,
        fsync: FsyncPolicy::Always,
        ..spool::testkit::options(dir)
    }
}

fn rec(topic: &str, n: u128) -> NewRecord {
    NewRecord {
        arrival_ms: 1,
        id: uuid::Uuid::from_u128(n),
        kind: spool::RecordKind(1),
        topic: topic.into(),
        key: "5511900000001".into(),
        value: vec![b'x'; 100],
    }
}

fn unsettled(store: &Store, topic: &str) -> Vec<u128> {
    let mut reader = store.reader_for(topic);
    let (records, _) = reader.read(store, 100).unwrap();
    records.iter().map(|r| r.id.as_u128()).collect()
}

#[test]
fn topics_settle_alone_and_restarts_resend_exactly_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(opts(dir.path())).unwrap();
        store.append(&[rec("held", 1)], false).unwrap();
        store.append(&[rec("fast", 2)], false).unwrap();
        store.append(&[rec("held", 3)], false).unwrap();
        store.append(&[rec("fast", 4)], false).unwrap();
        // "fast" is delivered (its lane has read past everything), "held" is not.
        store.advance("fast", 4, 2);
        store.checkpoint().unwrap();
        assert_eq!(store.pending_of("held"), 2);
        assert_eq!(store.pending_of("fast"), 0);
    }
    let (store, report) = Store::open(opts(dir.path())).unwrap();
    assert_eq!(
        report.pending, 2,
        "only the held topic's events are pending"
    );
    assert_eq!(unsettled(&store, "held"), [1, 3]);
    assert!(
        unsettled(&store, "fast").is_empty(),
        "nothing of fast is resent"
    );
}

#[test]
fn a_settled_and_deleted_segment_never_gives_its_numbers_again() {
    let dir = tempfile::tempdir().unwrap();
    let last = {
        let (store, _) = Store::open(opts(dir.path())).unwrap();
        store.append(&[rec("a", 1)], false).unwrap();
        store.append(&[rec("b", 2)], false).unwrap().last_seq
    };
    {
        // The next start appends to a new (empty) segment; everything older
        // is settled and its segments deleted.
        let (store, _) = Store::open(opts(dir.path())).unwrap();
        store.advance("a", last - 1, 1);
        store.advance("b", last, 1);
        store.checkpoint().unwrap();
    }
    let (store, _) = Store::open(opts(dir.path())).unwrap();
    let next = store.append(&[rec("b", 9)], false).unwrap().last_seq;
    assert!(next > last, "seq {next} reused: cursor b passed {last}");
    assert_eq!(
        unsettled(&store, "b"),
        [9],
        "the new event is not taken as settled"
    );
}
