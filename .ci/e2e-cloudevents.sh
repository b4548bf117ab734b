#!/usr/bin/env bash
# End-to-end test of the CloudEvents content modes against a real
# Kafka-compatible broker (Tansu), read back by the official CloudEvents
# Python SDK as a real consumer.
#
#   .ci/e2e-cloudevents.sh path/to/presence-bridge
#
# Starts Tansu with the five event topics and a rejected-input topic, runs
# `BINARY serve` with kafka.content_mode = "binary" (presence, message status,
# connection) and "structured" overrides for received messages, deliveries
# and the rejected-input captures, posts every documented example of every
# callback kind (crates/events/tests/golden), a few presence events and one
# invalid request (captured), then reads every record back with
# confluent-kafka and converts it with the SDK (`cloudevents` 2.x,
# `cloudevents.core.bindings.kafka`): the auto-detecting `from_kafka` AND the
# explicit `from_binary` / `from_structured` of the topic's mode. Asserts, for
# every record: the mode on the wire (no `ce_` header in structured mode; the
# value is the data in binary mode), every attribute (specversion, id = the id
# the bridge answered, source, type, time, datacontenttype, dataschema = the
# published schema's $id), the data (equal to what was posted), that the
# `partitionkey` extension is present and equals the Kafka key (and equals the
# bridge's own partitionkey for the event kinds), and that both readers agree.
# A control record laid out the old way (structured value plus ce_id/ce_type
# headers) must make `from_kafka` fail, so the check cannot pass vacuously.
# The records the bridge derives are read the same way: the typing expiries
# (presence.typing_ttl 1s) on the binary presence topic, and every state on
# the latest-presence topic (structured): SDK attributes, the partitionkey
# extension equal to the key, the published schema, and each points at an
# event the bridge answered 200 (an expiry's causeId, a state's eventId).
# Last line: "e2e-cloudevents: PASS ..." or "e2e-cloudevents: FAIL ...";
# exit status 0 only on PASS.
#
# Python clients: a venv (cached in $CE_VENV) with cloudevents==$CLOUDEVENTS_VERSION
# and confluent-kafka from PyPI.
# Knobs (env): E2E_TIMEOUT (whole run, s, default 600), E2E_READY_TIMEOUT (60),
#   E2E_STOP_TIMEOUT (30), E2E_KEEP (keep work dir), RUST_LOG (default info),
#   CLOUDEVENTS_VERSION (2.2.0), CE_VENV.
# shellcheck disable=SC2317  # functions run from the EXIT trap
set -euo pipefail

E2E_TIMEOUT="${E2E_TIMEOUT:-600}"
E2E_READY_TIMEOUT="${E2E_READY_TIMEOUT:-60}"
E2E_STOP_TIMEOUT="${E2E_STOP_TIMEOUT:-30}"
# 2.2.0 is the first release with cloudevents.core.bindings.kafka (from_kafka,
# from_binary, from_structured); pinned so a new SDK cannot change CI unseen.
CLOUDEVENTS_VERSION="${CLOUDEVENTS_VERSION:-2.2.0}"
CE_VENV="${CE_VENV:-${HOME:-/root}/.cache/presence-bridge/cloudevents-venv-$CLOUDEVENTS_VERSION}"
REJECTED_TOPIC=whatsapp.rejected-input.v1
LATEST_TOPIC=whatsapp.presence.latest.v1
TOPICS=(whatsapp.presence.v1 whatsapp.messages.v1 whatsapp.message-status.v1 whatsapp.delivery.v1 whatsapp.connection.v1 "$REJECTED_TOPIC")

CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GOLDEN="$(cd "$CI_DIR/../crates/events/tests/golden" && pwd)"
SCHEMAS="$(cd "$CI_DIR/../crates/events/schemas" && pwd)"

