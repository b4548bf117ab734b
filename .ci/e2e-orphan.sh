#!/usr/bin/env bash
# Scale-in end-to-end test of presence-bridge against a real Kafka-compatible
# broker (Tansu, in memory) behind a TCP proxy, all loopback.
#
#   .ci/e2e-orphan.sh path/to/presence-bridge
#
# Nothing a removed replica accepted may be stranded:
#   1. Tansu behind tcp_proxy.py, topic whatsapp.presence.v1 (3 partitions).
#      Bridge #1 on spool A (shutdown.drain_spool 3s); round "up" (broker up),
#      spool drains.
#   2. proxy_down; once the bridge sees the broker unreachable, round
#      "orphan" (E2E_N_ORPHAN per phone); SIGTERM: exit 0, its log says the
#      drain bound passed with every orphan event left; `spool inspect` on A
#      counts them.
#   3. `spool forward --dir A` with the broker still away and --idle-timeout
#      3s: exit 1, "gave up", nothing lost (the count is still there).
#   4. proxy_up; `spool forward --dir A`: exit 0, "done: N events forwarded",
#      then `spool inspect` says 0 pending and a second run finds it empty.
#   5. Bridge #2 on spool B (shutdown.drain_spool 40s); proxy_down; round
#      "drain"; SIGTERM; once its log says the drain started, proxy_up: exit 0,
#      "spool drained", `spool inspect` on B says 0 pending.
#   6. read the topic back (confluent-kafka): every posted id exactly once,
#      key == phone, each phone in one partition, per phone in posting order.
# Last line: "e2e-orphan: PASS ..." or "e2e-orphan: FAIL ..."; exit status 0
# only on PASS. On failure the bridge logs and command outputs are printed.
#
# Knobs (env): E2E_TIMEOUT (whole run, s, default 600), E2E_READY_TIMEOUT (60),
#   E2E_OUTAGE_TIMEOUT (45), E2E_DRAIN_TIMEOUT (60), E2E_FORWARD_TIMEOUT (120),
#   E2E_N_UP (5), E2E_N_ORPHAN (20), E2E_N_DRAIN (10) events per phone,
#   E2E_KEEP (keep the work dir), RUST_LOG (default info), plus those of
#   .ci/tansu.sh.
# shellcheck disable=SC2317  # functions run from the EXIT trap
set -euo pipefail

E2E_TIMEOUT="${E2E_TIMEOUT:-600}"
E2E_READY_TIMEOUT="${E2E_READY_TIMEOUT:-60}"
E2E_OUTAGE_TIMEOUT="${E2E_OUTAGE_TIMEOUT:-45}"
E2E_DRAIN_TIMEOUT="${E2E_DRAIN_TIMEOUT:-60}"
E2E_FORWARD_TIMEOUT="${E2E_FORWARD_TIMEOUT:-120}"
E2E_N_UP="${E2E_N_UP:-5}"
E2E_N_ORPHAN="${E2E_N_ORPHAN:-20}"
E2E_N_DRAIN="${E2E_N_DRAIN:-10}"
# Bridge #2's stop: deadline 2s + drain 40s + 2s guards, and some slack.
E2E_STOP_TIMEOUT=50
TOPIC="whatsapp.presence.v1"
PHONES="5511900000001,5511900000002,5511900000003,5511900000004,5511900000005"
NPHONES=5

CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=e2e-lib.sh
source "$CI_DIR/e2e-lib.sh"
e2e_init e2e-orphan "$@"
SPOOL_A="$WORK/spool-a"
SPOOL_B="$WORK/spool-b"
BRIDGE_LOGS=()
ROUNDS=()

