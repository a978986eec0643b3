"""Call recording through the real server (issue 6, "Must show").

baresip A (1000, sending 440 Hz) calls baresip B (1001, sending 880 Hz)
through pbxd with recording on. After the hang-up the WAV in
``state_dir/recordings`` holds both tones, the CDR names it, and the admin
API lists it and serves the same bytes; deleting it through the API removes
the file and is audited. Second test: a dialplan ``record_call`` with stereo
and the announcement: the caller's tone is the left channel, the callee's the
right one, and both phones hear "this call is recorded" and then each other.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from pbxd.rtp.tones import has_tone

from .audio import describe_wav, dominant_frequency, read_wav, write_tone_wav
from .harness import ADMIN_TOKEN, EXTENSIONS


def phone(factory, pbx, tmp_path, name, user, tone):
    p = factory(name, user=user, password=EXTENSIONS[user], server=("127.0.0.1", pbx.udp_port),
                transport="udp", tone_wav=write_tone_wav(tmp_path / f"{name}.wav", tone, 60))
    p.wait_registered()
    return p


def api(pbx, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{pbx.admin_port}/api/v1{path}",
                                     method=method,
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


def wait_cdr(pbx, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        db = sqlite3.connect(pbx.state_dir / "pbxd.sqlite")
        try:
            rows = db.execute("SELECT extra FROM cdr ORDER BY id").fetchall()
        finally:
            db.close()
        if rows or time.monotonic() > deadline:
            assert rows, "no CDR written"
            return json.loads(rows[-1][0])
        time.sleep(0.1)


def wait_finished(folder: Path, rec_id: str, timeout: float = 10.0) -> dict:
    """The recording's metadata once it has stopped (``seconds`` is set)."""
    deadline = time.monotonic() + timeout
    path = folder / f"{rec_id}.json"
    while time.monotonic() < deadline:
        if path.exists():
            meta = json.loads(path.read_text())
            if "seconds" in meta:
                return meta
        time.sleep(0.1)
    raise AssertionError(f"recording {rec_id} never finished: {sorted(folder.iterdir())}")


def talk(a, b, pbx, seconds: float) -> None:
    a.dial(f"sip:1001@127.0.0.1:{pbx.udp_port}")
    a.wait_event("CALL_ESTABLISHED")
    b.wait_event("CALL_ESTABLISHED")
    time.sleep(seconds)
    a.hangup()
    a.wait_event("CALL_CLOSED")
    b.wait_event("CALL_CLOSED")


