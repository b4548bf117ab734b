//! One HTTP/1.1 exchange with the provider: a fresh TCP connection (TLS with
//! Mozilla's roots for `https://`), one request, the answer's status and at
//! most [`MAX_ANSWER_BYTES`] of its body. No retries and no timeout here:
//! [`super::Client`] owns both.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName};
use tokio_rustls::TlsConnector;

/// Largest answer body read; `/me` is a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Why an exchange produced no answer.
#[derive(Debug)]
pub enum AttemptError {
    /// No connection (refused, unreachable, DNS), or it broke before the answer.
    Connect(String),
    /// The TLS handshake failed (certificate, protocol): retrying would not help.
    Tls(String),
    /// The answer's body is larger than [`MAX_ANSWER_BYTES`].
    TooLarge,
}

/// A TLS client for the public Web PKI (Mozilla's roots, compiled in).
pub fn tls_connector() -> Result<TlsConnector, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Sends `request` to `host:port` (over TLS when `tls` is given) and reads the answer.
pub async fn exchange(
    tls: Option<&TlsConnector>,
    host: &str,
    port: u16,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), AttemptError> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| AttemptError::Connect(e.kind().to_string()))?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => send(TokioIo::new(tcp), request).await,
        Some(tls) => {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| AttemptError::Tls(format!("`{host}` is not a TLS server name")))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| AttemptError::Tls(e.to_string()))?;
            send(TokioIo::new(stream), request).await
        }
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), AttemptError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| AttemptError::Connect(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let result = async {
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| AttemptError::Connect(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    AttemptError::TooLarge
                } else {
                    AttemptError::Connect(e.to_string())
                }
            })?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    driver.abort();
    result
}
