#!/usr/bin/env bash
# Builds, ahead of time, what the later steps of .ci/run need: the release
# binary and examples, the release simulation, the benchmarks, then the fuzz
# targets. .ci/run starts it at nice 19 while `cargo test` runs (its tests wait
# on sockets, child processes and timers and leave a core idle much of the
# time), so the build uses idle CPU instead of adding to the wall time.
#
# Each command is the exact one a later step runs (same profile, package and
# target, so the later step finds it fresh); cargo's lock on target/release
# makes a step that gets there first wait for the build here rather than race
# it. A failure here is reported and the same build fails again, loudly, in
# its own step. The exit status is the fuzz build's, which .ci/run checks.
set -uo pipefail
cd "$(dirname "$0")/.."

run() {
  local started
  started=$(date +%s)
  if "$@"; then
    echo "background: '$*' built in $(( $(date +%s) - started )) s"
  else
    echo "background: '$*' FAILED after $(( $(date +%s) - started )) s (its step will say why)" >&2
  fi
}

run cargo build --locked --release
run cargo build --locked --release --example ceiling
run cargo test --locked --release --test simulation --no-run
run cargo bench --locked -p spool --bench append --no-run
run cargo bench --locked --bench drain --no-run
run cargo bench --locked --bench allocations --no-run
run cargo bench --locked --bench typing_timers --no-run
# The fuzz targets last: .ci/run waits for them only at its final step.
started=$(date +%s)
if FUZZ_LIGHT=1 FUZZ_PHASE=build FUZZ_OPT_LEVEL=1 bash .ci/fuzz.sh; then
  echo "background: fuzz targets built in $(( $(date +%s) - started )) s"
else
  echo "background: the fuzz targets do not build" >&2
  exit 1
fi
