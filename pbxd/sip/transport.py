"""SIP over UDP, TCP and TLS: bytes in, parsed messages out (layer 2).

The protocols here hold no policy (compare ``twisted.names.dns``): they frame
and parse, stamp the top Via with ``received``/``rport`` (RFC 3581) and hand
every message to one :class:`~pbxd.interfaces.ISIPMessageReceiver` (the SIP
controller) with the transport it came on and its source ``(host, port)``.
Nothing raises out of ``datagramReceived``/``dataReceived``: a failure is
logged and the next message is read as if nothing happened.

Stream connections, whoever opened them, are kept in a :class:`ConnectionTable`
keyed by ``(transport name, peer host, peer port)`` so requests to a phone go
over the connection it registered on (the only way through most NATs).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pbxd.errors import SIPParseError
from pbxd.interfaces import IConnector, ISIPTransport
from pbxd.sip.parser import (
    MAX_HEADER_LENGTH,
    MAX_HEADERS,
    StreamFramer,
    oversize_error,
    parse_message,
)
from pbxd.sip.validation import stamp_via

#: The largest UDP payload (IPv4: 65535 - 20 IP - 8 UDP).
MAX_DATAGRAM = 65507
#: Seconds a stream may hold an incomplete message before it is closed (slowloris).
INCOMPLETE_TIMEOUT = 10.0
#: Seconds without any traffic after which a stream connection is closed.
IDLE_TIMEOUT = 600.0
#: RFC 5626 section 3.5.1 keep-alive ping and pong on streams.
CRLF_PING = b"\r\n\r\n"
CRLF_PONG = b"\r\n"

Address = tuple[str, int]


@functools.lru_cache(maxsize=4096)
def normalize_host(host: str) -> str:
    """An IP literal in canonical form: IPv4-mapped IPv6 becomes IPv4, IPv6 compressed.

    Anything that is not an IP literal is returned lower-cased. Cached (bounded): it
    runs on every datagram received and sent, and ``ipaddress`` parsing costs µs.
    """
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@functools.lru_cache(maxsize=4096)
def _send_host(host: str, family: int) -> str | None:
    """``host`` as ``sendto`` wants it on a socket of ``family``, or None when it is
    not an IP literal that socket can reach (hostnames never reach ``sendto``: it
    would resolve them with a blocking lookup)."""
    host = normalize_host(host)
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return None
    if family == socket.AF_INET6:
        return host if version == 6 else "::ffff:" + host
    return host if version == 4 else None


def _sendto(sock: Any, data: bytes, address: Address) -> None:
    """``sock.sendto`` as ``twisted.internet.udp.Port.write`` does it: retried on EINTR,
    ECONNREFUSED (an ICMP error of an earlier datagram) ignored."""
    while True:
        try:
            sock.sendto(data, address)
            return
        except InterruptedError:
            continue
        except ConnectionRefusedError:
            return


def _address(addr: Any) -> Address:
    """``(host, port)`` from a socket address tuple or a Twisted IAddress."""
    if isinstance(addr, tuple):
        return normalize_host(addr[0]), int(addr[1])
    return normalize_host(addr.host), int(addr.port)


def _deliver(receiver: Any, transport: Any, source: Address, data: bytes) -> None:
    """Parse one framed message and hand it (or its parse error) to ``receiver``."""
    try:
        message = parse_message(data, max_headers=transport.max_headers,
                                max_header_length=transport.max_header_length)
    except SIPParseError as error:
        receiver.malformedReceived(error, transport, source)
        return
    if getattr(message, "method", None) is not None:
        stamp_via(message, source)
    receiver.messageReceived(message, transport, source)


@implementer(ISIPTransport)
class SIPDatagramProtocol(DatagramProtocol):
    """One UDP listener: each datagram is one SIP message."""

    log = Logger()
    noisy = False
    name = "UDP"
    reliable = False
    secure = False
    connected = True
    peer = None
    metrics: Any = None  # a pbxd.web.metrics.Metrics (sip_sent), set by the composition root

    def __init__(
        self,
        receiver: Any,  # ISIPMessageReceiver
        clock: Any,  # IReactorTime
        max_message_size: int = MAX_DATAGRAM,
        max_headers: int = MAX_HEADERS,
        max_header_length: int = MAX_HEADER_LENGTH,
    ) -> None:
        self.receiver = receiver
        self.clock = clock
        self.max_message_size = min(max_message_size, MAX_DATAGRAM)
        self.max_headers = max_headers
        self.max_header_length = max_header_length

    _local: tuple[Any, Address] | None = None  # (the port it was read from, its address)

    @property
    def local_address(self) -> Address | None:
        """``(host, port)`` the port is bound to, None before it listens.

        Read once per listening port: ``getHost`` is a ``getsockname`` system call and a new
        address object, and the UA asks for it several times per call."""
        transport: Any = self.transport
        if transport is None:
            return None
        local = self._local
        if local is not None and local[0] is transport:
            return local[1]
        host = transport.getHost()
        address = (host.host, host.port)
        if host.port:  # bound (a port 0 that is not bound yet is not remembered)
            self._local = (transport, address)
        return address

    def _family(self) -> int:
        return getattr(self.transport, "addressFamily", socket.AF_INET)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Parse ``datagram`` and hand it over; never raises."""
        try:
            self._received(datagram, _address(addr))
        except Exception:
            self.log.failure("Failed handling a UDP datagram from {addr}", addr=addr)

    def _received(self, datagram: bytes, source: Address) -> None:
        if not datagram:
            return
        if datagram[0] <= 0x20:  # a SIP message starts with a letter: look closer
            if not datagram.strip(b"\r\n \t\x00"):
                return  # keep-alive (RFC 5626 / vendor CRLF and NUL pings)
            if datagram[0] < 0x20:
                self.log.debug("Dropped non-SIP datagram (STUN?) from {source}", source=source)
                return
        if len(datagram) > self.max_message_size:
            self.log.warn(
                "Dropped {size}-byte datagram from {source}: over {limit}",
                size=len(datagram),
                source=source,
                limit=self.max_message_size,
            )
            self.receiver.malformedReceived(oversize_error(datagram), self, source)  # 513
            return
        _deliver(self.receiver, self, source, datagram)

    def send(self, data: bytes, address: Address) -> bool:
        """Send one datagram to ``address`` (an IP literal); False if it could not go."""
        if self.transport is None:
            return False
        if len(data) > MAX_DATAGRAM:
            self.log.warn("Not sending {size}-byte message over UDP", size=len(data))
            return False
        family = self._family()
        host = _send_host(address[0], family)
        port: Any = self.transport
        sock = getattr(port, "socket", None)
        try:
            if host is None or sock is None:
                # not an IP literal of our family (Port.write refuses it with a clear
                # error), or a transport without a socket (tests): the checked path
                host = normalize_host(address[0])
                if family == socket.AF_INET6 and "." in host and ":" not in host:
                    host = "::ffff:" + host
                port.write(data, (host, int(address[1])))
            else:
                # Port.write re-validates the address with isIPAddress/isIPv6Address on
                # every datagram; _send_host validated it once (cached)
                _sendto(sock, data, (host, int(address[1])))
        except Exception as e:
            self.log.warn("UDP send to {address} failed: {error}", address=address, error=e)
            return False
        if self.metrics is not None:
            self.metrics.sip_sent(data)
        return True


