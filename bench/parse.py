#!/usr/bin/env python3
"""Benchmark of the SIP message layer (not run by pytest).

Times, with time.perf_counter_ns over batches of iterations:
- parse + serialize of a typical INVITE with SDP, a REGISTER and a 200 OK;
- reading Via, From, To, CSeq and Call-ID of a freshly parsed INVITE;
- the messages of the two hot flows as SIPp sends them (REGISTER with and
  without Authorization as tests/integration/scenarios/register_phase.xml,
  INVITE with Proxy-Authorization, ACK and BYE as call_uac_auth.xml, 180, 200
  and 200 to BYE as ``sn:uas`` answers the B-leg): parse; parse +
  check_request; a response built with make_response, a few headers set and
  serialized; the B-leg INVITE built as pbxd.calls.outbound and pbxd.sip.ua
  build it, then serialized. Each copy of these has its own branch, From tag
  and Call-ID, as on the wire (the parse caches get no help from those);
- a reference run in the same invocation (``bytes.split`` of the same INVITE
  into lines and each line into name/value), since these machines are shared
  and noisy: the ratio to the reference is the figure that compares.

Prints median microseconds and messages per second, and rewrites its section
of docs/performance.md between the markers.  Usage: ``python bench/parse.py [--no-write]``.
"""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import write_section  # noqa: E402

from pbxd.sip.message import Request, make_response  # noqa: E402
from pbxd.sip.parser import parse_message  # noqa: E402
from pbxd.sip.uri import URI  # noqa: E402
from pbxd.sip.validation import check_request  # noqa: E402
from tests import sipmessages as golden  # noqa: E402

TARGETS = {"parse + serialize INVITE with SDP": 30.0, "read Via, From, To, CSeq, Call-ID": 10.0}


def measure(cases: dict[str, Callable[[], object]], batch: int = 200, rounds: int = 60) -> dict[str, float]:
    """Median time of one call of each case in µs, over ``rounds`` batches of ``batch`` calls.

    The cases are interleaved round by round, so load from other processes on a
    shared machine falls on all of them (and on the reference) alike.
    """
    samples: dict[str, list[float]] = {label: [] for label in cases}
    for fn in cases.values():
        for _ in range(batch):
            fn()
    for _ in range(rounds):
        for label, fn in cases.items():
            t0 = time.perf_counter_ns()
            for _ in range(batch):
                fn()
            samples[label].append((time.perf_counter_ns() - t0) / batch / 1000)
    return {label: statistics.median(values) for label, values in samples.items()}


def measure_reads(data: bytes, batch: int = 200, rounds: int = 60) -> float:
    """Median time of reading the five core headers of a message parsed just before."""
    samples = []
    for _ in range(rounds):
        msgs = [parse_message(data) for _ in range(batch)]
        t0 = time.perf_counter_ns()
        for m in msgs:
            m.top_via  # noqa: B018
            m.from_  # noqa: B018
            m.to  # noqa: B018
            m.cseq  # noqa: B018
            m.call_id  # noqa: B018
        samples.append((time.perf_counter_ns() - t0) / batch / 1000)
    return statistics.median(samples)


# -- the hot flows, as SIPp sends them --------------------------------------------

