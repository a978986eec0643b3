"""Resource limits (``limits:``): each one answered or closed, never unbounded.

Parser: header count and length (513). Transport: message size (513 on UDP
and on streams, then close), connections per source and in total, the idle
and the partial-message (slowloris) timeouts. Controller: 513 out of a parse
error, transactions per source (stateless 503), dialogs per source (503).
All on fakes and ``task.Clock``: no sockets, no sleeping.
"""

from __future__ import annotations

import pytest
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from pbxd.errors import SIPParseError
from pbxd.sip.controller import SIPController
from pbxd.sip.digest import NonceCounter
from pbxd.sip.overload import OverloadGuard
from pbxd.sip.parser import StreamFramer, oversize_error, parse_message
from pbxd.sip.transaction import TransactionLayer
from pbxd.sip.transport import ConnectionLimiter, SIPDatagramProtocol, SIPStreamFactory
from tests.test_sip_controller import INVITE, OPTIONS, PHONE, FakeTransport

OPTIONS_B = OPTIONS.encode()


def with_headers(n: int, value: str = "x") -> bytes:
    extra = "".join(f"X-H{i}: {value}\r\n" for i in range(n))
    return OPTIONS.replace("Content-Length: 0\r\n", extra + "Content-Length: 0\r\n").encode()


# ---------------------------------------------------------------- parser


def test_header_count_at_the_limit_parses_and_over_it_is_513() -> None:
    base = len(parse_message(OPTIONS_B).headers.entries)
    assert parse_message(with_headers(40 - base), max_headers=40)
    with pytest.raises(SIPParseError) as info:
        parse_message(with_headers(41 - base), max_headers=40)
    assert info.value.status == 513 and info.value.reason == "Too Many Headers"
    # the request could be recovered, so a 513 can be answered
    assert info.value.request is not None and info.value.request.call_id == "opt1@192.0.2.10"


def test_long_header_is_513_and_still_answerable() -> None:
    data = with_headers(1, "y" * 2000)
    assert parse_message(data, max_header_length=2100)
    with pytest.raises(SIPParseError) as info:
        parse_message(data, max_header_length=1000)
    assert info.value.status == 513 and info.value.reason == "Header Too Long"
    assert info.value.request is not None and info.value.request.method == "OPTIONS"


def test_overlong_request_line_gives_no_request_to_answer() -> None:
    data = OPTIONS_B.replace(b"sip:pbx.example.org SIP", b"sip:" + b"a" * 3000 + b"@x SIP", 1)
    with pytest.raises(SIPParseError) as info:
        parse_message(data, max_header_length=1000)
    assert info.value.status == 513 and info.value.request is None


def test_oversized_response_is_never_answerable() -> None:
    data = b"SIP/2.0 200 OK\r\n" + b"X: y\r\n" * 400 + b"\r\n"
    with pytest.raises(SIPParseError) as info:
        parse_message(data)
    assert info.value.status == 513 and info.value.request is None


def test_default_limits_accept_normal_messages() -> None:
    assert parse_message(with_headers(200)).method == "OPTIONS"


def test_oversize_error_recovers_the_request_from_the_head_only() -> None:
    error = oversize_error(OPTIONS_B + b"z" * 100_000)
    assert error.status == 513 and error.request is not None
    assert oversize_error(b"\x00garbage").request is None


def test_stream_message_over_size_is_fatal_513() -> None:
    framer = StreamFramer(max_message_size=1024)
    big = OPTIONS_B.replace(b"Content-Length: 0", b"Content-Length: 5000")
    with pytest.raises(SIPParseError) as info:
        framer.feed(big)
    assert info.value.fatal and info.value.status == 513 and info.value.request is not None


# ---------------------------------------------------------------- transport


class Receiver:
    def __init__(self) -> None:
        self.messages: list = []
        self.malformed: list = []
        self.lost: list = []

    def messageReceived(self, msg, transport, source):  # noqa: N802
        self.messages.append(msg)

    def malformedReceived(self, error, transport, source):  # noqa: N802
        self.malformed.append(error)

    def connectionLost(self, transport):  # noqa: N802
        self.lost.append(transport)


def connect(factory: SIPStreamFactory, host: str = "10.0.0.5", port: int = 40000):
    """What a listening port does for one accepted connection; None if refused."""
    peer = IPv4Address("TCP", host, port)
    proto = factory.buildProtocol(peer)
    if proto is None:
        return None
    proto.makeConnection(StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 5060),
                                         peerAddress=peer))
    return proto


def test_udp_limits_are_passed_to_the_parser() -> None:
    receiver = Receiver()
    proto = SIPDatagramProtocol(receiver, task.Clock(), max_headers=20)
    proto.datagramReceived(with_headers(30), ("192.0.2.7", 5060))
    assert receiver.messages == [] and receiver.malformed[0].status == 513


