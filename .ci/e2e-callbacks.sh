#!/usr/bin/env bash
# End-to-end test of every Z-API callback kind against a real Kafka-compatible
# broker (Tansu, in memory, on loopback).
#
#   .ci/e2e-callbacks.sh path/to/presence-bridge
#
# Starts Tansu with the five default topics (presence, messages, message
# status, delivery, connection; 3 partitions each), runs `BINARY serve`, posts
# every documented example of every kind (crates/events/tests/golden) to
# /webhooks/zapi, then a mixed stream of received messages, statuses and
# deliveries of several chats interleaved with presence and connection events,
# some of them gzip'd, and reads every topic back with an independent
# confluent-kafka consumer: every accepted id exactly once, on its kind's
# topic, with its key (the chat, the phone or the instance) and its CloudEvents
# type in `event-type`; per key, Kafka order equals posting order. Then SIGTERMs
# the bridge (must exit 0). Last line: "e2e-callbacks: PASS ..." or
# "e2e-callbacks: FAIL ..."; exit status 0 only on PASS.
#
# Knobs (env): E2E_TIMEOUT (whole run, s, default 600), E2E_READY_TIMEOUT (60),
#   E2E_STOP_TIMEOUT (30), E2E_KEEP (keep work dir), RUST_LOG (default info).
# shellcheck disable=SC2317  # functions run from the EXIT trap
set -euo pipefail

E2E_TIMEOUT="${E2E_TIMEOUT:-600}"
E2E_READY_TIMEOUT="${E2E_READY_TIMEOUT:-60}"
E2E_STOP_TIMEOUT="${E2E_STOP_TIMEOUT:-30}"
TOPICS=(whatsapp.presence.v1 whatsapp.messages.v1 whatsapp.message-status.v1 whatsapp.delivery.v1 whatsapp.connection.v1)

CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GOLDEN="$(cd "$CI_DIR/../crates/events/tests/golden" && pwd)"
# shellcheck source=e2e-lib.sh
source "$CI_DIR/e2e-lib.sh"
e2e_init e2e-callbacks "$@"
mkdir -p "$WORK/spool"
BRIDGE_LOG="$WORK/bridge.log"

e2e_dump_logs() {
  echo "================ bridge log ($BRIDGE_LOG, last 200 lines) ================"
  tail -n 200 "$BRIDGE_LOG" 2>/dev/null || echo "(none)"
}

say "installing / checking Tansu and confluent-kafka"
tansu_install || die "could not install tansu / confluent-kafka"
tansu_start || die "tansu did not start"
for t in "${TOPICS[@]}"; do
  tansu_create_topic "$t" 3 || die "could not create topic $t"
done
# Every presence event also writes the contact's state there (kafka.latest).
tansu_create_topic whatsapp.presence.latest.v1 3 || die "could not create the latest-presence topic"
ok "tansu at $TANSU_BOOTSTRAP, topics ${TOPICS[*]}"

e2e_start_bridge

# ------------------------------------------------------------ post
post_rc=0
timeout 300 "$TANSU_PYTHON" - "$HTTP" "$TOKEN" "$GOLDEN" "$WORK/posted.json" \
  >"$WORK/post.out" 2>&1 <<'PY' || post_rc=$?
import glob, gzip, json, os, random, sys, urllib.error, urllib.request

base, token, golden, out = sys.argv[1:5]
TOPIC = {"PresenceChatCallback": "whatsapp.presence.v1", "ReceivedCallback": "whatsapp.messages.v1",
         "MessageStatusCallback": "whatsapp.message-status.v1", "DeliveryCallback": "whatsapp.delivery.v1",
         "ConnectedCallback": "whatsapp.connection.v1", "DisconnectedCallback": "whatsapp.connection.v1"}
posted, failures = [], []

def post(body, gz=False):
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if gz:
        data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
    req = urllib.request.Request(f"{base}/webhooks/zapi?token={token}", data=data,
                                 method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:300]

def accept(body, what, gz=False):
    status, answer = post(body, gz)
    if status != 200:
        failures.append(f"{what}: HTTP {status} {answer!r}")
        return
    kind = "ReceivedCallback" if body["type"] == "ReceivedCallBack" else body["type"]
    posted.append({"id": answer["id"], "what": what, "topic": TOPIC[kind]})

# 1. Every documented example of every kind.
examples = sorted(glob.glob(os.path.join(golden, "*.input.json")) +
                  glob.glob(os.path.join(golden, "*", "*.input.json")))
for path in examples:
    accept(json.load(open(path)), os.path.relpath(path, golden))
print(f"examples accepted: {len(posted)}/{len(examples)}")

