"""Relaying a callee's RTP to the caller as one continuous stream (layer 4).

Before a dial is answered the caller hears the PBX's own stream (ring-back
from a :class:`~pbxd.rtp.player.Player`); then the callee's early media or
answer takes over. Relayed untouched, that is a new SSRC with unrelated
sequence numbers and timestamps, and some phones (baresip 1.0) drop every
packet whose sequence number is "older" than the last one they played.
:class:`Restamper` sends the callee's packets under the player's SSRC,
continuing its sequence numbers and timestamps (offsets recomputed whenever
the callee's stream restarts, marker bit set there), payload untouched.

Music on hold (:mod:`pbxd.moh.hold`) pauses a Restamper while its own player
continues the stream (:meth:`Restamper.advance_to` after each of its packets), then
:meth:`Restamper.resume` carries on after the music.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["Restamper"]

_STAMP = struct.Struct("!HII")  # sequence, timestamp, SSRC at byte 2


class Restamper:
    """A ``LegMedia.listeners`` callable: re-stamps packets and sends them to ``target``."""

    def __init__(self, target: Any, ssrc: int, next_seq: int, next_ts: int) -> None:
        self.target = target
        self.ssrc = ssrc & 0xFFFFFFFF
        self._next_seq = next_seq & 0xFFFF  # what the first relayed packet gets
        self._next_ts = next_ts & 0xFFFFFFFF
        self._their_ssrc: int | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        self.packets = 0
        self.paused = False
        """While True the callee's packets are dropped (someone else continues the stream)."""

    @property
    def next_seq(self) -> int:
        """The sequence number the stream continues with."""
        return self._next_seq

    @property
    def next_ts(self) -> int:
        """The timestamp the stream continues with."""
        return self._next_ts

    def advance_to(self, next_seq: int, next_ts: int) -> None:
        """Someone else sent the stream's packets up to here (while paused): whoever
        continues it (this re-stamper on resume, or the player it was started from,
        which takes ``next_seq``/``next_ts`` when the callee is unbridged) goes on after."""
        self._next_seq = next_seq & 0xFFFF
        self._next_ts = next_ts & 0xFFFFFFFF

    def resume(self) -> None:
        """Relay again, after what was sent while paused: offsets are recomputed from the
        callee's next packet (marker set)."""
        self._their_ssrc = None
        self.paused = False

    def __call__(self, data: bytes) -> None:
        if len(data) < 12 or data[0] >> 6 != 2 or self.paused:
            return
        seq, ts, ssrc = _STAMP.unpack_from(data, 2)
        b1 = data[1]
        if ssrc != self._their_ssrc:
            self._seq_offset = (self._next_seq - seq) & 0xFFFF
            self._ts_offset = (self._next_ts - ts) & 0xFFFFFFFF
            self._their_ssrc = ssrc
            b1 |= 0x80
        out_seq = (seq + self._seq_offset) & 0xFFFF
        out_ts = (ts + self._ts_offset) & 0xFFFFFFFF
        if 0 <= (out_seq - self._next_seq) & 0xFFFF < 0x8000:
            self._next_seq = (out_seq + 1) & 0xFFFF
            self._next_ts = (out_ts + 160) & 0xFFFFFFFF
        self.packets += 1
        self.target.send_rtp(bytes((data[0], b1)) + _STAMP.pack(out_seq, out_ts, self.ssrc)
                             + data[12:])
