"""The call manager: the controller's IRequestHandler for calls (layer 4).

What it does with each request the SIP controller hands over:

- a new INVITE (authenticated by the controller: ``txn.extension``): the
  From user must be that extension (else 403). With a ``dialplan`` seam the
  call enters the dialplan in the extension's context (404 when no rule
  matches; see :mod:`pbxd.calls.sessions`). Without one the ``router`` seam maps
  (caller, dialled number) to target extensions (None: 404); the targets'
  reachable bindings are looked up (none: 480) and a :class:`Call` forks to
  all of them;
- CANCEL: matched to its INVITE server transaction (RFC 3261 §9.2), 200 to
  the CANCEL, 487 to the INVITE, CANCEL to every fork (481 when unmatched);
- an in-dialog request goes to its leg by dialog id (481 when unknown);
- ACK for a 2xx goes to its leg.

A periodic check ends answered calls whose media stopped for
``rtp.timeout`` seconds (cause 'media timeout'). :meth:`shutdown` ends
every call (BYE to both sides) and fires once every CDR is written.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pbxd.calls.call import Call, CallDeps, Target
from pbxd.calls.cdr import CDRWriter, build_cdr
from pbxd.calls.sessions import SessionStarter
from pbxd.interfaces import IRequestHandler
from pbxd.sip.dialog import dialog_id_of, new_tag
from pbxd.sip.message import make_response

Router = Callable[[str, str], Any]
"""(caller extension, dialled number) -> list of extension numbers, None (404), or a Deferred."""


class ExtensionRouter:
    """The minimal dialplan: a dialled number that is an extension rings that extension."""

    def __init__(self, extensions: Any) -> None:
        self.extensions = extensions

    def __call__(self, caller: str, dialled: str) -> Deferred:
        d = self.extensions.getExtension(dialled)
        d.addCallback(lambda ext: [dialled] if ext is not None and dialled != caller else
                      ([] if ext is not None else None))
        return d


@implementer(IRequestHandler)
class CallManager(Service):
    """Creates calls, routes in-dialog requests to their legs, writes CDRs."""

    log = Logger()

    def __init__(self, deps: CallDeps, transactions: Any, location: Any, router: Router | None,
                 cdr_store: Any = None, *, rtp_timeout: float = 30.0,
                 check_interval: float = 5.0, dialplan: Any = None,
                 services: Any = None, prompt_dirs: Any = ()) -> None:
        self.deps = deps
        deps.registry = self
        self.transactions = transactions
        self.location = location
        self.router = router
        self.cdrs = CDRWriter(cdr_store, deps.clock)
        self.rtp_timeout = rtp_timeout
        self.check_interval = check_interval
        self.calls: dict[str, Any] = {}  # Call (router) or Session (dialplan)
        self.sessions = None if dialplan is None else SessionStarter(self, dialplan, services,
                                                                     prompt_dirs)
        self._dialogs: dict[tuple[str, str, str], Any] = {}
        self._invites: dict[int, Any] = {}
        self._ids = itertools.count(1)
        self._prefix = format(int(deps.clock.seconds()) % 0x10000, "04x")
        self._checker: LoopingCall | None = None
        self.stopping = False

    # -- service ------------------------------------------------------------

    def startService(self) -> None:
        """Start the media-timeout check."""
        super().startService()
        if self.rtp_timeout > 0 and self._checker is None:
            self._checker = LoopingCall(self.check_media)
            self._checker.clock = self.deps.clock
            self._checker.start(self.check_interval, now=False)

    def stopService(self) -> Deferred:
        """End every call and wait for the CDRs."""
        super().stopService()
        return self.shutdown()

    def shutdown(self) -> Deferred:
        """BYE (or 503/CANCEL) to every leg of every call; fires when all CDRs are written."""
        self.stopping = True
        if self._checker is not None and self._checker.running:
            self._checker.stop()
        self._checker = None
        for call in list(self.calls.values()):
            call.end("shutdown", "pbx", "FAILED", a_status=503)
        return self.cdrs.flush()

    # -- the dialog registry the legs use -----------------------------------

    def bind(self, dialog_id: tuple[str, str, str], leg: Any) -> None:
        """Route requests of ``dialog_id`` to ``leg``."""
        self._dialogs[dialog_id] = leg
        txn = getattr(leg, "txn", None)
        if getattr(leg, "role", "") == "caller" and txn is not None:
            self._invites[id(txn)] = leg

    def unbind(self, leg: Any) -> None:
        """Forget ``leg``'s dialog."""
        dialog = getattr(leg, "dialog", None)
        if dialog is not None and self._dialogs.get(dialog.id) is leg:
            del self._dialogs[dialog.id]
        txn = getattr(leg, "txn", None)
        if txn is not None and self._invites.get(id(txn)) is leg:
            del self._invites[id(txn)]

    # -- IRequestHandler ----------------------------------------------------

    def requestReceived(self, request: Any, txn: Any) -> None:  # noqa: N802 (interface)
        """A request from the controller (validated, authenticated if out of dialog)."""
        method = request.method
        if method == "CANCEL":
            self._cancel(request, txn)
            return
        if request.to is not None and request.to.tag:
            leg = self._dialogs.get(dialog_id_of(request))
            if leg is None:
                self.deps.ua.respond(txn, make_response(request, 481))
            else:
                leg.request_received(request, txn)
            return
        if method != "INVITE":
            status = 481 if method in ("BYE", "INFO", "UPDATE", "PRACK") else 405
            self.deps.ua.respond(txn, make_response(request, status, to_tag=_tag()))
            return
        if self.stopping:
            self.deps.ua.respond(txn, make_response(request, 503, to_tag=_tag()))
            return
        if self.sessions is not None:  # the dialplan: synchronous, no Deferred needed
            try:
                self._new_session(request, txn)
            except Exception:
                self._internal_error(Failure(), request, txn)
            return
        d = maybeDeferred(self._new_call, request, txn)
        d.addErrback(self._internal_error, request, txn)

    def ackReceived(self, request: Any, transport: Any, source: Any) -> None:  # noqa: N802
        """An ACK for a 2xx: the leg stops re-sending it."""
        leg = self._dialogs.get(dialog_id_of(request))
        if leg is not None:
            leg.ack_received(request)
        else:
            self.log.debug("ACK for unknown dialog {call_id}", call_id=request.call_id)

    def connectionLost(self, transport: Any) -> None:  # noqa: N802 (controller hook)
        """A TCP/TLS connection closed: confirmed legs using it end their calls."""
        for leg in list(self._dialogs.values()):
            dialog = leg.dialog
            if dialog is not None and dialog.transport is transport:
                leg.transport_lost()

    # -- new calls ----------------------------------------------------------

    async def _route(self, request: Any, txn: Any) -> tuple[str, str, str | None, list] | None:
        """(caller, dialled, caller name, targets) or None after answering an error."""
        ua = self.deps.ua
        extension = getattr(txn, "extension", None)
        from_uri = request.from_.uri
        caller = getattr(extension, "number", None) or from_uri.user or ""
        if extension is not None and from_uri.user != caller:
            ua.respond(txn, make_response(request, 403, to_tag=_tag()))
            return None
        dialled = request.uri.user or ""
        assert self.router is not None, "no router and no dialplan"
        numbers = await maybeDeferred(self.router, caller, dialled)
        if numbers is None:
            self.log.info("{caller} dialled {dialled}: no such number", caller=caller,
                          dialled=dialled)
            ua.respond(txn, make_response(request, 404, to_tag=_tag()))
            return None
        targets = []
        for number in numbers:
            for binding in self.location.lookup(number):
                destination = self.location.target(binding)
                targets.append(Target(destination, binding.uri, number, binding.path))
        if not targets:
            self.log.info("{caller} dialled {dialled}: not reachable", caller=caller,
                          dialled=dialled)
            ua.respond(txn, make_response(request, 480, to_tag=_tag()))
            return None
        name = getattr(extension, "name", None) or request.from_.display
        return caller, dialled, name, targets

    def _new_session(self, request: Any, txn: Any) -> None:
        """Enter the dialplan in the caller's context (404 when no rule matches)."""
        ua, sessions = self.deps.ua, self.sessions
        assert sessions is not None
        extension = getattr(txn, "extension", None)
        from_uri = request.from_.uri
        caller = getattr(extension, "number", None) or from_uri.user or ""
        if extension is not None and from_uri.user != caller:
            ua.respond(txn, make_response(request, 403, to_tag=_tag()))
            return
        dialled = request.uri.user or ""
        context = getattr(extension, "context", None) or "default"
        if not sessions.dialplan.matches(context, dialled):
            self.log.info("{caller} dialled {dialled}: no rule in {context}", caller=caller,
                          dialled=dialled, context=context)
            ua.respond(txn, make_response(request, 404, to_tag=_tag()))
            return
        name = getattr(extension, "name", None) or request.from_.display
        sessions.start(self.new_call_id(), txn, caller, dialled, name, context)

    def new_call_id(self) -> str:
        """A fresh PBX call id (``${UNIQUEID}``)."""
        return f"{self._prefix}{next(self._ids):05d}"

    def originate(self, ext_a: str, ext_b: str, *, timeout: float = 30.0,
                  caller_id: str | None = None) -> Deferred:
        """Ring ``ext_a``; when it answers dial ``ext_b`` and bridge (Asterisk's Originate).

        Fires with the call id once A is being rung; fails with LookupError when A is
        not reachable or no dialplan is configured."""
        if self.sessions is None:
            from twisted.internet.defer import fail

            return fail(LookupError("originate needs the dialplan"))
        return self.sessions.originate(ext_a, ext_b, timeout=timeout, caller_id=caller_id)

    def _new_call(self, request: Any, txn: Any) -> Deferred:
        if self.sessions is not None:
            return maybeDeferred(self._new_session, request, txn)

        async def run() -> None:
            routed = await self._route(request, txn)
            if routed is None or txn.done or txn.last_response is not None and \
                    txn.last_response.status >= 200:
                return
            caller, dialled, name, targets = routed
            call_id = self.new_call_id()
            call = Call(call_id, self.deps, txn, caller, dialled, name, self.call_ended)
            call.on_all_legs_gone = self.call_gone
            self.calls[call_id] = call
            call.start(targets)

        return Deferred.fromCoroutine(run())

    def call_ended(self, call: Any) -> None:
        """A call (or session) ended: write its CDR."""
        self.cdrs.write(build_cdr(call))

    def call_gone(self, call: Any) -> None:
        """Every leg of an ended call is gone: forget it."""
        if call.state.value == "ENDED":
            self.calls.pop(call.id, None)

    def _cancel(self, request: Any, txn: Any) -> None:
        ua = self.deps.ua
        invite_txn = self.transactions.find_server_transaction_for_cancel(request)
        leg = self._invites.get(id(invite_txn)) if invite_txn is not None else None
        if invite_txn is None:
            ua.respond(txn, make_response(request, 481))
            return
        ua.respond(txn, make_response(request, 200))
        if leg is not None:
            leg.cancel_received()
        elif invite_txn.last_response is None or invite_txn.last_response.status < 200:
            # still being authenticated or routed: the call will not start
            ua.respond(invite_txn, make_response(invite_txn.request, 487, to_tag=_tag()))

    def _internal_error(self, failure: Any, request: Any, txn: Any) -> None:
        self.log.failure("INVITE {call_id} failed", failure, call_id=request.call_id)
        if txn.last_response is None or txn.last_response.status < 200:
            self.deps.ua.respond(txn, make_response(request, 500, to_tag=_tag()))

    # -- media timeout and the API ------------------------------------------

    def check_media(self) -> None:
        """End answered calls that received no RTP for ``rtp_timeout`` seconds."""
        now = self.deps.clock.seconds()
        for call in list(self.calls.values()):
            silence = call.silence(now)
            if silence is not None and silence >= self.rtp_timeout:
                self.log.info("call {call}: no media for {secs:.0f}s", call=call.id, secs=silence)
                call.end("media timeout", "pbx")

    def active_calls(self) -> list[dict[str, Any]]:
        """Calls not yet ended: legs, state, duration, codecs, media counters."""
        now = self.deps.clock.seconds()
        return [c.info(now) for c in self.calls.values() if c.state.value != "ENDED"]

    def hangup(self, call_id: str, cause: str = "admin hangup") -> bool:
        """End one call from the PBX side (the admin API); False if unknown."""
        call = self.calls.get(call_id)
        if call is None or call.state.value == "ENDED":
            return False
        call.end(cause, "pbx", "FAILED")
        return True


def _tag() -> str:
    return new_tag()