# The venv first: every Python of this run (tansu.sh's helpers too) is its python.
if [[ ! -x "$CE_VENV/bin/python" ]] \
  || ! "$CE_VENV/bin/python" -c 'import cloudevents.core.bindings.kafka, confluent_kafka' 2>/dev/null; then
  echo "[e2e-cloudevents] creating venv $CE_VENV (cloudevents==$CLOUDEVENTS_VERSION, confluent-kafka)" >&2
  rm -rf "$CE_VENV"
  mkdir -p "$(dirname "$CE_VENV")"
  python3 -m venv "$CE_VENV" >&2 || { echo "e2e-cloudevents: FAIL (python3 -m venv failed: install python3-venv)"; exit 1; }
  timeout 600 "$CE_VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "cloudevents==$CLOUDEVENTS_VERSION" "confluent-kafka>=2.6,<3" >&2 \
    || { rm -rf "$CE_VENV"; echo "e2e-cloudevents: FAIL (pip install into the venv failed)"; exit 1; }
fi
export TANSU_PYTHON="$CE_VENV/bin/python"

# shellcheck source=e2e-lib.sh
source "$CI_DIR/e2e-lib.sh"
e2e_init e2e-cloudevents "$@"
mkdir -p "$WORK/spool"
BRIDGE_LOG="$WORK/bridge.log"

e2e_dump_logs() {
  echo "================ bridge log ($BRIDGE_LOG, last 200 lines) ================"
  tail -n 200 "$BRIDGE_LOG" 2>/dev/null || echo "(none)"
}

say "installing / checking Tansu"
tansu_install || die "could not install tansu / confluent-kafka"
"$TANSU_PYTHON" -c 'import cloudevents.core.bindings.kafka as k; k.from_kafka; k.from_binary; k.from_structured' \
  || die "the venv's cloudevents has no cloudevents.core.bindings.kafka"
ok "cloudevents $("$TANSU_PYTHON" -c 'import importlib.metadata as m; print(m.version("cloudevents"))') in $CE_VENV"
tansu_start || die "tansu did not start"
for t in "${TOPICS[@]}" "$LATEST_TOPIC"; do
  tansu_create_topic "$t" 3 || die "could not create topic $t"
done
ok "tansu at $TANSU_BOOTSTRAP, topics ${TOPICS[*]} $LATEST_TOPIC"

# Binary by default; structured for messages, deliveries and captures.
export PRESENCE_BRIDGE__KAFKA__CONTENT_MODE=binary
export PRESENCE_BRIDGE__KAFKA__RECEIVED__CONTENT_MODE=structured
export PRESENCE_BRIDGE__KAFKA__DELIVERY__CONTENT_MODE=structured
export PRESENCE_BRIDGE__REJECTED__TOPIC="$REJECTED_TOPIC"
export PRESENCE_BRIDGE__REJECTED__CONTENT_MODE=structured
export PRESENCE_BRIDGE__KAFKA__LATEST__CONTENT_MODE=structured
export PRESENCE_BRIDGE__PRESENCE__TYPING_TTL=1s
e2e_start_bridge

# The effective modes, as check-config prints them.
if "$BINARY" check-config 2>/dev/null | "$TANSU_PYTHON" -c '
import json, sys
k = json.load(sys.stdin)
got = (k["kafka"]["content_mode"], k["kafka"]["received"]["content_mode"], k["kafka"]["message_status"]["content_mode"],
       k["kafka"]["delivery"]["content_mode"], k["kafka"]["connection"]["content_mode"], k["rejected"]["content_mode"])
want = ("binary", "structured", "binary", "structured", "binary", "structured")
sys.exit(0 if got == want else f"check-config shows {got}, want {want}")'; then
  ok "check-config shows each section's content mode"
else
  fail "check-config does not show the configured content modes"
fi

# ------------------------------------------------------------ post
post_rc=0
timeout 300 "$TANSU_PYTHON" - "$HTTP" "$TOKEN" "$GOLDEN" "$WORK/posted.json" \
  >"$WORK/post.out" 2>&1 <<'PY' || post_rc=$?
