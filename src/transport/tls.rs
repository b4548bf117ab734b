//! Native HTTPS for the webhook listener: loads the PEM certificate chain and
//! private key named by `http.tls.cert` / `http.tls.key` into a rustls
//! acceptor (ring provider, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`), and
//! reloads them without a restart.
//!
//! The acceptor resolves the certificate per handshake from a swappable
//! holder: a reload replaces it for new connections while open ones go on
//! with the one they started with. [`Tls::reloader`] checks the files
//! every `http.tls.reload_interval` (by content, so Kubernetes' symlink swaps
//! of mounted secrets are seen) and reloads at once on SIGHUP. A pair that does
//! not load is refused and logged (never its content); the current one stays.
//! At start the same failure is a [`TlsError`], which the CLI reports as a
//! configuration error (exit code 2).

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::TlsSettings;
use crate::metrics::Metrics;

/// Why a certificate/key pair could not be used. Messages name the key and the
/// file, never any of its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("http.tls.cert: cannot read {}: {source}", path.display())]
    ReadCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("http.tls.key: cannot read {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("http.tls.cert: {} is not a PEM certificate chain: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: &'static str },
    #[error("http.tls.key: {} is not a PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}", path.display())]
    BadKey { path: PathBuf, reason: &'static str },
    #[error("http.tls.key: {} cannot serve http.tls.cert: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error("http.tls: cannot build the TLS configuration: {0}")]
    Config(String),
}

/// The certificate a new handshake gets; swapped by reloads.
struct Current(RwLock<Arc<CertifiedKey>>);

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Current(<certified key>)")
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// What one reload attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The files are as last seen: nothing to do.
    Unchanged,
    /// New connections get the new pair.
    Loaded,
    /// The pair was refused; the current one stays.
    Failed,
}

/// The webhook listener's TLS acceptor and its certificate holder.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    acceptor: TlsAcceptor,
    current: Arc<Current>,
    /// Fingerprint of the file contents last tried (loaded or refused).
    seen: Mutex<u64>,
    metrics: Metrics,
}

/// A loaded pair and what we know about it.
struct Loaded {
    key: CertifiedKey,
    not_after: Option<i64>,
}

impl Tls {
    /// Loads the pair (blocking file reads: call at start) and builds the acceptor.
    pub fn load(settings: &TlsSettings, metrics: Metrics) -> Result<Self, TlsError> {
        let provider = Arc::new(ring::default_provider());
        let (fingerprint, loaded) = read_and_load(settings, &provider);
        let loaded = loaded?;
        if let Some(t) = loaded.not_after {
            metrics.tls_certificate_expiry(t);
        }
        let current = Arc::new(Current(RwLock::new(Arc::new(loaded.key))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        log_loaded("TLS certificate loaded", settings, loaded.not_after);
        Ok(Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                provider,
                acceptor: TlsAcceptor::from(Arc::new(config)),
                current,
                seen: Mutex::new(fingerprint),
                metrics,
            }),
        })
    }

    /// Checks that the configured pair loads (for `check-config`).
    pub fn check(settings: &TlsSettings) -> Result<(), TlsError> {
        read_and_load(settings, &ring::default_provider())
            .1
            .map(|_| ())
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.inner.acceptor
    }

    /// Reads the files and swaps the pair in if they changed since the last
    /// attempt (always with `force`). Blocking file reads: run off the async
    /// threads.
    pub fn reload(&self, force: bool) -> Reload {
        let inner = &self.inner;
        let (fingerprint, loaded) = read_and_load(&inner.settings, &inner.provider);
        {
            let mut seen = inner.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if !force && *seen == fingerprint {
                return Reload::Unchanged;
            }
            *seen = fingerprint;
        }
        match loaded {
            Ok(loaded) => {
                *inner
                    .current
                    .0
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(loaded.key);
                inner.metrics.tls_reloaded(true);
                inner
                    .metrics
                    .tls_certificate_expiry(loaded.not_after.unwrap_or(0));
                log_loaded(
                    "TLS certificate reloaded",
                    &inner.settings,
                    loaded.not_after,
                );
                Reload::Loaded
            }
            Err(e) => {
                inner.metrics.tls_reloaded(false);
                tracing::warn!(error = %e, "TLS certificate reload refused; new connections keep the current certificate");
                Reload::Failed
            }
        }
    }

    /// Reloads on every `http.tls.reload_interval` tick when the files
    /// changed, and on SIGHUP unconditionally, until `shutdown`.
    pub fn spawn_reloader(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.reloader(shutdown))
    }

    /// The reloader of [`Tls::spawn_reloader`] as a future, for a caller that
    /// spawns (and supervises) it itself. Ends only at `shutdown`.
    pub fn reloader(
        &self,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let tls = self.clone();
        let interval = self.inner.settings.reload_interval;
        async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hangup = match signal(SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS files are still polled");
                    None
                }
            };
            loop {
                let force = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(interval) => false,
                    _ = async {
                        match hangup.as_mut() {
                            Some(s) => { s.recv().await; }
                            None => std::future::pending::<()>().await,
                        }
                    } => {
                        tracing::info!("SIGHUP: reloading the TLS certificate");
                        true
                    }
                };
                let tls = tls.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || tls.reload(force)).await {
                    // A panic in the reload is the reloader's own: let its
                    // supervisor see it as one.
                    if e.is_panic() {
                        std::panic::resume_unwind(e.into_panic());
                    }
                    return;
                }
            }
        }
    }
}

