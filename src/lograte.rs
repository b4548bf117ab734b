//! Bounded logging of what remote clients can trigger: the process-wide
//! limiter for rejection and connection log lines.
//!
//! Every request the ingress refuses, and every connection the listener
//! refuses or loses, is counted in a metric always; its log line goes through
//! [`admit`] first. Per interval ([`INTERVAL`]), each reason may write its
//! first lines in full (the per-reason quota of its [`Caller`]'s [`Budget`]),
//! all reasons of one caller class together at most the budget's `total`;
//! past that a line is suppressed and counted. When the interval ends (on the
//! next line of any reason, or within one interval by a background thread),
//! each reason that had lines suppressed gets one summary line, `log lines
//! suppressed`, with `reason`, `caller` and `suppressed` (how many lines were
//! not written since the last summary for that reason). The running totals are
//! `presence_bridge_log_lines_suppressed_total{reason}`.
//!
//! So the lines per interval are at most `ANONYMOUS.total +
//! AUTHENTICATED.total` full lines plus one summary per (caller, reason): a
//! fixed number, whatever the request rate (see [`max_lines_per_interval`]).
//!
//! Memory is a fixed table keyed by reason code, a closed set ([`REASONS`]:
//! the rejection codes, then the connection reasons of [`CONNECTION_REASONS`];
//! anything else shares the `other` slot), never by client address.
//!
//! Authenticated rejections (a valid token; a body refused for its content)
//! have their own, larger budget ([`AUTHENTICATED`]): a tenant sending the
//! odd bad event gets every line, a tenant flooding is bounded like anyone
//! else, and unauthenticated floods never use up the authenticated budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::metrics::{EVENT_REJECT_REASONS, REQUEST_REFUSED_REASONS};

/// Length of one interval: quotas refill and summaries are written this often.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Who caused a line: decides its [`Budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No valid token (yet): unauthorized, unknown path or method, refused
    /// client address, a bad path, connection-level events.
    Anonymous,
    /// A valid token: the request was refused for what it carries or for the
    /// instance it names.
    Authenticated,
}

impl Caller {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Authenticated => "authenticated",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Anonymous => 0,
            Self::Authenticated => 1,
        }
    }
}

/// Full log lines one caller class may write per interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Lines per reason.
    pub per_reason: u32,
    /// Lines for all reasons together.
    pub total: u32,
}

/// Budget for lines anyone can cause without a token.
pub const ANONYMOUS: Budget = Budget {
    per_reason: 10,
    total: 50,
};

/// Budget for rejections of authenticated requests.
pub const AUTHENTICATED: Budget = Budget {
    per_reason: 100,
    total: 200,
};

/// Connection-level reasons (listener and TLS), after the rejection codes.
pub const CONNECTION_REASONS: &[&str] = &[
    "connection_per_client_limit",
    "connection_error",
    "connection_idle_closed",
    "connection_not_closed",
    "accept_failed",
    "tls_handshake_error",
    "tls_handshake_timeout",
];

const OTHER: usize =
    EVENT_REJECT_REASONS.len() + REQUEST_REFUSED_REASONS.len() + CONNECTION_REASONS.len();
/// Number of reasons the table holds, `other` included.
pub const REASONS: usize = OTHER + 1;

/// The reason code of table slot `i`.
fn reason_at(i: usize) -> &'static str {
    let lists: [&[&str]; 3] = [
        &EVENT_REJECT_REASONS,
        &REQUEST_REFUSED_REASONS,
        CONNECTION_REASONS,
    ];
    let mut i = i;
    for list in lists {
        if i < list.len() {
            return list[i];
        }
        i -= list.len();
    }
    "other"
}

/// The table slot of `reason` (`other` for a reason not in the closed set).
fn slot(reason: &str) -> usize {
    (0..OTHER)
        .find(|&i| reason_at(i) == reason)
        .unwrap_or(OTHER)
}

/// Every reason of the table, in slot order (the metric's label values).
pub fn reasons() -> impl Iterator<Item = &'static str> {
    (0..REASONS).map(reason_at)
}

