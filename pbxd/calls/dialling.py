"""Dialling and bridging for a dialplan :class:`~pbxd.calls.session.Session` (layer 4).

Split from the session to keep modules small: :class:`Dialling` is the part
of the session that owns its current :class:`~pbxd.calls.dialer.Dialer`
(ring-back while it rings, the callee's early media, the bridge on answer,
the status when it ends) and the bridge with another session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed

from pbxd.calls.call import CallState, Target
from pbxd.calls.dialer import Dialer
from pbxd.calls.leg import Leg
from pbxd.calls.relaying import relay_request
from pbxd.calls.restamp import Restamper
from pbxd.rtp.relay import bridge, unbridge
from pbxd.rtp.sources import ToneSource

__all__ = ["Dialling"]


class Dialling:
    """Mixin of :class:`~pbxd.calls.session.Session`: its dials and bridges."""

    # provided by Session
    id: str
    deps: Any
    a: Any
    a_sdp: Any
    caller: str
    caller_name: str | None
    state: CallState
    forks: list[Leg]
    winner: Leg | None
    dialer: Dialer | None
    peer: Any
    player: Any
    media_counters: dict[str, Any]
    _dial_result: Deferred[str] | None
    _restamper: Restamper | None
    on_dial_answered: Callable[[], None] | None
    log: Any

    @property
    def media(self) -> Any:  # pragma: no cover - Session
        raise NotImplementedError

    @property
    def ended(self) -> bool:  # pragma: no cover - Session
        raise NotImplementedError

    @property
    def answered(self) -> bool:  # pragma: no cover - Session
        raise NotImplementedError

    @property
    def bridged(self) -> bool:  # pragma: no cover - Session
        raise NotImplementedError

    def stop_playing(self, reason: str = "stopped") -> None:  # pragma: no cover - Session
        raise NotImplementedError

    def early_media(self) -> None:  # pragma: no cover - Session
        raise NotImplementedError

    def play(self, audio: Any, *, loop: bool = False) -> Deferred[str]:  # pragma: no cover
        raise NotImplementedError

    def answer(self) -> None:  # pragma: no cover - Session
        raise NotImplementedError

    def b_offer(self) -> Any:  # pragma: no cover - Session
        raise NotImplementedError

    # -- dialling ---------------------------------------------------------------

    def dial(self, targets: list[Target], timeout: float,
             on_answer: Callable[[], None] | None = None) -> Deferred[str]:
        """Ring ``targets``; fires with the dial status when ringing fails or the bridge ends
        (``on_answer`` is called when a callee answers)."""
        d: Deferred[str] = Deferred()
        if self.ended:
            return succeed("CANCEL")
        if not targets:
            return succeed("CHANUNAVAIL")
        display = f'"{self.caller_name}" ' if self.caller_name else ""
        from_ = f"{display}<sip:{self.caller}@{self.deps.realm}>"
        n = len(self.forks) + 1
        dialer = Dialer(self, self.deps, f"{self.id}-b{n}.", targets, self.b_offer(),
                        from_, timeout)
        self.on_dial_answered = on_answer
        self.dialer, self._dial_result = dialer, d
        self.stop_playing()
        self.early_media()
        self.player.play(ToneSource("ringback"))
        if not dialer.start():
            self._dial_done(dialer, "CHANUNAVAIL")
        else:
            self.forks.extend(dialer.forks)
        return d

    def dial_progress(self, dialer: Dialer, early_media: bool) -> None:
        """A callee rings: with early media the caller now hears it instead of our
        ring-back; without, an unanswered caller also gets a 180."""
        if dialer is not self.dialer:
            return
        if early_media and not self.bridged:
            self.stop_playing()
            self._bridge_dialer(dialer)
        elif not early_media and self.state is CallState.RINGING and self.a.pending:
            self.a.provisional(180)  # signalled too; our ring-back keeps playing

    def dial_answered(self, dialer: Dialer) -> None:
        """A callee answered: stop the ring-back, bridge, answer the caller if not yet."""
        if dialer is not self.dialer:
            return
        self.stop_playing()
        recording = self.deps.recording
        if recording is None:
            self._bridge_dialer(dialer)
        self.winner = dialer.winner
        if self.state is CallState.RINGING:
            self.answer()
        if recording is not None:  # it connects (after any announcement) and records
            recording.answered(self, dialer)
        if self.on_dial_answered is not None:
            self.on_dial_answered()

    def dial_failed(self, dialer: Dialer, status: str) -> None:
        """Ringing ended without an answer."""
        self._dial_done(dialer, status)

    def bridge_ended(self, dialer: Dialer, cause: str) -> None:
        """The bridged callee hung up: the caller goes on in the dialplan."""
        self._dial_done(dialer, "ANSWER", cause)

    def b_request(self, dialer: Dialer, leg: Leg, request: Any, txn: Any) -> None:
        """re-INVITE/UPDATE/INFO from the bridged callee: relay it to the caller."""
        if self.ended or not self.answered:
            leg.answer_request(txn, 481)
            return
        relay_request(leg, self.a, dialer.sdp, self.a_sdp, request, txn)

    def _dial_done(self, dialer: Dialer, status: str, cause: str = "normal") -> None:
        if dialer is not self.dialer:
            return
        if self.deps.recording is not None and dialer.status == "ANSWER":
            self.deps.recording.unbridged(self, dialer)
        self._unbridge_dialer(dialer)
        dialer.close(cause)
        self.media_counters[dialer.name.rstrip(".")] = dialer.counters
        self.stop_playing()
        self.dialer, d = None, self._dial_result
        self.on_dial_answered = None
        self._dial_result = None
        if d is not None and not d.called:
            d.callback(status)

    def connect_dialer(self, dialer: Dialer) -> None:
        """Relay between the caller and ``dialer``'s callee (the recording hook's call)."""
        if dialer is self.dialer and not self.ended:
            self._bridge_dialer(dialer)

    def disconnect_dialer(self, dialer: Dialer) -> None:
        """Stop relaying ``dialer``'s media (early media, before an announcement)."""
        if dialer is self.dialer:
            self._unbridge_dialer(dialer)

    def _bridge_dialer(self, dialer: Dialer) -> None:
        """Caller -> callee relayed untouched; callee -> caller re-stamped to continue
        the stream the caller heard from our player (see :mod:`pbxd.calls.restamp`)."""
        media = self.media
        if media.peer is dialer.media:
            return
        media.peer = dialer.media
        stream = self.player.stream
        self._restamper = Restamper(media, stream.ssrc, stream.sequence, stream.timestamp)
        dialer.media.listeners.append(self._restamper)

    def _unbridge_dialer(self, dialer: Dialer) -> None:
        media, restamper = self.media, self._restamper
        if media is not None and media.peer is dialer.media:
            media.peer = None
        if restamper is not None:
            self._restamper = None
            if dialer.media is not None and restamper in dialer.media.listeners:
                dialer.media.listeners.remove(restamper)
            if restamper.packets and self.player is not None:  # the player continues it
                self.player.stream.sequence = restamper.next_seq
                self.player.stream.timestamp = restamper.next_ts

    # -- bridging with another session -------------------------------------------

    def bridge_with(self, other: Any) -> None:
        """Relay this caller's media with ``other``'s caller (both answered)."""
        self.stop_playing()
        other.stop_playing()
        self.peer, other.peer = other, self
        bridge(self.media, other.media)

    def unbridge_peer(self) -> None:
        """Stop relaying with the session given to :meth:`bridge_with`."""
        other, self.peer = self.peer, None
        if other is not None:
            other.peer = None
            if self.media is not None and other.media is not None:
                unbridge(self.media, other.media)

