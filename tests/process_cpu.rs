//! `process_cpu_seconds_total` has sub-second resolution: after burning some
//! CPU it equals the process's CPU time read from the same source right
//! before and after the scrape (not rounded down to whole seconds), and the
//! other `process_*` metrics are still there.
#![cfg(target_os = "linux")]

use presence_bridge::metrics::{clock_ticks_per_second, process_cpu_ticks, render, Metrics};

fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// Spins until the process's CPU time has grown by `ticks` clock ticks.
fn burn(ticks: f64) {
    let start = process_cpu_ticks().unwrap();
    let mut x: u64 = 1;
    while process_cpu_ticks().unwrap() < start + ticks {
        for i in 0..100_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
}

#[test]
fn cpu_seconds_are_not_rounded_to_whole_seconds() {
    let hz = clock_ticks_per_second().expect("AT_CLKTCK");
    assert!(hz > 0.0);
    let (registry, _metrics) = Metrics::standalone();
    burn(20.0);
    for _ in 0..1000 {
        let before = process_cpu_ticks().unwrap();
        let text = String::from_utf8(render(&registry)).unwrap();
        let after = process_cpu_ticks().unwrap();
        let v = sample(&text, "process_cpu_seconds_total").expect("cpu sample");
        assert!(
            v >= before / hz - 1e-9 && v <= after / hz + 1e-9,
            "{v} outside {before}..{after} ticks at {hz} Hz"
        );
        if before == after && (before / hz).fract() != 0.0 {
            // One reading of the source around the scrape: the value is it, exactly.
            assert!((v - before / hz).abs() < 1e-9, "{v} vs {}", before / hz);
            assert!(v > 0.0 && v.fract() != 0.0, "{v}");
            for other in [
                "process_resident_memory_bytes",
                "process_open_fds",
                "process_start_time_seconds",
                "process_threads",
            ] {
                assert!(sample(&text, other).is_some(), "{other} missing: {text}");
            }
            assert_eq!(
                text.matches("# TYPE process_cpu_seconds_total counter")
                    .count(),
                1
            );
            return;
        }
        // A tick landed during the scrape, or a whole second exactly: again.
        burn(1.0);
    }
    panic!("never read a stable, fractional CPU time");
}
