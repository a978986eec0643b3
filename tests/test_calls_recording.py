"""Call recording on real dialplan calls, on a fake clock: the CallRecorder hooked into the
session's dial (real controller, transactions, UA, relay, player and recorder over fake
UDP ports), the record_call application and the CDR's ``recording``."""

from __future__ import annotations

import json
import os
import wave
from typing import Any

import numpy as np
from test_calls_context import A_ADDR, A_RTP, B_ADDR, answer_call, make_world, rtp, sent_to
from test_calls_context import session as only_session

from pbxd.calls.recording import CallRecorder
from pbxd.configschema import RecordingConfig
from pbxd.interfaces import IRecordingService
from pbxd.prompts import resolve_prompt
from pbxd.rtp.codecs import ulaw_encode
from pbxd.rtp.tones import has_tone, sine
from pbxd.store.recordings import RecordingStore

B_RTP = (B_ADDR[0], 5000)
DIAL = [("_1XXX", [("dial", {"to": "${EXTEN}", "timeout": 20})])]


def world_with_recorder(tmp_path: Any, steps: list | None = None, recorded: tuple = (),
                        **config: Any) -> tuple[Any, CallRecorder, RecordingStore]:
    world = make_world({"default": steps or DIAL})
    store = RecordingStore(str(tmp_path / "recordings"))
    recorder = CallRecorder(world.clock, store, RecordingConfig(**config), recorded=recorded,
                            announcement=resolve_prompt("call-recorded"))
    world.manager.deps.recording = recorder
    world.manager.sessions.services[IRecordingService] = recorder
    return world, recorder, store


def connect(world: Any, dialled: str = "1001") -> tuple[Any, Any, Any, Any]:
    """1000 calls ``dialled`` (1001 answers): (caller, callee, session, INVITE to the callee)."""
    a = world.phone("1000", A_ADDR, register=False)
    b = world.phone("1001", B_ADDR)
    a.invite(dialled)
    s = only_session(world)
    invite = b.new()[-1]
    b.answer(invite, 200, _sdp())
    answer_call(world, a)
    return a, b, s, invite


def _sdp() -> bytes:
    from test_calls_support import sdp

    return sdp(B_ADDR[0], B_RTP[1], codecs="0 101")


def talk(world: Any, s: Any, seconds: float, start: int = 0) -> int:
    """Both phones send their tone (caller 440 Hz, callee 880 Hz) for ``seconds``."""
    a_tone, b_tone = sine(440, seconds), sine(880, seconds)
    b_port = s.dialer.media.port
    n = 0
    for n in range(int(seconds * 50)):
        world.clock.advance(0.02)
        chunk = slice(n * 160, (n + 1) * 160)
        seq = start + n
        world.rtp_ports[s.media.port].protocol.datagramReceived(
            rtp(seq, ulaw_encode(a_tone[chunk])), A_RTP)
        world.rtp_ports[b_port].protocol.datagramReceived(
            rtp(seq, ulaw_encode(b_tone[chunk]), ssrc=9), B_RTP)
    return start + n + 1


def channels_of(path: str) -> list[np.ndarray]:
    with wave.open(path, "rb") as w:
        count = w.getnchannels()
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return [frames[c::count] for c in range(count)]


def test_recorded_extension_gets_both_parties_mixed_and_the_cdr_names_the_file(tmp_path) -> None:
    world, recorder, store = world_with_recorder(tmp_path, recorded=("1001",))
    _a, b, s, invite = connect(world)
    talk(world, s, 2.0)
    (rec_id,) = s.recordings
    assert store.active == {rec_id}
    b.request("BYE", invite)
    world.clock.advance(0.2)
    (cdr,) = world.cdrs
    assert cdr["recording"] == rec_id and "recordings" not in cdr
    path = os.path.join(store.folder, f"{rec_id}.wav")
    (mono,) = channels_of(path)
    assert 1.8 < len(mono) / 8000 < 2.2
    assert has_tone(mono, 440) and has_tone(mono, 880)
    with open(path[:-4] + ".json") as f:
        meta = json.load(f)
    assert (meta["caller"], meta["callee"], meta["channels"], meta["reason"]) == \
        ("1000", "1001", 1, "hangup")
    assert store.active == set() and recorder.active == {}


def test_call_between_unrecorded_extensions_leaves_no_file_and_no_cdr_field(tmp_path) -> None:
    world, _recorder, store = world_with_recorder(tmp_path, recorded=("1002",))
    a, _b, s, _invite = connect(world)
    talk(world, s, 0.5)
    a.request("BYE", a.last(200))
    assert os.listdir(store.folder) == [] and "recording" not in world.cdrs[0]


