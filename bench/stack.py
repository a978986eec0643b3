#!/usr/bin/env python3
"""In-process benchmark of the whole SIP stack on one thread (not run by pytest).

``bench/register.py`` and ``bench/calls.py`` measure the real server under SIPp, which is
the figure that counts, but on a shared 2-core machine their CPU figures move by 10-20 %
from run to run. This one builds the real server (:func:`pbxd.service.make_service`, the
configuration of the SIPp benchmarks) on a fake reactor (``MemoryReactorClock``, UDP ports
that record what they send) and a synchronous SQLite pool over a real file, and feeds it
the datagrams SIPp sends, answering like SIPp would:

- ``register``: REGISTER, 401, REGISTER with MD5 digest credentials, 200 (new bindings),
  then the same for every extension again with a higher CSeq (refreshes);
- ``call``: caller INVITE, 407, ACK, INVITE with credentials, the B-leg INVITE to the
  registered callee answered 180 and 200, both ACKs, BYE from the caller, 200 from the
  callee; anchored media (RTP port pairs are opened on the fake reactor), dialplan, CDR.

Virtual time advances as at a fixed offered rate (so transaction timers fire and the
heap stays as large as under SIPp). It reports CPU microseconds per registration and per
call (``time.process_time``: the main thread's work only — the real server also pays the
reactor's epoll/recvfrom/sendto and, for SQLite, the adbapi thread hop, which are not
here). Use it to compare changes; quote the SIPp benchmarks for targets.

Usage: ``python bench/stack.py [--count 2000] [--calls 1000] [--profile FILE]``
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import heapq
import itertools
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from twisted.internet.base import DelayedCall  # noqa: E402
from twisted.internet.testing import MemoryReactorClock  # noqa: E402
from twisted.logger import (  # noqa: E402
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from pbxd.config import load_config  # noqa: E402
from pbxd.service import make_service  # noqa: E402
from pbxd.store.db import Database  # noqa: E402
from pbxd.store.testing import SynchronousConnectionPool  # noqa: E402
from pbxd.tap import freeze_startup_objects  # noqa: E402

FIRST = 20000
_BRANCHES = itertools.count(1)


class FakePort:
    """A listening UDP port that keeps what is sent through it."""

    def __init__(self, port: int, protocol: Any, interface: str,
                 listening: list[FakePort] | None = None) -> None:
        self.port, self.protocol, self.interface = port, protocol, interface
        self.listening = listening
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.addressFamily = 2  # AF_INET
        self.connected = False

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def getHost(self) -> Any:  # noqa: N802
        from twisted.internet.address import IPv4Address

        return IPv4Address("UDP", self.interface or "127.0.0.1", self.port or 40000)

    def stopListening(self) -> None:  # noqa: N802
        # forget a closed port (an RTP port of an ended call), as the real reactor does:
        # kept, it would keep its call's media objects alive for the whole run
        if self.listening is not None and self in self.listening:
            self.listening.remove(self)

    def connect(self, host: str, port: int) -> None:
        pass

    def loseConnection(self) -> None:  # noqa: N802
        pass

    def setTTL(self, ttl: int) -> None:  # noqa: N802
        pass

    def setTOS(self, tos: int) -> None:  # noqa: N802
        pass


class Reactor(MemoryReactorClock):
    """MemoryReactorClock with UDP ports that record what they send and a timer heap
    like the real reactor's (``task.Clock`` re-sorts its whole list on every
    ``callLater``: with the thousands of pending transaction timers of a load test that
    would cost more than the stack itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[FakePort] = []
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._seq = itertools.count()

    def callLater(self, delay: float, callable: Any, *args: Any, **kw: Any) -> DelayedCall:  # noqa: N802
        dc = DelayedCall(self.seconds() + delay, callable, args, kw,
                         lambda c: None, self._push, seconds=self.seconds)
        self._push(dc)
        return dc

    def _push(self, dc: DelayedCall) -> None:
        heapq.heappush(self._heap, (dc.getTime(), next(self._seq), dc))

    def getDelayedCalls(self) -> list[DelayedCall]:  # noqa: N802
        return [dc for _, _, dc in self._heap if dc.active()]

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        heap = self._heap
        while heap and heap[0][0] <= self.rightNow:
            when, _, dc = heapq.heappop(heap)
            if dc.cancelled or dc.called or dc.getTime() != when:
                continue  # cancelled, or moved (another entry holds its new time)
            dc.called = 1
            dc.func(*dc.args, **dc.kw)

    def listenUDP(self, port: int, protocol: Any, interface: str = "",  # noqa: N802
                  maxPacketSize: int = 8192) -> FakePort:  # noqa: N803
        p = FakePort(port, protocol, interface, self.ports)
        protocol.makeConnection(p)
        self.ports.append(p)
        return p


