"""Listener services for the composition root (layer 7): SIP over UDP, TCP and TLS.

Each ``sip.listen`` entry becomes one service. A listener opens its port only
once the state (registrations, bans) has been restored, logs where it
listens, and stops the server with one clear line if the port is taken.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger

from pbxd.configschema import Config, ListenSpec
from pbxd.sip.tls import ReloadableContextFactory, context_factory, ensure_certificate
from pbxd.sip.transport import SIPDatagramProtocol, SIPStreamFactory

log = Logger()

#: recvfrom buffer for UDP listeners: never truncate a datagram (Twisted's default is 8192).
UDP_MAX_PACKET = 65535


def build_tls(config: Config, state_dir: str) -> Any:
    """The server TLS context from ``sip.tls`` (making the automatic certificate if needed)."""
    tls = config.sip.tls
    if tls.certificate == "auto" or tls.private_key == "auto":
        cert, key = ensure_certificate(state_dir, config.pbx.realm)
    else:
        cert, key = tls.certificate, tls.private_key
    # re-read on reload_certificate() (the admin API's reload)
    return ReloadableContextFactory(
        lambda: context_factory(cert, key, tls.ca_file, tls.verify_client, tls.min_version))


def stream_limits(config: Config) -> dict[str, Any]:
    """``limits:`` keyword arguments of every SIPStreamFactory (in or out)."""
    limits = config.limits
    return {
        "incomplete_timeout": limits.incomplete_timeout,
        "idle_timeout": limits.idle_timeout,
        "max_headers": limits.max_headers,
        "max_header_length": limits.max_header_length,
    }


def listener_service(
    spec: ListenSpec, stack: Any, reactor: Any, config: Config, tls: Any
) -> _Listener:
    """One service for one ``sip.listen`` entry."""
    max_size = config.sip.max_message_size
    if spec.transport == "UDP":
        protocol = SIPDatagramProtocol(stack.controller, reactor, max_message_size=max_size,
                                       max_headers=config.limits.max_headers,
                                       max_header_length=config.limits.max_header_length)
        protocol.metrics = getattr(stack, "metrics", None)
        stack.udp.append(protocol)
        return UDPListener(reactor, spec, protocol)
    factory = SIPStreamFactory(
        stack.controller,
        reactor,
        secure=spec.transport == "TLS",
        connections=stack.connections,
        max_message_size=max_size,
        limiter=stack.limiter,
        **stream_limits(config),
    )
    factory.metrics = getattr(stack, "metrics", None)
    if spec.transport == "TLS" and not spec.endpoint.startswith("ssl:"):
        endpoint = endpoints.SSL4ServerEndpoint(
            reactor, spec.port, tls, interface=spec.interface or ""
        )
    else:
        endpoint = endpoints.serverFromString(reactor, spec.endpoint)
    return StreamListener(reactor, spec, endpoint, factory)


def stop_reactor(reactor: Any) -> None:
    """Stop the reactor once, however many listeners failed."""
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


def _when_ready(ready: Any, action: Any) -> None:
    """Run ``action`` now, or when the ``ready()`` Deferred fires."""
    if ready is None:
        action()
        return
    ready().addCallback(lambda _: action()).addErrback(
        lambda f: log.failure("listener start failed", f)
    )


class _Listener(Service):
    """A port opened once the state is restored (``ready``), closed at stop.

    Subclasses say how to open it (:meth:`_open`, returning the port or a
    Deferred of it) and what it is (``what``, ``description``). A port that
    cannot be opened is logged; it stops the server when ``fatal`` (at start;
    a reload opens its new listeners with ``fatal = False``).
    """

    what = "SIP"
    transport_name = ""

    def __init__(self, reactor: Any, description: str) -> None:
        self.reactor = reactor
        self.description = description
        self.port: Any = None
        self.ready: Any = None
        self.fatal = True

    def startService(self) -> None:
        """Listen once the state is restored."""
        super().startService()
        _when_ready(self.ready, self._listen)

    def _listen(self) -> None:
        if not self.running:
            return
        d = maybeDeferred(self._open)
        d.addCallbacks(self._listening, self._failed)

    def _open(self) -> Any:
        raise NotImplementedError

    def _listening(self, port: Any) -> None:
        self.port = port
        host = port.getHost()
        log.info("{what} listening on {transport} {host}:{port}", what=self.what,
                 transport=self.transport_name, host=host.host, port=host.port)

    def _failed(self, failure: Any) -> None:
        log.critical("{what} cannot listen on {endpoint}: {error}", what=self.what,
                     endpoint=self.description, error=failure.value)
        if self.fatal:
            self.reactor.callLater(0, stop_reactor, self.reactor)

    def stopService(self) -> Deferred | None:
        """Close the port."""
        super().stopService()
        self._close_connections()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None

    def _close_connections(self) -> None:
        pass


class UDPListener(_Listener):
    """Binds one UDP port for a :class:`SIPDatagramProtocol` while running."""

    transport_name = "UDP"

    def __init__(self, reactor: Any, spec: ListenSpec, protocol: SIPDatagramProtocol) -> None:
        super().__init__(reactor, spec.endpoint)
        self.spec = spec
        self.protocol = protocol

    def _open(self) -> Any:
        return self.reactor.listenUDP(self.spec.port, self.protocol,
                                      interface=self.spec.interface or "",
                                      maxPacketSize=UDP_MAX_PACKET)


class StreamListener(_Listener):
    """Listens on a Twisted stream endpoint (TCP or TLS) while running."""

    def __init__(self, reactor: Any, spec: ListenSpec, endpoint: Any, factory: SIPStreamFactory) -> None:
        super().__init__(reactor, spec.endpoint)
        self.spec = spec
        self.transport_name = spec.transport
        self.endpoint = endpoint
        self.factory = factory

    def _open(self) -> Any:
        return self.endpoint.listen(self.factory)

    def _close_connections(self) -> None:
        """Close the connections this listener accepted."""
        for connection in list(self.factory.connections):
            if connection.factory is self.factory and connection.transport is not None:
                connection.transport.loseConnection()


class HTTPListener(_Listener):
    """Serves the admin API site on a Twisted stream endpoint."""

    what = "admin API"
    transport_name = "HTTP"

    def __init__(self, reactor: Any, description: str, endpoint: Any, site: Any) -> None:
        super().__init__(reactor, description)
        self.endpoint = endpoint
        self.site = site
        self.setName("admin")

    def _open(self) -> Any:
        return self.endpoint.listen(self.site)