import glob, json, os, sys, urllib.error, urllib.request

base, token, golden, out = sys.argv[1:5]
posted, failures = [], []

def post(path, data):
    req = urllib.request.Request(f"{base}{path}?token={token}", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:300]

examples = sorted(glob.glob(os.path.join(golden, "*.input.json")) +
                  glob.glob(os.path.join(golden, "*", "*.input.json")))
for path in examples:
    raw = open(path, "rb").read()
    status, answer = post("/webhooks/zapi", raw)
    what = os.path.relpath(path, golden)
    if status != 200:
        failures.append(f"{what}: HTTP {status} {answer!r}")
        continue
    posted.append({"id": answer["id"], "what": what, "body": json.loads(raw),
                   "golden": path.replace(".input.json", ".expected.json")})
for n, status in enumerate(["AVAILABLE", "COMPOSING", "PAUSED", "RECORDING", "UNAVAILABLE"]):
    body = {"type": "PresenceChatCallback", "phone": f"554498765432{n}", "status": status,
            "instanceId": "e2e.instance", "lastSeen": None}
    code, answer = post("/webhooks/zapi/presence", json.dumps(body).encode())
    if code != 200:
        failures.append(f"presence #{n}: HTTP {code} {answer!r}")
        continue
    posted.append({"id": answer["id"], "what": f"presence #{n}", "body": body})
# One invalid request: captured on the rejected-input topic.
bad = b'{"type":"PresenceChatCallback","phone":"5544999999999","status":"PAUSED","instanceId":"e2e.instance","lastSeen":"yesterday"}'
code, answer = post("/webhooks/zapi/instances/e2e.instance/presence", bad)
if code != 400:
    failures.append(f"the invalid request got HTTP {code}, want 400")
else:
    posted.append({"id": None, "what": "rejected capture", "body": bad.decode(), "rejected": True})
print(f"accepted {len([p for p in posted if p['id']])} of {len(examples) + 5} events, 1 rejected")
json.dump(posted, open(out, "w"))
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
PY
cat "$WORK/post.out" >&2
if [[ $post_rc -eq 0 ]]; then ok "posted every example, presence events and one invalid request"; else fail "posting (see above)"; fi

# The typing events posted last for their contact expire after 1 s: wait for
# the first expiry itself (bounded), so the check below has some to read.
expired=0
for _ in $(seq 120); do
  expired="$(curl -s --max-time 3 "$ADMIN/metrics" | awk '$1 == "presence_bridge_typing_expired_total" { print $2 }')"
  [[ "${expired:-0}" != 0 ]] && break
  sleep 0.5
done
[[ "${expired:-0}" != 0 ]] && ok "typing expired: presence_bridge_typing_expired_total $expired" \
  || fail "no typing expiry within 60 s (presence_bridge_typing_expired_total ${expired:-absent})"

# ------------------------------------------------------------ read back with the SDK
verify_rc=0
timeout 240 "$TANSU_PYTHON" - "$TANSU_BOOTSTRAP" "$WORK/posted.json" "$SCHEMAS" >"$WORK/verify.out" 2>&1 <<'PY' || verify_rc=$?
import datetime, glob, json, os, sys, time

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, from_kafka, from_structured
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import Consumer, TopicPartition

bootstrap, posted_path, schemas = sys.argv[1:4]
posted = json.load(open(posted_path))
fails, oks = [], []

def bad(msg):
    fails.append(msg)
    if len(fails) <= 40:
        print("FAIL", msg, flush=True)

MODE = {"whatsapp.presence.v1": "binary", "whatsapp.messages.v1": "structured",
        "whatsapp.message-status.v1": "binary", "whatsapp.delivery.v1": "structured",
        "whatsapp.connection.v1": "binary", "whatsapp.rejected-input.v1": "structured",
        "whatsapp.presence.latest.v1": "structured"}
