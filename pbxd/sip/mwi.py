"""Message waiting indication, RFC 3842 over RFC 6665 subscriptions (layer 3).

- :func:`message_summary` is the ``application/simple-message-summary`` body
  (pure).
- :class:`MWIService` answers ``SUBSCRIBE`` with ``Event: message-summary``
  (the controller authenticated it; an extension may only watch its own
  box), keeps each subscription as a dialog with an expiry timer, and sends
  a ``NOTIFY`` at once, after every refresh, on every change of the box's
  counts (:meth:`MWIService.counts_changed`) and a final one when the
  subscription ends (``Expires: 0``, timeout). A NOTIFY answered 481 or
  not answered at all ends its subscription.
- With ``unsolicited`` on, phones registered for a box that has no
  subscription get an out-of-dialog NOTIFY (the Asterisk behaviour many
  phones expect) on every change and when they register.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from pbxd.sip.dialog import Dialog, DialogId, dialog_id_of, new_call_id, new_tag
from pbxd.sip.message import Request, make_response
from pbxd.sip.uri import URI

__all__ = ["EVENT", "CONTENT_TYPE", "MWIService", "Subscription", "message_summary"]

EVENT = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"
Counts = Callable[[str], Deferred]
"""box -> Deferred[(new, old)]."""


def message_summary(account: str, new: int, old: int) -> bytes:
    """The RFC 3842 body: ``Messages-Waiting`` and ``Voice-Message: new/old (0/0)``."""
    return (f"Messages-Waiting: {'yes' if new > 0 else 'no'}\r\n"
            f"Message-Account: {account}\r\n"
            f"Voice-Message: {new}/{old} (0/0)\r\n").encode()


def event_package(request: Any) -> str:
    """The event package a request names (``Event: message-summary;id=1`` -> message-summary)."""
    return (request.get("Event") or "").split(";", 1)[0].strip().lower()


@dataclass(eq=False)
class Subscription:
    """One watcher of one box."""

    box: str
    dialog: Dialog
    expires_at: float
    timer: Any = field(default=None, repr=False)
    notifies: int = 0


class MWIService:
    """See the module docstring.

    :param ua: the :class:`~pbxd.sip.ua.UserAgent` NOTIFYs are sent through.
    :param clock: IReactorTime for expiry.
    :param counts: ``box -> Deferred[(new, old)]`` (the voicemail service).
    :param realm: our domain, for ``Message-Account`` and From of unsolicited NOTIFYs.
    :param location: the LocationService (bindings for unsolicited NOTIFY), or None.
    :param unsolicited: send unsolicited NOTIFYs to registered phones.
    """

    log = Logger()

    def __init__(self, ua: Any, clock: Any, counts: Counts, realm: str, *,
                 location: Any = None, unsolicited: bool = False, min_expires: int = 60,
                 max_expires: int = 3600, default_expires: int = 3600) -> None:
        self.ua, self.clock, self.counts, self.realm = ua, clock, counts, realm
        self.location = location
        self.unsolicited = unsolicited
        self.min_expires, self.max_expires = min_expires, max_expires
        self.default_expires = default_expires
        self.subscriptions: dict[DialogId, Subscription] = {}
        self.unsolicited_sent = 0
        if location is not None and unsolicited:
            location.subscribe(self._binding_event)

    def account(self, box: str) -> str:
        return f"sip:{box}@{self.realm}"

    def of_box(self, box: str) -> list[Subscription]:
        return [s for s in self.subscriptions.values() if s.box == box]

    # -- SUBSCRIBE ------------------------------------------------------------

    def handles(self, request: Any) -> bool:
        """True for a request this service answers (SUBSCRIBE to message-summary, or any
        SUBSCRIBE inside one of its dialogs)."""
        if request.method != "SUBSCRIBE":
            return False
        return event_package(request) == EVENT or dialog_id_of(request) in self.subscriptions

    def requestReceived(self, request: Any, txn: Any) -> None:  # noqa: N802 (handler API)
        """A SUBSCRIBE from the controller (authenticated when out of dialog)."""
        if event_package(request) != EVENT:
            self._respond(txn, request, 489, headers=[("Allow-Events", EVENT)])
            return
        expires = request.expires
        if expires is None:
            expires = self.default_expires
        if 0 < expires < self.min_expires:
            self._respond(txn, request, 423, headers=[("Min-Expires", str(self.min_expires))])
            return
        expires = min(expires, self.max_expires)
        if request.to.tag:
            self._refresh(request, txn, expires)
        else:
            self._new(request, txn, expires)

    def _new(self, request: Any, txn: Any, expires: int) -> None:
        box = request.uri.user or ""
        extension = getattr(txn, "extension", None)
        number = getattr(extension, "number", None)
        if not box or (number is not None and number != box):
            self.log.info("SUBSCRIBE to {box}'s messages by {who}: refused", box=box, who=number)
            self._respond(txn, request, 403)
            return
        tag = new_tag()
        dialog = Dialog.as_uas(request, tag, self.ua.contact(txn.transport, txn.source),
                               txn.transport, txn.source)
        self._respond(txn, request, 200, tag=tag, dialog=dialog,
                      headers=[("Expires", str(expires))])
        sub = Subscription(box, dialog, self.clock.seconds() + expires)
        if expires == 0:  # a one-time fetch of the state (RFC 6665 4.4.3)
            self._notify(sub, "terminated;reason=timeout")
            return
        self.subscriptions[dialog.id] = sub
        self._arm(sub, expires)
        self.log.info("{box}: message-summary subscription for {expires} s", box=box,
                      expires=expires)
        self._notify(sub)

    def _refresh(self, request: Any, txn: Any, expires: int) -> None:
        sub = self.subscriptions.get(dialog_id_of(request))
        if sub is None:
            self._respond(txn, request, 481)
            return
        if not sub.dialog.accept_remote_cseq(request):
            self._respond(txn, request, 500, reason="CSeq out of order")
            return
        sub.dialog.update_target(request)
        self._respond(txn, request, 200, dialog=sub.dialog,
                      headers=[("Expires", str(expires))])
        if expires == 0:
            self._end(sub, "timeout")
            return
        sub.expires_at = self.clock.seconds() + expires
        self._arm(sub, expires)
        self._notify(sub)

    def _respond(self, txn: Any, request: Any, status: int, *, tag: str | None = None,
                 dialog: Dialog | None = None, headers: Sequence[tuple[str, str]] = (),
                 reason: str | None = None) -> None:
        response = make_response(request, status, reason,
                                 to_tag=tag or (None if request.to.tag else new_tag()))
        if dialog is not None:
            response.add("Contact", dialog.local_contact)
        for name, value in headers:
            response.add(name, value)
        self.ua.respond(txn, response)

    def _arm(self, sub: Subscription, expires: float) -> None:
        if sub.timer is not None and sub.timer.active():
            sub.timer.cancel()
        sub.timer = self.clock.callLater(expires, self._end, sub, "timeout")

    def _end(self, sub: Subscription, reason: str, notify: bool = True) -> None:
        """Forget ``sub`` (and tell the watcher, unless it is gone)."""
        if self.subscriptions.pop(sub.dialog.id, None) is None:
            return
        if sub.timer is not None and sub.timer.active():
            sub.timer.cancel()
        sub.timer = None
        self.log.info("{box}: subscription ended ({reason})", box=sub.box, reason=reason)
        if notify:
            self._notify(sub, f"terminated;reason={reason}")

    def stop(self) -> None:
        """End every subscription (shutdown): final NOTIFYs go out."""
        for sub in list(self.subscriptions.values()):
            self._end(sub, "noresource")

    # -- NOTIFY -----------------------------------------------------------------

    def _notify(self, sub: Subscription, state: str | None = None) -> Deferred:
        def send(counts: tuple[int, int]) -> None:
            if state is None and sub.dialog.id not in self.subscriptions:
                return
            left = max(0, int(sub.expires_at - self.clock.seconds() + 0.5))
            header = state or f"active;expires={left}"
            body = message_summary(self.account(sub.box), *counts)
            request = sub.dialog.make_request("NOTIFY", body, CONTENT_TYPE, headers=(
                ("Event", EVENT), ("Subscription-State", header)))
            sub.notifies += 1
            self.ua.send_request(request, sub.dialog.transport, sub.dialog.address,
                                 on_response=lambda r: self._notify_answered(sub, r),
                                 on_timeout=lambda: self._notify_failed(sub, "timeout"))

        d = maybeDeferred(self.counts, sub.box).addCallback(send)
        d.addErrback(lambda f: self.log.failure("NOTIFY for {box}", f, box=sub.box))
        return d

    def _notify_answered(self, sub: Subscription, response: Any) -> None:
        if response.status in (481, 404, 410) or response.status >= 500:
            self._end(sub, "rejected", notify=False)

    def _notify_failed(self, sub: Subscription, why: str) -> None:
        self.log.info("{box}: NOTIFY not answered ({why}); subscription dropped", box=sub.box,
                      why=why)
        self._end(sub, why, notify=False)

    def counts_changed(self, box: str, new: int, old: int) -> None:
        """The voicemail service's listener: tell every watcher of ``box``."""
        subs = self.of_box(box)
        for sub in subs:
            self._notify(sub)
        if self.unsolicited and not subs and self.location is not None:
            for binding in self.location.lookup(box):
                self._unsolicited(box, binding, new, old)

    # -- unsolicited NOTIFY ------------------------------------------------------

    def _binding_event(self, event: str, binding: Any) -> None:
        if event != "added" or self.of_box(binding.aor):
            return
        d = maybeDeferred(self.counts, binding.aor)
        d.addCallback(lambda c: self._unsolicited(binding.aor, binding, *c))
        d.addErrback(lambda f: self.log.failure("unsolicited NOTIFY for {box}", f,
                                                box=binding.aor))

    def _unsolicited(self, box: str, binding: Any, new: int, old: int) -> None:
        account = self.account(box)
        request = Request("NOTIFY", binding.uri.copy() if isinstance(binding.uri, URI)
                          else URI.parse(str(binding.uri)))
        for hop in getattr(binding, "path", ()):
            request.add("Route", hop)
        request.add("From", f"<{account}>;tag={new_tag()}")
        request.add("To", f"<{account}>")
        request.add("Call-ID", new_call_id(self.realm))
        request.add("CSeq", f"{secrets.randbelow(2**16) + 1} NOTIFY")
        request.add("Event", EVENT)
        request.add("Subscription-State", "active")
        request.add("Content-Type", CONTENT_TYPE)
        request.body = message_summary(account, new, old)
        self.unsolicited_sent += 1
        self.ua.send_to(request, self.location.target(binding), on_response=None,
                        on_timeout=None)
