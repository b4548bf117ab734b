#!/usr/bin/env bash
# End-to-end test of presence-bridge against a real Kafka-compatible broker
# (Tansu, in memory, on loopback).
#
#   .ci/e2e-tansu.sh path/to/presence-bridge
#
# Starts Tansu, creates whatsapp.presence.v1 (3 partitions), runs
# `BINARY serve`, posts the Z-API examples plus a known per-phone sequence,
# checks 400/401 answers, reads everything back with `BINARY tail` and with an
# independent confluent-kafka consumer, checks ids/keys/headers/envelope and
# per-phone order, checks /metrics, then SIGTERMs the bridge (must exit 0
# within 30 s). Last line: "e2e-tansu: PASS ..." or "e2e-tansu: FAIL ...";
# exit status 0 only on PASS.
#
# Knobs (env): E2E_TIMEOUT (whole run, s, default 600), E2E_READY_TIMEOUT (60),
#   E2E_TAIL_TIMEOUT (60), E2E_STOP_TIMEOUT (30), E2E_KEEP (keep work dir),
#   E2E_SEQ_PER_PHONE (10 events for each of 5 phones), RUST_LOG (bridge log
#   level, default info), plus those of .ci/tansu.sh.
# shellcheck disable=SC2317  # functions run from the EXIT trap
set -euo pipefail

E2E_TIMEOUT="${E2E_TIMEOUT:-600}"
E2E_READY_TIMEOUT="${E2E_READY_TIMEOUT:-60}"
E2E_TAIL_TIMEOUT="${E2E_TAIL_TIMEOUT:-60}"
E2E_STOP_TIMEOUT="${E2E_STOP_TIMEOUT:-30}"
E2E_SEQ_PER_PHONE="${E2E_SEQ_PER_PHONE:-10}"
TOPIC="whatsapp.presence.v1"

CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=e2e-lib.sh
source "$CI_DIR/e2e-lib.sh"
e2e_init e2e-tansu "$@"
mkdir -p "$WORK/spool"
BRIDGE_LOG="$WORK/bridge.log"

e2e_dump_logs() {
  echo "================ bridge log ($BRIDGE_LOG, last 300 lines) ================"
  tail -n 300 "$BRIDGE_LOG" 2>/dev/null || echo "(none)"
  local f
  for f in "$WORK"/tail.err "$WORK"/post.out; do
    [[ -s "$f" ]] || continue
    echo "================ $f (last 60 lines) ================"
    tail -n 60 "$f"
  done
}

# ------------------------------------------------------------ broker
say "installing / checking Tansu and confluent-kafka"
tansu_install || die "could not install tansu / confluent-kafka"
tansu_start || die "tansu did not start"
tansu_create_topic "$TOPIC" 3 || die "could not create topic $TOPIC"
ok "tansu $("$TANSU_BIN" --version | awk '{print $2}') at $TANSU_BOOTSTRAP, topic $TOPIC (3 partitions)"

# ------------------------------------------------------------ bridge
e2e_start_bridge

# ------------------------------------------------------------ post
# Writes $WORK/posted.json: accepted events in posting order.
post_rc=0
timeout 300 "$TANSU_PYTHON" - "$HTTP" "$TOKEN" "$E2E_SEQ_PER_PHONE" "$WORK/posted.json" \
  >"$WORK/post.out" 2>&1 <<'PY' || post_rc=$?
import json, random, re, sys, urllib.error, urllib.request

base, token, per_phone, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
URL = f"{base}/webhooks/zapi/presence"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
STATUSES = ["UNAVAILABLE", "AVAILABLE", "COMPOSING", "PAUSED", "RECORDING"]
failures, posted = [], []

