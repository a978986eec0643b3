"""One B2BUA call: an A-leg, its forked B-legs, anchored media, teardown rules (layer 4).

The call reacts to its legs' call-control events (see :mod:`pbxd.calls.leg`):

- the INVITE is sent to every target at once (parallel fork); 18x go to the
  caller (with SDP: early media, relayed from the fork that sent it);
- the first 2xx wins: the other forks get CANCEL (and a late 2xx an ACK and
  a BYE); the caller gets 200 with our SDP;
- when every fork failed the caller gets the best final response (6xx first,
  then 486, then the lowest status); the no-answer timer gives 480;
- re-INVITE, UPDATE and INFO are relayed to the other leg, their answers back
  (491 on glare); an offer-less re-INVITE/UPDATE (session refresh) is answered
  here with the SDP the leg already has;
- whatever ends one leg (BYE, CANCEL, ACK timeout, BYE timeout, a closed
  connection, media timeout, shutdown) ends the call and every other leg, and
  the call is reported once to ``on_ended`` (which writes its CDR).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from pbxd.calls.cdr import disposition_for
from pbxd.calls.inbound import InboundLeg
from pbxd.calls.leg import IllegalTransition, Leg
from pbxd.calls.media import SDP, LegSdp, SDPParseError, parse_sdp
from pbxd.calls.outbound import OutboundLeg
from pbxd.calls.relaying import relay_request
from pbxd.rtp.relay import bridge
from pbxd.sdp.negotiate import audio_stream


class CallState(enum.StrEnum):
    """A call rings until answered, then ends exactly once."""

    RINGING = "RINGING"
    ANSWERED = "ANSWERED"
    ENDED = "ENDED"


CALL_TABLE = {
    (CallState.RINGING, "answer"): CallState.ANSWERED,
    (CallState.RINGING, "end"): CallState.ENDED,
    (CallState.ANSWERED, "end"): CallState.ENDED,
}


@dataclass
class CallDeps:
    """What a call needs from the manager (injected, so calls test on a fake clock)."""

    clock: Any
    ua: Any
    registry: Any  # bind(dialog_id, leg) / unbind(leg)
    new_media: Callable[[str], Any]  # name -> LegMedia (raises PortsExhausted)
    sdp_address: Callable[[Any, Any], str]  # (transport or name, address) -> our SDP address
    realm: str = "pbxd.local"
    no_answer_timeout: float = 30.0
    host: str = "pbxd"
    hold: Callable[[Any, Any], bool] | None = None  # (holder, other LegSdp) -> True: MOH took it
    recording: Any = None  # a pbxd.calls.recording.CallRecorder: records answered dials


@dataclass
class Target:
    """Where one fork goes: ``(transport or name, (host, port))`` and the Contact URI;
    ``route``: the binding's Path (RFC 3327), sent as Route headers of the INVITE."""

    destination: tuple[Any, tuple[str, int]]
    uri: Any
    extension: str
    route: tuple[str, ...] = ()


def best_status(statuses: list[int]) -> int:
    """The final response to give the caller when every fork failed (RFC 3261 §16.7, simplified)."""
    if not statuses:
        return 480
    six = [s for s in statuses if s >= 600]
    if six:
        return min(six)
    if 486 in statuses:
        return 486
    return min(statuses)


def _peer_ip(leg: Leg) -> str:
    """The IP the leg's signalling comes from (media is only latched from it).

    An inbound leg has it from its INVITE, a fork once it sent its own; a call
    event from a leg without one is a bug, reported as such.
    """
    if leg.address is None:
        raise RuntimeError(f"leg {leg.id}: no signalling address yet")
    return leg.address[0]