def test_record_call_stereo_puts_the_caller_left_and_the_callee_right(tmp_path) -> None:
    steps = [("_1XXX", [("record_call", {"stereo": True}), ("dial", "${EXTEN}")])]
    world, recorder, store = world_with_recorder(tmp_path, steps)
    a, _b, s, _invite = connect(world)
    ctx = world.seam.contexts[0]
    assert ctx.variables["RECORDCALL"] == "ON" and recorder.is_marked(s.id)
    talk(world, s, 1.0)
    a.request("BYE", a.last(200))  # the caller hangs up: the call and its recording end
    left, right = channels_of(os.path.join(store.folder, f"{s.recordings[0]}.wav"))
    assert has_tone(left, 440, min_ratio=0.9) and has_tone(right, 880, min_ratio=0.9)
    assert not recorder.is_marked(s.id)  # the mark goes with the call


def test_record_call_false_takes_the_mark_off(tmp_path) -> None:
    steps = [("_1XXX", [("record_call", None), ("record_call", False),
                        ("dial", "${EXTEN}")])]
    world, _recorder, store = world_with_recorder(tmp_path, steps)
    _a, _b, s, _invite = connect(world)
    assert world.seam.contexts[0].variables["RECORDCALL"] == "OFF"
    assert s.recordings == [] and os.listdir(store.folder) == []


def test_announcement_plays_to_both_before_they_are_connected_and_recorded(tmp_path) -> None:
    world, _recorder, store = world_with_recorder(tmp_path, recorded=("1000",), announce=True)
    _a, b, s, invite = connect(world)
    b_port = s.dialer.media.port
    assert s.recordings == [] and not s.bridged
    # the callee's audio does not reach the caller during the announcement, nor is recorded
    before = len(sent_to(world, s.media.port, A_RTP))
    world.rtp_ports[b_port].protocol.datagramReceived(rtp(1, b"\x55" * 160, ssrc=9), B_RTP)
    world.clock.pump([0.02] * 100)  # the prompt is about 1.2 s
    to_caller = sent_to(world, s.media.port, A_RTP)[before:]
    to_callee = sent_to(world, b_port, B_RTP)
    assert b"\x55" * 160 not in [p[12:] for p in to_caller]
    assert len(to_caller) > 40 and len(to_callee) > 40  # both heard the prompt
    assert s.bridged and len(s.recordings) == 1
    talk(world, s, 1.0, start=10)
    b.request("BYE", invite)
    (mono,) = channels_of(os.path.join(store.folder, f"{s.recordings[0]}.wav"))
    assert has_tone(mono, 440) and has_tone(mono, 880)


def test_hangup_during_the_announcement_records_nothing(tmp_path) -> None:
    world, recorder, store = world_with_recorder(tmp_path, recorded=("*",), announce=True)
    a, _b, s, _invite = connect(world)
    world.clock.pump([0.02] * 10)
    a.request("BYE", a.last(200))
    world.clock.pump([0.02] * 100)
    assert s.recordings == [] and recorder.announcing == {} and recorder.active == {}
    assert os.listdir(store.folder) == [] and "recording" not in world.cdrs[0]


def test_every_answered_dial_of_a_call_gets_its_own_recording(tmp_path) -> None:
    steps = [("_1XXX", [("dial", "${EXTEN}"), ("dial", "${EXTEN}")])]
    world, recorder, store = world_with_recorder(tmp_path, steps, recorded=("1000",))
    a, b, s, invite = connect(world)
    talk(world, s, 0.5)
    b.request("BYE", invite)  # the dialplan dials again
    second = b.new()[-1]
    assert second.method == "INVITE"
    b.answer(second, 200, _sdp())
    talk(world, s, 0.5, start=100)
    a.request("BYE", a.last(200))
    first_id, second_id = s.recordings
    assert second_id == f"{first_id}-2"
    assert world.cdrs[0]["recording"] == first_id
    assert world.cdrs[0]["recordings"] == [first_id, second_id]
    assert sorted(os.listdir(store.folder)) == sorted(
        f"{i}.{ext}" for i in (first_id, second_id) for ext in ("wav", "json"))
    assert recorder.flush().called


def test_callee_hanging_up_during_the_announcement_records_nothing(tmp_path) -> None:
    world, recorder, store = world_with_recorder(tmp_path, recorded=("1001",), announce=True)
    _a, b, s, invite = connect(world)
    world.clock.pump([0.02] * 10)
    b.request("BYE", invite)
    world.clock.pump([0.02] * 100)
    assert s.recordings == [] and recorder.announcing == {} and recorder.active == {}
    assert os.listdir(store.folder) == [] and not s.bridged