LATEST = "whatsapp.presence.latest.v1"
EXPIRED = "io.presence-bridge.zapi.chat-presence-expired.v1"
STATE = "io.presence-bridge.zapi.presence-state.v1"
derived = []
KIND = {"PresenceChatCallback": "whatsapp.presence.v1", "ReceivedCallback": "whatsapp.messages.v1",
        "ReceivedCallBack": "whatsapp.messages.v1", "MessageStatusCallback": "whatsapp.message-status.v1",
        "DeliveryCallback": "whatsapp.delivery.v1", "ConnectedCallback": "whatsapp.connection.v1",
        "DisconnectedCallback": "whatsapp.connection.v1"}
TYPE = {"PresenceChatCallback": "chat-presence", "ReceivedCallback": "message-received",
        "ReceivedCallBack": "message-received", "MessageStatusCallback": "message-status",
        "DeliveryCallback": "message-delivery", "ConnectedCallback": "instance-connected",
        "DisconnectedCallback": "instance-disconnected"}
# The published schemas: type -> $id (the envelope's dataschema).
SCHEMA_OF = {}
for p in glob.glob(os.path.join(schemas, "*.schema.json")):
    s = json.load(open(p))
    SCHEMA_OF[s["properties"]["type"]["const"]] = s["$id"]

def expected(p):
    if p.get("rejected"):
        return {"topic": "whatsapp.rejected-input.v1", "type": "io.presence-bridge.zapi.rejected-input.v1",
                "source": None, "instance": "e2e.instance"}
    kind = p["body"]["type"]
    return {"topic": KIND[kind], "type": f"io.presence-bridge.zapi.{TYPE[kind]}.v1",
            "source": f"/zapi/instances/{p['body']['instanceId']}", "instance": p["body"]["instanceId"]}

by_id = {p["id"]: p for p in posted if p["id"]}
want_per_topic = {}
for p in posted:
    t = expected(p)["topic"]
    want_per_topic[t] = want_per_topic.get(t, 0) + 1

def read_topic(topic, n):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-ce-{topic}-{time.time()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        md = c.list_topics(topic, timeout=20)
        parts = sorted(md.topics[topic].partitions)
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out, deadline = [], time.time() + 90
        while len(out) < n and time.time() < deadline:
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            out.append(m)
        # A little longer for extras (a record too many is a failure too).
        end = time.time() + 2
        while time.time() < end:
            m = c.poll(0.5)
            if m is not None and not m.error():
                out.append(m)
        return out
    finally:
        c.close()

fmt = JSONFormat()
started = min(datetime.datetime.fromtimestamp(os.stat(posted_path).st_mtime, datetime.timezone.utc),
              datetime.datetime.now(datetime.timezone.utc)) - datetime.timedelta(minutes=10)
now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)
seen = {}
checked = {"binary": 0, "structured": 0}
control_done = False
def event_type(m):
    return dict(m.headers() or []).get("event-type", b"").decode()

