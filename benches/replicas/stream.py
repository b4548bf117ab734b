#!/usr/bin/env python3
"""Sender and counter of benches/replicas.sh (stdlib; confluent-kafka is only
needed by the script's consumer, kafka_admin.py).

    stream.py send --url http://LB --token T --seed S --instances I --phones P
                   --events N --duration D --threads W --out SENT.json
        A seeded stream of PresenceChatCallback webhooks: I instances with P
        phones each (a phone belongs to one instance), N events per phone,
        posted to /webhooks/zapi/instances/{id}/presence through the load
        balancer. Per phone the events are posted one after another (the next
        only once the previous one answered), so the intended order is the
        posting order: event k of a phone carries lastSeen = BASE + k seconds
        and the id the bridge answered is recorded with k. Consecutive
        statuses of a phone differ, and the last one is AVAILABLE or
        UNAVAILABLE (never a typing state, which the bridge may expire). The
        phones are spread over W threads, paced so the stream lasts about D
        seconds. Exit 1 if any POST was not 200 with an id.
    stream.py measure --sent SENT.json --events EVENTS.jsonl [--latest LATEST.jsonl]
        Counts, from the records read back (kafka_admin.py consume lines):
        missing and duplicated events; per (instance, phone) order breaks, a
        record read after one of the same phone that was sent later (each id
        counted once, at its first occurrence); the same after sorting each
        phone's records by the consumer rule (the id, a UUIDv7) and by
        (time, id); spurious typing expiries (a chat-presence-expired whose
        phone had a newer event than the typing one that caused it); the
        phones whose state a consumer keeping the README's rules (greatest id
        wins, an expiry applies only to its causeId) would get wrong; and,
        with LATEST, stale states: keys `<instanceId>:<phone>` whose last
        record differs from the last event sent (its status, its eventId, or
        its lastSeen), counted by the record's reason (`reported`,
        `typing_expired`), and the same for a live consumer that keeps the
        record with the greatest data.eventId. Prints one JSON object.
    stream.py create-topic -b HOST:PORT -t TOPIC -p N [--compact]
        Create TOPIC with N partitions (cleanup.policy=compact with --compact);
        fine if it exists. Needs confluent-kafka.
    stream.py table RESULT.jsonl...
        The markdown table of the results (one JSON object per line, from
        measure plus the script's fields), medians per mode when a mode ran
        more than once.
"""
import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone

STATUSES = ["AVAILABLE", "UNAVAILABLE", "COMPOSING", "PAUSED", "RECORDING"]
FINAL = ["AVAILABLE", "UNAVAILABLE"]
LAST_SEEN_BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EVENT_TYPE = "io.presence-bridge.zapi.chat-presence.v1"
EXPIRED_TYPE = "io.presence-bridge.zapi.chat-presence-expired.v1"


def plan(seed, instances, phones, events):
    """The whole stream, from the seed: {key: [status, ...]}, keys
    (instance, phone)."""
    rng = random.Random(seed)
    out = {}
    used = set()
    for i in range(instances):
        inst = f"inst-{seed % 1000:03d}-{i:02d}-{rng.randrange(16**6):06x}"
        for _ in range(phones):
            while True:
                phone = "55" + str(rng.randrange(11, 99)) + "9" + f"{rng.randrange(10**8):08d}"
                if phone not in used:
                    used.add(phone)
                    break
            seq, prev = [], None
            for k in range(events):
                choices = FINAL if k == events - 1 else STATUSES
                s = rng.choice([c for c in choices if c != prev])
                seq.append(s)
                prev = s
            out[(inst, phone)] = seq
    return out


