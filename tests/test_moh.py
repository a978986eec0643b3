"""Music on hold: the held party hears music (not silence) from the folder, resume stops it
and bridges again; the relay hook calls it (fake legs, Clock, no sockets)."""

from __future__ import annotations

import os
import wave
from types import SimpleNamespace

import numpy as np
import pytest
from twisted.internet.task import Clock

from pbxd.calls.relaying import relay_request
from pbxd.calls.restamp import Restamper
from pbxd.moh import DEFAULT_FOLDER
from pbxd.moh.hold import HoldMusic
from pbxd.rtp.codecs import codec_for_payload_type
from pbxd.rtp.packet import RtpPacket
from pbxd.rtp.relay import bridge


class Media:
    def __init__(self, name):
        self.name, self.closed, self.peer, self.dtmf_pt = name, False, None, None
        self.sent: list[bytes] = []
        self.listeners: list = []

    def send_rtp(self, data):
        self.sent.append(data)


class Side:
    def __init__(self, name, codec="PCMU"):
        self.media, self.on_hold, self.codec = Media(name), False, codec

    def codecs(self, _offer):
        return [self.codec, "telephone-event"]


def pair(codec="PCMU"):
    a, b = Side("a"), Side("b", codec)
    bridge(a.media, b.media)
    return a, b


def heard(media) -> np.ndarray:
    packets = [RtpPacket.parse(d) for d in media.sent]
    return np.concatenate([codec_for_payload_type(p.payload_type).decode(p.payload)
                           for p in packets]).astype(np.float64)


def test_the_default_music_is_8khz_mono_and_not_silent():
    music = HoldMusic(Clock(), DEFAULT_FOLDER)
    (path,) = [p for p in os.listdir(DEFAULT_FOLDER) if p.endswith(".wav")]
    with wave.open(f"{DEFAULT_FOLDER}/{path}") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() / 8000 > 5
    assert music.players == {}


def test_hold_plays_music_to_the_other_party_and_resume_stops_it():
    clock = Clock()
    music = HoldMusic(clock, DEFAULT_FOLDER)
    a, b = pair()
    a.on_hold = True
    assert music.hold_changed(a, b) is True
    assert a.media.peer is None and b.media.peer is a.media  # the holder no longer reaches b
    for _ in range(100):
        clock.advance(0.02)
    assert len(b.media.sent) >= 100 and a.media.sent == []
    samples = heard(b.media)
    assert np.sqrt(np.mean(samples ** 2)) > 500  # music, not silence
    assert RtpPacket.parse(b.media.sent[0]).payload_type == 0
    assert music.hold_changed(a, b) is True  # a second hold re-INVITE changes nothing
    assert len(music.players) == 1
    a.on_hold = False
    assert music.hold_changed(a, b) is True
    sent = len(b.media.sent)
    clock.advance(1)
    assert len(b.media.sent) == sent and music.players == {}
    assert a.media.peer is b.media and b.media.peer is a.media
    assert music.hold_changed(a, b) is False  # an ordinary re-INVITE is relayed


def test_a_direction_relayed_neither_by_peer_link_nor_restamper_is_left_alone():
    music = HoldMusic(Clock(), DEFAULT_FOLDER)
    a, b = Side("a"), Side("b")
    a.media.listeners = [Restamper(Media("elsewhere"), 1, 0, 0)]  # to another party
    a.on_hold = True
    assert music.hold_changed(a, b) is False and music.players == {}


def rtp_from(seq: int, ts: int, ssrc: int = 0xB0B) -> bytes:
    return RtpPacket(0, seq, ts, ssrc, payload=b"\xff" * 160).serialize()


