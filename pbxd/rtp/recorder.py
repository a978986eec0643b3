"""Recording one or both directions of a call to a WAV file (layer 2).

A :class:`Recorder` is fed raw RTP packets (``feed_a``/``feed_b``, which fit
``LegMedia.listeners``), decodes G.711 by payload type and places the audio by
RTP timestamp on the recording's timeline: packets wait in a per-direction
jitter buffer for ``jitter_seconds``, lost packets leave silence, duplicates
and packets later than the buffer are dropped, and a stream that restarts
(new SSRC, or a timestamp jump of more than ``resync_seconds``) is re-anchored
to the clock. Other payloads (telephone-events, comfort noise) are ignored.

The two directions are mixed into one mono track (sum, clipped) or written as
stereo, one party per channel. The WAV file is written as the call goes: its
header's sizes are brought up to date and flushed every ``header_seconds``, so
a crash leaves a readable file. :meth:`Recorder.stop` writes the final header
and ``os.fsync``\\ s the file and its directory before :attr:`Recorder.stopped`
fires: a voicemail is on disk before the caller hears "saved".

Recording stops by itself after ``max_seconds`` (reason ``"max"``) or after
``silence_seconds`` with the mixed level under ``silence_threshold`` RMS
(reason ``"silence"``; the trailing silence is cut off).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbxd.rtp.codecs import codec_for_payload_type
from pbxd.rtp.packet import RtpPacket, RTPParseError

__all__ = ["RATE", "Recorder", "Recording"]

RATE = 8000
_FRAME = 160  # silence is judged per 20 ms
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
RunBlocking = Callable[[Callable[[], Any]], "Deferred[Any]"]


@dataclass(frozen=True, slots=True)
class Recording:
    """What a finished recording is: where, how long, and why it stopped."""

    path: str
    seconds: float
    reason: str


def wav_header(channels: int, data_bytes: int, rate: int = RATE) -> bytes:
    """The 44-byte header of a 16-bit PCM WAV file holding ``data_bytes`` of samples."""
    return _HEADER.pack(
        b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, channels, rate,
        rate * channels * 2, channels * 2, 16, b"data", data_bytes,
    )


class _Direction:
    """One party's audio: timestamp anchor and the jitter buffer (position -> samples)."""

    __slots__ = ("ssrc", "base_ts", "base_pos", "pending", "packets", "dropped", "ignored",
                 "resyncs")

    def __init__(self) -> None:
        self.ssrc: int | None = None
        self.base_ts = 0
        self.base_pos = 0
        self.pending: dict[int, np.ndarray] = {}
        self.packets = 0
        self.dropped = 0  # duplicates and packets too late for the buffer
        self.ignored = 0  # not G.711 audio, or malformed
        self.resyncs = 0

    def render(self, start: int, end: int) -> np.ndarray:
        """Take the buffered audio for ``[start, end)`` (zeros where none) as int32."""
        out = np.zeros(end - start, dtype=np.int32)
        for pos in sorted(p for p in self.pending if p < end):
            samples = self.pending.pop(pos)
            stop = pos + len(samples)
            if stop > end:  # keep what falls after this block for the next one
                self.pending.setdefault(end, samples[end - pos :])
                samples, stop = samples[: end - pos], end
            if pos < start:
                samples, pos = samples[start - pos :], start
            out[pos - start : stop - start] = samples
        return out

    def last_end(self) -> int:
        return max((p + len(s) for p, s in self.pending.items()), default=0)