def post(body, query=f"?token={token}", ctype="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(URL + query, data=data, method="POST",
                                 headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:  # connection refused, timeout...
        return None, str(e).encode()

def accept(body):
    status, raw = post(body)
    if status != 200:
        failures.append(f"POST {body['phone']} {body['status']}: HTTP {status} {raw[:200]!r}")
        return
    try:
        rid = json.loads(raw)["id"]
        assert isinstance(rid, str) and UUID.match(rid)
    except Exception:
        failures.append(f"POST {body['phone']} {body['status']}: 200 but body is not {{\"id\":\"<uuid>\"}}: {raw[:200]!r}")
        return
    posted.append({"id": rid, "phone": body["phone"], "status": body["status"],
                   "instanceId": body["instanceId"]})

# 1. The provider's five examples, as documented.
for st in STATUSES:
    accept({"type": "PresenceChatCallback", "phone": "5544999999999", "status": st,
            "lastSeen": None, "instanceId": "instance.id"})
print(f"examples accepted: {len(posted)}/5")

# 2. A known per-phone sequence, interleaved across 5 phones in a fixed
# pseudo-random order, statuses varying.
phones = [f"55119876500{i:02d}" for i in range(1, 6)]
order = [p for p in phones for _ in range(per_phone)]
random.Random(20240607).shuffle(order)
count = {p: 0 for p in phones}
for p in order:
    st = STATUSES[(count[p] * 3 + phones.index(p)) % 5]
    count[p] += 1
    accept({"type": "PresenceChatCallback", "phone": p, "status": st,
            "lastSeen": None, "instanceId": "e2e.instance"})
print(f"total accepted: {len(posted)}/{5 + len(order)}")

# 3. Rejections.
def expect(what, want, status, raw):
    if status not in want:
        failures.append(f"{what}: want HTTP {'/'.join(map(str, want))}, got {status} {raw[:200]!r}")
    else:
        print(f"{what}: HTTP {status} ok")
good = {"type": "PresenceChatCallback", "phone": "5544999999999", "status": "AVAILABLE",
        "lastSeen": None, "instanceId": "instance.id"}
expect("unknown type", (400,), *post({"type": "Nope"}))
expect("malformed JSON", (400,), *post(b'{"type": "PresenceChatCallback", '))
expect("missing token", (401,), *post(good, query=""))
expect("wrong token", (401, 403), *post(good, query="?token=not-the-token"))

json.dump(posted, open(out, "w"))
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
PY
cat "$WORK/post.out" >&2
ACCEPTED="$("$TANSU_PYTHON" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/posted.json" 2>/dev/null || echo 0)"
EXPECTED=$((5 + 5 * E2E_SEQ_PER_PHONE))
if [[ $post_rc -eq 0 && "$ACCEPTED" -eq "$EXPECTED" ]]; then
  ok "posted $ACCEPTED events (200 + uuid each), 400/401 answers as expected"
else
  fail "posting: rc=$post_rc, accepted $ACCEPTED/$EXPECTED (see post output above)"
fi
[[ "$ACCEPTED" -gt 0 ]] || die "no event accepted, nothing to read back"

# ------------------------------------------------------------ metrics
metrics="$(curl -s --max-time 5 "$ADMIN/metrics" || true)"
if grep -q '^presence_bridge_events_accepted_total' <<<"$metrics"; then
  m_sum="$(awk '/^presence_bridge_events_accepted_total/ {s += $NF} END {printf "%d", s}' <<<"$metrics")"
  ok "/metrics has presence_bridge_events_accepted_total (sum $m_sum)"
  [[ "$m_sum" -ge "$ACCEPTED" ]] || say "warning: presence_bridge_events_accepted_total sum $m_sum < $ACCEPTED accepted"
else
  fail "/metrics lacks presence_bridge_events_accepted_total (got $(wc -c <<<"$metrics") bytes)"
fi

# ------------------------------------------------------------ read back
tail_rc=0
timeout "$E2E_TAIL_TIMEOUT" "$BINARY" tail --from beginning --limit "$ACCEPTED" \
  >"$WORK/tail.out" 2>"$WORK/tail.err" </dev/null || tail_rc=$?
