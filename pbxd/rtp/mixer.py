"""A small conference mixer (layer 2): every participant hears the sum of the others.

Each participant is a leg (``listeners`` and ``send_rtp``, normally a
:class:`~pbxd.rtp.relay.LegMedia`) with its own G.711 codec. Audio received
from a phone is decoded into a short FIFO; every 20 ms tick of the clock takes
one frame from each FIFO (silence when it is empty), sums them once with numpy
and sends each participant ``sum - own frame`` (clipped), encoded with its codec
on its own RTP stream (our SSRC, continuous sequence numbers and timestamps).

Basic on purpose: packets are taken in arrival order (no reordering by
sequence number); a FIFO longer than ``max_frames`` drops its oldest audio so
latency stays bounded when a phone's clock runs fast. Non-audio payloads
(telephone-events, comfort noise) are ignored.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from twisted.logger import Logger

from pbxd.rtp.codecs import Codec, codec_for_payload_type
from pbxd.rtp.player import RtpStream, resolve_codec

__all__ = ["Conference", "Participant"]

_FRAME = 160
_PTIME = 0.02
_EPSILON = 1e-6  # in ticks: absorbs float error of clock arithmetic


class Participant:
    """One leg in a conference."""

    def __init__(self, leg: Any, codec: Codec, stream: RtpStream, max_frames: int) -> None:
        self.leg = leg
        self.codec = codec
        self.stream = stream
        self.muted = False
        """A muted participant is heard by no one but still hears the others."""
        self.max_samples = max_frames * _FRAME
        self._buffer = np.zeros(0, dtype=np.int16)
        self._first = True
        self.dropped_samples = 0

    def receive(self, data: bytes) -> None:
        """A packet from the phone (installed in ``leg.listeners``)."""
        if len(data) < 12:
            return
        codec = codec_for_payload_type(data[1] & 0x7F)
        if codec is None or codec.clock_rate != 8000:
            return
        offset = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10 and len(data) >= offset + 4:  # header extension
            offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)
        if end <= offset:
            return
        buffer = np.concatenate((self._buffer, codec.decode(data[offset:end])))
        if len(buffer) > self.max_samples:
            self.dropped_samples += len(buffer) - self.max_samples
            buffer = buffer[-self.max_samples :]
        self._buffer = buffer

    def take(self, frames: int = 1) -> np.ndarray:
        """The oldest ``frames`` x 20 ms of received audio, zero-padded; the last frame."""
        count = frames * _FRAME
        chunk, self._buffer = self._buffer[:count], self._buffer[count:]
        out = np.zeros(_FRAME, dtype=np.int32)
        tail = chunk[-_FRAME:] if len(chunk) > (frames - 1) * _FRAME else chunk[:0]
        out[: len(tail)] = tail
        return out

    def send(self, samples: np.ndarray, skipped: int) -> None:
        if skipped:
            self.stream.advance(skipped * _FRAME)
        data = self.stream.packet(self.codec.encode(samples), marker=self._first or bool(skipped))
        self._first = False
        self.stream.advance(_FRAME)
        self.leg.send_rtp(data)


class Conference:
    """Mixes N legs; runs a 20 ms tick on ``clock`` while anyone is in it."""

    log = Logger()

    def __init__(self, clock: Any, *, max_frames: int = 5) -> None:
        self.clock = clock
        self.max_frames = max_frames
        self.participants: dict[int, Participant] = {}  # by id(leg), in joining order
        self._call: Any = None
        self._start = 0.0
        self._ticks = 0

    def __len__(self) -> int:
        return len(self.participants)

    def add(self, leg: Any, codec: str | int | Codec = "PCMU", *,
            ssrc: int | None = None) -> Participant:
        """Join ``leg`` (sending to it with ``codec``); returns its participant."""
        if id(leg) in self.participants:
            return self.participants[id(leg)]
        found = resolve_codec(codec)
        assert found.payload_type is not None
        participant = Participant(leg, found, RtpStream(found.payload_type, ssrc=ssrc),
                                  self.max_frames)
        self.participants[id(leg)] = participant
        leg.listeners.append(participant.receive)
        if self._call is None:
            self._start = self.clock.seconds()
            self._ticks = 0
            self._schedule()
        return participant

    def remove(self, leg: Any) -> None:
        """Take ``leg`` out (idempotent); the tick stops with the last one."""
        participant = self.participants.pop(id(leg), None)
        if participant is not None and participant.receive in leg.listeners:
            leg.listeners.remove(participant.receive)
        if not self.participants:
            self.stop()

    def stop(self) -> None:
        """Stop mixing; every participant is taken out."""
        for participant in list(self.participants.values()):
            self.remove(participant.leg)
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _schedule(self) -> None:
        due = self._start + (self._ticks + 1) * _PTIME
        delay = max(0.0, due - self.clock.seconds() - _EPSILON * _PTIME / 2)
        self._call = self.clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        """Mix once for every tick due (by absolute time, so timer jitter never adds up)."""
        self._call = None
        count = math.floor((self.clock.seconds() - self._start) / _PTIME + _EPSILON) - self._ticks
        if count > 0:
            self._ticks += count
            self._mix(count)
        if self.participants:
            self._schedule()

    def _mix(self, count: int) -> None:
        people = list(self.participants.values())
        frames = np.stack([p.take(count) for p in people])
        for row, p in zip(frames, people, strict=True):
            if p.muted:
                row[:] = 0
        total = frames.sum(axis=0)
        mixes = np.clip(total[np.newaxis, :] - frames, -32768, 32767).astype(np.int16)
        for mix, p in zip(mixes, people, strict=True):
            try:
                p.send(mix, count - 1)
            except Exception:
                self.log.failure("conference: sending to a participant failed")
