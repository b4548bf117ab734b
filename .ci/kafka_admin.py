#!/usr/bin/env python3
"""Small Kafka helper for CI scripts, on confluent-kafka (PyPI, >= 2.x).

    kafka_admin.py wait         -b HOST:PORT [--timeout S]
    kafka_admin.py create-topic -b HOST:PORT -t TOPIC -p N [--timeout S]
    kafka_admin.py describe     -b HOST:PORT -t TOPIC
    kafka_admin.py produce      -b HOST:PORT -t TOPIC [-n COUNT] [--timeout S]
    kafka_admin.py consume      -b HOST:PORT -t TOPIC [--limit N] [--timeout S]
    kafka_admin.py probe        -b HOST:PORT [-t TOPIC]

consume prints one JSON line per record, in the same shape as
`presence-bridge tail`: {"topic","partition","offset","key","headers","value"}
(value parsed as JSON when it is JSON). It reads every partition from the
beginning with a manual assign and stops at --limit records, at the end of
every partition (fetch high watermark, see below), or at --timeout.

probe checks what the bridge relies on: idempotent producer (acks=all,
lz4) with keys and headers, read back intact; per-key order; explicit topic
metadata. Exit status 0 means all checks passed.

Tansu note: ListOffsets(LATEST) answers "base offset of the last batch + 1",
not the log end offset, so watermarks from query_watermark_offsets() are too
low after multi-record batches. consume therefore relies on partition EOF
(from the Fetch response's high watermark, which is correct) and --limit.
"""
import argparse
import json
import sys
import time
import uuid

try:
    from confluent_kafka import (Consumer, KafkaError, KafkaException,
                                 OFFSET_BEGINNING, Producer, TopicPartition)
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as e:  # pragma: no cover
    sys.exit(f"kafka_admin: confluent-kafka is not importable ({e}); "
             "run tansu_install_client from .ci/tansu.sh")


def client_version():
    import confluent_kafka
    v = confluent_kafka.version()
    return v[0] if isinstance(v, tuple) else v


def log(*a):
    print("kafka_admin:", *a, file=sys.stderr, flush=True)


def admin(bs):
    return AdminClient({"bootstrap.servers": bs, "socket.timeout.ms": 5000})


def cmd_wait(a):
    deadline = time.monotonic() + a.timeout
    last = None
    while time.monotonic() < deadline:
        try:
            md = admin(a.bootstrap).list_topics(timeout=min(5, max(1, deadline - time.monotonic())))
            log(f"broker up: {len(md.brokers)} broker(s), cluster {md.cluster_id}")
            return 0
        except KafkaException as e:
            last = e
            time.sleep(0.3)
    log(f"broker {a.bootstrap} not answering metadata after {a.timeout}s: {last}")
    return 1


def topic_partitions(bs, topic, timeout=10):
    """Partition count of an existing topic, or None. Uses a consumer-type
    metadata request, which does not auto-create (Tansu honours
    allow_auto_topic_creation=false; an AdminClient/producer request with a
    topic name WOULD create it, with 4 partitions)."""
    c = Consumer({"bootstrap.servers": bs, "group.id": "kafka-admin-probe",
                  "allow.auto.create.topics": False})
    try:
        md = c.list_topics(topic=topic, timeout=timeout)
    finally:
        c.close()
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def cmd_create_topic(a):
    adm = admin(a.bootstrap)
    deadline = time.monotonic() + a.timeout
    while True:
        fs = adm.create_topics([NewTopic(a.topic, num_partitions=a.partitions,
                                         replication_factor=1)],
                               request_timeout=min(10, a.timeout))
        try:
            fs[a.topic].result()
            log(f"created topic {a.topic} with {a.partitions} partitions")
            break
        except KafkaException as e:
            err = e.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                log(f"topic {a.topic} already exists")
                break
            if time.monotonic() > deadline or not err.retriable():
                log(f"create {a.topic} failed: {err}")
                return 1
            time.sleep(0.5)
    n = topic_partitions(a.bootstrap, a.topic)
    if n != a.partitions:
        log(f"topic {a.topic} has {n} partitions, wanted {a.partitions}")
        return 1
    return 0


def cmd_describe(a):
    n = topic_partitions(a.bootstrap, a.topic)
    print(json.dumps({"topic": a.topic, "exists": n is not None, "partitions": n}))
    return 0 if n is not None else 1


def cmd_produce(a):
    """Produce COUNT keyed records the way the bridge does; exit 0 only if all
    were acknowledged within --timeout."""
    p = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True,
                  "acks": "all", "compression.type": "lz4", "linger.ms": 5,
                  "message.timeout.ms": int(a.timeout * 1000),
                  "allow.auto.create.topics": False,
                  "log_level": 2})  # outage tests: no per-retry connect errors
    ok, errs = [], []

    def dr(err, msg):
        (errs if err else ok).append(err or msg.offset())
    for i in range(a.count):
        p.produce(a.topic, key=f"k{i % 5}".encode(), value=json.dumps({"i": i}).encode(),
                  headers=[("ce_id", str(uuid.uuid4()).encode())], on_delivery=dr)
    left = p.flush(a.timeout + 2)
    print(json.dumps({"delivered": len(ok), "failed": len(errs), "pending": left,
                      "errors": sorted({str(e) for e in errs})[:3]}))
    return 0 if len(ok) == a.count else 1


