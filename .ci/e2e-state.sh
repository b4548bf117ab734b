#!/usr/bin/env bash
# End-to-end test of presence as state against a real Kafka-compatible broker
# (Tansu, in memory, on loopback): the compacted latest-presence topic, typing
# that expires, and the consumer example that reads it.
#
#   .ci/e2e-state.sh path/to/presence-bridge
#
# Starts Tansu with the five event topics (3 partitions each) and the
# latest-presence topic whatsapp.presence.latest.v1 created with
# cleanup.policy=compact (read back with DescribeConfigs), runs `BINARY serve`
# with presence.typing_ttl = 2s and one instance's latest topic (e2e.latest.delete,
# kafka.latest.topic_by_instance) created with cleanup.policy=delete; its start-up
# check must report presence_bridge_latest_topic_compacted 1 for the compacted
# topic and 0 for the other, with an error line in the log. Then:
#  (b) posts a COMPOSING with no follow-up: the expiry event (chat-presence-
#      expired, keyed by the phone, causeId = the COMPOSING) on the presence
#      topic and a PAUSED state (reason typing_expired) on the latest topic
#      must arrive within TTL + 5 s of the 200 (and not before the TTL); the
#      times are printed;
#  (a) posts a seeded mixed stream (E2E_SEED) of the five statuses over several
#      (instance, phone) pairs: the newest record per key on the latest topic
#      is the last status posted (reason reported, eventId = its 200's id), or,
#      when that was COMPOSING/RECORDING, PAUSED typing_expired right after it;
#      every record keyed <instanceId>:<phone> = partitionkey, one partition
#      per key; every posted event once on the presence topic, keyed by phone;
#  (c) runs the consumer example (examples/latest_presence.rs, binary
#      E2E_EXAMPLE, default next to BINARY: target/debug/examples/) with
#      --until-idle: its final state lines equal the newest record per key, and
#      no full phone appears in its output;
#  (d) `BINARY presence forget --instance I --phone P`: a null-value record with
#      that key arrives on the latest topic, and the example then prints
#      `forget` for it and leaves it out of its state.
# Then SIGTERMs the bridge (must exit 0). Last line: "e2e-state: PASS ..." or
# "e2e-state: FAIL ..."; exit status 0 only on PASS.
#
# Knobs (env): E2E_TIMEOUT (whole run, s, default 600), E2E_READY_TIMEOUT (60),
#   E2E_STOP_TIMEOUT (30), E2E_SEED (mixed stream, default 20261202),
#   E2E_EXAMPLE (path of the latest_presence example binary), E2E_KEEP (keep
#   work dir), RUST_LOG (default info).
# shellcheck disable=SC2317  # functions run from the EXIT trap
set -euo pipefail

E2E_TIMEOUT="${E2E_TIMEOUT:-600}"
E2E_READY_TIMEOUT="${E2E_READY_TIMEOUT:-60}"
E2E_STOP_TIMEOUT="${E2E_STOP_TIMEOUT:-30}"
E2E_SEED="${E2E_SEED:-20261202}"
TTL_S=2
TOPICS=(whatsapp.presence.v1 whatsapp.messages.v1 whatsapp.message-status.v1 whatsapp.delivery.v1 whatsapp.connection.v1)
LATEST=whatsapp.presence.latest.v1

CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=e2e-lib.sh
source "$CI_DIR/e2e-lib.sh"
e2e_init e2e-state "$@"
EXAMPLE="${E2E_EXAMPLE:-$(dirname "$BINARY")/examples/latest_presence}"
[[ -x "$EXAMPLE" ]] || die "example binary $EXAMPLE missing (cargo build --example latest_presence)"
mkdir -p "$WORK/spool"
BRIDGE_LOG="$WORK/bridge.log"

e2e_dump_logs() {
  echo "================ bridge log ($BRIDGE_LOG, last 200 lines) ================"
  tail -n 200 "$BRIDGE_LOG" 2>/dev/null || echo "(none)"
  local f
  for f in "$WORK"/example*.out "$WORK"/example*.err; do
    [[ -f "$f" ]] || continue
    echo "================ $f (last 40 lines) ================"
    tail -n 40 "$f"
  done
}

