#!/usr/bin/env python3
"""Memory per idle connection: starts `BINARY serve --dev` with room for N connections,
opens N that send nothing or half a request head, and prints the resident-set growth per
connection. Usage: benches/idle_connections.py BINARY [N=4000] (needs `ulimit -n` > N + 100).
Sizes the default http.max_connections (docs/security-and-limits.md, Connection slots under attack)."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


binary = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
http, admin = free_port(), free_port()
work = tempfile.mkdtemp()
env = dict(
    os.environ,
    PRESENCE_BRIDGE__HTTP__LISTEN=f"127.0.0.1:{http}",
    PRESENCE_BRIDGE__ADMIN__LISTEN=f"127.0.0.1:{admin}",
    PRESENCE_BRIDGE__SPOOL__DIR=os.path.join(work, "spool"),
    PRESENCE_BRIDGE__HTTP__MAX_CONNECTIONS=str(n + 100),
    PRESENCE_BRIDGE__HTTP__MAX_CONNECTIONS_PER_CLIENT=str(n + 100),
    PRESENCE_BRIDGE__HTTP__HEADER_READ_TIMEOUT="60s",
)
bridge = subprocess.Popen([binary, "serve", "--dev"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
conns = []
try:
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1)
            break
        except Exception:
            time.sleep(0.2)
    else:
        sys.exit("the bridge never became ready")
    time.sleep(1)
    base = rss_kib(bridge.pid)
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", http))
        if i % 2:
            s.send(b"POST /webhooks/zapi/presence HTTP/1.1\r\nhost: t\r\n")
        conns.append(s)
    time.sleep(2)
    held = rss_kib(bridge.pid)
    print(f"{binary}: baseline {base} KiB, with {n} idle/slow-head connections {held} KiB: "
          f"{(held - base) * 1024 / n:.0f} bytes per connection")
finally:
    for s in conns:
        s.close()
    bridge.terminate()
    bridge.wait()
    shutil.rmtree(work)
