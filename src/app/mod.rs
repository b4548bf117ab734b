//! Wires the parts together and owns their lifetimes: opens (and recovers)
//! the spool, binds both listeners, starts the spool writer, the forwarder and
//! the broker probe under one supervisor, and on shutdown drains in order
//! under one deadline.
//!
//! Data path: webhook handler → [`Spool`] (200 once committed) → forwarder →
//! Kafka. Shutdown order: `/readyz` turns 503 → the webhook listener stops
//! accepting and in-flight requests finish → the spool is synced → the
//! forwarder flushes what it can and checkpoints → the admin listener stops.
//! Each step gets what is left of `shutdown.deadline`; undelivered events stay
//! in the spool for the next start.
//!
//! # Supervision
//! Every long-lived task runs under the [`Supervisor`]: the spool writer
//! thread, the forwarder, the webhook and admin listeners, the broker probe,
//! the TLS certificate reloader (with `http.tls`) and the periodic spool sync
//! (with `spool.fsync = "interval"`). Each of them only ends at shutdown. One
//! that ends (returns, returns an error, or panics) before shutdown has
//! started is a failure of the whole bridge, because the bridge without it
//! would go on answering while events pile up or are refused:
//!
//! 1. it is logged once, at `error`, naming the component;
//! 2. `/readyz` turns 503 and names it (`"failed": ["forwarder"]`, and
//!    `components.tasks`), `presence_bridge_task_failed{task}` turns 1;
//! 3. the normal graceful shutdown starts: in-flight requests finish, the spool
//!    is synced, the forwarder (if it still runs) flushes and checkpoints;
//! 4. the process exits with code 3 ([`crate::cli::EXIT_TASK_FAILED`]) within
//!    `shutdown.deadline` (plus at most 2 s of last guards), so the
//!    orchestrator restarts the bridge over the intact spool, which sends
//!    again every event not yet delivered.
//!
//! The writer is a thread, not a task: it is watched through the channel it
//! announces commits on, which closes when the thread ends or unwinds. A panic
//! is caught by the runtime (the release profile must not set
//! `panic = "abort"`, or the process dies without the drain). Tasks that end
//! after shutdown started are recorded as `stopped`, not as failures.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::config::Settings;
use crate::health::{Component, DevBroker, Health};
use crate::ingress::access::Access;
use crate::ingress::auth::Auth;
use crate::ingress::budget::{BodyBudget, Http2Limits};
use crate::ingress::ratelimit::RateLimits;
use crate::ingress::{BodyLimits, Webhook};
use crate::metrics::Metrics;
use crate::publisher::dead_letter::DeadLetter;
use crate::publisher::destination::DestinationMetrics;
use crate::publisher::forward::{random_seed, Forwarder, StopSignal};
use crate::publisher::KafkaPublisher;
use crate::server::{self, Limits};
use crate::spool::io::{DiskIo, SegmentFile, SpoolIo};
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
    /// A `spool.dir` that cannot be a spool, or a producer librdkafka refuses
    /// to create from the settings, is the operator's to fix, like a bad
    /// certificate; a failing disk or a held lock is not.
    pub fn is_config(&self) -> bool {
        match self {
            Self::Tls(_) => true,
            Self::Producer(e) => matches!(e, rdkafka::error::KafkaError::ClientCreation(_)),
            Self::Spool(e) => matches!(
                e,
                SpoolError::NotADirectory(_)
                    | SpoolError::ParentNotADirectory { .. }
                    | SpoolError::NotASpool { .. }
            ),
            Self::Bind { .. } | Self::Metrics(_) => false,
        }
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
    /// Supervised tasks that ended or panicked before shutdown, the first
    /// (the cause of the shutdown) first. Not empty: exit code 3.
    pub failed: Vec<Component>,
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
        self.health.begin_shutdown();
        self.shutdown.cancel();
    }

    /// A token that is cancelled when shutdown starts: on [`Running::shutdown`],
    /// or when a supervised task fails ([`Running::failed`] then says which).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The supervised tasks that failed so far, the first first.
    pub fn failed(&self) -> Vec<Component> {
        self.health.failed()
    }

    /// Waits until the bridge has stopped.
    pub async fn wait(self) -> ShutdownReport {
        let health = self.health.clone();
        let mut report = self.task.await.unwrap_or_default();
        report.failed = health.failed();
        report
    }
}

