//! Wires the parts together and owns their lifetimes: opens (and recovers)
//! the spool, binds both listeners, starts the spool writer, the forwarder and
//! the broker probe, and on shutdown drains in order under one deadline.
//!
//! Data path: webhook handler → [`Spool`] (200 once committed) → forwarder →
//! Kafka. Shutdown order: `/readyz` turns 503 → the webhook listener stops
//! accepting and in-flight requests finish → the spool is synced → the
//! forwarder flushes what it can and checkpoints → the admin listener stops.
//! Each step gets what is left of `shutdown.deadline`; undelivered events stay
//! in the spool for the next start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Admin;
use crate::config::Settings;
use crate::health::{DevBroker, Health};
use crate::ingress::access::Access;
use crate::ingress::auth::Auth;
use crate::ingress::ratelimit::RateLimits;
use crate::ingress::{BodyLimits, Webhook};
use crate::metrics::Metrics;
use crate::publisher::dead_letter::DeadLetter;
use crate::publisher::forward::{Forwarder, StopSignal};
use crate::publisher::KafkaPublisher;
use crate::server::{self, Limits};
use crate::spool::store::{Store, StoreOptions};
use crate::spool::{FsyncPolicy, Spool, SpoolError};

/// Longest a metadata probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("kafka: cannot create the producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("spool.dir: {0}")]
    Spool(#[from] SpoolError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

impl AppError {
    /// A mistake in the configuration (exit code 2) rather than a runtime failure.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}

/// What the shutdown left undone, if anything.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// The webhook listener still had connections open at the deadline.
    pub connections_abandoned: bool,
    /// Events not yet delivered, kept in the spool for the next start.
    pub events_left_in_spool: u64,
    pub took: Duration,
}

/// A running bridge.
pub struct Running {
    pub webhook_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub registry: Registry,
    pub health: Arc<Health>,
    shutdown: CancellationToken,
    task: JoinHandle<ShutdownReport>,
}

impl Running {
    /// Starts the shutdown (idempotent). `/readyz` turns 503 at once.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token that is cancelled when shutdown starts.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the bridge has stopped.
    pub async fn wait(self) -> ShutdownReport {
        self.task.await.unwrap_or_default()
    }
}

/// Binds the listeners and starts the bridge. `brokers` is the bootstrap list
/// (the configured one, or the embedded broker's in `--dev`).
pub async fn start(
    settings: Settings,
    brokers: String,
    dev: Option<DevBroker>,
) -> Result<Running, AppError> {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry)?;
    // First: a bad certificate is a configuration error, found before the spool is touched.
    let tls = match &settings.http.tls {
        Some(t) => Some(crate::tls::Tls::load(t, metrics.clone())?),
        None => None,
    };

    let store = open_spool(&settings, &metrics).await?;
    let stats = store.stats();
    let headroom = settings.http.max_body_bytes.get() as u64 * 4 + 64 * 1024;
    let health = Arc::new(Health::new(
        dev,
        metrics.clone(),
        settings.spool.max_bytes,
        headroom,
    ));
    health.spool_levels(stats.pending, stats.bytes);

    let webhook_listener = bind("http.listen", settings.http.listen).await?;
    let admin_listener = bind("admin.listen", settings.admin.listen).await?;
    let webhook_addr = local_addr("http.listen", &webhook_listener, settings.http.listen)?;
    let admin_addr = local_addr("admin.listen", &admin_listener, settings.admin.listen)?;

    // One producer for the probe and dead-letter copies; the forwarder builds its own.
    let publisher = KafkaPublisher::new(&settings.kafka, &brokers, metrics.clone())?;
    let (committed_tx, committed_rx) = watch::channel(stats.committed);
    let spool = Spool::start(
        store.clone(),
        settings.spool.append_timeout,
        metrics.clone(),
        committed_tx,
    )?;
    let webhook = Arc::new(
        Webhook::new(
            spool,
            Auth::from_settings(&settings.auth),
            BodyLimits {
                max_bytes: settings.http.max_body_bytes.get(),
                read_timeout: settings.http.body_read_timeout,
            },
            settings.kafka.clone(),
            metrics.clone(),
        )
        .with_rejected(settings.rejected.clone())
        .with_access(
            Access::new(&settings.access),
            RateLimits::new(&settings.limits, &metrics),
        ),
    );
    let admin = Arc::new(Admin::new(registry.clone(), health.clone()));

    let forwarder = Forwarder {
        store: store.clone(),
        make_publisher: {
            let (kafka, brokers, metrics) =
                (settings.kafka.clone(), brokers.clone(), metrics.clone());
            Box::new(move || KafkaPublisher::new(&kafka, &brokers, metrics.clone()))
        },
        committed: committed_rx,
        metrics: metrics.clone(),
        dead_letter: DeadLetter::new(
            &settings.spool.dir,
            settings
                .spool
                .dead_letter_topic
                .clone()
                .map(|t| (t, publisher.clone())),
        ),
        health: health.clone(),
        replay_until: stats.committed,
        rejected_topic: settings.rejected.topic.clone(),
    };
    let forwarder_stop = StopSignal::default();
    let forwarder_task = tokio::spawn(forwarder.run(forwarder_stop.clone()));

    let shutdown = CancellationToken::new();
    let stop_webhook = CancellationToken::new();
    let stop_admin = CancellationToken::new();
    let tracker = TaskTracker::new();
    let limits = Limits {
        max_connections: settings.http.max_connections.get(),
        header_read_timeout: settings.http.header_read_timeout,
        max_connections_per_client: settings.http.max_connections_per_client.get(),
        max_requests_per_connection: settings.http.max_requests_per_connection.get(),
    };
    if let Some(tls) = &tls {
        tls.spawn_reloader(shutdown.clone());
    }
    let webhook_task = tokio::spawn(server::serve_with_tls(
        webhook_listener,
        webhook,
        limits,
        tls,
        stop_webhook.clone(),
        Some(metrics.clone()),
    ));
    let admin_task = tokio::spawn(server::serve(
        admin_listener,
        admin,
        Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(5),
            max_connections_per_client: 64,
            ..Limits::default()
        },
        stop_admin.clone(),
        None,
    ));
    tracker.spawn(probe_loop(
        publisher.clone(),
        settings.kafka.topic.clone(),
        settings.kafka.probe_interval,
        health.clone(),
        shutdown.clone(),
    ));
    if settings.spool.fsync == FsyncPolicy::Interval {
        tracker.spawn(sync_loop(
            store.clone(),
            settings.spool.fsync_interval,
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    tracker.close();

    tracing::info!(%webhook_addr, %admin_addr, https = settings.http.tls.is_some(), topic = %settings.kafka.topic, "presence-bridge listening");

    let deadline = settings.shutdown.deadline;
    let task = {
        let shutdown = shutdown.clone();
        let health = health.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            let started = Instant::now();
            let end = tokio::time::Instant::now() + deadline;
            health.begin_shutdown();
            tracing::info!(deadline = ?deadline, "shutting down: readiness off, draining requests");
            stop_webhook.cancel();
            let mut report = ShutdownReport::default();
            if tokio::time::timeout_at(end, webhook_task).await.is_err() {
                report.connections_abandoned = true;
                tracing::warn!("requests still in flight at the shutdown deadline were abandoned");
            }
            let synced = {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.sync()).await
            };
            if !matches!(synced, Ok(Ok(_))) {
                tracing::error!("final spool sync failed");
            }
            forwarder_stop.stop(end);
            if tokio::time::timeout_at(end + Duration::from_secs(1), forwarder_task)
                .await
                .is_err()
            {
                tracing::warn!("the forwarder did not stop by the deadline");
            }
            report.events_left_in_spool = store.stats().pending;
            let _ = tokio::time::timeout_at(end, tracker.wait()).await;
            stop_admin.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), admin_task).await;
            report.took = started.elapsed();
            tracing::info!(took = ?report.took, "shutdown complete");
            report
        })
    };

    Ok(Running {
        webhook_addr,
        admin_addr,
        registry,
        health,
        shutdown,
        task,
    })
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { key, addr, source })
}

