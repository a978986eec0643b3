"""Self-tests of the integration harness, independent of pbxd.

They prove the drivers work against the tools themselves: SIPp calls a SIPp
UAS, two baresip phones call each other directly and each hears the other's
tone. If these fail, the tool or the harness is broken, not the server.
"""

from __future__ import annotations

import time

import pytest

from .audio import describe_wav, read_wav, wav_dominant_frequency, wav_has_tone, write_tone_wav
from .harness import options_request, status_of, udp_exchange
from .sipp import SippProcess, run_sipp


def test_tone_wav_round_trip(tmp_path):
    path = write_tone_wav(tmp_path / "t.wav", 697, 0.5, frequencies=(1209,))
    samples, rate = read_wav(path)
    assert rate == 8000 and len(samples) == 4000
    single = write_tone_wav(tmp_path / "s.wav", 880, 0.5)
    assert abs(wav_dominant_frequency(single, skip=0) - 880) < 2
    assert wav_has_tone(single, 880)
    assert not wav_has_tone(single, 440)


@pytest.mark.needs_sipp
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_uac_against_sipp_uas(tmp_path, transport):
    uas = SippProcess(
        "sn:uas", None, tmp_path / "uas", transport=transport, calls=None, extra=["-aa"], timeout=15
    )
    uas.start()
    try:
        uas.wait_ready()
        target = f"127.0.0.1:{uas.local_port}"
        calls = run_sipp(
            "uac.xml",
            target,
            tmp_path / "uac",
            transport=transport,
            calls=5,
            rate=100,
            timeout=10,
            extra=["-d", "100"],
        )
        assert calls.returncode == 0 and calls.successful == 5, calls.explain()
        assert "INVITE sip:service@127.0.0.1" in calls.messages
        options = run_sipp(
            "options.xml", target, tmp_path / "opt", transport=transport, calls=1, timeout=5
        )
        assert options.returncode == 0 and options.successful == 1, options.explain()
    finally:
        uas.stop()


@pytest.mark.needs_baresip
def test_baresip_peer_to_peer_tones(tmp_path, baresip_factory):
    alice = baresip_factory(
        "alice", user="alice", tone_wav=write_tone_wav(tmp_path / "440.wav", 440, 30)
    )
    bob = baresip_factory("bob", user="bob", tone_wav=write_tone_wav(tmp_path / "880.wav", 880, 30))
    alice.dial(bob.uri)
    alice.wait_event("CALL_ESTABLISHED")
    bob.wait_event("CALL_ESTABLISHED")
    # let about a second of audio flow; bounded poll on what has been written
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        wavs = alice.received_wavs() + bob.received_wavs()
        if len(wavs) == 2 and all(p.stat().st_size > 16000 for p in wavs):
            break
        time.sleep(0.1)
    alice.hangup()
    bob.wait_event("CALL_CLOSED")
    alice.stop()
    bob.stop()
    (heard_by_alice,) = alice.received_wavs()
    (heard_by_bob,) = bob.received_wavs()
    assert wav_has_tone(heard_by_alice, 880), describe_wav(heard_by_alice)
    assert wav_has_tone(heard_by_bob, 440), describe_wav(heard_by_bob)


def test_pbx_server_restart_and_kill9(pbx):
    first = pbx.pid
    assert status_of(udp_exchange(pbx.udp_port, options_request(pbx.udp_port))) == 200
    pbx.restart()
    assert pbx.pid != first and pbx.running
    assert status_of(udp_exchange(pbx.udp_port, options_request(pbx.udp_port))) == 200
    pbx.kill9()
    assert not pbx.running
    pbx.start()  # same ports and state_dir after a crash
    assert status_of(udp_exchange(pbx.udp_port, options_request(pbx.udp_port))) == 200
    assert pbx.log_text().count("SIP listening on UDP") == 3
