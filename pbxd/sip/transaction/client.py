"""Client transactions (RFC 3261 §17.1, RFC 6026 for 2xx to INVITE)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pbxd.sip.message import Request
from pbxd.sip.transaction.common import Clock, State, Timers, TransactionBase, Transport


def _derived_request(request: Any, method: str, to: Any) -> Request:
    """A request sharing ``request``'s Request-URI, top Via, From, Call-ID, CSeq number and Route."""
    derived = Request(method, request.uri.copy())
    derived.add("Via", str(request.top_via))
    derived.add("Max-Forwards", request.get("Max-Forwards") or "70")
    derived.add("From", str(request.from_))
    derived.add("To", str(to))
    derived.add("Call-ID", request.call_id)
    derived.add("CSeq", f"{request.cseq.seq} {method}")
    for route in request.routes:
        derived.add("Route", str(route))
    return derived


def make_ack(invite: Any, response: Any) -> Request:
    """The ACK for a non-2xx final ``response`` to ``invite`` (RFC 3261 §17.1.1.3).

    Same branch (the single Via is the INVITE's top Via), To taken from the response.
    """
    return _derived_request(invite, "ACK", response.to)


def make_cancel(invite: Any) -> Request:
    """A CANCEL for a pending ``invite`` (RFC 3261 §9.1): same branch, To, From, CSeq number.

    Send it with ``TransactionLayer.client_transaction``; the layer then limits how long
    the INVITE transaction waits for its final response (64*T1, §9.1).
    """
    return _derived_request(invite, "CANCEL", invite.to)


