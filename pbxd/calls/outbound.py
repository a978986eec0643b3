"""A callee fork: the PBX is the UAC of a new dialog to one binding (layer 4)."""

from __future__ import annotations

from typing import Any

from pbxd.calls.leg import OUTBOUND, Leg, LegState
from pbxd.sip.dialog import Dialog, new_call_id, new_tag
from pbxd.sip.message import Request
from pbxd.sip.transaction import make_cancel

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"


class OutboundLeg(Leg):
    """B-leg fork: its own Call-ID, From tag and CSeq, sent to one target.

    :param target: ``(transport or transport name, (host, port))`` to send to.
    :param request_uri: the binding's Contact URI.
    :param from_: our From (without tag), e.g. ``"Alice" <sip:1000@realm>``.
    :param to: the To, e.g. ``<sip:1001@realm>``.
    :param route: Route header values for the INVITE (the binding's Path, RFC 3327 s5.3:
        a registrar's Path is the route to the phone); its CANCEL and the ACK of a failure
        copy them, requests in the dialog use the dialog's route set.
    """

    table = OUTBOUND
    role = "callee"

    def __init__(self, leg_id: str, ua: Any, call: Any, registry: Any, target: Any,
                 request_uri: Any, from_: str, to: str, host: str = "pbxd", *,
                 route: tuple[str, ...] = ()) -> None:
        super().__init__(leg_id, ua, call, registry)
        self.target = target
        self.request_uri = request_uri
        self.route = route
        self.call_id = new_call_id(host)
        self.local_tag = new_tag()
        self.from_ = f"{from_};tag={self.local_tag}"
        self.to = to
        self.invite: Request | None = None
        self.txn: Any = None
        self.provisional_seen = False
        self.cancel_pending = False
        self.final_status: int | None = None
        self.final_reason = ""
        self._ack: Request | None = None

    # -- INVITE -------------------------------------------------------------

    def start(self, body: bytes, content_type: str = "application/sdp",
              headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Resolve the target and send the INVITE."""
        self.fire("invite")
        transport = self.target[0]
        if not isinstance(transport, str):  # a transport already (UserAgent.resolve's answer)
            self._send_invite(transport, body, content_type, headers)
            return
        self.ua.resolve(self.target).addCallback(self._send_invite, body, content_type, headers)

    def _send_invite(self, transport: Any, body: bytes, content_type: str,
                     headers: tuple[tuple[str, str], ...]) -> None:
        if transport is None:
            self._failed(503, "Unreachable")
            return
        if self.state is not LegState.PROCEEDING:  # cancelled while connecting
            if self.can("reject"):
                self._failed(487, "Request Terminated")
            return
        self.transport, self.address = transport, self.target[1]
        invite = Request("INVITE", self.request_uri.copy())
        for hop in self.route:
            invite.add("Route", hop)
        invite.add("From", self.from_)
        invite.add("To", self.to)
        invite.add("Call-ID", self.call_id)
        invite.add("CSeq", "1 INVITE")
        invite.add("Contact", self.ua.contact(transport, self.address))
        invite.add("Allow", ALLOW)
        for name, value in headers:
            invite.add(name, value)
        if body:
            invite.add("Content-Type", content_type)
            invite.body = body
        self.invite = invite
        self.txn = self.ua.send_request(invite, transport, self.address,
                                        on_response=self._response, on_timeout=self._timeout)

    def _response(self, response: Any) -> None:
        status = response.status
        if status < 200:
            self.provisional_seen = True
            if self.cancel_pending:
                self.cancel_pending = False
                self._send_cancel()
            tagged = status > 100 and response.to.tag
            if not self.can("ring" if tagged else "trying"):
                return
            self.fire("ring" if tagged else "trying")
            if self.state is not LegState.TERMINATING and status > 100:
                self.call.leg_progress(self, response)
        elif status < 300:
            self._answered(response)
        else:
            self._failed(status, response.reason, response)

    def _answered(self, response: Any) -> None:
        if self.dialog is not None:
            if response.to.tag == self.dialog.remote_tag and self._ack is not None:
                self.ua.send_ack(self._ack, self.transport, self.address)  # 2xx retransmitted
            else:
                self._ack_and_bye(response)  # a second dialog from a forking downstream
            return
        invite, address, seq = self._sent()
        self.dialog = Dialog.as_uac(invite, response, self.transport, address)  # our Contact too
        self.registry.bind(self.dialog.id, self)
        self._ack = self.dialog.make_request("ACK", cseq=seq)
        self.ua.send_ack(self._ack, self.transport, self.address)
        self.final_status = response.status
        if self.state is LegState.TERMINATING:  # 2xx crossed our CANCEL
            self.fire("answer")
            self._send_bye()
            return
        self.fire("answer")
        self.call.leg_answered(self, response)

    def _ack_and_bye(self, response: Any) -> None:
        invite, address, seq = self._sent()
        other = Dialog.as_uac(invite, response, self.transport, address)
        ack = other.make_request("ACK", cseq=seq)
        self.ua.send_ack(ack, self.transport, self.address)
        self.ua.send_request(other.make_request("BYE"), self.transport, self.address,
                             on_response=None, on_timeout=None)

    def _sent(self) -> tuple[Request, tuple[str, int], int]:
        """The INVITE we sent, where it went and its CSeq number.

        A 2xx only comes through the transaction :meth:`_send_invite` created,
        so all three are set; anything else is a bug, reported as such.
        """
        invite, address = self.invite, self.address
        cseq = invite.cseq if invite is not None else None
        if invite is None or address is None or cseq is None:
            raise RuntimeError(f"leg {self.id}: a 2xx for an INVITE that was not sent")
        return invite, address, cseq.seq

    def _failed(self, status: int, reason: str, response: Any = None) -> None:
        if not self.can("reject"):
            return
        cancelled = self.state is LegState.TERMINATING
        self.final_status, self.final_reason = status, reason
        self.fire("reject")
        if not cancelled:
            self.call.leg_failed(self, status, reason, response)

    def _timeout(self) -> None:
        failure = getattr(self.txn, "failure", None)
        if failure == "transport":
            self._failed(503, "Service Unavailable")
        else:
            self._failed(408, "Request Timeout")

    def detach(self) -> None:
        """As :meth:`Leg.detach`; the INVITE transaction is let go of too (it holds this
        leg through its callbacks, so the two would be a cycle only the collector frees)."""
        super().detach()
        self.txn = None

    # -- ending -------------------------------------------------------------

    def cancel(self) -> None:
        """Stop ringing: CANCEL (held back until a provisional arrives, RFC 3261 §9.1)."""
        if not self.can("cancel"):
            return
        self.fire("cancel")
        if self.state is LegState.TERMINATED or self.txn is None:
            return
        if self.provisional_seen:
            self._send_cancel()
        else:
            self.cancel_pending = True

    def _send_cancel(self) -> None:
        cancel = make_cancel(self.invite)
        self.ua.transactions.client_transaction(cancel, self.transport, self.address,
                                                on_response=None, on_timeout=None)

    def hangup(self, cause: str = "normal", status: int = 0) -> None:
        """End the leg: CANCEL while ringing, BYE once confirmed."""
        self.end_cause = self.end_cause or cause
        if self.state in (LegState.INIT, LegState.PROCEEDING, LegState.EARLY):
            self.cancel()
        elif self.state is LegState.CONFIRMED:
            self.fire("hangup")
            self._send_bye()