def build(workdir: Path, count: int) -> tuple[Reactor, Any, FakePort]:
    extensions = {str(n): {"password": f"pw-{n}"} for n in range(FIRST, FIRST + count)}
    extensions["1000"] = {"password": "pw-1000"}
    extensions["1001"] = {"password": "pw-1001"}
    config = {
        "pbx": {"realm": "pbx.test", "state_dir": str(workdir / "state")},
        "sip": {"listen": ["udp:5060:interface=127.0.0.1"]},
        "store": {"url": f"sqlite:{workdir / 'pbxd.sqlite'}"},
        "rtp": {"port_range": [30000, 39999]},
        "registrar": {"qualify_interval": 0},  # as in the SIPp benchmarks (the harness)
        "security": {"rate_limit": {"requests": 0}, "max_failed_attempts": 0},
        "limits": {"max_transactions_per_source": 10_000_000,
                   "max_dialogs_per_source": 10_000_000,
                   "overload": {"max_call_rate": 0, "max_loop_lag": 0}},
        "extensions": extensions,
        "dialplan": {"default": [{"match": "_1XXX", "do": [{"dial": {"to": "${EXTEN}", "timeout": 20}}]}]},
    }
    path = workdir / "config.yml"
    path.write_text(yaml.safe_dump(config))
    reactor = Reactor()
    pool = SynchronousConnectionPool(str(workdir / "pbxd.sqlite"))
    # the real server commits with synchronous=FULL in its adbapi thread; here the fsync
    # would be charged to the one thread measured: the SQL runs, the disk flush does not
    pool.connection.execute("PRAGMA synchronous=OFF")
    database = Database(pool)
    top = make_service(load_config(str(path)), reactor, database=database)
    # log as twistd does (text lines, info and above), to /dev/null: left unbegun, Twisted's
    # start-up buffer would keep the last 200 events, and with them the last 200 calls
    devnull = open(os.devnull, "w")  # noqa: SIM115 (open for the whole run)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(devnull),
                              [LogLevelFilterPredicate(LogLevel.info)])],
        redirectStandardIO=False, discardBuffer=True)
    freeze_startup_objects()  # as twistd pbx does once the server is built
    top.startService()
    reactor.advance(0.1)
    sip = next(p for p in reactor.ports if p.port == 5060)
    return reactor, top, sip


# -- a SIPp-like phone ---------------------------------------------------------------------

_NONCE = re.compile(r'nonce="([^"]+)"')
_TO_TAG = re.compile(r"^To:.*;tag=([^;\r\n]+)", re.M | re.I)


