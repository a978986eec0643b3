"""pbxd.sip.controller: the order of checks and who answers what.

The controller runs here with the real transaction layer, validation and ban
list on a ``task.Clock``; the transports are fakes that record what was sent.
The authenticator and registrar are small stand-ins with the documented API.
"""

from __future__ import annotations

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from pbxd.auth.bans import BanList
from pbxd.auth.sipauth import AuthResult
from pbxd.errors import SIPParseError
from pbxd.interfaces import IRequestHandler, ISIPTransport
from pbxd.sip.controller import SIPController
from pbxd.sip.message import make_response
from pbxd.sip.parser import parse_message
from pbxd.sip.transaction import TransactionLayer
from pbxd.sip.transport import SIPDatagramProtocol

PHONE = ("192.0.2.10", 5060)

OPTIONS = (
    "OPTIONS sip:pbx.example.org SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-opt1;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:1000@pbx.example.org>;tag=a1\r\n"
    "To: <sip:pbx.example.org>\r\n"
    "Call-ID: opt1@192.0.2.10\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)

REGISTER = (
    "REGISTER sip:pbx.example.org SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-reg1\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:1000@pbx.example.org>;tag=r1\r\n"
    "To: <sip:1000@pbx.example.org>\r\n"
    "Call-ID: reg1@192.0.2.10\r\n"
    "CSeq: 1 REGISTER\r\n"
    "Contact: <sip:1000@192.0.2.10:5060>\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)

INVITE = (
    "INVITE sip:1001@pbx.example.org SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-inv1\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:1000@pbx.example.org>;tag=i1\r\n"
    "To: <sip:1001@pbx.example.org>\r\n"
    "Call-ID: inv1@192.0.2.10\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:1000@192.0.2.10:5060>\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)


@implementer(ISIPTransport)
class FakeTransport:
    """Records ``(message, address)`` for everything sent."""

    name = "UDP"
    reliable = False
    secure = False
    connected = True
    local_address = ("192.0.2.1", 5060)
    peer = None

    def __init__(self) -> None:
        self.sent: list[tuple[object, tuple[str, int]]] = []

    def send(self, data: bytes, address: tuple[str, int]) -> bool:
        self.sent.append((parse_message(data), address))
        return True

    @property
    def statuses(self) -> list[int]:
        return [msg.status for msg, _ in self.sent]


class FakeDatagramTransport:
    """Stands in for a Twisted UDP port under SIPDatagramProtocol."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))

    def getHost(self):  # noqa: N802 - Twisted API
        class Host:
            host, port = "192.0.2.1", 5060

        return Host()


class Registrar:
    """Answers every REGISTER with 200 and remembers the extension."""

    def __init__(self) -> None:
        self.extensions: list[object] = []

    def register(self, request, txn, extension) -> None:
        self.extensions.append(extension)
        txn.respond(make_response(request, 200, to_tag="reg"))


class Authenticator:
    """Challenges requests without Authorization; accepts those with it as ``extension``."""

    def __init__(self, extension: str = "1000") -> None:
        self.extension = extension

    def authenticate(self, request, source, proxy=False):
        header = "Proxy-Authorization" if proxy else "Authorization"
        if request.get(header) is None:
            return succeed(AuthResult(response=make_response(request, 407 if proxy else 401,
                                                             to_tag="c")))
        return succeed(AuthResult(extension=self.extension))


@implementer(IRequestHandler)
class Handler:
    """Answers requests with ``status`` (or raises ``error``), records ACKs."""

    def __init__(self, status: int = 180, error: Exception | None = None) -> None:
        self.status = status
        self.error = error
        self.requests: list[object] = []
        self.acks: list[object] = []

    def requestReceived(self, request, server_transaction):  # noqa: N802
        self.requests.append((request, server_transaction))
        if self.error is not None:
            raise self.error
        server_transaction.respond(make_response(request, self.status, to_tag="h"))

    def ackReceived(self, request, transport, source):  # noqa: N802
        self.acks.append(request)


def make_controller(**kw):
    clock = task.Clock()
    bans = kw.pop("bans", None) or BanList(clock)
    layer = TransactionLayer(clock, trying_delay=None)
    controller = SIPController(
        layer, clock, "pbx.example.org", "pbxd/test", bans=bans, supported=("path",), **kw
    )
    return controller, FakeTransport(), clock


def receive(controller, transport, text, source=PHONE):
    controller.messageReceived(parse_message(text.encode()), transport, source)


def test_options_gets_200_with_allow_accept_supported_and_server():
    controller, transport, _ = make_controller(registrar=Registrar(), request_handler=Handler())
    receive(controller, transport, OPTIONS)
    [(response, address)] = transport.sent
    assert response.status == 200
    assert "INVITE" in response.getall("Allow")
    assert "REGISTER" in response.getall("Allow")
    assert response.get("Accept") == "application/sdp"
    assert response.getall("Supported") == ["path"]
    assert response.get("Server") == "pbxd/test"
    assert response.to.tag
    assert address == PHONE


def test_options_allow_lists_only_what_is_configured():
    controller, transport, _ = make_controller()
    receive(controller, transport, OPTIONS)
    assert transport.sent[0][0].getall("Allow") == ["OPTIONS"]


def test_banned_source_gets_nothing():
    controller, transport, clock = make_controller(request_handler=Handler())
    controller.bans.ban(PHONE[0], 300, "test")
    receive(controller, transport, OPTIONS)
    receive(controller, transport, INVITE)
    assert transport.sent == []
    clock.advance(301)
    receive(controller, transport, OPTIONS)
    assert transport.statuses == [200]


def test_flooding_source_is_cut_off():
    clock = task.Clock()
    bans = BanList(clock, rate_limit_requests=3, rate_limit_window=10.0)
    controller, transport, _ = make_controller(bans=bans)
    for n in range(6):
        receive(controller, transport, OPTIONS.replace("opt1", f"flood{n}"))
    assert transport.statuses == [200, 200, 200]
    assert bans.is_banned(PHONE[0])


def test_unknown_method_is_501():
    controller, transport, _ = make_controller(request_handler=Handler())
    receive(controller, transport, OPTIONS.replace("OPTIONS", "FROBNICATE"))
    assert transport.statuses == [501]
    assert transport.sent[0][0].get("Server") == "pbxd/test"


def test_register_without_registrar_is_405_without_register_in_allow():
    controller, transport, _ = make_controller()
    receive(controller, transport, REGISTER)
    [(response, _)] = transport.sent
    assert response.status == 405
    assert "REGISTER" not in response.getall("Allow")


def test_register_is_challenged_then_given_to_registrar_with_extension():
    registrar = Registrar()
    controller, transport, _ = make_controller(registrar=registrar, authenticator=Authenticator())
    receive(controller, transport, REGISTER)
    assert transport.statuses == [401]
    assert registrar.extensions == []
    authorized = REGISTER.replace("z9hG4bK-reg1", "z9hG4bK-reg2").replace(
        "CSeq: 1", "Authorization: Digest username=\"1000\"\r\nCSeq: 2"
    )
    receive(controller, transport, authorized)
    assert transport.statuses == [401, 200]
    assert registrar.extensions == ["1000"]


def test_register_with_non_sip_to_is_400_before_authentication():
    controller, transport, _ = make_controller(registrar=Registrar(), authenticator=Authenticator())
    receive(controller, transport, REGISTER.replace("To: <sip:1000@pbx.example.org>", "To: isbn:12"))
    assert transport.statuses == [400]


def test_invite_is_proxy_challenged_then_handed_to_the_handler():
    handler = Handler(status=180)
    controller, transport, _ = make_controller(request_handler=handler, authenticator=Authenticator())
    receive(controller, transport, INVITE)
    assert transport.statuses == [407]
    assert handler.requests == []
    receive(controller, transport, INVITE.replace("inv1;", "inv2;").replace(
        "z9hG4bK-inv1", "z9hG4bK-inv2").replace(
        "CSeq: 1", "Proxy-Authorization: Digest x=1\r\nCSeq: 2"))
    assert transport.statuses == [407, 180]
    assert handler.requests[0][1].extension == "1000"


def test_in_dialog_bye_is_not_challenged():
    handler = Handler(status=200)
    controller, transport, _ = make_controller(request_handler=handler, authenticator=Authenticator())
    bye = INVITE.replace("INVITE", "BYE").replace(
        "To: <sip:1001@pbx.example.org>", "To: <sip:1001@pbx.example.org>;tag=x"
    )
    receive(controller, transport, bye)
    assert transport.statuses == [200]


def test_no_handler_means_invite_is_405():
    controller, transport, _ = make_controller()
    receive(controller, transport, INVITE)
    assert transport.statuses == [405]


def test_retransmitted_request_is_absorbed_and_last_response_resent():
    handler = Handler(status=200)
    controller, transport, _ = make_controller(request_handler=handler)
    bye = INVITE.replace("INVITE", "BYE")
    receive(controller, transport, bye)
    receive(controller, transport, bye)
    assert len(handler.requests) == 1
    assert transport.statuses == [200, 200]


def test_handler_that_raises_gives_500_and_no_exception():
    handler = Handler(error=RuntimeError("boom"))
    controller, transport, _ = make_controller(request_handler=handler)
    receive(controller, transport, INVITE)
    assert transport.statuses == [500]
    # the controller still works afterwards
    receive(controller, transport, OPTIONS)
    assert transport.statuses == [500, 200]


def test_authenticator_failure_gives_500():
    class Broken:
        def authenticate(self, request, source, proxy=False):
            return fail(ValueError("db down"))

    controller, transport, _ = make_controller(registrar=Registrar(), authenticator=Broken())
    receive(controller, transport, REGISTER)
    assert transport.statuses == [500]


class SyncAuthenticator(Authenticator):
    """Decides at once (an in-memory store): returns the AuthResult, not a Deferred."""

    def authenticate(self, request, source, proxy=False):
        return Authenticator.authenticate(self, request, source, proxy).result


def test_synchronous_authenticator_answers_are_used_directly():
    registrar = Registrar()
    controller, transport, _ = make_controller(registrar=registrar,
                                               authenticator=SyncAuthenticator())
    receive(controller, transport, REGISTER)
    authorized = REGISTER.replace("z9hG4bK-reg1", "z9hG4bK-reg2").replace(
        "CSeq: 1", "Authorization: Digest username=\"1000\"\r\nCSeq: 2"
    )
    receive(controller, transport, authorized)
    assert transport.statuses == [401, 200]
    assert registrar.extensions == ["1000"]


def test_authenticator_that_raises_gives_500():
    class Raising:
        def authenticate(self, request, source, proxy=False):
            raise ValueError("bug")

    controller, transport, _ = make_controller(registrar=Registrar(), authenticator=Raising())
    receive(controller, transport, REGISTER)
    assert transport.statuses == [500]


def test_registrar_failing_later_gives_500():
    pending = Deferred()

    class Later:
        def register(self, request, txn, extension):
            return pending

    controller, transport, _ = make_controller(registrar=Later(), authenticator=SyncAuthenticator())
    receive(controller, transport, REGISTER.replace(
        "CSeq: 1", "Authorization: Digest username=\"1000\"\r\nCSeq: 1"))
    assert transport.statuses == []
    pending.errback(RuntimeError("store down"))
    assert transport.statuses == [500]


def test_ack_for_2xx_goes_to_handler():
    handler = Handler()
    controller, transport, _ = make_controller(request_handler=handler)
    ack = INVITE.replace("INVITE sip", "ACK sip").replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
    receive(controller, transport, ack)
    assert [a.method for a in handler.acks] == ["ACK"]
    assert transport.sent == []


def test_ack_for_non_2xx_is_absorbed_by_its_transaction():
    handler = Handler(status=486)
    controller, transport, _ = make_controller(request_handler=handler)
    receive(controller, transport, INVITE)
    ack = INVITE.replace("INVITE sip", "ACK sip").replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
    ack = ack.replace("To: <sip:1001@pbx.example.org>", "To: <sip:1001@pbx.example.org>;tag=h")
    receive(controller, transport, ack)
    assert handler.acks == []
    assert transport.statuses == [486]


def test_stray_response_is_dropped():
    controller, transport, _ = make_controller()
    response = make_response(parse_message(OPTIONS.encode()), 200, to_tag="x")
    controller.messageReceived(response, transport, PHONE)
    assert transport.sent == []


def test_malformed_with_recoverable_request_gets_400_with_reason_to_rport():
    controller, transport, _ = make_controller()
    request = parse_message(OPTIONS.replace(";rport", ";rport=40000").encode())
    controller.malformedReceived(SIPParseError("bad Via parameter", request=request), transport,
                                 ("203.0.113.9", 40000))
    [(response, address)] = transport.sent
    assert (response.status, response.reason) == (400, "bad Via parameter")
    assert address == ("203.0.113.9", 40000)
    assert response.top_via.params["received"] == "203.0.113.9"


def test_malformed_without_request_is_dropped():
    controller, transport, _ = make_controller()
    controller.malformedReceived(SIPParseError("garbage"), transport, PHONE)
    assert transport.sent == []


def test_source_sending_only_garbage_is_banned():
    controller, transport, _ = make_controller(max_malformed=5)
    for _ in range(5):
        controller.malformedReceived(SIPParseError("garbage"), transport, PHONE)
    assert controller.bans.is_banned(PHONE[0])


def test_connection_lost_reaches_transactions_and_registrar():
    class LosingRegistrar(Registrar):
        lost: list[object] = []

        def connectionLost(self, transport):  # noqa: N802
            self.lost.append(transport)

    registrar = LosingRegistrar()
    controller, transport, _ = make_controller(registrar=registrar)
    controller.connectionLost(transport)
    assert registrar.lost == [transport]


# ---------------------------------------------------------------- RFC 4475 through UDP

TORTURE = {
    "badvers": 505,
    "zeromf": 483,
    "mismatch01": 400,
    "mismatch02": 400,
    "unkscm": 416,
    "novelsc": 416,
    "bext01": 420,
    "insuf": 400,
    "unksm2": 400,
    "esc02": 501,
    "intmeth": 501,
    "multi01": 400,
    "scalar02": 400,
    "badinv01": 400,
}


@pytest.mark.parametrize("name,status", sorted(TORTURE.items()))
def test_rfc4475_torture_message_gets_expected_status(testdata, name, status):
    data = (testdata / "rfc4475" / f"{name}.sip").read_bytes()
    controller, _, _ = make_controller(registrar=Registrar(), request_handler=Handler(),
                                       authenticator=Authenticator())
    protocol = SIPDatagramProtocol(controller, task.Clock())
    protocol.transport = FakeDatagramTransport()
    protocol.datagramReceived(data, ("192.0.2.99", 5060))
    statuses = [int(d.split(b" ", 2)[1]) for d, _ in protocol.transport.written]
    assert statuses == [status]
