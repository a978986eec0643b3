"""Player: G.711 playback paced on a fake clock, checked by decoding what was sent."""

from __future__ import annotations

import random

import numpy as np
import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock

from pbxd.rtp import tones
from pbxd.rtp.codecs import alaw_decode, ulaw_decode, ulaw_encode
from pbxd.rtp.dtmf import DtmfDetector
from pbxd.rtp.packet import RtpPacket
from pbxd.rtp.player import DONE, MusicOnHold, Player, ToneSource


class FakeLeg:
    """What a Player needs of a LegMedia."""

    def __init__(self, dtmf_pt: int | None = None) -> None:
        self.sent: list[bytes] = []
        self.dtmf_pt = dtmf_pt
        self.closed = False

    def send_rtp(self, data: bytes) -> None:
        self.sent.append(data)

    def packets(self) -> list[RtpPacket]:
        return [RtpPacket.parse(p) for p in self.sent]


def make(codec="PCMU", **kw):
    clock = Clock()
    leg = FakeLeg(kw.pop("dtmf_pt", None))
    player = Player(clock, leg, codec, ssrc=0x1234, sequence=65530, timestamp=2**32 - 480, **kw)
    return clock, leg, player


def run(clock: Clock, seconds: float, step: float = 0.02) -> None:
    for _ in range(int(round(seconds / step))):
        clock.advance(step)


def audio(leg: FakeLeg, decode=ulaw_decode) -> np.ndarray:
    return np.concatenate([decode(p.payload) for p in leg.packets()])


def results(d) -> list:
    out: list = []
    d.addBoth(out.append)
    return out


def test_sine_arrives_as_the_same_tone_encoded_frame_by_frame():
    clock, leg, player = make()
    sine = tones.sine(440, 1.0)
    done = results(player.play(sine))
    run(clock, 1.2)
    assert done == [DONE]
    assert len(leg.sent) == 50
    received = audio(leg)
    assert np.array_equal(received, ulaw_decode(ulaw_encode(sine)))
    assert abs(tones.dominant_frequency(received) - 440) < 2
    assert all(p.payload_type == 0 and p.ssrc == 0x1234 and len(p.payload) == 160
               for p in leg.packets())


def test_pcma_by_payload_type():
    clock, leg, player = make(8)
    player.play(tones.sine(1000, 0.2))
    run(clock, 0.3)
    assert {p.payload_type for p in leg.packets()} == {8}
    assert tones.has_tone(audio(leg, alaw_decode), 1000)


def test_one_second_of_clock_sends_fifty_packets_160_samples_apart():
    clock, leg, player = make()
    player.play(tones.sine(440, 3.0))
    assert len(leg.sent) == 1  # the first frame goes out at once
    run(clock, 1.0)
    packets = leg.packets()
    assert len(packets) == 51
    for before, after in zip(packets, packets[1:], strict=False):
        assert after.sequence_number == (before.sequence_number + 1) & 0xFFFF  # wraps at 2**16
        assert after.timestamp == (before.timestamp + 160) & 0xFFFFFFFF  # wraps at 2**32
    assert packets[0].marker and not any(p.marker for p in packets[1:])


def test_irregular_timer_wakeups_do_not_accumulate_drift():
    clock, leg, player = make()
    player.play(tones.sine(440, 5.0))
    rng = random.Random(7)
    while clock.seconds() < 3.0:
        clock.advance(rng.choice([0.013, 0.021, 0.027, 0.009, 0.035]))
        # frames due by now: one per 20 ms since t=0, never more, never fewer
        assert len(leg.sent) == int(clock.seconds() / 0.02 + 1e-9) + 1


def test_late_reactor_sends_due_frames_in_one_go():
    clock, leg, player = make()
    sine = tones.sine(440, 2.0)
    player.play(sine)
    clock.advance(0.1)  # five frames due at 0.02 .. 0.10
    assert len(leg.sent) == 6
    ts = [p.timestamp for p in leg.packets()]
    assert [(b - a) & 0xFFFFFFFF for a, b in zip(ts, ts[1:], strict=False)] == [160] * 5