_REGISTER = (
    "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4711-1-0;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:1000@127.0.0.1>;tag=4711SIPpTag01\r\n"
    "To: <sip:1000@127.0.0.1>\r\n"
    "Call-ID: 1-phase@127.0.0.1\r\n"
    "CSeq: {cseq} REGISTER\r\n"
    "Contact: <sip:1000@127.0.0.1:5061;transport=UDP>\r\n"
    "{auth}"
    "Expires: 3600\r\n"
    "User-Agent: sipp-register-phase\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)
_DIGEST = ('username="1000",realm="pbxd",cnonce="6b8b4567",nc=00000001,qop=auth,uri="{uri}",'
           'nonce="MTc2NDM1NjQwMC4xMjM0NTY6YWJjZGVmMDEyMzQ1Njc4OQ",'
           'response="0123456789abcdef0123456789abcdef",algorithm=MD5')
_SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
_A_LEG = (b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4711-1-5;rport\r\n"
          b"Max-Forwards: 70\r\n"
          b"From: <sip:1000@127.0.0.1:5060>;tag=4711SIPpTag001\r\n")
_B_LEG = (b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c;rport\r\n"
          b"From: <sip:1000@127.0.0.1>;tag=9f8e7d6c5b4a\r\n"
          b"To: <sip:1001@127.0.0.1:5062>;tag=4800SIPpTag011\r\n"
          b"Call-ID: 5f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c@127.0.0.1\r\n")
FLOW = {
    "REGISTER": _REGISTER.format(cseq=1, auth="").encode(),
    "REGISTER with Authorization": _REGISTER.format(
        cseq=2, auth="Authorization: Digest " + _DIGEST.format(uri="sip:127.0.0.1:5060") + "\r\n"
    ).encode(),
    "INVITE with Proxy-Authorization": (
        b"INVITE sip:1001@127.0.0.1:5060 SIP/2.0\r\n" + _A_LEG
        + b"To: <sip:1001@127.0.0.1:5060>\r\nCall-ID: 1-4711@127.0.0.1\r\nCSeq: 2 INVITE\r\n"
        b"Contact: <sip:1000@127.0.0.1:5061;transport=UDP>\r\n"
        b"Proxy-Authorization: Digest " + _DIGEST.format(uri="sip:1001@127.0.0.1:5060").encode()
        + b"\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n" % len(_SDP) + _SDP
    ),
    "180 from the B-leg": (
        b"SIP/2.0 180 Ringing\r\n" + _B_LEG + b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:127.0.0.1:5062;transport=UDP>\r\nContent-Length: 0\r\n\r\n"
    ),
    "200 with SDP from the B-leg": (
        b"SIP/2.0 200 OK\r\n" + _B_LEG + b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:127.0.0.1:5062;transport=UDP>\r\nContent-Type: application/sdp\r\n"
        b"Content-Length:   %d\r\n\r\n" % len(_SDP) + _SDP
    ),
    "ACK": (
        b"ACK sip:pbx@127.0.0.1:5060 SIP/2.0\r\n" + _A_LEG
        + b"To: <sip:1001@127.0.0.1:5060>;tag=a1b2c3d4e5f6\r\nCall-ID: 1-4711@127.0.0.1\r\n"
        b"CSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n"
    ),
    "BYE": (
        b"BYE sip:pbx@127.0.0.1:5060 SIP/2.0\r\n" + _A_LEG
        + b"To: <sip:1001@127.0.0.1:5060>;tag=a1b2c3d4e5f6\r\nCall-ID: 1-4711@127.0.0.1\r\n"
        b"CSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n"
    ),
    "200 to BYE from the B-leg": (
        b"SIP/2.0 200 OK\r\n" + _B_LEG + b"CSeq: 2 BYE\r\n"
        b"Contact: <sip:127.0.0.1:5062;transport=UDP>\r\nContent-Length: 0\r\n\r\n"
    ),
}
_SUPPORTED = ("replaces", "path", "outbound", "gruu", "timer")
_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "UPDATE",
            "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE")
_CHALLENGE = ('Digest realm="pbxd",nonce="MTc2NDM1NjQwMC4xMjM0NTY6YWJjZGVmMDEyMzQ1Njc4OQ",'
              'algorithm=MD5,qop="auth"')


def variants(data: bytes, count: int = 20000) -> Callable[[], bytes]:
    """Cycle through ``count`` copies of ``data``, each with its own branch, tag and Call-ID."""
    out = []
    for i in range(count):
        d = data
        for old in (b"z9hG4bK-4711-1-", b"z9hG4bK3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c",
                    b"4711SIPpTag0", b"9f8e7d6c5b4a", b"Call-ID: "):
            d = d.replace(old, old + b"%d." % i)
        out.append(d)
    return itertools.cycle(out).__next__


def _round_trip(data: bytes) -> Callable[[], object]:
    return lambda: parse_message(data).serialize()


def _request(data: bytes) -> Request:
    request = parse_message(data)
    assert isinstance(request, Request)
    return request


def _parse(n: Callable[[], bytes]) -> Callable[[], object]:
    return lambda: parse_message(n())


def _parse_check(n: Callable[[], bytes]) -> Callable[[], object]:
    return lambda: check_request(_request(n()), supported=_SUPPORTED, served_methods=_METHODS,
                                 to_tag="a1b2c3")