say "installing / checking Tansu and confluent-kafka"
tansu_install || die "could not install tansu / confluent-kafka"
tansu_start || die "tansu did not start"
for t in "${TOPICS[@]}"; do
  tansu_create_topic "$t" 3 || die "could not create topic $t"
done

# The latest topic, compacted, as compose and Kubernetes create it; then what
# DescribeConfigs says about it (Tansu 0.6.0 keeps the configs given at
# creation and answers DescribeConfigs with them; it does not compact: every
# record, tombstones too, stays readable).
rc=0
timeout 60 "$TANSU_PYTHON" - "$TANSU_BOOTSTRAP" "$LATEST" >"$WORK/create-latest.out" 2>&1 <<'PY' || rc=$?
import sys
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
bs, topic = sys.argv[1:3]
a = AdminClient({"bootstrap.servers": bs})
want = {"cleanup.policy": "compact", "segment.ms": "3600000", "min.compaction.lag.ms": "60000",
        "max.compaction.lag.ms": "86400000", "delete.retention.ms": "86400000"}
a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1, config=want)])[topic].result(30)
# The latest topic of one instance (kafka.latest.topic_by_instance), NOT compacted:
# the bridge's start-up check must say so.
a.create_topics([NewTopic("e2e.latest.delete", num_partitions=3, replication_factor=1,
                          config={"cleanup.policy": "delete"})])["e2e.latest.delete"].result(30)
res = ConfigResource(ConfigResource.Type.TOPIC, topic)
got = {k: v.value for k, v in a.describe_configs([res])[res].result(30).items()}
print(f"DescribeConfigs {topic}: " + ", ".join(f"{k}={got.get(k)}" for k in want))
sys.exit(0 if got.get("cleanup.policy") == "compact" else 1)
PY
cat "$WORK/create-latest.out" >&2
[[ $rc -eq 0 ]] || die "could not create $LATEST with cleanup.policy=compact (or DescribeConfigs does not say so)"
ok "tansu at $TANSU_BOOTSTRAP, topics ${TOPICS[*]} and $LATEST (cleanup.policy=compact per DescribeConfigs)"

export PRESENCE_BRIDGE__PRESENCE__TYPING_TTL="${TTL_S}s"
export PRESENCE_BRIDGE__KAFKA__LATEST__TOPIC="$LATEST"
# Instance ids in environment keys are lowercased: "e2edel" has its own, uncompacted, topic.
export PRESENCE_BRIDGE__KAFKA__LATEST__TOPIC_BY_INSTANCE__E2EDEL=e2e.latest.delete
e2e_start_bridge

# ------------------------------------------------------------ the compaction check at start
# presence_bridge_latest_topic_compacted{topic}: 1 for the compacted topic, 0 for the other.
compaction_ok=""
for _ in $(seq 1 100); do
  curl -fsS --max-time 2 "$ADMIN/metrics" >"$WORK/metrics.txt" 2>/dev/null || true
  if grep -qx "presence_bridge_latest_topic_compacted{topic=\"$LATEST\"} 1" "$WORK/metrics.txt" \
    && grep -qx 'presence_bridge_latest_topic_compacted{topic="e2e.latest.delete"} 0' "$WORK/metrics.txt"; then
    compaction_ok=1; break
  fi
  sleep 0.3
done
if [[ -n "$compaction_ok" ]] && grep -q 'NOT compacted' "$BRIDGE_LOG"; then
  ok "compaction check at start: $LATEST compacted (1), e2e.latest.delete not (0, and an error line in the log)"
else
  fail "compaction check: $(grep '^presence_bridge_latest_topic_compacted' "$WORK/metrics.txt" | tr '\n' ' ')(want $LATEST 1, e2e.latest.delete 0, and 'NOT compacted' in the log)"
fi

# ------------------------------------------------------------ (b) expiry, then (a) mixed stream
rc=0
timeout 240 "$TANSU_PYTHON" - "$TANSU_BOOTSTRAP" "$HTTP" "$TOKEN" "$WORK" "$TTL_S" "$E2E_SEED" \
  >"$WORK/state.out" 2>&1 <<'PY' || rc=$?
import calendar, json, os, random, sys, time, urllib.error, urllib.request
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

