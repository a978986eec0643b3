"""pbxd.sip.transport: UDP datagrams, TCP/TLS framing, the connection table."""

from __future__ import annotations

import socket

from twisted.internet import task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from pbxd.errors import SIPParseError
from pbxd.interfaces import IConnector, ISIPTransport
from pbxd.sip.transport import (
    ConnectionTable,
    Connector,
    SIPDatagramProtocol,
    SIPStreamFactory,
    normalize_host,
)

OPTIONS = (
    b"OPTIONS sip:pbx.example.org SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bK-t1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:1000@pbx.example.org>;tag=a1\r\n"
    b"To: <sip:pbx.example.org>\r\n"
    b"Call-ID: t1@10.0.0.5\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"body"
)


class Receiver:
    """Records what the transports hand over; can be told to raise."""

    def __init__(self, raise_on_message: bool = False) -> None:
        self.messages: list[tuple[object, object, tuple[str, int]]] = []
        self.malformed: list[tuple[SIPParseError, object, tuple[str, int]]] = []
        self.lost: list[object] = []
        self.raise_on_message = raise_on_message

    def messageReceived(self, message, transport, source):  # noqa: N802
        self.messages.append((message, transport, source))
        if self.raise_on_message:
            raise RuntimeError("upper layer bug")

    def malformedReceived(self, error, transport, source):  # noqa: N802
        self.malformed.append((error, transport, source))

    def connectionLost(self, transport):  # noqa: N802
        self.lost.append(transport)


class FakeUDPPort:
    """What SIPDatagramProtocol.transport needs of a Twisted UDP port."""

    def __init__(self, family: int = socket.AF_INET) -> None:
        self.addressFamily = family
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data, addr):
        self.written.append((data, addr))

    def getHost(self):  # noqa: N802
        return IPv4Address("UDP", "127.0.0.1", 5060)


def udp(receiver=None, family=socket.AF_INET):
    receiver = receiver or Receiver()
    proto = SIPDatagramProtocol(receiver, task.Clock())
    proto.transport = FakeUDPPort(family)
    return proto, receiver


def stream(receiver=None, secure=False, peer=("10.0.0.5", 40000), table=None, clock=None):
    receiver = receiver or Receiver()
    factory = SIPStreamFactory(receiver, clock or task.Clock(), secure=secure, connections=table)
    proto = factory.buildProtocol(None)
    if ":" in peer[0]:
        addresses = (IPv6Address("TCP", "::1", 5060), IPv6Address("TCP", *peer))
    else:
        addresses = (IPv4Address("TCP", "127.0.0.1", 5060), IPv4Address("TCP", *peer))
    transport = StringTransport(hostAddress=addresses[0], peerAddress=addresses[1])
    proto.makeConnection(transport)
    return proto, receiver, factory


# ---------------------------------------------------------------- UDP


def test_datagram_is_parsed_and_handed_over_with_source_and_stamped_via():
    proto, receiver = udp()
    proto.datagramReceived(OPTIONS, ("192.0.2.7", 5099))
    [(message, transport, source)] = receiver.messages
    assert message.method == "OPTIONS"
    assert message.body == b"body"
    assert transport is proto
    assert source == ("192.0.2.7", 5099)
    assert message.top_via.params["received"] == "192.0.2.7"
    assert message.top_via.params["rport"] == "5099"


def test_ipv6_source_is_normalized():
    proto, receiver = udp(family=socket.AF_INET6)
    proto.datagramReceived(OPTIONS, ("2001:DB8:0::7", 5099))
    assert receiver.messages[0][2] == ("2001:db8::7", 5099)


def test_garbage_datagram_goes_to_malformed_received():
    proto, receiver = udp()
    proto.datagramReceived(b"HELLO WORLD\r\n\r\n", ("192.0.2.7", 5060))
    assert receiver.messages == []
    [(error, transport, source)] = receiver.malformed
    assert isinstance(error, SIPParseError)
    assert source == ("192.0.2.7", 5060)


def test_keepalives_and_stun_are_ignored():
    proto, receiver = udp()
    for data in (b"\r\n\r\n", b"\r\n", b"\x00\x00\x00\x00", b"\x00\x01\x00\x00\x21\x12\xa4\x42"):
        proto.datagramReceived(data, ("192.0.2.7", 5060))
    assert receiver.messages == [] and receiver.malformed == []


def test_oversized_datagram_is_not_parsed_but_reported_for_a_513():
    receiver = Receiver()
    proto = SIPDatagramProtocol(receiver, task.Clock(), max_message_size=100)
    proto.transport = FakeUDPPort()
    proto.datagramReceived(OPTIONS, ("192.0.2.7", 5060))
    assert receiver.messages == [] and len(receiver.malformed) == 1
    assert receiver.malformed[0][0].status == 513


def test_receiver_that_raises_does_not_propagate_out_of_datagram_received():
    proto, receiver = udp(Receiver(raise_on_message=True))
    proto.datagramReceived(OPTIONS, ("192.0.2.7", 5060))
    proto.datagramReceived(OPTIONS, ("192.0.2.7", 5060))
    assert len(receiver.messages) == 2