fn log_loaded(what: &str, settings: &TlsSettings, not_after: Option<i64>) {
    let not_after = not_after
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "unknown".to_owned());
    tracing::info!(cert = %settings.cert.display(), %not_after, "{what}");
}

/// Reads both files; returns a fingerprint of what was read (content, or
/// the kind of read error) and the loaded pair.
fn read_and_load(
    settings: &TlsSettings,
    provider: &CryptoProvider,
) -> (u64, Result<Loaded, TlsError>) {
    let cert = std::fs::read(&settings.cert);
    let key = std::fs::read(&settings.key);
    let mut h = DefaultHasher::new();
    for r in [&cert, &key] {
        match r {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => format!("{:?}", e.kind()).hash(&mut h),
        }
    }
    let loaded = match (cert, key) {
        (Err(source), _) => Err(TlsError::ReadCert {
            path: settings.cert.clone(),
            source,
        }),
        (_, Err(source)) => Err(TlsError::ReadKey {
            path: settings.key.clone(),
            source,
        }),
        (Ok(cert), Ok(key)) => load_pair(&settings.cert, &cert, &settings.key, &key, provider),
    };
    (h.finish(), loaded)
}

fn load_pair(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<Loaded, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_owned(),
            reason: pem_reason(&e),
        })?;
    if chain.is_empty() {
        return Err(TlsError::BadCertificate {
            path: cert_path.to_owned(),
            reason: "no CERTIFICATE section",
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.to_owned(),
        reason: pem_reason(&e),
    })?;
    let not_after = not_after(&chain[0]);
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Unusable {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    if let Some(t) = not_after {
        if t < time::OffsetDateTime::now_utc().unix_timestamp() {
            tracing::warn!(cert = %cert_path.display(), "the TLS certificate has expired");
        }
    }
    Ok(Loaded { key, not_after })
}

/// A PEM error without the line it quotes (which may be key material).
fn pem_reason(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::NoItemsFound => "no section of the expected kind",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "unreadable PEM",
    }
}

