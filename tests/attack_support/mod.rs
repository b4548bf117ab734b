//! Connection-slot attacks for `attack_slots.rs` and `attack_admin.rs`: idle,
//! slow-head and slow-body TCP connections from several loopback addresses
//! (127.0.0.2 and up: Linux routes all of 127/8 to loopback), reopened as the
//! bridge closes them, and a client whose latency is measured. Every loop is
//! bounded in count and in time.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Most times one attacking connection is reopened.
const MAX_REOPENS: u64 = 2_000;
/// Pause between a close and the reopen, so the attack does not saturate the
/// two shared cores of a CI machine (the bridge's timeouts are seconds).
const REOPEN_PAUSE: Duration = Duration::from_millis(20);
/// Guards a hang of a single connect, read or write.
const STEP_GUARD: Duration = Duration::from_secs(5);

/// Loopback source addresses 127.0.0.2 ..= 127.0.0.(1 + n).
pub fn sources(n: u8) -> Vec<Ipv4Addr> {
    (2..2 + n).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect()
}

/// What one attacking connection sends.
#[derive(Clone)]
enum Kind {
    /// Nothing.
    Idle,
    /// A request head that never ends.
    SlowHead,
    /// This complete request head, then its body one byte per
    /// [`TRICKLE_EVERY`], never finished.
    SlowBody(Arc<str>),
}

/// The pace of a slow body.
const TRICKLE_EVERY: Duration = Duration::from_millis(200);
/// Most bytes one slow body sends (it declares more).
const MAX_TRICKLE: usize = 300;

/// A running attack: `per_source` connections from each source address.
pub struct Attack {
    stop: CancellationToken,
    tasks: JoinSet<u64>,
    connected: Arc<AtomicU64>,
}

impl Attack {
    /// Half of the connections send nothing, half a request head that never ends.
    pub fn start(target: SocketAddr, sources: &[Ipv4Addr], per_source: usize) -> Self {
        Self::spawn(target, sources, per_source, |i, j| {
            if (i + j) % 2 == 1 {
                Kind::SlowHead
            } else {
                Kind::Idle
            }
        })
    }

    /// Every connection sends `head` (a complete request head that declares a
    /// body of more than 300 bytes) and then its body at one byte per 200 ms.
    pub fn slow_bodies(
        target: SocketAddr,
        sources: &[Ipv4Addr],
        per_source: usize,
        head: &str,
    ) -> Self {
        let head: Arc<str> = head.into();
        Self::spawn(target, sources, per_source, |_, _| {
            Kind::SlowBody(head.clone())
        })
    }

    fn spawn(
        target: SocketAddr,
        sources: &[Ipv4Addr],
        per_source: usize,
        kind: impl Fn(usize, usize) -> Kind,
    ) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let connected = Arc::new(AtomicU64::new(0));
        for (i, src) in sources.iter().enumerate() {
            for j in 0..per_source {
                tasks.spawn(hold(
                    target,
                    *src,
                    kind(i, j),
                    stop.clone(),
                    connected.clone(),
                ));
            }
        }
        Self {
            stop,
            tasks,
            connected,
        }
    }

    /// Waits (bounded) until the attack has opened `n` connections in all.
    pub async fn wait_opened(&self, n: u64) {
        let start = Instant::now();
        while self.connected.load(Ordering::Relaxed) < n {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the attack never opened {n} connections"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the attack; returns how many connections it opened in all.
    pub async fn stop(mut self) -> u64 {
        self.stop.cancel();
        let mut opened = 0;
        while let Ok(Some(n)) = tokio::time::timeout(STEP_GUARD, self.tasks.join_next()).await {
            opened += n.expect("attacker task");
        }
        opened
    }
}

async fn connect_from(src: Ipv4Addr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((src, 0)))?;
    socket.connect(target).await
}

/// One attacking connection, reopened each time the bridge closes it.
async fn hold(
    target: SocketAddr,
    src: Ipv4Addr,
    kind: Kind,
    stop: CancellationToken,
    connected: Arc<AtomicU64>,
) -> u64 {
    let mut opened = 0;
    while opened < MAX_REOPENS && !stop.is_cancelled() {
        let connect = tokio::time::timeout(STEP_GUARD, connect_from(src, target));
        let mut stream = tokio::select! {
            _ = stop.cancelled() => break,
            r = connect => match r {
                Ok(Ok(s)) => s,
                _ => {
                    tokio::time::sleep(REOPEN_PAUSE).await;
                    continue;
                }
            },
        };
        opened += 1;
        connected.fetch_add(1, Ordering::Relaxed);
        let (mut rd, mut wr) = stream.split();
        let send = async {
            match &kind {
                Kind::Idle => {}
                Kind::SlowHead => {
                    let _ = wr
                        .write_all(b"POST /webhooks/zapi/presence HTTP/1.1\r\nhost: t\r\n")
                        .await;
                }
                Kind::SlowBody(head) => {
                    if wr.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    for _ in 0..MAX_TRICKLE {
                        tokio::time::sleep(TRICKLE_EVERY).await;
                        if wr.write_all(b" ").await.is_err() {
                            return;
                        }
                    }
                }
            }
            std::future::pending::<()>().await
        };
        // Hold it until the bridge closes it (EOF, reset or an answer).
        let mut buf = [0u8; 512];
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = send => {}
            _ = async { while let Ok(n) = rd.read(&mut buf).await { if n == 0 { break } } } => {}
        }
        tokio::time::sleep(REOPEN_PAUSE).await;
    }
    opened
}

/// Sends `request` on a fresh connection and reads the answer to its end (the
/// request must say `connection: close`). Returns the status line and the time
/// from connect to the last byte, or None if it failed or took over `guard`.
pub async fn timed(
    target: SocketAddr,
    request: &[u8],
    guard: Duration,
) -> Option<(String, Duration)> {
    let start = Instant::now();
    let exchange = async {
        let mut s = TcpStream::connect(target).await.ok()?;
        s.write_all(request).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        text.lines().next().map(str::to_owned)
    };
    let status = tokio::time::timeout(guard, exchange).await.ok()??;
    Some((status, start.elapsed()))
}

/// The `q` quantile (0..=1) of `samples` by nearest rank; `samples` non-empty.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}