def test_connections_per_source_are_capped_and_released() -> None:
    limiter = ConnectionLimiter(max_connections=10, max_per_source=2)
    factory = SIPStreamFactory(Receiver(), task.Clock(), limiter=limiter)
    a, b = connect(factory, port=1), connect(factory, port=2)
    assert a is not None and b is not None
    assert connect(factory, port=3) is None  # third from the same IP
    assert connect(factory, host="10.0.0.6") is not None  # another source still gets in
    a.connectionLost(None)
    assert limiter.count("10.0.0.5") == 1
    assert connect(factory, port=4) is not None


def test_total_connections_are_capped_across_listeners() -> None:
    limiter = ConnectionLimiter(max_connections=3, max_per_source=3)
    tcp = SIPStreamFactory(Receiver(), task.Clock(), limiter=limiter)
    tls = SIPStreamFactory(Receiver(), task.Clock(), secure=True, limiter=limiter)
    opened = [connect(tcp, host=f"10.0.0.{i}") for i in (1, 2)] + [connect(tls, host="10.0.0.3")]
    assert all(opened) and limiter.total == 3
    assert connect(tcp, host="10.0.0.4") is None and connect(tls, host="10.0.0.5") is None
    for proto in opened:
        proto.connectionLost(None)
    assert limiter.total == 0 and limiter._by_source == {}


def test_idle_connection_is_closed_and_traffic_keeps_it_open() -> None:
    clock = task.Clock()
    factory = SIPStreamFactory(Receiver(), clock, idle_timeout=60)
    proto = connect(factory)
    clock.advance(50)
    proto.dataReceived(b"\r\n\r\n")  # a keep-alive is traffic
    clock.advance(50)
    assert not proto.transport.disconnecting
    proto.send(b"OPTIONS ...")  # so is what we send (qualify pings)
    clock.advance(59)
    assert not proto.transport.disconnecting
    clock.advance(2)
    assert proto.transport.disconnecting


def test_closed_connection_leaves_no_timer() -> None:
    clock = task.Clock()
    factory = SIPStreamFactory(Receiver(), clock, idle_timeout=60)
    proto = connect(factory)
    proto.dataReceived(OPTIONS_B[:20])
    proto.connectionLost(None)
    assert clock.getDelayedCalls() == []


def test_slowloris_partial_message_is_closed_even_while_bytes_trickle() -> None:
    clock = task.Clock()
    factory = SIPStreamFactory(Receiver(), clock, incomplete_timeout=10, idle_timeout=600)
    proto = connect(factory)
    for i in range(9):
        proto.dataReceived(OPTIONS_B[i : i + 1])
        clock.advance(1)
    assert not proto.transport.disconnecting
    clock.advance(1.5)
    assert proto.transport.disconnecting


def test_stream_over_size_gets_513_then_close() -> None:
    tx = TransactionLayer(task.Clock())
    controller = SIPController(tx, task.Clock(), "pbx.example.org", "pbxd-test")
    factory = SIPStreamFactory(controller, task.Clock(), max_message_size=1024)
    proto = connect(factory)
    proto.dataReceived(OPTIONS_B.replace(b"Content-Length: 0", b"Content-Length: 9000"))
    assert proto.transport.value().startswith(b"SIP/2.0 513 Message Too Large\r\n")
    assert proto.transport.disconnecting


# ---------------------------------------------------------------- controller


def controller(**kwargs) -> tuple[SIPController, task.Clock]:
    clock = task.Clock()
    tx = TransactionLayer(clock)
    return SIPController(tx, clock, "pbx.example.org", "pbxd-test", **kwargs), clock


def options(i: int) -> bytes:
    return OPTIONS.replace("z9hG4bK-opt1", f"z9hG4bK-opt{i}").replace("opt1@", f"o{i}@").encode()


def test_udp_oversize_gets_513_from_the_controller() -> None:
    ctl, _ = controller()
    transport = FakeTransport()
    ctl.malformedReceived(oversize_error(OPTIONS_B + b"x" * 70000), transport, PHONE)
    assert transport.statuses == [513]


def test_transactions_per_source_cap_gives_stateless_503_and_drains() -> None:
    ctl, clock = controller(max_transactions_per_source=3)
    transport = FakeTransport()
    for i in range(5):
        ctl.messageReceived(parse_message(options(i)), transport, PHONE)
    assert transport.statuses == [200, 200, 200, 503, 503]
    assert transport.sent[-1][0].get("Retry-After").startswith("5")
    assert ctl.transactions_from(PHONE[0]) == 3
    # a retransmission of a live transaction is still absorbed (re-sends its 200)
    ctl.messageReceived(parse_message(options(0)), transport, PHONE)
    assert transport.statuses[-1] == 200
    # other sources are not affected
    ctl.messageReceived(parse_message(options(9)), transport, ("192.0.2.99", 5060))
    assert transport.statuses[-1] == 200
    clock.advance(64)  # Timer J: the transactions end and the count drains
    assert ctl.transactions_from(PHONE[0]) == 0 and ctl._txn_counts == {}
    ctl.messageReceived(parse_message(options(7)), transport, PHONE)
    assert transport.statuses[-1] == 200