/// The not-after time of a DER certificate, in Unix seconds, read with a
/// minimal DER walk (Certificate → TBSCertificate → Validity).
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (tag, cert, _) = der(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, tbs, _) = der(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _, mut rest) = der(tbs)?;
    if tag != 0xA0 {
        rest = tbs; // no explicit version: v1
    }
    for _ in 0..3 {
        // serialNumber, signature, issuer
        rest = der(rest)?.2;
    }
    let (tag, validity, _) = der(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, validity) = der(validity)?; // notBefore
    let (tag, t, _) = der(validity)?;
    let t = std::str::from_utf8(t).ok()?.strip_suffix('Z')?;
    let (year, t) = match tag {
        0x17 => {
            let yy: i32 = t.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, t.get(2..)?)
        }
        0x18 => (t.get(..4)?.parse().ok()?, t.get(4..)?),
        _ => return None,
    };
    if t.len() != 10 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| t[i..i + 2].parse::<u8>().ok();
    let date = time::Date::from_calendar_date(year, time::Month::try_from(n(0)?).ok()?, n(2)?);
    let time = time::Time::from_hms(n(4)?, n(6)?, n(8)?).ok()?;
    Some(date.ok()?.with_time(time).assume_utc().unix_timestamp())
}

/// One DER element: (tag, contents, rest).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | x as usize);
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, b.get(header..end)?, b.get(end..)?))
}

/// Waits at most `limit` for the handshake; counts failures, logs them at debug only.
pub async fn handshake(
    tls: &Tls,
    stream: tokio::net::TcpStream,
    limit: Duration,
    metrics: Option<&Metrics>,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let failed = |reason: crate::server::metrics::HandshakeFailure| {
        if let Some(m) = metrics {
            m.tls_handshake_failed(reason);
        }
    };
    match tokio::time::timeout(limit, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            failed(crate::server::metrics::HandshakeFailure::Error);
            if tracing::enabled!(tracing::Level::DEBUG)
                && crate::lograte::admit(crate::lograte::Caller::Anonymous, "tls_handshake_error")
            {
                tracing::debug!(error = %e, "TLS handshake failed");
            }
            None
        }
        Err(_) => {
            failed(crate::server::metrics::HandshakeFailure::Timeout);
            if tracing::enabled!(tracing::Level::DEBUG)
                && crate::lograte::admit(crate::lograte::Caller::Anonymous, "tls_handshake_timeout")
            {
                tracing::debug!("TLS handshake timed out");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_valid_until(year: i32) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, 7, 9);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn reads_the_not_after_time_of_utc_and_generalized_times() {
        for year in [2031, 2051] {
            // rcgen writes UTCTime before 2050, GeneralizedTime from 2050 on.
            let (pem, _) = cert_valid_until(year);
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            let want = time::Date::from_calendar_date(year, time::Month::July, 9)
                .unwrap()
                .midnight()
                .assume_utc()
                .unix_timestamp();
            assert_eq!(not_after(&der), Some(want), "year {year}");
        }
        assert_eq!(not_after(b"\x30\x03\x02\x01\x01"), None);
        assert_eq!(not_after(b""), None);
    }

    #[test]
    fn errors_name_the_key_and_never_quote_the_key_file() {
        let provider = ring::default_provider();
        let (cert, key) = cert_valid_until(2040);
        let (_, other_key) = cert_valid_until(2040);
        let p = |s: &str| PathBuf::from(s);
        assert!(load_pair(&p("c"), cert.as_bytes(), &p("k"), key.as_bytes(), &provider).is_ok());

        let e = load_pair(&p("c"), b"junk", &p("k"), key.as_bytes(), &provider)
            .err()
            .expect("refused");
        assert!(e.to_string().starts_with("http.tls.cert: c "), "{e}");
        let mut broken = key.replace("-----BEGIN PRIVATE KEY-----", "-----BEGIN PRIVATE KEY");
        broken.push_str("SECRETLINE\n");
        let e = load_pair(
            &p("c"),
            cert.as_bytes(),
            &p("k"),
            broken.as_bytes(),
            &provider,
        )
        .err()
        .expect("refused");
        let text = e.to_string();
        assert!(text.starts_with("http.tls.key: k "), "{text}");
        assert!(!text.contains("SECRET") && !text.contains("MII"), "{text}");
        let e = load_pair(
            &p("c"),
            cert.as_bytes(),
            &p("k"),
            other_key.as_bytes(),
            &provider,
        )
        .err()
        .expect("refused");
        assert!(matches!(e, TlsError::Unusable { .. }), "{e}");
    }
}
