"""The caller's leg: the PBX is the UAS of the INVITE that started the call (layer 4)."""

from __future__ import annotations

from typing import Any

from pbxd.calls.leg import INBOUND, Leg, LegState
from pbxd.sip.dialog import Dialog, new_tag
from pbxd.sip.message import make_response

PENDING = (LegState.PROCEEDING, LegState.EARLY)


class InboundLeg(Leg):
    """A-leg. Created from the INVITE's server transaction; the call answers,
    rings or rejects it through :meth:`provisional`, :meth:`answer`, :meth:`reject`."""

    table = INBOUND
    role = "caller"

    def __init__(self, leg_id: str, ua: Any, call: Any, registry: Any, txn: Any) -> None:
        super().__init__(leg_id, ua, call, registry)
        self.txn = txn
        self.request = txn.request
        self.transport = txn.transport
        self.address = txn.source
        self.local_tag = new_tag()
        contact = ua.contact(txn.transport, txn.source)
        self.dialog = Dialog.as_uas(self.request, self.local_tag, contact,
                                    txn.transport, txn.source)
        self.final_status: int | None = None
        registry.bind(self.dialog.id, self)
        self.fire("invite")

    @property
    def pending(self) -> bool:
        """True until the INVITE got its final response."""
        return self.state in PENDING

    def _response(self, status: int, reason: str | None = None, body: bytes = b"",
                  content_type: str | None = None) -> Any:
        response = make_response(self.request, status, reason, to_tag=self.local_tag,
                                 body=body, content_type=content_type if body else None)
        if status < 300 and status != 100:
            response.add("Contact", self.dialog.local_contact)
        return response

    def provisional(self, status: int = 180, body: bytes = b"",
                    content_type: str = "application/sdp") -> None:
        """Send a 18x (with SDP: early media)."""
        if not self.pending:
            return
        self.fire("ring")
        self.ua.respond(self.txn, self._response(status, None, body, content_type))

    def answer(self, body: bytes = b"", content_type: str = "application/sdp") -> None:
        """Send the 200 OK and wait for the ACK (a missing ACK ends the call)."""
        self.fire("answer")
        self.final_status = 200
        response = self._response(200, None, body, content_type)
        self.ack_wait = self.ua.send_2xx(self.txn, response, self._ack_timeout)

    def reject(self, status: int, reason: str | None = None) -> None:
        """Send a 3xx-6xx final response; the leg ends."""
        if not self.pending:
            return
        self.final_status = status
        self.ua.respond(self.txn, self._response(status, reason))
        self.fire("reject")

    def cancel_received(self) -> bool:
        """The caller sent CANCEL: 487 to the INVITE. False when it came too late."""
        if not self.can("cancel"):
            return False
        self.final_status = 487
        self.ua.respond(self.txn, self._response(487))
        self.end_cause = "cancel"
        self.fire("cancel")
        self.call.leg_cancelled(self)
        return True

    def hangup(self, cause: str = "normal", status: int = 503) -> None:
        """End the leg: ``status`` to a pending INVITE, BYE once confirmed."""
        self.end_cause = self.end_cause or cause
        if self.pending:
            self.reject(status)
        elif self.state is LegState.CONFIRMED:
            self.fire("hangup")
            self._send_bye()
