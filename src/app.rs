//! Wires the parts together and owns their lifetimes: binds both listeners,
//! builds the publisher and the handler, runs the broker probe, and on
//! shutdown drains in order under one deadline.
//!
//! Shutdown order: `/readyz` turns 503 → the webhook listener stops accepting
//! and in-flight requests finish → the producer flushes → the admin listener
//! stops. Each step gets what is left of `shutdown.deadline`; what did not
//! finish is reported, never waited for past the deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Admin;
use crate::config::Settings;
use crate::health::{DevBroker, Health};
use crate::ingress::auth::Auth;
use crate::ingress::{BodyLimits, Webhook};
use crate::metrics::Metrics;
use crate::publisher::KafkaPublisher;
use crate::server::{self, Limits};

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
}

/// What the shutdown left undone, if anything.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// The webhook listener still had connections open at the deadline.
    pub connections_abandoned: bool,
    /// Messages still in the producer's queue at the deadline.
    pub unflushed_messages: i32,
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
    let health = Arc::new(Health::new(dev, metrics.clone()));

    let webhook_listener = bind("http.listen", settings.http.listen).await?;
    let admin_listener = bind("admin.listen", settings.admin.listen).await?;
    let webhook_addr = local_addr("http.listen", &webhook_listener, settings.http.listen)?;
    let admin_addr = local_addr("admin.listen", &admin_listener, settings.admin.listen)?;

    let publisher = KafkaPublisher::new(&settings.kafka, &brokers, metrics.clone())?;
    let webhook = Arc::new(Webhook::new(
        publisher.clone(),
        Auth::new(settings.auth.tokens.clone()),
        BodyLimits {
            max_bytes: settings.http.max_body_bytes.get(),
            read_timeout: settings.http.body_read_timeout,
        },
        settings.kafka.clone(),
        metrics.clone(),
    ));
    let admin = Arc::new(Admin::new(registry.clone(), health.clone()));

    let shutdown = CancellationToken::new();
    let stop_webhook = CancellationToken::new();
    let stop_admin = CancellationToken::new();
    let tracker = TaskTracker::new();
    let limits = Limits {
        max_connections: settings.http.max_connections.get(),
        header_read_timeout: settings.http.header_read_timeout,
    };
    let webhook_task = tokio::spawn(server::serve(
        webhook_listener,
        webhook,
        limits,
        stop_webhook.clone(),
        Some(metrics.clone()),
    ));
    let admin_task = tokio::spawn(server::serve(
        admin_listener,
        admin,
        Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(5),
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
    tracker.close();

    tracing::info!(%webhook_addr, %admin_addr, topic = %settings.kafka.topic, "presence-bridge listening");

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
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            report.unflushed_messages = publisher.flush(left).await;
            if report.unflushed_messages != 0 {
                tracing::warn!(
                    messages = report.unflushed_messages,
                    "producer not fully flushed at the deadline"
                );
            }
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
            .probe(&topic, PROBE_TIMEOUT.min(interval))
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
