"""Compiling the dialplan, routing numbers, and running calls through it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from twisted.trial.unittest import SynchronousTestCase

from pbxd.config import Rule, Step, parse_config
from pbxd.dialplan import Dialplan, DialplanRunner, discover_applications
from pbxd.errors import ConfigError
from pbxd.testing import FakeCall

APPS = discover_applications()


@dataclass(frozen=True)
class Include:
    """An include rule as the config gives it (``- include: other``)."""

    include: str
    match: str = ""
    steps: tuple = ()


def compile_yaml(dialplan: dict) -> Dialplan:
    return Dialplan.compile(parse_config({"dialplan": dialplan}).dialplan, APPS)


def test_route_exact_beats_pattern_and_specific_beats_general():
    plan = compile_yaml({"default": [
        {"match": "_XXXX", "do": [{"set": {"R": "any"}}]},
        {"match": "_1XXX", "do": [{"set": {"R": "1xxx"}}]},
        {"match": "1000", "do": [{"set": {"R": "exact"}}]},
        {"match": "re:\\d+", "do": [{"set": {"R": "regex"}}]},
    ]})
    assert plan.route("default", "1000").pattern == "1000"
    assert plan.route("default", "1001").pattern == "_1XXX"
    assert plan.route("default", "2001").pattern == "_XXXX"
    assert plan.route("default", "20011").pattern == "re:\\d+"
    assert plan.route("default", "abc") is None
    assert plan.route("nosuchcontext", "1000") is None


def test_route_searches_own_rules_before_includes_in_order():
    contexts = {
        "internal": (Rule("_1XXX", (Step("answer"),)), Include("shared"), Include("more")),
        "shared": (Rule("_X.", (Step("echo"),)), Rule("*43", (Step("echo"),))),
        "more": (Rule("*43", (Step("hangup"),)), Rule("*99", (Step("hangup"),)), Include("internal")),
    }
    plan = Dialplan.compile(contexts, APPS)
    assert plan.route("internal", "1000").context == "internal"
    match = plan.route("internal", "*43")
    assert (match.context, match.index) == ("shared", 1)  # first include wins
    assert plan.route("internal", "*99").key == "dialplan.more[1]"
    assert plan.route("more", "1234").context == "internal"  # an include cycle is harmless
    assert plan.route("more", "*77") is None


@pytest.mark.parametrize(
    ("rules", "key", "words"),
    [
        ([{"match": "_1[2", "do": ["answer"]}], "dialplan.default[0].match", "not closed"),
        ([{"match": "1", "do": ["answer"]}, {"match": "re:(", "do": ["answer"]}],
         "dialplan.default[1].match", "regular expression"),
        ([{"match": "1", "do": ["answer", "dail"]}], "dialplan.default[0].do[1]",
         "unknown application 'dail'"),
        ([{"match": "1", "do": [{"dial": {"to": "${EXTEN"}}]}], "dialplan.default[0].do[0]",
         "malformed variable"),
        ([{"match": "1", "do": [{"dial": {"to": "1", "strategy": "random"}}]}],
         "dialplan.default[0].do[0]", "strategy"),
        ([{"match": "1", "do": [{"menu": {"prompt": "x", "options": {"12": "1"}}}]}],
         "dialplan.default[0].do[0]", "DTMF"),
    ],
)
def test_compile_errors_name_the_rule(rules, key, words):
    with pytest.raises(ConfigError) as info:
        compile_yaml({"default": rules})
    assert info.value.key == key
    assert words in str(info.value)


def test_compile_refuses_an_include_of_an_unknown_context():
    with pytest.raises(ConfigError) as info:
        Dialplan.compile({"a": (Rule("1", (Step("answer"),)), Include("b"))}, APPS)
    assert info.value.key == "dialplan.a[1].include"


def test_the_default_dialplan_shape_compiles_with_voicemail_present():
    fake_apps = dict(APPS, voicemail=APPS["hangup"])
    plan = Dialplan.compile(parse_config({}).dialplan, fake_apps)
    assert plan.route("default", "1234").steps[0].app == "dial"


class RunnerTests(SynchronousTestCase):
    def run_call(self, dialplan: dict, call: FakeCall, **contexts):
        runner = DialplanRunner(compile_yaml(dialplan), **contexts)
        return self.successResultOf(runner.run(call))

    def test_steps_run_in_order_with_variables_substituted(self):
        call = FakeCall(exten="0612345678", caller="1001", caller_name="Alice")
        result = self.run_call({"default": [{"match": "_0X.", "do": [
            {"set": {"LOCAL": "${EXTEN:1}", "LAST4": "${EXTEN:-4}", "WHO": "${CALLERID(name)}"}},
            {"dial": {"to": "9${LOCAL:0:3}", "timeout": 5}},
        ]}]}, call)
        assert call.variables["LOCAL"] == "612345678"
        assert call.variables["LAST4"] == "5678"
        assert call.variables["WHO"] == "Alice"
        assert call.dialled[0].targets == ("9612",)
        assert call.variables["DIALSTATUS"] == "CHANUNAVAIL"
        assert (result.status, call.hangup_cause) == ("completed", "unavailable")

    def test_dialstatus_chooses_the_next_step_via_goto(self):
        call = FakeCall(exten="1000", dial_results={"1000": "BUSY"})
        self.run_call({"default": [
            {"match": "_1XXX", "do": [{"dial": "${EXTEN}"}, {"goto": "${DIALSTATUS}"}]},
            {"match": "BUSY", "do": [{"playback": "goodbye"}, {"hangup": "busy"}]},
        ]}, call)
        assert call.played == ["goodbye"]
        assert call.hangup_cause == "busy"

    def test_goto_to_another_context_updates_exten_and_context(self):
        call = FakeCall(exten="0")
        result = self.run_call({
            "default": [{"match": "0", "do": [{"goto": "operator,100"}, {"hangup": "busy"}]}],
            "operator": [{"match": "100", "do": [{"set": {"WHERE": "${CONTEXT}/${EXTEN}"}}]}],
        }, call)
        assert call.variables["WHERE"] == "operator/100"
        assert (result.context, result.number, result.status) == ("operator", "100", "completed")
        assert call.hangup_cause == "normal"  # the skipped 'hangup: busy' did not run

    def test_unmatched_number_hangs_up_not_found(self):
        call = FakeCall(exten="5555")
        result = self.run_call({"default": [{"match": "1000", "do": ["answer"]}]}, call)
        assert result.status == "not_found"
        assert call.hangup_cause == "not_found"
        assert not call.answered

    def test_goto_to_a_missing_number_is_not_found(self):
        call = FakeCall(exten="1")
        result = self.run_call({"default": [{"match": "1", "do": [{"goto": "2"}]}]}, call)
        assert (result.status, result.number, call.hangup_cause) == ("not_found", "2", "not_found")

    def test_goto_loop_is_stopped(self):
        call = FakeCall(exten="1")
        runner = DialplanRunner(compile_yaml({"default": [
            {"match": "1", "do": [{"goto": "2"}]}, {"match": "2", "do": [{"goto": "1"}]}]}),
            max_gotos=10)
        result = self.successResultOf(runner.run(call))
        assert result.status == "failed"
        assert call.hangup_cause == "failure"

    def test_a_failing_application_hangs_up_with_failure(self):
        call = FakeCall(exten="1")
        result = self.run_call({"default": [{"match": "1", "do": [
            {"wait": "${NOT_A_NUMBER}"}, "answer"]}]}, call)
        assert result.status == "failed"
        assert call.hangup_cause == "failure"
        assert not call.answered
        assert len(self.flushLoggedErrors(ValueError)) == 1

    def test_caller_hangup_stops_the_steps(self):
        call = FakeCall(exten="*43")
        d = DialplanRunner(compile_yaml({"default": [{"match": "*43", "do": [
            "answer", "echo", {"playback": "goodbye"}]}]})).run(call)
        self.assertNoResult(d)
        assert call.echoed
        call.caller_hangs_up()
        result = self.successResultOf(d)
        assert result.status == "hungup"
        assert call.played == []
        assert call.hung_up_by == "caller"

    def test_answered_call_ends_normally_when_steps_run_out(self):
        call = FakeCall(exten="1", dial_results={"1": "NOANSWER"})
        self.run_call({"default": [{"match": "1", "do": ["answer", {"dial": "1"}]}]}, call)
        assert call.hangup_cause == "normal"
        assert call.actions[-1] == ("hangup", "normal")
