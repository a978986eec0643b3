"""Server transactions (RFC 3261 §17.2, RFC 6026 Accepted state for 2xx to INVITE)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pbxd.sip.message import make_response
from pbxd.sip.transaction.common import (
    Clock,
    State,
    Timers,
    TransactionBase,
    Transport,
    response_address,
)

ServerCallback = Callable[["ServerTransaction"], None]


class SentFinal:
    """What a lingering server transaction keeps of the final response it sent: its status.

    One per status code, shared (``SentFinal.of``): a transaction waiting out Timer
    J/L/H/I holds no parsed message of its own.
    """

    __slots__ = ("status",)
    _cache: dict[int, SentFinal] = {}

    def __init__(self, status: int) -> None:
        self.status = status

    def __repr__(self) -> str:
        return f"<SentFinal {self.status}>"

    @classmethod
    def of(cls, status: int) -> SentFinal:
        """The shared record of ``status``."""
        sent = cls._cache.get(status)
        if sent is None:
            sent = cls._cache[status] = cls(status)
        return sent


class ServerTransaction(TransactionBase):
    """One server transaction. Made by ``TransactionLayer.server_transaction``.

    The TU answers with :meth:`respond`. Once a final response went out the
    transaction only absorbs retransmissions (and ACKs) until its timer ends, and
    keeps just what that needs, so lingering transactions cost the garbage collector
    little: the bytes of the response and where they go. ``last_response`` then is
    a :class:`SentFinal` (only ``status``), and a non-INVITE transaction drops its
    ``request`` (None). An INVITE transaction keeps ``request``: the TU may still
    re-send its 2xx while Accepted and holds that request for the call anyway.
    ``keep_messages`` (set by the layer for RFC 2543 transactions, which are
    matched on the messages' To tags) keeps both.

    Callbacks the TU may set, each called with the transaction:

    - ``on_terminated``: the transaction left the layer (any reason).
    - ``on_ack_timeout``: Timer H fired, no ACK came for a 3xx-6xx to an INVITE
      (the call layer tears down what it kept for the call).
    - ``on_transport_error``: a response could not be sent. Outside Accepted the
      transaction then terminates; in Accepted (2xx sent) it keeps absorbing
      INVITE retransmissions until Timer L.
    """

    kind = "server"

    def __init__(
        self,
        txn_id: str,
        request: Any,
        transport: Transport,
        source: tuple[str, int],
        *,
        clock: Clock,
        timers: Timers,
        on_removed: Callable[[Any], None],
    ) -> None:
        super().__init__(txn_id, request, transport, clock, timers, on_removed)
        self.source = source
        self.last_response: Any = None
        self.on_terminated: ServerCallback | None = None
        self.on_ack_timeout: ServerCallback | None = None
        self.on_transport_error: ServerCallback | None = None
        self.state = State.PROCEEDING if self.is_invite else State.TRYING
        self.keep_messages = False
        self.layer_key: Any = None  # the layer's: its key in _by_branch (or _legacy)
        self._last_data = b""
        self._address: tuple[str, int] | None = None
        self._g_interval = 0.0

    def start(self) -> None:
        """Arm the automatic 100 Trying of an INVITE (§17.2.1) unless it is disabled."""
        delay = self._timers.trying_delay
        if self.is_invite and delay is not None:
            self._start("trying", delay, ServerTransaction._auto_trying)

    @property
    def address(self) -> tuple[str, int]:
        """Where responses go: the source over a live connection, else §18.2.2/RFC 3581."""
        if self.reliable and getattr(self.transport, "connected", True):
            return self.source
        address = self._address
        if address is None:  # the request's Via and source do not change: worked out once
            address = self._address = self._via_address()
        return address

    def _via_address(self) -> tuple[str, int]:
        source = self.source
        via = self.request.top_via
        if via is None:
            return source
        address = response_address(via, source, self.reliable)
        return source if address == source else address  # one tuple kept, not two

    # -- the TU's side ----------------------------------------------------------

    def respond(self, response: Any) -> None:
        """Send ``response`` and move the state machine; never raises on send failure.

        Responses the state does not allow (a second final, anything after a non-2xx
        final) are logged and dropped; a 2xx while Accepted is a retransmission by
        the TU and is sent.
        """
        status = response.status
        self._stop("trying")
        state = self.state
        if self.is_invite and state is State.PROCEEDING:
            if status < 200:
                self._send(response)
            elif status < 300:
                self.state = State.ACCEPTED
                self._start("L", self._timers.timeout, ServerTransaction._end)
                self._send(response)
            else:
                self.state = State.COMPLETED
                t = self._timers
                if not self.reliable:
                    self._g_interval = t.t1
                    self._start("G", t.t1, ServerTransaction._fire_g)
                self._start("H", t.timeout, ServerTransaction._fire_h)
                self._send(response)
        elif self.is_invite and state is State.ACCEPTED and 200 <= status < 300:
            self._send(response)
        elif not self.is_invite and state in (State.TRYING, State.PROCEEDING):
            if status < 200:
                self.state = State.PROCEEDING
                self._send(response)
            else:
                self.state = State.COMPLETED
                self._send(response)
                self._start("J", 0 if self.reliable else self._timers.timeout,
                            ServerTransaction._end)
        else:
            self.log.warn("{txn} {method}: {status} dropped in state {state}",
                          txn=self.id, method=self.method, status=status, state=state)

    # -- the layer's side -------------------------------------------------------

    def request_retransmitted(self, request: Any) -> None:
        """A retransmission of the request arrived: re-send what §17.2.1/§17.2.2 say."""
        state = self.state
        if self.is_invite:
            resend = state is State.COMPLETED or (
                state is State.PROCEEDING and self.last_response is not None)
        else:
            resend = state in (State.PROCEEDING, State.COMPLETED)
        self.log.debug("{txn} {method} retransmission absorbed in {state}",
                       txn=self.id, method=self.method, state=state)
        if resend:
            self._resend()

    def ack_received(self, ack: Any) -> bool:
        """An ACK matched this INVITE transaction. True if absorbed here, False if it
        belongs to the TU (ACK for a 2xx while Accepted, RFC 6026)."""
        if self.state is State.ACCEPTED:
            return False
        if self.state is State.COMPLETED:
            self._stop("G")
            self._stop("H")
            self.state = State.CONFIRMED
            self._start("I", 0 if self.reliable else self._timers.t4, ServerTransaction._end)
        return True

    # -- internals --------------------------------------------------------------

    def _auto_trying(self) -> None:
        if self.state is State.PROCEEDING and self.last_response is None:
            self.log.debug("{txn} TU silent: 100 Trying sent", txn=self.id)
            self.respond(make_response(self.request, 100))

    def _send(self, response: Any) -> None:
        self._last_data = response.serialize()
        status = response.status
        if status < 200 or self.keep_messages:
            self.last_response = response
            self._resend()
            return
        # a final: what follows only re-sends these bytes (see the class docstring)
        self.last_response = SentFinal.of(status)
        if not self.is_invite and self._address is None:
            self._address = self._via_address()  # the fallback, while there is a request
        self._resend()
        if not self.is_invite:
            self.request = None

    def _resend(self) -> None:
        if self.done or self._send_bytes(self._last_data, self.address):
            return
        if self.state is State.ACCEPTED:
            self._call(self.on_transport_error, self)
        else:
            self._end(self.on_transport_error)

    def _fire_g(self) -> None:
        if self.state is not State.COMPLETED:
            return
        self._g_interval = following = min(self._g_interval * 2, self._timers.t2)
        self._start("G", following, ServerTransaction._fire_g)
        self._resend()

    def _fire_h(self) -> None:
        self.log.info("{txn} no ACK for {status} from {source} (timer H)", txn=self.id,
                      status=getattr(self.last_response, "status", None), source=self.source)
        self._end(self.on_ack_timeout)

    def _end(self, reason_callback: ServerCallback | None = None) -> None:
        if self._terminate():
            self._call(reason_callback, self)
            self._call(self.on_terminated, self)
