#!/usr/bin/env bash
# Runs the deterministic delivery simulation (tests/simulation.rs) over many
# seeds and prints the seed of every failing schedule, so it can be replayed:
#
#   .ci/simulate.sh [SEEDS [FIRST [JOBS]]]      default: 1000000 seeds from 0, nproc jobs
#
# Replay one failing seed:
#   SIM_FIRST=<seed> SIM_SEEDS=1 cargo test --release --test simulation part_1 -- --nocapture
#
# The seeds are split into chunks of 2,000 run in parallel (JOBS at a time);
# a failing chunk is re-run seed by seed to name the seeds. Exit 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${1:-1000000}"
FIRST="${2:-0}"
JOBS="${3:-$(nproc)}"
# Chunks of at most 2,000 seeds, and at least one chunk per job.
CHUNK=$(( (SEEDS + JOBS - 1) / JOBS ))
[ "$CHUNK" -gt 2000 ] && CHUNK=2000
[ "$CHUNK" -lt 1 ] && CHUNK=1
started=$(date +%s)

echo "building the simulation (release)"
cargo test --locked --release --test simulation --no-run 2>&1 | tail -n 1
bin=$(cargo test --locked --release --test simulation --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("profile",{}).get("test") and m.get("target",{}).get("name")=="simulation" and m.get("executable"):
        print(m["executable"])' | tail -n 1)
test -x "$bin" || { echo "simulate: no simulation binary" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq_chunks() {
  local s=$FIRST end=$((FIRST + SEEDS))
  while [ "$s" -lt "$end" ]; do
    local n=$CHUNK
    [ $((s + n)) -gt "$end" ] && n=$((end - s))
    echo "$s $n"
    s=$((s + n))
  done
}

failed_chunks="$work/failed"
: >"$failed_chunks"
running=0
total=0
while read -r first n; do
  (
    # One test function runs a quarter of SIM_SEEDS from SIM_FIRST.
    if ! SIM_FIRST=$first SIM_SEEDS=$((n * 4)) "$bin" every_schedule_keeps_the_promise_part_1 \
        --exact --test-threads 1 >"$work/$first.log" 2>&1; then
      echo "$first $n" >>"$failed_chunks"
    fi
  ) &
  running=$((running + 1))
  total=$((total + n))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n
    running=$((running - 1))
  fi
done < <(seq_chunks)
wait

status=0
if [ -s "$failed_chunks" ]; then
  status=1
  while read -r first n; do
    for ((seed = first; seed < first + n; seed++)); do
      if ! SIM_FIRST=$seed SIM_SEEDS=4 "$bin" every_schedule_keeps_the_promise_part_1 \
          --exact --test-threads 1 >"$work/seed.log" 2>&1; then
        echo "FAILING SEED $seed: $(grep -m1 -E 'seed [0-9]+:' "$work/seed.log" || tail -n 3 "$work/seed.log")"
      fi
    done
  done <"$failed_chunks"
fi
echo "simulate: $total schedules from seed $FIRST in $(( $(date +%s) - started ))s: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