@implementer(ISIPTransport)
class SIPStreamProtocol(Protocol):
    """One TCP or TLS connection, framed by Content-Length (RFC 3261 §18.3)."""

    log = Logger()
    reliable = True
    factory: SIPStreamFactory
    transport: Any

    def __init__(self, factory: SIPStreamFactory) -> None:
        self.factory = factory
        self.secure = factory.secure
        self.name = "TLS" if factory.secure else "TCP"
        self.connected = False
        self.peer: Address | None = None
        self.local_address: Address | None = None
        self.framer = StreamFramer(max_message_size=factory.max_message_size)
        self.max_headers = factory.max_headers
        self.max_header_length = factory.max_header_length
        self._incomplete: Any = None  # IDelayedCall
        self._idle: Any = None  # IDelayedCall
        self._last_activity = 0.0
        self.counted: str | None = None  # the source IP counted by factory.limiter

    def connectionMade(self) -> None:
        """Remember the peer and enter the connection table."""
        try:
            self.connected = True
            self.peer = _address(self.transport.getPeer())
            self.local_address = _address(self.transport.getHost())
            self.factory.connections.add(self)
            self._last_activity = self.factory.clock.seconds()
            if self.factory.idle_timeout:
                self._idle = self.factory.clock.callLater(self.factory.idle_timeout, self._idle_check)
            self.log.debug("{name} connection from {peer}", name=self.name, peer=self.peer)
        except Exception:
            self.log.failure("Failed setting up a SIP stream connection")

    def dataReceived(self, data: bytes) -> None:
        """Frame ``data`` into messages and hand each over; never raises."""
        try:
            self._received(data)
        except Exception:
            self.log.failure("Failed handling data from {peer}", peer=self.peer)

    def _received(self, data: bytes) -> None:
        self._last_activity = self.factory.clock.seconds()
        if self.framer.pending == 0 and data.startswith(CRLF_PING):
            self.transport.write(CRLF_PONG)
        receiver = self.factory.receiver
        source = self.peer or ("", 0)
        try:
            messages = self.framer.feed(data)
        except SIPParseError as error:
            for message in getattr(error, "messages", ()):  # framed before the bad bytes
                _deliver(receiver, self, source, message)
            messages = []
            receiver.malformedReceived(error, self, source)
            if error.fatal:
                self.log.info(
                    "Closing {name} connection from {peer}: {reason}",
                    name=self.name,
                    peer=self.peer,
                    reason=error.reason,
                )
                self.transport.loseConnection()
                return
        for message in messages:
            if not self.connected:
                break
            try:
                _deliver(receiver, self, source, message)
            except Exception:
                self.log.failure("Failed handling a message from {peer}", peer=self.peer)
        self._watch_incomplete()

    def _watch_incomplete(self) -> None:
        """Close a connection that leaves a message incomplete for too long (slowloris)."""
        if self.framer.pending and self.connected:
            if self._incomplete is None or not self._incomplete.active():
                self._incomplete = self.factory.clock.callLater(
                    self.factory.incomplete_timeout, self._incomplete_expired
                )
        elif self._incomplete is not None and self._incomplete.active():
            self._incomplete.cancel()
            self._incomplete = None

    def _idle_check(self) -> None:
        """Close the connection after ``idle_timeout`` seconds without traffic either way."""
        self._idle = None
        if not self.connected:
            return
        idle = self.factory.clock.seconds() - self._last_activity
        remaining = self.factory.idle_timeout - idle
        if remaining > 0:
            self._idle = self.factory.clock.callLater(remaining, self._idle_check)
            return
        self.log.info("Closing idle {name} connection from {peer}", name=self.name, peer=self.peer)
        self.transport.loseConnection()

    def _incomplete_expired(self) -> None:
        self._incomplete = None
        if self.framer.pending and self.connected:
            self.log.info("Closing idle partial {name} connection from {peer}", name=self.name, peer=self.peer)
            self.transport.loseConnection()

    def send(self, data: bytes, address: Address | None = None) -> bool:
        """Write one message on this connection (``address`` is ignored)."""
        if not self.connected or self.transport is None:
            return False
        try:
            self.transport.write(data)
            self._last_activity = self.factory.clock.seconds()
        except Exception as e:
            self.log.warn("Send to {peer} failed: {error}", peer=self.peer, error=e)
            return False
        if self.factory.metrics is not None:
            self.factory.metrics.sip_sent(data)
        return True

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Leave the table and tell the receiver (bindings on this flow may go)."""
        self.connected = False
        if self._incomplete is not None and self._incomplete.active():
            self._incomplete.cancel()
        self._incomplete = None
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self.counted is not None:
            self.factory.limiter.release(self.counted)
            self.counted = None
        self.factory.connections.remove(self)
        try:
            self.factory.receiver.connectionLost(self)
        except Exception:
            self.log.failure("Receiver failed on connectionLost from {peer}", peer=self.peer)


class SIPStreamFactory(Factory):
    """Builds a :class:`SIPStreamProtocol` per TCP or TLS connection (in or out)."""

    noisy = False
    metrics: Any = None  # a pbxd.web.metrics.Metrics (sip_sent), set by the composition root

    def __init__(
        self,
        receiver: Any,  # ISIPMessageReceiver
        clock: Any,  # IReactorTime
        secure: bool = False,
        connections: ConnectionTable | None = None,
        max_message_size: int = 65535,
        incomplete_timeout: float = INCOMPLETE_TIMEOUT,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        limiter: ConnectionLimiter | None = None,
        max_headers: int = MAX_HEADERS,
        max_header_length: int = MAX_HEADER_LENGTH,
    ) -> None:
        self.receiver = receiver
        self.clock = clock
        self.secure = secure
        self.connections = connections if connections is not None else ConnectionTable()
        self.max_message_size = max_message_size
        self.incomplete_timeout = incomplete_timeout
        self.idle_timeout = idle_timeout
        self.limiter = limiter if limiter is not None else ConnectionLimiter()
        self.max_headers = max_headers
        self.max_header_length = max_header_length

    def buildProtocol(self, addr: Any) -> Any:
        """A protocol for one connection; None (Twisted closes it) over a connection cap."""
        try:
            host = _address(addr)[0]
        except Exception:
            host = None
        if host is not None and not self.limiter.acquire(host):
            return None
        protocol = SIPStreamProtocol(self)
        protocol.counted = host
        return protocol


class ConnectionLimiter:
    """Counts open stream connections, in total and per source IP, against two caps.

    One limiter is shared by every listener of a server (``limits.max_connections``,
    ``limits.max_connections_per_source``); ``acquire`` refuses a connection over
    either cap, ``release`` gives its slot back. Memory: one entry per source with
    an open connection.
    """

    log = Logger()

    def __init__(self, max_connections: int = 4096, max_per_source: int = 64) -> None:
        self.max_connections = max_connections
        self.max_per_source = max_per_source
        self.total = 0
        self.refused = 0
        self._by_source: dict[str, int] = {}

    def acquire(self, host: str) -> bool:
        """Count a new connection from ``host``; False (not counted) over a cap."""
        count = self._by_source.get(host, 0)
        if self.total >= self.max_connections or count >= self.max_per_source:
            self.refused += 1
            if self.refused & (self.refused - 1) == 0:  # 1, 2, 4, 8 ...: log without flooding
                self.log.warn(
                    "Refused a connection from {source}: {count} from it, {total} in all"
                    " (limits {per_source}/{limit}; {refused} refused so far)",
                    source=host, count=count, total=self.total, per_source=self.max_per_source,
                    limit=self.max_connections, refused=self.refused,
                )
            return False
        self._by_source[host] = count + 1
        self.total += 1
        return True

    def release(self, host: str) -> None:
        """A counted connection from ``host`` closed."""
        count = self._by_source.get(host, 0)
        if count <= 1:
            self._by_source.pop(host, None)
        else:
            self._by_source[host] = count - 1
        self.total = max(0, self.total - 1)

    def count(self, host: str) -> int:
        """Open connections from ``host``."""
        return self._by_source.get(host, 0)


class ConnectionTable:
    """Open stream connections by ``(transport name, peer host, peer port)``."""

    log = Logger()

    def __init__(self) -> None:
        self._connections: dict[tuple[str, str, int], Any] = {}

    @staticmethod
    def key(name: str, address: Address) -> tuple[str, str, int]:
        """The table key for ``name`` ('TCP'/'TLS') and ``(host, port)``."""
        return name.upper(), normalize_host(address[0]), int(address[1])

    def add(self, transport: Any) -> None:
        """Remember a connected stream transport under its peer."""
        if transport.peer is not None:
            self._connections[self.key(transport.name, transport.peer)] = transport

    def remove(self, transport: Any) -> None:
        """Forget ``transport`` (only if it is the one stored for its peer)."""
        if transport.peer is None:
            return
        key = self.key(transport.name, transport.peer)
        if self._connections.get(key) is transport:
            del self._connections[key]

    def get(self, name: str, address: Address) -> Any | None:
        """The open connection to ``address`` over ``name``, or None."""
        transport = self._connections.get(self.key(name, address))
        if transport is not None and not transport.connected:
            return None
        return transport

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self):  # noqa: ANN204
        return iter(list(self._connections.values()))


@implementer(IConnector)
class Connector:
    """Finds a transport for requests we send: an open connection, the UDP port, or a new one.

    ``connect(name, address)`` opens an outbound stream and returns a Deferred
    firing with the connected :class:`SIPStreamProtocol` (the composition root
    builds it from Twisted endpoints); without it only existing connections
    are used.
    """

    def __init__(
        self,
        connections: ConnectionTable,
        udp: list[SIPDatagramProtocol] | None = None,
        connect: Callable[[str, Address], Deferred] | None = None,
    ) -> None:
        self.connections = connections
        self.udp = udp if udp is not None else []
        self.connect = connect

    def transportFor(self, transport_name: str, address: Address) -> Any:
        """An ISIPTransport (or a Deferred of one) to reach ``address``; None if impossible."""
        name = transport_name.upper()
        if name == "UDP":
            return self._udp_for(address)
        existing = self.connections.get(name, address)
        if existing is not None:
            return existing
        if self.connect is None:
            return None
        return self.connect(name, address)

    def _udp_for(self, address: Address) -> SIPDatagramProtocol | None:
        """The UDP port whose address family can reach ``address``."""
        want6 = ":" in normalize_host(address[0])
        fallback = None
        for proto in self.udp:
            family = proto._family()
            if (family == socket.AF_INET6) == want6:
                return proto
            if family == socket.AF_INET6:
                fallback = proto  # a dual-stack '::' socket reaches IPv4 too
        return fallback
