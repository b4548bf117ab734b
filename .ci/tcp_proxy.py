#!/usr/bin/env python3
"""Tiny loopback TCP proxy for outage tests (stdlib only, asyncio).

    tcp_proxy.py --listen 127.0.0.1:PORT --target 127.0.0.1:PORT [--state-file F]

Forwards every connection accepted on --listen to --target, byte for byte.
The link can be broken and restored while the proxy keeps running, so the
listening port never has to be re-acquired:

    SIGUSR1  "down":      close every open connection and stop listening
                          (clients see connection refused, like a dead broker)
    SIGHUP   "blackhole": keep listening, accept new connections but never
                          answer them; open connections stall, bytes held
                          (like a network partition: clients see timeouts;
                          "up" releases stalled bytes, "down" drops them)
    SIGUSR2  "up":        listen (again) and forward normally
    SIGTERM / SIGINT      close everything and exit 0

Each state change is printed on stdout as "proxy STATE" and, with
--state-file, written to that file, so a shell can wait for it.
Only loopback addresses are accepted, on both sides.
"""
import argparse
import asyncio
import ipaddress
import os
import signal
import sys

BUF = 64 * 1024


def parse_addr(s):
    host, _, port = s.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"tcp_proxy: refusing non-loopback address {s!r}")
    return host, int(port)


class Proxy:
    def __init__(self, listen, target, state_file):
        self.listen = listen
        self.target = target
        self.state_file = state_file
        self.server = None
        self.state = None
        self.conns = set()  # writers of both directions
        self.stalled = set()
        self.stop = asyncio.Event()

    def announce(self, state):
        self.state = state
        print(f"proxy {state} {self.listen[0]}:{self.listen[1]} -> "
              f"{self.target[0]}:{self.target[1]}", flush=True)
        if self.state_file:
            with open(self.state_file + ".tmp", "w") as f:
                f.write(state + "\n")
            os.replace(self.state_file + ".tmp", self.state_file)

    async def pipe(self, reader, writer):
        try:
            while True:
                if self.state == "blackhole":
                    await asyncio.sleep(0.2)
                    continue
                data = await reader.read(BUF)
                if not data:
                    break
                while self.state == "blackhole":
                    # hold it, like a partitioned link; TCP delivers it once healed
                    await asyncio.sleep(0.2)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def handle(self, c_reader, c_writer):
        if self.state == "blackhole":
            self.stalled.add(c_writer)
            return  # hold the socket open, never answer
        try:
            t_reader, t_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), timeout=5)
        except (OSError, asyncio.TimeoutError):
            c_writer.close()
            return
        self.conns.update((c_writer, t_writer))
        try:
            await asyncio.gather(self.pipe(c_reader, t_writer),
                                 self.pipe(t_reader, c_writer))
        finally:
            self.conns.discard(c_writer)
            self.conns.discard(t_writer)

    def close_all(self):
        for w in list(self.conns) + list(self.stalled):
            try:
                w.transport.abort()  # RST, no lingering
            except Exception:
                pass
        self.conns.clear()
        self.stalled.clear()

    async def go_up(self):
        for w in list(self.stalled):
            try:
                w.transport.abort()
            except Exception:
                pass
        self.stalled.clear()
        if self.server is None:
            self.server = await asyncio.start_server(
                self.handle, self.listen[0], self.listen[1], reuse_address=True)
        self.announce("up")

    async def go_down(self):
        if self.server is not None:
            self.server.close()
            self.server = None
        self.close_all()
        self.announce("down")

    async def go_blackhole(self):
        if self.server is None:
            self.server = await asyncio.start_server(
                self.handle, self.listen[0], self.listen[1], reuse_address=True)
        self.announce("blackhole")

    async def run(self):
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue()
        for sig, what in ((signal.SIGUSR1, "down"), (signal.SIGUSR2, "up"),
                          (signal.SIGHUP, "blackhole"), (signal.SIGTERM, "exit"),
                          (signal.SIGINT, "exit")):
            loop.add_signal_handler(sig, queue.put_nowait, what)
        await self.go_up()
        while True:
            what = await queue.get()
            if what == "exit":
                break
            await {"down": self.go_down, "up": self.go_up,
                   "blackhole": self.go_blackhole}[what]()
        if self.server is not None:
            self.server.close()
        self.close_all()
        self.announce("exited")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--state-file")
    a = ap.parse_args()
    try:
        asyncio.run(Proxy(parse_addr(a.listen), parse_addr(a.target), a.state_file).run())
    except OSError as e:
        print(f"tcp_proxy: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