def stereo(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    import wave

    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 2, f"{path} is not stereo"
        rate = wav.getframerate()
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    return frames[:, 0], frames[:, 1], rate


@pytest.mark.needs_baresip
@pytest.mark.needs_sox
def test_recorded_call_holds_both_tones_and_is_listed_served_and_deleted(
        pbx_factory, baresip_factory, tmp_path):
    pbx = pbx_factory(overrides={"extensions": {"1000": {"record": True}}})
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", 440)
    b = phone(baresip_factory, pbx, tmp_path, "b", "1001", 880)
    talk(a, b, pbx, 4.0)
    cdr = wait_cdr(pbx)
    rec_id = cdr["recording"]
    folder = pbx.state_dir / "recordings"
    meta = wait_finished(folder, rec_id)
    wav = folder / f"{rec_id}.wav"
    samples, rate = read_wav(wav)
    body = (samples[int(0.5 * rate):-int(0.3 * rate)] * 32767).astype(np.int16)
    assert 3.0 < meta["seconds"] < 6.0, meta
    assert (meta["caller"], meta["callee"], meta["channels"]) == ("1000", "1001", 1)
    assert has_tone(body, 440), describe_wav(wav)
    assert has_tone(body, 880), describe_wav(wav)

    status, _, listing = api(pbx, "/recordings")
    (listed,) = json.loads(listing)["recordings"]
    assert listed["id"] == rec_id and listed["size"] == wav.stat().st_size
    assert (listed["caller"], listed["callee"], listed["recording"]) == ("1000", "1001", False)
    status, ctype, data = api(pbx, f"/recordings/{rec_id}")
    assert (status, ctype) == (200, "audio/wav") and data == wav.read_bytes()
    status, _, _ = api(pbx, f"/recordings/{rec_id}", "DELETE")
    assert status == 200 and not wav.exists()
    _, _, audit = api(pbx, "/audit?action=recording.delete")
    assert [e["target"] for e in json.loads(audit)["records"]] == [rec_id]


@pytest.mark.needs_baresip
@pytest.mark.needs_sox
def test_record_call_stereo_announced_keeps_each_party_on_its_channel(
        pbx_factory, baresip_factory, tmp_path):
    dialplan = {"default": [{"match": "_1XXX", "do": [
        {"record_call": {"stereo": True, "announce": True}},
        {"dial": {"to": "${EXTEN}", "timeout": 20}}]}]}
    pbx = pbx_factory(overrides={"dialplan": dialplan})
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", 440)
    b = phone(baresip_factory, pbx, tmp_path, "b", "1001", 880)
    talk(a, b, pbx, 6.0)  # about 1.5 s of announcement, then the conversation
    rec_id = wait_cdr(pbx)["recording"]
    folder = pbx.state_dir / "recordings"
    meta = wait_finished(folder, rec_id)
    assert meta["channels"] == 2
    left, right, rate = stereo(folder / f"{rec_id}.wav")
    body = slice(int(0.5 * rate), len(left) - int(0.3 * rate))
    assert abs(dominant_frequency(left[body] / 32768.0, rate) - 440) < 15
    assert abs(dominant_frequency(right[body] / 32768.0, rate) - 880) < 15
    assert not has_tone(left[body], 880) and not has_tone(right[body], 440)
    # each phone heard the announcement (speech, not a tone) and then the other party
    for heard, tone in ((b.received_wavs()[-1], 440), (a.received_wavs()[-1], 880)):
        samples, rate = read_wav(heard)
        pcm = (samples * 32767).astype(np.int16)
        tail = pcm[-int(3.0 * rate):-int(0.5 * rate)]
        assert has_tone(tail, tone, min_ratio=0.5), describe_wav(heard)
        announcement = pcm[int(0.2 * rate):int(1.2 * rate)]
        assert np.sqrt(np.mean(announcement.astype(float) ** 2)) > 100, describe_wav(heard)
        assert not has_tone(announcement, tone, min_ratio=0.5), describe_wav(heard)


@pytest.mark.needs_baresip
@pytest.mark.needs_sox
def test_sigterm_during_a_recorded_call_leaves_the_recording_complete(
        pbx_factory, baresip_factory, tmp_path):
    pbx = pbx_factory(overrides={"recording": {"extensions": ["*"]},
                                 "calls": {"drain_time": 0}})
    a = phone(baresip_factory, pbx, tmp_path, "a", "1000", 440)
    b = phone(baresip_factory, pbx, tmp_path, "b", "1001", 880)
    a.dial(f"sip:1001@127.0.0.1:{pbx.udp_port}")
    a.wait_event("CALL_ESTABLISHED")
    b.wait_event("CALL_ESTABLISHED")
    time.sleep(3.0)
    pbx.proc.send_signal(signal.SIGTERM)
    assert pbx.proc.wait(timeout=10) in (0, -signal.SIGTERM)
    a.wait_event("CALL_CLOSED", timeout=5)
    folder = pbx.state_dir / "recordings"
    (meta_path,) = folder.glob("*.json")  # the server is gone: what it left is final
    meta = json.loads(meta_path.read_text())
    assert meta["reason"] == "hangup" and 2.0 < meta["seconds"] < 5.0, meta
    wav = folder / f"{meta['id']}.wav"
    samples, rate = read_wav(wav)
    assert abs(len(samples) / rate - meta["seconds"]) < 0.05
    body = (samples[int(0.5 * rate):] * 32767).astype(np.int16)
    assert has_tone(body, 440) and has_tone(body, 880), describe_wav(wav)
    assert wait_cdr(pbx, timeout=0)["recording"] == meta["id"]