if [[ $tail_rc -eq 0 ]]; then
  ok "tail --from beginning --limit $ACCEPTED exited 0 ($(wc -l <"$WORK/tail.out") lines)"
else
  fail "tail exited $tail_rc (124 = timed out after ${E2E_TAIL_TIMEOUT}s), $(wc -l <"$WORK/tail.out") lines"
fi

# Independent reader: everything in the topic up to the end of each partition,
# so duplicates or strays beyond --limit show up too.
kafka_rc=0
timeout 90 "$TANSU_PYTHON" "$CI_DIR/kafka_admin.py" consume -b "$TANSU_BOOTSTRAP" -t "$TOPIC" \
  --timeout 60 >"$WORK/kafka.out" 2>"$WORK/kafka.err" || kafka_rc=$?
[[ $kafka_rc -eq 0 ]] || fail "independent consumer failed ($kafka_rc): $(tail -n 3 "$WORK/kafka.err")"

verify_rc=0
timeout 60 "$TANSU_PYTHON" - "$WORK/posted.json" "$WORK/tail.out" "$WORK/kafka.out" "$TOPIC" <<'PY' || verify_rc=$?
import json, sys
from datetime import datetime

posted = json.load(open(sys.argv[1]))
topic = sys.argv[4]
by_id = {p["id"]: p for p in posted}
fails, oks = [], []

def load(path, what):
    recs, junk = [], 0
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
            if not isinstance(r, dict):
                raise ValueError
            recs.append(r)
        except ValueError:
            junk += 1
            if junk <= 3:
                print(f"[verify] {what}: non-JSON line ignored: {line[:160]}", file=sys.stderr)
    if junk:
        fails.append(f"{what}: {junk} stdout line(s) are not JSON objects")
    return recs

