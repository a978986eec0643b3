"""Audio sources a :class:`~pbxd.rtp.player.Player` can play (numpy, stdlib ``wave``).

A source hands out int16 samples at 8 kHz in chunks (:class:`AudioSource`):
:class:`SampleSource` for an array or a WAV file, :class:`ToneSource` for
call-progress tones (ringback, busy, ...) from :mod:`pbxd.rtp.tones`, and
:class:`MusicOnHold` for a folder of WAV files played in a loop, shuffled or in
order. WAV files must already be 8 kHz mono 16-bit: pbxd does not resample,
and says so (with the sox command that converts) instead of playing noise.
Pure: no Twisted.
"""

from __future__ import annotations

import functools
import random
import wave
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from pbxd.rtp import tones

__all__ = [
    "RATE",
    "AudioSource",
    "MusicOnHold",
    "SampleSource",
    "ToneSource",
    "as_source",
    "load_wav",
]

RATE = 8000
"""The only sample rate sources produce (G.711)."""

_EMPTY = np.zeros(0, dtype=np.int16)


@runtime_checkable
class AudioSource(Protocol):
    """Something that produces 8 kHz int16 samples."""

    def read(self, count: int) -> np.ndarray:
        """Up to ``count`` samples (int16); an empty array when the source has ended."""

    def rewind(self) -> None:
        """Start again from the beginning (used by looping playback)."""


def load_wav(path: str | PathLike[str]) -> np.ndarray:
    """The samples of an 8 kHz mono 16-bit PCM WAV file.

    Raises FileNotFoundError for a missing file and ValueError for anything
    that is not a WAV file in that format (no resampling, no down-mixing).
    """
    name = str(path)
    try:
        with wave.open(name, "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{name}: not a PCM WAV file ({exc})") from None
    if (rate, channels, width) != (RATE, 1, 2):
        raise ValueError(
            f"{name}: {rate} Hz, {channels} channel(s), {8 * width}-bit; pbxd plays 8000 Hz "
            f"mono 16-bit WAV files and does not resample. Convert it with: "
            f"sox '{name}' -r 8000 -c 1 -b 16 out.wav"
        )
    _rate, samples = tones.read_wav(name)
    return samples


class SampleSource:
    """A finite array of samples (a prompt)."""

    def __init__(self, samples: np.ndarray, name: str = "") -> None:
        data = np.asarray(samples)
        if data.ndim != 1:
            raise ValueError(f"expected mono samples (1-D), got shape {data.shape}")
        if data.dtype != np.int16:
            if not np.issubdtype(data.dtype, np.number):
                raise ValueError(f"expected int16 samples, got {data.dtype}")
            data = np.clip(np.round(data), -32768, 32767).astype(np.int16)
        self.samples = data
        self.name = name
        self.position = 0

    @classmethod
    def from_wav(cls, path: str | PathLike[str]) -> SampleSource:
        """A source reading an 8 kHz mono 16-bit WAV file (see :func:`load_wav`)."""
        return cls(load_wav(path), name=str(path))

    def read(self, count: int) -> np.ndarray:
        chunk = self.samples[self.position : self.position + count]
        self.position += len(chunk)
        return chunk

    def rewind(self) -> None:
        self.position = 0

    def __repr__(self) -> str:
        return f"<SampleSource {self.name or len(self.samples)}>"


@functools.lru_cache(maxsize=64)
def _cadence_period(cadence: tones.Cadence, amplitude: float) -> np.ndarray:
    """One period of ``cadence``, rendered once per (cadence, amplitude) and shared
    read-only (rendering ring-back took 40 % of a dial's CPU when done per call)."""
    period = cadence.render(sum(cadence.pattern), amplitude=amplitude)
    period.flags.writeable = False
    return period


