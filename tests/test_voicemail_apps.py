"""The voicemail and voicemail_main applications on a FakeCall, over the real voicemail
service and store (SQLite and WAV files in tmp_path)."""

from __future__ import annotations

import os
import wave

import pytest
from test_voicemail_store import Limits, leave, make_service, write_wav
from twisted.trial.unittest import SynchronousTestCase

from pbxd.apps.voicemail import Voicemail, VoicemailOptions
from pbxd.apps.voicemail_main import VoicemailMain, number_prompts
from pbxd.interfaces import IVoicemailService
from pbxd.testing import TIMEOUT, FakeCall

_t = SynchronousTestCase()
ok, failed = _t.successResultOf, _t.failureResultOf
VM, MAIN = Voicemail(), VoicemailMain()


@pytest.fixture
def service(tmp_path):
    return make_service(tmp_path)


def vm_call(service, **kw) -> FakeCall:
    kw.setdefault("caller", "2000")
    return FakeCall(exten="1000", services={IVoicemailService: service}, **kw)


# -- voicemail -----------------------------------------------------------------------


def test_step_forms_and_checks():
    assert VoicemailOptions.parse(1000).box == "1000"
    assert VoicemailOptions.parse({"box": "${EXTEN}", "greeting": "busy"}).greeting == "busy"
    for bad in (None, {"box": ""}, {"box": "1", "greeting": "rude"}, {"box": "1", "x": 1}):
        with pytest.raises(ValueError):
            VM.check_args(bad)


def test_message_is_saved_before_the_caller_hears_saved(service):
    call = vm_call(service, record_seconds=5.0, caller_name="Bob",
                   record_audio=lambda s: b"\x00\x10" * int(s * 8000))
    played_at_save = []
    service.on_saved.append(lambda m: played_at_save.append(list(call.played)))
    ok(VM.execute(call, {"box": "1000"}))
    assert call.played == ["vm-unavailable", "leave-message", "tone:beep", "message-saved",
                           "goodbye"]
    assert played_at_save == [["vm-unavailable", "leave-message", "tone:beep"]]
    (message,) = ok(service.messages("1000"))
    assert (message["caller"], message["caller_name"], message["duration"]) == ("2000", "Bob", 5.0)
    with wave.open(message["path"]) as w:
        assert w.getnframes() == 40000
    assert call.variables["VMSTATUS"] == "SUCCESS" and call.hangup_cause == "normal"
    (recording,) = call.recordings
    assert recording["path"] != message["path"] and not os.path.exists(recording["path"])


def test_recording_limits_come_from_the_service(service):
    call = vm_call(service)
    ok(VM.execute(call, "1000"))
    assert [a for a in call.actions if a[0] == "record"]
    # FakeCall records min(record_seconds, max); the service's silence limit makes it stop
    assert call.recordings[0]["reason"] == "silence"


def test_busy_greeting_when_the_dial_was_busy(service):
    call = vm_call(service, variables={"DIALSTATUS": "BUSY"})
    ok(VM.execute(call, {"box": "1000"}))
    assert call.played[:2] == ["vm-busy", "leave-message"]


def test_the_box_own_greeting_replaces_the_default(service):
    greeting = ok(service.set_greeting("1000", "unavailable",
                                       write_wav(service.recording_path("1000"), 1.0)))
    call = vm_call(service)
    ok(VM.execute(call, {"box": "1000", "greeting": "unavailable"}))
    assert call.played[:2] == [greeting, "tone:beep"]


def test_pound_skips_the_greeting(service):
    call = vm_call(service, digits=["#"])
    ok(VM.execute(call, {"box": "1000"}))
    assert call.played[:2] == ["vm-unavailable", "tone:beep"]


def test_a_too_short_message_is_discarded(service):
    call = vm_call(service, record_seconds=0.5)
    ok(VM.execute(call, {"box": "1000"}))
    assert ok(service.messages("1000")) == []
    assert call.variables["VMSTATUS"] == "USEREXIT" and "message-saved" not in call.played
    assert not os.path.exists(call.recordings[0]["path"])


def test_hanging_up_while_speaking_still_saves(service):
    call = vm_call(service, record_seconds=3.0)
    service.silence_seconds = 0.0  # FakeCall: no silence stop means the caller hung up
    ok(VM.execute(call, {"box": "1000"}))
    assert call.hung_up_by == "caller"
    assert len(ok(service.messages("1000"))) == 1
    assert call.played == ["vm-unavailable", "leave-message", "tone:beep"]


def test_unknown_box_does_not_answer(service):
    call = vm_call(service)
    ok(VM.execute(call, {"box": "4711"}))
    assert not call.answered and call.played == [] and call.variables["VMSTATUS"] == "FAILED"


def test_a_full_box_takes_no_message(service):
    service.max_messages = 1
    leave(service)
    call = vm_call(service)
    ok(VM.execute(call, {"box": "1000"}))
    assert call.played == ["vm-mailbox-full"] and len(ok(service.messages("1000"))) == 1