class Call:
    """One call between an extension and the bindings of its target(s)."""

    log = Logger()

    def __init__(self, call_id: str, deps: CallDeps, a_txn: Any, caller: str,
                 destination: str, caller_name: str | None = None,
                 on_ended: Callable[[Call], None] | None = None) -> None:
        self.id = call_id
        self.deps = deps
        self.caller = caller
        self.caller_name = caller_name
        self.destination = destination
        self.on_ended = on_ended
        self.state = CallState.RINGING
        self.started_at = deps.clock.seconds()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.disposition: str | None = None
        self.hangup_cause: str | None = None
        self.hangup_side: str | None = None
        self.a = InboundLeg(f"{call_id}-a", deps.ua, self, deps.registry, a_txn)
        self.forks: list[OutboundLeg] = []
        self.winner: OutboundLeg | None = None
        self.failures: list[tuple[int, str]] = []
        self.offer: Any = None
        self.a_sdp: LegSdp | None = None
        self.b_sdp: LegSdp | None = None
        self.codecs: list[str] = []
        self.media_counters: dict[str, Any] = {}
        self._timer: Any = None
        self._legs_left = 1
        self.a.on_terminated = self._leg_terminated
        self.on_all_legs_gone: Callable[[Call], None] | None = None

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.caller}->{self.destination} {self.state}>"

    def _fire(self, event: str) -> None:
        new = CALL_TABLE.get((self.state, event))
        if new is None:
            raise IllegalTransition(f"call {self.id}: {event} in {self.state}")
        self.state = new

    # -- start --------------------------------------------------------------

    def start(self, targets: list[Target]) -> None:
        """Check the caller's offer, anchor media and fork the INVITE to ``targets``."""
        deps, a = self.deps, self.a
        try:
            offer = parse_sdp(a.request)
        except SDPParseError as e:
            self.log.info("call {call}: bad SDP from caller: {why}", call=self.id, why=str(e))
            self.end("bad sdp", "caller", "FAILED", a_status=400)
            return
        if offer is None or audio_stream(offer) is None:
            self.end("no audio offer", "caller", "FAILED", a_status=488)
            return
        try:
            a_media = deps.new_media(f"{self.id}-a")
        except Exception:
            self.log.failure("call {call}: no RTP ports", call=self.id)
            self.end("no rtp ports", "pbx", "FAILED", a_status=503)
            return
        try:
            b_media = deps.new_media(f"{self.id}-b")
        except Exception:
            a_media.close()
            self.log.failure("call {call}: no RTP ports", call=self.id)
            self.end("no rtp ports", "pbx", "FAILED", a_status=503)
            return
        bridge(a_media, b_media)
        self.offer = offer
        self.a_sdp = LegSdp(a_media, deps.sdp_address(a.transport, a.address), _peer_ip(a))
        self.a_sdp.received(offer)
        first = targets[0].destination
        self.b_sdp = LegSdp(b_media, deps.sdp_address(*first))
        body = self.b_sdp.outgoing(offer)
        display = f'"{self.caller_name}" ' if self.caller_name else ""
        from_ = f"{display}<sip:{self.caller}@{deps.realm}>"
        for n, target in enumerate(targets, start=1):
            fork = OutboundLeg(f"{self.id}-b{n}", deps.ua, self, deps.registry,
                               target.destination, target.uri, from_,
                               f"<sip:{target.extension}@{deps.realm}>", deps.host,
                               route=target.route)
            fork.on_terminated = self._leg_terminated
            self.forks.append(fork)
            self._legs_left += 1
        self.log.info("call {call}: {caller} -> {dest}, {n} fork(s)", call=self.id,
                      caller=self.caller, dest=self.destination, n=len(targets))
        if deps.no_answer_timeout > 0:
            self._timer = deps.clock.callLater(deps.no_answer_timeout, self._no_answer)
        for fork in list(self.forks):
            if self.state is CallState.RINGING:
                fork.start(body)

    # -- events from the forks ----------------------------------------------

    def leg_progress(self, fork: OutboundLeg, response: Any) -> None:
        """A 18x from a fork: ring the caller (with its SDP: early media)."""
        if self.state is not CallState.RINGING or not self.a.pending:
            return
        try:
            sdp = parse_sdp(response)
        except SDPParseError:
            sdp = None
        if sdp is not None and audio_stream(sdp) is not None:
            a_sdp, b_sdp = self._sdps()
            b_sdp.received(sdp, _peer_ip(fork))
            self.a.provisional(response.status, a_sdp.outgoing(sdp), SDP)
        else:
            self.a.provisional(response.status if response.status != 183 else 180)

    def leg_answered(self, fork: OutboundLeg, response: Any) -> None:
        """A fork's 2xx: the first one with usable SDP wins, every other fork ends."""
        if self.state is not CallState.RINGING or not self.a.pending:
            fork.hangup("answered elsewhere")
            return
        try:
            sdp = parse_sdp(response)
        except SDPParseError:
            sdp = None
        if sdp is None or audio_stream(sdp) is None:
            self.log.info("call {call}: {leg} answered without usable SDP", call=self.id,
                          leg=fork.id)
            fork.hangup("no sdp in answer")
            self.failures.append((488, "Not Acceptable Here"))
            self._maybe_all_failed()
            return
        a_sdp, b_sdp = self._sdps()
        self.winner = fork
        self._fire("answer")
        self.answered_at = self.deps.clock.seconds()
        self._stop_timer()
        for other in self.forks:
            if other is not fork:
                other.hangup("answered elsewhere")
        b_sdp.received(sdp, _peer_ip(fork))
        self.a.answer(a_sdp.outgoing(sdp), SDP)
        a_sdp.media.allow_latch()
        b_sdp.media.allow_latch()
        self.codecs = b_sdp.codecs(self.offer)
        self.log.info("call {call}: answered by {leg} ({codecs})", call=self.id, leg=fork.id,
                      codecs=",".join(self.codecs))

    def leg_failed(self, fork: OutboundLeg, status: int, reason: str, response: Any) -> None:
        """A fork gave a final failure (or timed out)."""
        self.failures.append((status, reason))
        self.log.info("call {call}: {leg} failed {status} {reason}", call=self.id, leg=fork.id,
                      status=status, reason=reason)
        self._maybe_all_failed()

    def _maybe_all_failed(self) -> None:
        if self.state is not CallState.RINGING:
            return
        if any(f.state.value in ("INIT", "PROCEEDING", "EARLY") for f in self.forks):
            return
        status = best_status([s for s, _ in self.failures])
        reason = next((r for s, r in self.failures if s == status), "")
        self.end(f"{status} {reason}".strip(), "callee", disposition_for(status), a_status=status)

    def _no_answer(self) -> None:
        self._timer = None
        if self.state is CallState.RINGING:
            self.end("no answer", "pbx", "NO ANSWER", a_status=480)

    # -- events from any leg ------------------------------------------------

    def leg_cancelled(self, leg: Leg) -> None:
        """The caller cancelled before the answer (the leg sent 487)."""
        self.end("cancel", "caller", "CANCELLED")

    def leg_bye(self, leg: Leg) -> None:
        """A BYE from one side (already answered 200)."""
        self.end("normal", self._side(leg))

    def leg_gone(self, leg: Leg, cause: str) -> None:
        """A leg stopped answering: the whole call ends."""
        self.end(cause, self._side(leg))

    def leg_request(self, leg: Leg, request: Any, txn: Any) -> None:
        """re-INVITE, UPDATE or INFO from a confirmed leg: relay it to the other."""
        other = self._other(leg)
        if other is None or self.state is not CallState.ANSWERED:
            leg.answer_request(txn, 481)
            return
        relay_request(leg, other, self._sdp_of(leg), self._sdp_of(other), request, txn)

    # -- ending -------------------------------------------------------------

    def end(self, cause: str, side: str, disposition: str | None = None,
            a_status: int = 503) -> None:
        """End the call once: every leg hangs up, media is released, ``on_ended`` runs."""
        if self.state is CallState.ENDED:
            return
        answered = self.state is CallState.ANSWERED
        self._fire("end")
        self._stop_timer()
        self.ended_at = self.deps.clock.seconds()
        self.hangup_cause, self.hangup_side = cause, side
        self.disposition = "ANSWERED" if answered else (disposition or "FAILED")
        self.log.info("call {call}: ended ({disposition}, {cause}, by {side})", call=self.id,
                      disposition=self.disposition, cause=cause, side=side)
        self.a.hangup(cause, status=a_status)
        for fork in self.forks:
            fork.hangup(cause)
        for name, leg_sdp in (("a", self.a_sdp), ("b", self.b_sdp)):
            if leg_sdp is not None:
                self.media_counters[name] = leg_sdp.media.counters()
                leg_sdp.media.close()
        if self.on_ended is not None:
            self.on_ended(self)
        if self._legs_left <= 0 and self.on_all_legs_gone is not None:
            self.on_all_legs_gone(self)

    def hangup(self, cause: str = "hangup", side: str = "pbx") -> None:
        """End the call from the PBX (admin API, shutdown, media timeout)."""
        self.end(cause, side, "FAILED" if cause != "no answer" else "NO ANSWER")

    def _leg_terminated(self, leg: Leg) -> None:
        self._legs_left -= 1
        if self._legs_left <= 0 and self.on_all_legs_gone is not None:
            self.on_all_legs_gone(self)

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- helpers ------------------------------------------------------------

    def _side(self, leg: Leg) -> str:
        return "caller" if leg is self.a else "callee"

    def _other(self, leg: Leg) -> Leg | None:
        if leg is self.a:
            return self.winner
        return self.a if leg is self.winner else None

    def _sdps(self) -> tuple[LegSdp, LegSdp]:
        """Both legs' media state: :meth:`start` sets it before any fork exists."""
        if self.a_sdp is None or self.b_sdp is None:
            raise RuntimeError(f"call {self.id}: a leg event before the media was anchored")
        return self.a_sdp, self.b_sdp

    def _sdp_of(self, leg: Leg) -> LegSdp:
        a_sdp, b_sdp = self._sdps()
        return a_sdp if leg is self.a else b_sdp

    @property
    def on_hold(self) -> bool:
        """True when either side's last SDP put the media on hold."""
        return any(s is not None and s.on_hold for s in (self.a_sdp, self.b_sdp))

    def silence(self, now: float) -> float | None:
        """Seconds since either leg last received RTP (None before the answer, on hold)."""
        if (self.state is not CallState.ANSWERED or self.on_hold or self.a_sdp is None
                or self.b_sdp is None):
            return None
        last = max(self.a_sdp.media.last_received, self.b_sdp.media.last_received,
                   self.answered_at or 0.0)
        return now - last

    def info(self, now: float) -> dict[str, Any]:
        """A summary for the admin API: legs, states, duration, codecs, counters."""
        legs = [self.a, *self.forks]
        media = dict(self.media_counters)
        for name, leg_sdp in (("a", self.a_sdp), ("b", self.b_sdp)):
            if leg_sdp is not None and not leg_sdp.media.closed:
                media[name] = leg_sdp.media.counters()
        return {
            "id": self.id,
            "caller": self.caller,
            "destination": self.destination,
            "state": self.state.value,
            "start": self.started_at,
            "answer": self.answered_at,
            "duration": round(now - self.started_at, 3),
            "codecs": list(self.codecs),
            "on_hold": self.on_hold,
            "legs": [{"id": leg.id, "role": leg.role, "state": leg.state.value} for leg in legs],
            "media": media,
        }
