#!/usr/bin/env bash
# Where the bridge's CPU goes under load, one command:
#
#   benches/profile.sh [--fsync always|interval|never] [--connections C]
#                      [--duration S] [--out DIR]
#
# Starts Tansu (in memory, loopback) and one release bridge (BRIDGE_BIN,
# default target/release/presence-bridge; build it with frame pointers and
# line tables for readable stacks:
#   CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
#   RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release
# ), drives it with wrk and benches/load/presence.lua (the load benchmark's
# requests) at saturation, and while it runs:
#   - perf stat: task-clock, context switches, CPU migrations, per request;
#   - perf record (999 Hz, call graphs from frame pointers);
#   - per-thread CPU from /proc (benches/load/lb.py threads);
#   - then, in a window of its own (a uprobe slows every call it counts),
#     heap allocations per accepted event: a uprobe on glibc's malloc
#     (perf probe, root only) counted over the events the bridge accepted
#     meanwhile (presence_bridge_events_accepted_total). A stable figure
#     where CPU time is not: it does not move with the machine's noise.
#     Then the same calls for 1 s with their stacks (DWARF), grouped by
#     origin (benches/load/lb.py alloc-origins): what allocates per event.
# Prints the requests answered, CPU per request, context switches per
# request, the threads' shares, and the top of `perf report` by symbol
# (self time) and by thread; writes perf.data and the reports to DIR
# (default a temp dir, removed unless --out is given).
#
# Needs perf (Debian: linux-perf) and the rights to use it (root, or
# kernel.perf_event_paranoid <= 1), wrk, curl, python3.
# shellcheck disable=SC2317  # functions run from traps
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/benches/load"
CMDLINE="$(printf '%q ' "$0" "$@")"
FSYNC=always
CONNS=32
DURATION=10
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --fsync) FSYNC="${2:?}"; shift ;;
    --connections) CONNS="${2:?}"; shift ;;
    --duration) DURATION="${2:?}"; shift ;;
    --out) OUT="${2:?}"; shift ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    *) echo "profile.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ "$FSYNC" =~ ^(always|interval|never)$ ]] || { echo "profile.sh: --fsync always|interval|never" >&2; exit 2; }
for v in CONNS DURATION; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "profile.sh: $v must be a positive integer" >&2; exit 2; }
done
for tool in perf wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "profile.sh: needs $tool" >&2; exit 1; }
done
BRIDGE_BIN="${BRIDGE_BIN:-$ROOT/target/release/presence-bridge}"
[[ -x "$BRIDGE_BIN" ]] || { echo "profile.sh: $BRIDGE_BIN missing (cargo build --release)" >&2; exit 1; }

