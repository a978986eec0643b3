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

from tests.conftest import testdata_dir
from tests.sipmessages import ALL as GOLDEN

from .harness import EXTENSIONS, StreamClient, options_request, status_of, udp_exchange
from .sipp import run_sipp, users_inf
from .test_hostile import CALLER_IP, PHONES_IP, SCENARIOS, register_and_answer
from .test_registrar import SipUdpClient, digest_params, digest_response, headers_of

SEED = int(os.environ.get("PBXD_FUZZ_SEED", "20261128"))
UNTRUSTED, TRUSTED = "127.0.0.2", "127.0.0.3"
METHODS = [b"INVITE", b"ACK", b"BYE", b"CANCEL", b"INFO", b"UPDATE", b"SUBSCRIBE", b"NOTIFY",
           b"OPTIONS", b"REGISTER", b"PRACK", b"REFER", b"MESSAGE", b"PUBLISH", b"FOO", b"inv ite"]
_VIA = re.compile(rb"(?im)^((?:via|v)\s*:\s*SIP\s*/\s*\d\.\d\s*/\s*)(\w+)(\s+)([^;,\s]+)")
_CL = re.compile(rb"(?im)^(content-length|l)\s*:[^\r\n]*")
SDP = (b"v=0\r\no=fuzz 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
       b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n")


# -- the corpus and its mutations ---------------------------------------------------------


def in_dialog(method: bytes, port: int, rng: random.Random) -> bytes:
    """A request that looks in-dialog (To tag, Route, CSeq) for a dialog that may not exist."""
    tag, cid = rng.getrandbits(32), rng.getrandbits(64)
    body = SDP if method in (b"INVITE", b"UPDATE", b"ACK") and rng.random() < 0.5 else b""
    extra = b"Event: message-summary\r\nSubscription-State: active;expires=60\r\n" \
        if method in (b"SUBSCRIBE", b"NOTIFY") else b""
    return (b"%s sip:1001@127.0.0.1:%d SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:5999;branch=z9hG4bK%x\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:1000@127.0.0.1>;tag=%x\r\nTo: <sip:1001@127.0.0.1>;tag=%x\r\n"
            b"Call-ID: %x@fuzz\r\nCSeq: %d %s\r\nRoute: <sip:127.0.0.1:%d;lr>\r\n%s"
            b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s"
            % (method, port, rng.getrandbits(48), tag, tag ^ 0xFFFF, cid, rng.randrange(1, 2**31),
               method, port, extra, len(body), body))


def corpus(port: int, rng: random.Random) -> list[bytes]:
    """Real messages to mutate: golden captures, the RFC torture corpus, in-dialog requests."""
    messages = list(GOLDEN.values())
    root = testdata_dir()
    if root is not None:
        messages += [p.read_bytes() for folder in ("rfc4475", "rfc5118")
                     for p in sorted(Path(root, folder).glob("*.sip"))]
    messages += [in_dialog(m, port, rng) for m in METHODS[:14] for _ in range(3)]
    return messages


def retarget(data: bytes, host: str, port: int, transport: bytes) -> bytes:
    """Point the top Via at our socket, so answers come back to the fuzzer."""
    return _VIA.sub(lambda m: m.group(1) + transport + m.group(3) + b"%s:%d" % (host.encode(), port),
                    data, count=1)


def freshen(message: bytes, rng: random.Random) -> bytes:
    """Mostly a new branch and Call-ID, so a copy is a new transaction, not a retransmission."""
    if rng.random() < 0.2:
        return message
    message = re.sub(rb"branch=z9hG4bK[\w.!%*+`'~-]*", b"branch=z9hG4bK%x" % rng.getrandbits(64),
                     message, count=1)
    return re.sub(rb"(?im)^((?:call-id|i)\s*:\s*)[^\r\n]*", rb"\g<1>%x@fuzz" % rng.getrandbits(64),
                  message, count=1)


def fix_length(message: bytes) -> bytes:
    """Set Content-Length to the real body length (after a body mutation)."""
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        return message
    head, n = _CL.subn(b"Content-Length: %d" % len(body), head, count=1)
    return head + sep + body if n else head + b"\r\nContent-Length: %d" % len(body) + sep + body


def mutate_sdp(body: bytes, rng: random.Random) -> bytes:
    """An SDP with a few lines broken, duplicated, dropped or made absurd."""
    lines = body.split(b"\r\n")
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        choice = rng.randrange(9)
        if choice == 0:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        elif choice == 1:
            lines.insert(i, lines[i])
        elif choice == 2 and len(lines) > 1:
            del lines[i]
        elif choice == 3:
            lines[i] = b"m=audio %d RTP/AVP %s" % (rng.choice([0, 65535, 70000, -1]),
                                                    b" ".join(b"%d" % rng.randrange(-5, 300)
                                                              for _ in range(rng.randrange(0, 40))))
        elif choice == 4:
            lines[i] = b"c=IN %s %s" % (rng.choice([b"IP4", b"IP6", b"XX"]),
                                        rng.choice([b"999.1.1.1", b"::1", b"", b"a" * 300]))
        elif choice == 5:
            lines[i] = b"a=rtpmap:%d %s/%s" % (rng.randrange(-1, 200), rng.choice([b"PCMU", b"", b"\xff"]),
                                               rng.choice([b"8000", b"0", b"x", b"99999999999"]))
        elif choice == 6:
            lines.extend([b"m=audio 4000%d RTP/AVP 0" % k for k in range(rng.randrange(1, 60))])
        elif choice == 7:
            lines[i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        else:
            lines[i] = lines[i].replace(b"=", b"", 1)
    return b"\r\n".join(lines)


def mutate(message: bytes, rng: random.Random) -> bytes:
    """One to three random mutations of ``message``."""
    data = bytearray(message)
    for _ in range(rng.randint(1, 3)):
        head, sep, body = bytes(data).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        kind = rng.randrange(13)
        if kind == 0 and data:  # byte flips
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            continue
        if kind == 1 and data:  # truncation
            del data[rng.randrange(len(data)):]
            continue
        if kind == 2 and len(lines) > 1:  # header duplication
            i = rng.randrange(1, len(lines))
            lines[i:i] = [lines[i]] * rng.choice([1, 2, 50, 400])
        elif kind == 3 and len(lines) > 1:  # header removal
            del lines[rng.randrange(1, len(lines))]
        elif kind == 4 and len(lines) > 1:  # a huge value
            i = rng.randrange(1, len(lines))
            lines[i] += b"x" * rng.choice([200, 5000, 9000, 70000])
        elif kind == 5:  # random Content-Length
            value = rng.choice([b"0", b"-1", b"99999999999999999999", b"abc", b"", b"1e3",
                                b"%d" % rng.randrange(0, 5000)])
            lines = [ln for ln in lines if not _CL.match(ln)] + [b"Content-Length: " + value]
        elif kind == 6 and len(lines) > 1:  # bad UTF-8
            i = rng.randrange(len(lines))
            at = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:at] + rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x00"]) + lines[i][at:]
        elif kind == 7:  # CRLF games
            game = rng.randrange(4)
            text = b"\r\n".join(lines)
            text = [text.replace(b"\r\n", b"\n"), text.replace(b"\r\n", b"\r"),
                    b"\r\n" * rng.randint(1, 5) + text, text.replace(b": ", b":\r\n ", 2)][game]
            lines = text.split(b"\r\n")
        elif kind == 8 and lines:  # method swap (sometimes CSeq too)
            method = rng.choice(METHODS)
            parts = lines[0].split(b" ", 1)
            if not lines[0].startswith(b"SIP/"):
                lines[0] = method + b" " + (parts[1] if len(parts) > 1 else b"")
            if rng.random() < 0.7:
                lines = [re.sub(rb"(?i)^(CSeq\s*:\s*\d+\s+)\S+", rb"\g<1>" + method, ln) for ln in lines]
        elif kind == 9:  # a To tag (in-dialog)
            lines = [ln + b";tag=%x" % rng.getrandbits(32) if ln.lower().startswith(b"to:") else ln
                     for ln in lines]
        elif kind == 10 and body:  # the body (SDP) mutated, length kept right
            data = bytearray(fix_length(head + b"\r\n\r\n" + mutate_sdp(body, rng)))
            continue
        elif kind == 11:  # splice with itself
            cut = rng.randrange(len(data) + 1)
            data = data[:cut] + data[rng.randrange(len(data) + 1):]
            continue
        else:  # numbers made huge or negative
            text = re.sub(rb"\d+", lambda m: rng.choice([m.group(), b"-1", b"4294967296", b"9" * 40]),
                          b"\r\n".join(lines), count=3)
            lines = text.split(b"\r\n")
        data = bytearray(b"\r\n".join(lines) + (sep or b"\r\n\r\n") + body)
    return bytes(data[:70000])


# -- the senders ------------------------------------------------------------------------------


def _drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(70000))
        except (BlockingIOError, ConnectionRefusedError):
            return got


