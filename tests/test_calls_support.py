"""Test doubles for the call tests: a whole SIP stack on a task.Clock, phones that
speak raw SIP through recording transports, RTP ports that record writes.

Everything real except the sockets: the SIPController, TransactionLayer,
UserAgent, CallManager, LegMedia and PortAllocator are the production ones.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.task import Clock
from zope.interface import implementer

from pbxd.calls.call import CallDeps
from pbxd.calls.manager import CallManager
from pbxd.interfaces import ISIPTransport
from pbxd.rtp.ports import PortAllocator
from pbxd.rtp.relay import LegMedia
from pbxd.sip.controller import SIPController
from pbxd.sip.message import make_response
from pbxd.sip.parser import parse_message
from pbxd.sip.transaction import TransactionLayer
from pbxd.sip.ua import UserAgent
from pbxd.sip.uri import URI

PBX = ("192.0.2.1", 5060)
REALM = "pbx.test"


def sdp(ip: str, port: int, direction: str | None = None, codecs: str = "0 8 101") -> bytes:
    lines = ["v=0", f"o=- 1 1 IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}", "t=0 0",
             f"m=audio {port} RTP/AVP {codecs}", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
             "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16"]
    if direction:
        lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


@implementer(ISIPTransport)
class Wire:
    """A SIP transport that records what the PBX sends, by destination."""

    def __init__(self, name: str = "UDP", peer: tuple[str, int] | None = None) -> None:
        self.name = name
        self.reliable = name != "UDP"
        self.secure = name == "TLS"
        self.connected = True
        self.local_address = PBX
        self.peer = peer
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def send(self, data: bytes, address: tuple[str, int]) -> bool:
        if not self.connected:
            return False
        self.sent.append((data, self.peer if self.reliable else address))
        return True


class RtpPort:
    """A bound RTP/RTCP port (reactor.listenUDP result) that records writes."""

    def __init__(self, port: int, protocol: Any) -> None:
        self.port = port
        self.protocol = protocol
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.listening = True

    def write(self, data: bytes, address: tuple[str, int]) -> None:
        self.written.append((data, address))

    def stopListening(self) -> None:  # noqa: N802 (Twisted API)
        self.listening = False


@dataclass
class FakeBinding:
    uri: URI
    destination: tuple[Any, tuple[str, int]]
    path: tuple[str, ...] = ()


@dataclass
class FakeLocation:
    """LocationService stand-in: lookup() and target() over fixed bindings."""

    bindings: dict[str, list[FakeBinding]] = field(default_factory=dict)

    def lookup(self, aor: str) -> list[FakeBinding]:
        return list(self.bindings.get(aor, []))

    def target(self, binding: FakeBinding) -> tuple[Any, tuple[str, int]]:
        return binding.destination


class Phone:
    """A SIP phone at ``address`` talking raw SIP to the PBX over ``wire``."""

    _n = itertools.count(1)

    def __init__(self, world: World, number: str, address: tuple[str, int], wire: Wire) -> None:
        self.world = world
        self.number = number
        self.address = address
        self.wire = wire
        self.seen = 0
        self.cseq = 1
        self.tag = f"tag{number}"

    # -- what the PBX sent us -------------------------------------------------

    def inbox(self) -> list[Any]:
        return [parse_message(d) for d, a in self.wire.sent if tuple(a) == self.address]

    def new(self) -> list[Any]:
        """Messages received since the last call of new()."""
        box = self.inbox()
        out, self.seen = box[self.seen:], len(box)
        return out

    def lines(self) -> list[str]:
        return [line_of(m) for m in self.new()]

    def last(self, method_or_status: Any) -> Any:
        for m in reversed(self.inbox()):
            if getattr(m, "method", None) == method_or_status or \
                    getattr(m, "status", None) == method_or_status:
                return m
        raise AssertionError(f"{self.number} never got {method_or_status}")

    # -- what we send ---------------------------------------------------------

    def send(self, message: Any) -> None:
        self.world.controller.messageReceived(parse_message(message.serialize()), self.wire,
                                              self.address)

    def send_text(self, text: str, body: bytes = b"") -> None:
        data = text.replace("\n", "\r\n").encode() + body
        self.world.controller.messageReceived(parse_message(data), self.wire, self.address)

    def invite(self, dialled: str, body: bytes | None = None, call_id: str | None = None) -> str:
        call_id = call_id or f"call{next(self._n)}@{self.address[0]}"
        body = sdp(self.address[0], 4000) if body is None else body
        host, port = self.address
        self.invite_text = (
            f"INVITE sip:{dialled}@{REALM} SIP/2.0\n"
            f"Via: SIP/2.0/{self.wire.name} {host}:{port};branch=z9hG4bK{call_id[:8]}x;rport\n"
            f"Max-Forwards: 70\nFrom: <sip:{self.number}@{REALM}>;tag={self.tag}\n"
            f"To: <sip:{dialled}@{REALM}>\nCall-ID: {call_id}\nCSeq: 1 INVITE\n"
            f"Contact: <sip:{self.number}@{host}:{port}>\n"
            + ("Content-Type: application/sdp\n" if body else "")
            + f"Content-Length: {len(body)}\n\n")
        self.invite_body = body
        self.call_id = call_id
        self.send_text(self.invite_text, body)
        return call_id

    def cancel(self) -> None:
        text = self.invite_text.replace("INVITE sip:", "CANCEL sip:", 1).replace(
            "CSeq: 1 INVITE", "CSeq: 1 CANCEL").split("Content-Type")[0]
        text = text.split("Content-Length")[0] + "Content-Length: 0\n\n"
        self.send_text(text)

    def ack_2xx(self, response: Any, body: bytes = b"") -> None:
        """ACK a 2xx to our INVITE (dialog ACK, new branch)."""
        self._in_dialog("ACK", response, seq=response.cseq.seq, body=body)

    def request(self, method: str, response_or_request: Any, body: bytes = b"") -> None:
        """Send an in-dialog request; the dialog is taken from a message of it."""
        self.cseq += 1
        self._in_dialog(method, response_or_request, seq=self.cseq, body=body)

    def _in_dialog(self, method: str, msg: Any, seq: int, body: bytes) -> None:
        host, port = self.address
        if getattr(msg, "status", None) is not None:  # a response to our request
            local, remote = msg.from_, msg.to
        else:  # a request the PBX sent us
            local, remote = msg.to, msg.from_
        local_tag = local.tag or self.tag
        text = (f"{method} sip:pbx@{PBX[0]}:{PBX[1]} SIP/2.0\n"
                f"Via: SIP/2.0/{self.wire.name} {host}:{port};branch=z9hG4bK{method}{seq}"
                f"{next(self._n)};rport\nMax-Forwards: 70\n"
                f"From: <{local.uri}>;tag={local_tag}\nTo: <{remote.uri}>;tag={remote.tag}\n"
                f"Call-ID: {msg.call_id}\nCSeq: {seq} {method}\n"
                f"Contact: <sip:{self.number}@{host}:{port}>\n"
                + ("Content-Type: application/sdp\n" if body else "")
                + f"Content-Length: {len(body)}\n\n")
        self.send_text(text, body)

    def answer(self, request: Any, status: int, body: bytes = b"", tag: str | None = None) -> Any:
        """Respond to a request the PBX sent us."""
        tag = tag or self.tag
        resp = make_response(request, status, to_tag=tag if request.method != "CANCEL" or
                             status != 200 else tag, body=body,
                             content_type="application/sdp" if body else None)
        if status < 300 and request.method == "INVITE":
            resp.add("Contact", f"<sip:{self.number}@{self.address[0]}:{self.address[1]}>")
        self.send(resp)
        return resp


def line_of(m: Any) -> str:
    if getattr(m, "method", None):
        return m.method
    return f"{m.status} {m.cseq.method}"


class World:
    """The PBX's SIP stack and call manager on a Clock, plus phones."""

    def __init__(self, no_answer_timeout: float = 30.0, rtp_timeout: float = 30.0,
                 router: Any = None) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.layer = TransactionLayer(self.clock, trying_delay=None)
        self.udp = Wire("UDP")
        self.ua = UserAgent(self.layer, None, self.clock, user_agent="pbxd-test")
        self.rtp_ports: dict[int, RtpPort] = {}

        def listen(port: int, protocol: Any, interface: str) -> RtpPort:
            self.rtp_ports[port] = RtpPort(port, protocol)
            return self.rtp_ports[port]

        self.allocator = PortAllocator(listen, "0.0.0.0", 10000, 10999)
        self.location = FakeLocation()
        deps = CallDeps(
            clock=self.clock, ua=self.ua, registry=None,
            new_media=lambda name: LegMedia(self.allocator, self.clock, name),
            sdp_address=lambda transport, address: PBX[0], realm=REALM,
            no_answer_timeout=no_answer_timeout)
        self.known = {"1000", "1001", "1002"}

        def default_router(caller: str, dialled: str) -> Any:
            return [dialled] if dialled in self.known else None

        self.manager = CallManager(deps, self.layer, self.location, router or default_router,
                                   self.cdr_store(), rtp_timeout=rtp_timeout)
        self.controller = SIPController(self.layer, self.clock, REALM, "pbxd-test",
                                        request_handler=self.manager)
        self.manager.startService()

    def cdr_store(self) -> Any:
        self.cdrs: list[dict[str, Any]] = []
        world = self

        class Store:
            def write(self, record: dict[str, Any]) -> Any:
                from twisted.internet.defer import succeed

                world.cdrs.append(record)
                return succeed(len(world.cdrs))

        return Store()

    def phone(self, number: str, address: tuple[str, int], wire: Wire | None = None,
              register: bool = True) -> Phone:
        phone = Phone(self, number, address, wire or self.udp)
        if register:
            uri = URI.parse(f"sip:{number}@{address[0]}:{address[1]}")
            self.location.bindings.setdefault(number, []).append(
                FakeBinding(uri, (phone.wire, address)))
        return phone

    def call(self) -> Any:
        calls = list(self.manager.calls.values())
        assert len(calls) == 1, calls
        return calls[0]