def test_udp_send_writes_datagram_and_maps_ipv4_on_ipv6_socket():
    proto, _ = udp(family=socket.AF_INET6)
    assert proto.send(b"SIP/2.0 200 OK\r\n\r\n", ("192.0.2.7", 5060))
    assert proto.transport.written == [(b"SIP/2.0 200 OK\r\n\r\n", ("::ffff:192.0.2.7", 5060))]


def test_udp_send_refuses_oversized_and_reports_write_errors():
    proto, _ = udp()
    assert not proto.send(b"x" * 70000, ("192.0.2.7", 5060))

    def broken(data, addr):
        raise OSError("network unreachable")

    proto.transport.write = broken
    assert not proto.send(b"x", ("192.0.2.7", 5060))


class FakeSocket:
    """The ``socket`` of a real UDP port: what the fast send path calls."""

    def __init__(self, errors=()):
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.errors = list(errors)

    def sendto(self, data, addr):
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((data, addr))


def test_udp_send_goes_straight_to_the_socket_for_ip_literals():
    for family, target, expected in (
        (socket.AF_INET, ("192.0.2.7", 5060), ("192.0.2.7", 5060)),
        (socket.AF_INET, ("::ffff:192.0.2.7", 5070), ("192.0.2.7", 5070)),
        (socket.AF_INET6, ("192.0.2.7", 5060), ("::ffff:192.0.2.7", 5060)),
        (socket.AF_INET6, ("[2001:DB8::1]", 5060), ("2001:db8::1", 5060)),
    ):
        proto, _ = udp(family=family)
        proto.transport.socket = FakeSocket()
        assert proto.send(b"OPTIONS", target)
        assert proto.transport.socket.sent == [(b"OPTIONS", expected)]
        assert proto.transport.written == []


def test_udp_send_leaves_hostnames_and_wrong_families_to_the_checked_path():
    # sendto would resolve a hostname with a blocking lookup: Port.write refuses it
    for family, target in ((socket.AF_INET, ("pbx.example.com", 5060)),
                           (socket.AF_INET, ("2001:db8::1", 5060))):
        proto, _ = udp(family=family)
        proto.transport.socket = FakeSocket()
        proto.send(b"OPTIONS", target)
        assert proto.transport.socket.sent == []
        assert len(proto.transport.written) == 1


def test_udp_send_retries_eintr_ignores_refused_and_reports_other_errors():
    proto, _ = udp()
    proto.transport.socket = FakeSocket([InterruptedError(), ConnectionRefusedError()])
    assert proto.send(b"a", ("192.0.2.7", 5060))  # EINTR retried, then refused: as Port.write
    assert proto.transport.socket.sent == []
    assert proto.send(b"b", ("192.0.2.7", 5060))
    assert proto.transport.socket.sent == [(b"b", ("192.0.2.7", 5060))]
    proto.transport.socket = FakeSocket([BlockingIOError()])
    assert not proto.send(b"c", ("192.0.2.7", 5060))


class CountingUDPPort(FakeUDPPort):
    def __init__(self, port: int) -> None:
        super().__init__()
        self.port, self.asked = port, 0

    def getHost(self):  # noqa: N802
        self.asked += 1
        return IPv4Address("UDP", "127.0.0.1", self.port)


def test_datagram_local_address_is_read_once_per_listening_port():
    proto, _ = udp()
    first = proto.transport = CountingUDPPort(5060)
    assert [proto.local_address for _ in range(3)] == [("127.0.0.1", 5060)] * 3
    assert first.asked == 1
    second = proto.transport = CountingUDPPort(5070)  # listening again, elsewhere
    assert proto.local_address == ("127.0.0.1", 5070)
    assert second.asked == 1
    unbound = proto.transport = CountingUDPPort(0)  # not bound yet: asked again next time
    assert proto.local_address == ("127.0.0.1", 0)
    assert proto.local_address == ("127.0.0.1", 0)
    assert unbound.asked == 2
    proto.transport = None
    assert proto.local_address is None


def test_datagram_protocol_provides_isiptransport():
    proto, _ = udp()
    assert verifyObject(ISIPTransport, proto)
    assert (proto.name, proto.reliable, proto.local_address) == ("UDP", False, ("127.0.0.1", 5060))


# ---------------------------------------------------------------- TCP / TLS


def test_stream_split_across_reads_is_framed():
    proto, receiver, _ = stream()
    for i in range(0, len(OPTIONS), 7):
        proto.dataReceived(OPTIONS[i : i + 7])
    [(message, transport, source)] = receiver.messages
    assert message.body == b"body"
    assert source == ("10.0.0.5", 40000)
    assert transport.name == "TCP" and transport.reliable


def test_two_messages_in_one_chunk_are_both_delivered():
    proto, receiver, _ = stream()
    proto.dataReceived(OPTIONS + OPTIONS.replace(b"t1@", b"t2@"))
    assert [m.call_id for m, _, _ in receiver.messages] == ["t1@10.0.0.5", "t2@10.0.0.5"]


