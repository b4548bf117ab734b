#!/usr/bin/env python3
"""A small HTTP reverse proxy in front of several bridges, for
benches/replicas.sh (stdlib only).

    lb.py --listen 127.0.0.1:PORT --mode round-robin|by-instance \
          --backend http://127.0.0.1:P1 --backend http://127.0.0.1:P2 ...

round-robin  each request goes to the next backend in turn, whatever its path.
by-instance  a request for /webhooks/zapi/instances/{id} or
             /webhooks/zapi/instances/{id}/presence goes to the backend chosen
             by a hash of {id} (CRC-32 of the raw segment, modulo the number
             of backends), so one instance always reaches one bridge; any
             other path goes round-robin.

The request (method, path and query, body, Content-Type, Content-Encoding)
is forwarded over a keep-alive connection of the serving thread; the
backend's status and body come back. A backend that cannot be reached is a
502 (never retried: the request may have been accepted). GET /_lb/stats
answers {"mode", "backends", "requests": [per backend], "errors"} as JSON.
Only loopback addresses are used.
"""
import argparse
import http.client
import ipaddress
import itertools
import json
import re
import threading
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INSTANCE = re.compile(r"^/webhooks/zapi/instances/([^/?]+)(?:/presence)?(?:\?|$)")
FORWARDED_HEADERS = ("Content-Type", "Content-Encoding", "Authorization", "Client-Token")


def loopback(host):
    if host == "localhost":
        return True
    return ipaddress.ip_address(host.strip("[]")).is_loopback


class Balancer:
    def __init__(self, mode, backends):
        self.mode = mode
        self.backends = backends
        self.rr = itertools.count()
        self.lock = threading.Lock()
        self.requests = [0] * len(backends)
        self.errors = 0

    def choose(self, path):
        if self.mode == "by-instance":
            m = INSTANCE.match(path)
            if m:
                return zlib.crc32(m.group(1).encode()) % len(self.backends)
        with self.lock:
            return next(self.rr) % len(self.backends)

    def stats(self):
        with self.lock:
            return {"mode": self.mode, "backends": [f"{h}:{p}" for h, p in self.backends],
                    "requests": list(self.requests), "errors": self.errors}


def make_handler(lb):
    local = threading.local()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body, ctype="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def forward(self, method):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            if method == "GET" and self.path == "/_lb/stats":
                return self.reply(200, json.dumps(lb.stats()).encode())
            i = lb.choose(self.path)
            with lb.lock:
                lb.requests[i] += 1
            conns = getattr(local, "conns", None)
            if conns is None:
                conns = local.conns = {}
            headers = {h: self.headers[h] for h in FORWARDED_HEADERS if self.headers.get(h)}
            try:
                conn = conns.get(i)
                if conn is None:
                    host, port = lb.backends[i]
                    conn = conns[i] = http.client.HTTPConnection(host, port, timeout=30)
                conn.request(method, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                status, ctype = r.status, r.getheader("Content-Type", "application/octet-stream")
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conns.pop(i, None)
            except (OSError, http.client.HTTPException) as e:
                conns.pop(i, None)
                with lb.lock:
                    lb.errors += 1
                return self.reply(502, json.dumps({"error": f"backend {i}: {e}"}).encode())
            self.reply(status, data, ctype)

        def do_POST(self):
            self.forward("POST")

        def do_GET(self):
            self.forward("GET")

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--mode", choices=["round-robin", "by-instance"], required=True)
    ap.add_argument("--backend", action="append", required=True)
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    backends = []
    for b in a.backend:
        u = urllib.parse.urlsplit(b)
        if u.scheme != "http" or not u.hostname or not u.port:
            raise SystemExit(f"lb.py: backend must be http://HOST:PORT, got {b!r}")
        backends.append((u.hostname, u.port))
    for h in [host] + [h for h, _ in backends]:
        if not loopback(h):
            raise SystemExit(f"lb.py: refusing non-loopback address {h!r}")
    srv = ThreadingHTTPServer((host, int(port)), make_handler(Balancer(a.mode, backends)))
    srv.daemon_threads = True
    print(f"lb {a.mode} listening on {host}:{port} -> {a.backend}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