def test_trusted_networks_have_no_per_source_transaction_cap() -> None:
    import ipaddress

    from pbxd.auth.bans import BanList

    clock = task.Clock()
    bans = BanList(clock, max_failed_attempts=5, failure_window=60, ban_duration=300,
                   trusted_networks=[ipaddress.ip_network(PHONE[0] + "/32")],
                   rate_limit_requests=0, rate_limit_window=1)
    ctl = SIPController(TransactionLayer(clock), clock, "pbx.example.org", "pbxd-test",
                        bans=bans, max_transactions_per_source=3)
    transport = FakeTransport()
    for i in range(5):  # an SBC in front carries many phones' requests
        ctl.messageReceived(parse_message(options(i)), transport, PHONE)
    assert transport.statuses == [200] * 5


class Handler:
    """A request handler that reports a fixed number of calls per source."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.requests: list = []

    def calls_from(self, ip: str) -> int:
        return self.calls

    def requestReceived(self, request, txn):  # noqa: N802
        self.requests.append(request)

    def ackReceived(self, ack, transport, source):  # noqa: N802
        pass


def test_dialogs_per_source_cap_refuses_new_invites_only() -> None:
    handler = Handler(calls=2)
    ctl, _ = controller(request_handler=handler, max_dialogs_per_source=2)
    transport = FakeTransport()
    ctl.messageReceived(parse_message(INVITE.encode()), transport, PHONE)
    assert 503 in transport.statuses and handler.requests == []
    handler.calls = 1
    invite2 = INVITE.replace("z9hG4bK-inv1", "z9hG4bK-inv2").replace("inv1@", "inv2@")
    ctl.messageReceived(parse_message(invite2.encode()), transport, PHONE)
    assert len(handler.requests) == 1


def test_overload_503_carries_retry_after_and_spares_other_methods() -> None:
    handler = Handler(calls=0)
    clock = task.Clock()
    guard = OverloadGuard(clock, max_loop_lag=0, max_call_rate=1, retry_after=7)
    ctl = SIPController(TransactionLayer(clock), clock, "pbx.example.org", "pbxd-test",
                        request_handler=handler, overload=guard)
    transport = FakeTransport()
    for i in range(3):
        invite = INVITE.replace("z9hG4bK-inv1", f"z9hG4bK-i{i}").replace("inv1@", f"i{i}@")
        ctl.messageReceived(parse_message(invite.encode()), transport, PHONE)
    refused = [m for m, _ in transport.sent if m.status == 503]
    assert len(handler.requests) == 1 and len(refused) == 2
    assert refused[0].get("Retry-After") == "7 (call rate exceeded)"
    ctl.messageReceived(parse_message(options(1)), transport, PHONE)
    assert transport.statuses[-1] == 200


def test_nonce_table_is_bounded() -> None:
    counter = NonceCounter(max_nonces=16)
    for i in range(1000):
        assert counter.use(f"n{i}", 1, float(i)) == "ok"
    assert len(counter) == 16
    assert counter.use("n0", 2, 0.0) == "stale"  # evicted: the client must take a fresh nonce


def test_a_forged_received_parameter_cannot_redirect_responses() -> None:
    from pbxd.sip.transaction import response_address
    from pbxd.sip.validation import stamp_via

    msg = parse_message(OPTIONS_B.replace(b";rport", b";received=198.51.100.7"))
    stamp_via(msg, ("192.0.2.10", 5060))
    assert response_address(msg.top_via, ("192.0.2.10", 5060), False) == ("192.0.2.10", 5060)


def test_wsinv_leading_zero_max_forwards_passes_validation(testdata) -> None:
    from pbxd.sip.validation import check_request

    request = parse_message((testdata / "rfc4475" / "wsinv.sip").read_bytes())
    assert request.max_forwards == 68
    assert check_request(request, served_methods=("INVITE",)) is None


def test_messages_framed_before_a_framing_error_are_kept(testdata) -> None:
    framer = StreamFramer()
    with pytest.raises(SIPParseError) as info:
        framer.feed((testdata / "rfc4475" / "dblreq.sip").read_bytes())
    assert [parse_message(m).method for m in info.value.messages] == ["REGISTER", "INVITE"]