def test_stream_crlf_ping_gets_pong():
    proto, receiver, _ = stream()
    proto.dataReceived(b"\r\n\r\n")
    assert proto.transport.value() == b"\r\n"
    assert receiver.messages == []


def test_stream_framing_error_reports_and_closes():
    proto, receiver, factory = stream()
    proto.dataReceived(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: nope\r\n\r\n")
    assert len(receiver.malformed) == 1
    assert receiver.malformed[0][0].fatal
    assert proto.transport.disconnecting


def test_unparseable_framed_message_reports_and_keeps_connection():
    proto, receiver, _ = stream()
    proto.dataReceived(b"GARBAGE LINE\r\nContent-Length: 0\r\n\r\n" + OPTIONS)
    assert len(receiver.malformed) == 1
    assert len(receiver.messages) == 1
    assert not proto.transport.disconnecting


def test_receiver_that_raises_does_not_stop_the_next_message():
    proto, receiver, _ = stream(Receiver(raise_on_message=True))
    proto.dataReceived(OPTIONS + OPTIONS.replace(b"t1@", b"t2@"))
    assert len(receiver.messages) == 2


def test_incomplete_message_is_closed_after_timeout():
    clock = task.Clock()
    proto, _, factory = stream(clock=clock)
    proto.dataReceived(OPTIONS[:30])
    clock.advance(factory.incomplete_timeout - 1)
    assert not proto.transport.disconnecting
    clock.advance(2)
    assert proto.transport.disconnecting


def test_completed_message_cancels_incomplete_timer():
    clock = task.Clock()
    proto, _, factory = stream(clock=clock)
    proto.dataReceived(OPTIONS[:30])
    proto.dataReceived(OPTIONS[30:])
    clock.advance(factory.incomplete_timeout + 1)
    assert not proto.transport.disconnecting
    assert [c for c in clock.getDelayedCalls() if "incomplete" in repr(c.func)] == []


def test_stream_send_writes_on_the_connection_and_fails_after_close():
    proto, receiver, _ = stream(secure=True)
    assert proto.name == "TLS" and proto.secure
    assert proto.send(b"SIP/2.0 200 OK\r\n\r\n", ("1.2.3.4", 9))
    assert proto.transport.value() == b"SIP/2.0 200 OK\r\n\r\n"
    proto.connectionLost(Failure(ConnectionError()))
    assert not proto.send(b"x")
    assert receiver.lost == [proto]


def test_stream_protocol_provides_isiptransport():
    proto, _, _ = stream()
    assert verifyObject(ISIPTransport, proto)
    assert proto.peer == ("10.0.0.5", 40000)
    assert proto.local_address == ("127.0.0.1", 5060)


# ---------------------------------------------------------------- connection table


def test_inbound_connection_is_reused_and_forgotten_on_close():
    table = ConnectionTable()
    proto, _, _ = stream(table=table)
    assert table.get("TCP", ("10.0.0.5", 40000)) is proto
    assert table.get("tcp", ("10.0.0.5", 40000)) is proto
    assert table.get("TLS", ("10.0.0.5", 40000)) is None
    assert table.get("TCP", ("10.0.0.5", 40001)) is None
    proto.connectionLost(Failure(ConnectionError()))
    assert table.get("TCP", ("10.0.0.5", 40000)) is None
    assert len(table) == 0


def test_ipv6_connection_is_found_by_any_spelling():
    table = ConnectionTable()
    proto, _, _ = stream(table=table, peer=("2001:db8::5", 40000), secure=True)
    assert table.get("TLS", ("2001:DB8:0:0::5", 40000)) is proto
    assert table.get("TLS", ("[2001:db8::5]", 40000)) is proto


def test_old_connection_closing_does_not_evict_its_replacement():
    table = ConnectionTable()
    old, _, _ = stream(table=table)
    new, _, _ = stream(table=table)
    old.connectionLost(Failure(ConnectionError()))
    assert table.get("TCP", ("10.0.0.5", 40000)) is new


def test_connector_reuses_connection_and_picks_udp_by_family():
    table = ConnectionTable()
    proto, _, _ = stream(table=table)
    udp4, _ = udp()
    udp6, _ = udp(family=socket.AF_INET6)
    opened = []
    connector = Connector(table, [udp4, udp6], connect=lambda n, a: opened.append((n, a)))
    assert verifyObject(IConnector, connector)
    assert connector.transportFor("TCP", ("10.0.0.5", 40000)) is proto
    assert connector.transportFor("UDP", ("192.0.2.1", 5060)) is udp4
    assert connector.transportFor("UDP", ("2001:db8::1", 5060)) is udp6
    connector.transportFor("TLS", ("10.0.0.5", 5061))
    assert opened == [("TLS", ("10.0.0.5", 5061))]


def test_normalize_host():
    assert normalize_host("::ffff:10.0.0.1") == "10.0.0.1"
    assert normalize_host("[::1]") == "::1"
    assert normalize_host("Example.COM") == "example.com"
