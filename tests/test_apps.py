"""The built-in applications, each run on a FakeCall."""

from __future__ import annotations

import os
import wave

import pytest
from twisted.trial.unittest import SynchronousTestCase

from pbxd.apps.dial import combine_statuses
from pbxd.dialplan import discover_applications
from pbxd.interfaces import CallHungUp, Goto, IDialplanApplication
from pbxd.prompts import prompt_names, read_wav, resolve_prompt
from pbxd.testing import TIMEOUT, FakeCall

APPS = discover_applications()
MENU = {"prompt": "please-enter", "options": {1: "sales,100", "2": "2000"}, "timeout": 4}


def test_builtins_provide_the_interface():
    assert sorted(APPS) == ["answer", "dial", "echo", "goto", "hangup", "menu", "playback",
                            "record_call", "set", "voicemail", "voicemail_main", "wait"]
    for app in APPS.values():
        assert IDialplanApplication.providedBy(app)


class ControlAppTests(SynchronousTestCase):
    def test_answer(self):
        call = FakeCall()
        self.successResultOf(APPS["answer"].execute(call, None))
        assert call.answered and call.actions == [("answer",)]

    def test_hangup_with_cause(self):
        for args, cause in ((None, "normal"), ("busy", "busy"), ({"cause": "rejected"}, "rejected")):
            call = FakeCall()
            self.successResultOf(APPS["hangup"].execute(call, args))
            assert call.hangup_cause == cause

    def test_hangup_refuses_unknown_cause_at_check(self):
        with pytest.raises(ValueError, match="unknown cause"):
            APPS["hangup"].check_args("tired")

    def test_set_accepts_mapping_and_assignment(self):
        call = FakeCall()
        self.successResultOf(APPS["set"].execute(call, {"A": 1, "B": None}))
        self.successResultOf(APPS["set"].execute(call, "C=x=y"))
        assert call.variables == {"A": "1", "B": "", "C": "x=y"}

    def test_goto_forms(self):
        call = FakeCall()
        assert self.successResultOf(APPS["goto"].execute(call, 100)) == Goto("100")
        assert self.successResultOf(APPS["goto"].execute(call, "s, 1")) == Goto("1", "s")
        assert self.successResultOf(
            APPS["goto"].execute(call, {"context": "s", "number": "2"})) == Goto("2", "s")
        with pytest.raises(ValueError):
            APPS["goto"].check_args("a,b,c")

    def test_wait_waits_on_the_call_clock(self):
        call = FakeCall()
        d = APPS["wait"].execute(call, 2)
        call.clock.advance(1.9)
        self.assertNoResult(d)
        call.clock.advance(0.1)
        assert self.successResultOf(d) is None

    def test_wait_ends_on_hangup_and_cancels_its_timer(self):
        call = FakeCall()
        d = APPS["wait"].execute(call, {"seconds": 30})
        call.caller_hangs_up()
        self.failureResultOf(d, CallHungUp)
        assert call.clock.getDelayedCalls() == []


class MediaAppTests(SynchronousTestCase):
    def test_playback_answers_and_plays_in_order(self):
        call = FakeCall()
        self.successResultOf(APPS["playback"].execute(call, ["please-hold", "tone:beep"]))
        assert call.actions == [("answer",), ("play", "please-hold"), ("play", "tone:beep")]
        assert call.variables["PLAYBACKSTATUS"] == "SUCCESS"

    def test_playback_without_answer_is_early_media(self):
        call = FakeCall()
        self.successResultOf(APPS["playback"].execute(call, {"prompts": "goodbye", "answer": False}))
        assert not call.answered and call.played == ["goodbye"]

    def test_playback_skips_a_missing_prompt_and_says_so(self):
        call = FakeCall()
        self.successResultOf(APPS["playback"].execute(call, ["no-such-prompt", "goodbye"]))
        assert call.played == ["goodbye"]
        assert call.variables["PLAYBACKSTATUS"] == "FAILED"

    def test_echo_answers_and_lasts_until_hangup(self):
        call = FakeCall()
        d = APPS["echo"].execute(call, None)
        self.assertNoResult(d)
        assert call.answered and call.echoed
        call.caller_hangs_up()
        assert self.successResultOf(d) is None


