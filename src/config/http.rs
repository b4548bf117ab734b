//! `[http]` and `[http.tls]`: the webhook listener's address, body and time
//! limits, connection limits, and native HTTPS.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::values::{human, nonzero, Addr, Dur};
use super::{invalid, ConfigError};

/// Largest `http.max_body_bytes`: 16 MiB.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Serialize)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub max_body_bytes: NonZeroUsize,
    /// Largest body on the routes that take every callback type: a received
    /// message may carry 65,536 characters (up to 12 bytes each once JSON
    /// escapes an astral character). Every kind but received still has to fit
    /// in `max_body_bytes`.
    pub max_message_body_bytes: NonZeroUsize,
    /// A gzip body may expand to at most this many times its compressed size
    /// (checked once the decompressed bytes pass `max_body_bytes`).
    pub max_decompression_ratio: NonZeroUsize,
    #[serde(with = "human")]
    pub header_read_timeout: Duration,
    #[serde(with = "human")]
    pub body_read_timeout: Duration,
    /// Over 90 % of the connection slots taken, a connection with no request
    /// in flight (idle, or its head still arriving) is closed after this.
    #[serde(with = "human")]
    pub pressure_idle_timeout: Duration,
    /// Over 90 % of the connection slots or of the body budget taken, a body
    /// still arriving after this is cut off (the shorter timeout applies).
    #[serde(with = "human")]
    pub pressure_body_read_timeout: Duration,
    pub max_connections: NonZeroUsize,
    /// Connections one client address (an IPv6 /64) may hold at once.
    pub max_connections_per_client: NonZeroUsize,
    /// HTTP/1.1 and HTTP/2 connections are closed gracefully after this many requests.
    pub max_requests_per_connection: NonZeroUsize,
    /// Native HTTPS; None: plain HTTP (behind a TLS-terminating proxy).
    pub tls: Option<TlsSettings>,
}

/// `http.tls`: PEM files of the webhook listener's certificate chain and key.
#[derive(Debug, Clone, Serialize)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How often the files are checked for changes (SIGHUP also reloads).
    #[serde(with = "human")]
    pub reload_interval: Duration,
}

raw_section! {
    /// `[http]` as read.
    pub struct RawHttp {
        listen: Addr = Addr(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8080))),
        max_body_bytes: u64 = 65_536,
        max_message_body_bytes: u64 = 1_048_576,
        max_decompression_ratio: u64 = 100,
        header_read_timeout: Dur = Dur::secs(5),
        body_read_timeout: Dur = Dur::secs(10),
        pressure_idle_timeout: Dur = Dur::secs(1),
        pressure_body_read_timeout: Dur = Dur::secs(2),
        max_connections: u64 = 4096,
        max_connections_per_client: u64 = 64,
        max_requests_per_connection: u64 = 1000,
        tls: RawTls = RawTls::default(),
    }
}

raw_section! {
    /// `[http.tls]` as read.
    pub struct RawTls {
        cert: Option<PathBuf> = None,
        key: Option<PathBuf> = None,
        reload_interval: Dur = Dur::secs(10),
    }
}

impl TryFrom<RawHttp> for HttpSettings {
    type Error = ConfigError;

    fn try_from(http: RawHttp) -> Result<Self, ConfigError> {
        let max_body_bytes = nonzero("http.max_body_bytes", http.max_body_bytes)?;
        if max_body_bytes.get() > MAX_BODY_BYTES {
            return Err(invalid(
                "http.max_body_bytes",
                "must be at most 16777216 (16 MiB)",
            ));
        }
        let max_message_body_bytes =
            nonzero("http.max_message_body_bytes", http.max_message_body_bytes)?;
        if max_message_body_bytes.get() > MAX_BODY_BYTES || max_message_body_bytes < max_body_bytes
        {
            return Err(invalid(
                "http.max_message_body_bytes",
                "must be at least http.max_body_bytes and at most 16777216 (16 MiB)",
            ));
        }
        Ok(Self {
            listen: http.listen.0,
            max_body_bytes,
            max_message_body_bytes,
            max_decompression_ratio: nonzero(
                "http.max_decompression_ratio",
                http.max_decompression_ratio,
            )?,
            header_read_timeout: http.header_read_timeout.0,
            body_read_timeout: http.body_read_timeout.0,
            pressure_idle_timeout: http.pressure_idle_timeout.0,
            pressure_body_read_timeout: http.pressure_body_read_timeout.0,
            max_connections: nonzero("http.max_connections", http.max_connections)?,
            max_connections_per_client: nonzero(
                "http.max_connections_per_client",
                http.max_connections_per_client,
            )?,
            max_requests_per_connection: nonzero(
                "http.max_requests_per_connection",
                http.max_requests_per_connection,
            )?,
            tls: Option::<TlsSettings>::try_from(http.tls)?,
        })
    }
}

/// Both `http.tls.cert` and `http.tls.key`, or neither.
impl TryFrom<RawTls> for Option<TlsSettings> {
    type Error = ConfigError;

    fn try_from(tls: RawTls) -> Result<Self, ConfigError> {
        let set = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        match (set(tls.cert), set(tls.key)) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(invalid(
                "http.tls.key",
                "must be set when http.tls.cert is (both or neither)",
            )),
            (None, Some(_)) => Err(invalid(
                "http.tls.cert",
                "must be set when http.tls.key is (both or neither)",
            )),
            (Some(cert), Some(key)) => Ok(Some(TlsSettings {
                cert,
                key,
                reload_interval: tls.reload_interval.0,
            })),
        }
    }
}
