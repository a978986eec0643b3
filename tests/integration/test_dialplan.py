"""The dialplan on real calls (issue 5, "Must show").

- ``*43`` (answer, echo) from baresip: the caller hears its own tone back;
- a menu answered by SIPp pressing an RFC 4733 digit (a pcap of telephone-events)
  lands in that digit's branch: the branch dials a baresip phone, which rings;
- a ring group rings two baresip phones at once: the first to answer gets the
  call, the other stops ringing;
- a hunt group rings its targets one after the other;
- the ``office_hours`` example plugin, found through ``plugins:`` with
  ``examples/`` on the server's PYTHONPATH, runs on a real call.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .audio import describe_wav, wav_has_tone
from .harness import EXTENSIONS, REPO_ROOT
from .sipp import run_sipp, users_inf
from .test_calls import auth_uri, phone, wait_cdrs

SCENARIOS = Path(__file__).parent / "scenarios"


def dialplan_server(pbx_factory, default: list, **overrides):
    return pbx_factory(overrides={"dialplan": {"default": default}, **overrides},
                       transports=("udp",))


def heard(p, timeout: float = 8.0, size: int = 16000) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wavs = p.received_wavs()
        if wavs and wavs[-1].stat().st_size > size:
            return wavs[-1]
        time.sleep(0.1)
    raise AssertionError(f"{p.user} received no audio")


@pytest.mark.needs_baresip
@pytest.mark.needs_sox
def test_echo_returns_the_callers_own_tone(pbx_factory, baresip_factory, tmp_path):
    pbx = dialplan_server(pbx_factory, [{"match": "*43", "do": ["answer", "echo"]}])
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", "udp", tone=700)
    a.dial(f"sip:*43@127.0.0.1:{pbx.udp_port}")
    a.wait_event("CALL_ESTABLISHED")
    wav = heard(a)
    a.hangup()
    a.wait_event("CALL_CLOSED")
    a.stop()
    assert wav_has_tone(a.received_wavs()[-1], 700), describe_wav(wav)
    (cdr,) = wait_cdrs(pbx, 1)
    assert cdr["disposition"] == "ANSWERED" and cdr["destination"] == "*43"


@pytest.mark.needs_baresip
@pytest.mark.parametrize("digit", ["1", "2"])
def test_menu_digit_from_sipp_rfc4733_lands_in_its_branch(pbx_factory, baresip_factory,
                                                          tmp_path, digit):
    pbx = dialplan_server(pbx_factory, [
        {"match": "700", "do": [{"menu": {"prompt": "tone:beep", "timeout": 6,
                                          "options": {"1": "701", "2": "702"}}}]},
        {"match": "701", "do": [{"dial": {"to": "1001", "timeout": 10}}]},
        {"match": "702", "do": [{"dial": {"to": "1002", "timeout": 10}}]},
    ])
    one = phone(baresip_factory, pbx, tmp_path, "one", "1001", "udp", answer=False)
    two = phone(baresip_factory, pbx, tmp_path, "two", "1002", "udp", answer=False)
    scenario = tmp_path / f"dtmf{digit}.xml"
    scenario.write_text((SCENARIOS / "call_uac_dtmf.xml").read_text().replace(
        "dtmf_2833_2.pcap", f"dtmf_2833_{digit}.pcap"))
    inf = users_inf(tmp_path / "users.csv", {"1000": EXTENSIONS["1000"]})
    result = run_sipp(scenario, f"127.0.0.1:{pbx.udp_port}", tmp_path / "sipp", calls=1,
                      inf=inf, service="700", timeout=20,
                      extra=["-d", "3000", *auth_uri(pbx, "700")])
    assert result.returncode == 0, result.explain()
    rang, silent = (one, two) if digit == "1" else (two, one)
    rang.wait_event("CALL_INCOMING", timeout=2)
    assert "CALL_INCOMING" not in silent.event_types()


@pytest.mark.needs_baresip
@pytest.mark.needs_sox
def test_ring_group_first_answer_wins_and_the_other_stops_ringing(pbx_factory,
                                                                   baresip_factory, tmp_path):
    pbx = dialplan_server(pbx_factory, [
        {"match": "2000", "do": [{"dial": {"to": "1001&1002", "timeout": 15}}]}])
    b1 = phone(baresip_factory, pbx, tmp_path, "b1", "1001", "udp", tone=500, answer=False)
    b2 = phone(baresip_factory, pbx, tmp_path, "b2", "1002", "udp", tone=600, answer=False)
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", "udp", tone=700)
    a.dial(f"sip:2000@127.0.0.1:{pbx.udp_port}")
    b1.wait_event("CALL_INCOMING")
    b2.wait_event("CALL_INCOMING")  # both ring at once
    b2.command("accept")
    b2.wait_event("CALL_ESTABLISHED")
    a.wait_event("CALL_ESTABLISHED")
    b1.wait_event("CALL_CLOSED")  # the other one stops ringing
    assert "CALL_ESTABLISHED" not in b1.event_types()
    heard(a)
    a.hangup()
    b2.wait_event("CALL_CLOSED")
    a.stop()
    wav = a.received_wavs()[-1]
    assert wav_has_tone(wav, 600), describe_wav(wav)  # bridged to the phone that answered
    (cdr,) = wait_cdrs(pbx, 1)
    assert cdr["disposition"] == "ANSWERED" and cdr["destination"] == "2000"


@pytest.mark.needs_baresip
def test_hunt_group_tries_targets_in_order(pbx_factory, baresip_factory, tmp_path):
    pbx = dialplan_server(pbx_factory, [
        {"match": "3000", "do": [{"dial": {"to": ["1001", "1002"], "timeout": 3,
                                           "strategy": "sequential"}}]}])
    b1 = phone(baresip_factory, pbx, tmp_path, "b1", "1001", "udp", tone=500, answer=False)
    b2 = phone(baresip_factory, pbx, tmp_path, "b2", "1002", "udp", tone=600)
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", "udp", tone=700)
    a.dial(f"sip:3000@127.0.0.1:{pbx.udp_port}")
    b1.wait_event("CALL_INCOMING")
    first = time.monotonic()
    assert "CALL_INCOMING" not in b2.event_types()  # not yet: a hunt, not a ring group
    b1.wait_event("CALL_CLOSED", timeout=6)  # its 3 s are up
    b2.wait_event("CALL_ESTABLISHED", timeout=6)
    assert time.monotonic() - first >= 2.5
    a.wait_event("CALL_ESTABLISHED")
    a.hangup()
    (cdr,) = wait_cdrs(pbx, 1)
    assert cdr["disposition"] == "ANSWERED"


@pytest.mark.needs_baresip
@pytest.mark.needs_sox
def test_example_plugin_from_plugins_runs_on_a_real_call(pbx_factory, baresip_factory,
                                                         tmp_path, monkeypatch):
    examples = str(REPO_ROOT / "examples")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [examples, *filter(None, [os.environ.get("PYTHONPATH")])]))
    pbx = pbx_factory(transports=("udp",), overrides={
        "plugins": ["pbxd_example"],
        "dialplan": {"default": [
            {"match": "500", "do": [{"office_hours": {
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "hours": "00:00-24:00", "open": "*43", "closed": "404"}}]},
            {"match": "*43", "do": ["answer", "echo"]},
        ]}})
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", "udp", tone=600)
    a.dial(f"sip:500@127.0.0.1:{pbx.udp_port}")
    a.wait_event("CALL_ESTABLISHED")
    wav = heard(a)
    a.hangup()
    a.wait_event("CALL_CLOSED")
    a.stop()
    assert wav_has_tone(a.received_wavs()[-1], 600), describe_wav(wav)
