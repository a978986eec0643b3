"""A bounded fuzz run against the live server (issue 8, "Fuzzing").

About 4,000 mutated SIP messages (a seeded :class:`random.Random`, so a
failure reproduces with the same ``SEED``) are sent to a running pbxd:

A. over UDP from ``127.0.0.2`` with bans on: the source is banned;
B. over UDP from ``127.0.0.3``, a trusted network (never banned nor rate
   limited), so the parser, transaction and dialog layers really see them;
C. over TCP from ``127.0.0.3``, a batch per connection (framing games);
D. INVITEs to the echo service ``*43`` from ``127.0.0.3`` that answer the
   407 with a digest (hashlib), with mutated SDP bodies; an answered call
   then gets mutated in-dialog requests (INFO, UPDATE, re-INVITE) and a BYE.

The mutations start from real messages (tests/sipmessages.py and, when
present, the RFC 4475/5118 corpus) and from in-dialog requests of every
method: byte flips, truncation, header duplication and removal, huge values,
random Content-Length, bad UTF-8, CRLF games, method swaps, To tags.

Afterwards the server still answers OPTIONS over UDP and TCP, a REGISTER with
digest succeeds, an authenticated SIPp call completes, its memory has not run
away, and (the fixture's teardown check) its log holds no Traceback.
"""

from __future__ import annotations

import os
import random
import re
import socket
import time
import uuid
from pathlib import Path

import pytest

from .fuzzing import SDP, corpus, mutate, mutate_sdp, tcp_fuzz, udp_fuzz
from .harness import EXTENSIONS, StreamClient, options_request, status_of, udp_exchange
from .sipp import run_sipp, users_inf
from .test_hostile import CALLER_IP, PHONES_IP, SCENARIOS, register_and_answer
from .test_registrar import SipUdpClient, digest_params, digest_response, headers_of

