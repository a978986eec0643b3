"""Call legs: the states every leg goes through and what both kinds share (layer 4).

A leg is one SIP dialog of a call, seen from the PBX: the caller's leg is an
:class:`~pbxd.calls.inbound.InboundLeg` (we are its UAS), each callee fork
an :class:`~pbxd.calls.outbound.OutboundLeg` (we are its UAC).  States are
declared in explicit transition tables (:data:`INBOUND`, :data:`OUTBOUND`);
an input a state does not expect raises :class:`IllegalTransition` (and is
logged) instead of silently corrupting the call.

Legs talk to their call through call-control events, in the style of the
sippy B2BUA: ``leg_progress``, ``leg_answered``, ``leg_failed``,
``leg_request`` (re-INVITE, UPDATE, INFO), ``leg_bye`` and ``leg_gone``
(a leg that stopped answering: ACK timeout, BYE timeout, transport closed).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from pbxd import debuglog
from pbxd.errors import PBXError
from pbxd.sip.message import make_response


class LegState(enum.StrEnum):
    """Where a leg is in its life."""

    INIT = "INIT"
    PROCEEDING = "PROCEEDING"  # INVITE sent/received, nothing with a tag yet
    EARLY = "EARLY"  # a 1xx with a To tag: early dialog
    CONFIRMED = "CONFIRMED"  # 2xx sent/received
    TERMINATING = "TERMINATING"  # BYE or CANCEL sent, waiting for its answer
    TERMINATED = "TERMINATED"


S = LegState
_TERMINATED = LegState.TERMINATED

#: InboundLeg (UAS): (state, event) -> next state.
INBOUND: dict[tuple[LegState, str], LegState] = {
    (S.INIT, "invite"): S.PROCEEDING,
    (S.PROCEEDING, "ring"): S.EARLY,
    (S.EARLY, "ring"): S.EARLY,
    (S.PROCEEDING, "answer"): S.CONFIRMED,
    (S.EARLY, "answer"): S.CONFIRMED,
    (S.PROCEEDING, "reject"): S.TERMINATED,
    (S.EARLY, "reject"): S.TERMINATED,
    (S.PROCEEDING, "cancel"): S.TERMINATED,
    (S.EARLY, "cancel"): S.TERMINATED,
    (S.CONFIRMED, "ack"): S.CONFIRMED,
    (S.CONFIRMED, "request"): S.CONFIRMED,
    (S.CONFIRMED, "bye_in"): S.TERMINATED,
    (S.CONFIRMED, "hangup"): S.TERMINATING,
    (S.CONFIRMED, "ack_timeout"): S.TERMINATING,
    (S.TERMINATING, "bye_in"): S.TERMINATING,  # crossing BYEs
    (S.TERMINATING, "bye_done"): S.TERMINATED,
    (S.TERMINATING, "ack"): S.TERMINATING,
    (S.CONFIRMED, "lost"): S.TERMINATED,
    (S.TERMINATING, "lost"): S.TERMINATED,
}

#: OutboundLeg (UAC): (state, event) -> next state.
OUTBOUND: dict[tuple[LegState, str], LegState] = {
    (S.INIT, "invite"): S.PROCEEDING,
    (S.INIT, "cancel"): S.TERMINATED,  # never sent
    (S.PROCEEDING, "trying"): S.PROCEEDING,
    (S.PROCEEDING, "ring"): S.EARLY,
    (S.EARLY, "ring"): S.EARLY,
    (S.EARLY, "trying"): S.EARLY,
    (S.PROCEEDING, "answer"): S.CONFIRMED,
    (S.EARLY, "answer"): S.CONFIRMED,
    (S.PROCEEDING, "reject"): S.TERMINATED,
    (S.EARLY, "reject"): S.TERMINATED,
    (S.PROCEEDING, "cancel"): S.TERMINATING,
    (S.EARLY, "cancel"): S.TERMINATING,
    (S.TERMINATING, "trying"): S.TERMINATING,
    (S.TERMINATING, "ring"): S.TERMINATING,
    (S.TERMINATING, "reject"): S.TERMINATED,  # 487 after our CANCEL
    (S.TERMINATING, "answer"): S.TERMINATING,  # 2xx crossed our CANCEL: ACK + BYE
    (S.CONFIRMED, "request"): S.CONFIRMED,
    (S.CONFIRMED, "bye_in"): S.TERMINATED,
    (S.CONFIRMED, "hangup"): S.TERMINATING,
    (S.TERMINATING, "bye_in"): S.TERMINATING,  # crossing BYEs
    (S.TERMINATING, "bye_done"): S.TERMINATED,
    (S.CONFIRMED, "lost"): S.TERMINATED,
    (S.TERMINATING, "lost"): S.TERMINATED,
}


class IllegalTransition(PBXError):
    """An input the leg's current state does not accept."""