bs, base, token, work, ttl, seed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
PRES, LATEST = "whatsapp.presence.v1", "whatsapp.presence.latest.v1"
T_STATE = "io.presence-bridge.zapi.presence-state.v1"
T_EXPIRED = "io.presence-bridge.zapi.chat-presence-expired.v1"
TYPING = ("COMPOSING", "RECORDING")
fails = []

def fail(msg):
    fails.append(msg)
    print("FAIL", msg, flush=True)

def ms(ts):   # "2026-12-02T05:00:00.123Z" -> Unix ms
    head, frac = ts.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S")) * 1000 + int(frac)

def post(body):
    req = urllib.request.Request(f"{base}/webhooks/zapi?token={token}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return json.loads(r.read())["id"]
    except urllib.error.HTTPError as e:
        raise SystemExit(f"FAIL posting {body['status']}: HTTP {e.code} {e.read()[:200]!r}")

c = Consumer({"bootstrap.servers": bs, "group.id": f"e2e-state-{os.getpid()}",
              "enable.auto.commit": False, "auto.offset.reset": "earliest"})
md = c.list_topics(timeout=10)
c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in (PRES, LATEST) for p in md.topics[t].partitions])
recs = []

def pump(deadline, done):
    """Reads records until done() or the deadline; True if done."""
    while not done():
        if time.monotonic() > deadline:
            return False
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(m.error())
        v = m.value()
        headers = {k: (hv.decode() if hv is not None else None) for k, hv in (m.headers() or [])}
        recs.append({"topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
                     "key": m.key().decode() if m.key() is not None else None,
                     "value": json.loads(v) if v is not None else None, "headers": headers,
                     "at": time.monotonic()})
    return True

def find(topic, pred):
    return next((r for r in recs if r["topic"] == topic and r["value"] is not None and pred(r)), None)

# Connected and caught up (the topics are empty) before the clock starts.
pump(time.monotonic() + 2, lambda: False)

# (b) A COMPOSING with no follow-up.
inst_b, phone_b = "e2e.expiry", "5511987659977"
key_b = f"{inst_b}:{phone_b}"
cid = post({"type": "PresenceChatCallback", "phone": phone_b, "status": "COMPOSING",
            "lastSeen": None, "instanceId": inst_b})
t200 = time.monotonic()
exp_ev = lambda: find(PRES, lambda r: r["value"]["type"] == T_EXPIRED and r["value"]["data"]["causeId"] == cid)
paused = lambda: find(LATEST, lambda r: r["key"] == key_b and r["value"]["data"]["reason"] == "typing_expired")
pump(t200 + ttl + 30, lambda: exp_ev() is not None and paused() is not None)
e, p = exp_ev(), paused()
if e is None or p is None:
    fail(f"(b) no expiry within {ttl + 30:.0f}s of the 200: expiry event {'seen' if e else 'missing'}, "
         f"PAUSED state {'seen' if p else 'missing'}")
else:
    de, dp = e["at"] - t200, p["at"] - t200
    print(f"(b) TTL {ttl:.0f}s: expiry event {de:.3f}s after the 200, PAUSED state {dp:.3f}s after the 200")
    for what, d in (("expiry event", de), ("PAUSED state", dp)):
        if d > ttl + 5:
            fail(f"(b) {what} arrived {d:.3f}s after the 200: over TTL + 5s")
        if d < ttl - 0.5:
            fail(f"(b) {what} arrived {d:.3f}s after the 200: before the TTL")
    ed = e["value"]["data"]
    if e["key"] != phone_b or e["value"].get("partitionkey") != phone_b:
        fail(f"(b) expiry event keyed {e['key']!r} (partitionkey {e['value'].get('partitionkey')!r}), want the phone")
    if (ed["status"], ed["previousStatus"], ed["reason"], ed["instanceId"], ed["phone"]) != \
            ("PAUSED", "COMPOSING", "typing_expired", inst_b, phone_b):
        fail(f"(b) expiry data {ed}")
    if ms(ed["expiredAt"]) - ms(ed["typingSince"]) != ttl * 1000:
        fail(f"(b) expiredAt - typingSince != TTL: {ed['typingSince']} .. {ed['expiredAt']}")
    pd = p["value"]["data"]
    if (pd["status"], pd["eventId"], p["value"].get("partitionkey")) != ("PAUSED", e["value"]["id"], key_b):
        fail(f"(b) PAUSED state {pd} (partitionkey {p['value'].get('partitionkey')!r}): want PAUSED, "
             f"eventId = the expiry's id {e['value']['id']}")
    comp = find(LATEST, lambda r: r["key"] == key_b and r["value"]["data"]["eventId"] == cid)
    if comp is None:
        fail("(b) no COMPOSING state for the typing event on the latest topic")
    else:
        cd = comp["value"]["data"]
        if cd["status"] != "COMPOSING" or cd["reason"] != "reported" or cd["typingExpiresAt"] is None \
                or ms(cd["typingExpiresAt"]) - ms(cd["since"]) != ttl * 1000:
            fail(f"(b) COMPOSING state {cd}: want reason reported, typingExpiresAt = since + TTL")
        if (comp["partition"], comp["offset"]) >= (p["partition"], p["offset"]) or comp["partition"] != p["partition"]:
            fail("(b) the PAUSED state is not after the COMPOSING one in its partition")
    if not fails:
        print("(b) ok: expiry event keyed by the phone, PAUSED typing_expired state after the COMPOSING one")