SEED = int(os.environ.get("PBXD_FUZZ_SEED", "20261128"))
UNTRUSTED, TRUSTED = "127.0.0.2", "127.0.0.3"
class Caller:
    """Extensions over UDP from ``host``: authenticated INVITEs to ``*43`` (1000) with fuzzed
    SDP and in-dialog requests, authenticated REGISTERs (1002) with fuzzed contacts."""

    def __init__(self, host: str, port: int, rng: random.Random) -> None:
        self.port, self.rng = port, rng
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.via_host = f"{host}:{self.sock.getsockname()[1]}"
        self.ruri = f"sip:*43@127.0.0.1:{port}"

    def close(self) -> None:
        self.sock.close()

    def send(self, method: str, uri: str, call: dict, cseq: int, body: bytes = b"",
             extra: str = "", branch: str | None = None, fuzz: bool = False) -> None:
        user = call.get("user", "1000")
        head = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {self.via_host};rport;"
                f"branch={branch or 'z9hG4bK' + uuid.uuid4().hex[:16]}\r\nMax-Forwards: 70\r\n"
                f"From: <sip:{user}@127.0.0.1>;tag={call['from_tag']}\r\nTo: {call['to']}\r\n"
                f"Call-ID: {call['id']}\r\nCSeq: {cseq} {method}\r\n"
                + (extra if "Contact:" in extra else f"Contact: <sip:{user}@{self.via_host}>\r\n{extra}"))
        if body:
            head += "Content-Type: application/sdp\r\n"
        data = head.encode("utf-8", "surrogateescape") + b"Content-Length: %d\r\n\r\n" % len(body) + body
        try:
            self.sock.sendto(mutate(data, self.rng) if fuzz else data, ("127.0.0.1", self.port))
        except OSError:  # a mutation too big for a datagram
            pass

    def final(self, cseq: int, method: str, timeout: float = 2.0) -> bytes | None:
        """The final response to ``cseq method`` (others skipped), or None."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                reply = self.sock.recv(70000)
            except TimeoutError:
                return None
            status = status_of(reply)
            if status and status >= 200 and re.search(rb"(?im)^CSeq:\s*%d %s" % (cseq, method.encode()), reply):
                return reply
        return None

    @staticmethod
    def credentials(reply: bytes, method: str, uri: str, user: str) -> str:
        """The header line answering the 401/407 ``reply`` (MD5, qop=auth, hashlib only)."""
        proxy = status_of(reply) == 407
        offer = digest_params(headers_of(reply, "Proxy-Authenticate" if proxy else "WWW-Authenticate")[0])
        cnonce = uuid.uuid4().hex[:16]
        digest = digest_response("MD5", user, EXTENSIONS[user], method, uri, offer["nonce"],
                                 "00000001", cnonce)
        return (f'{"Proxy-Authorization" if proxy else "Authorization"}: Digest username="{user}", '
                f'realm="{offer["realm"]}", nonce="{offer["nonce"]}", uri="{uri}", '
                f'response="{digest}", algorithm=MD5, qop=auth, nc=00000001, cnonce="{cnonce}"\r\n')

    def contacts(self) -> str:
        """Fuzzed Contact/Expires headers for a REGISTER of 1002 (one may point at the server)."""
        r, me = self.rng, self.via_host
        choices = [
            f"Contact: <sip:1002@{me};transport={r.choice(['udp', 'tcp', 'tls', 'sctp', 'x'])}>;"
            f"expires={r.choice(['-1', '0', '60', '4294967296', 'abc'])};q={r.choice(['0.5', '2', '-1', 'x'])}\r\n",
            f"Contact: *\r\nExpires: {r.choice(['0', '60'])}\r\n",
            "Contact: " + ", ".join(f"<sip:1002@127.0.0.3:{6000 + k}>" for k in range(r.choice([2, 11, 60]))) + "\r\n",
            f'Contact: "we\\"ird" <sips:1002@[::1]:5061>;+sip.instance="<urn:uuid:{uuid.uuid4()}>";reg-id=x\r\n',
            r.choice(["Contact: <tel:+15551234>\r\n", "Contact: <sip:@>\r\n", "Contact: garbage\r\n",
                      "Contact: <sip:1002@127.0.0.3:0>\r\n", "Contact: <sip:1002@127.0.0.3>\r\nExpires: 99999999999\r\n",
                      f"Contact: <sip:1002@127.0.0.1:{self.port}>;expires=60\r\n"]),
        ]
        text = r.choice(choices)
        for _ in range(r.choice([0, 0, 1, 3])):  # a few characters broken, some not UTF-8
            at = r.randrange(len(text) - 2)
            text = text[:at] + r.choice(["\udcff", ";", "<", ">", "\"", "%", " ", "\x00", "=", ","]) + text[at + 1:]
        return text

    def register(self) -> int | None:
        """An authenticated REGISTER of 1002 with fuzzed contacts; its final status."""
        uri = f"sip:127.0.0.1:{self.port}"
        call = {"id": uuid.uuid4().hex, "from_tag": uuid.uuid4().hex[:8],
                "to": "<sip:1002@127.0.0.1>", "user": "1002"}
        extra = self.contacts()
        self.send("REGISTER", uri, call, 1, extra=extra)
        reply = self.final(1, "REGISTER")
        if status_of(reply) != 401:
            return status_of(reply)
        self.send("REGISTER", uri, call, 2, extra=extra + self.credentials(reply, "REGISTER", uri, "1002"))
        return status_of(self.final(2, "REGISTER"))

    def call(self, dialled: str = "*43") -> str:
        """One call; what came of it: ``answered``, ``refused`` or ``no answer``."""
        ruri = f"sip:{dialled}@127.0.0.1:{self.port}"
        call = {"id": uuid.uuid4().hex, "from_tag": uuid.uuid4().hex[:8], "to": f"<{ruri}>"}
        sdp = mutate_sdp(SDP, self.rng) if self.rng.random() < 0.7 else SDP
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        self.send("INVITE", ruri, call, 1, sdp, branch=branch)
        reply, cseq = self.final(1, "INVITE"), 1
        if status_of(reply) == 407:
            self.ack_failure(ruri, call, reply, cseq, branch)
            branch, cseq = "z9hG4bK" + uuid.uuid4().hex[:16], 2
            self.send("INVITE", ruri, call, cseq, sdp, self.credentials(reply, "INVITE", ruri, "1000"),
                      branch=branch)
            reply = self.final(cseq, "INVITE", 1.5)
        status = status_of(reply)
        if reply is None or status is None:  # still ringing (a fuzzed contact): CANCEL it
            self.send("CANCEL", ruri, call, cseq, branch=branch)
            if (reply := self.final(cseq, "INVITE", 1.0)) is not None:
                self.ack_failure(ruri, call, reply, cseq, branch)
            return "no answer"
        if status >= 300:
            self.ack_failure(ruri, call, reply, cseq, branch)
            return "refused"
        call["to"] = headers_of(reply, "To")[0]
        target = re.findall(r"<([^>]*)>", headers_of(reply, "Contact")[0])[0]
        self.send("ACK", target, call, cseq)
        for n in range(cseq + 1, cseq + 4):  # fuzzed in-dialog requests
            method = self.rng.choice(["INFO", "UPDATE", "INVITE", "OPTIONS", "NOTIFY"])
            body = mutate_sdp(SDP, self.rng) if method in ("UPDATE", "INVITE") else b""
            self.send(method, target, call, n, body, fuzz=self.rng.random() < 0.5)
            if status_of(self.final(n, method, 0.5)) in range(200, 300) and method == "INVITE":
                self.send("ACK", target, call, n)
        self.send("BYE", target, call, 20)
        self.final(20, "BYE")
        return "answered"

    def ack_failure(self, ruri: str, call: dict, reply: bytes, cseq: int, branch: str) -> None:
        """ACK a non-2xx final response (same branch, the response's To tag)."""
        to = headers_of(reply, "To")
        self.send("ACK", ruri, dict(call, to=to[0] if to else call["to"]), cseq, branch=branch)


# -- the test ------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))


@pytest.mark.needs_sipp
def test_server_survives_a_fuzz_run_and_still_serves(pbx_factory, tmp_path):
    pbx = pbx_factory(transports=("udp", "tcp"), admin=False,
                      overrides={"security": {"trusted_networks": [f"{TRUSTED}/32"]},
                                 "calls": {"drain_time": 0}})  # no wait at teardown for a failed run
    rng = random.Random(SEED)
    base = corpus(pbx.udp_port, rng)
    rss_before = rss_kib(pbx.pid)
    started = time.monotonic()
    deadline = started + 30

    banned_sent, _ = udp_fuzz(UNTRUSTED, pbx.udp_port, base, 800, 400, rng, deadline)
    sent, answers = udp_fuzz(TRUSTED, pbx.udp_port, base, 2500, 1000, rng, deadline)
    tcp_sent, tcp_bytes = tcp_fuzz(TRUSTED, pbx.tcp_port, base, 600, 20, rng, deadline)
    caller = Caller(TRUSTED, pbx.udp_port, rng)
    try:
        registered = [caller.register() for _ in range(40) if time.monotonic() < deadline]
        outcomes = [caller.call(caller.rng.choice(["*43", "*43", "*43", "1002"]))
                    for _ in range(40) if time.monotonic() < deadline]
    finally:
        caller.close()
    fuzz_seconds = time.monotonic() - started
    total = banned_sent + sent + tcp_sent + len(registered) * 2 + len(outcomes) * 6
    print(f"fuzz: {total} messages in {fuzz_seconds:.1f}s (UDP banned {banned_sent}, "
          f"UDP trusted {sent} -> {answers} answers, TCP {tcp_sent} -> {tcp_bytes} bytes, "
          f"REGISTER statuses {sorted(set(map(str, registered)))}, "
          f"calls {dict((o, outcomes.count(o)) for o in set(outcomes))})")
    assert total >= 3000, "the fuzz run was cut short by its deadline"
    assert answers > 100 and tcp_bytes > 0, "the trusted fuzzer got (almost) no answers"
    assert "answered" in outcomes, "no fuzzed-SDP call was set up"
    assert 200 in registered, "no fuzzed-contact REGISTER was accepted"
    assert re.search(rf"banned {re.escape(UNTRUSTED)} ", pbx.log_text())

    # still serving: OPTIONS over UDP and TCP, a REGISTER with digest, an authenticated call
    assert status_of(udp_exchange(pbx.udp_port, options_request(pbx.udp_port))) == 200
    with StreamClient(pbx.tcp_port) as stream:
        stream.send(options_request(pbx.tcp_port, "tcp", local_port=stream.local_port))
        assert status_of(stream.read_message()) == 200
    with SipUdpClient(pbx.udp_port, local_ip=PHONES_IP) as phone:
        _, final = phone.register("1000", EXTENSIONS["1000"])
        assert status_of(final) == 200, final
    uas = register_and_answer(pbx, tmp_path)
    try:
        result = run_sipp(SCENARIOS / "call_uac_auth.xml", f"127.0.0.1:{pbx.udp_port}",
                          tmp_path / "uac", service="1001", calls=1, local_ip=CALLER_IP,
                          inf=users_inf(tmp_path / "caller.csv", {"1000": EXTENSIONS["1000"]}),
                          timeout=15, extra=["-d", "500", "-auth_uri",
                                             f"1001@127.0.0.1:{pbx.udp_port}"])
        assert result.returncode == 0 and result.successful == 1, result.explain()
    finally:
        uas.stop()
    growth = rss_kib(pbx.pid) - rss_before
    print(f"rss growth {growth} KiB")
    assert growth < 64 * 1024, f"the server grew by {growth} KiB during the fuzz run"
