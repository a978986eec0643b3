"""Qualify: OPTIONS keepalives to registered contacts (layer 3).

Every ``interval`` seconds each binding gets an OPTIONS in a client
transaction, sent where :meth:`LocationService.target` says (so through the
NAT flow or the TCP/TLS connection, which also keeps NAT pinholes open).

- A final response other than 408/503 (even 404 or 405) proves the phone is
  there: the binding is marked reachable, with its round-trip time.
- No final response within ``timeout`` (or the transaction's own timeout, a
  408 or a 503) marks it unreachable: :meth:`LocationService.lookup` skips it
  until it answers again.

At most ``max_in_flight`` probes are outstanding; the others wait in a queue,
so a PBX with thousands of phones sends a steady trickle, not a burst.

:func:`options_maker` builds the OPTIONS the server sends (``registrar.qualify_interval``,
``registrar.qualify_timeout``; :func:`pbxd.service.make_service` starts the Qualifier).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbxd.sip.dialog import new_call_id, new_tag
from pbxd.sip.message import Request

UNREACHABLE_STATUSES = frozenset({408, 503})


def options_maker(ua: Any, realm: str) -> Callable[[Any, Any, tuple[str, int]], Request]:
    """``make_options`` for a :class:`Qualifier`: an OPTIONS to a binding's Contact.

    ``ua`` (a :class:`pbxd.sip.ua.UserAgent`) gives our Via and Contact for the transport
    the OPTIONS goes on. A binding registered through a proxy that added Path (RFC 3327)
    gets its Path values as Route headers, so the proxy can find the phone's flow.
    """

    def make_options(binding: Any, transport: Any, address: tuple[str, int]) -> Request:
        request = Request("OPTIONS", binding.uri.copy())
        for hop in binding.path:
            request.add("Route", hop)
        request.add("From", f"<sip:pbx@{realm}>;tag={new_tag()}")
        request.add("To", f"<{binding.uri}>")
        request.add("Call-ID", new_call_id(realm))
        request.add("CSeq", "1 OPTIONS")
        request.add("Contact", ua.contact(transport, address))
        request.add("Accept", "application/sdp")
        ua.add_via(request, transport, address)
        return request

    return make_options


class _Probe:
    """One OPTIONS in flight for one binding."""

    def __init__(self, binding: Any, sent_at: float) -> None:
        self.binding = binding
        self.sent_at = sent_at
        self.timer: Any = None
        self.done = False


class Qualifier(Service):
    """Sends OPTIONS to every binding and keeps their ``reachable`` flag.

    :param location: the LocationService (``all_bindings``, ``target``,
        ``set_reachable``).
    :param transactions: the TransactionLayer (``client_transaction``).
    :param interval: seconds between rounds; 0 disables qualifying.
    :param timeout: seconds to wait for a final response.
    :param make_options: ``make_options(binding, transport, address) -> Request``:
        an OPTIONS to ``binding.contact`` with our Via (a fresh branch) for the
        transport it will be sent on.
    :param connector: an IConnector for targets given by transport name (no live
        transport known, e.g. after a restart); without one such bindings are
        skipped.
    """

    log = Logger()

    def __init__(
        self,
        location: Any,
        transactions: Any,
        clock: Any,
        interval: float,
        timeout: float,
        make_options: Callable[[Any, Any, tuple[str, int]], Any],
        *,
        connector: Any = None,
        max_in_flight: int = 32,
    ) -> None:
        self.location = location
        self.transactions = transactions
        self.clock = clock
        self.interval = interval
        self.timeout = timeout
        self.make_options = make_options
        self.connector = connector
        self.max_in_flight = max(1, max_in_flight)
        self._queue: deque[Any] = deque()
        self._queued: set[int] = set()
        self._in_flight: dict[int, _Probe] = {}
        self._loop: LoopingCall | None = None

    # -- service ----------------------------------------------------------------

    def startService(self) -> None:
        """Start the rounds (the first one at once); nothing if interval is 0."""
        super().startService()
        if self.interval > 0:
            self._loop = LoopingCall(self.qualify_all)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=True)

    def stopService(self) -> None:
        """Stop the rounds and forget queued and outstanding probes."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._queue.clear()
        self._queued.clear()
        for probe in self._in_flight.values():
            probe.done = True
            if probe.timer is not None and probe.timer.active():
                probe.timer.cancel()
        self._in_flight.clear()

    @property
    def in_flight(self) -> int:
        """Probes sent and not yet answered or timed out."""
        return len(self._in_flight)

    # -- rounds -----------------------------------------------------------------

    def qualify_all(self) -> None:
        """Queue an OPTIONS for every binding not already queued or in flight."""
        for binding in self.location.all_bindings():
            self.qualify(binding)

    def qualify(self, binding: Any) -> None:
        """Queue one binding (e.g. right after it registered)."""
        key = id(binding)
        if key in self._queued or key in self._in_flight:
            return
        self._queued.add(key)
        self._queue.append(binding)
        self._pump()

    def _pump(self) -> None:
        while self._queue and len(self._in_flight) < self.max_in_flight:
            binding = self._queue.popleft()
            self._queued.discard(id(binding))
            if binding.expires_at <= self.clock.seconds():
                continue
            self._send(binding)

    def _send(self, binding: Any) -> None:
        target, address = self.location.target(binding)
        if isinstance(target, str):
            if self.connector is None:
                return
            probe = self._start(binding)
            d = maybeDeferred(self.connector.transportFor, target, address)
            d.addCallback(self._transact, probe, address)
            d.addErrback(self._error, probe)
            return
        probe = self._start(binding)
        try:
            self._transact(target, probe, address)
        except Exception:
            self._error(Failure(), probe)

    def _start(self, binding: Any) -> _Probe:
        probe = _Probe(binding, self.clock.seconds())
        self._in_flight[id(binding)] = probe
        probe.timer = self.clock.callLater(self.timeout, self._finish, probe, None)
        return probe

    def _transact(self, transport: Any, probe: _Probe, address: tuple[str, int]) -> None:
        if probe.done:
            return
        request = self.make_options(probe.binding, transport, address)
        self.transactions.client_transaction(
            request,
            transport,
            address,
            on_response=lambda response: self._response(probe, response),
            on_timeout=lambda: self._finish(probe, None),
        )

    def _error(self, failure: Failure, probe: _Probe) -> None:
        self.log.failure(
            "OPTIONS to {contact} could not be sent", failure, contact=probe.binding.contact
        )
        self._finish(probe, None)

    def _response(self, probe: _Probe, response: Any) -> None:
        if response.status >= 200:
            self._finish(probe, response.status)

    def _finish(self, probe: _Probe, status: int | None) -> None:
        if probe.done:
            return
        probe.done = True
        if probe.timer is not None and probe.timer.active():
            probe.timer.cancel()
        if self._in_flight.get(id(probe.binding)) is probe:
            del self._in_flight[id(probe.binding)]
        binding = probe.binding
        if status is None or status in UNREACHABLE_STATUSES:
            self.log.debug(
                "OPTIONS to {contact} of {aor}: {result}",
                contact=binding.contact,
                aor=binding.aor,
                result=status or "no answer",
            )
            self.location.set_reachable(binding, False)
        else:
            self.location.set_reachable(binding, True, rtt=self.clock.seconds() - probe.sent_at)
        self._pump()