/// What a supervised task's output says about how it ended: `()` is a plain
/// return, an `Err` carries why (both are failures outside shutdown).
pub trait TaskOutput: Send + 'static {
    /// The error it ended with, if any.
    fn failure(self) -> Option<String>;
}

impl TaskOutput for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<T: Send + 'static, E: std::fmt::Display + Send + 'static> TaskOutput for Result<T, E> {
    fn failure(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// Watches every long-lived task (see the module doc): a task that ends
/// before shutdown marks itself failed in [`Health`] and starts the shutdown.
#[derive(Clone)]
pub struct Supervisor {
    health: Arc<Health>,
    shutdown: CancellationToken,
    faults: Option<Faults>,
}

impl Supervisor {
    fn new(health: Arc<Health>, shutdown: CancellationToken, faults: Option<Faults>) -> Self {
        Self {
            health,
            shutdown,
            faults,
        }
    }

    /// Spawns `task` as component `c`. The handle resolves once the task has
    /// ended and its ending has been recorded.
    pub fn spawn<F>(&self, c: Component, task: F) -> JoinHandle<()>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        self.spawn_holding(c, task, ())
    }

    /// [`Supervisor::spawn`], keeping `keep` alive until the task's ending is
    /// recorded: what the task's end would release (the ingress holds the
    /// spool writer's queue) cannot end another task first and be blamed.
    pub fn spawn_holding<F, K>(&self, c: Component, task: F, keep: K) -> JoinHandle<()>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
        K: Send + 'static,
    {
        self.health.task_started(c);
        let faults = self.faults.clone();
        let inner = tokio::spawn(async move {
            match faults {
                Some(f) => f.around(c, task).await.and_then(TaskOutput::failure),
                None => task.await.failure(),
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            let how = match inner.await {
                Ok(None) => Ended::Returned,
                Ok(Some(e)) => Ended::Error(e),
                Err(e) if e.is_panic() => Ended::Panicked,
                Err(_) => Ended::Cancelled,
            };
            me.ended(c, how);
            drop(keep);
        })
    }

    fn ended(&self, c: Component, how: Ended) {
        if self.shutdown.is_cancelled() {
            self.health.task_stopped(c);
            tracing::debug!(component = c.as_str(), "stopped");
            return;
        }
        // Recorded before the shutdown starts: whoever sees the shutdown token
        // cancelled also sees the failure.
        if self.health.task_failed(c) {
            let what = "a supervised task stopped before shutdown; readiness is off, draining, then exiting with code 3 so the bridge restarts over its spool";
            match how {
                Ended::Returned => {
                    tracing::error!(component = c.as_str(), ended = "returned", "{what}")
                }
                Ended::Error(e) => {
                    tracing::error!(component = c.as_str(), ended = "error", error = %e, "{what}")
                }
                Ended::Panicked => tracing::error!(
                    component = c.as_str(),
                    ended = "panicked",
                    "{what} (the panic message is logged above)"
                ),
                Ended::Cancelled => {
                    tracing::error!(component = c.as_str(), ended = "cancelled", "{what}")
                }
            }
        }
        // Readiness off before anyone waiting on the token looks at it.
        self.health.begin_shutdown();
        self.shutdown.cancel();
    }
}

enum Ended {
    Returned,
    Error(String),
    Panicked,
    Cancelled,
}

/// Test-only fault injection: makes a named component end or panic while the
/// bridge runs, to test the supervisor. Not part of the stable API.
#[doc(hidden)]
#[derive(Clone)]
pub struct Faults {
    fire: Arc<watch::Sender<Option<(Component, Fault)>>>,
    /// Armed: the spool writer thread panics at its next write.
    writer_panic: Arc<AtomicBool>,
}

#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The task returns as if its work were done.
    End,
    /// The task panics.
    Panic,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fire: Arc::new(watch::Sender::new(None)),
            writer_panic: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Faults {
    /// Makes `c` end or panic now. The spool writer thread can only panic, and
    /// does so at its next write (post an event to trigger it).
    pub fn trigger(&self, c: Component, fault: Fault) {
        if c == Component::SpoolWriter {
            self.writer_panic.store(true, Ordering::SeqCst);
        } else {
            self.fire.send_replace(Some((c, fault)));
        }
    }

    /// Runs `task` until it ends (`Some`) or a fault for `c` fires (`None`
    /// for [`Fault::End`]; a panic for [`Fault::Panic`]).
    async fn around<F: Future>(&self, c: Component, task: F) -> Option<F::Output> {
        if c == Component::SpoolWriter {
            return Some(task.await);
        }
        let mut fired = self.fire.subscribe();
        let fault = async move {
            let fired = fired
                .wait_for(|f| matches!(f, Some((x, _)) if *x == c))
                .await
                .map(|f| f.map(|(_, fault)| fault));
            match fired {
                Ok(fault) => fault,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            out = task => Some(out),
            fault = fault => match fault {
                Some(Fault::Panic) => panic!("fault injected: {} panics", c.as_str()),
                _ => None,
            },
        }
    }

    fn spool_io(&self) -> Arc<dyn SpoolIo> {
        Arc::new(FaultIo(self.writer_panic.clone()))
    }
}

/// The real disk, except that a write panics once the fault is armed.
struct FaultIo(Arc<AtomicBool>);

struct FaultFile(Box<dyn SegmentFile>, Arc<AtomicBool>);

impl SpoolIo for FaultIo {
    fn create(&self, path: &std::path::Path) -> std::io::Result<Box<dyn SegmentFile>> {
        // Only segments (written by the writer thread), not the checkpoint
        // (written from the forwarder).
        let segment = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(".seg"));
        let file = DiskIo.create(path)?;
        Ok(if segment {
            Box::new(FaultFile(file, self.0.clone()))
        } else {
            file
        })
    }
}

impl SegmentFile for FaultFile {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.1.load(Ordering::SeqCst) {
            panic!("fault injected: spool_writer panics");
        }
        self.0.write_all(buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_at(offset, buf)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.0.sync()
    }

    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.0.truncate(len)
    }
}

/// Binds the listeners and starts the bridge. `brokers` is the bootstrap list
/// (the configured one, or the embedded broker's in `--dev`).
pub async fn start(
    settings: Settings,
    brokers: String,
    dev: Option<DevBroker>,
) -> Result<Running, AppError> {
    start_with(settings, brokers, dev, None).await
}

/// [`start`] with test-only fault injection.
#[doc(hidden)]
pub async fn start_with(
    settings: Settings,
    brokers: String,
    dev: Option<DevBroker>,
    faults: Option<Faults>,
) -> Result<Running, AppError> {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry)?;
    // First: a bad certificate is a configuration error, found before the spool is touched.
    let tls = match &settings.http.tls {
        Some(t) => Some(crate::tls::Tls::load(t, metrics.clone())?),
        None => None,
    };