def _ignored(*_args: Any, **_kwargs: Any) -> None:
    return None


class _Detached:
    """What a leg reports to once its call is over and forgotten: every event is ignored."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return _ignored


DETACHED: Any = _Detached()


class Leg:
    """What inbound and outbound legs share: the state table, the dialog,
    in-dialog requests (with re-INVITE glare detection) and BYE."""

    log = Logger()
    table: dict[tuple[LegState, str], LegState] = {}
    role = "leg"

    def __init__(self, leg_id: str, ua: Any, call: Any, registry: Any) -> None:
        self.id = leg_id
        self.ua = ua
        self.call = call
        self.registry = registry
        self.state = LegState.INIT
        self.dialog: Any = None
        self.transport: Any = None
        self.address: tuple[str, int] | None = None
        self.invite_out: Any = None  # our re-INVITE/UPDATE with an offer, pending
        self.invite_in: Any = None  # their re-INVITE/UPDATE, not answered yet
        self.ack_wait: Any = None
        self.on_terminated: Callable[[Leg], None] | None = None
        self.end_cause: str | None = None
        self._bye_txn: Any = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state}>"

    # -- the state machine --------------------------------------------------

    def can(self, event: str) -> bool:
        """True when ``event`` is accepted in the current state."""
        return (self.state, event) in self.table

    def fire(self, event: str) -> LegState:
        """Apply ``event``; raises IllegalTransition when the state does not accept it."""
        old = self.state
        new = self.table.get((old, event))
        if new is None:
            self.log.warn("leg {leg}: {event} refused in {state}", leg=self.id,
                          event=event, state=old)
            raise IllegalTransition(f"{self.id}: {event} in {old}")
        if new is not old:
            self.state = new
            if debuglog.ENABLED:
                self.log.debug("leg {leg}: {old} -> {new} on {event}", leg=self.id,
                               old=old, new=new, event=event)
            if new is _TERMINATED:
                self._terminated()
        return new

    def _terminated(self) -> None:
        if self.ack_wait is not None:
            self.ack_wait.cancel()
            self.ack_wait = None
        self.registry.unbind(self)
        if self.on_terminated is not None:
            self.on_terminated(self)

    @property
    def done(self) -> bool:
        return self.state is LegState.TERMINATED

    def detach(self) -> None:
        """The call is over and forgotten: drop the references to it.

        A transaction can outlive the call (an INVITE client transaction absorbs 2xx
        retransmissions for 32 s): it then keeps this leg alive, not the whole call
        (sessions, media, dialplan state), which the garbage collector would otherwise
        walk again and again. Late events of the leg go nowhere."""
        self.call = DETACHED
        self.on_terminated = None
        self._bye_txn = None  # its callbacks hold this leg: no cycle left for the collector

    # -- in-dialog requests from the peer -----------------------------------

    def request_received(self, request: Any, txn: Any) -> None:
        """An in-dialog request routed here by the manager."""
        method = request.method
        if self.dialog is not None and not self.dialog.accept_remote_cseq(request):
            self.ua.respond(txn, make_response(request, 500, "CSeq Out of Order"))
            return
        if method == "BYE":
            self._bye_received(request, txn)
        elif not self.can("request"):
            self.ua.respond(txn, make_response(request, 481))
        elif method == "OPTIONS":
            self.ua.respond(txn, make_response(request, 200))
        elif method in ("INVITE", "UPDATE") and self.invite_out is not None:
            self.log.info("leg {leg}: {method} glare, 491", leg=self.id, method=method)
            self.ua.respond(txn, make_response(request, 491))
        elif method in ("INVITE", "UPDATE") and self.invite_in is not None:
            response = make_response(request, 500, "Offer Pending")
            response.set("Retry-After", "1")
            self.ua.respond(txn, response)
        elif method in ("INVITE", "UPDATE", "INFO"):
            if method == "INVITE" and self.dialog is not None:
                self.dialog.update_target(request)
            if method in ("INVITE", "UPDATE"):
                self.invite_in = txn
            self.fire("request")
            self.call.leg_request(self, request, txn)
        else:
            self.ua.respond(txn, make_response(request, 501))

    def answer_request(self, txn: Any, status: int, body: bytes = b"",
                       content_type: str | None = None, reason: str | None = None) -> None:
        """Answer an in-dialog request the call relayed (a 2xx to INVITE waits for its ACK)."""
        if txn is self.invite_in:
            self.invite_in = None
        response = make_response(txn.request, status, reason, body=body,
                                 content_type=content_type if body else None)
        if 200 <= status < 300 and txn.request.method == "INVITE":
            response.add("Contact", self.dialog.local_contact)
            if self.ack_wait is not None:
                self.ack_wait.cancel()
            self.ack_wait = self.ua.send_2xx(txn, response, self._ack_timeout)
        else:
            self.ua.respond(txn, response)

    def ack_received(self, ack: Any) -> None:
        """An ACK for one of our 2xx."""
        wait = self.ack_wait
        if wait is not None and ack.cseq.seq == wait.cseq:
            wait.acked()
            self.ack_wait = None
        if self.can("ack"):
            self.fire("ack")

    def _ack_timeout(self) -> None:
        self.ack_wait = None
        if self.can("ack_timeout"):
            self.fire("ack_timeout")
            self._send_bye()
            self.call.leg_gone(self, "ack timeout")

    # -- in-dialog requests to the peer -------------------------------------

    def send_request(self, method: str, body: bytes = b"", content_type: str | None = None,
                     on_response: Callable[[Any], None] | None = None,
                     headers: tuple[tuple[str, str], ...] = ()) -> bool:
        """Send an in-dialog request; ``on_response`` gets the final response
        (a synthetic 408/503 when it timed out). False when not possible now."""
        if self.dialog is None or self.state is not LegState.CONFIRMED:
            return False
        if method in ("INVITE", "UPDATE") and (self.invite_out is not None
                                                or self.invite_in is not None):
            return False
        request = self.dialog.make_request(method, body, content_type, headers)
        box: dict[str, Any] = {}

        def responded(response: Any) -> None:
            if response.status < 200:
                return
            if box.get("txn") is self.invite_out:
                self.invite_out = None
            if method == "INVITE" and 200 <= response.status < 300:
                self.dialog.update_target(response)
                self._ack_2xx(request, response)
            if on_response is not None:
                on_response(response)

        def timed_out() -> None:
            if box.get("txn") is self.invite_out:
                self.invite_out = None
            failure = getattr(box.get("txn"), "failure", "timeout")
            status = 503 if failure == "transport" else 408
            if on_response is not None:
                on_response(make_response(request, status))
            self.call.leg_gone(self, f"{method} {failure or 'timeout'}")

        txn = self.ua.send_request(request, self.dialog.transport, self.dialog.address,
                                   on_response=responded, on_timeout=timed_out)
        box["txn"] = txn
        if method in ("INVITE", "UPDATE"):
            self.invite_out = txn
        return True

    def _ack_2xx(self, request: Any, response: Any, body: bytes = b"",
                 content_type: str | None = None) -> None:
        ack = self.dialog.make_request("ACK", body, content_type, cseq=request.cseq.seq)
        self.ua.send_ack(ack, self.dialog.transport, self.dialog.address)

    # -- BYE ----------------------------------------------------------------

    def _bye_received(self, request: Any, txn: Any) -> None:
        if not self.can("bye_in"):
            self.ua.respond(txn, make_response(request, 481))
            return
        self.ua.respond(txn, make_response(request, 200))
        crossing = self.state is LegState.TERMINATING
        self._fail_pending_in()
        self.fire("bye_in")
        if not crossing:
            self.end_cause = "bye"
            self.call.leg_bye(self)

    def _fail_pending_in(self) -> None:
        """A re-INVITE/UPDATE of the peer still unanswered gets 487 when the dialog ends."""
        txn, self.invite_in = self.invite_in, None
        if txn is not None and (txn.last_response is None or txn.last_response.status < 200):
            self.ua.respond(txn, make_response(txn.request, 487))

    def hangup(self, cause: str = "normal") -> None:
        """End this leg from our side, whatever its state (BYE, CANCEL or a final)."""
        raise NotImplementedError

    def _send_bye(self) -> None:
        """Send BYE in the dialog; TERMINATED once answered (any final) or timed out."""
        self._fail_pending_in()
        request = self.dialog.make_request("BYE")

        def finished(*_: Any) -> None:
            if self.can("bye_done"):
                self.fire("bye_done")

        def responded(response: Any) -> None:
            if response.status >= 200:
                finished()

        self._bye_txn = self.ua.send_request(request, self.dialog.transport,
                                             self.dialog.address, on_response=responded,
                                             on_timeout=finished)

    def transport_lost(self) -> None:
        """The connection this leg's dialog uses closed."""
        if self.can("lost"):
            was = self.state
            self.fire("lost")
            if was is LegState.CONFIRMED:
                self.call.leg_gone(self, "transport closed")
