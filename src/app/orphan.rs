//! Forwarding an orphaned spool: `presence-bridge spool forward --dir PATH`.
//!
//! A spool directory whose bridge is gone for good (the volume of a pod a
//! scale-in removed) holds events nobody will deliver. This opens it (taking
//! its lock, so a directory a running bridge holds is refused), runs the same
//! [`Forwarder`] the bridge runs (same per-phone order, dead letters, resend
//! rules; an event is settled only once Kafka acknowledged it) with the
//! normal configuration's brokers and producer properties, and ends when the
//! spool is empty, or when nothing was delivered for `idle_timeout` (the
//! broker unreachable, a destination refusing us), or on a signal. It stops
//! the forwarder the way the bridge does at shutdown, so what was acknowledged
//! is checkpointed and what was not stays in the spool for another try.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::probe::probe_loop;
use super::spool_setup::open_spool;
use super::{configured_topics, dead_letter_file, producer_factory, AppError};
use crate::config::Settings;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::publisher::dead_letter::FILE_NAME as DEAD_LETTER_FILE;
use crate::publisher::destination::DestinationMetrics;
use crate::publisher::forward::{random_seed, Forwarder, StopSignal, WINDOW_BYTES};
use crate::publisher::KafkaPublisher;
use crate::spool::SpoolError;

/// How often the spool's level is looked at.
const POLL: Duration = Duration::from_millis(250);
/// How long the forwarder gets to settle what is in flight when it is stopped.
const STOP_FLUSH: Duration = Duration::from_secs(5);

/// What `spool forward` is told.
#[derive(Debug, Clone)]
pub struct ForwardOptions {
    pub dir: PathBuf,
    /// Give up when no event was delivered for this long.
    pub idle_timeout: Duration,
    /// Print a progress line at least this often while events are delivered.
    pub progress_every: Duration,
}

/// What the caller is told as it goes (to print).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The spool is open: `pending` events in it, per topic (those with any).
    Start {
        pending: u64,
        topics: Vec<(String, u64)>,
    },
    /// Events left now, out of `pending` at the start.
    Left { left: u64, pending: u64 },
}

/// How it ended, when it could run at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub pending_at_start: u64,
    pub left: u64,
    /// Events Kafka refused for good, moved to the spool's dead-letter file.
    pub dead_lettered: u64,
    pub took: Duration,
    pub outcome: ForwardOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardOutcome {
    /// Every event delivered (or dead-lettered): the spool is empty.
    Emptied,
    /// Nothing delivered for `idle_timeout`; why, as far as it is known.
    Stalled { why: String },
    /// A signal asked it to stop.
    Interrupted,
    /// The forwarder ended by itself (it cannot read the spool, or build a producer).
    ForwarderFailed,
}

/// Why it could not start.
#[derive(Debug, thiserror::Error)]
pub enum OrphanError {
    #[error(
        "kafka.brokers is empty: set it in the --config file or PRESENCE_BRIDGE__KAFKA__BROKERS"
    )]
    NoBrokers,
    #[error("{0}")]
    App(#[from] AppError),
}

impl OrphanError {
    /// The lock is held: a running bridge (or another `spool forward`) owns the spool.
    pub fn is_locked(&self) -> bool {
        matches!(self, Self::App(AppError::Spool(SpoolError::Locked { .. })))
    }

    /// A mistake in what was asked (exit code 2) rather than a runtime failure.
    pub fn is_config(&self) -> bool {
        match self {
            Self::NoBrokers => true,
            Self::App(e) => e.is_config(),
        }
    }
}