# (a) A seeded mixed stream over several (instance, phone) pairs.
rng = random.Random(seed)
instances = ["e2e.a", "e2e.b", "e2e.c"]
phones = ["5511987650011", "5511987650022", "5511987650033", "5511987650044", "120363019502650977-group"]
keys = [(i, ph) for i in instances for ph in phones]
order = keys + [rng.choice(keys) for _ in range(75)]
rng.shuffle(order)
statuses = ["AVAILABLE", "UNAVAILABLE", "COMPOSING", "PAUSED", "RECORDING"]
posted, last = [], {}
for inst, ph in order:
    st = rng.choice(statuses)
    body = {"type": "PresenceChatCallback", "phone": ph, "status": st, "instanceId": inst,
            "lastSeen": 1764000000000 + len(posted) if st == "UNAVAILABLE" else None}
    eid = post(body)
    posted.append({"id": eid, "key": f"{inst}:{ph}", "phone": ph, "status": st})
    last[f"{inst}:{ph}"] = posted[-1]
print(f"(a) seed {seed}: {len(posted)} events posted over {len(last)} (instance, phone) pairs, "
      f"{sum(p['status'] in TYPING for p in last.values())} of them left typing")

def settled():
    for k, p in last.items():
        if find(LATEST, lambda r: r["key"] == k and r["value"]["data"]["eventId"] == p["id"]) is None:
            return False
        if p["status"] in TYPING:
            ex = find(PRES, lambda r: r["value"]["type"] == T_EXPIRED and r["value"]["data"]["causeId"] == p["id"])
            if ex is None or find(LATEST, lambda r: r["key"] == k and r["value"]["data"]["eventId"] == ex["value"]["id"]) is None:
                return False
    return len([r for r in recs if r["topic"] == PRES and r["value"]["type"] != T_EXPIRED]) >= len(posted) + 1
if not pump(time.monotonic() + ttl + 60, settled):
    fail("(a) not every state (and expiry of the typing ones) arrived within TTL + 60s")
pump(time.monotonic() + 1, lambda: False)   # anything late (a second expiry would show here)

# Newest record per key; every record keyed and in one partition per key.
newest, prev, parts = {}, {}, {}
for r in sorted((r for r in recs if r["topic"] == LATEST), key=lambda r: (r["partition"], r["offset"])):
    k, v = r["key"], r["value"]
    parts.setdefault(k, set()).add(r["partition"])
    if v is None:
        fail(f"(a) unexpected tombstone for {k}")
        continue
    d = v["data"]
    if k != f"{d['instanceId']}:{d['phone']}" or v.get("partitionkey") != k or v["type"] != T_STATE:
        fail(f"(a) record key {k!r}, partitionkey {v.get('partitionkey')!r}, type {v['type']}, data {d['instanceId']}:{d['phone']}")
    if r["headers"].get("ce_type") not in (None, T_STATE):
        fail(f"(a) {k}: ce_type header {r['headers'].get('ce_type')!r}")
    prev[k], newest[k] = newest.get(k), r
