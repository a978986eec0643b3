"""A dialplan call: the caller's leg, the media the PBX plays to it, and its dials (layer 4).

A :class:`Session` is what :class:`~pbxd.calls.context.CallContext` drives.
It owns the A-leg (the caller's INVITE, or for an originated call the leg the
PBX rang first), its anchored :class:`~pbxd.rtp.relay.LegMedia`, and what the
PBX does with that media:

- the PBX answers with its own SDP (one G.711 codec, :meth:`LegSdp.answer`),
  sent in a 183 for early media or in the 200; a :class:`~pbxd.rtp.player.Player`
  plays prompts and tones, an :class:`~pbxd.rtp.echo.Echo` or a
  :class:`~pbxd.rtp.recorder.Recorder` listens to the caller;
- RFC 4733 telephone-events (``LegMedia.on_dtmf_packet`` through a
  :class:`~pbxd.rtp.dtmf.DtmfDetector`) and SIP INFO ``application/dtmf-relay``
  / ``application/dtmf`` become digits for ``on_digit`` (not while bridged);
- :meth:`dial` rings targets through a :class:`~pbxd.calls.dialer.Dialer`
  with the caller hearing ring-back made here (or the callee's early media),
  and bridges the relay on answer (players stopped first);
- it has what the manager and the CDR read of a :class:`~pbxd.calls.call.Call`
  (``id``, ``state``, times, ``disposition``, ``winner``, ``info``,
  ``silence``, ``end``), so both kinds of call are listed and recorded alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from pbxd import debuglog
from pbxd.calls.call import CALL_TABLE, CallDeps, CallState
from pbxd.calls.cdr import disposition_for
from pbxd.calls.dialer import Dialer
from pbxd.calls.dialling import Dialling
from pbxd.calls.inbound import InboundLeg
from pbxd.calls.leg import IllegalTransition, Leg
from pbxd.calls.media import SDP, LegSdp, SDPParseError, parse_sdp
from pbxd.calls.relaying import info_digit, relay_request
from pbxd.rtp.dtmf import DtmfDetector
from pbxd.rtp.player import Player
from pbxd.sdp.negotiate import audio_stream, negotiated_codec

__all__ = ["Session"]

class Session(Dialling):
    """One call run by the dialplan (see the module docstring)."""

    log = Logger()

    def __init__(self, call_id: str, deps: CallDeps, caller: str, destination: str,
                 caller_name: str | None = None,
                 on_ended: Callable[[Session], None] | None = None) -> None:
        self.id = call_id
        self.deps = deps
        self.caller = caller
        self.caller_name = caller_name
        self.destination = destination
        self.on_ended = on_ended
        self.on_all_legs_gone: Callable[[Session], None] | None = None
        self.on_digit: Callable[[str], None] | None = None
        self.on_end: list[Callable[[str], None]] = []
        self.state = CallState.RINGING
        self.started_at = deps.clock.seconds()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.disposition: str | None = None
        self.hangup_cause: str | None = None
        self.hangup_side: str | None = None
        self.a: Any = None
        self.a_sdp: Any = None  # LegSdp once the A side is attached
        self.offer: Any = None
        self.codecs: list[str] = []
        self.media_counters: dict[str, Any] = {}
        self.forks: list[Leg] = []
        self.winner: Leg | None = None
        self.dialer: Dialer | None = None
        self.peer: Session | None = None  # bridged with another session (bridge())
        self.player: Player | None = None
        self.early = False
        self._detector: DtmfDetector | None = None  # made at the first telephone-event
        self._legs_left = 0
        self._dial_result: Deferred[str] | None = None
        self.on_dial_answered: Callable[[], None] | None = None
        self._restamper: Any = None
        self.recordings: list[str] = []  # ids of this call's recordings (the CDR's)

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.caller}->{self.destination} {self.state}>"

    # -- setting up the A side -------------------------------------------------

    def attach_inbound(self, txn: Any) -> bool:
        """Take the caller's INVITE; False (already rejected) if its SDP is unusable."""
        self.a = InboundLeg(f"{self.id}-a", self.deps.ua, self, self.deps.registry, txn)
        self.a.on_terminated = self.leg_terminated
        self._legs_left = 1
        try:
            offer = parse_sdp(self.a.request)
        except SDPParseError as e:
            self.log.info("call {call}: bad SDP from caller: {why}", call=self.id, why=str(e))
            self.end("bad sdp", "caller", "FAILED", a_status=400)
            return False
        if offer is None or audio_stream(offer) is None:
            self.end("no audio offer", "caller", "FAILED", a_status=488)
            return False
        try:
            media = self.deps.new_media(f"{self.id}-a")
        except Exception:
            self.log.failure("call {call}: no RTP ports", call=self.id)
            self.end("no rtp ports", "pbx", "FAILED", a_status=503)
            return False
        a = self.a
        self.a_sdp = LegSdp(media, self.deps.sdp_address(a.transport, a.address), a.address[0])
        self.a_sdp.received(offer)
        try:
            self.a_sdp.answer(offer)
        except ValueError:
            self.end("no common codec", "caller", "FAILED", a_status=488)
            return False
        self.offer = offer
        self._media_ready()
        return True

    def attach_answered(self, leg: Leg, leg_sdp: LegSdp, offer: Any) -> None:
        """Take an answered leg the PBX rang itself (originate) as the A side."""
        self.a, self.a_sdp, self.offer = leg, leg_sdp, offer
        leg.call = self
        leg.on_terminated = self.leg_terminated  # already counted by leg_added
        self._fire("answer")
        self.answered_at = self.deps.clock.seconds()
        self._media_ready()

    def _media_ready(self) -> None:
        assert self.a_sdp is not None
        media = self.a_sdp.media
        media.on_dtmf_packet = self._dtmf_packet
        if isinstance(self.a, InboundLeg):  # their offer, our answer
            chosen = negotiated_codec(self.offer, self.a_sdp.last_sent)
        else:  # our offer, their answer
            chosen = negotiated_codec(self.offer, self.a_sdp.remote_sdp)
        codec = chosen[1] if chosen else "PCMU"
        self.codecs = [codec] + (["telephone-event"] if media.dtmf_pt is not None else [])
        self.player = Player(self.deps.clock, media, codec)

    def b_offer(self) -> Any:
        """The SDP a callee is offered: the caller's one negotiated codec (+ telephone-event)."""
        if isinstance(self.a, InboundLeg):
            return self.a_sdp.last_sent
        return self.a_sdp.remote_sdp

    @property
    def media(self) -> Any:
        """The caller's LegMedia."""
        return self.a_sdp.media if self.a_sdp is not None else None

    @property
    def answered(self) -> bool:
        return self.state is CallState.ANSWERED

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    @property
    def bridged(self) -> bool:
        return self.media is not None and self.media.peer is not None

    def _fire(self, event: str) -> None:
        new = CALL_TABLE.get((self.state, event))
        if new is None:
            raise IllegalTransition(f"call {self.id}: {event} in {self.state}")
        self.state = new

    # -- answering and early media ---------------------------------------------

    def early_media(self) -> None:
        """Send our SDP in a 183 (once) so the caller hears what we play before the answer."""
        if self.state is CallState.RINGING and not self.early and self.a.pending:
            self.early = True
            self.a.provisional(183, self.a_sdp.last_body, SDP)

    def answer(self) -> None:
        """200 OK with our SDP (the same as any 183 had); media latches."""
        if self.state is not CallState.RINGING:
            return
        self._fire("answer")
        self.answered_at = self.deps.clock.seconds()
        self.a.answer(self.a_sdp.last_body, SDP)
        self.media.allow_latch()
        if debuglog.ENABLED:
            self.log.debug("call {call}: answered by the PBX ({codecs})", call=self.id,
                           codecs=",".join(self.codecs))

    # -- digits -----------------------------------------------------------------

    @property
    def detector(self) -> DtmfDetector:
        """The RFC 4733 digit detector of the caller's media."""
        if self._detector is None:
            self._detector = DtmfDetector()
        return self._detector

    def _dtmf_packet(self, marker: int, timestamp: int, payload: bytes) -> None:
        digit = self.detector.feed(bool(marker), timestamp, payload)
        if digit is not None:
            self._digit(digit, "rfc4733")

    def _digit(self, digit: str, how: str) -> None:
        if self.bridged or self.ended:
            return
        if debuglog.ENABLED:
            self.log.debug("call {call}: digit {digit} ({how})", call=self.id, digit=digit,
                           how=how)
        if self.on_digit is not None:
            self.on_digit(digit)

    # -- playing ----------------------------------------------------------------

    def play(self, audio: Any, *, loop: bool = False) -> Deferred[str]:
        """Queue audio (a source, samples or a WAV path) for the caller; early media if
        unanswered. Raises for an unusable file."""
        if self.player is None:
            return succeed("closed")
        self.early_media()
        return self.player.play(audio, loop=loop)

    def stop_playing(self, reason: str = "stopped") -> None:
        """Stop every queued prompt (their Deferreds fire with ``reason``)."""
        if self.player is not None:
            self.player.stop(reason)

    # -- events from the A leg ---------------------------------------------------

    def leg_cancelled(self, leg: Leg) -> None:
        """The caller cancelled before the answer."""
        self.end("cancel", "caller", "CANCELLED")

    def leg_bye(self, leg: Leg) -> None:
        """The caller sent BYE."""
        self.end("normal", "caller")

    def leg_gone(self, leg: Leg, cause: str) -> None:
        """The caller's leg stopped answering."""
        self.end(cause, "caller")

    def leg_request(self, leg: Leg, request: Any, txn: Any) -> None:
        """re-INVITE/UPDATE/INFO from the caller: relayed when bridged, else handled here."""
        dialer = self.dialer
        if request.method == "INFO":
            digit = info_digit(request.get("Content-Type"), request.body)
            if digit is not None:
                leg.answer_request(txn, 200)
                self._digit(digit, "info")
                return
        if dialer is not None and dialer.status == "ANSWER" and dialer.winner is not None:
            relay_request(leg, dialer.winner, self.a_sdp, dialer.sdp, request, txn)
            return
        if request.method == "INFO":
            leg.answer_request(txn, 200)
            return
        try:
            sdp = parse_sdp(request)
        except SDPParseError:
            leg.answer_request(txn, 400, reason="Bad SDP")
            return
        if sdp is None:
            body = self.a_sdp.last_body if request.method == "INVITE" else b""
            leg.answer_request(txn, 200, body, SDP if body else None)
            return
        self.a_sdp.received(sdp, leg.address[0] if leg.address else None)
        try:
            body = self.a_sdp.answer(sdp)
        except ValueError:
            leg.answer_request(txn, 488)
            return
        leg.answer_request(txn, 200, body, SDP)

    # -- ending ------------------------------------------------------------------

    def end(self, cause: str, side: str, disposition: str | None = None,
            a_status: int = 480) -> None:
        """End the call once: the caller's leg and any dial end, media is released."""
        if self.state is CallState.ENDED:
            return
        answered = self.state is CallState.ANSWERED
        self._fire("end")
        self.ended_at = self.deps.clock.seconds()
        self.hangup_cause, self.hangup_side = cause, side
        self.disposition = "ANSWERED" if answered else (disposition or disposition_for(a_status))
        # the one info line of a call by default (the others need PBXD_DEBUG)
        self.log.info("call {call}: {caller} -> {destination} ended ({disposition}, {cause}, "
                      "by {side})", call=self.id, caller=self.caller,
                      destination=self.destination, disposition=self.disposition, cause=cause,
                      side=side)
        self.stop_playing("hangup")
        self.unbridge_peer()
        dialer = self.dialer
        if dialer is not None:
            if dialer.ringing:
                dialer.cancel()
            else:
                self._dial_done(dialer, "ANSWER", cause)
        if self.a is not None:
            self.a.hangup(cause, status=a_status) if isinstance(self.a, InboundLeg) \
                else self.a.hangup(cause)
        if self.a_sdp is not None:
            self.media_counters["a"] = self.media.counters()
            self.media.close()
        for listener in list(self.on_end):
            listener(cause)
        if self.deps.recording is not None:
            self.deps.recording.call_ended(self.id)
        if self.on_ended is not None:
            self.on_ended(self)
        if self._legs_left <= 0:
            self._all_legs_gone()

    def hangup(self, cause: str = "hangup", side: str = "pbx") -> None:
        """End the call from the PBX (admin API, shutdown, media timeout)."""
        self.end(cause, side, "FAILED")

    def leg_added(self) -> None:
        self._legs_left += 1

    def leg_terminated(self, leg: Leg) -> None:
        self._legs_left -= 1
        if self._legs_left <= 0 and self.state is CallState.ENDED:
            self._all_legs_gone()

    def _all_legs_gone(self) -> None:
        """Ended with every leg terminated: tell the owner, then let go of the legs
        (see :meth:`Leg.detach`) and of the callbacks that tie the call's parts together,
        so it is freed as soon as nothing else holds it."""
        if self.on_all_legs_gone is not None:
            self.on_all_legs_gone(self)
        for leg in (self.a, *self.forks):
            if leg is not None and leg.done:
                leg.detach()
        self.on_end = []
        self.on_digit = None
        self.on_dial_answered = None

    # -- what the manager reads --------------------------------------------------

    @property
    def on_hold(self) -> bool:
        return self.a_sdp is not None and self.a_sdp.on_hold

    def silence(self, now: float) -> float | None:
        """Seconds since the caller last sent RTP (None before the answer, on hold)."""
        if self.state is not CallState.ANSWERED or self.on_hold or self.a_sdp is None:
            return None
        last = max(self.media.last_received, self.answered_at or 0.0)
        if self.dialer is not None and self.dialer.media is not None and \
                not self.dialer.media.closed and self.dialer.status == "ANSWER":
            last = max(last, self.dialer.media.last_received)
        return now - last

    def info(self, now: float) -> dict[str, Any]:
        """A summary for the admin API, like :meth:`pbxd.calls.call.Call.info`."""
        legs = [leg for leg in (self.a, *self.forks) if leg is not None]
        media = dict(self.media_counters)
        if self.a_sdp is not None and not self.media.closed:
            media["a"] = self.media.counters()
        return {
            "id": self.id, "caller": self.caller, "destination": self.destination,
            "state": self.state.value, "start": self.started_at, "answer": self.answered_at,
            "duration": round(now - self.started_at, 3), "codecs": list(self.codecs),
            "on_hold": self.on_hold,
            "legs": [{"id": leg.id, "role": leg.role, "state": leg.state.value} for leg in legs],
            "media": media,
        }
