"""Prompt playback to one phone, paced on the clock (layer 2).

A :class:`Player` sends audio to a leg (anything with ``send_rtp(bytes)`` and
``dtmf_pt``, normally a :class:`~pbxd.rtp.relay.LegMedia`) as 20 ms G.711
frames. Prompts queue up and play back to back; each :meth:`Player.play`
returns a Deferred firing with :data:`DONE` once its audio has been sent, or
with the reason given to :meth:`Player.stop`.

RTP stays continuous for the whole life of a player: sequence numbers go up by
one per packet, timestamps by 160 per 20 ms of clock time (including the time
nothing played, so the phone's jitter buffer sees true time), and the first
packet after a pause carries the marker bit.

Pacing: frame *k* of a run is due at ``start + k * ptime``; each wake-up sends
every frame that is due and sleeps until the next one, so timer jitter never
accumulates. When the reactor was late by more than ``max_burst`` frames the
run skips the excess time (timestamps jump, marker bit set) and sends
``max_burst`` frames at once: no audio is lost and the phone is not flooded.
"""

from __future__ import annotations

import math
import os
import struct
from collections import deque
from os import PathLike
from typing import Any

import numpy as np
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbxd.rtp import tones
from pbxd.rtp.codecs import Codec, codec_for_name, codec_for_payload_type
from pbxd.rtp.dtmf import DtmfGenerator, event_for_digit
from pbxd.rtp.sources import AudioSource, MusicOnHold, SampleSource, ToneSource, as_source

__all__ = [
    "DONE",
    "STOPPED",
    "MusicOnHold",
    "Player",
    "RtpStream",
    "SampleSource",
    "ToneSource",
    "resolve_codec",
]

DONE = "done"
"""What a play Deferred fires with when all of its audio was sent."""
STOPPED = "stopped"
"""The default reason :meth:`Player.stop` fires pending plays with."""

_HEADER = struct.Struct("!BBHII")
_SAMPLE_WISE = frozenset({"PCMU", "PCMA"})  # codecs that encode each sample on its own
_RANDOM = struct.Struct("!IHI")  # a random SSRC, first sequence number and timestamp
_EPSILON = 1e-6  # in frames: absorbs float error of clock arithmetic

# Low and high group of in-band DTMF (ITU-T Q.23), by RFC 4733 event code 0-15.
_DTMF_LOW = (941, 697, 697, 697, 770, 770, 770, 852, 852, 852, 941, 941, 697, 770, 852, 941)
_DTMF_HIGH = (1336, 1209, 1336, 1477, 1209, 1336, 1477, 1209, 1336, 1477, 1209, 1477,
              1633, 1633, 1633, 1633)


def resolve_codec(codec: str | int | Codec) -> Codec:
    """A registered 8 kHz codec by name ('PCMU'), static payload type (0) or itself."""
    if isinstance(codec, Codec):
        found: Codec | None = codec
    elif isinstance(codec, int):
        found = codec_for_payload_type(codec)
    else:
        found = codec_for_name(codec)
    if found is None or found.payload_type is None:
        raise ValueError(f"no G.711-style codec {codec!r} to play with")
    if found.clock_rate != 8000:
        raise ValueError(f"codec {found.name} runs at {found.clock_rate} Hz; players play 8 kHz")
    return found