fn local_addr(
    key: &'static str,
    l: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, AppError> {
    l.local_addr()
        .map_err(|source| AppError::Bind { key, addr, source })
}

/// Probes the broker now and every `interval` until shutdown.
async fn probe_loop(
    publisher: KafkaPublisher,
    topic: String,
    interval: Duration,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let mut last: Option<Option<bool>> = None;
    loop {
        let probed = publisher
            .probe(
                &topic,
                PROBE_TIMEOUT.min(interval.max(Duration::from_secs(1))),
            )
            .await
            .ok();
        health.probed(probed);
        if last != Some(probed) {
            match probed {
                Some(true) => tracing::info!(%topic, "kafka reachable, topic present"),
                Some(false) => {
                    tracing::warn!(%topic, "kafka reachable but the topic does not exist (yet)")
                }
                None => tracing::warn!("kafka unreachable: no broker answered the metadata probe"),
            }
            last = Some(probed);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Opens and recovers the spool off the async threads; reports what recovery found.
async fn open_spool(settings: &Settings, metrics: &Metrics) -> Result<Arc<Store>, AppError> {
    let opts = StoreOptions {
        dir: settings.spool.dir.clone(),
        max_bytes: settings.spool.max_bytes,
        segment_bytes: settings.spool.segment_bytes,
        fsync: settings.spool.fsync,
    };
    let (store, report) = tokio::task::spawn_blocking(move || Store::open(opts))
        .await
        .map_err(|e| {
            SpoolError::io("recovering the spool", std::io::Error::other(e.to_string()))
        })??;
    metrics.spool_capacity(settings.spool.max_bytes);
    if report.torn_bytes > 0 {
        metrics.spool_dropped("torn_write", 1);
        tracing::warn!(
            bytes = report.torn_bytes,
            "cut a torn write off the spool's tail (from a crash mid-write; never answered 200)"
        );
    }
    if report.corrupt_regions > 0 {
        metrics.spool_dropped("corrupt_record", report.corrupt_regions);
        tracing::error!(
            regions = report.corrupt_regions,
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
async fn sync_loop(
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