def test_very_late_reactor_sends_a_bounded_burst_and_loses_no_audio():
    clock, leg, player = make(max_burst=4)
    sine = tones.sine(440, 2.0)
    player.play(sine)
    clock.advance(1.0)  # 50 frames overdue
    packets = leg.packets()
    assert len(packets) == 1 + 4
    jump = (packets[1].timestamp - packets[0].timestamp) & 0xFFFFFFFF
    assert jump == 160 * (1 + 46)  # the 46 frames of stalled time are skipped
    assert packets[1].marker
    assert player.late_frames == 46
    # back on schedule: one frame per tick, and the audio itself is continuous
    clock.advance(0.02)
    assert len(leg.sent) == 6
    assert np.array_equal(audio(leg), ulaw_decode(ulaw_encode(sine[: 6 * 160])))


def test_queued_prompts_play_back_to_back_without_marker_or_gap():
    clock, leg, player = make()
    first = results(player.play(tones.sine(440, 0.1)))
    second = results(player.play(tones.sine(880, 0.1)))
    assert player.playing
    run(clock, 0.3)
    packets = leg.packets()
    assert len(packets) == 10
    assert [p.marker for p in packets] == [True] + [False] * 9
    assert all((b.timestamp - a.timestamp) & 0xFFFFFFFF == 160
               for a, b in zip(packets, packets[1:], strict=False))
    assert tones.has_tone(audio(leg)[:800], 440) and tones.has_tone(audio(leg)[800:], 880)
    assert first == second == [DONE]
    assert not player.playing


def test_second_play_after_silence_continues_sequence_with_marker_and_true_timestamp():
    clock, leg, player = make()
    player.play(tones.sine(440, 0.1))
    run(clock, 0.2)
    assert len(leg.sent) == 5
    last = leg.packets()[-1]
    run(clock, 1.0)  # nothing to play for a while
    player.play(tones.sine(440, 0.1))
    assert len(leg.sent) == 6  # a new run starts at once
    nxt = leg.packets()[5]
    assert nxt.sequence_number == (last.sequence_number + 1) & 0xFFFF
    assert nxt.marker
    elapsed = (nxt.timestamp - last.timestamp) & 0xFFFFFFFF
    assert abs(elapsed - 8000 * (clock.seconds() - 0.08)) <= 1


def test_play_chained_from_the_done_callback_stays_continuous():
    clock, leg, player = make()
    d = player.play(tones.sine(440, 0.1))
    d.addCallback(lambda _: player.play(tones.sine(880, 0.1)))
    run(clock, 0.4)
    packets = leg.packets()
    assert len(packets) == 10
    assert not any(p.marker for p in packets[1:])
    assert all((b.timestamp - a.timestamp) & 0xFFFFFFFF == 160
               for a, b in zip(packets, packets[1:], strict=False))


def test_stop_fires_every_queued_play_with_the_reason_and_sends_nothing_more():
    clock, leg, player = make()
    a = results(player.play(tones.sine(440, 1.0)))
    b = results(player.play(tones.sine(440, 1.0)))
    run(clock, 0.1)
    player.stop("digit")
    sent = len(leg.sent)
    run(clock, 1.0)
    assert a == b == ["digit"]
    assert len(leg.sent) == sent == 6


def test_loop_repeats_until_stopped():
    clock, leg, player = make()
    beep = tones.sine(440, 0.1)
    d = results(player.play(beep, loop=True))
    run(clock, 1.0)
    assert d == []
    assert len(leg.sent) == 51
    received = audio(leg)
    assert np.array_equal(received[800:1600], received[:800])  # seamless: no padding
    player.stop()
    assert d == ["stopped"]


def test_cancelling_a_queued_play_skips_only_it():
    clock, leg, player = make()
    first = results(player.play(tones.sine(440, 0.1)))
    second = player.play(tones.sine(880, 0.1))
    third = results(player.play(tones.sine(1200, 0.1)))
    failures = []
    second.addErrback(lambda f: failures.append(f.check(CancelledError)))
    second.cancel()
    run(clock, 0.4)
    received = audio(leg)
    assert len(received) == 1600
    assert tones.has_tone(received[:800], 440) and tones.has_tone(received[800:], 1200)
    assert failures == [CancelledError] and first == third == [DONE]


def test_closed_leg_stops_playback():
    clock, leg, player = make()
    d = results(player.play(tones.sine(440, 1.0)))
    leg.closed = True
    clock.advance(0.02)
    assert d == ["closed"]


