//! Attack: more idle and slow-head connections than the admin port allows,
//! from eight addresses, reopened as they are closed; `/livez` and `/readyz`
//! (a fresh connection each, like the kubelet's probes) must still answer 200
//! within a second (SECURITY.md). Every loop is bounded.

mod attack_support;
mod common;

use std::time::{Duration, Instant};

use attack_support::{quantile, sources, timed, Attack};
use common::Bridge;

/// The admin listener's connection limit (src/app.rs).
const ADMIN_SLOTS: u64 = 64;
/// Attacking connections: 8 addresses x 12, half again the limit.
const ATTACKERS: u64 = 96;
const _: () = assert!(ATTACKERS > ADMIN_SLOTS);
const PROBES: usize = 40;
const PHASE_BUDGET: Duration = Duration::from_secs(20);
/// The shipped probes' timeout (deploy/k8s/statefulset.yaml); guards a hang.
const GUARD: Duration = Duration::from_secs(3);
const BOUND: Duration = Duration::from_secs(1);
const PACE: Duration = Duration::from_millis(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_idle_connections_flood_the_admin_port() {
    let b = Bridge::start().await;
    let target = b.running.admin_addr;
    // 8 addresses x 12 = 96 connections for 64 slots (the issue used 100).
    let attack = Attack::start(target, &sources(8), 12);
    // Every attacking connection is open (those past the limit wait in the
    // kernel's backlog, as the probes' would).
    attack.wait_opened(ATTACKERS).await;

    let phase = Instant::now();
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for i in 0..PROBES {
        // Paced like periodic probes, so the attack reopens what the probes
        // evicted in between (pacing only: nothing is proven by the pause).
        tokio::time::sleep(PACE).await;
        let path = if i % 2 == 0 { "/livez" } else { "/readyz" };
        if phase.elapsed() > PHASE_BUDGET {
            failures.push(format!("{path} {i}: not sent, phase budget spent"));
            continue;
        }
        let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
        match timed(target, request.as_bytes(), GUARD).await {
            Some((status, took)) if status.starts_with("HTTP/1.1 200") => latencies.push(took),
            Some((status, took)) => failures.push(format!("{path} {i}: {status} after {took:?}")),
            None => failures.push(format!("{path} {i}: no answer within {GUARD:?}")),
        }
    }
    let opened = attack.stop().await;
    let answered = latencies.len();
    let (p50, max) = if latencies.is_empty() {
        (Duration::MAX, Duration::MAX)
    } else {
        (quantile(&mut latencies, 0.5), quantile(&mut latencies, 1.0))
    };
    println!(
        "attack_admin: {ATTACKERS} attacking connections from 8 addresses ({opened} opened in all); \
         probes answered {answered}/{PROBES}, p50 {p50:?}, max {max:?}"
    );
    assert!(failures.is_empty(), "probes failed: {failures:#?}");
    assert!(max < BOUND, "slowest probe {max:?} over {BOUND:?}");
    // Counted as the admin port's evictions, not the webhook port's.
    let metrics = b.metrics();
    let evicted = |family: &str| -> f64 {
        ["slots_full", "pressure_timeout"]
            .iter()
            .map(|r| common::metric_value(&metrics, &format!(r#"{family}{{reason="{r}"}}"#)))
            .sum()
    };
    assert!(
        evicted("presence_bridge_admin_connections_evicted_total") > 0.0,
        "admin evictions counted"
    );
    assert_eq!(
        evicted("presence_bridge_http_connections_evicted_total"),
        0.0
    );
}