/// Forwards the spool in `opts.dir` to Kafka until it is empty, it stalls,
/// or `stop` is cancelled. `settings.spool.dir` is ignored; the rest of the
/// configuration (brokers, producer properties, topics, spool sizes) is used
/// as `serve` uses it.
pub async fn forward_orphan(
    settings: &Settings,
    opts: &ForwardOptions,
    stop: CancellationToken,
    mut progress: impl FnMut(Progress),
) -> Result<Forwarded, OrphanError> {
    if settings.kafka.brokers.is_empty() {
        return Err(OrphanError::NoBrokers);
    }
    let brokers = settings.kafka.brokers.join(",");
    // Refuses what is not a spool before anything is created in it.
    crate::spool::dir::recognise(&opts.dir).map_err(AppError::Spool)?;
    let mut settings = settings.clone();
    settings.spool.dir = opts.dir.clone();

    let registry = Registry::new();
    let metrics = Metrics::new(&registry).map_err(AppError::Metrics)?;
    let store = open_spool(&settings, &metrics, None).await?;
    let stats = store.stats();
    let dead_letters_before = count_lines(&opts.dir.join(DEAD_LETTER_FILE));
    let started = Instant::now();
    let pending_at_start = stats.pending;
    progress(Progress::Start {
        pending: pending_at_start,
        topics: store
            .topics()
            .into_iter()
            .map(|t| {
                let n = store.pending_of(&t);
                (t, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect(),
    });
    if pending_at_start == 0 {
        return Ok(Forwarded {
            pending_at_start,
            left: 0,
            dead_lettered: 0,
            took: started.elapsed(),
            outcome: ForwardOutcome::Emptied,
        });
    }

    let health = Arc::new(Health::new(
        None,
        metrics.clone(),
        store.clone(),
        0,
        &settings.kafka.topic,
        configured_topics(&settings),
    ));
    let publisher = KafkaPublisher::new(&settings.kafka, &brokers, metrics.clone())
        .map_err(AppError::Producer)?;
    let mut topics: Vec<String> = settings.kafka.event_topics().cloned().collect();
    topics.extend(settings.rejected.topic.clone());
    topics.extend(store.topics());
    topics.sort();
    topics.dedup();
    let destinations =
        DestinationMetrics::new(&registry, topics.iter().cloned()).map_err(AppError::Metrics)?;
    // Nothing is appended: the sender is only kept so the forwarder does not
    // take the spool writer for gone.
    let (_committed_tx, committed_rx) = watch::channel(stats.committed);
    let forwarder = Forwarder {
        store: store.clone(),
        make_producer: producer_factory(&settings, &brokers, &metrics),
        committed: committed_rx,
        metrics: metrics.clone(),
        destinations,
        dead_letter: dead_letter_file(&settings, &store, &metrics, &publisher),
        health: health.clone(),
        replay_until: stats.committed,
        rejected_topic: settings.rejected.topic.clone(),
        topics,
        seed: random_seed(),
        window_bytes: WINDOW_BYTES,
    };
    let forwarder_stop = StopSignal::default();
    let mut forwarder_task = tokio::spawn(forwarder.run(forwarder_stop.clone()));
    let probe_stop = CancellationToken::new();
    let probe = tokio::spawn(probe_loop(
        publisher,
        settings.kafka.probe_interval,
        health.clone(),
        probe_stop.clone(),
    ));

    let mut last_left = pending_at_start;
    let mut last_delivery = Instant::now();
    let mut last_report = Instant::now();
    let outcome = loop {
        tokio::select! {
            _ = stop.cancelled() => break ForwardOutcome::Interrupted,
            _ = &mut forwarder_task => break ForwardOutcome::ForwarderFailed,
            _ = tokio::time::sleep(POLL) => {}
        }
        let left = store.stats().pending;
        let now = Instant::now();
        if left < last_left {
            last_delivery = now;
        }
        if left == 0 {
            break ForwardOutcome::Emptied;
        }
        if left != last_left && now - last_report >= opts.progress_every {
            progress(Progress::Left {
                left,
                pending: pending_at_start,
            });
            last_report = now;
        }
        last_left = left;
        if now - last_delivery >= opts.idle_timeout {
            break ForwardOutcome::Stalled {
                why: stall_reason(&health),
            };
        }
    };

    // Stopped as at a shutdown: what was acknowledged is settled and
    // checkpointed, the rest stays for another run.
    if !forwarder_task.is_finished() {
        forwarder_stop.stop(Instant::now() + STOP_FLUSH);
        if tokio::time::timeout(STOP_FLUSH + Duration::from_secs(1), &mut forwarder_task)
            .await
            .is_err()
        {
            tracing::warn!("the forwarder did not stop in time");
            forwarder_task.abort();
        }
    }
    probe_stop.cancel();
    let _ = probe.await;
    let left = store.stats().pending;
    Ok(Forwarded {
        pending_at_start,
        left,
        dead_lettered: count_lines(&opts.dir.join(DEAD_LETTER_FILE))
            .saturating_sub(dead_letters_before),
        took: started.elapsed(),
        outcome,
    })
}

/// Why nothing was delivered, as far as the probe and the lanes tell.
fn stall_reason(health: &Health) -> String {
    if !health.broker_reachable() {
        return "no Kafka broker answered (kafka.brokers unreachable?)".to_owned();
    }
    let report = health.report();
    let held: Vec<String> = report["components"]["kafka"]["destinations"]
        .as_object()
        .map(|d| {
            d.iter()
                .filter(|(_, v)| v["state"] == "blocked")
                .map(|(t, v)| format!("{t} ({})", v["reason"].as_str().unwrap_or("blocked")))
                .collect()
        })
        .unwrap_or_default();
    if held.is_empty() {
        "the broker answers but took nothing (a partition without a leader?)".to_owned()
    } else {
        format!("destinations refuse the events: {}", held.join(", "))
    }
}

fn count_lines(path: &Path) -> u64 {
    std::fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count() as u64)
        .unwrap_or(0)
}
