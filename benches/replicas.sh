#!/usr/bin/env bash
# Order across replicas (issue 15): two bridges behind a load balancer, one of
# them cut from the broker for a while; per-phone order breaks on the event
# topic (and stale states on the latest-presence topic, when the bridge writes
# one), with round-robin routing and with routing by instance. One command:
#
#   benches/replicas.sh [--smoke] [--seed N] [--runs N] [--keep] [PATH/TO/presence-bridge]
#
# (default binary: target/release/presence-bridge). For each routing mode
# (round-robin, then by-instance), --runs times, everything from scratch:
#   1. Tansu (in memory) on 127.0.0.1:B, advertising pb-kafka-proxy:P. Two
#      .ci/tcp_proxy.py, 127.0.0.1:P and 127.0.0.2:P, both to B. Each bridge
#      runs in a mount namespace of its own (unshare; root, or an unprivileged
#      user namespace) whose /etc/hosts says pb-kafka-proxy is 127.0.0.1
#      (bridge 1) or 127.0.0.2 (bridge 2): every connection of bridge N, the
#      bootstrap and the partition leaders the broker advertises, goes through
#      proxy N, so one bridge can be cut from the broker while the other is not
#      (one proxy cannot do it: a broker advertises a single address).
#   2. Two `presence-bridge serve`, each with its own spool directory, and
#      benches/replicas/lb.py in front of them in the mode under test.
#   3. benches/replicas/stream.py send: a seeded stream (8 instances x 25
#      phones x 20 events, smoke 4 x 10 x 10) through the LB, each phone's
#      events one after another, paced over 20 s (smoke 8 s). From 25% to 75%
#      of that time proxy 2 is down (bridge 2 keeps accepting, into its spool).
#   4. The typing timers settle (presence.typing_ttl is 5 s here, default
#      15 s: each COMPOSING/RECORDING timer fires or is superseded), both
#      spools drain (presence_bridge_spool_events 0 on both bridges), then the
#      event topic and the latest-presence topic (created compacted) are read
#      from the beginning (kafka_admin.py consume, in bridge 1's namespace) and
#      stream.py measure counts: order breaks, spurious typing expiries (the
#      phone had a newer event than the typing one that caused it), stale
#      latest states (a contact's last record is not its last event sent).
# At the end: a header (date, machine, commit, command, seed) and a markdown
# table, medians when --runs > 1.
#
# Exit status: 0 unless something failed to run (a server, a POST that was not
# 200, a spool that did not drain, a timeout) or an accepted event is missing
# from the event topic. Order breaks are the measurement, never a failure; the
# script says so when by-instance routing shows any.
#
# Env: REPLICAS_TIMEOUT (whole run, s; default 900), REPLICAS_TYPING_TTL (s,
# default 5), plus .ci/tansu.sh's knobs.
# Only loopback addresses are used.
# shellcheck disable=SC2317  # functions run from traps
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/benches/replicas"
CMDLINE="$(printf '%q ' "$0" "$@")"

SMOKE=""
SEED=15
RUNS=1
KEEP=""
BINARY=""
usage() { sed -n '6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --seed) SEED="${2:?}"; shift ;;
    --runs) RUNS="${2:?}"; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) usage ;;
    -*) echo "replicas.sh: unknown argument $1" >&2; usage ;;
    *) [[ -z "$BINARY" ]] || usage; BINARY="$1" ;;
  esac
  shift
