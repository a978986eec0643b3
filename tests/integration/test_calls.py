"""Calls between extensions through the real server (issue 4, "Must show").

baresip A (registered over TLS) calls baresip B (registered over UDP): each
sends its own tone, each must hear the other's (through pbxd's RTP relay),
A hangs up and both legs end. Busy (486), cancel while ringing (487) and an
unregistered callee (480). SIPp: 1,000 authenticated calls with a 2 s hold
at 50 calls/s, then exactly 1,000 ANSWERED CDRs in the SQLite file.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from .audio import describe_wav, wav_has_tone, write_tone_wav
from .harness import EXTENSIONS
from .ports import free_port, free_port_range
from .sipp import SippProcess, run_sipp, users_inf

SCENARIOS = Path(__file__).parent / "scenarios"
#: The call layer's own outcomes (486, 480, 487 ...) reach the caller when the dialplan only
#: dials: the default dialplan would go on to voicemail (see test_dialplan.py for the rest).
DIAL_ONLY = {"dialplan": {"default": [
    {"match": "_1XXX", "do": [{"dial": {"to": "${EXTEN}", "timeout": 20}}]}]}}


@pytest.fixture
def pbx(pbx_factory):
    return pbx_factory(overrides=DIAL_ONLY)

#: one SIPp process plays all the phones: the per-source limits would refuse it
LOAD_LIMITS = {"max_transactions_per_source": 1_000_000, "max_dialogs_per_source": 100_000}


def phone(factory, pbx, tmp_path, name, user, transport, tone=None, **kw):
    port = pbx.tls_port if transport == "tls" else pbx.udp_port
    p = factory(
        name, user=user, password=EXTENSIONS[user], server=("127.0.0.1", port),
        transport=transport, cafile=pbx.tls_certificate if transport == "tls" else None,
        tone_wav=write_tone_wav(tmp_path / f"{name}.wav", tone, 60) if tone else None, **kw)
    p.wait_registered()
    return p


def wait_audio(*phones, size=16000, timeout=8.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wavs = [w for p in phones for w in p.received_wavs()]
        if len(wavs) >= len(phones) and all(w.stat().st_size > size for w in wavs):
            return
        time.sleep(0.1)


def cdrs(pbx) -> list[dict]:
    db = sqlite3.connect(pbx.state_dir / "pbxd.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM cdr ORDER BY id")]
    finally:
        db.close()


def wait_cdrs(pbx, count, timeout=10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows = cdrs(pbx)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = cdrs(pbx)
    return rows


@pytest.mark.needs_baresip
@pytest.mark.needs_sox
def test_tls_phone_calls_udp_phone_and_each_hears_the_other(pbx, baresip_factory, tmp_path):
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", "tls", tone=440)
    b = phone(baresip_factory, pbx, tmp_path, "b", "1001", "udp", tone=880)
    a.dial(f"sip:1001@127.0.0.1:{pbx.tls_port};transport=tls")
    a.wait_event("CALL_ESTABLISHED")
    b.wait_event("CALL_ESTABLISHED")
    wait_audio(a, b)
    a.hangup()
    a.wait_event("CALL_CLOSED")
    b.wait_event("CALL_CLOSED")
    a.stop()
    b.stop()
    heard_by_a, heard_by_b = a.received_wavs()[-1], b.received_wavs()[-1]
    assert wav_has_tone(heard_by_a, 880), describe_wav(heard_by_a)
    assert wav_has_tone(heard_by_b, 440), describe_wav(heard_by_b)
    (cdr,) = wait_cdrs(pbx, 1)
    assert cdr["disposition"] == "ANSWERED" and cdr["hangup_side"] == "caller"
    assert (cdr["source"], cdr["destination"]) == ("1000", "1001")
    assert "PCMU" in cdr["codecs"] or "PCMA" in cdr["codecs"]


@pytest.mark.needs_baresip
def test_busy_callee_gives_486(pbx, baresip_factory, tmp_path):
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", "udp")
    b = phone(baresip_factory, pbx, tmp_path, "b", "1001", "udp", answer=False)
    a.dial(f"sip:1001@127.0.0.1:{pbx.udp_port}")
    b.wait_event("CALL_INCOMING")
    b.command("hangup")  # rejecting an incoming call: baresip answers 486 Busy Here
    closed = a.wait_event("CALL_CLOSED")
    assert "486" in closed.get("param", ""), closed
    (cdr,) = wait_cdrs(pbx, 1)
    assert cdr["disposition"] == "BUSY"


@pytest.mark.needs_baresip
def test_caller_cancels_while_callee_rings(pbx, baresip_factory, tmp_path):
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", "udp")
    b = phone(baresip_factory, pbx, tmp_path, "b", "1001", "udp", answer=False)
    a.dial(f"sip:1001@127.0.0.1:{pbx.udp_port}")
    b.wait_event("CALL_INCOMING")
    a.wait_event("CALL_RINGING")
    a.hangup()
    b.wait_event("CALL_CLOSED")  # B stops ringing
    (cdr,) = wait_cdrs(pbx, 1)
    assert cdr["disposition"] == "CANCELLED" and cdr["hangup_side"] == "caller"


def register_sipp(pbx, tmp_path, user: str, port: int) -> None:
    """Register ``user`` with Contact 127.0.0.1:``port`` (where a SIPp UAS will listen)."""
    inf = users_inf(tmp_path / f"reg{user}.csv", {user: EXTENSIONS[user]})
    result = run_sipp("register.xml", f"127.0.0.1:{pbx.udp_port}", tmp_path / f"reg{user}",
                      calls=1, inf=inf, local_port=port, timeout=10)
    assert result.returncode == 0, result.explain()


def caller_inf(tmp_path) -> Path:
    """Caller 1000's credentials (field0 user, field1 [authentication ...])."""
    return users_inf(tmp_path / "caller.csv", {"1000": EXTENSIONS["1000"]})


