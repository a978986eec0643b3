"""Starting dialplan calls and originated calls for the CallManager (layer 4).

The manager hands a new INVITE here when it has a dialplan (the composition
root gives it a :class:`DialplanSeam`: ``matches(context, number) -> bool``
and ``run(call_context) -> Deferred``; ``pbxd.calls`` never imports
``pbxd.dialplan``). :class:`SessionStarter` makes the
:class:`~pbxd.calls.session.Session` and its
:class:`~pbxd.calls.context.CallContext`, resolves dial targets, and
originates calls for the admin API (ring A, then dial B and bridge).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from pbxd import debuglog
from pbxd.calls.call import Target
from pbxd.calls.context import CallContext
from pbxd.calls.dialer import Dialer
from pbxd.calls.media import LegSdp
from pbxd.calls.session import Session
from pbxd.sip.uri import URI

__all__ = ["DialplanSeam", "SessionStarter"]


class DialplanSeam(Protocol):
    """What the calls layer needs of the dialplan (filled in by the composition root)."""

    def matches(self, context: str, number: str) -> bool:
        """True when a rule of ``context`` (or its includes) matches ``number``."""

    def run(self, call: Any) -> Deferred[Any]:
        """Run an ICallContext through the dialplan; never fails."""


class SessionStarter:
    """Builds dialplan sessions for a :class:`~pbxd.calls.manager.CallManager`."""

    log = Logger()

    def __init__(self, manager: Any, dialplan: DialplanSeam,
                 services: Mapping[Any, Any] | None = None,
                 prompt_dirs: Sequence[str] = ()) -> None:
        self.manager = manager
        self.dialplan = dialplan
        self.services: dict[Any, Any] = dict(services or {})
        self.prompt_dirs = tuple(prompt_dirs)

    # -- targets ---------------------------------------------------------------

    def resolve(self, targets: Sequence[str]) -> list[Target]:
        """Forks for dial targets: each binding of an extension number, or a ``sip:`` URI."""
        location = self.manager.location
        out: list[Target] = []
        for target in targets:
            target = str(target).strip()
            if target.startswith(("sip:", "sips:")):
                try:
                    uri = URI.parse(target)
                except Exception:
                    self.log.info("dial target {target} is not a SIP URI", target=target)
                    continue
                default = 5061 if uri.scheme == "sips" else 5060
                name = uri.transport or ("TLS" if uri.scheme == "sips" else "UDP")
                out.append(Target((name, (uri.host, uri.port or default)), uri,
                                  uri.user or target))
                continue
            for binding in location.lookup(target):
                out.append(Target(location.target(binding), binding.uri, target, binding.path))
        return out

    # -- calls from phones -------------------------------------------------------

    def start(self, call_id: str, txn: Any, caller: str, dialled: str, name: str | None,
              context: str) -> Session | None:
        """Start the dialplan for an INVITE (already routed: a rule matches)."""
        manager = self.manager
        session = Session(call_id, manager.deps, caller, dialled, name, manager.call_ended)
        session.on_all_legs_gone = manager.call_gone
        manager.calls[call_id] = session
        if not session.attach_inbound(txn):
            return None
        if debuglog.ENABLED:  # the call's info line is the one at its end
            self.log.debug("call {call}: {caller} -> {dialled} enters the dialplan in {context}",
                           call=call_id, caller=caller, dialled=dialled, context=context)
        ctx = self.context_for(session, context)
        self.dialplan.run(ctx).addErrback(
            lambda f: self.log.failure("dialplan of {call} failed", f, call=call_id))
        return session

    def context_for(self, session: Session, context: str) -> CallContext:
        """The ICallContext of ``session``."""
        return CallContext(session, context=context, resolve=self.resolve,
                           services=self.services, prompt_dirs=self.prompt_dirs)

    # -- originate ---------------------------------------------------------------

    def originate(self, ext_a: str, ext_b: str, *, timeout: float = 30.0,
                  caller_id: str | None = None) -> Deferred[str]:
        """Ring ``ext_a``; when it answers, dial ``ext_b`` and bridge them.

        Fires with the call id at once when ``ext_a`` is being rung; fails with
        LookupError when ``ext_a`` has no reachable binding (or the PBX is stopping)."""
        manager = self.manager
        if manager.stopping:
            return fail(LookupError("the PBX is stopping"))
        targets = self.resolve([ext_a])
        if not targets:
            return fail(LookupError(f"extension {ext_a} is not reachable"))
        call_id = manager.new_call_id()
        session = Session(call_id, manager.deps, caller_id or ext_b, ext_b, None,
                          manager.call_ended)
        session.on_all_legs_gone = manager.call_gone
        try:
            media = manager.deps.new_media(f"{call_id}-a")
        except Exception as exc:
            return fail(LookupError(f"no RTP ports: {exc}"))
        a_sdp = LegSdp(media, manager.deps.sdp_address(*targets[0].destination))
        offer_body = a_sdp.offer()
        offer = a_sdp.last_sent
        ringer = _ARinger(self, session, ext_a, ext_b, a_sdp, offer, timeout)
        dialer = Dialer(ringer, manager.deps, f"{call_id}-a", targets, offer,
                        f'"{caller_id or ext_b}" <sip:{caller_id or ext_b}@{manager.deps.realm}>',
                        timeout)
        ringer.dialer = dialer
        manager.calls[call_id] = session
        ringer.ring(media, offer_body)
        self.log.info("call {call}: originate {a} -> {b}", call=call_id, a=ext_a, b=ext_b)
        return succeed(call_id)


class _ARinger:
    """The owner of the dial that rings A for an originated call."""

    def __init__(self, starter: SessionStarter, session: Session, ext_a: str, ext_b: str,
                 a_sdp: LegSdp, offer: Any, timeout: float) -> None:
        self.starter, self.session = starter, session
        self.ext_a, self.ext_b, self.a_sdp, self.offer = ext_a, ext_b, a_sdp, offer
        self.timeout = timeout
        self.dialer: Dialer | None = None
        session.destination = ext_b

    def ring(self, media: Any, body: bytes) -> None:
        """Send the INVITEs to A's bindings with our own offer on A's media."""
        dialer = self.dialer
        assert dialer is not None
        self.session.dialer = dialer  # an admin hangup while A rings cancels it
        dialer.start(media, self.a_sdp, body)
        self.session.forks.extend(dialer.forks)

    def leg_added(self) -> None:
        self.session.leg_added()

    def leg_terminated(self, leg: Any) -> None:
        self.session.leg_terminated(leg)

    def dial_progress(self, dialer: Dialer, early_media: bool) -> None:
        """A rings: nothing to do (A hears its own ringing)."""

    def dial_answered(self, dialer: Dialer) -> None:
        """A answered: it becomes the session's A side; then B is dialled."""
        session = self.session
        winner = dialer.winner
        assert winner is not None
        session.dialer = None
        session.forks.remove(winner)
        session.attach_answered(winner, self.a_sdp, self.offer)
        ctx = self.starter.context_for(session, "originate")

        def after(status: str) -> Any:
            session.log.info("call {call}: originate dial ended {status}", call=session.id,
                             status=status)
            return ctx.hangup("normal" if status == "ANSWER" else "unavailable")

        ctx.dial([self.ext_b], self.timeout).addCallback(after)

    def dial_failed(self, dialer: Dialer, status: str) -> None:
        """A did not answer: the originated call ends (no dialplan ran)."""
        self.session.end(f"originate {status.lower()}", "pbx", "NO ANSWER"
                         if status == "NOANSWER" else "FAILED")

    def bridge_ended(self, dialer: Dialer, cause: str) -> None:  # pragma: no cover
        """Not used: once answered, the session gets A's events."""

    def b_request(self, dialer: Dialer, leg: Any, request: Any, txn: Any) -> None:
        leg.answer_request(txn, 481)  # pragma: no cover