for topic, n in sorted(want_per_topic.items()):
    msgs = read_topic(topic, n)
    # Typing expiries are the bridge's own events on the presence topic:
    # checked below with the other derived records.
    derived += [(topic, m) for m in msgs if event_type(m) == EXPIRED]
    msgs = [m for m in msgs if event_type(m) != EXPIRED]
    if len(msgs) != n:
        bad(f"{topic}: {len(msgs)} records, want {n}")
    mode = MODE[topic]
    for m in msgs:
        where = f"{topic}[{m.partition()}@{m.offset()}]"
        headers = {k: v for k, v in (m.headers() or [])}
        key = m.key().decode() if m.key() is not None else None
        value = m.value()
        if value is None:
            bad(f"{where}: null value"); continue
        msg = KafkaMessage(headers=headers, key=m.key(), value=value)
        ce = sorted(h for h in headers if h.lower().startswith("ce_"))
        # The layout on the wire.
        if mode == "structured":
            if ce:
                bad(f"{where}: structured record with ce_ headers {ce}")
            if headers.get("content-type") != b"application/cloudevents+json; charset=UTF-8":
                bad(f"{where}: content-type {headers.get('content-type')!r}")
            envelope = json.loads(value)
            raw_data = envelope.get("data")
            own_pk = envelope.get("partitionkey")
        else:
            for h in ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_dataschema"):
                if h not in headers:
                    bad(f"{where}: binary record without {h} (has {sorted(headers)})")
            if headers.get("content-type") != b"application/json":
                bad(f"{where}: binary content-type {headers.get('content-type')!r}, want application/json")
            if "ce_datacontenttype" in headers:
                bad(f"{where}: datacontenttype must be content-type, not a ce_ header")
            raw_data = json.loads(value)
            if isinstance(raw_data, dict) and "specversion" in raw_data:
                bad(f"{where}: binary value is an envelope, not the data")
            own_pk = headers["ce_partitionkey"].decode() if "ce_partitionkey" in headers else None
        # The SDK: auto-detect and the explicit reader of the topic's mode.
        try:
            auto = from_kafka(msg, fmt)
        except Exception as e:
            bad(f"{where}: from_kafka failed: {type(e).__name__}: {e}"); continue
        try:
            explicit = (from_binary if mode == "binary" else from_structured)(msg, fmt)
        except Exception as e:
            bad(f"{where}: from_{mode} failed: {type(e).__name__}: {e}"); continue
        for name, ev in (("from_kafka", auto), (f"from_{mode}", explicit)):
            w = f"{where} {name}"
            eid = ev.get_id()
            p = by_id.get(eid)
            if p is None and ev.get_type() == "io.presence-bridge.zapi.rejected-input.v1":
                p = next((x for x in posted if x.get("rejected")), None)
            if p is None:
                bad(f"{w}: id {eid!r} was never answered 200"); continue
            exp = expected(p)
            if topic != exp["topic"]:
                bad(f"{w}: {p['what']} on {topic}, want {exp['topic']}")
            if ev.get_specversion() != "1.0":
                bad(f"{w}: specversion {ev.get_specversion()!r}")
            if ev.get_type() != exp["type"]:
                bad(f"{w}: type {ev.get_type()!r}, want {exp['type']!r}")
            if exp["source"] is not None and ev.get_source() != exp["source"]:
                bad(f"{w}: source {ev.get_source()!r}, want {exp['source']!r}")
            if exp["source"] is None and not ev.get_source().startswith("/"):
                bad(f"{w}: source {ev.get_source()!r}")
            if ev.get_datacontenttype() != "application/json":
                bad(f"{w}: datacontenttype {ev.get_datacontenttype()!r}")
            if ev.get_dataschema() != SCHEMA_OF.get(exp["type"]):
                bad(f"{w}: dataschema {ev.get_dataschema()!r}, want {SCHEMA_OF.get(exp['type'])!r}")
            t = ev.get_time()
            if not isinstance(t, datetime.datetime) or t.tzinfo is None or not (started <= t <= now):
                bad(f"{w}: time {t!r} not an aware datetime of this run")
            pk = ev.get_extension("partitionkey")
            if pk is None or pk != key:
                bad(f"{w}: partitionkey extension {pk!r} != Kafka key {key!r}")
            if not p.get("rejected") and own_pk != key:
                bad(f"{w}: the bridge's own partitionkey {own_pk!r} != Kafka key {key!r}")
            data = ev.get_data()
            if data != raw_data:
                bad(f"{w}: SDK data differs from the record's data")
            if not isinstance(data, dict):
                bad(f"{w}: data is not an object: {data!r:.100}"); continue
            if data.get("instanceId", exp["instance"]) != exp["instance"]:
                bad(f"{w}: data.instanceId {data.get('instanceId')!r}")
            body = p["body"]
            if p.get("golden"):
                # The golden record of this example: key, every attribute but
                # id and time, and the data, exactly.
                g = json.load(open(p["golden"]))
                if key != g["key"]:
                    bad(f"{w}: key {key!r}, golden {g['key']!r}")
                for a in ("specversion", "source", "type", "datacontenttype", "dataschema"):
                    got = {"specversion": ev.get_specversion(), "source": ev.get_source(), "type": ev.get_type(),
                           "datacontenttype": ev.get_datacontenttype(), "dataschema": ev.get_dataschema()}[a]
                    if got != g["value"][a]:
                        bad(f"{w}: {a} {got!r}, golden {g['value'][a]!r}")
                if pk != g["value"].get("partitionkey"):
                    bad(f"{w}: partitionkey {pk!r}, golden {g['value'].get('partitionkey')!r}")
                # The golden files are written with typing expiry off; here
                # a typing status carries typingExpiresAt = time + 1 s.
                data_cmp = dict(data)
                exp_at = data_cmp.pop("typingExpiresAt", None)
                if exp_at is not None:
                    want_at = t + datetime.timedelta(seconds=1)
                    if datetime.datetime.fromisoformat(exp_at.replace("Z", "+00:00")) != want_at:
                        bad(f"{w}: typingExpiresAt {exp_at!r}, want time + 1 s ({want_at.isoformat()})")
                if data_cmp != g["value"]["data"]:
                    bad(f"{w}: data differs from the golden file's: {data!r:.200}")
            elif p.get("rejected"):
                if data.get("body") != body or data.get("status") != 400:
                    bad(f"{w}: the capture's data {data!r:.200}")
            elif data.get("status") != body["status"] or data.get("phone") != body["phone"] or key != body["phone"]:
                bad(f"{w}: presence data {data!r:.200}, posted {body!r:.200}")
        if auto.get_attributes() != explicit.get_attributes() or auto.get_data() != explicit.get_data():
            bad(f"{where}: from_kafka and from_{mode} disagree")
        seen[auto.get_id()] = seen.get(auto.get_id(), 0) + 1
        checked[mode] += 1
        # Control: this structured record laid out the old way (ce_id and
        # ce_type headers next to the envelope) must fool the auto-detection.
        if mode == "structured" and not control_done:
            control_done = True
            old = dict(headers, ce_id=auto.get_id().encode(), ce_type=auto.get_type().encode())
            try:
                from_kafka(KafkaMessage(headers=old, key=m.key(), value=value), fmt)
                bad("control: from_kafka read a structured record with ce_ headers; this check proves nothing")
            except Exception as e:
                oks.append(f"control: the old layout (structured + ce_id/ce_type) fails from_kafka: {type(e).__name__}")

