//! Wires the parts together and owns their lifetimes: opens (and recovers)
//! the spool, binds both listeners, starts the spool writer, the forwarder and
//! the broker probe under one supervisor, and on shutdown drains in order
//! under one deadline.
//!
//! Data path: webhook handler → [`Spool`] (200 once committed) → forwarder →
//! Kafka. Shutdown order: `/readyz` turns 503 → the webhook listener stops
//! accepting and in-flight requests finish → the spool is synced → the
//! forwarder keeps delivering until the spool is empty or
//! `shutdown.drain_spool` passed → it flushes what it can and checkpoints →
//! the admin listener stops. The requests and the flush share
//! `shutdown.deadline`, the spool drain has its own bound ([`drain`]);
//! undelivered events stay in the spool for the next start (or
//! `presence-bridge spool forward`).
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
//!    is synced, the forwarder (if it still runs) drains the spool and
//!    flushes and checkpoints;
//! 4. the process exits with code 3 ([`crate::cli::EXIT_TASK_FAILED`]) within
//!    `shutdown.deadline` + `shutdown.drain_spool` (plus at most 2 s of last
//!    guards), so the
//!    orchestrator restarts the bridge over the intact spool, which sends
//!    again every event not yet delivered.
//!
//! The writer is a thread, not a task: it is watched through the channel it
//! announces commits on, which closes when the thread ends or unwinds. A panic
//! is caught by the runtime (the release profile must not set
//! `panic = "abort"`, or the process dies without the drain). Tasks that end
//! after shutdown started are recorded as `stopped`, not as failures.

mod compaction;
mod drain;
mod faults;
mod orphan;
mod probe;
mod spool_setup;

use probe::probe_loop;
use spool_setup::{open_spool, sync_loop};
mod supervise;

pub use faults::{Fault, Faults};
pub use orphan::{
    forward_orphan, ForwardOptions, ForwardOutcome, Forwarded, OrphanError, Progress,
};
pub use supervise::{Supervisor, TaskOutput};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
use crate::ingress::connections::Connections;
use crate::ingress::ratelimit::RateLimits;
use crate::ingress::{BodyLimits, MessageLimits, Webhook};
use crate::metrics::Metrics;
use crate::publisher::dead_letter::DeadLetter;
use crate::publisher::destination::DestinationMetrics;
use crate::publisher::forward::{random_seed, Forwarder, StopSignal, WINDOW_BYTES};
use crate::publisher::KafkaPublisher;
use crate::server::{self, Limits};
use crate::spool::store::Store;
use crate::spool::{FsyncPolicy, Spool, SpoolError};
use crate::state::{PresenceState, StateMetrics};

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
    /// What the spool drain did (`None` with `shutdown.drain_spool = 0`).
    pub spool_drain: Option<SpoolDrain>,
    /// Supervised tasks that ended or panicked before shutdown, the first
    /// (the cause of the shutdown) first. Not empty: exit code 3.
    pub failed: Vec<Component>,
}

/// The spool drain of a shutdown (`shutdown.drain_spool`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolDrain {
    /// Events in the spool when it started.
    pub pending_at_start: u64,
    /// Events still in the spool when it ended.
    pub left: u64,
    pub took: Duration,
    pub outcome: SpoolDrainOutcome,
}

/// Why the spool drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolDrainOutcome {
    /// Nothing left in the spool.
    Emptied,
    /// `shutdown.drain_spool` passed first.
    BoundReached,
    /// The forwarder had ended (a failed task): nothing could be delivered.
    ForwarderGone,
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
    // Presence as state: the latest topic and the typing timers, re-armed
    // from the spool before the webhook listens.
    let presence_state = Arc::new(PresenceState::new(
        spool.clone(),
        settings.kafka.clone(),
        settings.presence.ttl(),
        settings.presence.max_typing_timers,
        StateMetrics::new(&registry)?,
    ));
    if settings.presence.ttl().is_some() {
        let scan = store.clone();
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || crate::state::recover(&scan)).await {
            Ok(Ok(found)) => {
                let typing = found.typing.len();
                let armed = presence_state.restore(found.typing).await;
                tracing::info!(scanned = found.scanned, typing, armed, took = ?started.elapsed(), "typing timers restored from the spool");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the spool for typing timers; contacts typing before the restart get no expiry (consumers have typingExpiresAt)")
            }
            Err(e) => tracing::warn!(error = %e, "the typing-timer scan of the spool failed"),
        }
    }
    let budget = BodyBudget::new(
        settings.limits.body_budget_bytes,
        settings.limits.body_budget_per_client_bytes,
        Some(&registry),
    )?;
    let connections = Arc::new(Connections::new(Some(&registry))?);
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
        .with_messages(MessageLimits {
            max_bytes: settings.http.max_message_body_bytes.get(),
            decompression_ratio: settings.http.max_decompression_ratio.get(),
        })
        .with_access(
            Access::new(&settings.access),
            RateLimits::new(&settings.limits, &metrics),
        )
        .with_connections(connections)
        .with_presence_state(presence_state.clone()),
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
    let mut topics: Vec<String> = settings.kafka.event_topics().cloned().collect();
    topics.extend(settings.rejected.topic.clone());
    topics.sort();
    topics.dedup();
    let destinations = DestinationMetrics::new(&registry, topics.iter().cloned())?;
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
    let latest_topics: Vec<String> = settings.kafka.latest_topics().cloned().collect();
    tokio::spawn(compaction::check_loop(
        settings.kafka.clone(),
        brokers.clone(),
        compaction::gauge(&registry, &latest_topics)?,
        shutdown.clone(),
    ));
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
    if settings.presence.ttl().is_some() {
        background.push(supervisor.spawn(
            Component::TypingTimers,
            presence_state.clone().run(shutdown.clone()),
        ));
    }
    drop(presence_state);
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
    let drain = drain::Drain {
        shutdown: shutdown.clone(),
        health: health.clone(),
        deadline,
        drain_spool: settings.shutdown.drain_spool,
        metrics: drain::DrainMetrics::new(&registry)?,
        store,
        stop_webhook,
        webhook_task,
        forwarder_stop,
        forwarder_task,
        background,
        writer_task,
        stop_admin,
        admin_task,
    };
    let task = tokio::spawn(drain.run());

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
        .event_topics()
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

/// Builds the forwarder's producer (at start and after a fatal error), for
/// `serve` and `spool forward` alike.
pub(super) fn producer_factory(
    settings: &Settings,
    brokers: &str,
    metrics: &Metrics,
) -> Box<dyn Fn() -> Result<KafkaPublisher, rdkafka::error::KafkaError> + Send + Sync> {
    let (kafka, brokers, metrics) = (settings.kafka.clone(), brokers.to_owned(), metrics.clone());
    Box::new(move || KafkaPublisher::new(&kafka, &brokers, metrics.clone()))
}

/// The dead-letter file in the spool directory, copied to
/// `spool.dead_letter_topic` through `publisher` when one is set.
pub(super) fn dead_letter_file(
    settings: &Settings,
    store: &Store,
    metrics: &Metrics,
    publisher: &KafkaPublisher,
) -> Arc<DeadLetter> {
    Arc::new(DeadLetter::new(
        &settings.spool.dir,
        store.external_bytes(),
        metrics.clone(),
        settings
            .spool
            .dead_letter_topic
            .clone()
            .map(|t| (t, publisher.clone())),
    ))
}
