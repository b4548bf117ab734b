//! Gives memory back to the system after a burst of request bodies.
//!
//! The body budget ([`crate::ingress::budget`]) bounds the memory request
//! bodies take at their peak, but glibc's allocator keeps freed pages in its
//! arenas for reuse: after a burst the process stays about as large as at its
//! peak. Every [`CHECK_EVERY`] this task looks at the budget's peak since the
//! last look; when it reached [`TRIM_AFTER_BYTES`] and less than a quarter of
//! it is still in use, the burst has passed and `malloc_trim(0)` hands the
//! free pages back (on a blocking thread: it walks every arena). Elsewhere
//! than glibc the task only watches.

use std::time::Duration;

use prometheus::{IntCounter, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::ingress::budget::BodyBudget;

/// How often the budget's peak is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// A peak of body bytes in flight worth trimming after.
pub const TRIM_AFTER_BYTES: u64 = 8 * 1024 * 1024;

/// True when a burst that reached `peak` bytes has passed (`in_use` now).
pub fn burst_passed(peak: u64, in_use: u64) -> bool {
    peak >= TRIM_AFTER_BYTES && in_use < peak / 4
}

/// `presence_bridge_memory_trims_total`, registered in `registry`.
pub fn trims_counter(registry: &Registry) -> Result<IntCounter, prometheus::Error> {
    let trims = IntCounter::with_opts(
        Opts::new(
            "memory_trims_total",
            "Times freed heap memory was handed back to the system after a burst of request \
             bodies (glibc malloc_trim).",
        )
        .namespace("presence_bridge"),
    )?;
    registry.register(Box::new(trims.clone()))?;
    Ok(trims)
}

/// Watches `budget` until `shutdown`, trimming after each burst and counting
/// it in `trims`.
pub async fn run(budget: BodyBudget, trims: IntCounter, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let peak = budget.take_peak();
        if burst_passed(peak, budget.in_use()) {
            let _ = tokio::task::spawn_blocking(trim).await;
            trims.inc();
            tracing::debug!(
                peak_bytes = peak,
                "gave freed memory back after a burst of bodies"
            );
        }
    }
}

/// Hands free heap pages back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointer and only walks the allocator's own
    // arenas under their locks; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_has_passed_once_most_of_a_large_peak_is_free() {
        assert!(
            !burst_passed(TRIM_AFTER_BYTES - 1, 0),
            "too small to bother"
        );
        assert!(burst_passed(TRIM_AFTER_BYTES, 0));
        assert!(burst_passed(40 << 20, 9 << 20));
        assert!(!burst_passed(40 << 20, 10 << 20), "still in use");
    }

    #[tokio::test(start_paused = true)]
    async fn the_peak_is_taken_and_reset_each_look() {
        let budget = BodyBudget::new(64 << 20, 64 << 20, None).unwrap();
        let permit = budget.reserve(None, 9 << 20).await.unwrap();
        drop(permit);
        assert_eq!(budget.take_peak(), 9 << 20);
        assert_eq!(budget.take_peak(), 0, "reset to what is in use");
        let _held = budget.reserve(None, 1 << 20).await.unwrap();
        assert_eq!(budget.take_peak(), 1 << 20);
        assert_eq!(budget.take_peak(), 1 << 20, "still held");
    }
}