def test_dtmf_as_telephone_events_between_prompts():
    clock, leg, player = make(dtmf_pt=101)
    player.play(tones.sine(440, 0.04))
    d = results(player.send_dtmf("5"))
    player.play(tones.sine(440, 0.04))
    run(clock, 0.4)
    packets = leg.packets()
    events = [p for p in packets if p.payload_type == 101]
    assert len(events) == 7  # four updates and the end packet three times
    assert events[0].marker and len({p.timestamp for p in events}) == 1
    detector = DtmfDetector()
    assert [detector.feed_packet(p) for p in events].count("5") == 1
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    after = packets[packets.index(events[-1]) + 1]
    assert after.payload_type == 0
    assert (after.timestamp - events[0].timestamp) & 0xFFFFFFFF == 7 * 160
    assert d == [DONE]


def test_dtmf_in_band_without_telephone_event():
    clock, leg, player = make()
    player.send_dtmf("1")
    run(clock, 0.3)
    received = audio(leg)[:800]
    assert tones.has_tone(received, 697) and tones.has_tone(received, 1209)
    with pytest.raises(ValueError):
        player.send_dtmf("x")


def test_wav_files_must_be_8khz_mono_16bit(tmp_path):
    clock, leg, player = make()
    good = tmp_path / "good.wav"
    tones.write_wav(good, tones.sine(440, 0.2))
    done = results(player.play(str(good)))
    run(clock, 0.3)
    assert done == [DONE] and tones.has_tone(audio(leg), 440)
    wide = tmp_path / "wide.wav"
    tones.write_wav(wide, tones.sine(440, 0.2, rate=16000), rate=16000)
    with pytest.raises(ValueError, match="16000 Hz.*does not resample"):
        player.play(wide)
    with pytest.raises(FileNotFoundError):
        player.play(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav file at all")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        player.play(junk)


def test_ringback_tone_source_plays_its_cadence():
    clock, leg, player = make()
    player.play(ToneSource("ringback"), loop=True)
    run(clock, 3.0)
    received = audio(leg)
    on, off = received[: 2 * 8000], received[2 * 8000 + 80 : 3 * 8000]
    assert tones.has_tone(on, 440) and tones.has_tone(on, 480)
    assert tones.rms(off) == 0


def test_busy_tone_source_for_a_duration_then_done():
    clock, leg, player = make()
    done = results(player.play(ToneSource("busy", seconds=1.0)))
    run(clock, 1.1)
    assert done == [DONE] and len(leg.sent) == 50
    assert tones.has_tone(audio(leg)[:4000], 620)


def _moh_folder(tmp_path):
    tones.write_wav(tmp_path / "a.wav", tones.sine(440, 0.2))
    tones.write_wav(tmp_path / "b.wav", tones.sine(880, 0.2))
    tones.write_wav(tmp_path / "c.wav", tones.sine(1200, 0.2, rate=16000), rate=16000)
    (tmp_path / "notes.txt").write_text("not music")
    return tmp_path


def test_music_on_hold_loops_the_folder_in_order_skipping_bad_files(tmp_path):
    clock, leg, player = make()
    moh = MusicOnHold(_moh_folder(tmp_path), shuffle=False)
    player.play(moh)
    run(clock, 0.8 - 0.02)
    received = audio(leg)
    assert len(received) == 6400
    for i, freq in enumerate([440, 880, 440, 880]):
        assert tones.has_tone(received[i * 1600 : (i + 1) * 1600], freq, min_ratio=0.9)
    assert [p.name for p in moh.played] == ["a.wav", "b.wav", "a.wav", "b.wav"]
    assert list(moh.skipped) == [tmp_path / "c.wav"]


def test_music_on_hold_shuffle_plays_each_file_once_per_round(tmp_path):
    for i in range(5):
        tones.write_wav(tmp_path / f"{i}.wav", tones.sine(300 + 100 * i, 0.02))
    moh = MusicOnHold(tmp_path, rng=random.Random(3))
    moh.read(160 * 10)
    names = [p.name for p in moh.played]
    assert sorted(names[:5]) == sorted(names[5:]) == [f"{i}.wav" for i in range(5)]
    assert names[:5] != sorted(names[:5]) or names[5:] != sorted(names[5:])


def test_music_on_hold_needs_wav_files(tmp_path):
    with pytest.raises(ValueError, match="no .wav"):
        MusicOnHold(tmp_path)
