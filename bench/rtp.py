#!/usr/bin/env python3
"""RTP relay benchmark: concurrent anchored G.711 calls (not run by pytest).

A relay process (``--serve``) runs pbxd's own media path on the real reactor:
``PortAllocator`` pairs, two ``LegMedia`` per call, ``bridge``d, pointed at
the fake phones and latched after "answer" as in a call. This process plays
both phones of every call: each phone socket sends a 172-byte G.711 RTP
packet every 20 ms (50 packets/s per direction) and counts what arrives.

For each call count (``--calls``) it runs ``--seconds`` seconds and reports
the loss (packets sent - packets the far phone received) and the relay's
packets per CPU-second (utime+stime of the relay process from /proc). The
reference, in the same invocation, is the same generator talking to a
plain Twisted echo-free forwarder (a ``DatagramProtocol`` that writes each
packet to a fixed peer), i.e. the least any Python relay must do.

Usage: ``python bench/rtp.py [--calls 100,200,400] [--seconds 10] [--no-write]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import write_section  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PAYLOAD = b"\xd5" * 160
SLOTS = 10  # send phases per 20 ms period


def serve(calls: int, low: int, phones: list[int], reference: bool) -> None:
    """The relay process: prints the RTP port of each leg, relays until stdin closes."""
    from twisted.internet import reactor, stdio
    from twisted.internet.protocol import DatagramProtocol, Protocol

    from pbxd.rtp.ports import PortAllocator
    from pbxd.rtp.relay import LegMedia, bridge

    ports = []
    if reference:
        class Forward(DatagramProtocol):
            def __init__(self, peer: tuple[str, int]) -> None:
                self.peer = peer
                self.other = None

            def datagramReceived(self, data, addr):  # noqa: N802
                self.other.transport.write(data, self.peer)

        for i in range(calls):
            a = Forward(("127.0.0.1", phones[2 * i + 1]))
            b = Forward(("127.0.0.1", phones[2 * i]))
            a.other, b.other = b, a
            pa = reactor.listenUDP(0, a, "127.0.0.1")
            pb = reactor.listenUDP(0, b, "127.0.0.1")
            ports += [pa.getHost().port, pb.getHost().port]
    else:
        alloc = PortAllocator(reactor.listenUDP, "127.0.0.1", low, low + 8 * calls + 8)
        for i in range(calls):
            a, b = LegMedia(alloc, reactor, f"a{i}"), LegMedia(alloc, reactor, f"b{i}")
            a.set_remote(("127.0.0.1", phones[2 * i]))
            b.set_remote(("127.0.0.1", phones[2 * i + 1]))
            bridge(a, b)
            a.allow_latch()
            b.allow_latch()
            ports += [a.port, b.port]

    class Stop(Protocol):
        def connectionLost(self, reason=None):  # noqa: N802
            reactor.stop()

    stdio.StandardIO(Stop())
    print(" ".join(map(str, ports)), flush=True)
    reactor.run()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run(calls: int, seconds: float, low: int, reference: bool) -> tuple[int, int, float]:
    """(sent, received, relay CPU seconds) for ``calls`` calls during ``seconds``."""
    socks = []
    for _ in range(2 * calls):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    phones = [s.getsockname()[1] for s in socks]
    cmd = [sys.executable, __file__, "--serve", str(calls), str(low),
           ",".join(map(str, phones))] + (["--reference"] if reference else [])
    relay = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    legs = [int(p) for p in relay.stdout.readline().split()]
    # phones' 20 ms clocks are not in step: each phone sends in one of SLOTS
    # phases of the 20 ms period, as a real population of calls does
    senders = [[] for _ in range(SLOTS)]
    for i, (s, leg) in enumerate(zip(socks, legs, strict=True)):
        senders[(i // 2) % SLOTS].append((s.sendto, ("127.0.0.1", leg)))
    poller = select.epoll()
    readers = {}
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
        readers[s.fileno()] = s.recv_into
    buf = bytearray(2048)
    sent = received = seq = slot = 0
    cpu0 = cpu_seconds(relay.pid)
    start = time.monotonic()
    step = 0.02 / SLOTS
    next_tick = start
    while True:
        now = time.monotonic()
        if now >= next_tick:
            if now - start >= seconds:
                break
            if slot == 0:
                packet = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 0x1234) + PAYLOAD
                seq += 1
            for sendto, address in senders[slot]:
                try:
                    sendto(packet, address)
                    sent += 1
                except BlockingIOError:
                    pass
            slot = (slot + 1) % SLOTS
            next_tick += step
        # level-triggered: one datagram per ready socket per pass, no EAGAIN exceptions
        for fd, _ in poller.poll(max(0.0, next_tick - time.monotonic())):
            readers[fd](buf)
            received += 1
    drain = time.monotonic() + 0.5
    while time.monotonic() < drain:
        for fd, _ in poller.poll(0.05):
            readers[fd](buf)
            received += 1
    cpu = cpu_seconds(relay.pid) - cpu0
    poller.close()
    relay.stdin.close()
    relay.wait(10)
    for s in socks:
        s.close()
    return sent, received, cpu


def quiet_range(count: int, start: int = 16000) -> int:
    """The first port of ``count`` free UDP ports below the ephemeral range, where the
    phone sockets (ephemeral) cannot land: an RTCP port taken by another socket makes
    PortAllocator re-bind an RTP protocol that is still attached (see the report)."""
    low = start
    while low + count < 32768:
        for port in range(low, low + count):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    low = port + 1
                    break
        else:
            return low
    raise RuntimeError("no quiet port range below 32768")


def raise_fd_limit() -> None:
    """Two sockets per phone here, four per call in the relay: lift the soft fd limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    raise_fd_limit()
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", default="100,200,400")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--serve", nargs=3)
    parser.add_argument("--reference", action="store_true")
    args = parser.parse_args()
    if args.serve:
        calls, low, phones = args.serve
        serve(int(calls), int(low), [int(p) for p in phones.split(",")], args.reference)
        return
    rows = []
    for calls in [int(c) for c in args.calls.split(",")]:
        for reference in (False, True):
            low = quiet_range(8 * calls + 16)
            sent, got, cpu = run(calls, args.seconds, low, reference)
            rows.append(("reference forwarder" if reference else "pbxd relay", calls, sent, got, cpu))
            print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    lines = [f"Measured by `python bench/rtp.py --calls {args.calls} --seconds {args.seconds:g}` "
             f"on CPython {platform.python_version()}, {time.strftime('%Y-%m-%d')}, "
             f"load average {load:.2f} on {os.cpu_count()} CPUs (generator and relay share them).",
             "", "| relay | concurrent calls | packets sent | loss % | relay CPU s | "
             "packets relayed per CPU-s | CPU % of one core |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, calls, sent, got, cpu in rows:
        loss = 100.0 * (sent - got) / sent if sent else 100.0
        lines.append(f"| {name} | {calls} | {sent:,} | {loss:.3f} | {cpu:.2f} | "
                     f"{got / cpu if cpu else 0:,.0f} | {100 * cpu / args.seconds:.0f} |")
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        write_section("bench/rtp.py", report)


if __name__ == "__main__":
    main()
