"""Audio helpers for integration tests: write a sine WAV, measure what arrived.

WAVs are 8 kHz mono signed 16-bit little endian (what baresip's aufile sends
and sndfile writes). Frequency analysis uses ``pbxd.rtp.tones`` when it offers
``dominant_frequency``, else the numpy FFT here (same idea).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

RATE = 8000


def write_tone_wav(
    path: Path | str,
    frequency: float,
    seconds: float,
    *,
    rate: int = RATE,
    amplitude: float = 0.5,
    frequencies: tuple[float, ...] = (),
) -> Path:
    """A sine (or sum of sines: ``frequencies``) WAV, 8 kHz mono S16LE by default."""
    t = np.arange(int(seconds * rate)) / rate
    freqs = (frequency, *frequencies)
    signal = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    samples = np.clip(signal * amplitude * 32767, -32768, 32767).astype("<i2")
    path = Path(path)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """Samples (float in -1..1, first channel) and the sample rate of a 16-bit WAV."""
    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        raw = wav.readframes(wav.getnframes())
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples, expected 16-bit")
    samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)[:, 0]
    return samples.astype(np.float64) / 32768.0, rate


def _fft_dominant(samples: np.ndarray, rate: int) -> float:
    if len(samples) < 64 or not np.any(samples):
        return 0.0
    windowed = (samples - samples.mean()) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    spectrum[0] = 0.0
    peak = int(np.argmax(spectrum))
    # parabolic interpolation around the peak bin for sub-bin accuracy
    if 0 < peak < len(spectrum) - 1:
        a, b, c = spectrum[peak - 1], spectrum[peak], spectrum[peak + 1]
        denom = a - 2 * b + c
        peak = peak + (0.5 * (a - c) / denom if denom else 0.0)
    return float(peak * rate / len(windowed))


def dominant_frequency(samples: np.ndarray, rate: int = RATE) -> float:
    """The strongest frequency in Hz (0.0 for silence)."""
    try:
        from pbxd.rtp import tones  # noqa: PLC0415 - optional, lands with the media layer

        func = getattr(tones, "dominant_frequency", None)
    except ImportError:
        func = None
    if func is not None:
        try:
            return float(func(samples, rate))
        except TypeError:
            pass
    return _fft_dominant(samples, rate)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples)))) if len(samples) else 0.0


def wav_dominant_frequency(path: Path | str, *, skip: float = 0.2) -> float:
    """Dominant frequency of a WAV, ignoring the first ``skip`` seconds (call setup)."""
    samples, rate = read_wav(path)
    return dominant_frequency(samples[int(skip * rate) :], rate)


def wav_has_tone(
    path: Path | str, frequency: float, *, tolerance: float = 15.0, min_rms: float = 0.01
) -> bool:
    """True when the WAV's dominant frequency is ``frequency`` ± ``tolerance`` Hz and not silent."""
    samples, rate = read_wav(path)
    body = samples[int(0.2 * rate) :]
    if rms(body) < min_rms:
        return False
    return abs(dominant_frequency(body, rate) - frequency) <= tolerance


def describe_wav(path: Path | str) -> str:
    """One line for assertion messages: duration, level, dominant frequency."""
    samples, rate = read_wav(path)
    return (
        f"{path}: {len(samples) / rate:.2f}s rms={rms(samples):.4f} "
        f"dominant={dominant_frequency(samples, rate):.1f}Hz"
    )