for k, ps in parts.items():
    if len(ps) > 1:
        fail(f"(a) {k} spread over partitions {sorted(ps)}")
for k, p in last.items():
    n = newest.get(k)
    if n is None:
        fail(f"(a) {k}: no state at all"); continue
    d = n["value"]["data"]
    if p["status"] in TYPING:
        ex = find(PRES, lambda r: r["value"]["type"] == T_EXPIRED and r["value"]["data"]["causeId"] == p["id"])
        if (d["status"], d["reason"]) != ("PAUSED", "typing_expired") or ex is None or d["eventId"] != ex["value"]["id"]:
            fail(f"(a) {k}: last posted {p['status']}, newest state {d['status']}/{d['reason']}: want PAUSED typing_expired after it")
        pd = prev[k]["value"]["data"] if prev.get(k) else None
        if pd is None or (pd["status"], pd["reason"], pd["eventId"]) != (p["status"], "reported", p["id"]):
            fail(f"(a) {k}: the state before the expiry is {pd}, want {p['status']} reported {p['id']}")
        if ex is not None and ex["key"] != p["phone"]:
            fail(f"(a) {k}: expiry event keyed {ex['key']!r}, want the phone")
    elif (d["status"], d["reason"], d["eventId"], d["typingExpiresAt"]) != (p["status"], "reported", p["id"], None):
        fail(f"(a) {k}: newest state {d['status']}/{d['reason']} {d['eventId']}, last posted {p['status']} {p['id']}")
# The presence topic: every posted event once, keyed by its phone.
seen = {}
for r in recs:
    if r["topic"] == PRES and r["value"]["type"] != T_EXPIRED:
        seen[r["value"]["id"]] = seen.get(r["value"]["id"], 0) + 1
        if r["key"] != r["value"]["data"]["phone"]:
            fail(f"(a) presence event keyed {r['key']!r}, not by its phone")
missing = [p for p in posted if seen.get(p["id"]) != 1]
if missing:
    fail(f"(a) {len(missing)} posted event(s) not exactly once on the presence topic")
expiries = [r for r in recs if r["topic"] == PRES and r["value"]["type"] == T_EXPIRED]
print(f"(a) latest topic: {sum(1 for r in recs if r['topic'] == LATEST)} records, {len(newest)} keys; "
      f"presence topic: {len(seen)} events and {len(expiries)} expiries")

# What the example must print at the end: the newest state per key, masked.
def mask(ph):
    n = len(ph)
    return "".join(ch if n > 6 and (i < 2 or i + 2 >= n) else "*" for i, ch in enumerate(ph))
lines = sorted(f"state {n['value']['data']['instanceId']} {mask(n['value']['data']['phone'])} "
               f"{n['value']['data']['status']} reason={n['value']['data']['reason']}" for n in newest.values())
json.dump({"state": lines, "phones": sorted({p["phone"] for p in posted} | {phone_b}),
           "forget": {"instance": "e2e.a", "phone": "5511987650011",
                      "line": f"forget e2e.a {mask('5511987650011')}"}},
          open(os.path.join(work, "expected.json"), "w"))
c.close()
print(f"{len(fails)} failure(s)")
sys.exit(1 if fails else 0)
PY
cat "$WORK/state.out" >&2
if [[ $rc -eq 0 ]]; then
  ok "(b) typing expired within TTL + 5s: $(grep -o 'expiry event [0-9.]*s after the 200, PAUSED state [0-9.]*s after the 200' "$WORK/state.out")"
  ok "(a) mixed stream: the newest state per key is the last status posted (or its expiry)"
else
  die "presence state checks (see FAIL lines above)"
fi