e2e_dump_logs() {
  local f
  for f in "${BRIDGE_LOGS[@]}"; do
    echo "================ bridge log $f (last 120 lines) ================"
    tail -n 120 "$f" 2>/dev/null || echo "(none)"
  done
  for f in "$WORK"/forward.*.out "$WORK"/forward.*.err "$WORK"/*.err; do
    [[ -s "$f" ]] || continue
    echo "================ $f (last 40 lines) ================"
    tail -n 40 "$f"
  done
  echo "================ proxy log (last 20 lines) ================"
  tail -n 20 "${PROXY_LOG:-/dev/null}" 2>/dev/null
}

# ------------------------------------------------------------ helpers (python)
# poster.py HTTP TOKEN ROUND PER_PHONE PHONES OUT: each phone's events one
# after another; OUT: JSON [{"id","phone","seq","round"}...] in posting
# order. Exit 1 if any POST was not 200 {"id": ...}.
cat >"$WORK/poster.py" <<'PY'
import json, sys, urllib.error, urllib.request

http, token, rnd, per_phone, phones, out = sys.argv[1:7]
URL = f"{http}/webhooks/zapi/presence?token={token}"
STATUSES = ["UNAVAILABLE", "AVAILABLE", "COMPOSING", "PAUSED", "RECORDING"]
events, failures = [], []
for seq in range(int(per_phone)):
    for phone in phones.split(","):
        body = {"type": "PresenceChatCallback", "phone": phone,
                "status": STATUSES[seq % 5], "lastSeen": None, "instanceId": "instance.id"}
        req = urllib.request.Request(URL, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except Exception as e:
            status, raw = None, str(e).encode()
        try:
            rid = json.loads(raw)["id"] if status == 200 else None
        except Exception:
            rid = None
        if rid is None:
            failures.append(f"{rnd}: POST #{seq}: HTTP {status} {raw[:200]!r}")
        else:
            events.append({"id": rid, "phone": phone, "seq": seq, "round": rnd})
json.dump(events, open(out, "w"))
print(f"round {rnd}: {len(events)} accepted")
for f in failures[:10]:
    print("FAIL " + f)
sys.exit(1 if failures else 0)
PY

# verify.py KAFKA_OUT ROUND_FILE...: every posted id exactly once, nothing
# else, key == phone, each phone in one partition, per phone in posting order.
cat >"$WORK/verify.py" <<'PY'
import json, sys

records = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
posted = [e for f in sys.argv[2:] for e in json.load(open(f))]
fails = []
by_id = {}
want = {e["id"]: e for e in posted}
EXPIRED = "io.presence-bridge.zapi.chat-presence-expired.v1"
for r in records:
    v = r.get("value")
    rid = v.get("id") if isinstance(v, dict) else None
    if rid is None:
        fails.append(f"a record without an envelope id at {r.get('partition')}/{r.get('offset')}")
        continue
    if v.get("type") == EXPIRED:
        # A typing expiry (the bridge's own event, .ci/e2e-state.sh checks
        # them): it must expire a posted event; not in the counts below.
        if (v.get("data") or {}).get("causeId") not in want:
            fails.append(f"expiry {rid} of an event nobody posted")
        continue
    by_id.setdefault(rid, []).append(r)
missing = [i for i in want if i not in by_id]
dups = {i: len(rs) for i, rs in by_id.items() if len(rs) > 1}
extra = [i for i in by_id if i not in want]
if missing:
    rounds = {}
    for i in missing:
        rounds[want[i]["round"]] = rounds.get(want[i]["round"], 0) + 1
    fails.append(f"{len(missing)} posted events missing in Kafka (by round: {rounds})")
if dups:
    fails.append(f"{len(dups)} events delivered more than once, e.g. {list(dups.items())[:3]}")
if extra:
    fails.append(f"{len(extra)} records nobody posted")
order_ok = True
for phone in sorted({e["phone"] for e in posted}):
    mine = [e for e in posted if e["phone"] == phone]
    recs = [r for e in mine for r in by_id.get(e["id"], [])[:1]]
    if any(r.get("key") != phone for r in recs):
        fails.append(f"phone {phone}: a record keyed otherwise")
    parts = {r["partition"] for r in recs}
    if len(parts) > 1:
        order_ok = False
        fails.append(f"phone {phone} spread over partitions {sorted(parts)}")
        continue
    got = [r["value"]["id"] for r in sorted(recs, key=lambda r: r["offset"])]
    exp = [e["id"] for e in mine if e["id"] in by_id]
    if got != exp:
        order_ok = False
        k = next((k for k, (a, b) in enumerate(zip(got, exp)) if a != b), min(len(got), len(exp)))
        fails.append(f"phone {phone}: Kafka order differs from posting order at #{k}")
print(f"OK {len(records)} records read, {len(posted)} posted")
if not missing and not dups and not extra:
    print("OK every posted event exactly once, nothing else")
if order_ok:
    print("OK per phone one partition, in posting order")
for f in fails:
    print("FAIL " + f)
sys.exit(1 if fails else 0)
PY

# ------------------------------------------------------------ helpers (shell)
metric() {
  curl -s --max-time 3 "$ADMIN/metrics" 2>/dev/null | awk -v n="$1" '
    $1 == n || index($1, n "{") == 1 { s += $NF; found = 1 }
    END { if (found) printf "%g\n", s }'
}
# wait_metric NAME OP VALUE SECS: poll until NAME OP VALUE; LAST_METRIC holds the last value.
wait_metric() {
  local name="$1" op="$2" want="$3" secs="$4" deadline
  LAST_METRIC=""
  deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do
    LAST_METRIC="$(metric "$name")"
    if [[ -n "$LAST_METRIC" ]] && awk -v a="$LAST_METRIC" -v b="$want" -v op="$op" 'BEGIN {
        a += 0; b += 0; exit !((op == "==" && a == b) || (op == ">=" && a >= b))
      }'; then
      return 0
    fi
    kill -0 "$BRIDGE_PID" 2>/dev/null || { say "bridge pid $BRIDGE_PID is gone"; return 1; }
    sleep 0.25
  done
  return 1
}

# start_bridge N SPOOL DRAIN: `serve` on SPOOL with shutdown.drain_spool DRAIN.
start_bridge() {
  local n="$1" spool="$2" drain="$3"
  BRIDGE_LOG="$WORK/bridge.$n.log"
  BRIDGE_LOGS+=("$BRIDGE_LOG")
  PRESENCE_BRIDGE__SPOOL__DIR="$spool" PRESENCE_BRIDGE__SHUTDOWN__DRAIN_SPOOL="$drain" \
    "${TANSU_ORPHAN_GUARD[@]}" "$BINARY" serve >"$BRIDGE_LOG" 2>&1 </dev/null &
  BRIDGE_PID=$!
  say "bridge #$n: pid $BRIDGE_PID, spool $spool, shutdown.drain_spool $drain"
  e2e_wait_ready "$ADMIN"
  wait_metric presence_bridge_kafka_broker_reachable == 1 "$E2E_READY_TIMEOUT" \
    || die "bridge #$n: broker not reachable within ${E2E_READY_TIMEOUT}s"
}

post_round() {
  local name="$1" per="$2" out="$WORK/round.$1.json" rc=0
  timeout 300 "$TANSU_PYTHON" "$WORK/poster.py" "$HTTP" "$TOKEN" "$name" "$per" "$PHONES" "$out" \
    >"$WORK/post.$name.out" 2>"$WORK/post.$name.err" || rc=$?
  cat "$WORK/post.$name.out" >&2
  [[ -s "$out" ]] && ROUNDS+=("$out")
  [[ $rc -eq 0 ]] || die "round $name: poster exited $rc (see FAIL lines above)"
  ok "round $name: $((per * NPHONES)) events, every POST 200"
}

# pending SPOOL: pending_events of `spool inspect` on a stopped bridge's spool.
pending() {
  PRESENCE_BRIDGE__SPOOL__DIR="$1" timeout 30 "$BINARY" spool inspect 2>"$WORK/inspect.err" \
    | "$TANSU_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["pending_events"])'
}

# forward NAME SPOOL [ARGS...]: `spool forward --dir SPOOL ARGS`; sets FWD_RC,
# output in $WORK/forward.NAME.{out,err}.
forward() {
  local name="$1" spool="$2"
  shift 2
  FWD_RC=0
  timeout "$E2E_FORWARD_TIMEOUT" "$BINARY" spool forward --dir "$spool" "$@" \
    >"$WORK/forward.$name.out" 2>"$WORK/forward.$name.err" </dev/null || FWD_RC=$?
  sed "s/^/[forward $name] /" "$WORK/forward.$name.out" >&2
  tail -n 3 "$WORK/forward.$name.err" | sed "s/^/[forward $name stderr] /" >&2
}

# no_phone_in FILE...: no phone number of the test in full.
no_phone_in() {
  local f p
  for f in "$@"; do
    for p in ${PHONES//,/ }; do
      if grep -q "$p" "$f"; then fail "$f holds the phone $p in full"; return; fi
    done
  done
  ok "no phone number in full in $(basename -a "$@" | tr '\n' ' ')"
}

# ------------------------------------------------------------ 1. broker + bridge #1
say "installing / checking Tansu and confluent-kafka"
tansu_install || die "could not install tansu / confluent-kafka"
tansu_start_with_proxy || die "tansu (behind the proxy) did not start"
tansu_create_topic "$TOPIC" 3 || die "could not create topic $TOPIC"
tansu_create_topic whatsapp.presence.latest.v1 3 || die "could not create the latest-presence topic"
ok "tansu behind proxy $TANSU_BOOTSTRAP, topics $TOPIC and whatsapp.presence.latest.v1 (3 partitions)"

HTTP_PORT="$(tansu_free_port)"
ADMIN_PORT="$(tansu_free_port)"
for _ in 1 2 3 4 5; do
  [[ "$ADMIN_PORT" == "$HTTP_PORT" || "$ADMIN_PORT" == "$TANSU_PORT" || "$ADMIN_PORT" == "$TANSU_BROKER_PORT" ]] || break
  ADMIN_PORT="$(tansu_free_port)"
done
TOKEN="e2e-orphan-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export PRESENCE_BRIDGE__HTTP__LISTEN="127.0.0.1:$HTTP_PORT"
export PRESENCE_BRIDGE__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT"
export PRESENCE_BRIDGE__KAFKA__BROKERS="$TANSU_BOOTSTRAP"
export PRESENCE_BRIDGE__KAFKA__TOPIC="$TOPIC"
export PRESENCE_BRIDGE__AUTH__TOKENS="$TOKEN"
export PRESENCE_BRIDGE__KAFKA__PROBE_INTERVAL=500ms
export PRESENCE_BRIDGE__SHUTDOWN__DEADLINE=2s
export RUST_LOG="${RUST_LOG:-info}"
HTTP="http://127.0.0.1:$HTTP_PORT"
ADMIN="http://127.0.0.1:$ADMIN_PORT"

start_bridge 1 "$SPOOL_A" 3s
post_round up "$E2E_N_UP"
wait_metric presence_bridge_spool_events == 0 "$E2E_DRAIN_TIMEOUT" \
  || die "round up: spool events still ${LAST_METRIC:-unknown} after ${E2E_DRAIN_TIMEOUT}s"
ok "round up delivered (spool empty)"

# ------------------------------------------------------------ 2. cut off, stopped with a full spool
proxy_down || die "proxy_down failed"
wait_metric presence_bridge_kafka_broker_reachable == 0 "$E2E_OUTAGE_TIMEOUT" \
  || die "the bridge never saw the broker unreachable"
post_round orphan "$E2E_N_ORPHAN"
# Spool records: each presence event is stored with the contact's state
# for the latest-presence topic (kafka.latest, on by default).
N_ORPHAN=$((2 * E2E_N_ORPHAN * NPHONES))
wait_metric presence_bridge_spool_events == "$N_ORPHAN" 10 \
  || die "spool events ${LAST_METRIC:-unknown}, want $N_ORPHAN before the stop"
t0=$SECONDS
E2E_STOP_TIMEOUT=20 e2e_stop_bridge
line="$(grep 'shutdown.drain_spool passed' "${BRIDGE_LOGS[0]}" || true)"
if [[ "$line" == *"left=$N_ORPHAN"* ]]; then
  ok "bridge #1 stopped after $((SECONDS - t0))s, its log: drain bound passed, left=$N_ORPHAN"
else
  fail "bridge #1: no 'shutdown.drain_spool passed ... left=$N_ORPHAN' line (got: ${line:-nothing})"
fi
p="$(pending "$SPOOL_A" || true)"
[[ "$p" == "$N_ORPHAN" ]] && ok "spool inspect on the orphan: $p pending" \
  || die "spool inspect on the orphan: '${p}' pending, want $N_ORPHAN ($(tail -n 2 "$WORK/inspect.err"))"

# ------------------------------------------------------------ 3. forward while the broker is away
forward away "$SPOOL_A" --idle-timeout 3s
if [[ $FWD_RC -eq 1 ]] && grep -q "gave up: nothing delivered for 3s" "$WORK/forward.away.err" \
  && grep -q "$N_ORPHAN left in the spool" "$WORK/forward.away.err"; then
  ok "spool forward with the broker away: exit 1, gave up, $N_ORPHAN left"
else
  fail "spool forward with the broker away: exit $FWD_RC, want 1 with 'gave up' and '$N_ORPHAN left in the spool'"
fi
p="$(pending "$SPOOL_A" || true)"
[[ "$p" == "$N_ORPHAN" ]] && ok "nothing settled by the failed run: $p pending" \
  || fail "after the failed run: '${p}' pending, want $N_ORPHAN"

# ------------------------------------------------------------ 4. forward the orphan
proxy_up || die "proxy_up failed"
forward up "$SPOOL_A"
if [[ $FWD_RC -eq 0 ]] && grep -q "done: $N_ORPHAN events forwarded" "$WORK/forward.up.out"; then
  ok "spool forward: exit 0, done: $N_ORPHAN events forwarded"
else
  fail "spool forward: exit $FWD_RC, want 0 with 'done: $N_ORPHAN events forwarded'"
fi
p="$(pending "$SPOOL_A" || true)"
[[ "$p" == 0 ]] && ok "the orphan spool is empty" || fail "after spool forward: '${p}' pending, want 0"
forward again "$SPOOL_A"
if [[ $FWD_RC -eq 0 ]] && grep -q "the spool is empty" "$WORK/forward.again.out"; then
  ok "a second spool forward finds it empty (exit 0)"
else
  fail "second spool forward: exit $FWD_RC, want 0 with 'the spool is empty'"
fi
no_phone_in "$WORK"/forward.*.out "$WORK"/forward.*.err

# ------------------------------------------------------------ 5. SIGTERM drains with the broker back
start_bridge 2 "$SPOOL_B" 40s
proxy_down || die "proxy_down failed"
wait_metric presence_bridge_kafka_broker_reachable == 0 "$E2E_OUTAGE_TIMEOUT" \
  || die "bridge #2 never saw the broker unreachable"
post_round drain "$E2E_N_DRAIN"
N_DRAIN=$((2 * E2E_N_DRAIN * NPHONES))
wait_metric presence_bridge_spool_events == "$N_DRAIN" 10 \
  || die "bridge #2: spool events ${LAST_METRIC:-unknown}, want $N_DRAIN before the stop"
kill -TERM "$BRIDGE_PID"
t0=$SECONDS
while ! grep -q "draining the spool to Kafka before exiting" "$BRIDGE_LOG" && ((SECONDS - t0 < 20)); do
  kill -0 "$BRIDGE_PID" 2>/dev/null || break
  sleep 0.2
done
grep -q "draining the spool to Kafka before exiting" "$BRIDGE_LOG" \
  && ok "bridge #2 started draining its $N_DRAIN events after SIGTERM" \
  || fail "bridge #2 never logged 'draining the spool to Kafka before exiting'"
proxy_up || die "proxy_up failed"
t0=$SECONDS
while kill -0 "$BRIDGE_PID" 2>/dev/null && ((SECONDS - t0 < E2E_STOP_TIMEOUT)); do sleep 0.2; done
if kill -0 "$BRIDGE_PID" 2>/dev/null; then
  fail "bridge #2 still running ${E2E_STOP_TIMEOUT}s after SIGTERM"
  tansu_kill_pid "$BRIDGE_PID" 1
else
  rc=0; wait "$BRIDGE_PID" || rc=$?
  [[ $rc -eq 0 ]] && ok "bridge #2 exited 0, $((SECONDS - t0))s after the broker came back" \
    || fail "bridge #2 exited $rc after SIGTERM (want 0)"
fi
BRIDGE_PID=""
line="$(grep 'spool drained: every event delivered' "$BRIDGE_LOG" || true)"
[[ "$line" == *"left=0"* ]] && ok "bridge #2 log: spool drained, left=0" \
  || fail "bridge #2: no 'spool drained: every event delivered ... left=0' line"
p="$(pending "$SPOOL_B" || true)"
[[ "$p" == 0 ]] && ok "bridge #2 left its spool empty" || fail "bridge #2 left '${p}' events in its spool"

# ------------------------------------------------------------ 6. read back
rc=0
timeout 120 "$TANSU_PYTHON" "$CI_DIR/kafka_admin.py" consume -b "$TANSU_BOOTSTRAP" -t "$TOPIC" \
  --timeout 90 \
  >"$WORK/kafka.out" 2>"$WORK/kafka.err" || rc=$?
[[ $rc -eq 0 ]] || die "consumer failed ($rc): $(tail -n 3 "$WORK/kafka.err")"
rc=0
"$TANSU_PYTHON" "$WORK/verify.py" "$WORK/kafka.out" "${ROUNDS[@]}" >"$WORK/verify.out" 2>&1 || rc=$?
sed "s/^/[verify] /" "$WORK/verify.out" >&2
[[ $rc -eq 0 ]] && ok "read back: every event once, in order per phone" \
  || fail "read-back verification (see FAIL lines above)"
exit 0