def record_json(m):
    v = m.value()
    try:
        value = json.loads(v) if v is not None else None
    except ValueError:
        value = v.decode("utf-8", "replace")
    headers = {}
    for k, hv in (m.headers() or []):
        headers[k] = hv.decode("utf-8", "replace") if hv is not None else None
    key = m.key()
    return {"topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
            "key": key.decode("utf-8", "replace") if key is not None else None,
            "headers": headers, "value": value}


def consume(bs, topic, limit, timeout):
    n = topic_partitions(bs, topic)
    if n is None:
        raise SystemExit(f"kafka_admin: topic {topic} does not exist")
    c = Consumer({"bootstrap.servers": bs, "group.id": f"kafka-admin-{uuid.uuid4()}",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(n)])
    out, eof = [], set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and (limit is None or len(out) < limit):
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    if limit is None and len(eof) == n:
                        break
                    continue
                raise KafkaException(m.error())
            eof.discard(m.partition())
            out.append(record_json(m))
    finally:
        c.close()
    return out


def cmd_consume(a):
    recs = consume(a.bootstrap, a.topic, a.limit, a.timeout)
    for r in recs:
        print(json.dumps(r, separators=(",", ":")))
    if a.limit is not None and len(recs) < a.limit:
        log(f"only {len(recs)} of {a.limit} records within {a.timeout}s")
        return 1
    return 0


def cmd_probe(a):
    import confluent_kafka
    topic = a.topic or f"probe-{uuid.uuid4().hex[:8]}"
    fails = []

    def check(cond, what):
        log(("ok   " if cond else "FAIL ") + what)
        if not cond:
            fails.append(what)
    log(f"confluent-kafka {client_version()}, librdkafka {confluent_kafka.libversion()[0]}")
    adm = admin(a.bootstrap)
    adm.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result()
    check(topic_partitions(a.bootstrap, topic) == 3, "create topic with 3 partitions, metadata with topic list")
    check(topic_partitions(a.bootstrap, f"absent-{uuid.uuid4().hex[:8]}") is None,
          "metadata for an unknown topic (allow_auto_topic_creation=false) does not create it")
    p = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True, "acks": "all",
                  "compression.type": "lz4", "linger.ms": 20, "message.timeout.ms": 10000,
                  "allow.auto.create.topics": False})
    sent, errs = {}, []

    def dr(err, msg):
        if err:
            errs.append(err)
        else:
            sent[json.loads(msg.value())["id"]] = (msg.partition(), msg.offset())
    ids = []
    for i in range(60):
        ce_id = str(uuid.uuid4())
        ids.append((f"55119000000{i % 5}", ce_id))
        p.produce(topic, key=ids[-1][0].encode(),
                  value=json.dumps({"id": ce_id, "n": i}).encode(),
                  headers=[("content-type", b"application/cloudevents+json; charset=UTF-8"),
                           ("ce_id", ce_id.encode()), ("ce_type", b"probe")],
                  on_delivery=dr)
    left = p.flush(15)
    check(left == 0 and not errs and len(sent) == 60,
          f"idempotent lz4 producer: 60 acked (pending {left}, errors {errs[:2]})")
    recs = consume(a.bootstrap, topic, 60, 20)
    check(len(recs) == 60, f"consume back by assign from beginning: {len(recs)}/60")
    check(all(r["headers"].get("ce_id") == r["value"]["id"] and
              r["headers"].get("content-type") == "application/cloudevents+json; charset=UTF-8"
              for r in recs), "headers intact")
    by_key = {}
    for r in sorted(recs, key=lambda r: (r["partition"], r["offset"])):
        by_key.setdefault(r["key"], []).append(r["value"]["id"])
    want = {}
    for k, i in ids:
        want.setdefault(k, []).append(i)
    check(by_key == want, "per-key order preserved")
    check(len({(r["key"], r["partition"]) for r in recs}) == len(want), "each key in one partition")
    return 1 if fails else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("wait", "create-topic", "describe", "produce", "consume", "probe"):
        s = sub.add_parser(name)
        s.add_argument("-b", "--bootstrap", required=True)
        s.add_argument("--timeout", type=float, default=30)
        if name in ("create-topic", "describe", "produce", "consume"):
            s.add_argument("-t", "--topic", required=True)
        if name == "probe":
            s.add_argument("-t", "--topic")
        if name == "create-topic":
            s.add_argument("-p", "--partitions", type=int, required=True)
        if name == "produce":
            s.add_argument("-n", "--count", type=int, default=10)
        if name == "consume":
            s.add_argument("--limit", type=int)
    a = ap.parse_args()
    fn = {"wait": cmd_wait, "create-topic": cmd_create_topic, "describe": cmd_describe,
          "produce": cmd_produce, "consume": cmd_consume, "probe": cmd_probe}[a.cmd]
    try:
        return fn(a)
    except KafkaException as e:
        log(f"{a.cmd}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
