//! The performance ceiling for the load benchmark: a bare hyper server on the
//! same stack as the bridge (hyper 1, hyper-util auto HTTP/1.1 + h2c, tokio
//! multi-thread) that reads the whole body and answers 200 with a small JSON
//! body. No validation, no envelope, no spool, no Kafka.
//!
//!   cargo run --release --example ceiling -- 127.0.0.1:18080

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("ceiling listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let _ = body.len();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                    br#"{"id":"00000000-0000-7000-8000-000000000000"}"#,
                ))))
            });
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
