#!/usr/bin/env bash
# End-to-end test of independent destinations (issue #10, finding 1) against a
# real Kafka-compatible broker (Tansu, in memory, on loopback).
#
#   .ci/e2e-destinations.sh path/to/presence-bridge
#
# Starts Tansu and creates only the default topic whatsapp.presence.v1. Runs
# `BINARY serve` with kafka.topic_by_instance mapping instance `tenantX` to
# a topic that does not exist yet. Posts a known per-phone sequence for
# tenantX (on /webhooks/zapi/instances/tenantX/presence) and one for another
# instance (default topic, on /webhooks/zapi/presence); every POST must be
# answered 200. Then:
#   held:     within E2E_FLOW_TIMEOUT s every event of the other instance is
#             in the default topic (independent confluent-kafka consumer),
#             per phone in posting order, and none of tenantX's; /metrics shows
#             presence_bridge_destination_blocked{topic=tenantX's} 1, its
#             pending events = tenantX's count and an unknown_topic error;
#             /readyz is 200 with the destination blocked and the topic
#             missing; the broker did not auto-create the topic.
#   blocked:  the other instance posts a second batch; within E2E_FLOW_TIMEOUT
#             s it is in the default topic and settled (spool_events = the
#             held count, deliveries_total >= the other's count), every event
#             of the other instance once, per phone in posting order.
#   released: the topic is created; within E2E_RELEASE_TIMEOUT s every
#             tenantX event is in it, per phone in posting order; the blocked
#             gauge returns to 0, nothing is pending, /readyz says flowing and
#             present.
# Finally SIGTERM: the bridge must exit 0 within E2E_STOP_TIMEOUT s.
# Last line: "e2e-destinations: PASS ..." or "e2e-destinations: FAIL ...";
# exit status 0 only on PASS.
#
# Knobs (env): E2E_TIMEOUT (whole run, s, default 600), E2E_READY_TIMEOUT (60),
#   E2E_FLOW_TIMEOUT (20), E2E_BLOCKED_TIMEOUT (20: from posting to the
#   blocked flag, see below), E2E_RELEASE_TIMEOUT (90: a held lane's backoff
#   caps at 30 s), E2E_STOP_TIMEOUT (30), E2E_PER_PHONE (3 events for each of 2
#   phones per instance), E2E_HELD_TOPIC (tenantX's topic, default
#   whatsapp.presence.tenantx.v1; pointing it at the default topic must make
#   the "held" checks fail), E2E_EXTRA_TOML (lines appended to the bridge's
#   configuration file), E2E_KEEP (keep work dir), RUST_LOG (default
#   info), plus those of .ci/tansu.sh.
# shellcheck disable=SC2317  # functions run from the EXIT trap
set -euo pipefail

E2E_TIMEOUT="${E2E_TIMEOUT:-600}"
E2E_READY_TIMEOUT="${E2E_READY_TIMEOUT:-60}"
E2E_FLOW_TIMEOUT="${E2E_FLOW_TIMEOUT:-20}"
E2E_BLOCKED_TIMEOUT="${E2E_BLOCKED_TIMEOUT:-20}"
E2E_RELEASE_TIMEOUT="${E2E_RELEASE_TIMEOUT:-90}"
E2E_STOP_TIMEOUT="${E2E_STOP_TIMEOUT:-30}"
E2E_PER_PHONE="${E2E_PER_PHONE:-3}"
TOPIC="whatsapp.presence.v1"
HELD_TOPIC="${E2E_HELD_TOPIC:-whatsapp.presence.tenantx.v1}"
HELD_INSTANCE="tenantX"
OTHER_INSTANCE="e2e.other"
PARTITIONS=3

CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=e2e-lib.sh
source "$CI_DIR/e2e-lib.sh"
e2e_init e2e-destinations "$@"
mkdir -p "$WORK/spool"
BRIDGE_LOG="$WORK/bridge.log"

