"""Voicemail and message waiting through the real server (issue 6, "Must show").

baresip 1000 calls 1001 (not registered: the dial fails at once, voicemail
answers), sends an 880 Hz tone and hangs up about 5 s after the recording
started: the WAV in state_dir holds that tone for about 5 s. A SIPp
subscriber for box 1001 gets NOTIFY "Messages-Waiting: yes" with 1/0. The
owner (baresip 1001) calls the main menu, types the PIN and "1" (RFC 4733),
hears the tone, deletes the message with "7": NOTIFYs follow with 0/1 and
0/0. Then kill -9 right after "saved": after a restart the message is listed
and plays.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from .audio import describe_wav, dominant_frequency, read_wav, rms, write_tone_wav
from .harness import EXTENSIONS
from .sipp import SippProcess, users_inf

SCENARIOS = Path(__file__).parent / "scenarios"
PIN = "4321"
DIALPLAN = {
    "default": [
        {"match": "_1XXX", "do": [{"dial": {"to": "${EXTEN}", "timeout": 5}},
                                  {"voicemail": {"box": "${EXTEN}"}}]},
        {"match": "*98", "do": ["voicemail_main"]},
    ]
}


def voicemail_pbx(pbx_factory):
    return pbx_factory(overrides={
        "extensions": {"1001": {"voicemail_pin": PIN}},
        "dialplan": DIALPLAN,
        "voicemail": {"silence_seconds": 0, "min_message_seconds": 1},
    })


def phone(factory, pbx, tmp_path, name, user, tone=None):
    p = factory(name, user=user, password=EXTENSIONS[user], server=("127.0.0.1", pbx.udp_port),
                transport="udp",
                tone_wav=write_tone_wav(tmp_path / f"{name}.wav", tone, 60) if tone else None)
    p.wait_registered()
    return p


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def press(phone, digits: str) -> None:
    """Send RFC 4733 digits one at a time (baresip drops some of a burst)."""
    for digit in digits:
        phone.command("sndcode", digit)
        time.sleep(0.3)


def box_dir(pbx, box="1001") -> Path:
    return pbx.state_dir / "voicemail" / box


def messages(pbx, box="1001") -> list[tuple]:
    db = sqlite3.connect(pbx.state_dir / "pbxd.sqlite")
    try:
        return db.execute("SELECT id, caller, duration, folder FROM voicemail_messages"
                          " WHERE box = ? ORDER BY time", (box,)).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def tone_seconds(samples: np.ndarray, rate: int, frequency: float, tolerance=20.0) -> float:
    """Seconds of ``samples`` (in 100 ms windows) whose dominant frequency is ``frequency``."""
    window = rate // 10
    count = 0
    for start in range(0, len(samples) - window + 1, window):
        chunk = samples[start:start + window]
        if rms(chunk) > 0.01 and abs(dominant_frequency(chunk, rate) - frequency) <= tolerance:
            count += 1
    return count / 10


def leave_message(pbx, caller, seconds: float) -> Path:
    """``caller`` calls 1001 and speaks (its tone) for about ``seconds``; returns the WAV."""
    before = set(box_dir(pbx).glob("msg-*.wav")) if box_dir(pbx).exists() else set()
    caller.dial(f"sip:1001@127.0.0.1:{pbx.udp_port}")
    caller.wait_event("CALL_ESTABLISHED")
    tmp = box_dir(pbx) / "tmp"
    wait_for(lambda: tmp.exists() and list(tmp.glob("rec-*.wav")), 15, "the recording to start")
    time.sleep(seconds)
    caller.hangup()
    caller.wait_event("CALL_CLOSED")
    new = wait_for(lambda: set(box_dir(pbx).glob("msg-*.wav")) - before, 10, "the saved message")
    return next(iter(new))


@pytest.mark.needs_baresip
@pytest.mark.needs_sox
def test_message_mwi_main_menu_delete(pbx_factory, baresip_factory, tmp_path):
    pbx = voicemail_pbx(pbx_factory)
    caller = phone(baresip_factory, pbx, tmp_path, "caller", "1000", tone=880)
    path = leave_message(pbx, caller, 5.0)
    samples, rate = read_wav(path)
    seconds = len(samples) / rate
    assert 4.0 <= seconds <= 6.5, describe_wav(path)
    assert tone_seconds(samples, rate, 880) >= 0.8 * seconds - 0.5, describe_wav(path)
    # the WAV is moved into the box before its index row commits (then "saved" plays)
    ((_id, caller_number, duration, folder),) = wait_for(lambda: messages(pbx), 10,
                                                          "the message in the index")
    assert (caller_number, folder) == ("1000", "new") and abs(duration - seconds) < 0.1

    watcher = SippProcess(SCENARIOS / "subscribe_mwi.xml", f"127.0.0.1:{pbx.udp_port}",
                          tmp_path / "mwi", timeout=60,
                          inf=users_inf(tmp_path / "mwi.csv", {"1001": EXTENSIONS["1001"]}),
                          keys={"expires": "600"},
                          extra=["-auth_uri", f"1001@127.0.0.1:{pbx.udp_port}"])
    watcher.start()
    log = tmp_path / "mwi" / "messages.log"

    def notify_bodies() -> list[str]:
        text = log.read_text(errors="replace") if log.exists() else ""
        return re.findall(r"Voice-Message: (\d+/\d+)", text)

    wait_for(lambda: notify_bodies(), 10, "the first NOTIFY")
    text = log.read_text(errors="replace")
    assert "Messages-Waiting: yes" in text and notify_bodies() == ["1/0"]

    owner = phone(baresip_factory, pbx, tmp_path, "owner", "1001", tone=300)
    owner.dial(f"sip:*98@127.0.0.1:{pbx.udp_port}")
    owner.wait_event("CALL_ESTABLISHED")
    time.sleep(1.0)  # the password prompt is playing: RTP flows both ways
    press(owner, f"{PIN}#")
    time.sleep(1.0)
    press(owner, "1")
    wait_for(lambda: messages(pbx) and messages(pbx)[0][3] == "old", 30, "the message heard")
    press(owner, "7")
    wait_for(lambda: not messages(pbx), 10, "the message deleted")
    wait_for(lambda: "0/0" in notify_bodies(), 10, "a NOTIFY with 0/0")
    assert notify_bodies() == ["1/0", "0/1", "0/0"]
    assert not path.exists()
    press(owner, "#")
    owner.wait_event("CALL_CLOSED", timeout=15)
    heard = owner.received_wavs()[-1]
    samples, rate = read_wav(heard)
    assert tone_seconds(samples, rate, 880) >= 3.5, describe_wav(heard)
    watcher.stop()


@pytest.mark.needs_baresip
@pytest.mark.needs_sox
def test_kill_9_right_after_saved_loses_nothing(pbx_factory, baresip_factory, tmp_path):
    pbx = voicemail_pbx(pbx_factory)
    caller = phone(baresip_factory, pbx, tmp_path, "caller", "1000", tone=440)
    caller.dial(f"sip:1001@127.0.0.1:{pbx.udp_port}")
    caller.wait_event("CALL_ESTABLISHED")
    tmp = box_dir(pbx) / "tmp"
    wait_for(lambda: tmp.exists() and list(tmp.glob("rec-*.wav")), 15, "the recording to start")
    time.sleep(3.0)
    press(caller, "#")  # stop recording: the caller then hears "saved"
    pbx.wait_for_log(r"voicemail 1001: message msg-\S+ from 1000 .* saved", timeout=10)
    pbx.kill9()
    caller.stop()  # its RTP would still hit the port the restarted server hands out first
    pbx.restart()
    ((message_id, caller_number, duration, folder),) = messages(pbx)
    assert caller_number == "1000" and folder == "new" and duration >= 2.0
    path = box_dir(pbx) / f"{message_id}.wav"
    samples, rate = read_wav(path)
    assert tone_seconds(samples, rate, 440) >= 2.0, describe_wav(path)
    owner = phone(baresip_factory, pbx, tmp_path, "owner", "1001", tone=300)
    owner.dial(f"sip:*98@127.0.0.1:{pbx.udp_port}")
    owner.wait_event("CALL_ESTABLISHED")
    time.sleep(1.0)  # the password prompt is playing: RTP flows both ways
    press(owner, f"{PIN}#")
    time.sleep(1.0)
    press(owner, "1")
    wait_for(lambda: messages(pbx) and messages(pbx)[0][3] == "old", 30, "the message played")
    owner.hangup()
    owner.wait_event("CALL_CLOSED")
    heard = owner.received_wavs()[-1]
    samples, rate = read_wav(heard)
    assert tone_seconds(samples, rate, 440) >= 2.0, describe_wav(heard)
