"""Music for the party on hold (layer 4).

The calls layer relays a re-INVITE from one leg to the other
(:func:`pbxd.calls.relaying.relay_request`) and then calls
``deps.hold(holder, other)`` with the two legs' :class:`~pbxd.calls.media.LegSdp`.
:meth:`HoldMusic.hold_changed` looks at ``holder.on_hold`` (its last SDP was
``sendonly`` or ``inactive``):

- on hold: the relay from the holder to the other party stops (its audio,
  if it sends any, no longer reaches them) and a
  :class:`~pbxd.rtp.player.Player` loops :class:`~pbxd.rtp.sources.MusicOnHold`
  to the other party's phone, in the codec that phone negotiated, continuing
  the sequence numbers and timestamps it was receiving;
- resumed: the music stops and the relay is restored.

Both re-INVITEs are answered by the PBX (``hold_changed`` returns True), not
relayed: the held phone stays ``sendrecv`` and simply hears music, as with
Asterisk. A dialplan callee's audio reaches its caller through a
:class:`~pbxd.calls.restamp.Restamper` rather than the peer link: when that
callee holds, the re-stamper is paused and the music continues the caller's
stream under the same SSRC, keeping the re-stamper's sequence number and
timestamp current; on resume the re-stamper carries on after the music. If the
callee goes (hangs up, or is unbridged) while holding, the music stops and
whatever the dialplan plays next continues the stream. A direction relayed
neither way is left alone (the hold is relayed).

Music also stops by itself when the leg's media closes (the call ended).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from pbxd.calls.restamp import Restamper
from pbxd.rtp.player import Player
from pbxd.rtp.sources import MusicOnHold

__all__ = ["HoldMusic"]


class HoldMusic:
    """Starts and stops music on hold per held leg.

    :param clock: IReactorTime for the players.
    :param folder: a folder of 8 kHz mono WAV files (ValueError if it has none).
    :param shuffle: play the files in random order.
    :param make_source: builds the music source (tests give a tone).
    """

    log = Logger()

    def __init__(self, clock: Any, folder: str, *, shuffle: bool = True,
                 make_source: Callable[[], Any] | None = None) -> None:
        self.clock = clock
        self.folder = folder
        MusicOnHold(folder)  # fail at startup, not at the first hold
        self._make_source = make_source or (lambda: MusicOnHold(folder, shuffle=shuffle))
        self.players: dict[int, Player] = {}  # id(LegMedia of the held party) -> its player

    def playing_to(self, media: Any) -> bool:
        """True while music plays to ``media`` (a LegMedia)."""
        return id(media) in self.players

    def hold_changed(self, holder: Any, other: Any) -> bool:
        """``holder`` (LegSdp) sent new SDP; ``other`` (LegSdp) is the far party.

        True when this was a hold or a resume that music on hold took care of: the
        request is then answered locally and not relayed (the held phone is not told,
        as with Asterisk's music on hold). False: relay it as usual."""
        if holder is None or other is None:
            return False
        a, b = holder.media, other.media
        if a is None or b is None or getattr(b, "closed", False):
            return False
        if holder.on_hold and id(b) not in self.players:
            if a.peer is b:
                a.peer = None  # the holder's audio no longer reaches the held party
                player = Player(self.clock, b, _codec_of(other), **_continuing(a))
            else:
                restamper = _restamper(a, b)
                if restamper is None:  # not relayed by us at all: leave it
                    return False
                restamper.paused = True  # the music continues the stream b was hearing
                player = Player(self.clock, _Continuing(restamper, a), _codec_of(other),
                                ssrc=restamper.ssrc, sequence=restamper.next_seq,
                                timestamp=restamper.next_ts)
            self.players[id(b)] = player
            player.play(self._make_source(), loop=True).addBoth(self._ended, b, player)
            self.log.info("music on hold to {leg}", leg=getattr(b, "name", "?"))
            return True
        if not holder.on_hold and id(b) in self.players:
            player = self.players.pop(id(b))
            player.stop("resumed")
            restamper = _restamper(a, b)
            if restamper is not None and restamper.paused:
                restamper.resume()
            elif not getattr(a, "closed", False):
                a.peer = b
            self.log.info("{leg} resumed", leg=getattr(b, "name", "?"))
            return True
        return id(b) in self.players  # a refresh while on hold: still ours

    def _ended(self, reason: Any, media: Any, player: Player) -> None:
        if self.players.get(id(media)) is player:
            del self.players[id(media)]


class _Continuing:
    """The held caller's media as the music player sees it when the holder's audio reaches
    that caller through ``restamper``: each music packet moves the re-stamper's sequence
    number and timestamp on, and the music stops (``closed``) once the re-stamper is no
    longer attached to the holder's media (the callee hung up or was unbridged)."""

    def __init__(self, restamper: Restamper, holder_media: Any) -> None:
        self.restamper = restamper
        self.holder = holder_media
        self.media = restamper.target

    @property
    def closed(self) -> bool:
        return bool(getattr(self.media, "closed", False)
                    or self.restamper not in getattr(self.holder, "listeners", ()))

    @property
    def dtmf_pt(self) -> Any:
        return getattr(self.media, "dtmf_pt", None)

    def send_rtp(self, data: bytes) -> None:
        seq, ts = _SEQ_TS.unpack_from(data, 2)
        self.restamper.advance_to(seq + 1, ts + 160)  # 20 ms, as the re-stamper counts
        self.media.send_rtp(data)


_SEQ_TS = struct.Struct("!HI")


def _restamper(holder_media: Any, held_media: Any) -> Restamper | None:
    """The re-stamper sending ``holder_media``'s packets to ``held_media``, if one does."""
    for listener in getattr(holder_media, "listeners", ()):
        if isinstance(listener, Restamper) and listener.target is held_media:
            return listener
    return None


def _continuing(holder_media: Any) -> dict[str, int]:
    """Sequence number and timestamp carrying on from the holder's stream (what the held
    phone heard last), so phones that drop "older" packets (baresip 1.0) play the music."""
    stats = getattr(holder_media, "stats", None)
    if stats is None or not getattr(stats, "packets", 0):
        return {}
    return {"sequence": (stats.max_seq + 1) & 0xFFFF,
            "timestamp": (getattr(stats, "_last_ts", 0) + 160) & 0xFFFFFFFF}


def _codec_of(leg_sdp: Any) -> str:
    """PCMA if that is what the phone put first, else PCMU."""
    try:
        names = leg_sdp.codecs(None)
    except Exception:
        names = []
    return "PCMA" if names and names[0].upper() == "PCMA" else "PCMU"
