#!/usr/bin/env python3
"""Helpers for benches/load.sh (stdlib, plus confluent-kafka for `count`).

    lb.py wait-ready URL TIMEOUT_S
        Poll URL (plain HTTP GET on loopback) every 2 ms until it answers 200;
        print the wall-clock time (time.time()) of that answer. Exit 1 on
        timeout. Started *before* the server, so Python's own start-up is not
        part of the measure.
    lb.py count -b HOST:PORT -t TOPIC [--state FILE] [--timeout S]
        Read every partition from the offsets in FILE (from the beginning when
        FILE is missing) to its end (partition EOF from the Fetch high
        watermark: Tansu's ListOffsets(LATEST) is wrong, see .ci/tansu.sh);
        print {"records", "distinct_ids", "duplicates", "expiries", "eof"} as
        JSON and write the next offsets back to FILE. Typing expiries (the
        bridge's own chat-presence-expired records) are counted apart, so
        they never stand in for a missing accepted event.
    lb.py json FILE KEY            value of KEY in the LOADJSON line of FILE
    lb.py median V...              median of the numbers given
    lb.py rss FILE                 stats of an RSS sample file (t rss_kb ...)
    lb.py threads PID              snapshot of per-thread CPU ticks (JSON)
    lb.py thread-diff A B          CPU % per thread name (summed; 100 = one
                                   core) between two snapshots, user/sys split
    lb.py alloc-origins FILE [N]   where the malloc calls of a `perf script
                                   -F tid,ip,sym` dump of a uprobe on malloc with
                                   call stacks come from: the N (default 25)
                                   commonest first two frames past the
                                   allocator, with their share of the calls
"""
import json
import socket
import statistics
import sys
import time


def wait_ready(url, timeout):
    assert url.startswith("http://")
    hostport, _, path = url[len("http://"):].partition("/")
    host, _, port = hostport.rpartition(":")
    req = f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=1) as s:
                s.sendall(req)
                head = s.recv(64)
                if head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"):
                    print(f"{time.time():.6f}")
                    return 0
        except OSError:
            pass
        time.sleep(0.002)
    return 1


EXPIRED_TYPE = b"io.presence-bridge.zapi.chat-presence-expired.v1"