def udp_fuzz(host: str, port: int, base: list[bytes], count: int, rate: float,
             rng: random.Random, deadline: float) -> tuple[int, int]:
    """Send ``count`` mutated datagrams from ``host`` at ``rate``/s; (sent, answers)."""
    sent = answers = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.setblocking(False)
        lport = sock.getsockname()[1]
        start = time.monotonic()
        while sent < count and time.monotonic() < deadline:
            while time.monotonic() < start + sent / rate:
                answers += len(_drain(sock))
                time.sleep(0.0005)
            data = mutate(freshen(retarget(rng.choice(base), host, lport, b"UDP"), rng), rng)
            try:
                sock.sendto(data, ("127.0.0.1", port))
            except OSError:  # too big for a datagram, or the buffer is full
                pass
            sent += 1
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            answers += len(_drain(sock))
            time.sleep(0.01)
    return sent, answers


def tcp_fuzz(host: str, port: int, base: list[bytes], count: int, per_connection: int,
             rng: random.Random, deadline: float) -> tuple[int, int]:
    """``count`` mutated messages over TCP, ``per_connection`` on each; (sent, bytes back)."""
    sent = received = 0
    while sent < count and time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", port), timeout=2,
                                      source_address=(host, 0)) as sock:
            lport = sock.getsockname()[1]
            try:
                for _ in range(per_connection):
                    base_message = freshen(retarget(rng.choice(base), host, lport, b"TCP"), rng)
                    sock.sendall(mutate(base_message, rng))
                    sent += 1
                sock.settimeout(0.1)
                while chunk := sock.recv(65536):
                    received += len(chunk)
            except OSError:  # the server closed it (framing lost, too big) or nothing more came
                pass
    return sent, received