# shellcheck source=../.ci/tansu.sh
source "$ROOT/.ci/tansu.sh"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/presence-profile.XXXXXX")"
export TANSU_WORKDIR="$WORK/tansu"
mkdir -p "$TANSU_WORKDIR"
SPOOL_PARENT=/var/tmp
[[ "$(stat -f -c %T "$SPOOL_PARENT")" != tmpfs ]] || SPOOL_PARENT="$ROOT/target"
SPOOL="$(mktemp -d "$SPOOL_PARENT/presence-profile-spool.XXXXXX")"
BRIDGE_PID=""
PROBE=""
_profile_finish() {
  set +e
  [[ -z "$PROBE" ]] || perf probe -q -d "probe_libc:$PROBE" 2>/dev/null
  [[ -z "$BRIDGE_PID" ]] || tansu_kill_pid "$BRIDGE_PID" 10
  tansu_stop
  rm -rf "$SPOOL"
  if [[ -n "$OUT" ]]; then
    mkdir -p "$OUT" && cp "$WORK"/perf.* "$WORK"/*.txt "$OUT"/ 2>/dev/null
    echo "profile.sh: perf.data and reports in $OUT" >&2
  fi
  rm -rf "$WORK"
}
tansu_on_exit _profile_finish

tansu_install >&2
tansu_start >&2
tansu_create_topic whatsapp.presence.v1 3 >&2
tansu_create_topic whatsapp.presence.latest.v1 3 >&2
HTTP_PORT="$(tansu_free_port)"; ADMIN_PORT="$(tansu_free_port)"
export PRESENCE_BRIDGE__HTTP__LISTEN="127.0.0.1:$HTTP_PORT"
export PRESENCE_BRIDGE__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT"
export PRESENCE_BRIDGE__LOG__LEVEL=warn
export PRESENCE_BRIDGE__KAFKA__BROKERS="$TANSU_BOOTSTRAP"
export PRESENCE_BRIDGE__SPOOL__DIR="$SPOOL/spool"
export PRESENCE_BRIDGE__SPOOL__FSYNC="$FSYNC"
unset PRESENCE_BRIDGE__AUTH__TOKENS RUST_LOG
"${TANSU_ORPHAN_GUARD[@]}" "$BRIDGE_BIN" serve >"$WORK/bridge.log" 2>&1 </dev/null &
BRIDGE_PID=$!
"$TANSU_PYTHON" "$HERE/lb.py" wait-ready "http://127.0.0.1:$ADMIN_PORT/readyz" 60 >/dev/null \
  || { tail -n 20 "$WORK/bridge.log" >&2; exit 1; }

run_wrk() {
  LOAD_MODE=saturate LOAD_THREADS=2 wrk -t2 -c"$CONNS" -d"${1}s" --timeout 10s --latency \
    -s "$HERE/presence.lua" "http://127.0.0.1:$HTTP_PORT" >"$2" 2>&1
}
run_wrk 2 "$WORK/warm.out"
"$TANSU_PYTHON" "$HERE/lb.py" threads "$BRIDGE_PID" >"$WORK/threads.1"
run_wrk "$DURATION" "$WORK/wrk.out" &
wrk_job=$!
sleep 0.5
perf stat -e task-clock,context-switches,cpu-migrations -p "$BRIDGE_PID" -o "$WORK/stat.txt" -- sleep "$((DURATION - 2))" &
stat_job=$!
perf record -F 999 --call-graph fp -o "$WORK/perf.data" -p "$BRIDGE_PID" -- sleep "$((DURATION - 2))" 2>"$WORK/record.txt"
wait "$stat_job"
"$TANSU_PYTHON" "$HERE/lb.py" threads "$BRIDGE_PID" >"$WORK/threads.2"
wait "$wrk_job"

# Allocations per accepted event (after the CPU profile: the uprobe slows the process).
accepted() {
  curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" \
    | awk '/^presence_bridge_events_accepted_total/ { s += $2 } END { printf "%d", s }'
}
alloc_line="- heap allocations: not counted (needs perf probe on glibc's malloc: root)"
libc="$(ldd "$BRIDGE_BIN" | awk '/libc\.so\.6/ { print $3 }')"
if [[ -n "$libc" ]] && perf probe -q -x "$libc" "pbmalloc$$=malloc" 2>/dev/null; then
  PROBE="pbmalloc$$"
  run_wrk 6 "$WORK/wrk-alloc.out" &
  alloc_job=$!
  sleep 1
  a0="$(accepted)"
  perf stat -e "probe_libc:$PROBE" -p "$BRIDGE_PID" -o "$WORK/alloc.txt" -- sleep 4 2>/dev/null
  a1="$(accepted)"
  wait "$alloc_job"
  # Then where they come from: every call with its stack (DWARF: the
  # allocator's callers and librdkafka keep no frame pointers; a large ring
  # buffer and a short window so that no sample is lost, since a lost one
  # would skew the shares).
  run_wrk 3 "$WORK/wrk-origins.out" &
  origins_job=$!
  sleep 1
  perf record -e "probe_libc:$PROBE" -c 1 -m 4096 --call-graph dwarf,4096 \
    -o "$WORK/perf.alloc" -p "$BRIDGE_PID" -- sleep 1 2>"$WORK/record-alloc.txt" || true
  wait "$origins_job"
  perf script -i "$WORK/perf.alloc" -F tid,ip,sym --no-inline 2>"$WORK/script-alloc.txt" \
    | "$TANSU_PYTHON" "$HERE/lb.py" alloc-origins /dev/stdin 30 >"$WORK/alloc-origins.txt" || true
  rm -f "$WORK/perf.alloc"  # hundreds of MB of stacks
  calls="$(awk -v p="$PROBE" '$0 ~ p { gsub(",", "", $1); print $1 }' "$WORK/alloc.txt")"
  alloc_line="$(awk -v c="${calls:-0}" -v a0="$a0" -v a1="$a1" 'BEGIN {
    n = a1 - a0
    if (n > 0) printf "- heap allocations: **%.1f malloc calls per accepted event** (%d calls, %d events; uprobe on glibc malloc, own 4 s window)\n", c / n, c, n
    else print "- heap allocations: no event accepted in the window" }')"
fi

rps="$("$TANSU_PYTHON" "$HERE/lb.py" json "$WORK/wrk.out" rps)"
secs=$((DURATION - 2))
task_ms="$(awk '/task-clock/ { gsub(",", "", $1); print $1 }' "$WORK/stat.txt")"
cs="$(awk '/context-switches/ { gsub(",", "", $1); print $1 }' "$WORK/stat.txt")"
perf report -i "$WORK/perf.data" --no-children --sort sym --percent-limit 0.7 --stdio 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | grep -E '^ +[0-9.]+%' >"$WORK/symbols.txt" || true
perf report -i "$WORK/perf.data" --no-children --sort comm --stdio 2>/dev/null \
  | grep -E '^ +[0-9.]+%' >"$WORK/threads.txt" || true
perf report -i "$WORK/perf.data" --no-children --sort dso --stdio 2>/dev/null \
  | grep -E '^ +[0-9.]+%' >"$WORK/dsos.txt" || true

echo "# presence-bridge CPU profile"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "- command: $CMDLINE"
echo "- machine: nproc $(nproc), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- load: wrk 2 threads, $CONNS connections, saturation; spool.fsync $FSYNC; profiled ${secs}s"
echo
awk -v r="$rps" -v ms="$task_ms" -v cs="$cs" -v s="$secs" 'BEGIN {
  n = r * s
  printf "- %.0f req/s; CPU %.2f cores; **%.2f µs CPU per request**; %.2f context switches per request\n",
    r, ms / 1000 / s, ms * 1000 / n, cs / n }'
echo "- threads (CPU %, 100 = one core): $("$TANSU_PYTHON" "$HERE/lb.py" thread-diff "$WORK/threads.1" "$WORK/threads.2")"
echo "$alloc_line"
echo
echo "Samples by thread:"; echo; echo '```'; cat "$WORK/threads.txt"; echo '```'; echo
echo "Samples by object:"; echo; echo '```'; head -n 12 "$WORK/dsos.txt"; echo '```'; echo
echo "Symbols, self time (>= 0.7 %):"; echo; echo '```'; head -n 60 "$WORK/symbols.txt"; echo '```'
if [[ -s "$WORK/alloc-origins.txt" ]]; then
  echo
  echo "Heap allocations by origin (malloc calls in 1 s, each with its stack; the first two frames"
  echo "past the allocator; a share of 1 / (calls per event) is one call per event):"
  echo; echo '```'; cat "$WORK/alloc-origins.txt"; echo '```'
  if grep -qi "lost" "$WORK/record-alloc.txt" "$WORK/script-alloc.txt" 2>/dev/null; then
    echo; echo "perf lost samples of the stacks above: the shares are skewed ($(grep -hi -m1 lost "$WORK/record-alloc.txt" "$WORK/script-alloc.txt" | head -n 1))"
  fi
fi
