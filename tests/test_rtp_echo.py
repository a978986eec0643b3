"""Echo on a real LegMedia over fake UDP ports: the phone gets its own audio back."""

from __future__ import annotations

import numpy as np
from test_rtp_relay import FakeBinder, rtp
from twisted.internet.task import Clock

from pbxd.rtp import tones
from pbxd.rtp.codecs import ulaw_decode, ulaw_encode
from pbxd.rtp.echo import Echo
from pbxd.rtp.packet import RtpPacket
from pbxd.rtp.ports import PortAllocator
from pbxd.rtp.relay import LegMedia

PHONE = ("192.0.2.10", 4000)


def make():
    binder = FakeBinder()
    leg = LegMedia(PortAllocator(binder, "127.0.0.1", 10000, 10010), Clock(), "a")
    leg.set_remote(PHONE)
    leg.allow_latch()
    return leg, binder.bound[leg.port], Echo(leg, ssrc=0xEC40)


def sent_back(listener) -> list[RtpPacket]:
    assert all(addr == PHONE for _, addr in listener.sent)
    return [RtpPacket.parse(data) for data, _ in listener.sent]


def test_phone_hears_its_own_tone_under_our_ssrc():
    leg, port, echo = make()
    echo.start()
    sine = tones.sine(440, 0.5)
    for k in range(25):
        leg.rtp_received(rtp(100 + k, 5000 + 160 * k, payload=ulaw_encode(sine[160 * k:][:160]),
                             marker=int(k == 0)), PHONE)
    back = sent_back(port)
    assert len(back) == 25 and echo.packets == 25
    audio = np.concatenate([ulaw_decode(p.payload) for p in back])
    assert tones.has_tone(audio, 440, min_ratio=0.9)
    assert np.array_equal(audio, ulaw_decode(ulaw_encode(sine)))
    assert {p.ssrc for p in back} == {0xEC40}
    assert back[0].marker and not any(p.marker for p in back[1:])
    assert all((b.sequence_number - a.sequence_number) & 0xFFFF == 1
               for a, b in zip(back, back[1:], strict=False))
    assert all((b.timestamp - a.timestamp) & 0xFFFFFFFF == 160
               for a, b in zip(back, back[1:], strict=False))


def test_loss_and_reordering_stay_visible_in_our_numbering():
    leg, port, echo = make()
    echo.start()
    for seq in (1, 2, 4, 3):  # 3 arrives late
        leg.rtp_received(rtp(seq, 160 * seq), PHONE)
    seqs = [p.sequence_number for p in sent_back(port)]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 3, 2]


def test_a_restarted_phone_stream_continues_ours_with_a_marker():
    leg, port, echo = make()
    echo.start()
    leg.rtp_received(rtp(10, 1000), PHONE)
    leg.rtp_received(rtp(11, 1160), PHONE)
    other = bytearray(rtp(7000, 99999))
    other[8:12] = (0x5678).to_bytes(4, "big")  # new SSRC
    leg.rtp_received(bytes(other), PHONE)
    a, b, c = sent_back(port)
    assert c.sequence_number == (b.sequence_number + 1) & 0xFFFF
    assert c.timestamp == (b.timestamp + 160) & 0xFFFFFFFF
    assert c.marker and c.ssrc == 0xEC40


def test_stop_ends_the_echo_and_start_is_idempotent():
    leg, port, echo = make()
    echo.start()
    echo.start()
    leg.rtp_received(rtp(1, 160), PHONE)
    assert len(port.sent) == 1  # started twice, echoed once
    echo.stop()
    assert not echo.running
    leg.rtp_received(rtp(2, 320), PHONE)
    assert len(port.sent) == 1


def test_garbage_is_not_echoed():
    leg, port, echo = make()
    echo.start()
    leg.rtp_received(b"\x00" * 20, PHONE)  # version 0
    leg.rtp_received(b"\x80\x00", PHONE)
    assert port.sent == []
