//! The accept loop shared by the webhook and admin listeners: HTTP/1.1 and
//! h2c (prior knowledge) through hyper-util, a bounded number of connections,
//! a header read timeout, and a graceful drain.
//!
//! [`serve`] takes its listener and a cancellation token: tests bind port 0
//! and cancel whenever they like. On cancellation it stops accepting, lets
//! in-flight requests finish (idle keep-alive connections are closed), and
//! returns once every connection is gone. The caller bounds that wait.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to send a complete request head (HTTP/1.1).
    pub header_read_timeout: Duration,
}

/// The direct TCP peer of a connection, attached to every request it carries
/// as an extension (`req.extensions().get::<Peer>()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// A request handler: one async function from request to response.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// Serves `handler` on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    shutdown: CancellationToken,
    metrics: Option<Metrics>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30));
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();

    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Some(m) = &metrics {
                m.connection_opened();
            }
            let svc = service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler.handle(req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            if let Some(m) = &metrics {
                m.connection_closed();
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
