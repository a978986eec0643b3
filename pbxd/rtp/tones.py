"""Tone generation and detection, and 8 kHz mono WAV files (numpy, stdlib ``wave``).

Generators return int16 arrays at ``rate`` (8000 by default): :func:`sine`,
the call-progress tones :func:`ringback`, :func:`busy`, :func:`beep`.
Detectors work on int16 (or float) arrays: :func:`dominant_frequency` and
:func:`has_tone` use a Hann-windowed FFT; :func:`rms` measures level.
All of it is vectorised; nothing loops per sample.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from os import PathLike

import numpy as np

__all__ = [
    "CADENCES",
    "Cadence",
    "beep",
    "busy",
    "dominant_frequency",
    "has_tone",
    "read_wav",
    "ringback",
    "rms",
    "silence",
    "sine",
    "tone",
    "write_wav",
]

DEFAULT_RATE = 8000
DEFAULT_AMPLITUDE = 8000  # about -12 dBFS: loud enough, far from clipping after mixing


def silence(seconds: float, rate: int = DEFAULT_RATE) -> np.ndarray:
    """``seconds`` of digital silence."""
    return np.zeros(int(round(seconds * rate)), dtype=np.int16)


def tone(
    freqs: tuple[float, ...] | list[float],
    seconds: float,
    rate: int = DEFAULT_RATE,
    amplitude: float = DEFAULT_AMPLITUDE,
) -> np.ndarray:
    """A sum of sines, each of peak ``amplitude / len(freqs)`` (so the sum never clips)."""
    n = int(round(seconds * rate))
    t = np.arange(n, dtype=np.float64) / rate
    if not freqs:
        return np.zeros(n, dtype=np.int16)
    each = amplitude / len(freqs)
    signal = np.zeros(n, dtype=np.float64)
    for freq in freqs:  # one vector operation per component, not per sample
        signal += each * np.sin(2.0 * np.pi * freq * t)
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def sine(
    freq: float, seconds: float, rate: int = DEFAULT_RATE, amplitude: float = DEFAULT_AMPLITUDE
) -> np.ndarray:
    """A sine of ``freq`` Hz, ``seconds`` long, peak ``amplitude``, as int16."""
    return tone((freq,), seconds, rate, amplitude)


@dataclass(frozen=True, slots=True)
class Cadence:
    """A call-progress tone: frequencies and an on/off pattern in seconds."""

    freqs: tuple[float, ...]
    pattern: tuple[float, ...]  # on, off, on, off ...

    def render(
        self, seconds: float, rate: int = DEFAULT_RATE, amplitude: float = DEFAULT_AMPLITUDE
    ) -> np.ndarray:
        """``seconds`` of the tone, starting at the beginning of its cadence."""
        n = int(round(seconds * rate))
        period = sum(self.pattern)
        signal = tone(self.freqs, seconds, rate, amplitude)
        phase = (np.arange(n) / rate) % period
        edges = np.cumsum(self.pattern)
        on = (np.searchsorted(edges, phase, side="right") % 2) == 0
        return np.where(on, signal, 0).astype(np.int16)


CADENCES: dict[str, dict[str, Cadence]] = {
    "us": {
        "ringback": Cadence((440.0, 480.0), (2.0, 4.0)),
        "busy": Cadence((480.0, 620.0), (0.5, 0.5)),
        "congestion": Cadence((480.0, 620.0), (0.25, 0.25)),
        "dial": Cadence((350.0, 440.0), (1.0, 0.0)),
    },
    "uk": {
        "ringback": Cadence((400.0, 450.0), (0.4, 0.2, 0.4, 2.0)),
        "busy": Cadence((400.0,), (0.375, 0.375)),
        "congestion": Cadence((400.0,), (0.4, 0.35, 0.225, 0.525)),
        "dial": Cadence((350.0, 440.0), (1.0, 0.0)),
    },
    "eu": {  # CEPT / ETSI TR 101 041
        "ringback": Cadence((425.0,), (1.0, 4.0)),
        "busy": Cadence((425.0,), (0.5, 0.5)),
        "congestion": Cadence((425.0,), (0.2, 0.2)),
        "dial": Cadence((425.0,), (1.0, 0.0)),
    },
}
"""Call-progress tones by country code; add a country by adding an entry."""


def _cadence(name: str, country: str) -> Cadence:
    try:
        return CADENCES[country.lower()][name]
    except KeyError:
        raise ValueError(f"no {name} tone for country {country!r}") from None


def ringback(
    seconds: float = 6.0,
    country: str = "us",
    rate: int = DEFAULT_RATE,
    amplitude: float = DEFAULT_AMPLITUDE,
) -> np.ndarray:
    """Ringback (US: 440+480 Hz, 2 s on, 4 s off)."""
    return _cadence("ringback", country).render(seconds, rate, amplitude)


def busy(
    seconds: float = 1.0,
    country: str = "us",
    rate: int = DEFAULT_RATE,
    amplitude: float = DEFAULT_AMPLITUDE,
) -> np.ndarray:
    """Busy tone (US: 480+620 Hz, 0.5 s on, 0.5 s off)."""
    return _cadence("busy", country).render(seconds, rate, amplitude)


def beep(
    freq: float = 1000.0,
    seconds: float = 0.25,
    rate: int = DEFAULT_RATE,
    amplitude: float = DEFAULT_AMPLITUDE,
) -> np.ndarray:
    """A short beep (voicemail "record after the tone"), with 5 ms ramps against clicks."""
    samples = sine(freq, seconds, rate, amplitude).astype(np.float64)
    ramp = min(int(rate * 0.005), len(samples) // 2)
    if ramp:
        window = np.linspace(0.0, 1.0, ramp, endpoint=False)
        samples[:ramp] *= window
        samples[-ramp:] *= window[::-1]
    return np.round(samples).astype(np.int16)


def rms(samples: np.ndarray) -> float:
    """Root mean square level of the samples (0.0 for an empty array)."""
    data = np.asarray(samples, dtype=np.float64)
    return float(np.sqrt(np.mean(data * data))) if data.size else 0.0


def _spectrum(samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(samples, dtype=np.float64)
    data = data - data.mean()
    power = np.abs(np.fft.rfft(data * np.hanning(data.size))) ** 2
    freqs = np.fft.rfftfreq(data.size, 1.0 / rate)
    return freqs, power


def dominant_frequency(samples: np.ndarray, rate: int = DEFAULT_RATE) -> float:
    """The strongest frequency in Hz (Hann window, parabolic peak interpolation).

    Returns 0.0 for fewer than 3 samples or a signal with no energy.
    """
    if len(samples) < 3:
        return 0.0
    freqs, power = _spectrum(samples, rate)
    if not power.any():
        return 0.0
    k = int(np.argmax(power[1:])) + 1
    if k < len(power) - 1:
        a, b, c = np.log(power[k - 1 : k + 2] + 1e-12)
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom else 0.0
    else:
        shift = 0.0
    return float((k + shift) * (freqs[1] - freqs[0]))


def has_tone(
    samples: np.ndarray,
    freq: float,
    rate: int = DEFAULT_RATE,
    tolerance_hz: float = 15.0,
    min_ratio: float = 0.2,
    min_rms: float = 100.0,
) -> bool:
    """True when ``freq`` carries at least ``min_ratio`` of the signal's energy.

    Energy within ``tolerance_hz`` (plus the window's main lobe) of ``freq`` is
    compared with the total; this holds for a tone mixed with another tone (a
    440+480 Hz ringback has each at about half), with G.711 quantisation noise,
    and with gaps of silence from lost packets.  Signals quieter than
    ``min_rms`` (silence, line hiss) never have a tone.
    """
    data = np.asarray(samples, dtype=np.float64)
    if data.size < 16 or rms(data - data.mean()) < min_rms:
        return False
    freqs, power = _spectrum(data, rate)
    total = power.sum()
    if total <= 0:
        return False
    lobe = 2.0 * rate / data.size  # Hann main lobe half-width
    band = np.abs(freqs - freq) <= tolerance_hz + lobe
    return bool(power[band].sum() / total >= min_ratio)


def read_wav(path: str | PathLike[str]) -> tuple[int, np.ndarray]:
    """Read a 16-bit PCM WAV file; returns ``(rate, mono int16 samples)``.

    Stereo (or more) channels are averaged to mono; other sample widths raise
    ValueError.
    """
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * wav.getsampwidth()}-bit WAV, expected 16-bit")
        rate = wav.getframerate()
        channels = wav.getnchannels()
        frames = wav.readframes(wav.getnframes())
    data = np.frombuffer(frames, dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).round()
    return rate, data.astype(np.int16)


def write_wav(path: str | PathLike[str], samples: np.ndarray, rate: int = DEFAULT_RATE) -> None:
    """Write mono 16-bit little-endian PCM samples as a WAV file."""
    data = np.asarray(samples, dtype=np.int16).astype("<i2", copy=False)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(data.tobytes())
