"""The user agent core for requests the PBX originates (layer 3).

:class:`UserAgent` is what the call legs send through:

- :meth:`UserAgent.send_request` stamps our Via (transport, our host:port,
  a fresh branch, ``rport``) and hands the request to
  ``TransactionLayer.client_transaction``; the destination is a *target*:
  an ISIPTransport and an address, or a transport name ('UDP', 'TCP',
  'TLS') and an address resolved through the :class:`~pbxd.interfaces.IConnector`
  (an open connection to that peer, the UDP listener, or a new connection).
- :meth:`UserAgent.send_ack` sends the ACK for a 2xx straight over the
  transport (it is not a transaction, RFC 3261 §17.1.1.3).
- :meth:`UserAgent.send_2xx` answers an INVITE with a 2xx and keeps
  re-sending it over unreliable transports (T1 doubling up to T2) until
  :meth:`AckWait.acked` is called; after 64*T1 without ACK it gives up and
  calls ``on_ack_timeout`` (RFC 3261 §13.3.1.4).
- :meth:`UserAgent.contact` builds our Contact for a transport.

Our host is ``pbx.external_address`` when configured, else the address the
transport is bound to; a wildcard bind (0.0.0.0, ::) is replaced by the
source address the kernel would use to reach the destination.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger

from pbxd.sip.dialog import new_branch

Address = tuple[str, int]
Target = tuple[Any, Address]
"""(ISIPTransport or transport name, (host, port))."""

WILDCARDS = frozenset({"", "0.0.0.0", "::", "::0"})


def route_source_address(destination: str) -> str | None:
    """The local IP the kernel would use to reach ``destination`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in destination else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((destination, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return None


class AckWait:
    """A 2xx to an INVITE waiting for its ACK (RFC 3261 §13.3.1.4)."""

    log = Logger()

    def __init__(self, ua: UserAgent, txn: Any, response: Any,
                 on_ack_timeout: Callable[[], None] | None) -> None:
        self.ua = ua
        self.txn = txn
        self.response = response
        self.on_ack_timeout = on_ack_timeout
        self.done = False
        self.retransmissions = 0
        self._data: bytes | None = None  # the wire form, once the transaction is over
        timers = ua.transactions.timers
        self._t2 = timers.t2
        self._deadline = ua.clock.callLater(timers.timeout, self._expired)
        self._retry = None
        if not txn.reliable:
            self._retry = ua.clock.callLater(timers.t1, self._resend, timers.t1)

    @property
    def cseq(self) -> int:
        """The CSeq number of the INVITE (its ACK carries the same)."""
        return int(self.response.cseq.seq)

    def acked(self) -> None:
        """The ACK arrived: stop re-sending."""
        self._stop()

    def cancel(self) -> None:
        """Stop waiting without calling back (the call went away)."""
        self._stop()

    def _stop(self) -> None:
        self.done = True
        for call in (self._deadline, self._retry):
            if call is not None and call.active():
                call.cancel()

    def _resend(self, interval: float) -> None:
        if self.done:
            return
        self.retransmissions += 1
        if not self.txn.done:
            self.txn.respond(self.response)
        else:
            if self._data is None:  # serialized only if needed: most 2xx are ACKed at once
                self._data = self.response.serialize()
            self.txn.transport.send(self._data, self.txn.address)
        following = min(interval * 2, self._t2)
        self._retry = self.ua.clock.callLater(following, self._resend, following)

    def _expired(self) -> None:
        if self.done:
            return
        self._stop()
        self.log.info("no ACK for {status} to INVITE {call_id} after 64*T1",
                      status=self.response.status, call_id=self.response.call_id)
        if self.on_ack_timeout is not None:
            self.on_ack_timeout()


class UserAgent:
    """Sends the requests, ACKs and 2xx retransmissions the PBX originates.

    :param transactions: the TransactionLayer (its clock and timers are used).
    :param connector: an IConnector for targets given by transport name.
    :param clock: IReactorTime.
    :param external_address: ``pbx.external_address`` (None: the bound address).
    :param user_agent: the User-Agent header of our requests.
    :param max_forwards: the Max-Forwards of our requests (``calls.max_forwards``), added by
        :meth:`add_via` to a request that has none.
    """

    log = Logger()

    def __init__(self, transactions: Any, connector: Any, clock: Any, *,
                 external_address: str | None = None, user_agent: str = "pbxd",
                 max_forwards: int = 70) -> None:
        self.transactions = transactions
        self.connector = connector
        self.clock = clock
        self.external_address = external_address
        self.user_agent = user_agent
        self.max_forwards = str(max_forwards)
        self._route_cache: dict[str, str] = {}

    # -- addresses ----------------------------------------------------------

    def local_host_port(self, transport: Any, destination: Address | None = None) -> Address:
        """The (host, port) others reach us at over ``transport``."""
        host, port = transport.local_address or ("", 0)
        if self.external_address:
            return self.external_address, port
        if host in WILDCARDS and destination is not None:
            cached = self._route_cache.get(destination[0])
            if cached is None:
                cached = route_source_address(destination[0]) or "127.0.0.1"
                self._route_cache[destination[0]] = cached
            host = cached
        return host, port

    def contact(self, transport: Any, destination: Address | None = None,
                user: str | None = "pbx") -> str:
        """Our Contact for requests/responses going over ``transport``."""
        host, port = self.local_host_port(transport, destination)
        if ":" in host:
            host = f"[{host}]"
        name = transport.name.upper()
        params = "" if name == "UDP" else f";transport={name.lower()}"
        userpart = f"{user}@" if user else ""
        return f"<sip:{userpart}{host}:{port}{params}>"

    def add_via(self, request: Any, transport: Any, destination: Address | None = None) -> str:
        """Put our Via with a new branch on top of ``request`` (and our Max-Forwards and
        User-Agent when it has none); returns the branch."""
        host, port = self.local_host_port(transport, destination)
        branch = new_branch()
        if ":" in host:
            host = f"[{host}]"
        request.add("Via", f"SIP/2.0/{transport.name.upper()} {host}:{port};branch={branch};rport",
                    first=True)
        if request.get("Max-Forwards") is None:  # calls.max_forwards
            request.add("Max-Forwards", self.max_forwards)
        if self.user_agent and request.get("User-Agent") is None:
            request.add("User-Agent", self.user_agent)  # none yet: at the end, as set puts it
        return branch

    # -- targets ------------------------------------------------------------

    def resolve(self, target: Target) -> Deferred:
        """Fire with the ISIPTransport for ``target`` (None when unreachable)."""
        transport, address = target
        if not isinstance(transport, str):
            return succeed(transport)
        if self.connector is None:
            return succeed(None)
        d = maybeDeferred(self.connector.transportFor, transport, address)
        d.addErrback(lambda f: self.log.info("cannot reach {address} over {name}: {why}",
                                             address=address, name=transport,
                                             why=f.getErrorMessage()))
        return d

    # -- sending ------------------------------------------------------------

    def send_request(self, request: Any, transport: Any, address: Address, *,
                     on_response: Callable[[Any], None] | None,
                     on_timeout: Callable[[], None] | None) -> Any:
        """Stamp our Via and send ``request`` in a new client transaction (returned)."""
        self.add_via(request, transport, address)
        return self.transactions.client_transaction(
            request, transport, address, on_response=on_response, on_timeout=on_timeout)

    def send_to(self, request: Any, target: Target, *,
                on_response: Callable[[Any], None] | None,
                on_timeout: Callable[[], None] | None) -> Deferred:
        """Resolve ``target`` and send; fires with the ClientTransaction, or None
        after calling ``on_timeout`` when no transport reaches it."""
        def resolved(transport: Any) -> Any:
            if transport is not None and needs_tls(request) and not getattr(
                    transport, "secure", False):
                self.log.warn("{uri} needs TLS; refusing to send it over {name}",
                              uri=request.uri, name=getattr(transport, "name", "?"))
                transport = None
            if transport is None:
                if on_timeout is not None:
                    on_timeout()
                return None
            return self.send_request(request, transport, target[1],
                                     on_response=on_response, on_timeout=on_timeout)

        return self.resolve(target).addCallback(resolved)

    def send_ack(self, ack: Any, transport: Any, address: Address) -> bool:
        """Send the ACK for a 2xx directly (new branch); False if it could not go."""
        if ack.top_via is None:
            self.add_via(ack, transport, address)
        try:
            return bool(transport.send(ack.serialize(), address))
        except Exception:
            self.log.failure("ACK to {address} failed", address=address)
            return False

    def send_2xx(self, txn: Any, response: Any,
                 on_ack_timeout: Callable[[], None] | None = None) -> AckWait:
        """Send a 2xx on the INVITE server transaction ``txn`` and wait for the ACK."""
        if self.user_agent and response.get("Server") is None:
            response.add("Server", self.user_agent)  # none yet: at the end
        txn.respond(response)
        return AckWait(self, txn, response, on_ack_timeout)

    def respond(self, txn: Any, response: Any) -> None:
        """Send a (non-2xx-to-INVITE) response with our Server header."""
        if self.user_agent and response.get("Server") is None:
            response.add("Server", self.user_agent)  # none yet: at the end
        txn.respond(response)


def needs_tls(request: Any) -> bool:
    """A ``sips:`` Request-URI (RFC 3261 26.2.2) or ``transport=tls`` is sent only over TLS."""
    uri = request.uri
    return uri.scheme == "sips" or (uri.transport or "") == "TLS"