def check(what, recs, exact):
    n0 = len(fails)
    def bad(msg):
        if len(fails) - n0 < 12:
            fails.append(f"{what}: {msg}")
        elif len(fails) - n0 == 12:
            fails.append(f"{what}: (more failures not shown)")
    ids = []
    for r in recs:
        where = f"p{r.get('partition')}@{r.get('offset')}"
        v, h = r.get("value"), r.get("headers") or {}
        if not isinstance(v, dict):
            bad(f"{where}: value is not a JSON object: {str(v)[:120]}"); continue
        rid = v.get("id")
        if v.get("type") == "io.presence-bridge.zapi.chat-presence-expired.v1":
            # A typing expiry, the bridge's own event (.ci/e2e-state.sh checks
            # them): it must expire an event the API answered 200.
            if (v.get("data") or {}).get("causeId") not in by_id:
                bad(f"{where}: expiry {rid} of an event the API never answered")
            continue
        ids.append(rid)
        if r.get("topic") != topic:
            bad(f"{where}: topic {r.get('topic')!r}")
        if not isinstance(r.get("partition"), int) or not 0 <= r["partition"] < 3:
            bad(f"{where}: partition {r.get('partition')!r}")
        if not isinstance(r.get("offset"), int):
            bad(f"{where}: offset {r.get('offset')!r}")
        if v.get("specversion") != "1.0":
            bad(f"{where}: specversion {v.get('specversion')!r}")
        for f in ("id", "source", "type", "time", "datacontenttype", "dataschema"):
            if not isinstance(v.get(f), str) or not v.get(f):
                bad(f"{where}: envelope field {f} missing/empty: {v.get(f)!r}")
        try:
            datetime.fromisoformat(str(v.get("time")).replace("Z", "+00:00"))
        except ValueError:
            bad(f"{where}: time not RFC 3339: {v.get('time')!r}")
        d = v.get("data")
        if not isinstance(d, dict):
            bad(f"{where}: data is not an object"); continue
        for f in ("instanceId", "phone", "status", "lastSeen"):
            if f not in d:
                bad(f"{where}: data.{f} missing")
        if r.get("key") != d.get("phone"):
            bad(f"{where}: key {r.get('key')!r} != data.phone {d.get('phone')!r}")
        if h.get("event-id") != rid:
            bad(f"{where}: header event-id {h.get('event-id')!r} != value.id {rid!r}")
        if h.get("event-type") != v.get("type"):
            bad(f"{where}: header event-type {h.get('event-type')!r} != value.type {v.get('type')!r}")
        ct = h.get("content-type", "")
        if ct.replace(" ", "").lower() != "application/cloudevents+json;charset=utf-8":
            bad(f"{where}: header content-type {ct!r}")
        p = by_id.get(rid)
        if p is None:
            bad(f"{where}: id {rid} was never returned by the HTTP API"); continue
        if d.get("status") != p["status"]:
            bad(f"{where}: data.status {d.get('status')!r}, posted {p['status']!r}")
        if d.get("instanceId") != p["instanceId"]:
            bad(f"{where}: data.instanceId {d.get('instanceId')!r}, posted {p['instanceId']!r}")
        if str(p["phone"]) not in str(d.get("phone")):
            bad(f"{where}: data.phone {d.get('phone')!r} does not contain posted {p['phone']!r}")
    # every accepted id exactly once
    seen = {}
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
    missing = [i for i in by_id if i not in seen]
    dups = {i: c for i, c in seen.items() if c > 1}
    if missing:
        bad(f"{len(missing)} accepted id(s) missing, e.g. {missing[:3]}")
    if dups:
        bad(f"{len(dups)} id(s) more than once, e.g. {list(dups.items())[:3]}")
    if exact and len(recs) != len(posted):
        bad(f"{len(recs)} records, {len(posted)} accepted")
    # per phone: Kafka order (partition, offset) == posting order
    kafka_order = {}
    parts = {}
    for r in sorted((r for r in recs if isinstance(r.get("value"), dict)),
                    key=lambda r: (r.get("partition", -1), r.get("offset", -1))):
        p = by_id.get(r["value"].get("id"))
        if p:
            kafka_order.setdefault(p["phone"], []).append(p["id"])
            parts.setdefault(p["phone"], set()).add(r.get("partition"))
    for phone in dict.fromkeys(p["phone"] for p in posted):
        want = [p["id"] for p in posted if p["phone"] == phone]
        got = kafka_order.get(phone, [])
        if len(parts.get(phone, ())) > 1:
            bad(f"phone {phone} spread over partitions {sorted(parts[phone])}")
        elif got != want:
            first = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            bad(f"phone {phone}: Kafka order differs from posting order at #{first} ({len(got)} in Kafka, {len(want)} posted)")
    if len(fails) == n0:
        oks.append(f"{what}: {len(recs)} records, every id once, key==data.phone, event-id==id, per-phone order kept")

tail = load(sys.argv[2], "tail")
check("tail", tail, exact=True)
kafka = load(sys.argv[3], "kafka")
check("kafka (independent consumer, to end of log)", kafka, exact=True)
pos = lambda rs: sorted((r.get("partition"), r.get("offset"), (r.get("value") or {}).get("id")) for r in rs if isinstance(r.get("value"), dict))
if tail and kafka and pos(tail) != pos(kafka):
    fails.append("tail and the independent consumer disagree on (partition, offset, id)")
elif tail and kafka:
    oks.append("tail agrees with the independent consumer on (partition, offset, id)")
if tail:
    print("[verify] sample tail line: " + json.dumps(tail[0])[:600], file=sys.stderr)
for o in oks:
    print("OK " + o)
for f in fails:
    print("FAIL " + f)
sys.exit(1 if fails else 0)
PY
if [[ $verify_rc -eq 0 ]]; then ok "read-back verification"; else fail "read-back verification (see FAIL lines above)"; fi

# ------------------------------------------------------------ shutdown
e2e_stop_bridge
spooled="$(find "$WORK/spool" -type f 2>/dev/null | wc -l)"
say "spool dir after shutdown: $spooled file(s)"

exit 0