def test_a_restamped_callee_on_hold_gives_its_caller_music_in_the_same_stream():
    """A dialplan callee's audio reaches the caller re-stamped (pbxd.calls.restamp): on
    hold the music continues that stream; on resume the callee's audio carries on after."""
    clock = Clock()
    music = HoldMusic(clock, DEFAULT_FOLDER)
    callee, caller = Side("callee"), Side("caller")
    restamper = Restamper(caller.media, 0x5555, 1000, 80000)
    callee.media.listeners = [restamper]
    for n in range(3):
        restamper(rtp_from(7 + n, 160 * n))
    callee.on_hold = True
    assert music.hold_changed(callee, caller) is True
    restamper(rtp_from(10, 480))  # whatever the holder still sends is not relayed
    for _ in range(50):
        clock.advance(0.02)
    packets = [RtpPacket.parse(d) for d in caller.media.sent]
    assert {p.ssrc for p in packets} == {0x5555}  # one stream throughout
    seqs = [p.sequence_number for p in packets]
    assert seqs == list(range(1000, 1000 + len(seqs))) and len(seqs) >= 50
    assert np.sqrt(np.mean(heard(caller.media)[3 * 160:] ** 2)) > 500  # music
    callee.on_hold = False
    assert music.hold_changed(callee, caller) is True and music.players == {}
    after = len(caller.media.sent)
    clock.advance(1)
    assert len(caller.media.sent) == after  # the music stopped
    restamper(rtp_from(60, 9000))
    resumed = RtpPacket.parse(caller.media.sent[-1])
    assert resumed.sequence_number == seqs[-1] + 1 and resumed.ssrc == 0x5555 and resumed.marker
    assert callee.media.peer is None  # the caller's media is still relayed only once


def test_a_restamped_callee_that_goes_while_holding_stops_the_music_where_it_got_to():
    clock = Clock()
    music = HoldMusic(clock, DEFAULT_FOLDER)
    callee, caller = Side("callee"), Side("caller")
    restamper = Restamper(caller.media, 0x5555, 1000, 80000)
    callee.media.listeners = [restamper]
    callee.on_hold = True
    assert music.hold_changed(callee, caller) is True
    clock.advance(0.5)
    last = RtpPacket.parse(caller.media.sent[-1])
    # the dialplan's player continues from these when the callee is unbridged
    assert (restamper.next_seq, restamper.next_ts) == (
        last.sequence_number + 1, last.timestamp + 160)
    callee.media.listeners.remove(restamper)  # unbridged (or its media closed)
    sent = len(caller.media.sent)
    clock.advance(1)
    assert len(caller.media.sent) == sent and music.players == {}


def test_music_uses_the_codec_of_the_held_phone_and_stops_when_its_media_closes():
    clock = Clock()
    music = HoldMusic(clock, DEFAULT_FOLDER)
    a, b = pair("PCMA")
    a.on_hold = True
    music.hold_changed(a, b)
    clock.advance(0.1)
    assert RtpPacket.parse(b.media.sent[-1]).payload_type == 8
    b.media.closed = True
    clock.advance(0.1)
    assert music.players == {}


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(ValueError):
        HoldMusic(Clock(), str(tmp_path))


@pytest.mark.parametrize("taken", [True, False])
def test_relaying_a_hold_reinvite_asks_the_hold_hook(taken):
    calls, answers, relayed = [], [], []

    def hold(mine, theirs):
        calls.append((mine, theirs, mine.on_hold))
        return taken

    leg = SimpleNamespace(call=SimpleNamespace(deps=SimpleNamespace(hold=hold)),
                          address=("192.0.2.1", 5060), done=False,
                          answer_request=lambda txn, status, *a, **k: answers.append((status, a)))
    other = SimpleNamespace(address=("192.0.2.2", 5060),
                            send_request=lambda *a, **k: relayed.append(a) or True)

    class Sdp:
        on_hold = False
        last_body = b""

        def received(self, sdp, ip=None):
            self.on_hold = b"sendonly" in sdp.serialize()

        def outgoing(self, sdp):
            return sdp.serialize()

        def answer(self, sdp):
            return b"our answer"

    body = (b"v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
            b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n")
    request = SimpleNamespace(method="INVITE", body=body,
                              get=lambda name: "application/sdp")
    mine, theirs = Sdp(), Sdp()
    relay_request(leg, other, mine, theirs, request, None)
    assert calls == [(mine, theirs, True)]
    if taken:  # answered here with our SDP, not relayed
        assert answers == [(200, (b"our answer", "application/sdp"))] and relayed == []
    else:
        assert answers == [] and len(relayed) == 1