    let store = open_spool(&settings, &metrics, faults.as_ref().map(Faults::spool_io)).await?;
    let stats = store.stats();
    let headroom = settings.http.max_body_bytes.get() as u64 * 4 + 64 * 1024;
    let health = Arc::new(Health::new(
        dev,
        metrics.clone(),
        store.clone(),
        headroom,
        &settings.kafka.topic,
        configured_topics(&settings),
    ));

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
    let budget = BodyBudget::new(
        settings.limits.body_budget_bytes,
        settings.limits.body_budget_per_client_bytes,
        Some(&registry),
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
        .with_budget(budget.clone())
        .with_pressure_read_timeout(settings.http.pressure_body_read_timeout)
        .with_access(
            Access::new(&settings.access),
            RateLimits::new(&settings.limits, &metrics),
        ),
    );
    let admin = Arc::new(Admin::new(registry.clone(), health.clone()));

    let shutdown = CancellationToken::new();
    let supervisor = Supervisor::new(health.clone(), shutdown.clone(), faults);
    // The writer thread holds the sending side of `committed`: it closes when
    // the thread ends, normally or by a panic.
    let writer_task = supervisor.spawn(Component::SpoolWriter, {
        let mut committed = committed_rx.clone();
        async move { while committed.changed().await.is_ok() {} }
    });

