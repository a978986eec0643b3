"""Tone generation and detection, through G.711 and packet loss, and WAV files."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from pbxd.rtp.codecs import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from pbxd.rtp.tones import (
    beep,
    busy,
    dominant_frequency,
    has_tone,
    read_wav,
    ringback,
    rms,
    silence,
    sine,
    tone,
    write_wav,
)

RATE = 8000
G711 = {
    "pcmu": lambda x: ulaw_decode(ulaw_encode(x)),
    "pcma": lambda x: alaw_decode(alaw_encode(x)),
}


def _drop_packets(samples: np.ndarray, fraction: float, seed: int = 7) -> np.ndarray:
    """Zero whole 20 ms frames, as a receiver without concealment hears lost packets."""
    frames = samples[: len(samples) // 160 * 160].reshape(-1, 160).copy()
    rng = np.random.default_rng(seed)
    frames[rng.random(len(frames)) < fraction] = 0
    return frames.reshape(-1)


def test_sine_has_the_requested_length_amplitude_and_type():
    s = sine(1000, 0.5, amplitude=10000)
    assert s.dtype == np.int16 and len(s) == 4000
    assert 9990 <= np.abs(s).max() <= 10000
    assert rms(s) == pytest.approx(10000 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize("freq", [350.0, 440.0, 697.0, 1004.0, 1633.0, 3000.0])
@pytest.mark.parametrize("law", sorted(G711))
def test_dominant_frequency_of_a_g711_tone_is_within_one_hz(freq, law):
    assert dominant_frequency(G711[law](sine(freq, 0.5)), RATE) == pytest.approx(freq, abs=1.0)


@pytest.mark.parametrize("law", sorted(G711))
def test_has_tone_tells_440_from_880_after_g711(law):
    a, b = G711[law](sine(440, 1.0)), G711[law](sine(880, 1.0))
    assert has_tone(a, 440) and not has_tone(a, 880)
    assert has_tone(b, 880) and not has_tone(b, 440)


def test_has_tone_survives_lost_packets():
    received = _drop_packets(G711["pcmu"](sine(440, 2.0)), fraction=0.2)
    assert (received == 0).any()
    assert has_tone(received, 440)
    assert dominant_frequency(received) == pytest.approx(440, abs=2)


def test_silence_and_noise_have_no_tone():
    assert not has_tone(silence(1.0), 440)
    assert dominant_frequency(silence(1.0)) == 0.0
    noise = np.random.default_rng(3).normal(0, 4000, RATE).astype(np.int16)
    assert not any(has_tone(noise, f) for f in (350, 440, 480, 620, 1000))
    quiet = G711["pcmu"](sine(440, 1.0, amplitude=40))  # below line-noise level
    assert not has_tone(quiet, 440)


def test_a_tone_buried_in_noise_is_still_found():
    noisy = sine(440, 1.0, amplitude=4000) + np.random.default_rng(5).normal(0, 1000, RATE)
    samples = G711["pcma"](np.clip(noisy, -32768, 32767).astype(np.int16))
    assert has_tone(samples, 440) and not has_tone(samples, 620)


def test_mixed_two_tone_recording_holds_both_tones():
    mix = G711["pcmu"](tone((440.0, 880.0), 1.0))
    assert has_tone(mix, 440) and has_tone(mix, 880)
    assert not has_tone(mix, 660)
    # a recording holding one tone after the other holds both as well
    both = np.concatenate([sine(440, 0.5), sine(880, 0.5)])
    assert has_tone(both, 440) and has_tone(both, 880)


def test_us_ringback_is_440_plus_480_two_seconds_on_four_off():
    r = ringback(12.0)
    assert len(r) == 12 * RATE
    on = np.abs(r.reshape(-1, RATE // 10)).max(axis=1) > 0  # per 100 ms
    assert on.tolist() == ([True] * 20 + [False] * 40) * 2
    assert has_tone(r, 440) and has_tone(r, 480) and not has_tone(r, 620)


def test_us_busy_is_480_plus_620_half_second_cadence():
    b = busy(2.0)
    on = np.abs(b.reshape(-1, RATE // 10)).max(axis=1) > 0
    assert on.tolist() == ([True] * 5 + [False] * 5) * 2
    assert has_tone(b, 480) and has_tone(b, 620) and not has_tone(b, 440)


def test_other_countries_and_unknown_ones():
    assert has_tone(ringback(5.0, country="eu"), 425)
    with pytest.raises(ValueError, match="country 'xx'"):
        ringback(1.0, country="xx")


def test_beep_is_a_short_ramped_1khz_tone():
    b = beep()
    assert len(b) == 2000
    assert abs(int(b[0])) < 50 and abs(int(b[-1])) < 200
    assert dominant_frequency(b) == pytest.approx(1000, abs=2)


def test_rms_of_empty_and_constant_signals():
    assert rms(np.array([], dtype=np.int16)) == 0.0
    assert rms(np.full(10, -300, dtype=np.int16)) == pytest.approx(300)


def test_wav_round_trip_is_8khz_mono_s16le(tmp_path):
    path = tmp_path / "tone.wav"
    samples = busy(1.0)
    write_wav(path, samples)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
    rate, back = read_wav(path)
    assert rate == 8000 and back.dtype == np.int16
    assert np.array_equal(back, samples)


def test_read_wav_mixes_stereo_to_mono_and_refuses_8_bit(tmp_path):
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.array([100, 300, -100, -300], dtype="<i2").tobytes())
    rate, mono = read_wav(stereo)
    assert rate == 16000 and mono.tolist() == [200, -200]
    eight = tmp_path / "eight.wav"
    with wave.open(str(eight), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80\x80")
    with pytest.raises(ValueError, match="8-bit"):
        read_wav(eight)