class Caller:
    """Extension 1000 over UDP from ``host``: authenticated INVITEs to ``*43`` with fuzzed SDP."""

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
        head = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {self.via_host};rport;"
                f"branch={branch or 'z9hG4bK' + uuid.uuid4().hex[:16]}\r\nMax-Forwards: 70\r\n"
                f"From: <sip:1000@127.0.0.1>;tag={call['from_tag']}\r\nTo: {call['to']}\r\n"
                f"Call-ID: {call['id']}\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:1000@{self.via_host}>\r\n{extra}")
        if body:
            head += "Content-Type: application/sdp\r\n"
        data = head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body
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

    def call(self) -> str:
        """One call; what came of it: ``answered``, ``refused`` or ``no answer``."""
        call = {"id": uuid.uuid4().hex, "from_tag": uuid.uuid4().hex[:8], "to": f"<{self.ruri}>"}
        sdp = mutate_sdp(SDP, self.rng) if self.rng.random() < 0.7 else SDP
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        self.send("INVITE", self.ruri, call, 1, sdp, branch=branch)
        reply, cseq = self.final(1, "INVITE"), 1
        if status_of(reply) == 407:
            self.ack_failure(call, reply, cseq, branch)
            offer = digest_params(headers_of(reply, "Proxy-Authenticate")[0])
            cnonce = uuid.uuid4().hex[:16]
            digest = digest_response("MD5", "1000", EXTENSIONS["1000"], "INVITE", self.ruri,
                                     offer["nonce"], "00000001", cnonce)
            auth = (f'Proxy-Authorization: Digest username="1000", realm="{offer["realm"]}", '
                    f'nonce="{offer["nonce"]}", uri="{self.ruri}", response="{digest}", '
                    f'algorithm=MD5, qop=auth, nc=00000001, cnonce="{cnonce}"\r\n')
            branch, cseq = "z9hG4bK" + uuid.uuid4().hex[:16], 2
            self.send("INVITE", self.ruri, call, cseq, sdp, auth, branch=branch)
            reply = self.final(cseq, "INVITE")
        status = status_of(reply)
        if reply is None or status is None:
            return "no answer"
        if status >= 300:
            self.ack_failure(call, reply, cseq, branch)
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

    def ack_failure(self, call: dict, reply: bytes, cseq: int, branch: str) -> None:
        """ACK a non-2xx final response (same branch, the response's To tag)."""
        to = headers_of(reply, "To")
        self.send("ACK", self.ruri, dict(call, to=to[0] if to else call["to"]), cseq, branch=branch)


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
        outcomes = [caller.call() for _ in range(40) if time.monotonic() < deadline]
    finally:
        caller.close()
    fuzz_seconds = time.monotonic() - started
    total = banned_sent + sent + tcp_sent + len(outcomes) * 6
    print(f"fuzz: {total} messages in {fuzz_seconds:.1f}s (UDP banned {banned_sent}, "
          f"UDP trusted {sent} -> {answers} answers, TCP {tcp_sent} -> {tcp_bytes} bytes, "
          f"calls {dict((o, outcomes.count(o)) for o in set(outcomes))})")
    assert total >= 3000, "the fuzz run was cut short by its deadline"
    assert answers > 100 and tcp_bytes > 0, "the trusted fuzzer got (almost) no answers"
    assert "answered" in outcomes, "no fuzzed-SDP call was set up"
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