class ClientTransaction(TransactionBase):
    """One client transaction. Made and started by ``TransactionLayer.client_transaction``.

    ``on_response(response)`` gets every response for the TU: provisionals and the
    final; for INVITE also every further 2xx while Accepted (RFC 6026, forked or
    retransmitted 2xx: the TU ACKs them). Retransmitted non-2xx finals are absorbed
    (re-ACKed here). ``on_timeout()`` is called once on Timer B/F or when the
    transport cannot send; ``failure`` then says ``'timeout'`` (408) or
    ``'transport'`` (503, RFC 3261 §8.1.3.1).

    Once it lingers (Completed, or Accepted for INVITE) it keeps only what that
    needs: ``request`` becomes None, ``on_timeout`` (and, but while Accepted,
    ``on_response``) is dropped, with the bytes of the request; a Completed INVITE
    keeps the bytes of its ACK to re-send.
    """

    kind = "client"

    def __init__(
        self,
        txn_id: str,
        request: Any,
        transport: Transport,
        address: tuple[str, int],
        *,
        clock: Clock,
        timers: Timers,
        on_response: Callable[[Any], None] | None,
        on_timeout: Callable[[], None] | None,
        on_removed: Callable[[Any], None],
    ) -> None:
        super().__init__(txn_id, request, transport, clock, timers, on_removed)
        self.address = address
        self.on_response = on_response
        self.on_timeout = on_timeout
        self.failure: str | None = None
        self.branch: str = request.top_via.branch
        self.state = State.CALLING if self.is_invite else State.TRYING
        self._data = request.serialize()
        self._ack_data = b""
        self._interval = 0.0  # the running Timer A or E

    # -- life cycle -------------------------------------------------------------

    def start(self) -> None:
        """Send the request and start timers A+B (INVITE) or E+F; A/E only when unreliable."""
        t = self._timers
        if not self._send_bytes(self._data, self.address):
            # Report after the caller has the transaction object in hand.
            self.failure = "transport"
            self._terminate()
            self._clock.callLater(0, self._call, self.on_timeout)
            return
        if not self.reliable:
            self._interval = t.t1
        if self.is_invite:
            if not self.reliable:
                self._start("A", t.t1, ClientTransaction._fire_a)
            self._start("B", t.timeout, ClientTransaction._timed_out)
        else:
            if not self.reliable:
                self._start("E", t.t1, ClientTransaction._fire_e)
            self._start("F", t.timeout, ClientTransaction._timed_out)

    def cancel_timers(self) -> None:
        """Abandon the transaction: stop retransmitting, no further callbacks, leave the layer."""
        self._terminate()

    def cancel_sent(self) -> None:
        """A CANCEL for this INVITE went out: give up 64*T1 later if no final came (§9.1)."""
        if self.is_invite and self.state in (State.CALLING, State.PROCEEDING):
            self._start("cancel", self._timers.timeout, ClientTransaction._timed_out)

    def transport_lost(self) -> None:
        """The connection the request went over closed before a final response."""
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self._fail("transport")

    # -- timers -----------------------------------------------------------------

    def _fire_a(self) -> None:
        if self.state is not State.CALLING:
            return
        if not self._send_bytes(self._data, self.address):
            self._fail("transport")
            return
        self._interval = following = self._interval * 2
        self.log.debug("{txn} timer A: INVITE retransmitted, next in {delay}s",
                       txn=self.id, delay=following)
        self._start("A", following, ClientTransaction._fire_a)

    def _fire_e(self) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        if not self._send_bytes(self._data, self.address):
            self._fail("transport")
            return
        t2 = self._timers.t2
        following = t2 if self.state is State.PROCEEDING else min(self._interval * 2, t2)
        self._interval = following
        self.log.debug("{txn} timer E: {method} retransmitted, next in {delay}s",
                       txn=self.id, method=self.method, delay=following)
        self._start("E", following, ClientTransaction._fire_e)

    def _timed_out(self) -> None:
        """Timer B or F, or the 64*T1 after a CANCEL (§9.1)."""
        self._fail("timeout")

    def _fail(self, reason: str) -> None:
        if self.done:
            return
        self.failure = reason
        self.log.info("{txn} {method} to {address} failed: {reason}",
                      txn=self.id, method=self.method, address=self.address, reason=reason)
        self._terminate()
        self._call(self.on_timeout)

    # -- responses --------------------------------------------------------------

    def response_received(self, response: Any) -> None:
        """A response matched this transaction (called by the layer)."""
        if self.done:
            return
        if self.is_invite:
            self._invite_response(response, response.status)
        else:
            self._non_invite_response(response, response.status)

    def _invite_response(self, response: Any, status: int) -> None:
        pending = self.state in (State.CALLING, State.PROCEEDING)
        if status < 200:
            if self.state is State.CALLING:
                self.state = State.PROCEEDING
                self._stop("A")
                self._stop("B")
            if self.state is State.PROCEEDING:
                self._call(self.on_response, response)
        elif status < 300:
            if pending:
                self._stop_all()
                self.state = State.ACCEPTED
                self._linger()
                self._start("M", self._timers.timeout, TransactionBase._terminate)
                self._call(self.on_response, response)
            elif self.state is State.ACCEPTED:
                self._call(self.on_response, response)
        elif pending:
            self._stop_all()
            self.state = State.COMPLETED
            self._ack_data = make_ack(self.request, response).serialize()
            self._send_bytes(self._ack_data, self.address)
            on_response = self.on_response
            self._linger()
            self.on_response = None  # retransmitted finals are only re-ACKed
            self._call(on_response, response)
            if not self.done:
                self._start("D", 0 if self.reliable else self._timers.d, TransactionBase._terminate)
        elif self.state is State.COMPLETED:
            self.log.debug("{txn} final {status} retransmitted: ACK re-sent",
                           txn=self.id, status=status)
            self._send_bytes(self._ack_data, self.address)

    def _non_invite_response(self, response: Any, status: int) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return  # Completed: retransmitted final absorbed
        if status < 200:
            self.state = State.PROCEEDING
            self._call(self.on_response, response)
            return
        self._stop_all()
        self.state = State.COMPLETED
        on_response = self.on_response
        self._linger()
        self.on_response = None  # retransmitted finals are absorbed
        self._call(on_response, response)
        if not self.done:
            self._start("K", 0 if self.reliable else self._timers.t4, TransactionBase._terminate)

    def _linger(self) -> None:
        """A final response came: nothing is sent or reported any more but ACKs (see
        the class docstring), so the request, its bytes and ``on_timeout`` go."""
        self.request = None
        self._data = b""
        self.on_timeout = None