def count(argv):
    import argparse
    import uuid
    from confluent_kafka import (Consumer, KafkaError, KafkaException,
                                 OFFSET_BEGINNING, TopicPartition)
    ap = argparse.ArgumentParser()
    ap.add_argument("-b", required=True)
    ap.add_argument("-t", required=True)
    ap.add_argument("--state")
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args(argv)
    start = {}
    if a.state:
        try:
            with open(a.state) as f:
                start = {int(k): v for k, v in json.load(f).items()}
        except FileNotFoundError:
            pass
    c = Consumer({"bootstrap.servers": a.b, "group.id": f"load-bench-{uuid.uuid4()}",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "auto.offset.reset": "earliest", "allow.auto.create.topics": False,
                  "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20})
    md = c.list_topics(topic=a.t, timeout=10)
    t = md.topics.get(a.t)
    if t is None or t.error is not None:
        sys.exit(f"lb.py count: topic {a.t} not found")
    parts = sorted(t.partitions)
    c.assign([TopicPartition(a.t, p, start.get(p, OFFSET_BEGINNING)) for p in parts])
    nxt = dict(start)
    records, ids, eof, expiries = 0, set(), set(), 0
    deadline = time.monotonic() + a.timeout
    try:
        while time.monotonic() < deadline and len(eof) < len(parts):
            for m in c.consume(num_messages=10000, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                        continue
                    raise KafkaException(err)
                eof.discard(m.partition())
                nxt[m.partition()] = m.offset() + 1
                h = dict(m.headers() or ())
                if h.get("event-type") == EXPIRED_TYPE:
                    expiries += 1
                    continue
                records += 1
                if "event-id" in h:
                    ids.add(h["event-id"])
    finally:
        c.close()
    if a.state:
        with open(a.state, "w") as f:
            json.dump({str(k): v for k, v in nxt.items()}, f)
    print(json.dumps({"records": records, "distinct_ids": len(ids),
                      "duplicates": records - len(ids), "expiries": expiries,
                      "eof": len(eof) == len(parts)}))
    return 0 if len(eof) == len(parts) else 1


def loadjson(path, key):
    with open(path) as f:
        for line in f:
            if line.startswith("LOADJSON "):
                v = json.loads(line[len("LOADJSON "):]).get(key)
                print("" if v is None else v)
                return 0
    return 1


def rss(path):
    """t rss_kb phase per line -> JSON stats (MiB) overall and per phase."""
    rows = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3:
                rows.append((float(p[0]), int(p[1]) / 1024.0, p[2]))
    out = {}
    for ph in sorted({r[2] for r in rows}):
        v = [r[1] for r in rows if r[2] == ph]
        half = len(v) // 2
        out[ph] = {"samples": len(v), "min": round(min(v), 1), "max": round(max(v), 1),
                   "last": round(v[-1], 1),
                   "first_half_max": round(max(v[:half] or v), 1),
                   "second_half_max": round(max(v[half:] or v), 1)}
    print(json.dumps(out))
    return 0


def threads(pid):
    import glob
    import os
    out = {"t": time.monotonic(), "hz": os.sysconf("SC_CLK_TCK"), "threads": []}
    for d in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(d + "/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2:].split()
        out["threads"].append([d.rsplit("/", 1)[1], comm, int(rest[11]), int(rest[12])])
    print(json.dumps(out))
    return 0


def thread_diff(fa, fb):
    import re
    with open(fa) as f:
        a = json.load(f)
    with open(fb) as f:
        b = json.load(f)
    dt = b["t"] - a["t"]
    hz = b["hz"]
    before = {t[0]: t for t in a["threads"]}
    by_name, user, sys_ = {}, 0, 0
    for tid, comm, ut, st in b["threads"]:
        ut0, st0 = (before[tid][2], before[tid][3]) if tid in before else (0, 0)
        name = re.sub(r"[0-9]+$", "#", comm)   # tokio-runtime-w, rdk:broker#
        by_name[name] = by_name.get(name, 0) + (ut - ut0) + (st - st0)
        user += ut - ut0
        sys_ += st - st0
    pct = lambda t: t / hz / dt * 100
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:6]
    print(f"user {pct(user):.0f}% + sys {pct(sys_):.0f}%; by thread: " +
          ", ".join(f"{n} {pct(t):.0f}%" for n, t in top if pct(t) >= 0.5))
    return 0


# Frames that say "an allocation" rather than who asked for it.
ALLOCATOR_FRAMES = (
    "malloc", "realloc", "calloc", "__rust", "alloc::", "<alloc::", "core::", "<core::",
    "std::", "<std::", "hashbrown::", "<hashbrown::", "bytes::", "<bytes::", "[unknown]",
)


def alloc_origins(path, top):
    """Counts each sampled malloc call by its first two frames that are not
    the allocator, a collection growing or a frame perf could not name."""
    origins = {}
    calls = 0
    frames = None

    def done(frames):
        named = [f for f in frames if not f.startswith(ALLOCATOR_FRAMES)][:2]
        key = " <- ".join(n[:90] for n in named) or "(no named frame)"
        origins[key] = origins.get(key, 0) + 1

    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                if frames is not None:
                    done(frames)
                    calls += 1
                frames = None
            elif frames is None:
                frames = []  # the sample's header line (its thread)
            else:
                parts = line.split(None, 1)  # address, symbol
                if len(parts) == 2:
                    frames.append(parts[1].strip())
    if frames is not None:
        done(frames)
        calls += 1
    if calls == 0:
        print("no sampled malloc call")
        return 1
    for key, n in sorted(origins.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100 * n / calls:6.2f}%  {key}")
    print(f"({calls} sampled calls)")
    return 0


def main():
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "wait-ready":
        return wait_ready(argv[0], float(argv[1]))
    if cmd == "count":
        return count(argv)
    if cmd == "json":
        return loadjson(argv[0], argv[1])
    if cmd == "median":
        vals = [float(x) for x in argv if x not in ("", "nan")]
        print(f"{statistics.median(vals):.6g}" if vals else "")
        return 0
    if cmd == "rss":
        return rss(argv[0])
    if cmd == "threads":
        return threads(argv[0])
    if cmd == "thread-diff":
        return thread_diff(argv[0], argv[1])
    if cmd == "alloc-origins":
        return alloc_origins(argv[0], int(argv[1]) if len(argv) > 1 else 25)
    sys.exit(f"lb.py: unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main())
