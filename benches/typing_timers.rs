//! Memory of the typing timers (`presence.max_typing_timers`): arms one timer
//! per contact through the real presence state, with a sink that keeps
//! nothing, and prints the live heap per timer (a benchmark that prints
//! numbers, not a test).
//!
//!   cargo bench --bench typing_timers            # 1,000,000 contacts typing
//!   TIMERS=100000 cargo bench --bench typing_timers

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use presence_bridge::config::{self, KafkaSettings};
use presence_bridge::envelope::{new_event_id, OutboundRecord};
use presence_bridge::presence::PresenceEvent;
use presence_bridge::sink::{Sink, SinkError};
use presence_bridge::state::{PresenceState, StateMetrics};

/// Counts the bytes allocated and not yet freed.
struct Live;

static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Live {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Live = Live;

/// Takes every record and keeps none.
struct Nowhere;

impl Sink for Nowhere {
    async fn accept(&self, _: OutboundRecord) -> Result<(), SinkError> {
        Ok(())
    }
}

fn main() {
    let n: u64 = std::env::var("TIMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let env = [(
        "PRESENCE_BRIDGE__KAFKA__LATEST__ENABLED".to_owned(),
        "false".to_owned(),
    )];
    let kafka: KafkaSettings = config::load(None, env).expect("settings").kafka;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let state = PresenceState::new(
            Nowhere,
            kafka,
            Some(Duration::from_secs(3600)),
            n,
            StateMetrics::standalone(),
        );
        let before = LIVE.load(Ordering::Relaxed);
        let started = Instant::now();
        for i in 0..n {
            let body = format!(
                r#"{{"type":"PresenceChatCallback","phone":"55{:011}","status":"COMPOSING","lastSeen":null,"instanceId":"3C0E2F6B9A1D4E7F8A2B5C9D0E1F2A3B"}}"#,
                i
            );
            let event = PresenceEvent::from_json(body.as_bytes()).expect("valid");
            state
                .accept(&event, "whatsapp.presence.v1", new_event_id(), time::OffsetDateTime::now_utc())
                .await
                .expect("accepted");
        }
        let took = started.elapsed();
        let live = LIVE.load(Ordering::Relaxed) - before;
        println!("command: TIMERS={n} cargo bench --bench typing_timers");
        println!(
            "typing timers: {n}, live heap {:.1} MiB, {:.0} bytes per timer (instance id of 32 characters, 13-digit phone); {:.2} µs per accepted event",
            live as f64 / (1 << 20) as f64,
            live as f64 / n as f64,
            took.as_secs_f64() * 1e6 / n as f64
        );
        drop(state);
    });
}