# ------------------------------------------------------------ (c) the consumer example
# check_example N: runs the example until idle, compares its state lines with
# expected.json (minus the forgotten contact when N is 2).
check_example() {
  local n="$1" rc=0
  timeout 120 "$EXAMPLE" "$TANSU_BOOTSTRAP" "$LATEST" --until-idle 3 \
    >"$WORK/example$n.out" 2>"$WORK/example$n.err" || rc=$?
  [[ $rc -eq 0 ]] || { fail "($2) example exited $rc: $(tail -n 3 "$WORK/example$n.err")"; return 1; }
  "$TANSU_PYTHON" - "$WORK/expected.json" "$WORK/example$n.out" "$WORK/example$n.err" "$n" <<'PY'
import json, sys
exp = json.load(open(sys.argv[1]))
out = open(sys.argv[2]).read()
text = out + open(sys.argv[3]).read()
fails = []
want = exp["state"]
if sys.argv[4] == "2":
    gone = exp["forget"]["line"].replace("forget ", "state ", 1) + " "
    want = [l for l in want if not l.startswith(gone)]
    if exp["forget"]["line"] not in out.splitlines():
        fails.append(f"no line {exp['forget']['line']!r}")
got = sorted(l for l in out.splitlines() if l.startswith("state "))
if got != want:
    fails.append(f"state lines differ: missing {sorted(set(want) - set(got))[:5]}, extra {sorted(set(got) - set(want))[:5]}")
if f"contacts {len(want)}" not in out.splitlines():
    fails.append(f"no line 'contacts {len(want)}'")
if not any(l.startswith("change ") for l in out.splitlines()):
    fails.append("no change line")
leaked = [p for p in exp["phones"] if p in text]
if leaked:
    fails.append(f"{len(leaked)} full phone number(s) in its output")
for f in fails:
    print("FAIL", f)
print(f"example: {len(got)} contacts, {sum(l.startswith('change ') for l in out.splitlines())} change lines")
sys.exit(1 if fails else 0)
PY
}
if check_example 1 c >&2; then
  ok "(c) the example's state equals the newest record per key, phones masked"
else
  fail "(c) the example's output does not match the latest topic (see above)"
fi

# ------------------------------------------------------------ (d) a tombstone
read -r F_INSTANCE F_PHONE < <("$TANSU_PYTHON" -c 'import json, sys
f = json.load(open(sys.argv[1]))["forget"]; print(f["instance"], f["phone"])' "$WORK/expected.json")
rc=0
timeout 60 "$BINARY" presence forget --instance "$F_INSTANCE" --phone "$F_PHONE" --timeout 30s \
  >"$WORK/forget.out" 2>"$WORK/forget.err" || rc=$?
say "presence forget: exit $rc: $(cat "$WORK/forget.out" "$WORK/forget.err" | tail -n 3)"
if [[ $rc -ne 0 ]]; then
  fail "(d) presence forget exited $rc"
elif grep -q "$F_PHONE" "$WORK/forget.out" "$WORK/forget.err"; then
  fail "(d) presence forget printed the full phone"
else
  rc=0
  timeout 90 "$TANSU_PYTHON" "$CI_DIR/kafka_admin.py" consume -b "$TANSU_BOOTSTRAP" -t "$LATEST" \
    --timeout 60 >"$WORK/latest-after.out" 2>"$WORK/latest-after.err" || rc=$?
  [[ $rc -eq 0 ]] || fail "(d) reading $LATEST back failed ($rc): $(tail -n 3 "$WORK/latest-after.err")"
  if "$TANSU_PYTHON" - "$WORK/latest-after.out" "$F_INSTANCE:$F_PHONE" <<'PY' >&2; then
import json, sys
key = sys.argv[2]
mine = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
mine = sorted((r for r in mine if r["key"] == key), key=lambda r: r["offset"])
if not mine or mine[-1]["value"] is not None:
    sys.exit(f"FAIL the newest record of the forgotten key is {mine[-1]['value'] if mine else 'missing'}, want a null value")
if len({r["partition"] for r in mine}) != 1:
    sys.exit("FAIL the tombstone is not on the partition of the key's states")
print(f"tombstone at partition {mine[-1]['partition']} offset {mine[-1]['offset']}, after {len(mine) - 1} state(s) of the key")
PY
    ok "(d) presence forget wrote a null-value record with the contact's key, on its partition"
  else
    fail "(d) no tombstone for the forgotten contact on $LATEST"
  fi
  if check_example 2 d >&2; then
    ok "(d) the example printed 'forget' for the contact and dropped it from its state"
  else
    fail "(d) the example still has the forgotten contact (see above)"
  fi
fi

e2e_stop_bridge
exit 0
