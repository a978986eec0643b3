"""Music on hold through the real server (issue 6, "Must show").

baresip A (440 Hz) calls baresip B (880 Hz); A puts the call on hold (a
re-INVITE with sendonly): B then receives music (audio that is neither
silence nor A's tone) instead of A; after resume B hears A's 440 Hz again.
"""

from __future__ import annotations

import time

import pytest

from .audio import describe_wav, dominant_frequency, read_wav, rms, write_tone_wav
from .harness import EXTENSIONS


def phone(factory, pbx, tmp_path, name, user, tone):
    p = factory(name, user=user, password=EXTENSIONS[user], server=("127.0.0.1", pbx.udp_port),
                transport="udp", tone_wav=write_tone_wav(tmp_path / f"{name}.wav", tone, 60))
    p.wait_registered()
    return p


def segment(samples, rate, start: float, end: float):
    return samples[int(start * rate):int(end * rate)]


@pytest.mark.needs_baresip
@pytest.mark.needs_sox
def test_hold_gives_the_other_party_music_until_resume(pbx, baresip_factory, tmp_path):
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", 440)
    b = phone(baresip_factory, pbx, tmp_path, "b", "1001", 880)
    a.dial(f"sip:1001@127.0.0.1:{pbx.udp_port}")
    b.wait_event("CALL_ESTABLISHED")
    start = time.monotonic()
    time.sleep(3.0)
    held = time.monotonic() - start
    a.command("hold")
    pbx.wait_for_log(r"music on hold to", timeout=5)
    time.sleep(4.0)
    resumed = time.monotonic() - start
    a.command("resume")
    pbx.wait_for_log(r"resumed", timeout=5)
    time.sleep(3.0)
    ended = time.monotonic() - start
    a.hangup()
    b.wait_event("CALL_CLOSED")
    heard = b.received_wavs()[-1]
    samples, rate = read_wav(heard)
    before = segment(samples, rate, 1.0, held - 0.3)
    music = segment(samples, rate, held + 1.0, resumed - 0.3)
    after = segment(samples, rate, resumed + 1.0, ended - 0.5)
    detail = describe_wav(heard)
    assert abs(dominant_frequency(before, rate) - 440) < 15, detail
    assert rms(music) > 0.01, f"silence on hold: {detail}"
    assert abs(dominant_frequency(music, rate) - 440) > 30, f"A's tone on hold: {detail}"
    assert abs(dominant_frequency(after, rate) - 440) < 15, f"no A after resume: {detail}"


@pytest.mark.needs_baresip
@pytest.mark.needs_sox
def test_a_callee_on_hold_gives_its_caller_music_until_resume(pbx, baresip_factory, tmp_path):
    """The other direction: the dialled phone holds. Its audio reaches the caller re-stamped
    (one continuous stream), and the music continues that stream."""
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", 440)
    b = phone(baresip_factory, pbx, tmp_path, "b", "1001", 880)
    a.dial(f"sip:1001@127.0.0.1:{pbx.udp_port}")
    b.wait_event("CALL_ESTABLISHED")
    start = time.monotonic()
    time.sleep(3.0)
    held = time.monotonic() - start
    b.command("hold")
    pbx.wait_for_log(r"music on hold to", timeout=5)
    time.sleep(4.0)
    resumed = time.monotonic() - start
    b.command("resume")
    pbx.wait_for_log(r"resumed", timeout=5)
    time.sleep(3.0)
    ended = time.monotonic() - start
    a.hangup()
    b.wait_event("CALL_CLOSED")
    heard = a.received_wavs()[-1]
    samples, rate = read_wav(heard)
    before = segment(samples, rate, 1.0, held - 0.3)
    music = segment(samples, rate, held + 1.0, resumed - 0.3)
    after = segment(samples, rate, resumed + 1.0, ended - 0.5)
    detail = describe_wav(heard)
    assert abs(dominant_frequency(before, rate) - 880) < 15, detail
    assert rms(music) > 0.01, f"silence on hold: {detail}"
    assert abs(dominant_frequency(music, rate) - 880) > 30, f"B's tone on hold: {detail}"
    assert abs(dominant_frequency(after, rate) - 880) < 15, f"no B after resume: {detail}"
