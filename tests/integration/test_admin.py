"""Admin operations on the live server (issue 7, "Must show").

- While a baresip call is up, the config file gets a changed dialplan and a
  new extension and ``pbxctl reload`` (POST /api/v1/reload) applies it: the
  call goes on (the callee still hears the caller's tone after the reload),
  the new extension registers, and the next call follows the new dialplan.
- An invalid file is refused with its error; the old configuration stays.
- SIGTERM during a call: a new call gets 503, both phones get BYE after
  ``calls.drain_time``, and the CDR is in the database.
"""

from __future__ import annotations

import io
import json
import signal
import struct
import time
import urllib.request

import numpy as np
import pytest

from pbxd import ctl

from .audio import dominant_frequency, rms, write_tone_wav
from .harness import ADMIN_TOKEN, EXTENSIONS
from .test_calls import wait_audio, wait_cdrs

NEW_PASSWORD = "pw-1003-new"


def phone(factory, pbx, tmp_path, name, user, password=None, tone=None, **kw):
    p = factory(name, user=user, password=password or EXTENSIONS[user],
                server=("127.0.0.1", pbx.udp_port), transport="udp",
                tone_wav=write_tone_wav(tmp_path / f"{name}.wav", tone, 60) if tone else None,
                **kw)
    p.wait_registered()
    return p