class DialAppTests(SynchronousTestCase):
    def test_ring_group_rings_all_targets_at_once(self):
        call = FakeCall(dial_results={"1001": "NOANSWER", "1002": "ANSWER"})
        self.successResultOf(APPS["dial"].execute(call, {"to": "1001&1002", "timeout": 15}))
        assert [(a.targets, a.timeout) for a in call.dialled] == [(("1001", "1002"), 15.0)]
        assert call.variables["DIALSTATUS"] == "ANSWER"

    def test_hunt_group_tries_one_target_at_a_time_until_answered(self):
        call = FakeCall(dial_results={"1": "NOANSWER", "2": "BUSY", "3": "ANSWER", "4": "ANSWER"})
        self.successResultOf(APPS["dial"].execute(
            call, {"to": ["1", "2", "3", "4"], "timeout": 10, "strategy": "sequential"}))
        assert [(a.targets, a.timeout) for a in call.dialled] == [
            (("1",), 10.0), (("2",), 10.0), (("3",), 10.0)]
        assert call.variables["DIALSTATUS"] == "ANSWER"

    def test_hunt_group_without_answer_reports_the_most_hopeful_status(self):
        call = FakeCall(dial_results=["BUSY", "NOANSWER", "CHANUNAVAIL"])
        self.successResultOf(APPS["dial"].execute(
            call, {"to": ["1", "2", "3"], "strategy": "sequential"}))
        assert len(call.dialled) == 3
        assert call.variables["DIALSTATUS"] == "NOANSWER"

    def test_hunt_group_stops_when_the_caller_hangs_up(self):
        call = FakeCall(dial_results=["NOANSWER", "CANCEL", "ANSWER"])
        self.successResultOf(APPS["dial"].execute(
            call, {"to": ["1", "2", "3"], "strategy": "sequential"}))
        assert len(call.dialled) == 2
        assert call.variables["DIALSTATUS"] == "CANCEL"

    def test_single_target_shorthand_and_default_timeout(self):
        call = FakeCall(dial_results={"1001": "BUSY"})
        self.successResultOf(APPS["dial"].execute(call, "1001"))
        assert call.dialled[0].timeout == 30.0
        assert call.variables["DIALSTATUS"] == "BUSY"

    def test_check_args(self):
        APPS["dial"].check_args({"to": "${EXTEN}", "timeout": "${T}"})
        for bad in ({"timeout": 5}, {"to": "1", "timeout": -1}, {"to": []}, {"to": "1", "x": 1}):
            with pytest.raises(ValueError):
                APPS["dial"].check_args(bad)

    def test_combine_statuses(self):
        assert combine_statuses(["CHANUNAVAIL", "BUSY"]) == "BUSY"
        assert combine_statuses([]) == "CHANUNAVAIL"


class MenuAppTests(SynchronousTestCase):
    def run_menu(self, call, args=MENU):
        return self.successResultOf(APPS["menu"].execute(call, args))

    def test_digit_during_the_prompt_branches(self):
        call = FakeCall(digits="1")
        assert self.run_menu(call) == Goto("100", "sales")
        assert call.variables["MENU_DIGIT"] == "1"
        assert call.actions == [("answer",), ("play", "please-enter")]  # no wait after

    def test_digit_after_the_prompt_branches(self):
        call = FakeCall(digits=[TIMEOUT, "2"])
        # the TIMEOUT is not consumed by the prompt: the digit wait times out first
        assert self.run_menu(call) == Goto("2000")
        assert call.played == ["please-enter", "please-enter"]

    def test_timeout_on_the_clock_repeats_the_prompt(self):
        call = FakeCall()
        d = APPS["menu"].execute(call, MENU)
        assert call.actions[-1] == ("collect", 1, 4.0)
        call.clock.advance(4)
        assert call.played == ["please-enter", "please-enter"]
        call.press("2")
        assert self.successResultOf(d) == Goto("2000")

    def test_invalid_digit_says_so_and_repeats(self):
        call = FakeCall(digits="93#")
        d = APPS["menu"].execute(call, dict(MENU, on_invalid="i"))
        assert self.successResultOf(d) == Goto("i")
        assert call.played == ["please-enter", "invalid"] * 3

    def test_repeats_then_goodbye_and_hangup(self):
        call = FakeCall(digits=[TIMEOUT, TIMEOUT])
        assert self.run_menu(call, dict(MENU, repeats=2)) is None
        assert call.played == ["please-enter", "please-enter", "goodbye"]
        assert call.hangup_cause == "normal"

    def test_timeout_branch_after_repeats(self):
        call = FakeCall(digits=[TIMEOUT, "7", TIMEOUT])
        assert self.run_menu(call, dict(MENU, on_timeout="t", on_invalid="i")) == Goto("t")

    def test_hangup_during_the_wait_fails_with_call_hung_up(self):
        call = FakeCall()
        d = APPS["menu"].execute(call, MENU)
        call.caller_hangs_up()
        self.failureResultOf(d, CallHungUp)

    def test_check_args(self):
        for bad in (None, {"prompt": "x"}, dict(MENU, repeats=0), dict(MENU, options={"x": "1"}),
                    dict(MENU, colour="red"), dict(MENU, timeout=0)):
            with pytest.raises(ValueError):
                APPS["menu"].check_args(bad)


def test_shipped_prompts_are_8khz_mono_and_small():
    names = prompt_names()
    assert {"please-enter", "invalid", "goodbye", "no-such-number", "leave-message",
            "message-saved", "digit-0", "digit-9"} <= set(names)
    total = 0
    for name in names:
        audio = read_wav(resolve_prompt(name))
        assert audio.rate == 8000 and 0.2 < audio.seconds < 5
        total += os.path.getsize(resolve_prompt(name))
    assert total < 1_000_000


def test_resolve_prompt_paths_and_search_dirs(tmp_path):
    own = tmp_path / "greeting.wav"
    with wave.open(str(own), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(b"\0\0" * 16)
    assert resolve_prompt("greeting", [str(tmp_path)]) == str(own)
    assert resolve_prompt(str(own)) == str(own)
    with pytest.raises(FileNotFoundError):
        resolve_prompt("greeting")
    with pytest.raises(ValueError):
        resolve_prompt("..")
    with pytest.raises(ValueError, match="8000 Hz"):
        read_wav(str(own))
    assert read_wav(str(own), rate=None).seconds == 16 / 16000
