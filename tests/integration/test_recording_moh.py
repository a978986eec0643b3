"""Music on hold through the real server (issue 6, "Must show").

baresip A (440 Hz) calls baresip B (880 Hz); one of them puts the call on hold
(a re-INVITE with sendonly): the other then receives music (audio that is
neither silence nor the holder's tone) instead of the holder; after resume it
hears the holder's tone again. Run once with A holding and once with B.
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
@pytest.mark.parametrize("holder", ["caller", "callee"])
def test_hold_gives_the_other_party_music_until_resume(pbx, baresip_factory, tmp_path, holder):
    """Either side may hold. The callee's audio reaches the caller re-stamped (one
    continuous stream), and when the callee holds the music continues that stream."""
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", 440)
    b = phone(baresip_factory, pbx, tmp_path, "b", "1001", 880)
    holding, held, tone = (a, b, 440) if holder == "caller" else (b, a, 880)
    a.dial(f"sip:1001@127.0.0.1:{pbx.udp_port}")
    b.wait_event("CALL_ESTABLISHED")
    start = time.monotonic()
    time.sleep(3.0)
    on_hold = time.monotonic() - start
    holding.command("hold")
    pbx.wait_for_log(r"music on hold to", timeout=5)
    time.sleep(4.0)
    resumed = time.monotonic() - start
    holding.command("resume")
    pbx.wait_for_log(r"resumed", timeout=5)
    time.sleep(3.0)
    ended = time.monotonic() - start
    a.hangup()
    b.wait_event("CALL_CLOSED")
    heard = held.received_wavs()[-1]
    samples, rate = read_wav(heard)
    before = segment(samples, rate, 1.0, on_hold - 0.3)
    music = segment(samples, rate, on_hold + 1.0, resumed - 0.3)
    after = segment(samples, rate, resumed + 1.0, ended - 0.5)
    detail = describe_wav(heard)
    assert abs(dominant_frequency(before, rate) - tone) < 15, detail
    assert rms(music) > 0.01, f"silence on hold: {detail}"
    assert abs(dominant_frequency(music, rate) - tone) > 30, f"the holder's tone on hold: {detail}"
    assert abs(dominant_frequency(after, rate) - tone) < 15, f"no holder after resume: {detail}"