done
for v in SEED RUNS; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "replicas.sh: --${v,,} must be a number" >&2; exit 2; }
done
BINARY="${BINARY:-$ROOT/target/release/presence-bridge}"
[[ "$BINARY" == /* ]] || BINARY="$PWD/$BINARY"
[[ -x "$BINARY" ]] || { echo "replicas.sh: $BINARY missing or not executable (cargo build --release)" >&2; exit 1; }
for tool in curl unshare mount timeout python3; do
  command -v "$tool" >/dev/null || { echo "replicas.sh: needs $tool" >&2; exit 1; }
done
if [[ -n "$SMOKE" ]]; then
  INSTANCES=4 PHONES=10 EVENTS=10 DURATION=8
else
  INSTANCES=8 PHONES=25 EVENTS=20 DURATION=20
fi
CUT_AT=$((DURATION / 4))
CUT_FOR=$((DURATION / 2))
TOPIC="whatsapp.presence.v1"
LATEST_TOPIC="whatsapp.presence.latest.v1"
PROXY_HOST="pb-kafka-proxy"
REPLICAS_TIMEOUT="${REPLICAS_TIMEOUT:-900}"
TYPING_TTL="${REPLICAS_TYPING_TTL:-5}s"
[[ "$TYPING_TTL" =~ ^[0-9]+s$ ]] || { echo "replicas.sh: REPLICAS_TYPING_TTL must be whole seconds" >&2; exit 2; }
DRAIN_TIMEOUT=120

# shellcheck source=../.ci/tansu.sh
source "$ROOT/.ci/tansu.sh"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/presence-replicas.XXXXXX")"
export TANSU_WORKDIR="$WORK/tansu"
mkdir -p "$TANSU_WORKDIR"
say() { echo "[replicas] $*" >&2; }
FAILURES=()
broke() { FAILURES+=("$*"); say "BROKE: $*"; }
die() { broke "$*"; exit 1; }

# ------------------------------------------------------------ processes
PIDS=()          # everything this run started, stopped in reverse order
WATCHDOG_PID=""
STARTED=$SECONDS
stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    tansu_kill_pid "${PIDS[$i]}" 10
  done
  PIDS=()
}
_replicas_finish() {
  local rc="${_TANSU_EXIT_RC:-$?}" f
  set +e
  [[ -z "$WATCHDOG_PID" ]] || tansu_kill_pid "$WATCHDOG_PID" 2
  stop_all
  if [[ $rc -ne 0 || ${#FAILURES[@]} -gt 0 ]]; then
    [[ ${#FAILURES[@]} -gt 0 ]] || FAILURES+=("aborted (exit status $rc)")
    for f in "$WORK"/*/bridge.*.log "$WORK"/*/*.err; do
      [[ -s "$f" ]] || continue
      echo "================ $f (last 30 lines) ================" >&2
      tail -n 30 "$f" >&2
    done
    echo "replicas.sh: BROKEN after $((SECONDS - STARTED))s: $(IFS='; '; echo "${FAILURES[*]}")"
    say "work dir kept: $WORK"
    exit 1
  fi
  if [[ -n "$KEEP" ]]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit 0
}
tansu_on_exit _replicas_finish
(
  me=$BASHPID
  for ((i = 0; i < REPLICAS_TIMEOUT; i++)); do
    sleep 1
    [[ "$(ps -o ppid= -p "$me" 2>/dev/null | tr -d ' ')" == "$$" ]] || exit 0
  done
  echo "[replicas] watchdog: ${REPLICAS_TIMEOUT}s elapsed, aborting" >&2
  kill -TERM $$
) &
WATCHDOG_PID=$!

# in_ns HOSTS CMD...: CMD with HOSTS bind-mounted on /etc/hosts, in a mount
# namespace of its own (private propagation: nothing leaks to the host). The
# command keeps the pid (unshare and sh exec it).
if [[ $(id -u) -eq 0 ]]; then UNSHARE=(unshare --mount --propagation private)
else UNSHARE=(unshare --map-root-user --mount --propagation private); fi
in_ns() {
  local hosts="$1"
  shift
  "${TANSU_ORPHAN_GUARD[@]}" "${UNSHARE[@]}" -- sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$hosts" "$@"
}
printf '127.0.0.1 localhost\n' >"$WORK/probe.hosts"
in_ns "$WORK/probe.hosts" true || die "cannot run a command in a mount namespace of its own (${UNSHARE[*]})"

metric() {  # metric ADMIN NAME: sum over the series of NAME, or empty
  curl -s --max-time 3 "$1/metrics" 2>/dev/null | awk -v n="$2" '
    $1 == n || index($1, n "{") == 1 { s += $NF; found = 1 }
    END { if (found) printf "%.0f\n", s }'
}
wait_metric() {  # wait_metric ADMIN NAME VALUE SECS
  local deadline=$((SECONDS + $4))
  while ((SECONDS < deadline)); do
    [[ "$(metric "$1" "$2")" == "$3" ]] && return 0
    sleep 0.25
  done
  return 1
}
free_port() { tansu_free_port; }

# ------------------------------------------------------------ one run
# run_mode MODE RUN: prints nothing; appends a result line to $RESULTS.
run_mode() {
  local mode="$1" run="$2" dir="$WORK/$1.$2" b p i hosts admin http rc
  mkdir -p "$dir"
  b="$(free_port)"; p="$(free_port)"
  say "== $mode, run $run: tansu 127.0.0.1:$b advertising $PROXY_HOST:$p"
  for i in 1 2; do printf '127.0.0.%s %s\n127.0.0.1 localhost\n' "$i" "$PROXY_HOST" >"$dir/hosts.$i"; done

  env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT -u CLUSTER_ID RUST_LOG=warn \
    "${TANSU_ORPHAN_GUARD[@]}" "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$b" \
    --advertised-listener-url "tcp://$PROXY_HOST:$p" --storage-engine memory://tansu/ \
    >"$dir/tansu.log" 2>&1 </dev/null &
  PIDS+=($!)
  _tansu_wait_for_line "$dir/tansu.log" '^ready|[[:space:]]ready' "${PIDS[-1]}" "$TANSU_START_TIMEOUT" \
    || die "$mode: tansu did not start: $(tail -n 5 "$dir/tansu.log")"

  PROXY_PIDS=()
  for i in 1 2; do
    "${TANSU_ORPHAN_GUARD[@]}" "$TANSU_PYTHON" "$ROOT/.ci/tcp_proxy.py" --listen "127.0.0.$i:$p" \
      --target "127.0.0.1:$b" --state-file "$dir/proxy.$i.state" >"$dir/proxy.$i.log" 2>&1 </dev/null &
    PIDS+=($!); PROXY_PIDS+=($!)
    _tansu_wait_for_line "$dir/proxy.$i.state" '^up$' "${PIDS[-1]}" 10 || die "$mode: proxy $i did not start"
  done

  in_ns "$dir/hosts.1" "$TANSU_PYTHON" "$ROOT/.ci/kafka_admin.py" create-topic -b "$PROXY_HOST:$p" \
    -t "$TOPIC" -p 3 --timeout 30 2>"$dir/topic.err" || die "$mode: could not create $TOPIC: $(tail -n 3 "$dir/topic.err")"
  in_ns "$dir/hosts.1" "$TANSU_PYTHON" "$HERE/stream.py" create-topic -b "$PROXY_HOST:$p" \
    -t "$LATEST_TOPIC" -p 3 --compact 2>"$dir/topic.err" || die "$mode: could not create $LATEST_TOPIC: $(tail -n 3 "$dir/topic.err")"

  TOKEN="replicas-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  ADMINS=(); HTTPS=(); BRIDGE_PIDS=()
  for i in 1 2; do
    http="$(free_port)"; admin="$(free_port)"
    mkdir -p "$dir/spool.$i"
    PRESENCE_BRIDGE__HTTP__LISTEN="127.0.0.1:$http" \
    PRESENCE_BRIDGE__ADMIN__LISTEN="127.0.0.1:$admin" \
    PRESENCE_BRIDGE__KAFKA__BROKERS="$PROXY_HOST:$p" \
    PRESENCE_BRIDGE__SPOOL__DIR="$dir/spool.$i" \
    PRESENCE_BRIDGE__AUTH__TOKENS="$TOKEN" \
    PRESENCE_BRIDGE__KAFKA__PROBE_INTERVAL=500ms \
    PRESENCE_BRIDGE__SHUTDOWN__DEADLINE=5s \
    PRESENCE_BRIDGE__PRESENCE__TYPING_TTL="$TYPING_TTL" \
    RUST_LOG="${RUST_LOG:-info}" \
      in_ns "$dir/hosts.$i" "$BINARY" serve >"$dir/bridge.$i.log" 2>&1 </dev/null &
    PIDS+=($!); BRIDGE_PIDS+=($!)
    ADMINS+=("http://127.0.0.1:$admin"); HTTPS+=("http://127.0.0.1:$http")
  done
  for i in 0 1; do
    wait_metric "${ADMINS[$i]}" presence_bridge_kafka_broker_reachable 1 60 \
      || die "$mode: bridge $((i + 1)) not ready with the broker reachable within 60s"
  done

  if [[ -n "$(metric "${ADMINS[0]}" presence_bridge_latest_topic_compacted)" ]]; then
    if wait_metric "${ADMINS[0]}" presence_bridge_latest_topic_compacted 1 10; then
      say "$mode: the bridge sees $LATEST_TOPIC compacted"
    else
      say "$mode: presence_bridge_latest_topic_compacted is $(metric "${ADMINS[0]}" presence_bridge_latest_topic_compacted), not 1 (Tansu's answer); measuring anyway"
    fi
  fi

  LB_PORT="$(free_port)"
  "${TANSU_ORPHAN_GUARD[@]}" "$TANSU_PYTHON" "$HERE/lb.py" --listen "127.0.0.1:$LB_PORT" --mode "$mode" \
    --backend "${HTTPS[0]}" --backend "${HTTPS[1]}" >"$dir/lb.log" 2>&1 </dev/null &
  PIDS+=($!)
  for ((i = 0; i < 50; i++)); do
    curl -sf --max-time 2 "http://127.0.0.1:$LB_PORT/_lb/stats" >/dev/null && break
    sleep 0.1
  done
  curl -sf --max-time 2 "http://127.0.0.1:$LB_PORT/_lb/stats" >/dev/null || die "$mode: lb.py did not start"

  say "$mode: sending ($INSTANCES instances x $PHONES phones x $EVENTS events over ${DURATION}s, seed $SEED); bridge 2 cut from the broker from ${CUT_AT}s for ${CUT_FOR}s"
  "$TANSU_PYTHON" "$HERE/stream.py" send --url "http://127.0.0.1:$LB_PORT" --token "$TOKEN" --seed "$SEED" \
    --instances "$INSTANCES" --phones "$PHONES" --events "$EVENTS" --duration "$DURATION" \
    --out "$dir/sent.json" >"$dir/send.out" 2>"$dir/send.err" &
  local sender=$! t0=$SECONDS spooled
  sleep "$CUT_AT"
  kill -USR1 "${PROXY_PIDS[1]}"
  _tansu_wait_for_line "$dir/proxy.2.state" '^down$' "${PROXY_PIDS[1]}" 10 || die "$mode: proxy 2 did not go down"
  if wait_metric "${ADMINS[1]}" presence_bridge_kafka_broker_reachable 0 "$CUT_FOR"; then
    say "$mode: bridge 2 sees the broker unreachable $((SECONDS - t0 - CUT_AT))s into the cut"
  else
    say "$mode: bridge 2 did not report the broker unreachable within ${CUT_FOR}s"
  fi
  while ((SECONDS - t0 < CUT_AT + CUT_FOR)); do sleep 0.2; done
  spooled="$(metric "${ADMINS[1]}" presence_bridge_spool_events)"
  kill -USR2 "${PROXY_PIDS[1]}"
  _tansu_wait_for_line "$dir/proxy.2.state" '^up$' "${PROXY_PIDS[1]}" 10 || die "$mode: proxy 2 did not come back"
  say "$mode: proxy 2 up again; bridge 2 had ${spooled:-?} event(s) in its spool"
  rc=0; wait "$sender" || rc=$?
  cat "$dir/send.out" >&2
  [[ $rc -eq 0 ]] || die "$mode: the sender failed ($rc): $(head -n 5 "$dir/send.err")"
  # Typing timers (bridges with a latest topic): each fires or is superseded
  # within the TTL; wait for all before reading, so the count is final.
  for i in 0 1; do
    [[ -n "$(metric "${ADMINS[$i]}" presence_bridge_typing_timers)" ]] || continue
    wait_metric "${ADMINS[$i]}" presence_bridge_typing_timers 0 "$((${TYPING_TTL%s} + 30))" \
      || die "$mode: bridge $((i + 1)) still has typing timers $((${TYPING_TTL%s} + 30))s after the stream"
  done
  for i in 0 1; do
    wait_metric "${ADMINS[$i]}" presence_bridge_spool_events 0 "$DRAIN_TIMEOUT" \
      || die "$mode: bridge $((i + 1)) spool not drained within ${DRAIN_TIMEOUT}s ($(metric "${ADMINS[$i]}" presence_bridge_spool_events) left)"
  done

  local latest_args=()
  in_ns "$dir/hosts.1" "$TANSU_PYTHON" "$ROOT/.ci/kafka_admin.py" consume -b "$PROXY_HOST:$p" -t "$TOPIC" \
    --timeout 90 >"$dir/events.jsonl" 2>"$dir/consume.err" || die "$mode: reading $TOPIC failed: $(tail -n 3 "$dir/consume.err")"
  in_ns "$dir/hosts.1" "$TANSU_PYTHON" "$ROOT/.ci/kafka_admin.py" consume -b "$PROXY_HOST:$p" -t "$LATEST_TOPIC" \
    --timeout 90 >"$dir/latest.jsonl" 2>"$dir/consume-latest.err" || die "$mode: reading $LATEST_TOPIC failed"
  # Empty: a bridge without the latest-presence topic (before issue 15).
  [[ ! -s "$dir/latest.jsonl" ]] || latest_args=(--latest "$dir/latest.jsonl")
  local stats res
  stats="$(curl -sf --max-time 3 "http://127.0.0.1:$LB_PORT/_lb/stats")" || die "$mode: no LB stats"
  res="$("$TANSU_PYTHON" "$HERE/stream.py" measure --sent "$dir/sent.json" --events "$dir/events.jsonl" "${latest_args[@]}")" \
    || die "$mode: measure failed"
  "$TANSU_PYTHON" -c 'import json, sys
r = json.loads(sys.argv[1]); s = json.loads(sys.argv[2])
r.update(mode=sys.argv[3], run=int(sys.argv[4]), requests=s["requests"], lb_errors=s["errors"])
print(json.dumps(r))' "$res" "$stats" "$mode" "$run" >>"$RESULTS"
  say "$mode run $run: $res; requests per bridge ${stats}"
  stop_all
  local missing; missing="$("$TANSU_PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["missing"])' "$res")"
  [[ "$missing" == 0 ]] || broke "$mode run $run: $missing accepted event(s) missing from $TOPIC"
}

# ------------------------------------------------------------ main
say "installing / checking Tansu and confluent-kafka"
tansu_install >&2 || die "could not install tansu / confluent-kafka"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
for ((r = 1; r <= RUNS; r++)); do
  for mode in round-robin by-instance; do
    run_mode "$mode" "$r"
  done
done

commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -qv '^??' && echo ' (with local changes)' || true)"
echo
echo "## Order across replicas: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "- command: $CMDLINE"
echo "- seed $SEED; $INSTANCES instances x $PHONES phones x $EVENTS events per run and mode, over ${DURATION}s; bridge 2 cut from the broker from ${CUT_AT}s for ${CUT_FOR}s; presence.typing_ttl $TYPING_TTL; $RUNS run(s)"
echo "- machine: $(nproc) CPU(s), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); binary $BINARY; commit $commit$dirty"
echo
"$TANSU_PYTHON" "$HERE/stream.py" table "$RESULTS"
bad="$("$TANSU_PYTHON" -c 'import json, sys
print(sum(r["order_breaks"] for r in map(json.loads, open(sys.argv[1])) if r["mode"] == "by-instance"))' "$RESULTS")"
if [[ "$bad" != 0 ]]; then
  echo
  echo "NOTE: by-instance routing shows $bad order break(s): one instance's requests reached both bridges or the stream reordered inside one bridge; see the work dir (--keep)."
fi
echo "replicas.sh: done in $((SECONDS - STARTED))s"