def iso_ms(ms):
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def cmd_send(a):
    stream = plan(a.seed, a.instances, a.phones, a.events)
    keys = list(stream)
    random.Random(a.seed + 1).shuffle(keys)
    u = urllib.parse.urlsplit(a.url)
    workers = [keys[w::a.threads] for w in range(a.threads)]
    sent = {f"{i}:{p}": [None] * a.events for i, p in keys}
    failures = []
    lock = threading.Lock()
    t0 = time.monotonic()
    step = a.duration / a.events

    def worker(mine):
        conn = None
        for k in range(a.events):
            wait = t0 + k * step - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            for inst, phone in mine:
                status = stream[(inst, phone)][k]
                body = json.dumps({"type": "PresenceChatCallback", "phone": phone,
                                   "status": status, "instanceId": inst,
                                   "lastSeen": LAST_SEEN_BASE_MS + k * 1000}).encode()
                path = f"/webhooks/zapi/instances/{inst}/presence?token={a.token}"
                rid, err = None, None
                for attempt in range(2):
                    try:
                        if conn is None:
                            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                        conn.request("POST", path, body=body,
                                     headers={"Content-Type": "application/json"})
                        r = conn.getresponse()
                        raw = r.read()
                        if r.status == 200:
                            rid = json.loads(raw).get("id")
                        else:
                            err = f"HTTP {r.status} {raw[:200]!r}"
                        break
                    except (OSError, http.client.HTTPException, ValueError) as e:
                        conn = None
                        err = f"{type(e).__name__}: {e}"
                        # Only a connection that broke before the request went
                        # out is retried; the LB itself never retries.
                        if not isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError)) \
                                or attempt == 1:
                            break
                with lock:
                    if rid:
                        sent[f"{inst}:{phone}"][k] = {"id": rid, "status": status,
                                                      "lastSeen": iso_ms(LAST_SEEN_BASE_MS + k * 1000)}
                    else:
                        failures.append(f"{inst} phone #{keys.index((inst, phone))} event {k}: {err}")

    threads = [threading.Thread(target=worker, args=(m,)) for m in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    with open(a.out, "w") as f:
        json.dump({"seed": a.seed, "events_per_phone": a.events, "sent": sent}, f)
    n = sum(1 for v in sent.values() for e in v if e)
    print(f"sent {n} of {len(keys) * a.events} events ({len(keys)} phones, {a.instances} instances) "
          f"in {took:.1f}s, {len(failures)} failed", flush=True)
    for f in failures[:10]:
        print("FAIL " + f, file=sys.stderr)
    return 1 if failures else 0


def time_ms(s):
    dt = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


def breaks(seqs):
    """Records that come after one sent later (seqs: intended order numbers,
    in read order)."""
    n, top = 0, -1
    for s in seqs:
        if s < top:
            n += 1
        top = max(top, s)
    return n


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cmd_measure(a):
    with open(a.sent) as f:
        sent = json.load(f)["sent"]
    by_id = {}
    for key, evs in sent.items():
        for k, e in enumerate(evs):
            if e:
                by_id[e["id"]] = (key, k)
    seen, dups, foreign = set(), 0, 0
    per_key = {}  # key -> [(seq, time_ms, id)] in read order, first occurrences
    expiries, spurious, expired_causes = 0, 0, set()
    for r in read_jsonl(a.events):
        v = r.get("value")
        if isinstance(v, dict) and v.get("type") == EXPIRED_TYPE:
            # Spurious: its phone had a newer event than the typing one that
            # caused it. The stream posts a phone's events 1 s apart at most
            # and ends on a non-typing status, so with a TTL of seconds the
            # newer event was always accepted before the timer fired.
            expiries += 1
            expired_causes.add((v.get("data") or {}).get("causeId"))
            cause = by_id.get((v.get("data") or {}).get("causeId"))
            if cause is None or cause[1] < len(sent[cause[0]]) - 1:
                spurious += 1
            continue
        if not isinstance(v, dict) or v.get("type") != EVENT_TYPE:
            foreign += 1
            continue
        eid = v.get("id")
        if eid not in by_id:
            foreign += 1
            continue
        if eid in seen:
            dups += 1
            continue
        seen.add(eid)
        key, k = by_id[eid]
        per_key.setdefault(key, []).append((k, time_ms(v["time"]), eid))
    missing = len(by_id) - len(seen)
    # A consumer that keeps state by the README's rules: the event with the
    # greatest id wins; an expiry applies only when its causeId is that event.
    state_stale = 0
    for key, evs in sent.items():
        recs = per_key.get(key)
        want = next((e for e in reversed(evs) if e), None)
        if not recs or want is None:
            continue
        top = max(recs, key=lambda x: x[2])
        status = evs[top[0]]["status"]
        if top[2] in expired_causes:
            status = "PAUSED"
        if status != want["status"]:
            state_stale += 1
    brk = {key: breaks([s for s, _, _ in recs]) for key, recs in per_key.items()}
    # The consumer rule of the README: a phone's events ordered by id (UUIDv7:
    # arrival ms, then a per-process monotonic counter); (time, id) for comparison.
    by_id_order = {key: breaks([s for s, _, _ in sorted(recs, key=lambda x: x[2])])
                   for key, recs in per_key.items()}
    by_time_id = {key: breaks([s for s, _, _ in sorted(recs, key=lambda x: (x[1], x[2]))])
                  for key, recs in per_key.items()}
    out = {"sent": len(by_id), "read": len(seen), "missing": missing, "duplicates": dups,
           "other_records": foreign,
           "typing_expiries": expiries,
           "spurious_expiries": spurious,
           "order_breaks": sum(brk.values()),
           "phones_with_breaks": sum(1 for b in brk.values() if b),
           "phones": len(sent),
           "breaks_after_sort_by_id": sum(by_id_order.values()),
           "breaks_after_sort_by_time_id": sum(by_time_id.values()),
           "stale_state_by_consumer_rule": state_stale}
    if a.latest:
        last, reasons = {}, {}
        for r in read_jsonl(a.latest):
            last[r.get("key")] = r.get("value")
        stale = 0
        for key, evs in sent.items():
            want = next((e for e in reversed(evs) if e), None)
            got = last.get(key)
            if want is None:
                continue
            data = got.get("data") if isinstance(got, dict) else None
            if not isinstance(data, dict) or data.get("status") != want["status"] \
                    or data.get("eventId", want["id"]) != want["id"] \
                    or ("lastSeen" in data and data["lastSeen"] != want["lastSeen"]):
                stale += 1
                why = data.get("reason", "?") if isinstance(data, dict) else "missing"
                reasons[why] = reasons.get(why, 0) + 1
        # A live consumer of the latest topic that keeps, per key, the record
        # with the greatest data.eventId (the later one on a tie: an expiry
        # carries its cause's id). After compaction it has no such choice.
        best = {}
        for r in read_jsonl(a.latest):
            d = (r.get("value") or {}).get("data") or {}
            if d.get("eventId") is not None and d["eventId"] >= best.get(r.get("key"), ("",))[0]:
                best[r.get("key")] = (d["eventId"], d.get("status"))
        out["stale_latest_by_event_id"] = sum(
            1 for key, evs in sent.items()
            if (w := next((e for e in reversed(evs) if e), None)) is not None
            and best.get(key) != (w["id"], w["status"]))
        out["latest_keys"] = len(last)
        out["stale_latest"] = stale
        out["stale_by_reason"] = reasons
    print(json.dumps(out))
    return 0


def cmd_create_topic(a):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic
    adm = AdminClient({"bootstrap.servers": a.b})
    config = {"cleanup.policy": "compact"} if a.compact else {}
    deadline = time.monotonic() + 30
    while True:
        fs = adm.create_topics([NewTopic(a.t, num_partitions=a.p, replication_factor=1, config=config)],
                               request_timeout=10)
        try:
            fs[a.t].result()
            return 0
        except KafkaException as e:
            err = e.args[0]
            if err.name() == "TOPIC_ALREADY_EXISTS":
                return 0
            if time.monotonic() > deadline or not err.retriable():
                print(f"create {a.t}: {err}", file=sys.stderr)
                return 1
            time.sleep(0.5)


def cmd_table(a):
    rows = [json.loads(line) for p in a.results for line in open(p) if line.strip()]
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    cols = [("events sent", "sent"), ("missing", "missing"), ("duplicates", "duplicates"),
            ("order breaks", "order_breaks"), ("phones with a break", "phones_with_breaks"),
            ("breaks after sorting by id", "breaks_after_sort_by_id"),
            ("spurious typing expiries", "spurious_expiries"),
            ("stale latest states", "stale_latest")]
    print("| routing | runs | " + " | ".join(c for c, _ in cols) + " | requests per bridge |")
    print("|---|---:|" + "---:|" * len(cols) + "---|")
    for m in modes:
        rs = [r for r in rows if r["mode"] == m]
        cells = []
        for _, k in cols:
            vals = [r[k] for r in rs if k in r]
            if not vals:
                cells.append("n/a")
            elif min(vals) == max(vals):
                cells.append(str(vals[0]))
            else:
                cells.append(f"{statistics.median(vals):g} ({min(vals)}-{max(vals)})")
        split = " / ".join(str(int(statistics.median(x))) for x in zip(*[r["requests"] for r in rs]))
        print(f"| {m} | {len(rs)} | " + " | ".join(cells) + f" | {split} |")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--url", required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--instances", type=int, default=8)
    s.add_argument("--phones", type=int, default=25)
    s.add_argument("--events", type=int, default=20)
    s.add_argument("--duration", type=float, default=20)
    s.add_argument("--threads", type=int, default=16)
    s.add_argument("--out", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--sent", required=True)
    m.add_argument("--events", required=True)
    m.add_argument("--latest")
    c = sub.add_parser("create-topic")
    c.add_argument("-b", required=True)
    c.add_argument("-t", required=True)
    c.add_argument("-p", type=int, default=3)
    c.add_argument("--compact", action="store_true")
    t = sub.add_parser("table")
    t.add_argument("results", nargs="+")
    a = ap.parse_args()
    return {"send": cmd_send, "measure": cmd_measure, "create-topic": cmd_create_topic,
            "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
