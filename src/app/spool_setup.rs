//! Opening the spool (recovery, and what it found reported to metrics and
//! logs) and, with `spool.fsync = "interval"`, its periodic sync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::AppError;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::spool::io::SpoolIo;
use crate::spool::store::{Store, StoreOptions};
use crate::spool::SpoolError;

/// Opens and recovers the spool off the async threads; reports what recovery
/// found. `io` replaces the real disk (test fault injection).
pub(super) async fn open_spool(
    settings: &Settings,
    metrics: &Metrics,
    io: Option<Arc<dyn SpoolIo>>,
) -> Result<Arc<Store>, AppError> {
    let opts = StoreOptions {
        dir: settings.spool.dir.clone(),
        max_bytes: settings.spool.max_bytes,
        segment_bytes: settings.spool.segment_bytes,
        fsync: settings.spool.fsync,
    };
    let (store, report) = tokio::task::spawn_blocking(move || match io {
        Some(io) => Store::open_with_io(opts, io),
        None => Store::open(opts),
    })
    .await
    .map_err(|e| SpoolError::io("recovering the spool", std::io::Error::other(e.to_string())))??;
    metrics.spool_capacity(settings.spool.max_bytes);
    if report.torn_bytes > 0 {
        metrics.spool_dropped(crate::metrics::DropReason::TornWrite, 1);
        tracing::warn!(
            bytes = report.torn_bytes,
            "cut a torn write off the spool's tail (from a crash mid-write; never answered 200)"
        );
    }
    if report.corrupt_regions > 0 {
        metrics.spool_dropped(
            crate::metrics::DropReason::CorruptRecord,
            report.corrupt_records,
        );
        tracing::error!(
            regions = report.corrupt_regions,
            events = report.corrupt_records,
            "skipped damaged records in the spool; run `presence-bridge spool verify`"
        );
    }
    if report.checkpoint_lost {
        tracing::warn!(
            "the spool checkpoint was unreadable: every stored event will be sent again"
        );
    }
    tracing::info!(
        dir = %settings.spool.dir.display(),
        pending = report.pending,
        segments = report.segments,
        fsync = ?settings.spool.fsync,
        "spool open"
    );
    Ok(Arc::new(store))
}

/// `spool.fsync = "interval"`: makes appended events durable every `interval`.
/// A failed sync seals the segment (the store opens a new one; until it
/// can, appends answer 503), is counted, and is logged once per
/// [`crate::spool::LOG_REPEATS_EVERY`] however often it repeats. While
/// appends are blocked, each tick also retries ([`Store::retry_blocked`]).
pub(super) async fn sync_loop(
    store: Arc<Store>,
    interval: Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut errors = crate::spool::RepeatedError::new(crate::spool::LOG_REPEATS_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let s = store.clone();
        let synced = tokio::task::spawn_blocking(move || {
            let synced = s.sync();
            if s.append_blocked().is_some() {
                s.retry_blocked();
            }
            synced
        })
        .await;
        metrics.spool_sync_failures(store.take_sync_failures());
        match synced {
            Ok(Ok(Some(took))) => metrics.spool_synced(took),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                let message = e.to_string();
                if let Some(repeated) = errors.should_log(&message, Instant::now()) {
                    tracing::error!(error = %message, repeated, blocked = store.append_blocked(), "periodic spool sync failed: events answered since the last good sync may be lost on a power cut; the segment is sealed and a new one opened");
                }
            }
            Err(_) => return,
        }
    }
}