def auth_uri(pbx, dialled: str) -> list[str]:
    """SIPp's digest uri defaults to sip:host:port; pbxd wants the Request-URI."""
    return ["-auth_uri", f"{dialled}@127.0.0.1:{pbx.udp_port}"]


@pytest.mark.needs_sipp
def test_unregistered_callee_gives_480_and_unknown_number_404(pbx, tmp_path):
    for number, status in (("1001", 480), ("5555", 404)):
        result = run_sipp(SCENARIOS / "call_uac_fail.xml", f"127.0.0.1:{pbx.udp_port}",
                          tmp_path / f"uac{number}", service=number, calls=1,
                          inf=caller_inf(tmp_path), timeout=10, extra=auth_uri(pbx, number))
        assert result.returncode == 0 and result.successful == 1, result.explain()
        assert f"SIP/2.0 {status} " in result.messages


@pytest.mark.needs_sipp
def test_busy_sipp_callee_gives_486(pbx, tmp_path):
    port = free_port()
    register_sipp(pbx, tmp_path, "1001", port)
    uas = SippProcess(SCENARIOS / "call_uas_busy.xml", None, tmp_path / "uas", local_port=port,
                      calls=None, timeout=20).start()
    uas.wait_ready()
    result = run_sipp(SCENARIOS / "call_uac_fail.xml", f"127.0.0.1:{pbx.udp_port}",
                      tmp_path / "uac", service="1001", calls=1, inf=caller_inf(tmp_path),
                      timeout=10, extra=auth_uri(pbx, "1001"))
    uas.stop()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert "SIP/2.0 486 " in result.messages
    assert wait_cdrs(pbx, 1)[0]["disposition"] == "BUSY"


@pytest.mark.needs_sipp
def test_sipp_cancel_while_ringing_gets_487_and_callee_is_cancelled(pbx, tmp_path):
    port = free_port()
    register_sipp(pbx, tmp_path, "1001", port)
    uas = SippProcess(SCENARIOS / "call_uas_ring.xml", None, tmp_path / "uas", local_port=port,
                      calls=1, timeout=20).start()
    uas.wait_ready()
    result = run_sipp(SCENARIOS / "call_uac_cancel.xml", f"127.0.0.1:{pbx.udp_port}",
                      tmp_path / "uac", service="1001", calls=1, inf=caller_inf(tmp_path),
                      timeout=10, extra=["-d", "300", *auth_uri(pbx, "1001")])
    uas_result = uas.wait(timeout=10)
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert uas_result.returncode == 0, uas_result.explain()  # it got the CANCEL
    (cdr,) = wait_cdrs(pbx, 1)
    assert cdr["disposition"] == "CANCELLED"


@pytest.mark.needs_sipp
def test_thousand_authenticated_calls_through_pbx_all_answered(pbx_factory, tmp_path):
    low, high = free_port_range(1200)
    pbx = pbx_factory(overrides={"security": {"rate_limit": {"requests": 0}},
                                 "limits": LOAD_LIMITS,
                                 "rtp": {"port_range": [low, high]}},
                      transports=("udp",), admin=False)
    port = free_port()
    register_sipp(pbx, tmp_path, "1001", port)
    uas = SippProcess("sn:uas", None, tmp_path / "uas", local_port=port, calls=None,
                      timeout=90).start()
    uas.wait_ready()
    started = time.monotonic()
    result = run_sipp(SCENARIOS / "call_uac_auth.xml", f"127.0.0.1:{pbx.udp_port}",
                      tmp_path / "uac", service="1001", calls=1000, rate=50, limit=400,
                      inf=caller_inf(tmp_path), timeout=50,
                      extra=["-d", "2000", *auth_uri(pbx, "1001")])
    elapsed = time.monotonic() - started
    uas.stop()
    assert result.returncode == 0, result.explain()
    assert result.successful == 1000 and result.failed == 0, result.explain()
    rows = wait_cdrs(pbx, 1000)
    assert len(rows) == 1000
    assert {r["disposition"] for r in rows} == {"ANSWERED"}
    assert elapsed < 60