def test_no_service_fails_the_step():
    failed(VM.execute(FakeCall(), {"box": "1000"})).trap(LookupError)


# -- voicemail_main ------------------------------------------------------------------


def main_call(service, digits=(), caller="1000", **kw) -> FakeCall:
    return FakeCall(exten="*98", caller=caller, digits=digits,
                    services={IVoicemailService: service}, **kw)


def test_three_wrong_pins_hang_up_and_count_as_failed_logins(tmp_path):
    reports = []
    service = make_service(tmp_path, failed_login=lambda box, cid: reports.append((box, cid)))
    call = main_call(service, ["1111#", "2222#", "3333#"])
    ok(MAIN.execute(call, None))
    assert reports == [("1000", "fake-call-1")] * 3
    assert call.played.count("vm-incorrect") == 3
    assert call.hangup_cause == "normal" and call.variables["VMMAINSTATUS"] == "FAILED"


def test_a_box_without_pin_or_unknown_never_opens(tmp_path):
    reports = []
    service = make_service(tmp_path, failed_login=lambda box, cid: reports.append(box))
    for box in ("1001", "4711"):
        call = main_call(service, ["#", "1234#", TIMEOUT], caller=box)
        ok(MAIN.execute(call, None))
        assert "vm-you-have" not in call.played and "vm-no-messages" not in call.played
    assert reports == ["1001"] * 3 + ["4711"] * 3


def test_login_counts_listen_delete(service):
    first = leave(service, caller="2000")
    second = leave(service, caller="3000")
    ok(service.mark_old("1000", second["id"]))
    call = main_call(service, ["1234#", "1"])
    d = MAIN.execute(call, None)
    assert call.played[:6] == ["vm-password", "vm-you-have", "digit-1", "vm-new-and",
                               "digit-1", "vm-old-messages"]
    # message 1 (the new one) played to the end, then the message menu waits
    assert call.played[-3:] == ["digit-1", first["path"], "vm-message-menu"]
    assert ok(service.counts("1000")) == (0, 2)
    call.press("7")  # delete it; message 2 plays next
    assert call.played[-5:] == ["vm-deleted", "vm-message", "digit-1", second["path"],
                                "vm-message-menu"]
    call.press("9")  # save: keeps it old, no more messages, main menu
    assert call.played[-3:] == ["message-saved", "vm-no-more", "vm-main-menu"]
    call.press("#")
    ok(d)
    assert [m["id"] for m in ok(service.messages("1000"))] == [second["id"]]
    assert call.played[-1] == "goodbye" and call.variables["VMMAINSTATUS"] == "LOGIN"


def test_previous_and_repeat_and_a_digit_interrupting_a_message(service):
    a, b = leave(service), leave(service)
    call = main_call(service, ["1234#", "1"])
    d = MAIN.execute(call, None)
    call.press("6")  # next: message 2
    assert call.played[-4:] == ["vm-message", "digit-2", b["path"], "vm-message-menu"]
    call.press("4")  # previous: message 1 again
    assert call.played[-4:] == ["vm-message", "digit-1", a["path"], "vm-message-menu"]
    call.press("5")  # repeat
    assert call.played[-4:] == ["vm-message", "digit-1", a["path"], "vm-message-menu"]
    call.press("*")
    call.press("#")
    ok(d)


def test_options_record_greeting_and_change_pin(service):
    call = main_call(service, ["1234#", "0", "2"], record_seconds=3.0)
    d = MAIN.execute(call, None)
    assert call.played[-2:] == ["vm-greeting-saved", "vm-options"]
    assert ok(service.greeting("1000", "busy")) is not None
    call.press("5")
    call.press("5555#")
    call.press("5555#")
    assert call.played[-2:] == ["vm-password-changed", "vm-options"]
    assert ok(service.check_pin("1000", "5555")) is True
    call.press("5")
    call.press("6666#")
    call.press("7777#")
    assert call.played[-2:] == ["invalid", "vm-options"]
    assert ok(service.check_pin("1000", "5555")) is True
    call.press("*")
    call.press("#")
    ok(d)


def test_silence_in_the_main_menu_ends_the_call(service):
    call = main_call(service, ["1234#"])
    d = MAIN.execute(call, None)
    for _ in range(3):
        call.clock.advance(5)
    ok(d)
    assert call.played.count("vm-main-menu") == 3 and call.played[-1] == "goodbye"


def test_number_prompts():
    assert number_prompts(0) == ["digit-0"] and number_prompts(12) == ["digit-1", "digit-2"]


def test_limits_dataclass_matches_the_interface():
    for name in ("max_message_seconds", "min_message_seconds", "silence_seconds", "max_messages"):
        assert name in IVoicemailService and hasattr(Limits(), name)