def digest(user: str, password: str, method: str, uri: str, challenge: str, nc: int) -> str:
    nonce = _NONCE.search(challenge).group(1)  # type: ignore[union-attr]
    cnonce = "6b8b4567"
    ha1 = hashlib.md5(f"{user}:pbx.test:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    nc_text = f"{nc:08x}"
    response = hashlib.md5(f"{ha1}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (f'Digest username="{user}",realm="pbx.test",cnonce="{cnonce}",nc={nc_text},'
            f'qop=auth,uri="{uri}",nonce="{nonce}",response="{response}",algorithm=MD5')


def status_of(data: bytes) -> int:
    return int(data[8:11])


class Phone:
    """Sends what SIPp's scenarios send, from ``addr``, and reads what came back."""

    def __init__(self, reactor: Reactor, sip: FakePort, addr: tuple[str, int]) -> None:
        self.reactor, self.sip, self.addr = reactor, sip, addr

    def send(self, text: str) -> list[bytes]:
        before = len(self.sip.sent)
        self.sip.protocol.datagramReceived(text.replace("\n", "\r\n").encode(), self.addr)
        return [d for d, a in self.sip.sent[before:]]

    def branch(self) -> str:
        return f"z9hG4bK-{self.addr[1]}-{next(_BRANCHES)}"


def register(phone: Phone, user: str, call_id: str, cseq: int) -> None:
    ip, port = phone.addr
    uri = "sip:127.0.0.1:5060"
    head = (f"REGISTER {uri} SIP/2.0\nVia: SIP/2.0/UDP {ip}:{port};branch={{branch}};rport\n"
            f"Max-Forwards: 70\nFrom: <sip:{user}@127.0.0.1>;tag=77SIPpTag{user}\n"
            f"To: <sip:{user}@127.0.0.1>\nCall-ID: {call_id}\nCSeq: {{cseq}} REGISTER\n"
            f"Contact: <sip:{user}@{ip}:{port};transport=UDP>\n{{auth}}Expires: 3600\n"
            "User-Agent: sipp-register-phase\nContent-Length: 0\n\n")
    [challenge] = phone.send(head.format(branch=phone.branch(), cseq=cseq, auth=""))
    assert status_of(challenge) == 401, challenge[:80]
    auth = digest(user, f"pw-{user}", "REGISTER", uri, challenge.decode(), 1)
    [ok] = phone.send(head.format(branch=phone.branch(), cseq=cseq + 1,
                                  auth=f"Authorization: {auth}\n"))
    assert status_of(ok) == 200, ok[:200]


SDP = ("v=0\no=user1 53655765 2353687637 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
       "m=audio 6000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n")


def call(caller: Phone, callee: Phone, n: int) -> None:
    """One SIPp sn:uac-style call from 1000 to 1001 (sn:uas) through the PBX."""
    ip, port = caller.addr
    call_id = f"{n}-call@127.0.0.1"
    uri = "sip:1001@127.0.0.1:5060"
    sdp = SDP.replace("\n", "\r\n")
    invite = (f"INVITE {uri} SIP/2.0\nVia: SIP/2.0/UDP {ip}:{port};branch={{branch}}\n"
              f"From: sipp <sip:1000@{ip}:{port}>;tag={n}SIPpTag00{n}\n"
              f"To: <{uri}>\nCall-ID: {call_id}\nCSeq: {{cseq}} INVITE\n"
              f"Contact: sip:1000@{ip}:{port}\nMax-Forwards: 70\n{{auth}}"
              f"Subject: Performance Test\nContent-Type: application/sdp\n"
              f"Content-Length: {len(sdp)}\n\n")
    b1 = caller.branch()
    [challenge] = caller.send(invite.format(branch=b1, cseq=1, auth="") + SDP)
    assert status_of(challenge) == 407, challenge[:80]
    to_407 = _TO_TAG.search(challenge.decode()).group(1)  # type: ignore[union-attr]
    caller.send(f"ACK {uri} SIP/2.0\nVia: SIP/2.0/UDP {ip}:{port};branch={b1}\n"
                f"From: sipp <sip:1000@{ip}:{port}>;tag={n}SIPpTag00{n}\n"
                f"To: <{uri}>;tag={to_407}\nCall-ID: {call_id}\nCSeq: 1 ACK\n"
                "Max-Forwards: 70\nContent-Length: 0\n\n")
    auth = digest("1000", "pw-1000", "INVITE", uri, challenge.decode(), 1)
    out = caller.send(invite.format(branch=caller.branch(), cseq=2,
                                    auth=f"Proxy-Authorization: {auth}\n") + SDP)
    b_invite = next(d for d in out if d.startswith(b"INVITE "))
    # the callee (sn:uas) answers 180 then 200 with SDP
    text = b_invite.decode()
    head = text.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    copy = [v for v in lines[1:] if v.split(":", 1)[0].lower() in ("via", "from", "call-id", "cseq")]
    to = next(v for v in lines if v.lower().startswith("to:"))
    b_call_id = next(v for v in lines if v.lower().startswith("call-id:")).split(":", 1)[1].strip()
    b_from = next(v for v in lines if v.lower().startswith("from:"))
    cip, cport = callee.addr
    base = "\n".join([*copy, f"{to};tag={n}uas"]) + "\n"
    callee.send(f"SIP/2.0 180 Ringing\n{base}Contact: <sip:{cip}:{cport};transport=UDP>\n"
                "Content-Length: 0\n\n")
    answer = SDP.replace("6000", "6002").replace("\n", "\r\n")
    out = callee.send(f"SIP/2.0 200 OK\n{base}Contact: <sip:{cip}:{cport};transport=UDP>\n"
                      f"Content-Type: application/sdp\nContent-Length: {len(answer)}\n\n"
                      + SDP.replace("6000", "6002"))
    a_ok = [d for d in caller.sip.sent[-4:] if d[0].startswith(b"SIP/2.0 200")]
    assert a_ok, "no 200 to the caller"
    a_to_tag = _TO_TAG.search(a_ok[-1][0].decode()).group(1)  # type: ignore[union-attr]
    caller.send(f"ACK {uri} SIP/2.0\nVia: SIP/2.0/UDP {ip}:{port};branch={caller.branch()}\n"
                f"From: sipp <sip:1000@{ip}:{port}>;tag={n}SIPpTag00{n}\n"
                f"To: <{uri}>;tag={a_to_tag}\nCall-ID: {call_id}\nCSeq: 2 ACK\n"
                "Max-Forwards: 70\nContent-Length: 0\n\n")
    caller.reactor.advance(0.5)  # the hold
    out = caller.send(f"BYE {uri} SIP/2.0\nVia: SIP/2.0/UDP {ip}:{port};branch={caller.branch()}\n"
                      f"From: sipp <sip:1000@{ip}:{port}>;tag={n}SIPpTag00{n}\n"
                      f"To: <{uri}>;tag={a_to_tag}\nCall-ID: {call_id}\nCSeq: 3 BYE\n"
                      "Max-Forwards: 70\nContent-Length: 0\n\n")
    b_bye = next((d for d in out if d.startswith(b"BYE ")), None)
    assert b_bye is not None, out
    blines = b_bye.decode().split("\r\n\r\n", 1)[0].split("\r\n")
    bcopy = [v for v in blines[1:]
             if v.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")]
    callee.send("SIP/2.0 200 OK\n" + "\n".join(bcopy) + "\nContent-Length: 0\n\n")
    del b_call_id, b_from


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="extensions to register")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=400, help="virtual offered rate per s")
    parser.add_argument("--profile", help="write a cProfile of the measured part here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    reactor, top, sip = build(work, args.count)
    profile = cProfile.Profile() if args.profile else None
    results = {}

    def timed(label: str, n: int, fn: Any) -> None:
        if profile:
            profile.enable()
        t0 = time.process_time()
        for i in range(n):
            fn(i)
            reactor.advance(1.0 / args.rate)
        used = time.process_time() - t0
        if profile:
            profile.disable()
        results[label] = used / n * 1e6
        print(f"{label}: {used / n * 1e6:,.0f} µs CPU each ({n} in {used:.2f} s)", flush=True)

    phones = [Phone(reactor, sip, ("127.0.0.1", 6000 + i % 1000)) for i in range(args.count)]
    timed("register (new binding)", args.count,
          lambda i: register(phones[i], str(FIRST + i), f"{i}-bench@127.0.0.1", 1))
    timed("register (refresh)", args.count,
          lambda i: register(phones[i], str(FIRST + i), f"{i}-bench@127.0.0.1", 3))
    callee = Phone(reactor, sip, ("127.0.0.1", 5090))
    register(callee, "1001", "callee@127.0.0.1", 1)
    caller = Phone(reactor, sip, ("127.0.0.1", 5070))
    if args.calls:
        timed("call (auth, dialplan, anchored media, 500 ms hold, CDR)", args.calls,
              lambda i: call(caller, callee, i))
    reactor.advance(40)
    top.stopService()
    if profile:
        profile.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
