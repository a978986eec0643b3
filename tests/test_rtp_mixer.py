"""Conference mixer: each participant hears the others and not itself (checked by tone)."""

from __future__ import annotations

import struct

import numpy as np
from twisted.internet.task import Clock

from pbxd.rtp import tones
from pbxd.rtp.codecs import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from pbxd.rtp.mixer import Conference
from pbxd.rtp.packet import RtpPacket

DECODE = {0: ulaw_decode, 8: alaw_decode}
ENCODE = {0: ulaw_encode, 8: alaw_encode}


class FakeLeg:
    def __init__(self, freq: float, pt: int = 0) -> None:
        self.listeners: list = []
        self.sent: list[bytes] = []
        self.audio = tones.sine(freq, 2.0) if freq else tones.silence(2.0)
        self.pt = pt
        self.k = 0

    def send_rtp(self, data: bytes) -> None:
        self.sent.append(data)

    def speak(self) -> None:
        """The phone sends its next 20 ms packet."""
        payload = ENCODE[self.pt](self.audio[160 * self.k : 160 * (self.k + 1)])
        data = struct.pack("!BBHII", 0x80, self.pt, self.k, 160 * self.k, 77) + payload
        self.k += 1
        for listener in list(self.listeners):
            listener(data)

    def heard(self) -> np.ndarray:
        return np.concatenate([DECODE[self.pt](RtpPacket.parse(d).payload) for d in self.sent])


def talk(clock: Clock, legs, ticks: int) -> None:
    for _ in range(ticks):
        for leg in legs:
            leg.speak()
        clock.advance(0.02)


def test_everyone_hears_the_others_but_not_themselves():
    clock = Clock()
    conf = Conference(clock)
    a, b, c = FakeLeg(440), FakeLeg(880, pt=8), FakeLeg(1200)
    conf.add(a)
    conf.add(b, 8)
    conf.add(c, "PCMU")
    talk(clock, [a, b, c], 50)
    for leg, own, others in ((a, 440, (880, 1200)), (b, 880, (440, 1200)),
                             (c, 1200, (440, 880))):
        heard = leg.heard()
        assert len(leg.sent) == 50
        assert not tones.has_tone(heard, own, min_ratio=0.05)
        assert all(tones.has_tone(heard, f, min_ratio=0.3) for f in others)
    assert {RtpPacket.parse(d).payload_type for d in b.sent} == {8}


def test_each_participant_gets_a_continuous_stream_of_its_own():
    clock = Clock()
    conf = Conference(clock)
    a, b = FakeLeg(440), FakeLeg(0)
    conf.add(a, ssrc=1)
    conf.add(b, ssrc=2)
    talk(clock, [a, b], 20)
    pa = [RtpPacket.parse(d) for d in a.sent]
    assert {p.ssrc for p in pa} == {1}
    assert {RtpPacket.parse(d).ssrc for d in b.sent} == {2}
    assert pa[0].marker and not any(p.marker for p in pa[1:])
    assert all((y.sequence_number - x.sequence_number) & 0xFFFF == 1
               and (y.timestamp - x.timestamp) & 0xFFFFFFFF == 160
               for x, y in zip(pa, pa[1:], strict=False))
    assert tones.has_tone(b.heard(), 440, min_ratio=0.9)
    assert tones.rms(a.heard()) == 0  # b is silent, a hears silence


def test_late_tick_skips_time_in_the_timestamps():
    clock = Clock()
    conf = Conference(clock)
    a = FakeLeg(440)
    conf.add(a)
    clock.advance(0.02)
    clock.advance(0.1)  # four ticks missed
    first, second = (RtpPacket.parse(d) for d in a.sent)
    assert (second.timestamp - first.timestamp) & 0xFFFFFFFF == 5 * 160 and second.marker


def test_muted_participant_is_not_heard_but_hears():
    clock = Clock()
    conf = Conference(clock)
    a, b = FakeLeg(440), FakeLeg(880)
    conf.add(a).muted = True
    conf.add(b)
    talk(clock, [a, b], 25)
    assert tones.rms(b.heard()) == 0
    assert tones.has_tone(a.heard(), 880, min_ratio=0.9)


def test_removed_participant_leaves_the_mix_and_last_one_stops_the_tick():
    clock = Clock()
    conf = Conference(clock)
    a, b, c = FakeLeg(440), FakeLeg(880), FakeLeg(0)
    for leg in (a, b, c):
        conf.add(leg)
    talk(clock, [a, b, c], 10)
    conf.remove(b)
    assert b.listeners == [] and len(conf) == 2
    before = len(c.sent)
    talk(clock, [a, b, c], 25)
    later = np.concatenate([ulaw_decode(RtpPacket.parse(d).payload) for d in c.sent[before:]])
    assert tones.has_tone(later, 440, min_ratio=0.9) and not tones.has_tone(later, 880)
    conf.remove(a)
    conf.remove(c)
    assert clock.getDelayedCalls() == []


def test_a_fast_phone_cannot_grow_latency_without_bound():
    clock = Clock()
    conf = Conference(clock, max_frames=3)
    a, b = FakeLeg(440), FakeLeg(0)
    pa = conf.add(a)
    conf.add(b)
    for _ in range(20):
        a.speak()  # a burst without ticks
    assert pa.dropped_samples == 17 * 160
    talk(clock, [b], 1)
    assert tones.has_tone(b.heard(), 440)
