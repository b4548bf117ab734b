#!/usr/bin/env bash
# Shared scaffolding of the end-to-end scripts (.ci/e2e-tansu.sh,
# .ci/e2e-outage.sh). Source it, then call
#
#   e2e_init NAME "$@"        checks the one argument (the bridge binary, made
#                             absolute in $BINARY) and the tools, sources
#                             tansu.sh, makes $WORK (with $TANSU_WORKDIR inside)
#                             and the bookkeeping variables, registers the exit
#                             report and starts the watchdog (E2E_TIMEOUT s).
#
# Gives say/ok/fail/die. The script may define e2e_dump_logs (called on
# failure, stderr) to print its own logs. The last line is
# "NAME: PASS (...)" or "NAME: FAIL (...)"; the exit status is 0 only on PASS.
# Keeps $WORK when E2E_KEEP is set.
# shellcheck disable=SC2317  # functions run from the EXIT trap

E2E_CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

e2e_init() {
  E2E_NAME="$1"
  shift
  if [[ $# -ne 1 ]]; then
    echo "usage: $0 PATH/TO/presence-bridge" >&2
    exit 2
  fi
  BINARY="$1"
  if [[ "$BINARY" != /* ]]; then BINARY="$PWD/$BINARY"; fi
  if [[ ! -x "$BINARY" ]]; then
    echo "$E2E_NAME: FAIL (binary $BINARY missing or not executable)"
    exit 1
  fi
  local tool
  for tool in curl timeout od awk; do
    command -v "$tool" >/dev/null || { echo "$E2E_NAME: FAIL (needs $tool)"; exit 1; }
  done
  # shellcheck source=tansu.sh
  source "$E2E_CI_DIR/tansu.sh"
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/$E2E_NAME.XXXXXX")"
  export TANSU_WORKDIR="$WORK/tansu"
  mkdir -p "$TANSU_WORKDIR"
  BRIDGE_PID=""
  WATCHDOG_PID=""
  FAILURES=()
  PASSES=0
  STARTED=$SECONDS
  tansu_on_exit _e2e_finish
  _e2e_watchdog
}

say() { echo "[$E2E_NAME] $*" >&2; }
ok() { PASSES=$((PASSES + 1)); say "ok   $*"; }
fail() { FAILURES+=("$*"); say "FAIL $*"; }
# A fatal step: record and stop here (the EXIT trap reports).
die() { fail "$*"; exit 1; }

# Runs last (registered first): stop everything, dump logs on failure, print
# the summary line, set the exit status.
_e2e_finish() {
  local rc="${_TANSU_EXIT_RC:-$?}"
  set +e
  [[ -z "$WATCHDOG_PID" ]] || tansu_kill_pid "$WATCHDOG_PID" 2
  if [[ -n "$BRIDGE_PID" ]] && kill -0 "$BRIDGE_PID" 2>/dev/null; then
    say "bridge still running at exit: stopping it"
    tansu_kill_pid "$BRIDGE_PID" 5
  fi
  tansu_stop
  if [[ $rc -ne 0 && ${#FAILURES[@]} -eq 0 ]]; then
    if (( SECONDS - STARTED >= E2E_TIMEOUT )); then
      FAILURES+=("timed out: whole run exceeded E2E_TIMEOUT=${E2E_TIMEOUT}s")
    else
      FAILURES+=("aborted (exit status $rc)")
    fi
  fi
  local took=$((SECONDS - STARTED))
  if [[ ${#FAILURES[@]} -gt 0 ]]; then
    if declare -F e2e_dump_logs >/dev/null; then
      e2e_dump_logs >&2
    fi
    {
      echo "================ tansu log (last 40 lines) ================"
      tail -n 40 "${TANSU_LOG:-/dev/null}" 2>/dev/null
      echo "=========================================================================="
    } >&2
    echo "$E2E_NAME: FAIL (${#FAILURES[@]} failed, $PASSES passed, ${took}s): $(IFS='; '; echo "${FAILURES[*]}")"
    if [[ -n "${E2E_KEEP:-}" ]]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    exit 1
  fi
  echo "$E2E_NAME: PASS ($PASSES checks passed, 0 failed, ${took}s)"
  if [[ -n "${E2E_KEEP:-}" ]]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit 0
}

# Watchdog: the whole run is bounded even if a step hangs. It polls once a
# second and quits if this shell is gone (so a SIGKILLed run leaves no
# watchdog behind to signal a reused pid).
_e2e_watchdog() {
  (
    me=$BASHPID   # (inside $(...) BASHPID would be the substitution's own pid)
    for ((i = 0; i < E2E_TIMEOUT; i++)); do
      sleep 1
      [[ "$(ps -o ppid= -p "$me" 2>/dev/null | tr -d ' ')" == "$$" ]] || exit 0
    done
    echo "[$E2E_NAME] watchdog: ${E2E_TIMEOUT}s elapsed, aborting" >&2
    kill -TERM $$
  ) &
  WATCHDOG_PID=$!
}

# SIGTERMs the bridge ($BRIDGE_PID): it must exit 0 within $E2E_STOP_TIMEOUT
# seconds (else it is killed and the check fails). Clears BRIDGE_PID.
e2e_stop_bridge() {
  local t0 rc
  say "SIGTERM to bridge pid $BRIDGE_PID"
  kill -TERM "$BRIDGE_PID" 2>/dev/null || true
  t0=$SECONDS
  while kill -0 "$BRIDGE_PID" 2>/dev/null && ((SECONDS - t0 < E2E_STOP_TIMEOUT)); do sleep 0.2; done
  if kill -0 "$BRIDGE_PID" 2>/dev/null; then
    fail "bridge still running ${E2E_STOP_TIMEOUT}s after SIGTERM"
    tansu_kill_pid "$BRIDGE_PID" 1
    BRIDGE_PID=""
  else
    rc=0; wait "$BRIDGE_PID" || rc=$?
    BRIDGE_PID=""
    if [[ $rc -eq 0 ]]; then ok "bridge exited 0 after SIGTERM in $((SECONDS - t0))s"
    else fail "bridge exited $rc after SIGTERM (want 0)"; fi
  fi
}

# Waits until GET $1/readyz answers 200 (within E2E_READY_TIMEOUT seconds)
# while the bridge ($BRIDGE_PID) runs; dies if it exits or never gets ready.
e2e_wait_ready() {
  local admin="$1" ready="" code="" rc deadline=$((SECONDS + E2E_READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$BRIDGE_PID" 2>/dev/null; then
      rc=0; wait "$BRIDGE_PID" || rc=$?
      BRIDGE_PID=""
      die "bridge exited with status $rc before it was ready"
    fi
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$admin/readyz" || true)"
    if [[ "$code" == 200 ]]; then ready=1; break; fi
    sleep 0.3
  done
  [[ -n "$ready" ]] || die "GET $admin/readyz not 200 within ${E2E_READY_TIMEOUT}s (last: ${code:-none})"
  ok "bridge ready after $((SECONDS - deadline + E2E_READY_TIMEOUT))s"
}

# Starts `$BINARY serve` against Tansu ($TANSU_BOOTSTRAP) with a spool in
# $WORK/spool, loopback ports of its own and a random token, its output in
# $BRIDGE_LOG; sets TOKEN, HTTP and ADMIN (base URLs) and BRIDGE_PID, and
# waits until it is ready.
e2e_start_bridge() {
  local http_port admin_port
  http_port="$(tansu_free_port)"
  admin_port="$(tansu_free_port)"
  for _ in 1 2 3 4 5; do
    [[ "$admin_port" == "$http_port" || "$admin_port" == "$TANSU_PORT" ]] || break
    admin_port="$(tansu_free_port)"
  done
  TOKEN="e2e-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  export PRESENCE_BRIDGE__HTTP__LISTEN="127.0.0.1:$http_port"
  export PRESENCE_BRIDGE__ADMIN__LISTEN="127.0.0.1:$admin_port"
  export PRESENCE_BRIDGE__KAFKA__BROKERS="$TANSU_BOOTSTRAP"
  export PRESENCE_BRIDGE__SPOOL__DIR="$WORK/spool"
  export PRESENCE_BRIDGE__AUTH__TOKENS="$TOKEN"
  export RUST_LOG="${RUST_LOG:-info}"
  HTTP="http://127.0.0.1:$http_port"
  ADMIN="http://127.0.0.1:$admin_port"
  say "starting $BINARY serve (http $HTTP, admin $ADMIN)"
  "${TANSU_ORPHAN_GUARD[@]}" "$BINARY" serve >"$BRIDGE_LOG" 2>&1 </dev/null &
  BRIDGE_PID=$!
  e2e_wait_ready "$ADMIN"
}