e2e_dump_logs() {
  echo "================ bridge log ($BRIDGE_LOG, last 300 lines) ================"
  tail -n 300 "$BRIDGE_LOG" 2>/dev/null || echo "(none)"
  local f
  for f in "$WORK"/post.out "$WORK"/*.err; do
    [[ -s "$f" ]] || continue
    echo "================ $f (last 30 lines) ================"
    tail -n 30 "$f"
  done
  for f in "$WORK"/metrics.last "$WORK"/readyz.last; do
    [[ -s "$f" ]] || continue
    echo "================ $f (destination lines) ================"
    grep -E 'destination|topic|spool_events|"kafka"' "$f" | head -n 40 || true
  done
}

# ------------------------------------------------------------ broker
say "installing / checking Tansu and confluent-kafka"
tansu_install || die "could not install tansu / confluent-kafka"
tansu_start || die "tansu did not start"
tansu_create_topic "$TOPIC" "$PARTITIONS" || die "could not create topic $TOPIC"
ok "tansu $("$TANSU_BIN" --version | awk '{print $2}') at $TANSU_BOOTSTRAP, topic $TOPIC ($PARTITIONS partitions) only"

kadmin() { "$TANSU_PYTHON" "$CI_DIR/kafka_admin.py" "$@"; }

# Does the topic exist? 0 yes, 1 no (a metadata request that cannot create it).
topic_exists() {
  timeout 30 "$TANSU_PYTHON" "$CI_DIR/kafka_admin.py" describe -b "$TANSU_BOOTSTRAP" -t "$1" \
    >/dev/null 2>&1
}
if topic_exists "$HELD_TOPIC"; then
  say "note: $HELD_TOPIC already exists before the bridge starts"
fi

# ------------------------------------------------------------ bridge
HTTP_PORT="$(tansu_free_port)"
ADMIN_PORT="$(tansu_free_port)"
for _ in 1 2 3 4 5; do
  [[ "$ADMIN_PORT" == "$HTTP_PORT" || "$ADMIN_PORT" == "$TANSU_PORT" ]] || break
  ADMIN_PORT="$(tansu_free_port)"
done
TOKEN="e2e-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
# The instance id is case-sensitive: the map goes in a file (environment keys
# are lowercased).
cat >"$WORK/bridge.toml" <<EOF
[kafka.topic_by_instance]
"$HELD_INSTANCE" = "$HELD_TOPIC"
${E2E_EXTRA_TOML:-}
EOF
export PRESENCE_BRIDGE__HTTP__LISTEN="127.0.0.1:$HTTP_PORT"
export PRESENCE_BRIDGE__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT"
export PRESENCE_BRIDGE__KAFKA__BROKERS="$TANSU_BOOTSTRAP"
export PRESENCE_BRIDGE__KAFKA__TOPIC="$TOPIC"
export PRESENCE_BRIDGE__KAFKA__PROBE_INTERVAL="1s"
export PRESENCE_BRIDGE__SPOOL__DIR="$WORK/spool"
export PRESENCE_BRIDGE__AUTH__TOKENS="$TOKEN"
# The event topics alone: the spool counts below are one record per event
# and every record read back is one the API answered (the latest-presence
# topic and typing expiries are .ci/e2e-state.sh's).
export PRESENCE_BRIDGE__KAFKA__LATEST__ENABLED=false
export PRESENCE_BRIDGE__PRESENCE__TYPING_TTL=0s
export RUST_LOG="${RUST_LOG:-info}"
HTTP="http://127.0.0.1:$HTTP_PORT"
ADMIN="http://127.0.0.1:$ADMIN_PORT"

say "starting $BINARY serve --config bridge.toml ($HELD_INSTANCE -> $HELD_TOPIC; http $HTTP, admin $ADMIN)"
"${TANSU_ORPHAN_GUARD[@]}" "$BINARY" serve --config "$WORK/bridge.toml" >"$BRIDGE_LOG" 2>&1 </dev/null &
BRIDGE_PID=$!

bridge_alive() {
  kill -0 "$BRIDGE_PID" 2>/dev/null && return 0
  local rc=0
  wait "$BRIDGE_PID" || rc=$?
  BRIDGE_PID=""
  die "bridge exited with status $rc"
}

ready=""
deadline=$((SECONDS + E2E_READY_TIMEOUT))
while ((SECONDS < deadline)); do
  bridge_alive
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$ADMIN/readyz" || true)"
  if [[ "$code" == 200 ]]; then ready=1; break; fi
  sleep 0.3
done
[[ -n "$ready" ]] || die "GET $ADMIN/readyz not 200 within ${E2E_READY_TIMEOUT}s (last: ${code:-none})"
ok "bridge ready after $((SECONDS - deadline + E2E_READY_TIMEOUT))s"

# ------------------------------------------------------------ helpers
# Checks on what a consumer read, against what was posted. Modes:
#   have POSTED KAFKA INSTANCE           exit 0 when every INSTANCE id is there
#   verify POSTED KAFKA INSTANCE TOPIC ABSENT_INSTANCE MAX_DUPS
#       every INSTANCE id at least once, duplicates at most MAX_DUPS, first
#       occurrences per phone in posting order, key == data.phone, event-id == id,
#       right topic, no event of ABSENT_INSTANCE.
cat >"$WORK/check.py" <<'PY'
import json, sys

def load(path):
    out = []
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.strip()
        if line:
            out.append(json.loads(line))
    return out

mode, posted, recs, inst = sys.argv[1], json.load(open(sys.argv[2])), load(sys.argv[3]), sys.argv[4]
want = [p for p in posted if p["instanceId"] == inst]
ids = [(r.get("value") or {}).get("id") for r in recs if isinstance(r.get("value"), dict)]
have = [p for p in want if p["id"] in ids]
if mode == "have":
    print(f"{len(have)}/{len(want)} of {inst}'s events in the topic ({len(recs)} records)")
    sys.exit(0 if want and len(have) == len(want) else 1)

topic, absent, max_dups = sys.argv[5], sys.argv[6], int(sys.argv[7])
by_id = {p["id"]: p for p in posted}
fails = []
def bad(m):
    if len(fails) < 12:
        fails.append(m)
for r in recs:
    where = f"{r.get('topic')} p{r.get('partition')}@{r.get('offset')}"
    v, h = r.get("value"), r.get("headers") or {}
    if not isinstance(v, dict):
        bad(f"{where}: value not a JSON object"); continue
    p = by_id.get(v.get("id"))
    if p is None:
        bad(f"{where}: id {v.get('id')!r} was never answered by the HTTP API"); continue
    if r.get("topic") != topic:
        bad(f"{where}: read from {r.get('topic')!r}, want {topic!r}")
    if p["instanceId"] == absent:
        bad(f"{where}: an event of {absent} (id {p['id']}) is in {topic}")
    d = v.get("data") or {}
    if d.get("instanceId") != p["instanceId"] or d.get("status") != p["status"]:
        bad(f"{where}: data {d.get('instanceId')!r}/{d.get('status')!r}, posted {p['instanceId']!r}/{p['status']!r}")
    if r.get("key") != d.get("phone") or p["phone"] not in str(d.get("phone")):
        bad(f"{where}: key {r.get('key')!r}, data.phone {d.get('phone')!r}, posted {p['phone']!r}")
    if h.get("event-id") != v.get("id"):
        bad(f"{where}: header event-id {h.get('event-id')!r} != value.id")
missing = [p["id"] for p in want if p["id"] not in ids]
if missing:
    bad(f"{len(missing)} of {len(want)} {inst} events missing from {topic}, e.g. {missing[:2]}")
counts = {}
for i in ids:
    counts[i] = counts.get(i, 0) + 1
dups = sum(c - 1 for c in counts.values())
if dups > max_dups:
    bad(f"{dups} duplicate record(s) in {topic}, at most {max_dups} expected (kafka_resent_total)")
# per phone: first occurrences in (partition, offset) order == posting order
seen, order, parts = set(), {}, {}
for r in sorted(recs, key=lambda r: (r.get("partition", -1), r.get("offset", -1))):
    p = by_id.get((r.get("value") or {}).get("id"))
    if p is None or p["instanceId"] != inst:
        continue
    parts.setdefault(p["phone"], set()).add(r.get("partition"))
    if p["id"] not in seen:
        seen.add(p["id"])
        order.setdefault(p["phone"], []).append(p["id"])
for phone in dict.fromkeys(p["phone"] for p in want):
    w = [p["id"] for p in want if p["phone"] == phone]
    if len(parts.get(phone, ())) > 1:
        bad(f"phone ...{phone[-4:]} spread over partitions {sorted(parts[phone])}")
    elif order.get(phone, []) != w:
        bad(f"phone ...{phone[-4:]}: order in {topic} {order.get(phone)} != posting order {w}")
for f in fails:
    print("FAIL " + f)
if not fails:
    print(f"OK {topic}: {len(want)} {inst} events, {len(recs)} records ({dups} duplicate), "
          f"per phone in posting order over {len(order)} phones, none of {absent}")
sys.exit(1 if fails else 0)
PY

# One read of TOPIC to the end of every partition into FILE.
consume_to() {
  local topic="$1" out="$2"
  timeout 60 "$TANSU_PYTHON" "$CI_DIR/kafka_admin.py" consume -b "$TANSU_BOOTSTRAP" -t "$topic" \
    --timeout 20 >"$out" 2>"$out.err"
}

# Poll TOPIC until every event of INSTANCE is in it or DEADLINE (SECONDS) passes.
# Leaves the last read in $WORK/TOPIC.jsonl and the last progress line in
# $WORK/progress.
wait_delivered() {
  local topic="$1" inst="$2" deadline="$3" out="$WORK/$1.jsonl"
  while :; do
    bridge_alive
    if consume_to "$topic" "$out"; then
      if "$TANSU_PYTHON" "$WORK/check.py" have "$WORK/posted.json" "$out" "$inst" >"$WORK/progress"; then
        return 0
      fi
    else
      echo "consumer: $(tail -n 1 "$out.err")" >"$WORK/progress"
    fi
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

metric() {  # metric NAME LABELS: the sample's value, or "absent"
  local want="$1"
  [[ -z "$2" ]] || want="$1{$2}"
  awk -v want="$want" '$1 == want { print $2; found = 1 } END { if (!found) print "absent" }' \
    "$WORK/metrics.last"
}
scrape() { curl -s --max-time 5 "$ADMIN/metrics" >"$WORK/metrics.last" || : >"$WORK/metrics.last"; }
readyz() {
  curl -s --max-time 5 -o "$WORK/readyz.last" -w '%{http_code}' "$ADMIN/readyz" || echo 000
}
# readyz_field PATH...: a value from the last /readyz body ("absent" if none).
readyz_field() {
  "$TANSU_PYTHON" - "$WORK/readyz.last" "$@" <<'PY'
import json, sys
try:
    v = json.load(open(sys.argv[1]))
    for k in sys.argv[2:]:
        v = v[k]
    print(json.dumps(v) if isinstance(v, (dict, list)) else v)
except Exception:
    print("absent")
PY
}

# ------------------------------------------------------------ post
# post_batch SEED INSTANCE...: for each instance its two phones, E2E_PER_PHONE
# events each, interleaved in a fixed pseudo-random order, statuses varying;
# appends the accepted events to $WORK/posted.json in posting order (a phone's
# sequence goes on across batches). tenantX posts on the instance route, the
# other instance on the plain route (instance from the body).
cat >"$WORK/post.py" <<'PY'
import json, os, random, sys, urllib.error, urllib.request

base, token, per_phone, out, held, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
instances = sys.argv[7:]
STATUSES = ["UNAVAILABLE", "AVAILABLE", "COMPOSING", "PAUSED", "RECORDING"]
posted = json.load(open(out)) if os.path.exists(out) else []
failures, new = [], 0

def post(url, body):
    req = urllib.request.Request(f"{url}?token={token}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:
        return None, str(e).encode()

def route(inst):
    if inst == held:
        return f"{base}/webhooks/zapi/instances/{inst}/presence"
    return f"{base}/webhooks/zapi/presence"

def phones(inst):
    n = 1 if inst == held else 2
    return [f"55119876{n}0{k}01" for k in (1, 2)]

order = [(i, p) for i in instances for p in phones(i) for _ in range(per_phone)]
random.Random(seed).shuffle(order)
count = {}
for p in posted:
    count[p["phone"]] = count.get(p["phone"], 0) + 1
for inst, phone in order:
    n = count.get(phone, 0)
    count[phone] = n + 1
    body = {"type": "PresenceChatCallback", "phone": phone, "status": STATUSES[n % 5],
            "lastSeen": None, "instanceId": inst}
    status, raw = post(route(inst), body)
    try:
        rid = json.loads(raw)["id"] if status == 200 else None
    except Exception:
        rid = None
    if status != 200 or not isinstance(rid, str):
        failures.append(f"POST {inst} ...{phone[-4:]} #{n}: HTTP {status} {raw[:200]!r}")
        continue
    posted.append({"id": rid, "phone": phone, "status": body["status"], "instanceId": inst})
    new += 1
json.dump(posted, open(out, "w"))
print(f"batch {seed}: {new} of {len(order)} accepted ({', '.join(instances)})")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
PY
count_of() {
  "$TANSU_PYTHON" -c 'import json,sys; print(sum(p["instanceId"] == sys.argv[2] for p in json.load(open(sys.argv[1]))))' \
    "$WORK/posted.json" "$1" 2>/dev/null || echo 0
}
post_batch() {
  local seed="$1" rc=0
  shift
  timeout 120 "$TANSU_PYTHON" "$WORK/post.py" "$HTTP" "$TOKEN" "$E2E_PER_PHONE" "$WORK/posted.json" \
    "$HELD_INSTANCE" "$seed" "$@" >"$WORK/post.out" 2>&1 || rc=$?
  cat "$WORK/post.out" >&2
  return $rc
}

N_EACH=$((2 * E2E_PER_PHONE))
post_rc=0
post_batch 1 "$HELD_INSTANCE" "$OTHER_INSTANCE" || post_rc=$?
POSTED_AT=$SECONDS
N_HELD="$(count_of "$HELD_INSTANCE")"
N_OTHER="$(count_of "$OTHER_INSTANCE")"
if [[ $post_rc -eq 0 && "$N_HELD" -eq "$N_EACH" && "$N_OTHER" -eq "$N_EACH" ]]; then
  ok "posted $N_HELD events for $HELD_INSTANCE and $N_OTHER for $OTHER_INSTANCE, each answered 200 with an id"
else
  die "posting: rc=$post_rc, accepted $N_HELD + $N_OTHER of $N_EACH + $N_EACH (see post output above)"
fi

# ------------------------------------------------------------ held
say "waiting up to ${E2E_FLOW_TIMEOUT}s for $OTHER_INSTANCE's events in $TOPIC while $HELD_TOPIC is missing"
if wait_delivered "$TOPIC" "$OTHER_INSTANCE" $((POSTED_AT + E2E_FLOW_TIMEOUT)); then
  FLOW_SECS=$((SECONDS - POSTED_AT))
  ok "$OTHER_INSTANCE's events delivered to $TOPIC ${FLOW_SECS}s after posting, while $HELD_INSTANCE's topic is missing ($(cat "$WORK/progress"))"
else
  fail "$OTHER_INSTANCE's events not all in $TOPIC within ${E2E_FLOW_TIMEOUT}s of posting: $(cat "$WORK/progress") (a missing topic for one instance stalls the others?)"
fi
if "$TANSU_PYTHON" "$WORK/check.py" verify "$WORK/posted.json" "$WORK/$TOPIC.jsonl" \
    "$OTHER_INSTANCE" "$TOPIC" "$HELD_INSTANCE" 0 >"$WORK/verify-other.out" 2>&1; then
  ok "$(cat "$WORK/verify-other.out")"
else
  cat "$WORK/verify-other.out" >&2
  fail "$TOPIC content while $HELD_TOPIC is held (see FAIL lines above)"
fi

# Held from the start: tenantX's events are all pending in the spool while the
# other instance's are through, and the probe already says the topic is missing.
scrape
code="$(readyz)"
pend="$(metric presence_bridge_destination_pending_events "topic=\"$HELD_TOPIC\"")"
r_topic="$(readyz_field components kafka topics "$HELD_TOPIC")"
if [[ "$pend" == "$N_HELD" && "$code" == 200 && "$r_topic" == missing ]]; then
  ok "$((SECONDS - POSTED_AT))s after posting: $HELD_INSTANCE's $pend events pending (destination_pending_events), /readyz 200 with topics.$HELD_TOPIC missing"
else
  fail "$((SECONDS - POSTED_AT))s after posting: destination_pending_events{topic=\"$HELD_TOPIC\"} $pend (want $N_HELD), /readyz $code (want 200), topics.$HELD_TOPIC=$r_topic (want missing)"
fi

# The held lane reports itself as blocked once the producer fails a record:
# librdkafka queues records for a topic the metadata says does not exist for
# topic.metadata.propagation.max.ms (the bridge sets 5 s; librdkafka's default
# is 30 s) before it fails them with UNKNOWN_TOPIC, so the flag comes a few
# seconds after posting (the events are held all along). Wait for the report (the first refusal comes
# from the broker), then check everything at once.
blocked_sel="topic=\"$HELD_TOPIC\""
held_ok=""
deadline=$((POSTED_AT + E2E_BLOCKED_TIMEOUT))
while :; do
  bridge_alive
  scrape
  if [[ "$(metric presence_bridge_destination_blocked "$blocked_sel")" == 1 &&
        "$(metric presence_bridge_destination_pending_events "$blocked_sel")" == "$N_HELD" ]]; then
    held_ok=1; BLOCKED_SECS=$((SECONDS - POSTED_AT)); break
  fi
  ((SECONDS < deadline)) || break
  sleep 0.5
done
b="$(metric presence_bridge_destination_blocked "$blocked_sel")"
pend="$(metric presence_bridge_destination_pending_events "$blocked_sel")"
errs="$(metric presence_bridge_destination_errors_total "reason=\"unknown_topic\",$blocked_sel")"
b_def="$(metric presence_bridge_destination_blocked "topic=\"$TOPIC\"")"
if [[ -n "$held_ok" ]]; then
  ok "/metrics ${BLOCKED_SECS}s after posting: destination_blocked{$blocked_sel} $b, destination_pending_events $pend (= $N_HELD posted)"
else
  fail "/metrics within ${E2E_BLOCKED_TIMEOUT}s of posting: destination_blocked{$blocked_sel} $b (want 1), destination_pending_events $pend (want $N_HELD)"
fi
if [[ "$errs" != absent ]] && awk -v e="$errs" 'BEGIN { exit !(e >= 1) }'; then
  ok "/metrics: destination_errors_total{reason=\"unknown_topic\",$blocked_sel} $errs"
else
  fail "/metrics: destination_errors_total{reason=\"unknown_topic\",$blocked_sel} $errs (want >= 1)"
fi
[[ "$b_def" == 0 ]] && ok "/metrics: destination_blocked{topic=\"$TOPIC\"} 0" \
  || fail "/metrics: destination_blocked{topic=\"$TOPIC\"} $b_def (want 0)"

code="$(readyz)"
r_state="$(readyz_field components kafka destinations "$HELD_TOPIC" state)"
r_reason="$(readyz_field components kafka destinations "$HELD_TOPIC" reason)"
r_held="$(readyz_field components kafka destinations "$HELD_TOPIC" held_events)"
r_topic="$(readyz_field components kafka topics "$HELD_TOPIC")"
r_def="$(readyz_field components kafka topics "$TOPIC")"
if [[ "$code" == 200 && "$r_state" == blocked && "$r_reason" == unknown_topic &&
      "$r_held" == "$N_HELD" && "$r_topic" == missing && "$r_def" == present ]]; then
  ok "/readyz 200: destinations.$HELD_TOPIC blocked (unknown_topic, $r_held held), topics.$HELD_TOPIC missing, topics.$TOPIC present"
else
  fail "/readyz while held: HTTP $code, destinations.$HELD_TOPIC state=$r_state reason=$r_reason held_events=$r_held (want 200 blocked unknown_topic $N_HELD), topics.$HELD_TOPIC=$r_topic (want missing), topics.$TOPIC=$r_def (want present)"
fi

# Tansu creates a topic on a metadata request that allows it; the bridge must
# not have (allow.auto.create.topics=false), else nothing was held at all.
if topic_exists "$HELD_TOPIC"; then
  fail "$HELD_TOPIC exists before the test created it (auto-created by the broker?)"
else
  ok "$HELD_TOPIC still does not exist on the broker (no auto-creation)"
fi
say "bridge log lines about $HELD_TOPIC while held:"
grep -F "$HELD_TOPIC" "$BRIDGE_LOG" | head -n 8 >&2 || say "(none)"

# While the lane is blocked (the librdkafka error is in: the old forwarder
# rewound everything here and rebuilt its producer every 30 s), the other
# instance posts again: its new events must reach Kafka within seconds, once
# each, and be settled in the spool (the spool holds only tenantX's).
post_rc=0
post_batch 2 "$OTHER_INSTANCE" || post_rc=$?
POSTED2_AT=$SECONDS
N_OTHER="$(count_of "$OTHER_INSTANCE")"
if [[ $post_rc -eq 0 && "$N_OTHER" -eq $((2 * N_EACH)) ]]; then
  ok "posted $N_EACH more events for $OTHER_INSTANCE while $HELD_TOPIC is blocked, each answered 200"
else
  die "posting batch 2: rc=$post_rc, $OTHER_INSTANCE has $N_OTHER of $((2 * N_EACH)) accepted"
fi
if wait_delivered "$TOPIC" "$OTHER_INSTANCE" $((POSTED2_AT + E2E_FLOW_TIMEOUT)); then
  FLOW2_SECS=$((SECONDS - POSTED2_AT))
  ok "$OTHER_INSTANCE's second batch in $TOPIC ${FLOW2_SECS}s after posting, while $HELD_TOPIC is blocked ($(cat "$WORK/progress"))"
else
  fail "$OTHER_INSTANCE's second batch not all in $TOPIC within ${E2E_FLOW_TIMEOUT}s while $HELD_TOPIC is blocked: $(cat "$WORK/progress")"
fi
settled=""
deadline=$((POSTED2_AT + E2E_FLOW_TIMEOUT))
while :; do
  bridge_alive
  scrape
  sp="$(metric presence_bridge_spool_events "")"
  dl="$(metric presence_bridge_kafka_deliveries_total 'result="delivered"')"
  pd="$(metric presence_bridge_destination_pending_events "topic=\"$TOPIC\"")"
  if [[ "$sp" == "$N_HELD" && "$pd" == 0 && "$dl" != absent ]] && ((dl >= N_OTHER)); then
    settled=1; break
  fi
  ((SECONDS < deadline)) || break
  sleep 0.5
done
if [[ -n "$settled" ]]; then
  ok "settled: spool_events $sp (= $HELD_INSTANCE's $N_HELD), kafka_deliveries_total{result=\"delivered\"} $dl >= $N_OTHER, destination_pending_events{topic=\"$TOPIC\"} 0"
else
  fail "not settled within ${E2E_FLOW_TIMEOUT}s: spool_events $sp (want $N_HELD), kafka_deliveries_total{result=\"delivered\"} $dl (want >= $N_OTHER), destination_pending_events{topic=\"$TOPIC\"} $pd (want 0)"
fi
if "$TANSU_PYTHON" "$WORK/check.py" verify "$WORK/posted.json" "$WORK/$TOPIC.jsonl" \
    "$OTHER_INSTANCE" "$TOPIC" "$HELD_INSTANCE" 0 >"$WORK/verify-other.out" 2>&1; then
  ok "$(cat "$WORK/verify-other.out")"
else
  cat "$WORK/verify-other.out" >&2
  fail "$TOPIC content with $HELD_TOPIC blocked, both batches (see FAIL lines above)"
fi
# A destination error is not a producer fault (the old forwarder rebuilt its
# producer every 30 s) and not a dead letter.
rebuilds="$(grep -ciE 'rebuild' "$BRIDGE_LOG" || true)"
[[ "$rebuilds" -eq 0 ]] && ok "no producer rebuild logged while $HELD_TOPIC is blocked" \
  || fail "$rebuilds producer rebuild line(s) logged while $HELD_TOPIC is blocked: $(grep -iE 'rebuild' "$BRIDGE_LOG" | head -n 2)"
dead="$(awk '$1 ~ /^presence_bridge_events_dead_lettered_total/ { s += $2 } END { printf "%d", s }' "$WORK/metrics.last")"
[[ "$dead" -eq 0 ]] && ok "nothing dead-lettered (presence_bridge_events_dead_lettered_total 0)" \
  || fail "$dead event(s) dead-lettered while $HELD_TOPIC is missing (want 0: a missing topic holds)"
# pending for the held destination is unchanged
scrape
pend="$(metric presence_bridge_destination_pending_events "$blocked_sel")"
[[ "$pend" == "$N_HELD" ]] && ok "destination_pending_events{$blocked_sel} still $pend" \
  || fail "destination_pending_events{$blocked_sel} $pend after batch 2 (want $N_HELD)"

# ------------------------------------------------------------ released
tansu_create_topic "$HELD_TOPIC" "$PARTITIONS" || die "could not create topic $HELD_TOPIC"
CREATED_AT=$SECONDS
ok "created $HELD_TOPIC ($PARTITIONS partitions)"
say "waiting up to ${E2E_RELEASE_TIMEOUT}s for $HELD_INSTANCE's events in $HELD_TOPIC"
if wait_delivered "$HELD_TOPIC" "$HELD_INSTANCE" $((CREATED_AT + E2E_RELEASE_TIMEOUT)); then
  RELEASE_SECS=$((SECONDS - CREATED_AT))
  ok "$HELD_INSTANCE's events delivered to $HELD_TOPIC ${RELEASE_SECS}s after it was created ($(cat "$WORK/progress"))"
else
  fail "$HELD_INSTANCE's events not all in $HELD_TOPIC within ${E2E_RELEASE_TIMEOUT}s of its creation: $(cat "$WORK/progress")"
fi
scrape
resent="$(metric presence_bridge_kafka_resent_total "$blocked_sel")"
[[ "$resent" != absent ]] || resent=0
if "$TANSU_PYTHON" "$WORK/check.py" verify "$WORK/posted.json" "$WORK/$HELD_TOPIC.jsonl" \
    "$HELD_INSTANCE" "$HELD_TOPIC" "$OTHER_INSTANCE" "${resent%.*}" >"$WORK/verify-held.out" 2>&1; then
  ok "$(cat "$WORK/verify-held.out")"
else
  cat "$WORK/verify-held.out" >&2
  fail "$HELD_TOPIC content after release (see FAIL lines above)"
fi

# Flowing again: the gauge, the pending count and /readyz (the probe runs
# every second here).
flow_ok=""
deadline=$((SECONDS + E2E_FLOW_TIMEOUT))
while :; do
  bridge_alive
  scrape
  code="$(readyz)"
  if [[ "$(metric presence_bridge_destination_blocked "$blocked_sel")" == 0 &&
        "$(metric presence_bridge_destination_pending_events "$blocked_sel")" == 0 &&
        "$code" == 200 &&
        "$(readyz_field components kafka destinations "$HELD_TOPIC" state)" == flowing &&
        "$(readyz_field components kafka topics "$HELD_TOPIC")" == present ]]; then
    flow_ok=1; break
  fi
  ((SECONDS < deadline)) || break
  sleep 0.5
done
if [[ -n "$flow_ok" ]]; then
  ok "flowing again: destination_blocked{$blocked_sel} 0, pending 0, /readyz 200 with $HELD_TOPIC flowing and present (resent: $resent)"
else
  fail "not flowing within ${E2E_FLOW_TIMEOUT}s after delivery: destination_blocked $(metric presence_bridge_destination_blocked "$blocked_sel"), pending $(metric presence_bridge_destination_pending_events "$blocked_sel"), /readyz $code destinations.$HELD_TOPIC=$(readyz_field components kafka destinations "$HELD_TOPIC") topics.$HELD_TOPIC=$(readyz_field components kafka topics "$HELD_TOPIC")"
fi

# ------------------------------------------------------------ shutdown
e2e_stop_bridge
say "timings: other instance delivered ${FLOW_SECS:-?}s after posting (bound ${E2E_FLOW_TIMEOUT}s), again ${FLOW2_SECS:-?}s after posting while blocked; blocked flag ${BLOCKED_SECS:-?}s after posting (bound ${E2E_BLOCKED_TIMEOUT}s); $HELD_INSTANCE delivered ${RELEASE_SECS:-?}s after topic creation (bound ${E2E_RELEASE_TIMEOUT}s)"

exit 0