missing = [p["what"] for p in posted if p["id"] and p["id"] not in seen]
if missing:
    bad(f"{len(missing)} accepted events never read: {missing[:10]}")
dups = [i for i, c in seen.items() if c > 1]
if dups:
    bad(f"{len(dups)} ids read more than once: {dups[:5]}")
if checked["binary"] == 0 or checked["structured"] == 0 or not control_done:
    bad(f"not every mode was checked: {checked}, control {control_done}")
oks.append(f"{checked['binary']} binary and {checked['structured']} structured records read by "
           f"from_kafka and the explicit reader: every attribute, the data, partitionkey == key")

# ---- the derived records: typing expiries (presence topic) and states (latest topic)
presence_ids = {p["id"] for p in posted if p["id"] and not p.get("rejected")
                and p["body"].get("type") == "PresenceChatCallback"}
derived += [(LATEST, m) for m in read_topic(LATEST, len(presence_ids))]
reported, n_derived = set(), {EXPIRED: 0, STATE: 0}
for topic, m in derived:
    mode = MODE[topic]
    where = f"{topic}[{m.partition()}@{m.offset()}]"
    headers = {k: v for k, v in (m.headers() or [])}
    key = m.key().decode() if m.key() is not None else None
    if m.value() is None:
        bad(f"{where}: null value (no tombstone was asked for)"); continue
    msg = KafkaMessage(headers=headers, key=m.key(), value=m.value())
    raw_data = json.loads(m.value())
    if mode == "structured":
        raw_data = raw_data.get("data")
    try:
        auto = from_kafka(msg, fmt)
        explicit = (from_binary if mode == "binary" else from_structured)(msg, fmt)
    except Exception as e:
        bad(f"{where}: the SDK cannot read it: {type(e).__name__}: {e}"); continue
    if auto.get_attributes() != explicit.get_attributes() or auto.get_data() != explicit.get_data():
        bad(f"{where}: from_kafka and from_{mode} disagree")
    want_type = STATE if topic == LATEST else EXPIRED
    ev, data = auto, auto.get_data()
    if ev.get_type() != want_type:
        bad(f"{where}: type {ev.get_type()!r}, want {want_type}"); continue
    n_derived[want_type] += 1
    if ev.get_specversion() != "1.0" or ev.get_datacontenttype() != "application/json":
        bad(f"{where}: specversion {ev.get_specversion()!r}, datacontenttype {ev.get_datacontenttype()!r}")
    if ev.get_dataschema() != SCHEMA_OF.get(want_type):
        bad(f"{where}: dataschema {ev.get_dataschema()!r}, want {SCHEMA_OF.get(want_type)!r}")
    t = ev.get_time()
    if not isinstance(t, datetime.datetime) or t.tzinfo is None or not (started <= t <= now):
        bad(f"{where}: time {t!r} not an aware datetime of this run")
    if ev.get_extension("partitionkey") != key:
        bad(f"{where}: partitionkey extension {ev.get_extension('partitionkey')!r} != Kafka key {key!r}")
    if not isinstance(data, dict) or data != raw_data:
        bad(f"{where}: SDK data {data!r:.120} differs from the record's"); continue
    if ev.get_source() != f"/zapi/instances/{data.get('instanceId')}":
        bad(f"{where}: source {ev.get_source()!r} for instance {data.get('instanceId')!r}")
    if want_type == EXPIRED:
        if data.get("causeId") not in presence_ids:
            bad(f"{where}: causeId {data.get('causeId')!r} is no presence event answered 200")
        if key != data.get("phone"):
            bad(f"{where}: key {key!r} != data.phone")
    else:
        if key != f"{data.get('instanceId')}:{data.get('phone')}":
            bad(f"{where}: key {key!r} is not instanceId:phone")
        if data.get("reason") == "reported":
            if data.get("eventId") not in presence_ids:
                bad(f"{where}: eventId {data.get('eventId')!r} is no presence event answered 200")
            reported.add(data.get("eventId"))
        elif data.get("reason") != "typing_expired":
            bad(f"{where}: reason {data.get('reason')!r}")
if n_derived[EXPIRED] == 0:
    bad("no typing expiry read from the presence topic: the derived-record check proves nothing")
if presence_ids - reported:
    bad(f"{len(presence_ids - reported)} presence events without their state on {LATEST}")
oks.append(f"derived records read by from_kafka and from_binary/from_structured: "
           f"{n_derived[EXPIRED]} typing expiries (binary), {n_derived[STATE]} states (structured), "
           f"every presence event's state present")
for o in oks:
    print("OK", o)
sys.exit(1 if fails else 0)
PY
cat "$WORK/verify.out" >&2
if [[ $verify_rc -eq 0 ]]; then
  ok "the CloudEvents SDK reads every record of both modes"
else
  fail "the CloudEvents SDK check failed ($(grep -c '^FAIL' "$WORK/verify.out" || true) failures; first: $(grep -m1 '^FAIL' "$WORK/verify.out" || tail -n 1 "$WORK/verify.out"))"
fi

e2e_stop_bridge
