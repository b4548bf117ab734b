//! The webhook handler alone: a `Webhook` in front of a test's own sink,
//! served on a loopback port 0, with no broker and no spool. The settings are
//! the defaults plus the given environment, wired as the app wires them.

use std::net::SocketAddr;
use std::sync::Arc;

use presence_bridge::ingress::{auth::Auth, BodyLimits, Webhook};
use presence_bridge::metrics::Metrics;
use presence_bridge::server::{self, Limits};
use presence_bridge::sink::Sink;
use tokio_util::sync::CancellationToken;

/// A served handler: where it listens, its metrics, and its server task.
pub struct Handler {
    pub addr: SocketAddr,
    pub metrics: Metrics,
    pub registry: prometheus::Registry,
    /// Cancel to shut the server down; `server` then ends.
    pub shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<()>,
}

impl Handler {
    /// Serves a `Webhook` over `sink` with the settings of `env` (e.g.
    /// `PRESENCE_BRIDGE__AUTH__TOKENS`, `PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES`)
    /// and the connection `limits`.
    pub async fn serve<S: Sink>(sink: S, env: &[(&str, &str)], limits: Limits) -> Self {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let settings = presence_bridge::config::load(None, env).expect("test settings are valid");
        let (registry, metrics) = Metrics::standalone();
        let webhook = Webhook::new(
            sink,
            Auth::from_settings(&settings.auth),
            BodyLimits {
                max_bytes: settings.http.max_body_bytes.get(),
                read_timeout: settings.http.body_read_timeout,
            },
            settings.kafka,
            metrics.clone(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(server::serve(
            listener,
            Arc::new(webhook),
            limits,
            shutdown.clone(),
            None,
        ));
        Self {
            addr,
            metrics,
            registry,
            shutdown,
            server,
        }
    }
}