    // Every configured destination gets a lane (and its metric series) from the start.
    let mut topics = vec![settings.kafka.topic.clone()];
    topics.extend(settings.kafka.topic_by_instance.values().cloned());
    topics.extend(settings.rejected.topic.clone());
    topics.sort();
    topics.dedup();
    let destinations = DestinationMetrics::new(&registry, topics.iter().cloned())?;
    let forwarder = Forwarder {
        store: store.clone(),
        make_producer: {
            let (kafka, brokers, metrics) =
                (settings.kafka.clone(), brokers.clone(), metrics.clone());
            Box::new(move || KafkaPublisher::new(&kafka, &brokers, metrics.clone()))
        },
        committed: committed_rx,
        metrics: metrics.clone(),
        destinations,
        dead_letter: Arc::new(DeadLetter::new(
            &settings.spool.dir,
            store.external_bytes(),
            metrics.clone(),
            settings
                .spool
                .dead_letter_topic
                .clone()
                .map(|t| (t, publisher.clone())),
        )),
        health: health.clone(),
        replay_until: stats.committed,
        rejected_topic: settings.rejected.topic.clone(),
        topics,
        seed: random_seed(),
    };
    let forwarder_stop = StopSignal::default();
    let forwarder_task =
        supervisor.spawn(Component::Forwarder, forwarder.run(forwarder_stop.clone()));

    let stop_webhook = CancellationToken::new();
    let stop_admin = CancellationToken::new();
    let limits = Limits {
        max_connections: settings.http.max_connections.get(),
        header_read_timeout: settings.http.header_read_timeout,
        max_connections_per_client: settings.http.max_connections_per_client.get(),
        max_requests_per_connection: settings.http.max_requests_per_connection.get(),
        http2: Http2Limits::sized(
            settings.limits.body_budget_per_client_bytes,
            settings.http.max_body_bytes.get() as u64,
        ),
        pressure_idle_timeout: settings.http.pressure_idle_timeout,
        pressure_body_timeout: settings.http.pressure_body_read_timeout,
        ..Limits::default()
    };
    // Not supervised: it holds nothing, and a failure of it loses nothing.
    let trims = crate::memtrim::trims_counter(&registry)?;
    tokio::spawn(crate::memtrim::run(budget, trims, shutdown.clone()));
    // Tasks that stop at `shutdown` on their own; the drain waits for them.
    let mut background = Vec::new();
    if let Some(tls) = &tls {
        background.push(supervisor.spawn(Component::TlsReloader, tls.reloader(shutdown.clone())));
    }
    // The writer thread ends when the last ingress handle is gone: held until
    // the listener's own ending is recorded, so a failed listener is named as
    // the cause, not the writer that stops after it.
    let webhook_task = supervisor.spawn_holding(
        Component::WebhookListener,
        server::serve_with_tls(
            webhook_listener,
            webhook.clone(),
            limits,
            tls,
            stop_webhook.clone(),
            Some(metrics.clone()),
        ),
        webhook,
    );
    let admin_task = supervisor.spawn(
        Component::AdminListener,
        server::serve(
            admin_listener,
            admin,
            // Probes and scrapes send their request at once: a short head
            // timeout, and idle connections give way to new ones (server.rs),
            // so a flood of idle connections cannot starve /livez.
            Limits {
                max_connections: 64,
                header_read_timeout: Duration::from_secs(2),
                max_connections_per_client: 16,
                listener: server::Listener::Admin,
                ..Limits::default()
            },
            stop_admin.clone(),
            Some(metrics.clone()),
        ),
    );
    background.push(supervisor.spawn(
        Component::BrokerProbe,
        probe_loop(
            publisher.clone(),
            settings.kafka.probe_interval,
            health.clone(),
            shutdown.clone(),
        ),
    ));
    if settings.spool.fsync == FsyncPolicy::Interval {
        background.push(supervisor.spawn(
            Component::SpoolSync,
            sync_loop(
                store.clone(),
                settings.spool.fsync_interval,
                metrics.clone(),
                shutdown.clone(),
            ),
        ));
    }

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
            match health.failed().first() {
                Some(c) => {
                    tracing::warn!(deadline = ?deadline, component = c.as_str(), "shutting down after a task failed: readiness off, draining requests")
                }
                None => {
                    tracing::info!(deadline = ?deadline, "shutting down: readiness off, draining requests")
                }
            }
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
            let _ = tokio::time::timeout_at(end, async {
                for t in background {
                    let _ = t.await;
                }
            })
            .await;
            // The writer ends once the ingress is gone; not waited for (an
            // abandoned connection may still hold the ingress).
            drop(writer_task);
            stop_admin.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), admin_task).await;
            report.took = started.elapsed();
            report.failed = health.failed();
            // The counts of lines held back since the last summary.
            crate::lograte::flush();
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

