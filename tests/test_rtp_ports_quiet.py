"""pbxd.rtp.ports: QuietUDPPort and a PortPair of them closing (real sockets on 127.0.0.1,
a MemoryReactorClock for the reactor's reader set and its next turn)."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock

from pbxd.rtp.ports import PortPair, QuietUDPPort


class Proto(DatagramProtocol):
    noisy = False

    def __init__(self) -> None:
        self.stopped = 0

    def stopProtocol(self) -> None:
        self.stopped += 1


def listen(reactor: Any) -> tuple[QuietUDPPort, Proto]:
    proto = Proto()
    port = QuietUDPPort(0, proto, "127.0.0.1", reactor=reactor)
    port.startListening()
    return port, proto


def test_a_pair_stops_reading_at_once_and_closes_both_sockets_on_the_next_turn() -> None:
    reactor = MemoryReactorClock()
    (rtp, rtp_proto), (rtcp, rtcp_proto) = listen(reactor), listen(reactor)
    sockets = [rtp.socket, rtcp.socket]
    assert set(reactor.getReaders()) == {rtp, rtcp}
    released: list[int] = []
    pair = PortPair(rtp.getHost().port, rtcp.getHost().port, rtp, rtcp, released.append)
    pair.close()
    assert reactor.getReaders() == [] and released == [pair.rtp_port]
    assert [s.fileno() for s in sockets] != [-1, -1]  # still open until the next turn
    assert len(reactor.getDelayedCalls()) == 1  # one call for the two sockets
    reactor.advance(0)
    assert [s.fileno() for s in sockets] == [-1, -1]
    assert (rtp.connected, rtcp.connected) == (0, 0)
    assert (rtp_proto.stopped, rtcp_proto.stopped) == (1, 1)


def test_a_socket_closed_meanwhile_is_not_closed_twice() -> None:
    reactor = MemoryReactorClock()
    (rtp, _), (rtcp, rtcp_proto) = listen(reactor), listen(reactor)
    PortPair(1, 2, rtp, rtcp, lambda _: None).close()
    rtcp.connectionLost()  # closed some other way before the reactor's turn
    reactor.advance(0)
    assert (rtp.connected, rtcp.connected, rtcp_proto.stopped) == (0, 0, 1)


def test_stop_listening_closes_on_the_next_turn_without_a_deferred() -> None:
    reactor = MemoryReactorClock()
    port, proto = listen(reactor)
    skt = port.socket
    assert port.stopListening() is None
    assert reactor.getReaders() == [] and skt.fileno() != -1
    reactor.advance(0)
    assert skt.fileno() == -1 and proto.stopped == 1


def test_write_still_reaches_the_destination() -> None:
    reactor = MemoryReactorClock()
    port, _ = listen(reactor)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(2)
        port.write(b"x" * 12, peer.getsockname())
        port.write(b"y" * 12, peer.getsockname())  # the destination checked once
        assert [peer.recvfrom(100)[0] for _ in range(2)] == [b"x" * 12, b"y" * 12]
    finally:
        peer.close()
        port.stopListening()
        reactor.advance(0)
