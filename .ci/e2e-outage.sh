#!/usr/bin/env bash
# Broker-outage end-to-end test of presence-bridge against a real
# Kafka-compatible broker (Tansu, in memory) behind a TCP proxy, all loopback.
#
#   .ci/e2e-outage.sh path/to/presence-bridge
#
# Every HTTP 200 must end up in Kafka, through broker outages and a SIGKILL:
#   1. Tansu behind tcp_proxy.py, topic whatsapp.presence.v1 (3 partitions),
#      `BINARY serve`; wait for /readyz 200 and the broker reachable.
#   2. round "up": N1 events for each of 5 phones (phones concurrently, each
#      phone's events one after another), ids recorded per phone in order.
#   3. proxy_down: round "down.1" (N2/2 per phone, right away: in flight into
#      the outage), kafka_broker_reachable -> 0 and /readyz says unreachable,
#      round "down.2" (N2/2 more), spool_events > 0, the outage held
#      E2E_DOWN_HOLD s with /readyz 200 all along; every POST 200; proxy_up,
#      reachable again, the spool drains. Then the same with proxy_blackhole
#      (held E2E_BLACKHOLE_HOLD s, past the producer's socket timeout: the
#      proxy still delivers the held bytes of timed-out requests on proxy_up,
#      like a broker that answered too late, so duplicates may appear).
#   4. proxy_up, round "after" (N3 per phone); spool_events -> 0.
#   5. read the topic from the beginning to the end of each partition
#      (confluent-kafka): every id present, per phone the order of first
#      occurrences == posting order, duplicates listed (fail above 10%).
#   6. proxy_down, round "sigkill" (10 per phone = 50), kill -9 the bridge,
#      proxy_up, restart it on the same spool dir; spool_events -> 0; read back
#      again: the 50 present, in order per phone, after everything before.
#   7. SIGTERM: the bridge must exit 0 within E2E_STOP_TIMEOUT (15 s).
# Last line: "e2e-outage: PASS ..." or "e2e-outage: FAIL ..."; exit status 0
# only on PASS. On failure the bridge log tails are printed.
#
# Knobs (env): E2E_TIMEOUT (whole run, s, default 900), E2E_READY_TIMEOUT (60),
#   E2E_DRAIN_TIMEOUT (60), E2E_OUTAGE_TIMEOUT (45: waits for the outage to
#   show), E2E_DOWN_HOLD (15) and E2E_BLACKHOLE_HOLD (75: past librdkafka's
#   60 s socket.timeout.ms, so in-flight ProduceRequests time out and are
#   retried, and past the forwarder's 60 s stall limit) seconds each outage lasts,
#   E2E_STOP_TIMEOUT (15), E2E_KEEP (keep the work dir),
#   E2E_N_UP (20), E2E_N_OUTAGE (40), E2E_N_AFTER (10), E2E_N_SIGKILL (10)
#   events per phone, E2E_MAX_DUP_PCT (10), RUST_LOG (bridge, default info),
#   plus those of .ci/tansu.sh.
# shellcheck disable=SC2317  # functions run from the EXIT trap
set -euo pipefail

E2E_TIMEOUT="${E2E_TIMEOUT:-900}"
E2E_READY_TIMEOUT="${E2E_READY_TIMEOUT:-60}"
E2E_DRAIN_TIMEOUT="${E2E_DRAIN_TIMEOUT:-60}"
E2E_OUTAGE_TIMEOUT="${E2E_OUTAGE_TIMEOUT:-45}"
E2E_STOP_TIMEOUT="${E2E_STOP_TIMEOUT:-15}"
E2E_DOWN_HOLD="${E2E_DOWN_HOLD:-15}"
E2E_BLACKHOLE_HOLD="${E2E_BLACKHOLE_HOLD:-75}"
E2E_N_UP="${E2E_N_UP:-20}"
E2E_N_OUTAGE="${E2E_N_OUTAGE:-40}"
E2E_N_AFTER="${E2E_N_AFTER:-10}"
E2E_N_SIGKILL="${E2E_N_SIGKILL:-10}"
E2E_MAX_DUP_PCT="${E2E_MAX_DUP_PCT:-10}"
TOPIC="whatsapp.presence.v1"
PHONES="5511900000001,5511900000002,5511900000003,5511900000004,5511900000005"

CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=e2e-lib.sh
source "$CI_DIR/e2e-lib.sh"
e2e_init e2e-outage "$@"
SPOOL="$WORK/spool"
mkdir -p "$SPOOL"
BRIDGE_LOG="$WORK/bridge.1.log"
BRIDGE_LOGS=()
ROUNDS=()   # posted-round files, in posting order

e2e_dump_logs() {
  local f
  for f in "${BRIDGE_LOGS[@]}"; do
    echo "================ bridge log $f (last 150 lines) ================"
    tail -n 150 "$f" 2>/dev/null || echo "(none)"
  done
  for f in "$WORK"/*.err; do
    [[ -s "$f" ]] || continue
    echo "================ $f (last 30 lines) ================"
    tail -n 30 "$f"
  done
  echo "================ proxy log (last 20 lines) ================"
  tail -n 20 "${PROXY_LOG:-/dev/null}" 2>/dev/null
}

# ------------------------------------------------------------ helpers (python)
# poster.py HTTP ADMIN TOKEN ROUND PER_PHONE PHONES OUT
# One thread per phone, each posting its events one after another; a readyz
# thread polls /readyz every 0.25 s meanwhile. OUT: JSON {"round", "events":
# [{"id","phone","seq"}...] in posting order per phone, "readyz": {...}}.
# Exit 1 if any POST was not 200 {"id": uuid}, or any /readyz was not 200.
cat >"$WORK/poster.py" <<'PY'
import json, re, sys, threading, time, urllib.error, urllib.request

http, admin, token, rnd, per_phone, phones, out = sys.argv[1:8]
per_phone = int(per_phone)
phones = phones.split(",")
URL = f"{http}/webhooks/zapi/presence?token={token}"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
STATUSES = ["UNAVAILABLE", "AVAILABLE", "COMPOSING", "PAUSED", "RECORDING"]
events = {p: [] for p in phones}
failures, lat = [], []
lock = threading.Lock()
done = threading.Event()
ready = {"probes": 0, "bad": [], "broker": {}, "max_spool": 0}

def post(phone, seq):
    body = {"type": "PresenceChatCallback", "phone": phone,
            "status": STATUSES[seq % 5], "lastSeen": None, "instanceId": "instance.id"}
    req = urllib.request.Request(URL, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except Exception as e:
        status, raw = None, str(e).encode()
    dt = time.monotonic() - t0
    rid = None
    if status == 200:
        try:
            rid = json.loads(raw)["id"]
            if not (isinstance(rid, str) and UUID.match(rid)):
                rid = None
        except Exception:
            rid = None
    with lock:
        lat.append(dt)
        if rid is None:
            failures.append(f"{rnd}: POST {phone} #{seq}: HTTP {status} {raw[:200]!r} after {dt:.2f}s")
        else:
            events[phone].append({"id": rid, "phone": phone, "seq": seq, "round": rnd})

def phone_worker(phone):
    for seq in range(per_phone):
        post(phone, seq)

def readyz_worker():
    while not done.is_set():
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(f"{admin}/readyz", timeout=3) as r:
                code, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            code, raw = e.code, e.read()
        except Exception as e:
            code, raw = None, str(e).encode()
        ready["probes"] += 1
        if code != 200:
            ready["bad"].append(f"/readyz {code} {raw[:160]!r} after {time.monotonic() - t0:.2f}s")
        try:
            c = json.loads(raw)["components"]
            b = str(c["kafka"]["broker"])
            ready["broker"][b] = ready["broker"].get(b, 0) + 1
            ready["max_spool"] = max(ready["max_spool"], int(c["spool"]["events"]))
        except Exception:
            pass
        done.wait(0.25)

rt = threading.Thread(target=readyz_worker, daemon=True)
rt.start()
t0 = time.monotonic()
ts = [threading.Thread(target=phone_worker, args=(p,)) for p in phones]
for t in ts:
    t.start()
for t in ts:
    t.join(timeout=600)
took = time.monotonic() - t0
done.set()
rt.join(timeout=5)
n = sum(len(v) for v in events.values())
lat.sort()
p50 = lat[len(lat) // 2] if lat else 0
print(f"round {rnd}: {n}/{per_phone * len(phones)} accepted in {took:.1f}s "
      f"(latency p50 {p50 * 1000:.0f} ms, max {lat[-1] * 1000 if lat else 0:.0f} ms); "
      f"/readyz polled {ready['probes']}x, non-200 {len(ready['bad'])}, "
      f"broker states seen {ready['broker']}, max spool events seen {ready['max_spool']}")
json.dump({"round": rnd, "events": [e for p in phones for e in events[p]], "readyz": ready},
          open(out, "w"))
for f in failures[:10]:
    print("FAIL " + f)
if len(failures) > 10:
    print(f"FAIL ... and {len(failures) - 10} more failed POSTs")
for b in ready["bad"][:5]:
    print("FAIL " + rnd + ": " + b)
sys.exit(1 if failures or ready["bad"] else 0)
PY

# verify.py KAFKA_OUT MAX_DUP_PCT LAST_ROUND ROUND_FILE...
# Every posted id present; key == phone, header event-id == value.id; each phone
# in one partition; per phone the order of first occurrences == posting
# order; duplicates listed; LAST_ROUND's ids come after everything else of
# the same phone (implied by the order check, reported separately).
cat >"$WORK/verify.py" <<'PY'
import json, sys
kafka_out, max_dup_pct, last_round = sys.argv[1], float(sys.argv[2]), sys.argv[3]
posted = []
for f in sys.argv[4:]:
    posted += json.load(open(f))["events"]
by_id = {e["id"]: e for e in posted}
fails, oks = [], []
def bad(msg):
    if len(fails) < 15:
        fails.append(msg)
    elif len(fails) == 15:
        fails.append("(more failures not shown)")

recs = []
for line in open(kafka_out, encoding="utf-8", errors="replace"):
    line = line.strip()
    if line:
        try:
            recs.append(json.loads(line))
        except ValueError:
            bad(f"consumer printed a non-JSON line: {line[:160]}")
recs.sort(key=lambda r: (r.get("partition", -1), r.get("offset", -1)))

count, order, parts, strays = {}, {}, {}, 0
for r in recs:
    where = f"p{r.get('partition')}@{r.get('offset')}"
    v = r.get("value")
    h = r.get("headers") or {}
    if not isinstance(v, dict):
        bad(f"{where}: value is not a JSON object: {str(v)[:120]}")
        continue
    rid = v.get("id")
    if h.get("event-id") != rid:
        bad(f"{where}: header event-id {h.get('event-id')!r} != value.id {rid!r}")
    if v.get("type") == "io.presence-bridge.zapi.chat-presence-expired.v1":
        # A typing expiry, the bridge's own event (checked by .ci/e2e-state.sh):
        # it must expire an event the API answered 200; not in the order check.
        if (v.get("data") or {}).get("causeId") not in by_id:
            bad(f"{where}: expiry {rid!r} of an event the API never answered")
        continue
    e = by_id.get(rid)
    if e is None:
        strays += 1
        bad(f"{where}: id {rid!r} was never returned by the HTTP API")
        continue
    if r.get("key") != e["phone"]:
        bad(f"{where}: key {r.get('key')!r} != phone {e['phone']}")
    d = v.get("data") if isinstance(v.get("data"), dict) else {}
    if e["phone"] not in str(d.get("phone")):
        bad(f"{where}: data.phone {d.get('phone')!r} != posted {e['phone']}")
    count[rid] = count.get(rid, 0) + 1
    parts.setdefault(e["phone"], set()).add(r.get("partition"))
    if count[rid] == 1:
        order.setdefault(e["phone"], []).append(rid)

missing = [e for e in posted if e["id"] not in count]
if missing:
    by_round = {}
    for e in missing:
        by_round[e["round"]] = by_round.get(e["round"], 0) + 1
    bad(f"{len(missing)} of {len(posted)} accepted ids missing from Kafka (by round: {by_round}), "
        f"e.g. {[(e['round'], e['phone'], e['seq'], e['id']) for e in missing[:3]]}")
else:
    oks.append(f"all {len(posted)} accepted ids are in Kafka")

dups = {i: c for i, c in count.items() if c > 1}
extra = sum(c - 1 for c in dups.values())
pct = 100.0 * extra / max(1, len(posted))
print(f"records read: {len(recs)}; distinct posted ids: {len(count)}; "
      f"duplicate records: {extra} ({pct:.1f}%) over {len(dups)} id(s); strays: {strays}")
if dups:
    by_round = {}
    for i, c in dups.items():
        by_round[by_id[i]["round"]] = by_round.get(by_id[i]["round"], 0) + c - 1
    print(f"duplicates by round: {by_round}")
    for i, c in list(dups.items())[:20]:
        e = by_id[i]
        print(f"  duplicate: {i} x{c} (round {e['round']}, phone {e['phone']}, seq {e['seq']})")
    if len(dups) > 20:
        print(f"  ... and {len(dups) - 20} more duplicated ids")
if pct > max_dup_pct:
    bad(f"{extra} duplicate records = {pct:.1f}% of {len(posted)} events (limit {max_dup_pct:g}%)")
else:
    oks.append(f"duplicates {extra} ({pct:.1f}%) within the {max_dup_pct:g}% limit")

order_ok = True
for phone in dict.fromkeys(e["phone"] for e in posted):
    want = [e["id"] for e in posted if e["phone"] == phone]
    got = order.get(phone, [])
    if len(parts.get(phone, ())) > 1:
        order_ok = False
        bad(f"phone {phone} spread over partitions {sorted(parts[phone])}")
        continue
    want_present = [i for i in want if i in count]
    if got != want_present:
        order_ok = False
        k = next((k for k, (a, b) in enumerate(zip(got, want_present)) if a != b),
                 min(len(got), len(want_present)))
        ctx = lambda ids: [(by_id[i]["round"], by_id[i]["seq"]) for i in ids[max(0, k - 2):k + 3]]
        bad(f"phone {phone}: order of first occurrences differs from posting order at #{k}: "
            f"Kafka {ctx(got)} vs posted {ctx(want_present)} (round, seq)")
if order_ok:
    oks.append("per phone, order of first occurrences == posting order (each phone in one partition)")
    if last_round != "-":
        last = [e for e in posted if e["round"] == last_round]
        if last and not missing:
            oks.append(f"the {len(last)} '{last_round}' events come, per phone, after everything posted before")
for o in oks:
    print("OK " + o)
for f in fails:
    print("FAIL " + f)
sys.exit(1 if fails else 0)
PY

# ------------------------------------------------------------ helpers (shell)
# metric NAME: sum of the samples of NAME (any labels) on /metrics, or "".
metric() {
  curl -s --max-time 3 "$ADMIN/metrics" 2>/dev/null | awk -v n="$1" '
    $1 == n || index($1, n "{") == 1 { s += $NF; found = 1 }
    END { if (found) printf "%g\n", s }'
}
# wait_metric NAME OP VALUE SECS [readyz]: poll until NAME OP VALUE (awk
# comparison); with "readyz", every poll also requires GET /readyz == 200.
# Sets LAST_METRIC; returns 1 on timeout, 2 if /readyz was not 200.
wait_metric() {
  local name="$1" op="$2" want="$3" secs="$4" check_ready="${5:-}" code deadline
  LAST_METRIC=""
  deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do
    LAST_METRIC="$(metric "$name")"
    if [[ -n "$check_ready" ]]; then
      code="$(curl -s -o "$WORK/readyz.last" -w '%{http_code}' --max-time 3 "$ADMIN/readyz" || true)"
      if [[ "$code" != 200 ]]; then
        say "/readyz answered ${code:-nothing}: $(head -c 300 "$WORK/readyz.last" 2>/dev/null)"
        return 2
      fi
    fi
    if [[ -n "$LAST_METRIC" ]] && awk -v a="$LAST_METRIC" -v b="$want" -v op="$op" 'BEGIN {
        a += 0; b += 0
        exit !((op == "==" && a == b) || (op == ">" && a > b) || (op == ">=" && a >= b) || (op == "<" && a < b))
      }'; then
      return 0
    fi
    kill -0 "$BRIDGE_PID" 2>/dev/null || { say "bridge pid $BRIDGE_PID is gone"; return 1; }
    sleep 0.25
  done
  return 1
}
# readyz_field PATH (dotted): from the /readyz body, or "".
readyz_field() {
  curl -s --max-time 3 "$ADMIN/readyz" 2>/dev/null | "$TANSU_PYTHON" -c '
import json, sys
try:
    v = json.load(sys.stdin)
    for k in sys.argv[1].split("."):
        v = v[k]
    print(v)
except Exception:
    pass' "$1" 2>/dev/null || true
}

start_bridge() {
  local n="$1" code="" ready="" deadline rc
  BRIDGE_LOG="$WORK/bridge.$n.log"
  BRIDGE_LOGS+=("$BRIDGE_LOG")
  say "starting bridge #$n: $BINARY serve (http $HTTP, admin $ADMIN, spool $SPOOL)"
  "${TANSU_ORPHAN_GUARD[@]}" "$BINARY" serve >"$BRIDGE_LOG" 2>&1 </dev/null &
  BRIDGE_PID=$!
  deadline=$((SECONDS + E2E_READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$BRIDGE_PID" 2>/dev/null; then
      rc=0; wait "$BRIDGE_PID" || rc=$?
      BRIDGE_PID=""
      die "bridge #$n exited with status $rc before it was ready"
    fi
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$ADMIN/readyz" || true)"
    if [[ "$code" == 200 ]]; then ready=1; break; fi
    sleep 0.3
  done
  [[ -n "$ready" ]] || die "bridge #$n: GET /readyz not 200 within ${E2E_READY_TIMEOUT}s (last: ${code:-none})"
  wait_metric presence_bridge_kafka_broker_reachable == 1 "$E2E_READY_TIMEOUT" \
    || die "bridge #$n: presence_bridge_kafka_broker_reachable not 1 within ${E2E_READY_TIMEOUT}s (last: ${LAST_METRIC:-none})"
  ok "bridge #$n ready, broker reachable ($(readyz_field components.kafka.broker)), spool events $(metric presence_bridge_spool_events)"
}

# post_round NAME PER_PHONE: post, record the round file, check all 200.
post_round() {
  local name="$1" per="$2" out="$WORK/round.$1.json" rc=0
  timeout 300 "$TANSU_PYTHON" "$WORK/poster.py" "$HTTP" "$ADMIN" "$TOKEN" "$name" "$per" "$PHONES" "$out" \
    >"$WORK/post.$name.out" 2>"$WORK/post.$name.err" || rc=$?
  cat "$WORK/post.$name.out" >&2
  [[ -s "$out" ]] && ROUNDS+=("$out")
  if [[ $rc -eq 0 ]]; then
    ok "round $name: every POST 200 with an id, /readyz 200 throughout"
  else
    fail "round $name: poster exited $rc (see FAIL lines above)"
  fi
}

wait_drained() {
  local what="$1" t0=$SECONDS
  if wait_metric presence_bridge_spool_events == 0 "$E2E_DRAIN_TIMEOUT"; then
    ok "$what: spool drained (presence_bridge_spool_events 0) after $((SECONDS - t0))s"
  else
    die "$what: presence_bridge_spool_events still ${LAST_METRIC:-unknown} after ${E2E_DRAIN_TIMEOUT}s"
  fi
}

# outage_phase down|blackhole HOLD_SECS
# Half the events right after the link breaks (the producer still believes in
# the broker: they go in flight into the outage), the other half once the
# bridge has noticed; then the outage is held until HOLD_SECS after it began
# (long enough for librdkafka's request timeouts, retries and reconnect
# backoff to play out), /readyz polled and required 200 all along.
outage_phase() {
  local mode="$1" hold="$2" t0 r state code states="" half=$((E2E_N_OUTAGE / 2))
  "proxy_$mode" || die "proxy_$mode failed"
  t0=$SECONDS
  post_round "$mode.1" "$half"
  r=0; wait_metric presence_bridge_kafka_broker_reachable == 0 "$E2E_OUTAGE_TIMEOUT" readyz || r=$?
  case $r in
    0) ok "proxy $mode: presence_bridge_kafka_broker_reachable 0 within $((SECONDS - t0))s of the outage, /readyz 200" ;;
    2) fail "proxy $mode: /readyz not 200 during the outage" ;;
    *) fail "proxy $mode: presence_bridge_kafka_broker_reachable still ${LAST_METRIC:-unknown} after ${E2E_OUTAGE_TIMEOUT}s" ;;
  esac
  state="$(readyz_field components.kafka.broker)"
  if [[ "$state" == unreachable ]]; then ok "proxy $mode: /readyz says components.kafka.broker=unreachable"
  else fail "proxy $mode: /readyz components.kafka.broker is '${state}', want unreachable"; fi
  post_round "$mode.2" "$((E2E_N_OUTAGE - half))"
  r=0; wait_metric presence_bridge_spool_events '>' 0 10 readyz || r=$?
  if [[ $r -eq 0 ]]; then ok "proxy $mode: presence_bridge_spool_events $LAST_METRIC > 0, /readyz components.spool.events $(readyz_field components.spool.events)"
  else fail "proxy $mode: presence_bridge_spool_events ${LAST_METRIC:-unknown}, want > 0 while the broker is away (r=$r)"; fi
  # Hold the outage; /readyz must stay 200 (bounded by HOLD_SECS).
  r=0
  while ((SECONDS - t0 < hold)); do
    code="$(curl -s -o "$WORK/readyz.last" -w '%{http_code}' --max-time 3 "$ADMIN/readyz" || true)"
    if [[ "$code" != 200 ]]; then
      r=1; say "/readyz answered ${code:-nothing} during the outage: $(head -c 300 "$WORK/readyz.last" 2>/dev/null)"
    fi
    state="$("$TANSU_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["components"]["kafka"]["broker"])' "$WORK/readyz.last" 2>/dev/null || echo '?')"
    [[ "$states" == *" $state"* ]] || states="$states $state"
    sleep 0.5
  done
  if [[ $r -eq 0 ]]; then ok "proxy $mode: held ${hold}s, /readyz 200 all along (broker states seen:$states), spool events $(metric presence_bridge_spool_events)"
  else fail "proxy $mode: /readyz not 200 at some point of the ${hold}s outage"; fi
}

# recover WHAT: proxy_up, then the broker must be reachable again and the
# spool must drain (bounded).
recover() {
  local what="$1" t0
  proxy_up || die "proxy_up failed"
  t0=$SECONDS
  if wait_metric presence_bridge_kafka_broker_reachable == 1 "$E2E_OUTAGE_TIMEOUT"; then
    ok "$what: broker reachable again $((SECONDS - t0))s after proxy_up"
  else
    fail "$what: presence_bridge_kafka_broker_reachable still ${LAST_METRIC:-unknown} ${E2E_OUTAGE_TIMEOUT}s after proxy_up"
  fi
}

consume_verify() {
  local what="$1" last_round="$2" rc=0
  timeout 120 "$TANSU_PYTHON" "$CI_DIR/kafka_admin.py" consume -b "$TANSU_BOOTSTRAP" -t "$TOPIC" \
    --timeout 90 >"$WORK/kafka.$what.out" 2>"$WORK/kafka.$what.err" || rc=$?
  [[ $rc -eq 0 ]] || die "$what: consumer failed ($rc): $(tail -n 3 "$WORK/kafka.$what.err")"
  rc=0
  timeout 60 "$TANSU_PYTHON" "$WORK/verify.py" "$WORK/kafka.$what.out" "$E2E_MAX_DUP_PCT" "$last_round" \
    "${ROUNDS[@]}" >"$WORK/verify.$what.out" 2>&1 || rc=$?
  sed "s/^/[verify $what] /" "$WORK/verify.$what.out" >&2
  if [[ $rc -eq 0 ]]; then ok "$what: read-back verification"
  else fail "$what: read-back verification (see FAIL lines above)"; fi
}

# ------------------------------------------------------------ 1. broker + bridge
say "installing / checking Tansu and confluent-kafka"
tansu_install || die "could not install tansu / confluent-kafka"
tansu_start_with_proxy || die "tansu (behind the proxy) did not start"
tansu_create_topic "$TOPIC" 3 || die "could not create topic $TOPIC"
# Every presence event also writes the contact's state there (kafka.latest).
tansu_create_topic whatsapp.presence.latest.v1 3 || die "could not create the latest-presence topic"
ok "tansu at 127.0.0.1:$TANSU_BROKER_PORT behind proxy $TANSU_BOOTSTRAP, topic $TOPIC (3 partitions)"

HTTP_PORT="$(tansu_free_port)"
ADMIN_PORT="$(tansu_free_port)"
for _ in 1 2 3 4 5; do
  [[ "$ADMIN_PORT" == "$HTTP_PORT" || "$ADMIN_PORT" == "$TANSU_PORT" || "$ADMIN_PORT" == "$TANSU_BROKER_PORT" ]] || break
  ADMIN_PORT="$(tansu_free_port)"
done
TOKEN="e2e-outage-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export PRESENCE_BRIDGE__HTTP__LISTEN="127.0.0.1:$HTTP_PORT"
export PRESENCE_BRIDGE__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT"
export PRESENCE_BRIDGE__KAFKA__BROKERS="$TANSU_BOOTSTRAP"
export PRESENCE_BRIDGE__SPOOL__DIR="$SPOOL"
export PRESENCE_BRIDGE__AUTH__TOKENS="$TOKEN"
export PRESENCE_BRIDGE__KAFKA__PROBE_INTERVAL=500ms
export PRESENCE_BRIDGE__SHUTDOWN__DEADLINE=5s
export RUST_LOG="${RUST_LOG:-info}"
HTTP="http://127.0.0.1:$HTTP_PORT"
ADMIN="http://127.0.0.1:$ADMIN_PORT"

start_bridge 1

# ------------------------------------------------------------ 2. broker up
post_round up "$E2E_N_UP"

# ------------------------------------------------------------ 3. outages
outage_phase down "$E2E_DOWN_HOLD"
recover "after the 'down' outage"
wait_drained "after the 'down' outage"

outage_phase blackhole "$E2E_BLACKHOLE_HOLD"
recover "after the 'blackhole' outage"

# ------------------------------------------------------------ 4. recovery
post_round after "$E2E_N_AFTER"
wait_drained "after the 'blackhole' outage"

# ------------------------------------------------------------ 5. read back
consume_verify outages -

# ------------------------------------------------------------ 6. SIGKILL with a full spool
proxy_down || die "proxy_down failed"
post_round sigkill "$E2E_N_SIGKILL"
if wait_metric presence_bridge_spool_events '>=' $((5 * E2E_N_SIGKILL)) 10; then
  ok "before SIGKILL: presence_bridge_spool_events $LAST_METRIC"
else
  fail "before SIGKILL: presence_bridge_spool_events ${LAST_METRIC:-unknown}, want >= $((5 * E2E_N_SIGKILL))"
fi
accepted=0
for f in "${ROUNDS[@]}"; do
  accepted=$((accepted + $("$TANSU_PYTHON" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["events"]))' "$f")))
done
m="$(metric presence_bridge_events_accepted_total)"
if [[ -n "$m" ]] && awk -v a="$m" -v b="$accepted" 'BEGIN { exit !(a + 0 >= b + 0) }'; then
  ok "bridge #1: presence_bridge_events_accepted_total sums to $m (>= $accepted accepted)"
else
  fail "bridge #1: presence_bridge_events_accepted_total sums to ${m:-nothing}, $accepted were accepted"
fi
say "SIGKILL to bridge pid $BRIDGE_PID"
kill -KILL "$BRIDGE_PID" 2>/dev/null || true
{ wait "$BRIDGE_PID"; } 2>/dev/null || true
BRIDGE_PID=""
# `spool inspect` (read-only, for a stopped bridge): informative, and its
# pending_events must cover the round posted while the broker was away.
if timeout 30 "$BINARY" spool inspect >"$WORK/spool-inspect.json" 2>"$WORK/spool-inspect.err"; then
  say "spool inspect after SIGKILL: $(tr -s ' \n' ' ' <"$WORK/spool-inspect.json" | head -c 600)"
  pending="$("$TANSU_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pending_events"])' "$WORK/spool-inspect.json" 2>/dev/null || true)"
  if [[ -z "$pending" ]]; then say "spool inspect: no pending_events field, not checked"
  elif ((pending >= 5 * E2E_N_SIGKILL)); then ok "spool inspect after SIGKILL: pending_events $pending (>= $((5 * E2E_N_SIGKILL)))"
  else fail "spool inspect after SIGKILL: pending_events $pending < $((5 * E2E_N_SIGKILL)) posted while the broker was away"; fi
else
  say "spool inspect after SIGKILL failed (not checked): $(tail -n 3 "$WORK/spool-inspect.err")"
fi
proxy_up || die "proxy_up failed"
start_bridge 2
wait_drained "after SIGKILL + restart"
consume_verify sigkill sigkill

# ------------------------------------------------------------ 7. SIGTERM
m="$(curl -s --max-time 3 "$ADMIN/metrics" | grep '^presence_bridge_events_accepted_total' | tr '\n' ' ' || true)"
say "bridge #2 metrics: ${m:-no presence_bridge_events_accepted_total}"
e2e_stop_bridge

# Warnings/errors the bridge logged, for the record (not a failure by themselves).
for f in "${BRIDGE_LOGS[@]}"; do
  n="$(grep -Eci 'WARN|ERROR' "$f" || true)"
  say "$(basename "$f"): $n WARN/ERROR line(s)$( ((n > 0)) && printf '; first: %s' "$(grep -Ei 'WARN|ERROR' "$f" | head -n 1 | cut -c1-300)")"
done

exit 0