/// Every topic the configuration names, `kafka.topic` first, once each:
/// these (and only these) are probed and get a metric series.
pub fn configured_topics(settings: &Settings) -> Vec<String> {
    let mut topics = vec![settings.kafka.topic.clone()];
    let more = settings
        .kafka
        .topic_by_instance
        .values()
        .chain(settings.rejected.topic.as_ref())
        .chain(settings.spool.dead_letter_topic.as_ref());
    for t in more {
        if !topics.contains(t) {
            topics.push(t.clone());
        }
    }
    topics
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

/// Probes the broker now and every `interval` until shutdown: every configured
/// topic, `kafka.topic` first (when no broker answers for it, the others are
/// not asked that round and keep their last known state).
async fn probe_loop(
    publisher: KafkaPublisher,
    interval: Duration,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let topics: Vec<String> = health.configured_topics().map(str::to_owned).collect();
    let timeout = PROBE_TIMEOUT.min(interval.max(Duration::from_secs(1)));
    let mut last_reachable: Option<bool> = None;
    let mut last: Vec<Option<bool>> = vec![None; topics.len()];
    loop {
        let mut reachable = false;
        for (i, topic) in topics.iter().enumerate() {
            let probed = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = publisher.probe(topic, timeout) => p.ok(),
            };
            let Some(present) = probed else {
                if i == 0 {
                    break;
                }
                continue;
            };
            reachable = true;
            health.topic_probed(topic, present);
            if last[i] != Some(present) {
                if present {
                    tracing::info!(%topic, "kafka topic present");
                } else {
                    tracing::warn!(%topic, "kafka reachable but this configured topic does not exist (yet); its events wait in the spool");
                }
                last[i] = Some(present);
            }
        }
        health.broker_probed(reachable);
        if last_reachable != Some(reachable) {
            if reachable {
                tracing::info!("kafka reachable");
            } else {
                tracing::warn!("kafka unreachable: no broker answered the metadata probe");
            }
            last_reachable = Some(reachable);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Opens and recovers the spool off the async threads; reports what recovery
/// found. `io` replaces the real disk (test fault injection).
async fn open_spool(
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
        metrics.spool_dropped(crate::spool::metrics::DropReason::TornWrite, 1);
        tracing::warn!(
            bytes = report.torn_bytes,
            "cut a torn write off the spool's tail (from a crash mid-write; never answered 200)"
        );
    }
    if report.corrupt_regions > 0 {
        metrics.spool_dropped(
            crate::spool::metrics::DropReason::CorruptRecord,
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