class RtpStream:
    """The SSRC, sequence number and timestamp of one RTP stream we originate.

    Initial values are random (RFC 3550 §5.1) unless given.
    """

    def __init__(
        self,
        payload_type: int,
        *,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        self.payload_type = payload_type
        if ssrc is None or sequence is None or timestamp is None:  # one system call for all
            r_ssrc, r_seq, r_ts = _RANDOM.unpack(os.urandom(_RANDOM.size))
        self.ssrc = r_ssrc if ssrc is None else ssrc & 0xFFFFFFFF
        self.sequence = r_seq if sequence is None else sequence & 0xFFFF
        self.timestamp = r_ts if timestamp is None else timestamp & 0xFFFFFFFF

    def packet(
        self,
        payload: bytes,
        *,
        marker: bool = False,
        timestamp: int | None = None,
        payload_type: int | None = None,
    ) -> bytes:
        """A packet with the next sequence number (at :attr:`timestamp` unless given)."""
        pt = self.payload_type if payload_type is None else payload_type
        ts = self.timestamp if timestamp is None else timestamp
        data = _HEADER.pack(
            0x80, (0x80 if marker else 0) | pt, self.sequence, ts & 0xFFFFFFFF, self.ssrc
        )
        self.sequence = (self.sequence + 1) & 0xFFFF
        return data + payload

    def advance(self, samples: int) -> None:
        """Move the timestamp on by ``samples``."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF


class _Item:
    """One queued thing to send: audio or a telephone-event digit."""

    def __init__(self) -> None:
        self.deferred: Deferred[str] = Deferred(self._cancel)
        self.player: Player | None = None

    def _cancel(self, _d: Deferred[str]) -> None:
        if self.player is not None:
            self.player._discard(self)

    def next_packet(self, player: Player) -> bytes | None:  # pragma: no cover - abstract
        raise NotImplementedError


class _Audio(_Item):
    def __init__(self, source: AudioSource, loop: bool) -> None:
        super().__init__()
        self.source = source
        self.loop = loop

    def next_packet(self, player: Player) -> bytes | None:
        size = player.samples_per_frame
        source = self.source
        codec = player.codec
        if type(source) is ToneSource and codec.name in _SAMPLE_WISE:  # ring-back &c.
            payload = source.read_encoded(size, codec.name, codec.encode)
            if payload is not None:
                return player._audio_packet(payload)
        frame = source.read(size)
        if self.loop and len(frame) < size:
            self.source.rewind()
            rest = self.source.read(size - len(frame))
            if not len(rest) and not len(frame):
                return None  # an empty source cannot loop
            frame = np.concatenate((frame, rest))
        if not len(frame):
            return None
        if len(frame) < size:
            frame = np.concatenate((frame, np.zeros(size - len(frame), dtype=np.int16)))
        return player._audio_packet(player.codec.encode(frame))


class _Dtmf(_Item):
    def __init__(self, digit: str, duration_ms: int) -> None:
        super().__init__()
        self.digit = digit
        self.duration_ms = duration_ms
        self.events: list[bytes] | None = None
        self.start = 0

    def next_packet(self, player: Player) -> bytes | None:
        stream = player.stream
        if self.events is None:
            generator = DtmfGenerator(player.dtmf_payload_type or 0, stream.ssrc)
            self.events = [e.serialize() for e in generator.events(self.digit, self.duration_ms)]
            self.start = stream.timestamp
            first = True
        else:
            first = False
        if not self.events:
            return None
        return stream.packet(
            self.events.pop(0),
            marker=first,
            timestamp=self.start,
            payload_type=player.dtmf_payload_type,
        )


class Player:
    """Plays queued audio and DTMF to one leg, one 20 ms packet per tick of ``clock``."""

    log = Logger()

    def __init__(
        self,
        clock: Any,
        leg: Any,
        codec: str | int | Codec = "PCMU",
        *,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        ptime_ms: int = 20,
        max_burst: int = 5,
    ) -> None:
        self.clock = clock
        self.leg = leg
        self.codec = resolve_codec(codec)
        assert self.codec.payload_type is not None
        self.stream = RtpStream(
            self.codec.payload_type, ssrc=ssrc, sequence=sequence, timestamp=timestamp
        )
        self.ptime = ptime_ms / 1000.0
        self.samples_per_frame = self.codec.samples_per_packet(ptime_ms)
        self.max_burst = max(1, max_burst)
        self._queue: deque[_Item] = deque()
        self._call: Any = None
        self._start: float | None = None  # clock time of frame 0 of the current run
        self._frames = 0  # frames (ticks) of the current run used so far
        self._marker = True
        self.late_frames = 0
        """Frames of clock time skipped because the reactor was too late (statistics)."""

    # -- public API -----------------------------------------------------

    @property
    def ssrc(self) -> int:
        return self.stream.ssrc

    @property
    def playing(self) -> bool:
        """True while something is queued or being sent."""
        return bool(self._queue)

    @property
    def dtmf_payload_type(self) -> int | None:
        """The leg's negotiated telephone-event payload type, if any."""
        return getattr(self.leg, "dtmf_pt", None)

    def play(
        self, audio: AudioSource | np.ndarray | str | PathLike[str], *, loop: bool = False
    ) -> Deferred[str]:
        """Queue audio: int16 samples, an 8 kHz mono 16-bit WAV path, or an AudioSource.

        Returns a Deferred firing with :data:`DONE` when it has all been sent
        (never, with ``loop``, until stopped), or with the reason passed to
        :meth:`stop`. Bad files raise at once (FileNotFoundError, ValueError).
        Cancelling the Deferred removes this item only.
        """
        return self._enqueue(_Audio(as_source(audio), loop))

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> Deferred[str]:
        """Queue one digit: RFC 4733 telephone-events on the leg's ``dtmf_pt``,
        or in-band dual tones when the leg negotiated none."""
        code = event_for_digit(digit)
        if self.dtmf_payload_type is not None:
            return self._enqueue(_Dtmf(digit, duration_ms))
        if code > 15:
            raise ValueError(f"{digit!r} cannot be sent in-band")
        burst = tones.tone((_DTMF_LOW[code], _DTMF_HIGH[code]), duration_ms / 1000.0)
        gap = tones.silence(0.05)
        return self._enqueue(_Audio(SampleSource(np.concatenate((burst, gap))), False))

    def stop(self, reason: str = STOPPED) -> None:
        """Stop at once; every queued play's Deferred fires with ``reason``."""
        if self._call is not None:
            self._call.cancel()
            self._call = None
        if not self._queue:
            return
        items, self._queue = list(self._queue), deque()
        for item in items:
            item.player = None
            item.deferred.callback(reason)

    # -- pacing ---------------------------------------------------------

    def _enqueue(self, item: _Item) -> Deferred[str]:
        item.player = self
        self._queue.append(item)
        if self._call is None:
            self._resume()
        return item.deferred

    def _discard(self, item: _Item) -> None:
        item.player = None
        try:
            self._queue.remove(item)
        except ValueError:
            return
        if not self._queue and self._call is not None:
            self._call.cancel()
            self._call = None

    def _next_due(self) -> float:
        assert self._start is not None
        return self._start + self._frames * self.ptime

    def _resume(self) -> None:
        """Start sending after being idle: continue the run, or start a new one."""
        now = self.clock.seconds()
        if self._start is not None:
            due = self._next_due()
            if now <= due + _EPSILON * self.ptime:  # back to back with the last packet
                self._schedule(now)
                return
            self.stream.advance(int(round((now - due) * self.codec.clock_rate)))
        self._marker = True
        self._start = now
        self._frames = 0
        self._tick()

    def _schedule(self, now: float) -> None:
        delay = max(0.0, self._next_due() - now - _EPSILON * self.ptime / 2)
        self._call = self.clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._call = None
        if getattr(self.leg, "closed", False):
            self.stop("closed")
            return
        now = self.clock.seconds()
        assert self._start is not None
        due = math.floor((now - self._start) / self.ptime + _EPSILON) + 1 - self._frames
        if due > self.max_burst:
            skipped = due - self.max_burst
            self.log.debug("player {ssrc:08x} late by {n} frames", ssrc=self.ssrc, n=skipped)
            self.late_frames += skipped
            self._frames += skipped
            self.stream.advance(skipped * self.samples_per_frame)
            self._marker = True
            due = self.max_burst
        finished: list[_Item] = []
        for _ in range(due):
            if not self._send_one(finished):
                break
        if self._queue:
            self._schedule(now)
        for item in finished:
            item.player = None
            item.deferred.callback(DONE)

    def _send_one(self, finished: list[_Item]) -> bool:
        """Send the packet of one frame; False when nothing is left to send."""
        while self._queue:
            item = self._queue[0]
            data = item.next_packet(self)
            if data is not None:
                self.leg.send_rtp(data)
                self.stream.advance(self.samples_per_frame)
                self._frames += 1
                return True
            self._queue.popleft()
            finished.append(item)
        return False

    def _audio_packet(self, payload: bytes) -> bytes:
        data = self.stream.packet(payload, marker=self._marker)
        self._marker = False
        return data
