#!/usr/bin/env bash
# End-to-end load benchmark of presence-bridge (issue 5), one command:
#
#   benches/load.sh [--smoke] [--rounds N] [--duration S] [--connections C,C]
#                   [--fsync P,P] [--threads T] [--outage-events N]
#                   [--drain-rate R] [--keep]
#
# Starts a real broker process (Tansu, in memory, loopback), the release
# bridge (durable spool on its default fsync policy, "always", on the real
# disk) and the ceiling (examples/ceiling: a bare hyper server on the same
# stack that reads the body and answers 200), and drives both with the same
# wrk load (benches/load/presence.lua: varied presence callbacks, 5,000
# phones, the five statuses in mixed case, lastSeen null/absent/epoch s/epoch
# ms/RFC 3339; 32 connections, 2 threads), alternating them round by round.
#
# Phases:
#   1. start-up: exec of `presence-bridge serve` -> GET /readyz 200 (median).
#   2. saturation matrix: for each connection count (--connections, default
#      32,256), N rounds; each round runs the ceiling and a fresh bridge under
#      each spool.fsync policy (--fsync, default always,interval,never), in an
#      order rotated every round. Per run: throughput, p50/p99/p99.9, and the
#      headline, CPU per request: the server process's user + system time
#      (/proc/PID/stat) over the run, for the bridge until every record the
#      run accepted is in Kafka, divided by the requests answered. It moves far
#      less with the machine's noise than req/s. Ratios to the ceiling of the
#      same round; VmHWM of each bridge; then every accepted event (sum of
#      presence_bridge_events_accepted_total) is looked for in Kafka (records
#      read to the end of every partition, event-id distinct).
#   3. fixed moderate rate: half the bridge's median saturation throughput
#      (first policy, first connection count: "always" at 32 by default),
#      paced by delay() in the Lua script, on the bridge and on the ceiling:
#      achieved rate and p50/p99/p99.9.
#   4. outage (Tansu behind .ci/tcp_proxy.py): proxy_down, N events (1,000,000;
#      smoke 20,000) as fast as wrk can, VmRSS sampled every 0.5 s; proxy_up
#      and drain rate = backlog / time until the backlog is delivered, while a
#      second, paced wrk (--drain-rate, default 1,000 req/s) keeps posting new
#      webhooks (its non-2xx must be 0); then all of it is looked for in Kafka.
#
# No auth token is configured (PRESENCE_BRIDGE__AUTH__TOKENS unset: the bridge
# warns and accepts any caller), so the bridge and the ceiling get byte-for-
# byte the same requests.
#
# Prints a header (date, nproc, memory, kernel, command line) and at the end a
# markdown table with medians over the rounds and "met"/"MISSED" per target.
# Exit status: 0 unless something broke (a server died or exited non-zero, a
# non-2xx answer from the bridge on valid input, an accepted event missing
# from Kafka, a phase timing out). A missed target never fails the run.
# --smoke (what .ci/run should call): 1 round x 2 s, 20,000-event outage, every
# phase, targets shown but not meaningful.
#
# Env: BRIDGE_BIN (default target/release/presence-bridge), CEILING_BIN
#   (default target/release/examples/ceiling), LOAD_SPOOL_PARENT (where the
#   spool directories go; default /var/tmp, refused if tmpfs), LOAD_TIMEOUT
#   (whole run, s; default 3600, smoke 900), plus .ci/tansu.sh's knobs.
# Only 127.0.0.1 is used.
# shellcheck disable=SC2317,SC2001  # functions run from traps; sed for readability
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/benches/load"
CMDLINE="$(printf '%q ' "$0" "$@")"

SMOKE=""
ROUNDS=3
DURATION=10
CONNS_ARG=32,256
FSYNC_ARG=always,interval,never
THREADS=2
OUTAGE_N=""
DRAIN_RATE=1000
KEEP=""
usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; ROUNDS=1; DURATION=2 ;;
    --rounds) ROUNDS="${2:?}"; shift ;;
    --duration) DURATION="${2:?}"; shift ;;
    --connections) CONNS_ARG="${2:?}"; shift ;;
    --fsync) FSYNC_ARG="${2:?}"; shift ;;
    --threads) THREADS="${2:?}"; shift ;;
    --outage-events) OUTAGE_N="${2:?}"; shift ;;
    --drain-rate) DRAIN_RATE="${2:?}"; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) usage ;;
    *) echo "load.sh: unknown argument $1" >&2; usage ;;
  esac
  shift
done
[[ -n "$OUTAGE_N" ]] || { if [[ -n "$SMOKE" ]]; then OUTAGE_N=20000; else OUTAGE_N=1000000; fi; }
IFS=, read -r -a CONNS_LIST <<<"$CONNS_ARG"
IFS=, read -r -a FSYNC_LIST <<<"$FSYNC_ARG"
for c in "${CONNS_LIST[@]}"; do
  [[ "$c" =~ ^[1-9][0-9]*$ ]] || { echo "load.sh: --connections takes positive integers separated by commas (got '$CONNS_ARG')" >&2; exit 2; }
done
for f in "${FSYNC_LIST[@]}"; do
  [[ "$f" =~ ^(always|interval|never)$ ]] || { echo "load.sh: --fsync takes always, interval, never separated by commas (got '$FSYNC_ARG')" >&2; exit 2; }
