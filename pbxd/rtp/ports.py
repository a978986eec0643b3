"""RTP/RTCP port pairs from ``rtp.port_range`` (layer 2).

RTP goes on an even port and RTCP on the next odd one (RFC 3550 section 11).
A pair is handed out round-robin over the range so a just-released port is
not reused at once (late packets of the old call then land nowhere), and is
skipped when the operating system refuses to bind it.

Given a real reactor's ``listenUDP``, the pairs are bound as
:class:`QuietUDPPort`: Twisted's UDP port logs a "starting on PORT" and a
"(UDP Port PORT Closed)" line for every socket, eight lines per anchored
call, which cost more CPU than the call's signalling; and its ``write``
checks the destination is an IP literal of the socket's family on every
datagram (two or three ``isIPAddress`` parses), which is most of the cost of
relaying one RTP packet. :class:`QuietUDPPort` checks each destination once.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import base, udp
from twisted.internet.error import CannotListenError
from twisted.internet.posixbase import PosixReactorBase
from twisted.logger import Logger

ListenUDP = Callable[[int, Any, str], Any]
"""``listen_udp(port, protocol, interface) -> IListeningPort`` (``reactor.listenUDP``)."""


class QuietUDPPort(udp.Port):
    """``twisted.internet.udp.Port`` without its per-socket start and close log lines,
    whose :meth:`write` validates a destination once rather than on every datagram."""

    _checked: Any = None  # the last destination udp.Port.write accepted

    def write(self, datagram: bytes, addr: Any = None) -> None:
        """Send ``datagram`` to ``addr`` (errors as ``udp.Port.write``)."""
        if addr is not None and addr == self._checked:
            try:
                self.socket.sendto(datagram, addr)
                return
            except OSError:
                pass  # not sent: udp.Port.write retries and maps the error
        udp.Port.write(self, datagram, addr)
        self._checked = addr

    def _setAddressFamily(self) -> None:
        family = _FAMILIES.get(self.interface)
        if family is None:  # parse the interface once, not for every socket of every call
            udp.Port._setAddressFamily(self)
            _FAMILIES[self.interface] = family = self.addressFamily
        self.addressFamily = family

    def _bindSocket(self) -> None:
        try:  # non-blocking (and close-on-exec) from the start: no fcntl calls after
            skt = socket.socket(self.addressFamily,
                                self.socketType | _SOCKET_FLAGS)
            if not _SOCKET_FLAGS & getattr(socket, "SOCK_NONBLOCK", 0):  # not Linux
                skt.setblocking(False)
            skt.bind((self.interface, self.port))
        except OSError as le:
            raise CannotListenError(self.interface, self.port, le) from le
        self._realPortNumber = self.port or skt.getsockname()[1]
        self.connected = 1
        self.socket = skt
        # as udp.Port._bindSocket does; Twisted's stubs declare fileno a method
        self.fileno = self.socket.fileno  # type: ignore[method-assign]

    def stopListening(self) -> None:  # type: ignore[override]
        """As ``udp.Port.stopListening`` (the socket closes on the reactor's next turn)
        without the Deferred nothing waits for."""
        self._loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self._realPortNumber = None
        self.maxThroughput = -1
        if self.producer is None:  # FileDescriptor.connectionLost but stopWriting: never written
            self.disconnected = 1
            self.connected = 0
            self.stopReading()
        else:  # pragma: no cover - a UDP port has no producer
            base.BasePort.connectionLost(self, reason)
        self.protocol.doStop()
        self.socket.close()
        del self.socket
        del self.fileno
        if hasattr(self, "d"):
            self.d.callback(None)
            del self.d


_FAMILIES: dict[str, socket.AddressFamily] = {}
_SOCKET_FLAGS = getattr(socket, "SOCK_NONBLOCK", 0) | getattr(socket, "SOCK_CLOEXEC", 0)


def quiet(listen_udp: ListenUDP) -> ListenUDP:
    """``listen_udp`` itself, or a quiet equivalent when it is a POSIX reactor's ``listenUDP``."""
    reactor = getattr(listen_udp, "__self__", None)
    if not isinstance(reactor, PosixReactorBase) or listen_udp.__name__ != "listenUDP":
        return listen_udp

    def listen(port: int, protocol: Any, interface: str = "") -> Any:
        listener = QuietUDPPort(port, protocol, interface, reactor=reactor)
        listener.startListening()
        return listener

    return listen


class PortsExhausted(Exception):
    """No free RTP/RTCP pair is left in the configured range."""


@dataclass
class PortPair:
    """A bound RTP/RTCP pair; ``close()`` releases both."""

    rtp_port: int
    rtcp_port: int
    rtp_listener: Any
    rtcp_listener: Any
    _release: Callable[[int], None]

    def close(self) -> None:
        """Stop listening on both ports and give the pair back."""
        rtp, rtcp = self.rtp_listener, self.rtcp_listener
        if type(rtp) is QuietUDPPort and type(rtcp) is QuietUDPPort and rtp.connected \
                and rtcp.connected:
            # what stopListening does for each, with one reactor call for the two sockets
            rtp.stopReading()
            rtcp.stopReading()
            rtp.reactor.callLater(0, _close_both, rtp, rtcp)
        else:
            for listener in (rtp, rtcp):
                try:
                    listener.stopListening()
                except Exception:  # pragma: no cover - already closed
                    pass
        self._release(self.rtp_port)


def _close_both(rtp: QuietUDPPort, rtcp: QuietUDPPort) -> None:
    for listener in (rtp, rtcp):
        if listener.connected:  # not closed some other way in the meantime
            listener.connectionLost()


class PortAllocator:
    """Hands out even/odd UDP port pairs within ``[low, high]``."""

    log = Logger()

    def __init__(self, listen_udp: ListenUDP, address: str, low: int, high: int) -> None:
        if low % 2:
            low += 1
        if high - low < 1:
            raise ValueError(f"port range {low}-{high} holds no RTP/RTCP pair")
        self._listen = quiet(listen_udp)
        self.address = address
        self.low = low
        self.high = high
        self._next = low
        self._used: set[int] = set()

    @property
    def capacity(self) -> int:
        """How many pairs the range holds."""
        return (self.high - self.low + 1) // 2

    @property
    def in_use(self) -> int:
        """How many pairs are handed out now."""
        return len(self._used)

    def allocate(self, make_rtp: Callable[[], Any], make_rtcp: Callable[[], Any]) -> PortPair:
        """Bind the next free pair to protocols made by the two factories.

        Each attempt makes fresh protocol objects: a protocol whose port was
        just closed is still attached to it until the reactor's next turn, so
        it cannot be bound again at once. Raises PortsExhausted when no pair
        in the range can be bound.
        """
        for _ in range(self.capacity):
            port = self._next
            self._next = port + 2 if port + 3 <= self.high else self.low
            if port in self._used:
                continue
            try:
                rtp = self._listen(port, make_rtp(), self.address)
            except CannotListenError:
                continue
            try:
                rtcp = self._listen(port + 1, make_rtcp(), self.address)
            except CannotListenError:
                rtp.stopListening()
                continue
            self._used.add(port)
            return PortPair(port, port + 1, rtp, rtcp, self._used.discard)
        self.log.error("RTP ports exhausted in {low}-{high}", low=self.low, high=self.high)
        raise PortsExhausted(f"no free RTP port pair in {self.low}-{self.high}")
