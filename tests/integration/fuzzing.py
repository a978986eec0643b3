"""Mutated SIP traffic for the live fuzz test (tests/integration/test_fuzz_live.py).

Everything takes a seeded :class:`random.Random`, so a run reproduces: the
corpus (golden captures, the RFC 4475/5118 files when present, in-dialog
requests of every method), :func:`mutate` (byte flips, truncation, header
duplication and removal, huge values, random Content-Length, bad UTF-8, CRLF
games, method swaps, To tags, fuzzed bodies), :func:`mutate_sdp`, and the
bounded UDP and TCP senders.
"""

from __future__ import annotations

import random
import re
import socket
import time
from pathlib import Path

from tests.conftest import testdata_dir
from tests.sipmessages import ALL as GOLDEN

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
