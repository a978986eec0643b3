"""Recorder: RTP from one or two parties to WAV, checked by reading the file back."""

from __future__ import annotations

import struct
import wave

import numpy as np
import pytest
from twisted.internet.task import Clock

from pbxd.rtp import recorder as recorder_module
from pbxd.rtp import tones
from pbxd.rtp.codecs import alaw_encode, ulaw_decode, ulaw_encode
from pbxd.rtp.recorder import Recorder


def rtp(seq: int, ts: int, payload: bytes, pt: int = 0, ssrc: int = 0xA, marker=0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (marker << 7), seq & 0xFFFF, ts & 0xFFFFFFFF,
                       ssrc) + payload


def packets(samples: np.ndarray, *, ts0: int = 0, seq0: int = 0, ssrc=0xA, encode=ulaw_encode,
            pt=0):
    """One 20 ms RTP packet per 160 samples."""
    return [
        rtp(seq0 + k, ts0 + 160 * k, encode(samples[160 * k : 160 * (k + 1)]), pt, ssrc)
        for k in range(len(samples) // 160)
    ]


def read(path) -> tuple[int, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getsampwidth()) == (8000, 2)
        channels = w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return channels, data.reshape(-1, channels) if channels > 1 else data


def feed_live(clock: Clock, schedule: list[tuple[int, list]]) -> None:
    """schedule: (tick, [callables]) — run each at tick * 20 ms."""
    for tick, calls in sorted(schedule, key=lambda x: x[0]):
        clock.advance(tick * 0.02 - clock.seconds())
        for call in calls:
            call()


def stopped(rec: Recorder) -> list:
    out: list = []
    rec.stopped.addBoth(out.append)
    return out


def test_one_party_recorded_sample_exact_despite_loss_reordering_and_duplicates(tmp_path):
    clock = Clock()
    rec = Recorder(clock, tmp_path / "r.wav")
    sine = tones.sine(440, 2.0)
    pkts = packets(sine, ts0=2**32 - 1600, seq0=65500)  # timestamps and sequence wrap
    order = [(k, pkts[k]) for k in range(100) if k != 10]  # packet 10 is lost
    order[19], order[20] = order[20], order[19]  # 20 and 21 arrive swapped (20 ms late)
    order.insert(30, order[29])  # a duplicate
    order.insert(60, (55, pkts[55]))  # a late duplicate after commit
    feed_live(clock, [(k, [lambda p=p: rec.feed_a(p)]) for k, p in order])
    clock.advance(0.02)
    result = stopped(rec)
    rec.stop("digit")
    assert result[0].reason == "digit" and result[0].path == str(tmp_path / "r.wav")
    channels, data = read(tmp_path / "r.wav")
    assert channels == 1
    expected = ulaw_decode(ulaw_encode(sine)).copy()
    expected[1600:1760] = 0  # the lost packet is silence
    assert len(data) == len(expected)
    assert np.array_equal(data, expected)
    assert result[0].seconds == pytest.approx(2.0)
    assert rec.stats()["a"]["dropped"] == 2


def _two_parties(tmp_path, channels: int):
    clock = Clock()
    path = tmp_path / f"call{channels}.wav"
    rec = Recorder(clock, path, channels=channels)
    a = packets(tones.sine(440, 1.0), ts0=123456, ssrc=0xAAAA)
    b = packets(tones.sine(880, 1.0), ts0=987654, ssrc=0xBBBB, encode=alaw_encode, pt=8)
    feed_live(clock, [(k, [lambda k=k: rec.feed_a(a[k]), lambda k=k: rec.feed_b(b[k])])
                      for k in range(50)])
    clock.advance(0.02)
    rec.stop()
    return read(path)


def test_two_parties_mixed_into_mono_holds_both_tones(tmp_path):
    channels, data = _two_parties(tmp_path, 1)
    assert channels == 1 and len(data) == 8000
    assert tones.has_tone(data, 440, min_ratio=0.4) and tones.has_tone(data, 880, min_ratio=0.4)


def test_two_parties_in_stereo_one_per_channel(tmp_path):
    channels, data = _two_parties(tmp_path, 2)
    assert channels == 2 and data.shape == (8000, 2)
    left, right = data[:, 0], data[:, 1]
    assert tones.has_tone(left, 440, min_ratio=0.9) and not tones.has_tone(left, 880)
    assert tones.has_tone(right, 880, min_ratio=0.9) and not tones.has_tone(right, 440)


def test_mono_mix_clips_instead_of_wrapping(tmp_path):
    clock = Clock()
    rec = Recorder(clock, tmp_path / "loud.wav")
    loud = np.full(1600, 30000, dtype=np.int16)
    pa, pb = packets(loud, ssrc=1), packets(loud, ssrc=2)
    feed_live(clock, [(k, [lambda k=k: rec.feed_a(pa[k]), lambda k=k: rec.feed_b(pb[k])])
                      for k in range(10)])
    clock.advance(0.02)
    rec.stop()
    _, data = read(tmp_path / "loud.wav")
    assert data.min() > 0 and data.max() == 32767


def test_non_audio_payloads_are_ignored(tmp_path):
    clock = Clock()
    rec = Recorder(clock, tmp_path / "r.wav")
    rec.feed_a(rtp(1, 0, b"\x05\x0a\x00\xa0", pt=101))  # telephone-event
    rec.feed_a(b"\x80\x00")  # truncated
    rec.feed_a(rtp(2, 0, b"\x40", pt=13))  # comfort noise
    clock.advance(0.5)
    rec.stop()
    assert rec.stats()["a"]["ignored"] == 3
    assert np.all(read(tmp_path / "r.wav")[1] == 0)


def test_stops_after_silence_and_cuts_it_off(tmp_path):
    clock = Clock()
    ended = []
    rec = Recorder(clock, tmp_path / "vm.wav", silence_seconds=2.0,
                   on_stop=lambda r: ended.append((r, clock.seconds())))
    speech = np.concatenate([tones.sine(440, 1.0), tones.silence(5.0)])
    pkts = packets(speech)
    feed_live(clock, [(k, [lambda p=p: rec.feed_a(p)]) for k, p in enumerate(pkts)])
    (result, when), = ended
    assert result.reason == "silence"
    # it noticed 2 s of silence 2 s after the speech ended, plus the jitter buffer
    assert when == pytest.approx(3.1, abs=0.03)
    _, data = read(tmp_path / "vm.wav")
    assert len(data) == 8000 and tones.has_tone(data, 440)
    assert result.seconds == pytest.approx(1.0)


def test_a_caller_who_says_nothing_is_stopped_with_an_empty_file(tmp_path):
    clock = Clock()
    rec = Recorder(clock, tmp_path / "vm.wav", silence_seconds=1.0)
    clock.pump([0.02] * 100)
    assert stopped(rec)[0].reason == "silence"
    assert len(read(tmp_path / "vm.wav")[1]) == 0


def test_stops_at_max_seconds_exactly(tmp_path):
    clock = Clock()
    rec = Recorder(clock, tmp_path / "max.wav", max_seconds=1.5)
    pkts = packets(tones.sine(440, 3.0))
    feed_live(clock, [(k, [lambda p=p: rec.feed_a(p)]) for k, p in enumerate(pkts)])
    result = stopped(rec)
    assert result[0].reason == "max" and result[0].seconds == 1.5
    _, data = read(tmp_path / "max.wav")
    assert len(data) == 12000 and tones.has_tone(data, 440)


def test_stream_restart_with_a_new_ssrc_continues_the_timeline(tmp_path):
    clock = Clock()
    rec = Recorder(clock, tmp_path / "r.wav")
    first = packets(tones.sine(440, 0.5), ts0=1000, ssrc=1)
    second = packets(tones.sine(880, 0.5), ts0=5_000_000, ssrc=2)
    feed_live(clock, [(k, [lambda p=p: rec.feed_a(p)]) for k, p in enumerate(first)]
              + [(25 + k, [lambda p=p: rec.feed_a(p)]) for k, p in enumerate(second)])
    clock.advance(0.02)
    rec.stop()
    _, data = read(tmp_path / "r.wav")
    assert len(data) == 8000
    assert tones.has_tone(data[:4000], 440, min_ratio=0.9)
    assert tones.has_tone(data[4000:], 880, min_ratio=0.9)
    assert rec.stats()["a"]["resyncs"] == 1


def test_stop_fsyncs_file_and_directory_before_stopped_fires(tmp_path, monkeypatch):
    synced: list[tuple[str, bool]] = []
    real_fsync = recorder_module.os.fsync

    def fsync(fd):
        synced.append(("fsync", bool(result)))
        real_fsync(fd)

    monkeypatch.setattr(recorder_module.os, "fsync", fsync)
    clock = Clock()
    rec = Recorder(clock, tmp_path / "vm.wav")
    result = stopped(rec)
    for k, p in enumerate(packets(tones.sine(440, 0.5))):
        clock.advance(0.02 if k else 0)
        rec.feed_a(p)
    rec.stop()
    assert synced == [("fsync", False), ("fsync", False)]  # both before the Deferred fired
    assert result[0].seconds == pytest.approx(0.5, abs=0.03)
    assert rec.stop() is rec.stopped  # idempotent


def test_fsync_can_run_elsewhere_and_stopped_waits_for_it(tmp_path):
    from twisted.internet.defer import Deferred

    pending: list = []

    def later(f):
        d = Deferred()
        pending.append((f, d))
        return d

    rec = Recorder(Clock(), tmp_path / "vm.wav", run_blocking=later)
    result = stopped(rec)
    rec.stop()
    assert result == []
    f, d = pending[0]
    d.callback(f())
    assert result[0].path.endswith("vm.wav")


def test_a_crash_mid_recording_leaves_a_readable_wav(tmp_path):
    clock = Clock()
    path = tmp_path / "crash.wav"
    rec = Recorder(clock, path, header_seconds=1.0)
    pkts = packets(tones.sine(440, 2.5))
    feed_live(clock, [(k, [lambda p=p: rec.feed_a(p)]) for k, p in enumerate(pkts)])
    # never stopped: what is on disk now must already be a valid WAV
    channels, data = read(path)
    assert channels == 1 and len(data) >= 8000
    assert tones.has_tone(data, 440)
    rec.stop()


def test_missing_directory_raises_at_once(tmp_path):
    with pytest.raises(FileNotFoundError):
        Recorder(Clock(), tmp_path / "nope" / "r.wav")
    with pytest.raises(ValueError):
        Recorder(Clock(), tmp_path / "r.wav", channels=3)