def pbxctl(pbx, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = ctl.main(["--url", f"http://127.0.0.1:{pbx.admin_port}", "--token", ADMIN_TOKEN,
                     *args], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def api(pbx, path: str):
    request = urllib.request.Request(f"http://127.0.0.1:{pbx.admin_port}/api/v1{path}",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def raw_samples(wav) -> tuple[np.ndarray, int]:
    """Samples of a WAV baresip is still writing (its header sizes are not final yet)."""
    data = wav.read_bytes()
    channels, rate = struct.unpack_from("<HI", data, 22)
    start = data.find(b"data") + 8
    usable = (len(data) - start) // (2 * channels) * 2 * channels
    samples = np.frombuffer(data[start:start + usable], "<i2").reshape(-1, channels)[:, 0]
    return samples.astype(np.float64) / 32768.0, rate


def tone_after(wav, start_frame: int) -> tuple[float, float, float]:
    """(seconds, rms, dominant frequency) of what arrived after ``start_frame``."""
    samples, rate = raw_samples(wav)
    tail = samples[start_frame:]
    return len(tail) / rate, rms(tail), dominant_frequency(tail, rate)


@pytest.mark.needs_baresip
@pytest.mark.needs_sox
def test_reload_during_a_call_keeps_it_and_applies_dialplan_and_extension(
        pbx, baresip_factory, tmp_path):
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", tone=440)
    b = phone(baresip_factory, pbx, tmp_path, "b", "1001", tone=880)
    a.dial(f"sip:1001@127.0.0.1:{pbx.udp_port}")
    a.wait_event("CALL_ESTABLISHED")
    b.wait_event("CALL_ESTABLISHED")
    wait_audio(a, b)
    code, out, err = pbxctl(pbx, "calls")
    assert code == 0 and "ANSWERED" in out, (out, err)

    pbx.config["extensions"]["1003"] = {"password": NEW_PASSWORD, "name": "New phone"}
    pbx.config["dialplan"] = {"default": [
        {"match": "_1XXX", "do": [{"dial": {"to": "${EXTEN}", "timeout": 20}}]},
        {"match": "2000", "do": [{"dial": {"to": "1000", "timeout": 20}}]},
    ]}
    pbx.write_config()
    heard_by_b = b.received_wavs()[-1]
    at_reload = len(raw_samples(heard_by_b)[0])
    code, out, err = pbxctl(pbx, "--json", "reload")
    assert code == 0, err
    result = json.loads(out)
    assert {"extensions", "dialplan"} <= set(result["applied"]), result
    assert result["failed"] == [] and result["restart_required"] == []

    time.sleep(2.0)  # the call goes on: audio keeps flowing through the relay
    assert [c["state"] for c in api(pbx, "/calls")] == ["ANSWERED"]
    seconds, level, frequency = tone_after(heard_by_b, at_reload)
    assert seconds >= 1.5 and level > 0.01 and abs(frequency - 440) <= 15, (
        seconds, level, frequency)
    a.hangup()
    b.wait_event("CALL_CLOSED")

    c = phone(baresip_factory, pbx, tmp_path, "c", "1003", password=NEW_PASSWORD, tone=660)
    assert any(r["aor"] == "1003" for r in api(pbx, "/registrations"))
    since = len(a.events)
    c.dial(f"sip:2000@127.0.0.1:{pbx.udp_port}")  # a number only the new dialplan has
    a.wait_event("CALL_ESTABLISHED", since=since)
    c.wait_event("CALL_ESTABLISHED")
    c.hangup()
    a.wait_event("CALL_CLOSED", since=since)
    rows = wait_cdrs(pbx, 2)
    assert [(r["source"], r["destination"], r["disposition"]) for r in rows] == [
        ("1000", "1001", "ANSWERED"), ("1003", "2000", "ANSWERED")]
    audit = api(pbx, "/audit")["records"]
    assert [e["action"] for e in audit] == ["config.reload"]


@pytest.mark.needs_baresip
def test_invalid_config_is_refused_with_its_error_and_the_old_one_stays(
        pbx, baresip_factory, tmp_path):
    pbx.config["extensions"]["1003"] = {"password": NEW_PASSWORD}
    pbx.config["sip"]["listen"].append("udp:70000")
    pbx.write_config()
    code, out, err = pbxctl(pbx, "reload")
    assert code == 1 and "sip.listen[" in err and "70000" in err, err
    assert str(pbx.config_path) in err
    assert not any(e["action"] == "config.reload" for e in api(pbx, "/audit")["records"])
    numbers = [e["number"] for e in api(pbx, "/extensions")]
    assert "1003" not in numbers and "1000" in numbers
    phone(baresip_factory, pbx, tmp_path, "a", "1000")  # the old extensions still register
    pbx.config["sip"]["listen"].pop()
    pbx.write_config()
    code, out, err = pbxctl(pbx, "reload")  # fixed: now it applies
    assert code == 0, err
    assert "1003" in [e["number"] for e in api(pbx, "/extensions")]


@pytest.mark.needs_baresip
def test_sigterm_during_a_call_drains_then_byes_both_phones_and_stores_the_cdr(
        pbx_factory, baresip_factory, tmp_path):
    pbx = pbx_factory(overrides={"calls": {"drain_time": 3}})
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", tone=440)
    b = phone(baresip_factory, pbx, tmp_path, "b", "1001", tone=880)
    c = phone(baresip_factory, pbx, tmp_path, "c", "1002", tone=660)
    a.dial(f"sip:1001@127.0.0.1:{pbx.udp_port}")
    a.wait_event("CALL_ESTABLISHED")
    b.wait_event("CALL_ESTABLISHED")
    started = time.monotonic()
    pbx.proc.send_signal(signal.SIGTERM)
    pbx.wait_for_log("waiting up to 3")
    c.dial(f"sip:1001@127.0.0.1:{pbx.udp_port}")  # during the drain: refused
    refused = c.wait_event("CALL_CLOSED", timeout=5)
    assert "503" in refused.get("param", ""), refused
    a.wait_event("CALL_CLOSED", timeout=8)
    b.wait_event("CALL_CLOSED", timeout=8)
    assert time.monotonic() - started >= 2.5  # the call was allowed to go on first
    assert pbx.proc.wait(timeout=10) in (0, -signal.SIGTERM)  # twistd re-raises the signal
    assert "Traceback" not in pbx.log_text()
    (cdr,) = wait_cdrs(pbx, 1)
    assert cdr["disposition"] == "ANSWERED" and cdr["hangup_cause"] == "shutdown"
    assert (cdr["source"], cdr["destination"]) == ("1000", "1001")


@pytest.mark.needs_baresip
def test_pbxctl_originate_rings_a_then_dials_b_and_hangup_ends_it(pbx, baresip_factory,
                                                                   tmp_path):
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", tone=440)
    b = phone(baresip_factory, pbx, tmp_path, "b", "1001", tone=880)
    code, out, err = pbxctl(pbx, "--json", "originate", "1000", "1001", "--ring-timeout", "10")
    assert code == 0, err
    call_id = json.loads(out)["id"]
    a.wait_event("CALL_ESTABLISHED")
    b.wait_event("CALL_ESTABLISHED")
    code, out, err = pbxctl(pbx, "-rx", "core show channels")
    assert code == 0 and call_id in out, (out, err)
    code, out, err = pbxctl(pbx, "-rx", f"channel request hangup {call_id}")
    assert code == 0, err
    a.wait_event("CALL_CLOSED")
    b.wait_event("CALL_CLOSED")
    assert api(pbx, "/calls") == []
    actions = [e["action"] for e in api(pbx, "/audit")["records"]]
    assert actions == ["call.originate", "call.hangup"]
    with urllib.request.urlopen(f"http://127.0.0.1:{pbx.admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in text.splitlines() if line and not line.startswith("#")}
    assert samples['pbxd_sip_messages_total{direction="out",method="INVITE",status=""}'] >= 2
    assert samples['pbxd_sip_messages_total{direction="in",method="INVITE",status="200"}'] >= 2
    assert samples['pbxd_sip_messages_total{direction="in",method="REGISTER",status=""}'] >= 2
    assert samples['pbxd_sip_transactions_started_total{kind="client"}'] >= 2
    assert samples["pbxd_registrations"] == 2
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "pbxd_calls_total{" not in text:
        time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{pbx.admin_port}/metrics") as r:
            text = r.read().decode()
    assert 'pbxd_calls_total{disposition="answered"} 1.0' in text, text
    assert "pbxd_rtp_packets_relayed_total" in text