def flow_cases() -> dict[str, Callable[[], object]]:
    """The hot-flow cases (see the module docstring)."""
    cases: dict[str, Callable[[], object]] = {}
    nxt = {name: variants(data) for name, data in FLOW.items()}
    for name, n in nxt.items():
        cases[f"flow: parse {name}"] = _parse(n)
    for name in ("REGISTER", "REGISTER with Authorization", "INVITE with Proxy-Authorization",
                 "ACK", "BYE"):
        cases[f"flow: parse + check_request {name}"] = _parse_check(nxt[name])

    def challenge(n: Callable[[], bytes] = nxt["REGISTER"]) -> bytes:
        resp = make_response(_request(n()), 401, to_tag="a1b2c3d4e5f6")
        resp.add("WWW-Authenticate", _CHALLENGE)
        resp.set("Server", "pbxd")
        return resp.serialize()

    def registered(n: Callable[[], bytes] = nxt["REGISTER with Authorization"]) -> bytes:
        request = _request(n())
        via = request.top_via
        assert via is not None
        via.params["received"] = "127.0.0.1"
        via.params["rport"] = "5061"
        resp = make_response(request, 200, to_tag="a1b2c3d4e5f6")
        resp.add("Contact", "<sip:1000@127.0.0.1:5061;transport=UDP>;expires=3600")
        resp.set("Date", "Sat, 28 Nov 2026 18:00:00 GMT")
        resp.set("Server", "pbxd")
        return resp.serialize()

    def answered(n: Callable[[], bytes] = nxt["INVITE with Proxy-Authorization"]) -> list[bytes]:
        request = _request(n())
        via = request.top_via
        assert via is not None
        via.params["received"] = "127.0.0.1"
        via.params["rport"] = "5061"
        out = []
        for status in (100, 180, 200):
            resp = make_response(request, status, to_tag="a1b2c3d4e5f6")
            if status > 100:
                resp.add("Contact", "<sip:pbx@127.0.0.1:5060>")
            if status == 200:
                resp.add("Content-Type", "application/sdp")
                resp.body = _SDP
            resp.set("Server", "pbxd")
            out.append(resp.serialize())
        return out

    target = URI.parse("sip:1001@127.0.0.1:5062")
    branches = itertools.cycle([f"z9hG4bK{i:032x}" for i in range(20000)]).__next__

    def b_leg() -> bytes:
        invite = Request("INVITE", target.copy())
        invite.add("Max-Forwards", "70")
        invite.add("From", "<sip:1000@127.0.0.1>;tag=9f8e7d6c5b4a")
        invite.add("To", "<sip:1001@127.0.0.1:5062>")
        invite.add("Call-ID", "5f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c@127.0.0.1")
        invite.add("CSeq", "1 INVITE")
        invite.add("Contact", "<sip:pbx@127.0.0.1:5060>")
        invite.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE")
        invite.add("Content-Type", "application/sdp")
        invite.body = _SDP
        invite.add("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={branches()};rport", first=True)
        if invite.get("User-Agent") is None:
            invite.set("User-Agent", "pbxd")
        top = invite.top_via
        assert top is not None and top.branch and invite.cseq is not None
        return invite.serialize()

    cases["flow: parse + 401 + serialize REGISTER"] = challenge
    cases["flow: parse + stamp Via + 200 + serialize REGISTER with Authorization"] = registered
    cases["flow: parse + stamp Via + 100, 180, 200 + serialize INVITE"] = answered
    cases["flow: build + serialize the B-leg INVITE"] = b_leg
    return cases


def reference(data: bytes) -> Callable[[], object]:
    """The same INVITE split into lines and name/value pairs with bytes methods only."""

    def split() -> object:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        return [line.partition(b":") for line in lines[1:]], body

    return split


def run() -> list[tuple[str, float]]:
    """Run every case; return (label, median µs), the reference last."""
    cases: dict[str, Callable[[], object]] = {}
    for label, data in (
        ("parse + serialize INVITE with SDP", golden.INVITE_SDP),
        ("parse + serialize REGISTER", golden.REGISTER),
        ("parse + serialize 200 OK", golden.OK_200),
    ):
        cases[label] = _round_trip(data)
    cases["parse only INVITE with SDP"] = lambda: parse_message(golden.INVITE_SDP)
    cases.update(flow_cases())
    cases["reference: bytes split of the INVITE"] = reference(golden.INVITE_SDP)
    timed = measure(cases)
    ref = timed.pop("reference: bytes split of the INVITE")
    results = list(timed.items())
    results.append(("read Via, From, To, CSeq, Call-ID", measure_reads(golden.INVITE_SDP)))
    results.append(("reference: bytes split of the INVITE", ref))
    return results


def report(results: list[tuple[str, float]]) -> str:
    """A Markdown table of the results with the ratio to the reference."""
    ref = results[-1][1]
    rows = [
        f"Measured by `python bench/parse.py` on {platform.python_implementation()} "
        f"{platform.python_version()} ({platform.machine()}), {time.strftime('%Y-%m-%d')}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs.",
        "",
        "| case | median µs | messages/s | × reference | target |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, us in results:
        target = TARGETS.get(label)
        verdict = "" if target is None else f"< {target:g} µs {'met' if us < target else 'MISSED'}"
        rows.append(f"| {label} | {us:.2f} | {1e6 / us:,.0f} | {us / ref:.1f} | {verdict} |")
    return "\n".join(rows)


def main() -> None:
    results = run()
    text = report(results)
    print(text)
    if "--no-write" not in sys.argv:
        write_section("bench/parse.py", text)


if __name__ == "__main__":
    main()