class ToneSource:
    """A call-progress tone from :data:`pbxd.rtp.tones.CADENCES`, one cadence rendered once.

    Plays ``seconds`` of the tone (whole cadences if None: endless, for ringback
    while a call rings). ``tone`` is a cadence name (``ringback``, ``busy``,
    ``congestion``, ``dial``), ``beep``, or a :class:`~pbxd.rtp.tones.Cadence`.
    """

    def __init__(
        self,
        tone: str | tones.Cadence = "ringback",
        *,
        country: str = "us",
        seconds: float | None = None,
        amplitude: float = tones.DEFAULT_AMPLITUDE,
    ) -> None:
        if isinstance(tone, tones.Cadence):
            cadence = tone
        elif tone == "beep":
            cadence = None
        else:
            try:
                cadence = tones.CADENCES[country.lower()][tone]
            except KeyError:
                raise ValueError(f"no {tone!r} tone for country {country!r}") from None
        self._key: tuple[tones.Cadence, float] | None = None
        if cadence is None:
            self.period = tones.beep(amplitude=amplitude)
            if seconds is None:
                seconds = len(self.period) / RATE
        else:
            self.period = _cadence_period(cadence, amplitude)
            self._key = (cadence, amplitude)
        if not len(self.period):
            raise ValueError("the tone's cadence is empty")
        self.total = None if seconds is None else int(round(seconds * RATE))
        self.position = 0

    def read(self, count: int) -> np.ndarray:
        if self.total is not None:
            count = min(count, self.total - self.position)
        if count <= 0:
            return _EMPTY
        start = self.position % len(self.period)
        index = (start + np.arange(count)) % len(self.period)  # wraps around the cadence
        self.position += count
        return self.period[index]

    def rewind(self) -> None:
        self.position = 0

    def read_encoded(self, count: int, name: str,
                     encode: Callable[[np.ndarray], bytes]) -> bytes | None:
        """``encode(self.read(count))`` for a sample-wise codec called ``name`` (G.711),
        cut from the cadence encoded once; None (nothing read) when it cannot be: fewer
        than ``count`` samples left, or a tone that is not a shared cadence."""
        key = self._key
        if key is None or (self.total is not None and self.total - self.position < count):
            return None
        encoded = _encoded_period(key[0], key[1], name, encode)
        size = len(encoded)
        start = self.position % size
        self.position += count
        end = start + count
        if end <= size:
            return encoded[start:end]
        out = encoded[start:]
        end -= size
        while end > size:  # a frame longer than the cadence (never for tones in use)
            out += encoded
            end -= size
        return out + encoded[:end]


@functools.lru_cache(maxsize=64)
def _encoded_period(cadence: tones.Cadence, amplitude: float, name: str,
                    encode: Callable[[np.ndarray], bytes]) -> bytes:
    """One period of ``cadence`` encoded with a sample-wise codec, once per process."""
    return encode(_cadence_period(cadence, amplitude))


class MusicOnHold:
    """Endless music from the ``*.wav`` files of a folder, shuffled or in name order.

    Files are read when their turn comes; an unreadable or wrongly formatted
    file is skipped (and remembered in :attr:`skipped`). ValueError when the
    folder holds no WAV file, or when no file of it can be played.
    """

    def __init__(
        self,
        folder: str | PathLike[str],
        *,
        shuffle: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() == ".wav")
        if not self.files:
            raise ValueError(f"{self.folder}: no .wav files for music on hold")
        self.shuffle = shuffle
        self._rng = rng or random.Random()
        self.skipped: dict[Path, str] = {}
        self.played: list[Path] = []
        """Files in the order they were started (for logs and tests)."""
        self._order: list[Path] = []
        self._current = _EMPTY
        self._position = 0

    def _next_file(self) -> None:
        for _attempt in range(2 * len(self.files)):
            if not self._order:
                self._order = list(self.files)
                if self.shuffle:
                    self._rng.shuffle(self._order)
            path = self._order.pop(0)
            if path in self.skipped:
                continue
            try:
                samples = load_wav(path)
            except (OSError, ValueError) as exc:
                self.skipped[path] = str(exc)
                continue
            if len(samples):
                self._current, self._position = samples, 0
                self.played.append(path)
                return
            self.skipped[path] = "empty"
        raise ValueError(f"{self.folder}: no playable WAV file: {self.skipped}")

    def read(self, count: int) -> np.ndarray:
        parts = []
        while count > 0:
            if self._position >= len(self._current):
                self._next_file()
            chunk = self._current[self._position : self._position + count]
            self._position += len(chunk)
            count -= len(chunk)
            parts.append(chunk)
        return np.concatenate(parts) if parts else _EMPTY

    def rewind(self) -> None:
        """Music on hold never ends; rewinding does nothing."""


def as_source(audio: AudioSource | np.ndarray | str | PathLike[str]) -> AudioSource:
    """An :class:`AudioSource` for samples, a WAV path, or a source (returned as is)."""
    if type(audio) in _SOURCES:  # the common case, without the protocol check below
        return audio  # type: ignore[return-value]
    if isinstance(audio, np.ndarray):
        return SampleSource(audio)
    if isinstance(audio, (str, PathLike)):
        return SampleSource.from_wav(audio)
    if isinstance(audio, AudioSource):
        return audio
    raise TypeError(f"cannot play {type(audio).__name__}: give samples, a WAV path or a source")


_SOURCES = (SampleSource, ToneSource, MusicOnHold)