/// The most lines written per interval: every full line of both budgets plus
/// one summary per (caller, reason).
pub fn max_lines_per_interval() -> u64 {
    u64::from(ANONYMOUS.total) + u64::from(AUTHENTICATED.total) + 2 * REASONS as u64
}

/// One summary line to write: `suppressed` lines of `reason` by `caller`
/// were not written since the previous summary of that pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub caller: Caller,
    pub reason: &'static str,
    pub suppressed: u64,
}

struct Window {
    started: Option<Instant>,
    lines: [u32; 2],
    logged: [[u32; REASONS]; 2],
    suppressed: [[u64; REASONS]; 2],
}

// Written out: `Default` is derived for arrays of at most 32 elements.
impl Default for Window {
    fn default() -> Self {
        Self {
            started: None,
            lines: [0; 2],
            logged: [[0; REASONS]; 2],
            suppressed: [[0; REASONS]; 2],
        }
    }
}

impl Window {
    /// Takes the pending summaries (and forgets them).
    fn summaries(&mut self) -> Vec<Summary> {
        let mut out = Vec::new();
        for caller in [Caller::Anonymous, Caller::Authenticated] {
            for (i, n) in self.suppressed[caller.index()].iter_mut().enumerate() {
                if *n > 0 {
                    out.push(Summary {
                        caller,
                        reason: reason_at(i),
                        suppressed: std::mem::take(n),
                    });
                }
            }
        }
        out
    }

    /// Starts a new interval if the current one is over; its summaries.
    fn roll(&mut self, every: Duration, now: Instant) -> Vec<Summary> {
        match self.started {
            Some(at) if now.saturating_duration_since(at) < every => Vec::new(),
            _ => {
                let out = self.summaries();
                *self = Window {
                    started: Some(now),
                    ..Window::default()
                };
                out
            }
        }
    }
}

/// The limiter: quotas per interval, the suppressed totals.
pub struct Limiter {
    every: Duration,
    budgets: [Budget; 2],
    window: Mutex<Window>,
    totals: [AtomicU64; REASONS],
}

impl Limiter {
    pub fn new(every: Duration, anonymous: Budget, authenticated: Budget) -> Self {
        Self {
            every,
            budgets: [anonymous, authenticated],
            window: Mutex::new(Window::default()),
            totals: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a line of `reason` by `caller` at `now` is written in full,
    /// and the summaries of the interval that `now` ended, if it did.
    pub fn admit_at(&self, caller: Caller, reason: &str, now: Instant) -> (bool, Vec<Summary>) {
        let i = slot(reason);
        let c = caller.index();
        let budget = self.budgets[c];
        let mut w = self.window();
        let summaries = w.roll(self.every, now);
        let admitted = w.logged[c][i] < budget.per_reason && w.lines[c] < budget.total;
        if admitted {
            w.logged[c][i] += 1;
            w.lines[c] += 1;
        } else {
            w.suppressed[c][i] += 1;
            self.totals[i].fetch_add(1, Ordering::Relaxed);
        }
        (admitted, summaries)
    }

    /// The summaries of the interval, if `now` ended it.
    pub fn due_at(&self, now: Instant) -> Vec<Summary> {
        self.window().roll(self.every, now)
    }

    /// Every pending summary now, interval or not (the quotas stay used).
    pub fn pending(&self) -> Vec<Summary> {
        self.window().summaries()
    }

    /// Lines suppressed since start, per reason (slot order, see [`reasons`]).
    pub fn suppressed_totals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.totals
            .iter()
            .enumerate()
            .map(|(i, n)| (reason_at(i), n.load(Ordering::Relaxed)))
    }
}

/// Writes summary lines.
pub fn write(summaries: Vec<Summary>) {
    for s in summaries {
        tracing::info!(
            reason = s.reason,
            caller = s.caller.as_str(),
            suppressed = s.suppressed,
            interval_secs = INTERVAL.as_secs(),
            "log lines suppressed"
        );
    }
}

/// The process-wide limiter (like the log output it protects), with a
/// background thread that writes the summaries of an interval that ended
/// with no line after it.
pub fn global() -> &'static Limiter {
    static GLOBAL: OnceLock<Limiter> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("log-summaries".into())
            .spawn(|| loop {
                std::thread::sleep(INTERVAL);
                write(global().due_at(Instant::now()));
            });
        if let Err(e) = spawned {
            // Summaries still come with the next line of any reason.
            tracing::warn!(error = %e, "cannot start the log summary thread");
        }
        Limiter::new(INTERVAL, ANONYMOUS, AUTHENTICATED)
    })
}

