"""One ``dial``: ring targets in parallel, the first to answer wins (layer 4).

A :class:`Dialer` forks an INVITE to every target (the B-leg forking of
:mod:`pbxd.calls.call`, on its own anchored media), reports progress to its
owner (a dialplan session), cancels the other forks when one answers, and
maps failures to Asterisk's dial statuses:

==============  =============================================================
BUSY            every target answered 486, 600 or 603
NOANSWER        the timeout, or a target that rang (or said 480) and refused
CHANUNAVAIL     nothing reachable: no binding, transport errors, 404, 5xx ...
CANCEL          the caller hung up while it rang (:meth:`Dialer.cancel`)
==============  =============================================================

After the answer the winner's in-dialog events (BYE, a vanished leg, a
re-INVITE/UPDATE/INFO) go to the owner: ``bridge_ended(dialer, cause)`` and
``b_request(dialer, leg, request, txn)``. Owner events while ringing:
``dial_progress(dialer, early_media)``, ``dial_answered(dialer)``,
``dial_failed(dialer, status)``; and ``leg_added()`` / ``leg_terminated(leg)``
to count live legs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.logger import Logger

from pbxd import debuglog
from pbxd.calls.call import CallDeps, Target
from pbxd.calls.cdr import BUSY_STATUSES
from pbxd.calls.leg import Leg, LegState
from pbxd.calls.media import LegSdp, SDPParseError, parse_sdp
from pbxd.calls.outbound import OutboundLeg
from pbxd.sdp.negotiate import audio_stream

__all__ = ["Dialer", "dial_status"]

_RINGING = ("INIT", "PROCEEDING", "EARLY")


def dial_status(failures: Sequence[tuple[int, bool]]) -> str:
    """The status of a dial whose forks all failed: ``(SIP status, rang)`` per fork."""
    kinds = []
    for status, rang in failures:
        if status in BUSY_STATUSES:
            kinds.append("BUSY")
        elif rang or status == 480:
            kinds.append("NOANSWER")
        else:
            kinds.append("CHANUNAVAIL")
    if kinds and all(k == "BUSY" for k in kinds):
        return "BUSY"
    for kind in ("NOANSWER", "BUSY"):
        if kind in kinds:
            return kind
    return "CHANUNAVAIL"


class Dialer:
    """Rings ``targets`` with an offer made from ``offer`` (a SessionDescription)."""

    log = Logger()

    def __init__(self, owner: Any, deps: CallDeps, name: str, targets: list[Target],
                 offer: Any, from_: str, timeout: float) -> None:
        self.owner = owner
        self.deps = deps
        self.name = name
        self.targets = targets
        self.offer = offer
        self.from_ = from_
        self.timeout = timeout
        self.forks: list[OutboundLeg] = []
        self.winner: OutboundLeg | None = None
        self.status: str | None = None  # the outcome once ringing is over
        self.media: Any = None
        self.sdp: Any = None  # LegSdp once started
        self.rang: set[str] = set()
        self.failures: list[tuple[int, bool]] = []
        self.counters: dict[str, Any] = {}
        self._timer: Any = None

    def start(self, media: Any = None, sdp: LegSdp | None = None,
              body: bytes | None = None) -> bool:
        """Send the INVITEs with ``offer`` rewritten for new media (or with ``body`` on the
        given ``media``/``sdp``); False (status CHANUNAVAIL) if no ports are left."""
        deps = self.deps
        if media is None:
            try:
                media = deps.new_media(self.name)
            except Exception:
                self.log.failure("dial {name}: no RTP ports", name=self.name)
                self.status = "CHANUNAVAIL"
                return False
            sdp = LegSdp(media, deps.sdp_address(*self.targets[0].destination))
        self.media, self.sdp = media, sdp
        assert sdp is not None
        if body is None:
            body = sdp.outgoing(self.offer)
        for n, target in enumerate(self.targets, start=1):
            fork = OutboundLeg(f"{self.name}{n}", deps.ua, self, deps.registry,
                               target.destination, target.uri, self.from_,
                               f"<sip:{target.extension}@{deps.realm}>", deps.host,
                               route=target.route)
            fork.on_terminated = self.owner.leg_terminated
            self.owner.leg_added()
            self.forks.append(fork)
        if self.timeout > 0:
            self._timer = deps.clock.callLater(self.timeout, self._no_answer)
        for fork in list(self.forks):
            if self.status is None:
                fork.start(body)
        return True

    @property
    def ringing(self) -> bool:
        return self.status is None

    # -- events from the forks -------------------------------------------------

    def leg_progress(self, fork: OutboundLeg, response: Any) -> None:
        """A 18x: ringing; with SDP the owner bridges its early media."""
        if not self.ringing:
            return
        self.rang.add(fork.id)
        try:
            sdp = parse_sdp(response)
        except SDPParseError:
            sdp = None
        early = sdp is not None and audio_stream(sdp) is not None
        if early:
            self.sdp.received(sdp, fork.address[0] if fork.address else None)
        self.owner.dial_progress(self, early)

    def leg_answered(self, fork: OutboundLeg, response: Any) -> None:
        """The first 2xx with usable SDP wins; the other forks are cancelled."""
        if not self.ringing:
            fork.hangup("answered elsewhere")
            return
        try:
            sdp = parse_sdp(response)
        except SDPParseError:
            sdp = None
        if sdp is None or audio_stream(sdp) is None:
            fork.hangup("no sdp in answer")
            self.failures.append((488, False))
            self._maybe_all_failed()
            return
        self.winner = fork
        self.status = "ANSWER"
        self._stop_timer()
        for other in self.forks:
            if other is not fork:
                other.hangup("answered elsewhere")
        self.sdp.received(sdp, fork.address[0] if fork.address else None)
        self.media.allow_latch()
        if debuglog.ENABLED:
            self.log.debug("dial {name}: answered by {leg}", name=self.name, leg=fork.id)
        self.owner.dial_answered(self)

    def leg_failed(self, fork: OutboundLeg, status: int, reason: str, response: Any) -> None:
        """A fork's final failure (or timeout)."""
        self.failures.append((status, fork.id in self.rang))
        self.log.info("dial {name}: {leg} failed {status} {reason}", name=self.name,
                      leg=fork.id, status=status, reason=reason)
        self._maybe_all_failed()

    def _maybe_all_failed(self) -> None:
        if not self.ringing or any(f.state.value in _RINGING for f in self.forks):
            return
        self._finish(dial_status(self.failures))

    def _no_answer(self) -> None:
        self._timer = None
        if self.ringing:
            self._finish("NOANSWER")

    def leg_bye(self, leg: Leg) -> None:
        """The bridged callee hung up."""
        if leg is self.winner:
            self.owner.bridge_ended(self, "normal")

    def leg_gone(self, leg: Leg, cause: str) -> None:
        """The bridged callee stopped answering."""
        if leg is self.winner:
            self.owner.bridge_ended(self, cause)

    def leg_request(self, leg: Leg, request: Any, txn: Any) -> None:
        """re-INVITE/UPDATE/INFO from the bridged callee: the owner relays it."""
        if leg is self.winner and self.status == "ANSWER":
            self.owner.b_request(self, leg, request, txn)
        else:
            leg.answer_request(txn, 481)

    def leg_cancelled(self, leg: Leg) -> None:  # pragma: no cover - outbound legs never get it
        """Inbound legs only."""

    # -- ending ----------------------------------------------------------------

    def cancel(self) -> None:
        """The caller went away while ringing: CANCEL every fork (status CANCEL)."""
        if self.ringing:
            self._finish("CANCEL")

    def _finish(self, status: str) -> None:
        self.status = status
        self._stop_timer()
        for fork in self.forks:
            fork.hangup("dial ended")
        self.release_media()
        self.log.info("dial {name}: {status}", name=self.name, status=status)
        self.owner.dial_failed(self, status)

    def close(self, cause: str = "normal") -> None:
        """End the dial whatever its state: CANCEL or BYE to every fork, media released."""
        self._stop_timer()
        if self.status is None:
            self.status = "CANCEL"
        for fork in self.forks:
            if fork.state is not LegState.TERMINATED:
                fork.hangup(cause)
        self.release_media()

    def release_media(self) -> None:
        """Close the B-side ports (keeping their counters for the CDR)."""
        if self.media is not None and not self.media.closed:
            self.counters = self.media.counters()
            self.media.close()

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
