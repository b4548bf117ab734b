//! Hostile connections never hurt: property tests that send what a client
//! could send on one connection, as raw bytes (any bytes, and the `handler`
//! fuzz target's seeds with bytes flipped, inserted, removed and cut), into
//! hyper-util's HTTP/1.1 + h2c server running the real webhook in front of a
//! sink that takes everything.
//!
//! Nothing may panic, the connection must end (under tokio's paused clock,
//! so a read timeout costs no real time and a hang fails the case), no answer
//! may be a 5xx (the handler's or hyper's own), and every accepted record is
//! a JSON envelope keyed by its phone. The same checks as
//! `fuzz/fuzz_targets/handler.rs`, which `.ci/run` does not build (it fuzzes
//! the targets that need no bridge crate); this runs in every `cargo test`.

mod connection_support;

use std::sync::OnceLock;
use std::time::Duration;

use connection_support::{accepted_here, exchange, five_xx_on_the_wire};
use proptest::prelude::*;

/// The committed seeds of the `handler` fuzz target: valid requests over
/// HTTP/1.1 and h2c, with and without tokens, chunked, pipelined...
fn seeds() -> &'static [Vec<u8>] {
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/handler");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .expect("fuzz/corpus/handler")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("seed-"))
            })
            .collect();
        names.sort();
        let seeds: Vec<Vec<u8>> = names
            .iter()
            .map(|p| std::fs::read(p).expect("seed"))
            .collect();
        assert!(seeds.len() >= 10, "the handler seeds are missing");
        seeds
    })
}

/// Runs one exchange on a fresh paused-clock runtime and checks the wire.
fn check(data: &[u8]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    // Simulated time: only a connection that never ends reaches the guard.
    let out = rt.block_on(exchange(data, Duration::from_secs(60)));
    if let Some(i) = five_xx_on_the_wire(&out) {
        return Err(TestCaseError::fail(format!(
            "5xx on the wire at byte {i}: {}",
            String::from_utf8_lossy(&out)
        )));
    }
    Ok(())
}

/// One edit of a seed.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Cut(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(at, x)| Edit::Flip(at, x)),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        2 => (any::<usize>(), 1usize..32).prop_map(|(at, n)| Edit::Remove(at, n)),
        1 => any::<usize>().prop_map(Edit::Cut),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len();
        match e {
            Edit::Flip(at, x) if len > 0 => bytes[at % len] ^= x,
            Edit::Insert(at, b) => {
                let at = at % (len + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Edit::Remove(at, n) if len > 0 => {
                let at = at % len;
                bytes.drain(at..(at + n).min(len));
            }
            Edit::Cut(at) => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
    bytes
}

#[test]
fn every_seed_as_sent_is_answered_and_some_are_accepted() {
    let before = accepted_here();
    for seed in seeds() {
        check(seed).unwrap();
    }
    // The seeds hold valid callbacks with the token: were none accepted,
    // the edited seeds below would test only the rejections.
    let accepted = accepted_here() - before;
    assert!(
        accepted >= 5,
        "only {accepted} events accepted from the seeds"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_on_a_connection_end_without_a_5xx(
        data in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        check(&data)?;
    }

    #[test]
    fn edited_seeds_end_without_a_5xx(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let seed = pick.get(seeds()).clone();
        check(&apply(seed, &edits))?;
    }
}