/// Whether to write a line of `reason` caused by `caller` in full (else it is
/// counted as suppressed); writes the summaries of an ended interval first.
/// Call it only when the line's level is enabled, so that lines nobody
/// would see are not counted as suppressed.
pub fn admit(caller: Caller, reason: &str) -> bool {
    let (admitted, summaries) = global().admit_at(caller, reason, Instant::now());
    write(summaries);
    admitted
}

/// Writes every pending summary now (at shutdown, or in tests).
pub fn flush() {
    write(global().pending());
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Budget = Budget {
        per_reason: 3,
        total: 5,
    };

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn admitted(l: &Limiter, caller: Caller, reason: &str, n: usize) -> usize {
        let mut yes = 0;
        for _ in 0..n {
            let (ok, summaries) = l.admit_at(caller, reason, now());
            assert!(summaries.is_empty(), "no interval ended: {summaries:?}");
            yes += usize::from(ok);
        }
        yes
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_writes_its_quota_then_one_summary_per_interval() {
        let l = Limiter::new(Duration::from_secs(10), SMALL, AUTHENTICATED);
        // First interval: 3 lines of the flooded reason out of 10,000.
        assert_eq!(admitted(&l, Caller::Anonymous, "unauthorized", 10_000), 3);
        // Another reason still gets lines, up to the class's total (5).
        assert_eq!(admitted(&l, Caller::Anonymous, "not_found", 10), 2);
        // The authenticated budget is separate.
        assert_eq!(
            admitted(&l, Caller::Authenticated, "invalid_phone", 150),
            100
        );
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(l.due_at(now()).is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut summaries = l.due_at(now());
        summaries.sort_by_key(|s| s.reason);
        assert_eq!(
            summaries,
            vec![
                Summary {
                    caller: Caller::Authenticated,
                    reason: "invalid_phone",
                    suppressed: 50
                },
                Summary {
                    caller: Caller::Anonymous,
                    reason: "not_found",
                    suppressed: 8
                },
                Summary {
                    caller: Caller::Anonymous,
                    reason: "unauthorized",
                    suppressed: 9_997
                },
            ]
        );
        // The new interval has its quota again; nothing is pending.
        assert_eq!(admitted(&l, Caller::Anonymous, "unauthorized", 4), 3);
        let totals: Vec<_> = l.suppressed_totals().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            totals,
            vec![
                ("invalid_phone", 50),
                ("not_found", 8),
                ("unauthorized", 9_998)
            ]
        );
        assert_eq!(
            l.pending(),
            vec![Summary {
                caller: Caller::Anonymous,
                reason: "unauthorized",
                suppressed: 1
            }]
        );
        assert!(l.pending().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_line_after_an_interval_brings_its_summary() {
        let l = Limiter::new(Duration::from_secs(10), SMALL, SMALL);
        assert_eq!(admitted(&l, Caller::Anonymous, "connection_error", 7), 3);
        tokio::time::advance(Duration::from_secs(30)).await;
        let (ok, summaries) = l.admit_at(Caller::Anonymous, "unauthorized", now());
        assert!(ok);
        assert_eq!(
            summaries,
            vec![Summary {
                caller: Caller::Anonymous,
                reason: "connection_error",
                suppressed: 4
            }]
        );
    }

    #[test]
    fn the_table_is_the_closed_set_of_reasons() {
        let all: Vec<_> = reasons().collect();
        assert_eq!(all.len(), REASONS);
        let unique: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), REASONS, "a reason in two lists: {all:?}");
        assert_eq!(slot("no such reason, from a client"), OTHER);
        assert_eq!(reason_at(slot("unauthorized")), "unauthorized");
        assert_eq!(
            reason_at(slot("tls_handshake_error")),
            "tls_handshake_error"
        );
    }
}