done
[[ ${#CONNS_LIST[@]} -gt 0 && ${#FSYNC_LIST[@]} -gt 0 ]] || { echo "load.sh: --connections and --fsync need a value" >&2; exit 2; }
CONNS="${CONNS_LIST[0]}"
FSYNC="${FSYNC_LIST[0]}"
for v in ROUNDS DURATION THREADS OUTAGE_N DRAIN_RATE; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "load.sh: $v must be a positive integer (got '${!v}')" >&2; exit 2; }
done
if [[ -n "$SMOKE" ]]; then LOAD_TIMEOUT="${LOAD_TIMEOUT:-900}"; else LOAD_TIMEOUT="${LOAD_TIMEOUT:-3600}"; fi
WARMUP=$(( DURATION >= 10 ? 2 : 1 ))
DRAIN_TIMEOUT=$(( OUTAGE_N / 2000 + 120 ))        # >= 2,000 events/s, bounded
OUTAGE_WRK_MAX=$(( OUTAGE_N / 500 + 60 ))          # >= 500 events/s, bounded
TOPIC="whatsapp.presence.v1"
# Every presence event also writes the contact's state here (kafka.latest, on by default).
LATEST_TOPIC="whatsapp.presence.latest.v1"

BRIDGE_BIN="${BRIDGE_BIN:-$ROOT/target/release/presence-bridge}"
CEILING_BIN="${CEILING_BIN:-$ROOT/target/release/examples/ceiling}"
[[ "$BRIDGE_BIN" == /* ]] || BRIDGE_BIN="$PWD/$BRIDGE_BIN"
[[ "$CEILING_BIN" == /* ]] || CEILING_BIN="$PWD/$CEILING_BIN"
for b in "$BRIDGE_BIN" "$CEILING_BIN"; do
  [[ -x "$b" ]] || { echo "load.sh: $b missing or not executable (cargo build --release --bins --examples)" >&2; exit 1; }
done
for tool in wrk curl awk python3 timeout; do
  command -v "$tool" >/dev/null || { echo "load.sh: needs $tool" >&2; exit 1; }
done

# shellcheck source=../.ci/tansu.sh
source "$ROOT/.ci/tansu.sh"

# ------------------------------------------------------------ work dirs
WORK="$(mktemp -d "${TMPDIR:-/tmp}/presence-load.XXXXXX")"
export TANSU_WORKDIR="$WORK/tansu"
mkdir -p "$TANSU_WORKDIR"
SPOOL_PARENT="${LOAD_SPOOL_PARENT:-/var/tmp}"
fstype="$(stat -f -c %T "$SPOOL_PARENT" 2>/dev/null || echo unknown)"
if [[ "$fstype" == tmpfs || "$fstype" == ramfs ]]; then
  SPOOL_PARENT="$ROOT/target"
  fstype="$(stat -f -c %T "$SPOOL_PARENT")"
fi
SPOOLS="$(mktemp -d "$SPOOL_PARENT/presence-load-spool.XXXXXX")"

say() { echo "[load] $*" >&2; }
FAILURES=()
broke() { FAILURES+=("$*"); say "BROKE: $*"; }
die() { broke "$*"; exit 1; }

BRIDGE_PID=""
CEILING_PID=""
WRK_PID=""
SAMPLER_PID=""
WATCHDOG_PID=""
STARTED=$SECONDS
_load_finish() {
  local rc="${_TANSU_EXIT_RC:-$?}" f
  set +e
  for p in "$WRK_PID" "$SAMPLER_PID" "$WATCHDOG_PID"; do
    [[ -z "$p" ]] || tansu_kill_pid "$p" 2
  done
  [[ -z "$BRIDGE_PID" ]] || tansu_kill_pid "$BRIDGE_PID" 10
  [[ -z "$CEILING_PID" ]] || tansu_kill_pid "$CEILING_PID" 3
  tansu_stop
  rm -rf "$SPOOLS"
  if [[ $rc -ne 0 || ${#FAILURES[@]} -gt 0 ]]; then
    [[ ${#FAILURES[@]} -gt 0 ]] || FAILURES+=("aborted (exit status $rc)")
    for f in "$WORK"/bridge.*.log; do
      [[ -s "$f" ]] || continue
      echo "================ $f (last 40 lines) ================" >&2
      tail -n 40 "$f" >&2
    done
    echo "load.sh: BROKEN after $((SECONDS - STARTED))s: $(IFS='; '; echo "${FAILURES[*]}")"
    say "work dir kept: $WORK"
    exit 1
  fi
  if [[ -n "$KEEP" ]]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit 0
}
tansu_on_exit _load_finish

# Watchdog: the whole run is bounded; quits if this shell is gone.
(
  me=$BASHPID
  for ((i = 0; i < LOAD_TIMEOUT; i++)); do
    sleep 1
    [[ "$(ps -o ppid= -p "$me" 2>/dev/null | tr -d ' ')" == "$$" ]] || exit 0
  done
  echo "[load] watchdog: ${LOAD_TIMEOUT}s elapsed, aborting" >&2
  kill -TERM $$
) &
WATCHDOG_PID=$!

# ------------------------------------------------------------ helpers
lb() { "$TANSU_PYTHON" "$HERE/lb.py" "$@"; }
median() { lb median "$@"; }
fmt_int() {
  awk -v n="${1:-0}" 'BEGIN { n = sprintf("%.0f", n); neg = (substr(n, 1, 1) == "-"); if (neg) n = substr(n, 2)
    s = ""; while (length(n) > 3) { s = "," substr(n, length(n) - 2) s; n = substr(n, 1, length(n) - 3) }
    printf "%s%s%s\n", (neg ? "-" : ""), n, s }'
}
ms() { awk -v u="${1:-0}" 'BEGIN { printf "%.2f", u / 1000 }'; }
mib() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f", k / 1024 }'; }

metrics() { curl -s --max-time 3 "$ADMIN/metrics" 2>/dev/null || true; }
# metric NAME [LABEL_FILTER]: sum over the series of NAME (optionally only
# lines containing LABEL_FILTER), or empty.
metric() {
  metrics | awk -v n="$1" -v f="${2:-}" '
    ($1 == n || index($1, n "{") == 1) && (f == "" || index($1, f) > 0) { s += $NF; found = 1 }
    END { if (found) printf "%.0f\n", s }'
}
# non-2xx answers the bridge itself counted (exact, server side)
bridge_non2xx() {
  metrics | awk 'index($1, "presence_bridge_http_requests_total{") == 1 && $1 !~ /status="2[0-9][0-9]"/ { s += $NF }
    END { printf "%.0f\n", s }'
}
accepted() { metric presence_bridge_events_accepted_total; }
proc_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK="$(getconf CLK_TCK)"

# wait_metric NAME OP VALUE SECS -> 0 when NAME OP VALUE, 1 on timeout/bridge gone
wait_metric() {
  local name="$1" op="$2" want="$3" secs="$4" deadline v
  deadline=$((SECONDS + secs))
  LAST_METRIC=""
  while ((SECONDS < deadline)); do
    v="$(metric "$name")"; LAST_METRIC="$v"
    if [[ -n "$v" ]] && awk -v a="$v" -v b="$want" -v op="$op" 'BEGIN { a += 0; b += 0
        exit !((op == "==" && a == b) || (op == ">=" && a >= b) || (op == "<=" && a <= b)) }'; then
      return 0
    fi
    [[ -z "$BRIDGE_PID" ]] || kill -0 "$BRIDGE_PID" 2>/dev/null || return 1
    sleep 0.25
  done
  return 1
}

HTTP_PORT="$(tansu_free_port)"
ADMIN_PORT="$(tansu_free_port)"
CEIL_PORT="$(tansu_free_port)"
HTTP="http://127.0.0.1:$HTTP_PORT"
ADMIN="http://127.0.0.1:$ADMIN_PORT"
CEIL="http://127.0.0.1:$CEIL_PORT"
export PRESENCE_BRIDGE__HTTP__LISTEN="127.0.0.1:$HTTP_PORT"
export PRESENCE_BRIDGE__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT"
export PRESENCE_BRIDGE__LOG__LEVEL=warn
export PRESENCE_BRIDGE__KAFKA__PROBE_INTERVAL=500ms
# wrk is one client address holding up to 256 connections, like a load
# balancer in front of the bridge: the per-client cap (64) would close the
# rest right after accept and turn the run into a reconnect storm.
export PRESENCE_BRIDGE__HTTP__MAX_CONNECTIONS_PER_CLIENT=4096
unset PRESENCE_BRIDGE__AUTH__TOKENS RUST_LOG PRESENCE_BRIDGE__SPOOL__FSYNC

# start_bridge NAME: fresh spool dir, exec -> /readyz 200 timed (STARTUP_MS),
# then waits for the broker to be reachable. Sets BRIDGE_PID.
BRIDGE_N=0
start_bridge() {
  local name="$1" rc=0 t0 t1 poller
  BRIDGE_N=$((BRIDGE_N + 1))
  BRIDGE_LOG="$WORK/bridge.$BRIDGE_N.$name.log"
  rm -rf "${SPOOLS:?}/$name"
  lb wait-ready "$ADMIN/readyz" 60 >"$WORK/ready.$BRIDGE_N" &
  poller=$!
  sleep 0.3   # the poller's Python is up and polling (connection refused)
  t0=$EPOCHREALTIME
  PRESENCE_BRIDGE__SPOOL__DIR="$SPOOLS/$name" PRESENCE_BRIDGE__SPOOL__FSYNC="$FSYNC" \
    "${TANSU_ORPHAN_GUARD[@]}" "$BRIDGE_BIN" serve >"$BRIDGE_LOG" 2>&1 </dev/null &
  BRIDGE_PID=$!
  wait "$poller" || rc=$?
  if [[ $rc -ne 0 ]]; then
    kill -0 "$BRIDGE_PID" 2>/dev/null || { wait "$BRIDGE_PID" || true; BRIDGE_PID=""; }
    die "bridge ($name) not ready within 60 s"
  fi
  t1="$(cat "$WORK/ready.$BRIDGE_N")"
  STARTUP_MS="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')"
  wait_metric presence_bridge_kafka_broker_reachable == 1 60 \
    || die "bridge ($name): broker not reachable within 60 s (last ${LAST_METRIC:-none})"
}

# stop_bridge: SIGTERM, must exit 0. Sets LAST_HWM_KB (VmHWM just before).
stop_bridge() {
  local rc=0 t0=$SECONDS
  LAST_HWM_KB="$(proc_kb "$BRIDGE_PID" VmHWM)"
  kill -0 "$BRIDGE_PID" 2>/dev/null || { wait "$BRIDGE_PID" || rc=$?; BRIDGE_PID=""; die "bridge died during the run (status $rc)"; }
  kill -TERM "$BRIDGE_PID"
  while kill -0 "$BRIDGE_PID" 2>/dev/null && ((SECONDS - t0 < 30)); do sleep 0.1; done
  if kill -0 "$BRIDGE_PID" 2>/dev/null; then
    broke "bridge did not exit within 30 s of SIGTERM"
    tansu_kill_pid "$BRIDGE_PID" 1
  else
    wait "$BRIDGE_PID" || rc=$?
    [[ $rc -eq 0 ]] || broke "bridge exited $rc after SIGTERM (want 0)"
  fi
  BRIDGE_PID=""
}

start_ceiling() {
  "${TANSU_ORPHAN_GUARD[@]}" "$CEILING_BIN" "127.0.0.1:$CEIL_PORT" >"$WORK/ceiling.log" 2>&1 </dev/null &
  CEILING_PID=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null --max-time 1 -X POST -H 'Content-Type: application/json' -d '{}' "$CEIL/webhooks/zapi/presence" && return 0
    kill -0 "$CEILING_PID" 2>/dev/null || die "ceiling exited at start: $(cat "$WORK/ceiling.log")"
    sleep 0.1
  done
  die "ceiling not answering within 10 s"
}

# cpu_snapshot: "t total_ticks steal_ticks idle_ticks pid:ticks ..." of the watched processes
cpu_snapshot() {
  local p out
  out="$(awk -v t="$EPOCHREALTIME" '$1 == "cpu" { tot = 0; for (i = 2; i <= NF; i++) tot += $i; print t, tot, $9, $5 + $6; exit }' /proc/stat)"
  for p in "$@"; do out="$out $(ticks "$p")"; done
  echo "$out"
}
# cpu_report "S1" "S2" NAMES...: CPU % (100 = one core) per process between snapshots
cpu_report() {
  local a="$1" b="$2"; shift 2
  awk -v a="$a" -v b="$b" -v hz="$CLK_TCK" -v ncpu="$(nproc)" -v names="$*" 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); split(names, nm, " ")
    dt = y[1] - x[1]; tot = y[2] - x[2]; if (tot <= 0) tot = 1
    s = ""; mine = 0
    for (i = 5; i <= n; i++) {
      if (y[i] < x[i]) { s = s sprintf("%s n/a (exited), ", nm[i - 4]); continue }
      p = (y[i] - x[i]) / hz / dt * 100; mine += p; s = s sprintf("%s %.0f%%, ", nm[i - 4], p)
    }
    busy = (tot - (y[4] - x[4]) - (y[3] - x[3])) / tot * ncpu * 100
    s = s sprintf("everything else (other processes, softirq) %.0f%%; machine idle %.0f%%, steal %.0f%% (100%% = one core)",
      busy - mine, (y[4] - x[4]) / tot * 100, (y[3] - x[3]) / tot * 100)
    print s }'
}

# start_wrk NAME URL SECS MODE [RATE|BUDGET]: wrk in the background, bounded
# by -d and by timeout(1), which forwards SIGINT (wrk then stops and prints
# its results). Sets WRK_PID (the timeout process) and WRK_OUT.
start_wrk() {
  local name="$1" url="$2" secs="$3" mode="$4" arg="${5:-0}"
  WRK_OUT="$WORK/wrk.$name.out"
  LOAD_MODE="$mode" LOAD_RATE="$arg" LOAD_BUDGET="$arg" LOAD_THREADS="$THREADS" \
    "${TANSU_ORPHAN_GUARD[@]}" timeout --signal=INT --kill-after=10 $((secs + 30)) \
    wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 10s --latency -s "$HERE/presence.lua" "$url" \
    >"$WRK_OUT" 2>&1 </dev/null &
  WRK_PID=$!
}
# stop_wrk: SIGINT (wrk prints its results), wait; dies if no result.
stop_wrk() {
  local rc=0
  kill -INT "$WRK_PID" 2>/dev/null || true
  wait "$WRK_PID" || rc=$?
  WRK_PID=""
  grep -q '^LOADJSON' "$WRK_OUT" || die "wrk ($WRK_OUT) printed no result (status $rc): $(tail -n 5 "$WRK_OUT")"
}
wrk_child() { pgrep -P "$WRK_PID" -x wrk || echo "$WRK_PID"; }

# run_wrk NAME URL SECS MODE ARG SERVER_PID: start_wrk, CPU per process over
# the middle of the run (CPU_LINE), a `top` frame for the names in TOP_AT,
# wait for the end.
TOP_AT=" sat.b.${FSYNC_LIST[0]}.${CONNS_LIST[0]}.1 sat.c.${CONNS_LIST[0]}.1 "
run_wrk() {
  local name="$1" secs="$3" server="$6" w0 w1 s1 s2 wp rc=0 topjob=""
  start_wrk "$@"
  w0="$(awk -v d="$secs" 'BEGIN { w = d * 0.2; if (w > 1) w = 1; print w }')"
  w1="$(awk -v d="$secs" -v w="$w0" 'BEGIN { print d - 2 * w }')"
  sleep "$w0"
  wp="$(wrk_child)"
  s1="$(cpu_snapshot "$server" "$wp" "${TANSU_PID:-0}" "${PROXY_PID:-0}")"
  lb threads "$server" >"$WORK/threads.$name.1" || true
  if [[ "$TOP_AT" == *" $name "* ]] && command -v top >/dev/null; then
    (top -b -n 2 -d 1 -w 200 2>/dev/null | awk '/^top -/ { n++ } n == 2' | head -n 14 >"$WORK/top.$name") &
    topjob=$!
  fi
  sleep "$w1"
  s2="$(cpu_snapshot "$server" "$wp" "${TANSU_PID:-0}" "${PROXY_PID:-0}")"
  CPU_LINE="$(cpu_report "$s1" "$s2" server wrk tansu proxy)"
  lb threads "$server" >"$WORK/threads.$name.2" || true
  THREAD_LINE="$(lb thread-diff "$WORK/threads.$name.1" "$WORK/threads.$name.2" 2>/dev/null || true)"
  [[ -z "$topjob" ]] || wait "$topjob" || true
  wait "$WRK_PID" || rc=$?
  WRK_PID=""
  grep -q '^LOADJSON' "$WRK_OUT" || die "wrk ($name) printed no result (status $rc): $(tail -n 5 "$WRK_OUT")"
}
j() { lb json "$WRK_OUT" "$1"; }

# verify_kafka PHASE: wait for the spool to drain, read the accepted count
# (sum of presence_bridge_events_accepted_total; read after the drain, so
# requests still in flight when wrk stopped are counted), then look for every
# accepted event in Kafka: the distinct event-ids among the records this phase
# added must be at least that many. (Kafka may hold a few more: an event whose
# client hung up while it was being committed is spooled and delivered but
# not counted as accepted.) Sets KAFKA_LINE.
KAFKA_STATE="$WORK/kafka.offsets"
verify_kafka() {
  local phase="$1" acc out rc=0 recs ids dups exps
  wait_metric presence_bridge_spool_events == 0 "$DRAIN_TIMEOUT" \
    || die "$phase: presence_bridge_spool_events still ${LAST_METRIC:-unknown} after ${DRAIN_TIMEOUT}s"
  acc="$(accepted)"
  out="$(timeout $((DRAIN_TIMEOUT + 60)) "$TANSU_PYTHON" "$HERE/lb.py" count -b "$TANSU_BOOTSTRAP" -t "$TOPIC" \
    --state "$KAFKA_STATE" --timeout "$DRAIN_TIMEOUT" 2>"$WORK/count.$phase.err")" || rc=$?
  [[ $rc -eq 0 ]] || die "$phase: reading Kafka back failed ($rc): $out $(tail -n 3 "$WORK/count.$phase.err")"
  recs="$("$TANSU_PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["records"])' "$out")"
  ids="$("$TANSU_PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["distinct_ids"])' "$out")"
  exps="$("$TANSU_PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["expiries"])' "$out")"
  dups=$((recs - ids))
  KAFKA_LINE="accepted $(fmt_int "$acc"), in Kafka $(fmt_int "$recs") records / $(fmt_int "$ids") distinct ids ($dups duplicates; besides, $(fmt_int "$exps") typing expiries)"
  if ((ids < acc)); then
    broke "$phase: $((acc - ids)) accepted event(s) missing from Kafka ($KAFKA_LINE)"
    KAFKA_OK=""
  fi
  say "$phase: Kafka: $KAFKA_LINE"
  KAFKA_SUMMARY+=("$phase: $(fmt_int "$acc") accepted / $(fmt_int "$ids") in Kafka")
}
KAFKA_OK=1
KAFKA_SUMMARY=()

# ------------------------------------------------------------ header
echo "# presence-bridge end-to-end load benchmark"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- command: $CMDLINE"
echo "- machine: nproc $(nproc), $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- bridge: $BRIDGE_BIN ($(stat -c '%y' "$BRIDGE_BIN" | cut -d. -f1), $(sha256sum "$BRIDGE_BIN" | cut -c1-12))"
echo "- ceiling: $CEILING_BIN ($(stat -c '%y' "$CEILING_BIN" | cut -d. -f1), $(sha256sum "$CEILING_BIN" | cut -c1-12))"
echo "- load: wrk $(wrk -v 2>&1 | head -n1 | awk '{print $2}'), $THREADS threads, ${CONNS_ARG//,/ and } connections, $ROUNDS round(s) x ${DURATION}s per server and policy (+${WARMUP}s warm-up), benches/load/presence.lua, no auth token"
echo "- spool: $SPOOLS ($fstype), spool.fsync ${FSYNC_ARG//,/, } (the fixed rate and the outage: ${FSYNC_LIST[0]}, ${CONNS_LIST[0]} connections); outage: $(fmt_int "$OUTAGE_N") events; new traffic during the drain: $DRAIN_RATE req/s"
echo

say "installing / checking Tansu and confluent-kafka"
tansu_install >&2 || die "could not install tansu / confluent-kafka"
echo "- broker: $("$TANSU_BIN" --version 2>&1 | head -n1), memory storage, loopback"
echo

# ------------------------------------------------------------ 1. broker, ceiling, start-up
tansu_start >&2 || die "tansu did not start"
tansu_create_topic "$TOPIC" 3 >&2 || die "could not create topic $TOPIC"
tansu_create_topic "$LATEST_TOPIC" 3 >&2 || die "could not create topic $LATEST_TOPIC"
export PRESENCE_BRIDGE__KAFKA__BROKERS="$TANSU_BOOTSTRAP"
start_ceiling

STARTUPS=()
n_start=$([[ -n "$SMOKE" ]] && echo 3 || echo 5)
for i in $(seq "$n_start"); do
  start_bridge "startup$i"
  STARTUPS+=("$STARTUP_MS")
  stop_bridge
done
STARTUP_MED="$(median "${STARTUPS[@]}")"
say "start-up (exec -> /readyz 200): ${STARTUPS[*]} ms, median $STARTUP_MED ms"

# ------------------------------------------------------------ 2. saturation matrix
# For each connection count, ROUNDS rounds; in each round the ceiling and the
# bridge under every spool.fsync policy, in an order that rotates from round
# to round. Per run: req/s, latency, and CPU per request = the server
# process's user + system time over the run (for the bridge, until the
# records the run accepted are in Kafka) divided by the requests answered.
declare -A M_RPS M_P50 M_P99 M_P999 M_CPU M_RATIO M_CPURATIO
B_HWM=()
add() { local -n arr="$1"; arr["$2"]="${arr["$2"]:+${arr["$2"]} }$3"; }
cpu_us() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { printf "%.2f", (n > 0) ? t / hz * 1e6 / n : 0 }'; }
bridge_round() {
  local r="$1" fs="$2" c="$3" non2xx t0 t1 f0 f1 a0 a1 per_sync key="bridge/$2/$3"
  FSYNC="$fs"; CONNS="$c"
  start_bridge "sat.$fs.$c.$r"
  run_wrk "warm.b$r" "$HTTP" "$WARMUP" saturate 0 "$BRIDGE_PID"
  wait_metric presence_bridge_spool_events == 0 "$DRAIN_TIMEOUT" || die "$key: warm-up backlog not delivered"
  f0="$(metric presence_bridge_spool_fsync_duration_seconds_count)"; a0="$(accepted)"
  t0="$(ticks "$BRIDGE_PID")"
  run_wrk "sat.b.$fs.$c.$r" "$HTTP" "$DURATION" saturate 0 "$BRIDGE_PID"
  wait_metric presence_bridge_spool_events == 0 "$DRAIN_TIMEOUT" || die "$key round $r: backlog not delivered"
  t1="$(ticks "$BRIDGE_PID")"
  f1="$(metric presence_bridge_spool_fsync_duration_seconds_count)"; a1="$(accepted)"
  per_sync="$(awk -v a="$((${a1:-0} - ${a0:-0}))" -v f="$((${f1:-0} - ${f0:-0}))" 'BEGIN { if (f > 0) printf "%.1f requests per fsync", a / f; else print "no fsync" }')"
  kill -0 "$BRIDGE_PID" 2>/dev/null || die "bridge died during round $r ($key)"
  LAST_CPU="$(cpu_us $((t1 - t0)) "$(j requests)")"
  add M_RPS "$key" "$(j rps)"; add M_P50 "$key" "$(j p50_us)"; add M_P99 "$key" "$(j p99_us)"; add M_P999 "$key" "$(j p999_us)"
  add M_CPU "$key" "$LAST_CPU"
  non2xx="$(bridge_non2xx)"
  echo "- round $r bridge, fsync $fs, $c connections: $(fmt_int "$(j rps)") req/s, **$LAST_CPU µs CPU per request**, p50 $(ms "$(j p50_us)") ms, p99 $(ms "$(j p99_us)") ms, p99.9 $(ms "$(j p999_us)") ms, max $(ms "$(j max_us)") ms; non-2xx wrk $(j non2xx) / bridge $non2xx; socket errors $(($(j connect_err) + $(j read_err) + $(j write_err))), timeouts $(j timeouts); $per_sync; CPU: $CPU_LINE"
  echo "  - bridge threads: $THREAD_LINE"
  [[ "$(j non2xx)" == 0 && "$non2xx" == 0 ]] || broke "round $r ($key): the bridge answered non-2xx to valid input (wrk $(j non2xx), bridge metrics $non2xx)"
  verify_kafka "round $r $fs $c"
  stop_bridge
  B_HWM+=("$LAST_HWM_KB")
  echo "  - peak RSS (VmHWM) $(mib "$LAST_HWM_KB") MiB; Kafka: $KAFKA_LINE"
}
ceiling_round() {
  local r="$1" c="$2" t0 t1 key="ceiling/-/$2"
  CONNS="$c"
  kill -0 "$CEILING_PID" 2>/dev/null || die "ceiling died"
  run_wrk "warm.c$r" "$CEIL" "$WARMUP" saturate 0 "$CEILING_PID"
  t0="$(ticks "$CEILING_PID")"
  run_wrk "sat.c.$c.$r" "$CEIL" "$DURATION" saturate 0 "$CEILING_PID"
  t1="$(ticks "$CEILING_PID")"
  kill -0 "$CEILING_PID" 2>/dev/null || die "ceiling died during round $r"
  LAST_CPU="$(cpu_us $((t1 - t0)) "$(j requests)")"
  add M_RPS "$key" "$(j rps)"; add M_P50 "$key" "$(j p50_us)"; add M_P99 "$key" "$(j p99_us)"; add M_P999 "$key" "$(j p999_us)"
  add M_CPU "$key" "$LAST_CPU"
  echo "- round $r ceiling, $c connections: $(fmt_int "$(j rps)") req/s, **$LAST_CPU µs CPU per request**, p50 $(ms "$(j p50_us)") ms, p99 $(ms "$(j p99_us)") ms, p99.9 $(ms "$(j p999_us)") ms, max $(ms "$(j max_us)") ms; non-2xx $(j non2xx); CPU: $CPU_LINE"
}
last() { local -n arr="$1"; echo "${arr["$2"]##* }"; }
ratio() { awk -v b="$1" -v c="$2" 'BEGIN { printf "%.3f", (c > 0) ? b / c : 0 }'; }
for c in "${CONNS_LIST[@]}"; do
  echo "## Saturation, $c connections, ${DURATION}s per run"
  echo
  for r in $(seq "$ROUNDS"); do
    order=(ceiling "${FSYNC_LIST[@]}")
    shift_by=$(( (r - 1) % ${#order[@]} ))
    order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
    for who in "${order[@]}"; do
      if [[ "$who" == ceiling ]]; then ceiling_round "$r" "$c"; else bridge_round "$r" "$who" "$c"; fi
    done
    for fs in "${FSYNC_LIST[@]}"; do
      add M_RATIO "bridge/$fs/$c" "$(ratio "$(last M_RPS "bridge/$fs/$c")" "$(last M_RPS "ceiling/-/$c")")"
      add M_CPURATIO "bridge/$fs/$c" "$(ratio "$(last M_CPU "bridge/$fs/$c")" "$(last M_CPU "ceiling/-/$c")")"
    done
  done
  echo
done
for f in "$WORK"/top.*; do
  if [[ -s "$f" ]]; then
    echo "\`top\` during ${f##*/top.}:"; echo; echo '```'; cat "$f"; echo '```'; echo
  fi
done
med() { local -n arr="$1"; [[ -n "${arr["$2"]:-}" ]] || { echo 0; return; }; # shellcheck disable=SC2086
  median ${arr["$2"]}; }
rounds_of() { local -n arr="$1"; echo "${arr["$2"]:-}" | awk '{ for (i = 1; i <= NF; i++) printf "%s%s", (i > 1 ? ", " : ""), $i }'; }
CONNS="${CONNS_LIST[0]}"; FSYNC="${FSYNC_LIST[0]}"
B_KEY="bridge/$FSYNC/$CONNS"
B_RPS_MED="$(med M_RPS "$B_KEY")"
B_HWM_MAX="$(printf '%s\n' "${B_HWM[@]}" | sort -n | tail -n1)"
C_HWM="$(proc_kb "$CEILING_PID" VmHWM)"

# ------------------------------------------------------------ 3. fixed moderate rate
PACED_RATE="$(awk -v r="$B_RPS_MED" 'BEGIN { v = int(r / 2); if (v < 1) v = 1; print v }')"
PACED_SECS=$DURATION
echo "## Fixed rate: $(fmt_int "$PACED_RATE") req/s (half the bridge's median saturation throughput), ${PACED_SECS}s"
echo
start_bridge paced
run_wrk "paced.b" "$HTTP" "$PACED_SECS" paced "$PACED_RATE" "$BRIDGE_PID"
kill -0 "$BRIDGE_PID" 2>/dev/null || die "bridge died in the fixed-rate phase"
PB_RPS="$(j rps)"; PB_P50="$(j p50_us)"; PB_P99="$(j p99_us)"; PB_P999="$(j p999_us)"
non2xx="$(bridge_non2xx)"
echo "- bridge: achieved $(fmt_int "$PB_RPS") req/s, p50 $(ms "$PB_P50") ms, p99 $(ms "$PB_P99") ms, p99.9 $(ms "$PB_P999") ms, max $(ms "$(j max_us)") ms; non-2xx wrk $(j non2xx) / bridge $non2xx; CPU: $CPU_LINE"
echo "  - bridge CPU: $THREAD_LINE"
[[ "$(j non2xx)" == 0 && "$non2xx" == 0 ]] || broke "fixed rate: the bridge answered non-2xx to valid input"
verify_kafka "fixed rate"
stop_bridge
PB_HWM="$LAST_HWM_KB"
run_wrk "paced.c" "$CEIL" "$PACED_SECS" paced "$PACED_RATE" "$CEILING_PID"
PC_RPS="$(j rps)"; PC_P50="$(j p50_us)"; PC_P99="$(j p99_us)"; PC_P999="$(j p999_us)"
echo "- ceiling: achieved $(fmt_int "$PC_RPS") req/s, p50 $(ms "$PC_P50") ms, p99 $(ms "$PC_P99") ms, p99.9 $(ms "$PC_P999") ms; CPU: $CPU_LINE"
echo
kill -0 "$CEILING_PID" 2>/dev/null || die "ceiling died"
tansu_kill_pid "$CEILING_PID" 3; CEILING_PID=""
TANSU_DIRECT_HWM="$(proc_kb "$TANSU_PID" VmHWM)"
tansu_stop >&2

# ------------------------------------------------------------ 4. outage + drain
echo "## Outage of $(fmt_int "$OUTAGE_N") events (broker behind the proxy, proxy_down), then drain"
echo
# On disk an event is two records (the event and the contact's latest state),
# about 1.35 KiB; typing expiries add more. The outage bridge gets a spool of
# 2 KiB per event + 256 MiB (the default 1 GiB holds about 790,000 events).
OUTAGE_SPOOL_BYTES=$(( OUTAGE_N * 2048 + 268435456 ))
need_kb=$(( OUTAGE_SPOOL_BYTES / 1024 + 1048576 ))   # + 1 GiB margin
avail_kb="$(df -Pk "$SPOOLS" | awk 'NR == 2 { print $4 }')"
OUTAGE_DONE=""
if ((avail_kb < need_kb)); then
  echo "- SKIPPED: $(mib "$avail_kb") MiB free on $SPOOLS, the outage needs about $(mib "$need_kb") MiB"
  echo
else
  rm -f "$KAFKA_STATE"
  tansu_start_with_proxy >&2 || die "tansu (behind the proxy) did not start"
  tansu_create_topic "$TOPIC" 3 >&2 || die "could not create topic $TOPIC"
  tansu_create_topic "$LATEST_TOPIC" 3 >&2 || die "could not create topic $LATEST_TOPIC"
  export PRESENCE_BRIDGE__KAFKA__BROKERS="$TANSU_BOOTSTRAP"
  PRESENCE_BRIDGE__SPOOL__MAX_BYTES="$OUTAGE_SPOOL_BYTES" start_bridge outage
  RSS_FILE="$WORK/rss.samples"
  PHASE_FILE="$WORK/phase"
  echo "outage" >"$PHASE_FILE"
  (
    max=$(( (LOAD_TIMEOUT + 1) * 2 ))
    for ((i = 0; i < max; i++)); do
      kb="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$BRIDGE_PID/status" 2>/dev/null)" || exit 0
      [[ -n "$kb" ]] || exit 0
      echo "$EPOCHREALTIME $kb $(cat "$PHASE_FILE")"
      sleep 0.5
    done
  ) >"$RSS_FILE" &
  SAMPLER_PID=$!
  proxy_down >&2 || die "proxy_down failed"
  o_t0=$EPOCHREALTIME
  start_wrk "outage" "$HTTP" "$OUTAGE_WRK_MAX" budget "$OUTAGE_N"
  deadline=$((SECONDS + OUTAGE_WRK_MAX + 10))
  s1="$(cpu_snapshot "$BRIDGE_PID" "$TANSU_PID" "$PROXY_PID")"
  lb threads "$BRIDGE_PID" >"$WORK/threads.outage.1" || true
  while :; do
    a="$(accepted)"
    [[ -n "$a" ]] && ((a >= OUTAGE_N)) && break
    kill -0 "$BRIDGE_PID" 2>/dev/null || die "bridge died during the outage"
    kill -0 "$WRK_PID" 2>/dev/null || break
    ((SECONDS < deadline)) || { broke "outage: only ${a:-0} of $OUTAGE_N events accepted within ${OUTAGE_WRK_MAX}s"; break; }
    n="$(bridge_non2xx)"
    ((${n:-0} == 0)) || { broke "outage: the bridge answered non-2xx ($n, spool full?) after ${a:-0} events"; break; }
    sleep 0.2
  done
  o_t1=$EPOCHREALTIME
  s2="$(cpu_snapshot "$BRIDGE_PID" "$TANSU_PID" "$PROXY_PID")"
  lb threads "$BRIDGE_PID" >"$WORK/threads.outage.2" || true
  O_THREADS="$(lb thread-diff "$WORK/threads.outage.1" "$WORK/threads.outage.2" 2>/dev/null || true)"
  stop_wrk
  sleep 2   # in-flight requests land; RSS keeps being sampled, the outage continues
  O_ACC="$(accepted)"
  O_NON2XX="$(bridge_non2xx)"
  O_BACKLOG="$(metric presence_bridge_spool_events)"
  O_SPOOL_BYTES="$(metric presence_bridge_spool_bytes)"
  O_RATE="$(awk -v n="$O_ACC" -v a="$o_t0" -v b="$o_t1" 'BEGIN { printf "%.0f", n / (b - a) }')"
  O_HWM="$(proc_kb "$BRIDGE_PID" VmHWM)"
  echo "- accepted $(fmt_int "$O_ACC") events in $(awk -v a="$o_t0" -v b="$o_t1" 'BEGIN { printf "%.1f", b - a }') s ($(fmt_int "$O_RATE") events/s) with the broker away; wrk p50 $(ms "$(j p50_us)") ms, p99 $(ms "$(j p99_us)") ms, p99.9 $(ms "$(j p999_us)") ms; non-2xx wrk $(j non2xx) / bridge $O_NON2XX"
  echo "- backlog $(fmt_int "$O_BACKLOG") spool records (events, their latest states, typing expiries), spool $(awk -v b="${O_SPOOL_BYTES:-0}" 'BEGIN { printf "%.0f", b / 1048576 }') MiB on disk; CPU during the outage load: $(cpu_report "$s1" "$s2" bridge tansu proxy)"
  echo "  - bridge CPU during the outage load: $O_THREADS"
  [[ "$(j non2xx)" == 0 && "$O_NON2XX" == 0 ]] || broke "outage: the bridge answered non-2xx to valid input (wrk $(j non2xx), bridge $O_NON2XX)"

  # drain, with new traffic
  echo "drain" >"$PHASE_FILE"
  d_before="$(metric presence_bridge_kafka_deliveries_total 'result="delivered"')"
  # Records, not events: each event is two (and typing expiries add theirs).
  D_RECORDS="$(metric presence_bridge_spool_events)"
  proxy_up >&2 || die "proxy_up failed"
  d_t0=$EPOCHREALTIME
  start_wrk "drain" "$HTTP" $((DRAIN_TIMEOUT + 30)) paced "$DRAIN_RATE"
  d_first=""; d_done=""
  s1="$(cpu_snapshot "$BRIDGE_PID" "$TANSU_PID" "$PROXY_PID")"
  lb threads "$BRIDGE_PID" >"$WORK/threads.drain.1" || true
  deadline=$((SECONDS + DRAIN_TIMEOUT))
  while ((SECONDS < deadline)); do
    d="$(metric presence_bridge_kafka_deliveries_total 'result="delivered"')"
    now=$EPOCHREALTIME
    if [[ -n "$d" ]]; then
      if [[ -z "$d_first" ]] && ((d > ${d_before:-0})); then d_first=$now; fi
      if ((d - ${d_before:-0} >= ${D_RECORDS:-0})); then d_done=$now; break; fi
    fi
    kill -0 "$BRIDGE_PID" 2>/dev/null || die "bridge died during the drain"
    sleep 0.2
  done
  s2="$(cpu_snapshot "$BRIDGE_PID" "$TANSU_PID" "$PROXY_PID")"
  DRAIN_CPU="$(cpu_report "$s1" "$s2" bridge tansu proxy)"
  lb threads "$BRIDGE_PID" >"$WORK/threads.drain.2" || true
  D_THREADS="$(lb thread-diff "$WORK/threads.drain.1" "$WORK/threads.drain.2" 2>/dev/null || true)"
  sleep 1   # a little new traffic after the backlog too
  kill -0 "$WRK_PID" 2>/dev/null || broke "drain: the new-traffic wrk ended before the backlog was delivered"
  stop_wrk
  echo "done" >"$PHASE_FILE"
  [[ -n "$d_done" ]] || broke "drain: backlog not delivered within ${DRAIN_TIMEOUT}s"
  D_SECS="$(awk -v a="$d_t0" -v b="${d_done:-$EPOCHREALTIME}" 'BEGIN { printf "%.2f", b - a }')"
  D_RATE="$(awk -v n="$O_ACC" -v s="$D_SECS" 'BEGIN { printf "%.0f", n / s }')"
  D_RATE_FROM_FIRST="$(awk -v n="$O_ACC" -v a="${d_first:-$d_t0}" -v b="${d_done:-$EPOCHREALTIME}" 'BEGIN { printf "%.0f", n / (b - a) }')"
  D_RECONNECT="$(awk -v a="$d_t0" -v b="${d_first:-$d_t0}" 'BEGIN { printf "%.2f", b - a }')"
  if grep -q '^LOADJSON' "$WRK_OUT"; then
    DN_RPS="$(j rps)"; DN_NON2XX="$(j non2xx)"; DN_P99="$(j p99_us)"; DN_REQ="$(j requests)"
  else
    broke "drain: the new-traffic wrk printed no result: $(tail -n 3 "$WRK_OUT")"
    DN_RPS=0; DN_NON2XX="?"; DN_P99=0; DN_REQ=0
  fi
  echo "- drain: $(fmt_int "$O_ACC") events ($(fmt_int "${D_RECORDS:-0}") spool records with their latest states and typing expiries) delivered $D_SECS s after proxy_up: $(fmt_int "$D_RATE") events/s ($(fmt_int "$D_RATE_FROM_FIRST") events/s from the first delivery, which came $D_RECONNECT s after proxy_up)"
  echo "- new traffic during the drain: $(fmt_int "$DN_REQ") requests at $(fmt_int "$DN_RPS") req/s, non-2xx $DN_NON2XX, p50 $(ms "$(j p50_us)") ms, p99 $(ms "$DN_P99") ms, p99.9 $(ms "$(j p999_us)") ms; CPU during the drain: $DRAIN_CPU"
  echo "  - bridge CPU during the drain: $D_THREADS"
  [[ "$DN_NON2XX" == 0 ]] || broke "drain: new traffic got non-2xx answers ($DN_NON2XX)"
  verify_kafka "outage+drain"
  tansu_kill_pid "$SAMPLER_PID" 2; SAMPLER_PID=""
  RSS_JSON="$(lb rss "$RSS_FILE")"
  rssf() { "$TANSU_PYTHON" -c 'import json,sys; d=json.loads(sys.argv[1]).get(sys.argv[2], {}); print(d.get(sys.argv[3], ""))' "$RSS_JSON" "$1" "$2"; }
  O_RSS_MIN="$(rssf outage min)"; O_RSS_MAX="$(rssf outage max)"; O_RSS_LAST="$(rssf outage last)"
  O_RSS_H1="$(rssf outage first_half_max)"; O_RSS_H2="$(rssf outage second_half_max)"; O_RSS_N="$(rssf outage samples)"
  D_RSS_MAX="$(rssf drain max)"; D_RSS_LAST="$(rssf drain last)"
  echo "- bridge RSS during the outage ($O_RSS_N samples every 0.5 s): min $O_RSS_MIN MiB, max $O_RSS_MAX MiB, last $O_RSS_LAST MiB (max over the first half $O_RSS_H1, second half $O_RSS_H2); during the drain max $D_RSS_MAX MiB, last $D_RSS_LAST MiB"
  stop_bridge
  O_HWM_ALL="$LAST_HWM_KB"
  echo "- bridge VmHWM: $(mib "$O_HWM") MiB at the end of the outage, $(mib "$O_HWM_ALL") MiB after the drain; Kafka: $KAFKA_LINE; Tansu VmHWM $(mib "$(proc_kb "$TANSU_PID" VmHWM)") MiB"
  echo
  OUTAGE_DONE=1
  tansu_stop >&2
fi

# ------------------------------------------------------------ results
met() { if awk "BEGIN { exit !($1) }"; then echo met; else echo MISSED; fi; }
lat3() { echo "$(ms "$1") / $(ms "$2") / $(ms "$3") ms"; }
echo "## Results"
echo
echo "$(date -u '+%Y-%m-%d'), nproc $(nproc), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), $ROUNDS round(s) x ${DURATION}s per server and policy, $THREADS wrk threads; medians over the rounds (each ratio is the median of the per-round ratios to the ceiling of the same round)$([[ -n "$SMOKE" ]] && echo '; SMOKE RUN: numbers not meaningful')."
echo
echo "| server | spool.fsync | connections | CPU per request | CPU / ceiling's | req/s | req/s / ceiling's | p50 / p99 / p99.9 |"
echo "|---|---|---:|---:|---:|---:|---:|---|"
for c in "${CONNS_LIST[@]}"; do
  k="ceiling/-/$c"
  echo "| bare hyper (ceiling) | | $c | $(med M_CPU "$k") µs | 1.00 | $(fmt_int "$(med M_RPS "$k")") | 1.00 | $(lat3 "$(med M_P50 "$k")" "$(med M_P99 "$k")" "$(med M_P999 "$k")") |"
  for fs in "${FSYNC_LIST[@]}"; do
    k="bridge/$fs/$c"
    echo "| bridge | $fs | $c | $(med M_CPU "$k") µs | $(med M_CPURATIO "$k") | $(fmt_int "$(med M_RPS "$k")") | $(med M_RATIO "$k") | $(lat3 "$(med M_P50 "$k")" "$(med M_P99 "$k")" "$(med M_P999 "$k")") |"
  done
done
echo
echo "Per round (CPU µs per request; req/s):"
echo
for c in "${CONNS_LIST[@]}"; do
  echo "- ceiling, $c connections: CPU $(rounds_of M_CPU "ceiling/-/$c"); req/s $(rounds_of M_RPS "ceiling/-/$c")"
  for fs in "${FSYNC_LIST[@]}"; do
    echo "- bridge $fs, $c connections: CPU $(rounds_of M_CPU "bridge/$fs/$c"); req/s $(rounds_of M_RPS "bridge/$fs/$c")"
  done
done
echo
echo "| measure | target | result | |"
echo "|---|---|---|---|"
for c in "${CONNS_LIST[@]}"; do
  k="bridge/always/$c"
  [[ -n "${M_CPU[$k]:-}" ]] || continue
  v="$(med M_CPURATIO "$k")"
  echo "| CPU per durable request (always), $c connections, to the ceiling's | ≤ 1.6 | $v ($(med M_CPU "$k") / $(med M_CPU "ceiling/-/$c") µs) | $(met "$v <= 1.6") |"
  want=""
  [[ "$c" == 32 ]] && want=0.5
  [[ "$c" == 256 ]] && want=0.75
  v="$(med M_RATIO "$k")"
  if [[ -n "$want" ]]; then
    echo "| throughput with always, $c connections, to the ceiling's | ≥ $want | $v | $(met "$v >= $want") |"
  else
    echo "| throughput with always, $c connections, to the ceiling's | | $v | |"
  fi
done
echo "| bridge latency at half saturation ($(fmt_int "$PACED_RATE") req/s asked, $(fmt_int "$PB_RPS") achieved) p50 / p99 / p99.9 | p99 < 5 ms | $(lat3 "$PB_P50" "$PB_P99" "$PB_P999") | $(met "$PB_P99 < 5000") |"
echo "| ceiling latency at the same rate ($(fmt_int "$PC_RPS") achieved) p50 / p99 / p99.9 | | $(lat3 "$PC_P50" "$PC_P99" "$PC_P999") | |"
echo "| bridge peak RSS under load (VmHWM, max over rounds) | < 64 MiB | $(mib "$B_HWM_MAX") MiB (fixed rate: $(mib "$PB_HWM") MiB; ceiling: $(mib "$C_HWM") MiB) | $(met "$B_HWM_MAX < 65536") |"
if [[ -n "$OUTAGE_DONE" ]]; then
  flat="$(awk -v a="$O_RSS_H1" -v b="$O_RSS_H2" 'BEGIN { print ((b - a <= 8) ? "flat" : "grew") }')"
  echo "| bridge RSS through a $(fmt_int "$OUTAGE_N")-event outage (min / max / last; VmHWM) | < 64 MiB, flat (second-half max ≤ first-half max + 8 MiB) | $O_RSS_MIN / $O_RSS_MAX / $O_RSS_LAST MiB, $flat; VmHWM $(mib "$O_HWM") MiB | $(met "$O_HWM < 65536 && $O_RSS_H2 - $O_RSS_H1 <= 8") |"
  echo "| ingest during the outage | | $(fmt_int "$O_RATE") events/s, backlog $(fmt_int "$O_BACKLOG") spool records | |"
  echo "| drain after the outage, new traffic at $(fmt_int "$DN_RPS") req/s meanwhile (non-2xx $DN_NON2XX) | ≥ 50,000 events/s | $(fmt_int "$D_RATE") events/s from proxy_up ($(fmt_int "$D_RATE_FROM_FIRST")/s from the first delivery, $D_RECONNECT s reconnect) | $(met "$D_RATE >= 50000 && \"$DN_NON2XX\" == \"0\"") |"
else
  echo "| bridge RSS through a $(fmt_int "$OUTAGE_N")-event outage | < 64 MB, flat | skipped (disk space) | MISSED |"
  echo "| drain after the outage | ≥ 50,000 events/s | skipped (disk space) | MISSED |"
fi
echo "| start-up, exec to /readyz 200 (median of ${#STARTUPS[@]}, empty spool) | | $STARTUP_MED ms (runs: $(IFS=,; echo "${STARTUPS[*]}" | sed 's/,/, /g')) | |"
echo "| every accepted event in Kafka (event-id read back, every phase) | all | $( [[ -n "$KAFKA_OK" ]] && echo yes || echo NO ): $(IFS=';'; echo "${KAFKA_SUMMARY[*]}" | sed 's/;/; /g') | $( [[ -n "$KAFKA_OK" ]] && echo met || echo MISSED ) |"
echo
echo "Broker: Tansu $("$TANSU_BIN" --version 2>&1 | awk '{print $NF}') (memory storage; VmHWM $(mib "$TANSU_DIRECT_HWM") MiB after the saturation and fixed-rate phases). Latencies are wrk's (closed loop at saturation; paced by delay() at the fixed rate)."
echo
echo "load.sh: OK ($((SECONDS - STARTED)) s)"
