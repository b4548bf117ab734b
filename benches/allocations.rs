//! Heap allocations per event on the hot path, counted with a counting global
//! allocator (a benchmark that prints numbers, not a test).
//!
//!   cargo bench --bench allocations
//!
//! Counts, per event: parse + validate + normalize; envelope encoding into an
//! outbound record; the spool frame. The HTTP layer (hyper) and the writer
//! thread's channel add a fixed number per request on top.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use presence_bridge::envelope::{new_event_id, OutboundRecord};
use presence_bridge::presence::PresenceEvent;
use presence_bridge::spool::format::{encode_parts, Head, RecordKind};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BODY: &str = r#"{"type":"PresenceChatCallback","phone":"+55 (44) 99999-9999","status":"composing","lastSeen":1700000000123,"instanceId":"3C0A1B2C3D4E5F"}"#;

fn count<T>(n: u64, mut f: impl FnMut() -> T) -> (f64, f64) {
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..n {
        std::hint::black_box(f());
    }
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

fn main() {
    const N: u64 = 100_000;
    let now = time::OffsetDateTime::now_utc();
    println!("# cargo bench --bench allocations   ({N} events each)");
    let (a, b) = count(N, || PresenceEvent::from_json(BODY.as_bytes()).unwrap());
    println!("parse+validate+normalize   {a:>5.1} allocations/event  {b:>7.0} bytes/event");
    let event = PresenceEvent::from_json(BODY.as_bytes()).unwrap();
    let (a, b) = count(N, || {
        OutboundRecord::new(&event, "whatsapp.presence.v1", new_event_id(), now)
    });
    println!("envelope encode            {a:>5.1} allocations/event  {b:>7.0} bytes/event");
    let rec = OutboundRecord::new(&event, "whatsapp.presence.v1", new_event_id(), now);
    let mut buf = Vec::with_capacity(4096);
    let (a, b) = count(N, || {
        buf.clear();
        let head = Head {
            seq: 1,
            arrival_ms: rec.arrival_ms,
            id: &rec.id,
            kind: RecordKind(rec.kind.code()),
        };
        encode_parts(&head, &rec.topic, &rec.key, &rec.value, &mut buf);
        buf.len()
    });
    println!("spool frame (reused buf)   {a:>5.1} allocations/event  {b:>7.0} bytes/event");
    let (a, b) = count(N, || {
        let e = PresenceEvent::from_json(BODY.as_bytes()).unwrap();
        OutboundRecord::new(&e, "whatsapp.presence.v1", new_event_id(), now)
    });
    println!("whole pure path            {a:>5.1} allocations/event  {b:>7.0} bytes/event");
}
