"""Echo: a phone's own RTP sent back to it (layer 2), for the ``echo`` test application.

Every packet the leg accepts from the phone is returned with its payload,
payload type and marker untouched, but under our own SSRC and with sequence
numbers and timestamps moved by fixed offsets: the phone sees a proper stream
from someone else, and loss or reordering on the way in stays visible to its
jitter buffer. When the phone's stream restarts (new SSRC) the offsets are
recomputed so ours continues without a jump, and that packet gets the marker.
"""

from __future__ import annotations

import secrets
import struct
from typing import Any

from twisted.logger import Logger

__all__ = ["Echo"]

_STAMP = struct.Struct("!HII")  # sequence, timestamp, SSRC at byte 2


class Echo:
    """Sends everything the phone on ``leg`` sends back to it, while started."""

    log = Logger()

    def __init__(self, leg: Any, *, ssrc: int | None = None) -> None:
        self.leg = leg
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc & 0xFFFFFFFF
        self.packets = 0
        self._their_ssrc: int | None = None
        self._seq_offset = secrets.randbits(16)
        self._ts_offset = secrets.randbits(32)
        self._last_seq: int | None = None  # last sequence number we sent
        self._last_ts = 0

    @property
    def running(self) -> bool:
        return self._listener in self.leg.listeners

    def start(self) -> None:
        """Start echoing (idempotent)."""
        if not self.running:
            self.leg.listeners.append(self._listener)

    def stop(self) -> None:
        """Stop echoing (idempotent)."""
        while self._listener in self.leg.listeners:
            self.leg.listeners.remove(self._listener)

    def _listener(self, data: bytes) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        seq, ts, ssrc = _STAMP.unpack_from(data, 2)
        b1 = data[1]
        if ssrc != self._their_ssrc:
            if self._last_seq is not None:  # continue our stream where it was
                self._seq_offset = (self._last_seq + 1 - seq) & 0xFFFF
                self._ts_offset = (self._last_ts + 160 - ts) & 0xFFFFFFFF
                b1 |= 0x80
            self._their_ssrc = ssrc
        out_seq = (seq + self._seq_offset) & 0xFFFF
        out_ts = (ts + self._ts_offset) & 0xFFFFFFFF
        if self._last_seq is None or 0 < (out_seq - self._last_seq) & 0xFFFF < 0x8000:
            self._last_seq, self._last_ts = out_seq, out_ts
        self.packets += 1
        self.leg.send_rtp(
            bytes((data[0], b1)) + _STAMP.pack(out_seq, out_ts, self.ssrc) + data[12:]
        )