class Recorder:
    """Records RTP from up to two directions into an 8 kHz 16-bit WAV file."""

    log = Logger()

    def __init__(
        self,
        clock: Any,
        path: str | PathLike[str],
        *,
        channels: int = 1,
        max_seconds: float | None = None,
        silence_seconds: float | None = None,
        silence_threshold: float = 300.0,
        on_stop: Callable[[Recording], Any] | None = None,
        jitter_seconds: float = 0.1,
        resync_seconds: float = 1.0,
        header_seconds: float = 1.0,
        tick_seconds: float = 0.02,
        run_blocking: RunBlocking | None = None,
    ) -> None:
        """Open ``path`` (FileNotFoundError if its directory is missing) and start.

        ``run_blocking(f)`` runs the closing ``fsync``\\ s and returns a Deferred;
        by default they run at once on the reactor thread (pass a thread pool's
        ``deferToThreadPool`` in production to keep the reactor free).
        """
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        self.clock = clock
        self.path = os.fspath(path)
        self.channels = channels
        self.max_frames = None if max_seconds is None else int(round(max_seconds * RATE))
        self.silence_frames = None if not silence_seconds else int(round(silence_seconds * RATE))
        self.silence_threshold = silence_threshold
        self.jitter = int(round(jitter_seconds * RATE))
        self.resync = int(round(resync_seconds * RATE))
        self.header_frames = max(1, int(round(header_seconds * RATE)))
        self._run_blocking: RunBlocking = run_blocking or (lambda f: maybeDeferred(f))
        self.a = _Direction()
        self.b = _Direction()
        self.frames = 0  # written to the file
        self.last_loud = 0  # end of the last loud 20 ms, in frames
        self._header_at = 0
        self._stopping = False
        self.stopped: Deferred[Recording] = Deferred()
        """Fires with the :class:`Recording` once the file is complete and fsync'ed."""
        if on_stop is not None:
            self.stopped.addCallback(self._call_on_stop, on_stop)
        self._file = open(self.path, "wb")  # noqa: SIM115 (kept open while recording)
        self._file.write(wav_header(channels, 0))
        self._start = clock.seconds()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock
        self._loop.start(tick_seconds, now=False).addErrback(self._failed)

    # -- input ------------------------------------------------------------

    def feed_a(self, data: bytes) -> None:
        """An RTP packet of the first party (a ``LegMedia.listeners`` callable)."""
        self._feed(self.a, data)

    def feed_b(self, data: bytes) -> None:
        """An RTP packet of the second party."""
        self._feed(self.b, data)

    def _wall(self) -> int:
        return int((self.clock.seconds() - self._start) * RATE + 1e-6)

    def _feed(self, d: _Direction, data: bytes) -> None:
        if self._stopping:
            return
        try:
            packet = RtpPacket.parse(data)
        except RTPParseError:
            d.ignored += 1
            return
        codec = codec_for_payload_type(packet.payload_type)
        if codec is None or codec.clock_rate != RATE or not packet.payload:
            d.ignored += 1
            return
        samples = codec.decode(packet.payload)
        wall = self._wall()
        offset = (packet.timestamp - d.base_ts) & 0xFFFFFFFF
        pos = d.base_pos + (offset - (1 << 32) if offset & 0x80000000 else offset)
        if d.ssrc != packet.ssrc or abs(pos + len(samples) - wall) > self.resync:
            if d.ssrc is not None:
                d.resyncs += 1
            d.ssrc, d.base_ts = packet.ssrc, packet.timestamp
            d.base_pos = pos = max(wall - len(samples), self.frames, d.last_end(), 0)
        if pos + len(samples) <= self.frames or pos in d.pending:
            d.dropped += 1
            return
        d.packets += 1
        d.pending[pos] = samples

    # -- output -----------------------------------------------------------

    @property
    def seconds(self) -> float:
        """Seconds of audio written so far."""
        return self.frames / RATE

    def _tick(self) -> None:
        wall = self._wall()
        if self.max_frames is not None and wall >= self.max_frames:
            self.stop("max")
            return
        if wall - self.jitter > self.frames:
            self._commit(wall - self.jitter)
        if (
            self.silence_frames is not None
            and self.frames - self.last_loud >= self.silence_frames
        ):
            self.stop("silence")

    def _commit(self, end: int) -> None:
        """Mix and write the timeline up to frame ``end``."""
        if self.max_frames is not None:
            end = min(end, self.max_frames)
        start = self.frames
        if end <= start:
            return
        a, b = self.a.render(start, end), self.b.render(start, end)
        mixed = np.clip(a + b, -32768, 32767).astype("<i2")
        if self.channels == 1:
            out = mixed
        else:
            out = np.column_stack((a, b)).astype("<i2").ravel()
        self._file.write(out.tobytes())
        self.frames = end
        self._track_level(mixed, start)
        if self.frames - self._header_at >= self.header_frames:
            self._write_header()
            self._file.flush()

    def _track_level(self, mixed: np.ndarray, start: int) -> None:
        count = -(-len(mixed) // _FRAME)
        padded = np.zeros(count * _FRAME, dtype=np.float64)
        padded[: len(mixed)] = mixed
        blocks = padded.reshape(count, _FRAME)
        sizes = np.full(count, _FRAME)
        sizes[-1] = len(mixed) - (count - 1) * _FRAME
        levels = np.sqrt((blocks * blocks).sum(axis=1) / sizes)
        loud = np.nonzero(levels >= self.silence_threshold)[0]
        if len(loud):
            self.last_loud = min(start + (int(loud[-1]) + 1) * _FRAME, start + len(mixed))

    def _write_header(self) -> None:
        here = self._file.tell()
        self._file.seek(0)
        self._file.write(wav_header(self.channels, self.frames * self.channels * 2))
        self._file.seek(here)
        self._header_at = self.frames

    # -- stopping ---------------------------------------------------------

    def stop(self, reason: str = "stopped") -> Deferred[Recording]:
        """Stop, flush everything buffered, make the file durable; returns :attr:`stopped`.

        Idempotent: later calls return the same Deferred (the first reason wins).
        """
        if self._stopping:
            return self.stopped
        self._stopping = True
        if self._loop.running:
            self._loop.stop()
        try:
            self._commit(max(self._wall(), self.a.last_end(), self.b.last_end()))
            if reason == "silence":
                self.frames = min(self.frames, self.last_loud)
                self._file.truncate(44 + self.frames * self.channels * 2)
                self._file.seek(0, os.SEEK_END)
            self._write_header()
        except Exception:
            self._abort(Failure())
            return self.stopped
        recording = Recording(self.path, self.frames / RATE, reason)
        self.log.info(
            "recorded {seconds:.2f} s to {path} ({reason})",
            seconds=recording.seconds, path=self.path, reason=reason,
        )
        d = self._run_blocking(self._make_durable)
        d.addCallbacks(lambda _: self.stopped.callback(recording), self._abort)
        return self.stopped

    def _make_durable(self) -> None:
        """Flush and fsync the file, close it, fsync its directory (blocking)."""
        f = self._file
        f.flush()
        os.fsync(f.fileno())
        f.close()
        directory = os.path.dirname(os.path.abspath(self.path))
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _failed(self, failure: Failure) -> None:
        self.log.failure("recording to {path} failed", failure, path=self.path)
        self._stopping = True
        self._abort(failure)

    def _abort(self, failure: Failure) -> None:
        if not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass
        if not self.stopped.called:
            self.stopped.errback(failure)

    def _call_on_stop(self, recording: Recording, on_stop: Callable[[Recording], Any]) -> Recording:
        try:
            on_stop(recording)
        except Exception:
            self.log.failure("on_stop callback of the recording to {path}", path=self.path)
        return recording

    def stats(self) -> dict[str, dict[str, int]]:
        """Per-direction counters: packets placed, dropped, ignored, resyncs."""
        return {
            name: {"packets": d.packets, "dropped": d.dropped, "ignored": d.ignored,
                   "resyncs": d.resyncs}
            for name, d in (("a", self.a), ("b", self.b))
        }