# 2. A mixed stream: three chats' messages, statuses and deliveries interleaved
# with presence and connection events, a third of them gzip'd.
rng = random.Random(20261202)
chats = [f"55119876510{i:02d}" for i in range(3)]
stream = []
for n in range(60):
    chat = rng.choice(chats)
    kind = rng.choice(["ReceivedCallback", "MessageStatusCallback", "DeliveryCallback",
                       "PresenceChatCallback", "ConnectedCallback", "DisconnectedCallback"])
    body = {"type": kind, "instanceId": "e2e.instance"}
    if kind == "ReceivedCallback":
        body |= {"phone": chat, "fromMe": False, "momment": 1764000000000 + n,
                 "messageId": f"M{n:03d}", "status": "RECEIVED", "text": {"message": f"m{n}"}}
    elif kind == "MessageStatusCallback":
        body |= {"phone": chat, "status": "READ", "ids": [f"M{n:03d}"], "momment": 1764000000000 + n}
    elif kind == "DeliveryCallback":
        body |= {"phone": chat, "messageId": f"M{n:03d}", "zaapId": f"Z{n:03d}"}
    elif kind == "PresenceChatCallback":
        body |= {"phone": chat, "status": "COMPOSING", "lastSeen": None}
    else:
        body |= {"momment": 1764000000000 + n, ("connected" if kind == "ConnectedCallback" else "disconnected"): True}
    accept(body, f"stream #{n} {kind}", gz=(n % 3 == 0))
print(f"total accepted: {len(posted)}")
json.dump(posted, open(out, "w"))
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
PY
cat "$WORK/post.out" >&2
if [[ $post_rc -eq 0 ]]; then ok "posted every example and the mixed stream (200 each)"; else fail "posting (see above)"; fi

# ------------------------------------------------------------ read back
for t in "${TOPICS[@]}"; do
  rc=0
  timeout 90 "$TANSU_PYTHON" "$CI_DIR/kafka_admin.py" consume -b "$TANSU_BOOTSTRAP" -t "$t" \
    --timeout 60 >"$WORK/$t.out" 2>"$WORK/$t.err" || rc=$?
  [[ $rc -eq 0 ]] || fail "consumer of $t failed ($rc): $(tail -n 3 "$WORK/$t.err")"
done
verify_rc=0
timeout 60 "$TANSU_PYTHON" - "$WORK" "$WORK/posted.json" "${TOPICS[@]}" <<'PY' || verify_rc=$?
import json, os, sys
work, posted = sys.argv[1], json.load(open(sys.argv[2]))
topics = sys.argv[3:]
by_id = {p["id"]: p for p in posted}
fails = []
seen, order = {}, {}
for t in topics:
    recs = [json.loads(l) for l in open(os.path.join(work, f"{t}.out")) if l.strip()]
    for r in sorted(recs, key=lambda r: (r["partition"], r["offset"])):
        v, h = r["value"], r["headers"]
        rid = v.get("id")
        if v.get("type") == "io.presence-bridge.zapi.chat-presence-expired.v1":
            # A typing expiry, the bridge's own event (.ci/e2e-state.sh checks
            # them): it must expire an event answered 200, on its topic.
            cause = by_id.get((v.get("data") or {}).get("causeId"))
            if cause is None or cause["topic"] != t:
                fails.append(f"{t}: expiry {rid} of an unknown event")
            continue
        seen[rid] = seen.get(rid, 0) + 1
        p = by_id.get(rid)
        if p is None:
            fails.append(f"{t}: id {rid} never answered 200"); continue
        if p["topic"] != t:
            fails.append(f"{p['what']}: on {t}, expected {p['topic']}")
        if not r["key"] or r["key"] != v.get("partitionkey"):
            fails.append(f"{p['what']}: key {r['key']!r} != partitionkey {v.get('partitionkey')!r}")
        if h.get("event-type") != v.get("type") or h.get("event-id") != rid:
            fails.append(f"{p['what']}: headers {h} do not match the envelope")
        order.setdefault((t, r["key"]), []).append((r["partition"], posted.index(p)))
missing = [p["what"] for p in posted if p["id"] not in seen]
dups = [i for i, n in seen.items() if n > 1]
if missing:
    fails.append(f"{len(missing)} accepted event(s) missing, e.g. {missing[:3]}")
if dups:
    fails.append(f"{len(dups)} event(s) more than once")
for (t, key), got in order.items():
    if len({part for part, _ in got}) > 1:
        fails.append(f"{t} key {key}: spread over partitions")
    elif [i for _, i in got] != sorted(i for _, i in got):
        fails.append(f"{t} key {key}: Kafka order differs from posting order")
for f in fails[:20]:
    print("FAIL", f)
print(f"{len(posted)} accepted, {sum(seen.values())} read back over {len(topics)} topics, {len(order)} keys")
sys.exit(1 if fails else 0)
PY
if [[ $verify_rc -eq 0 ]]; then ok "read back: every event once, on its kind's topic, keyed, in order per key"; else fail "read-back verification (see FAIL lines above)"; fi

e2e_stop_bridge
exit 0
