"""Call recording's configuration (``recording:``, ``extensions.N.record``), the
``record_call`` application on a fake call, and its composition (install_recording:
the service registry, the calls hook, the retention sweeper, reload)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from twisted.application.service import MultiService
from twisted.internet.task import Clock

from pbxd.apps.record_call import RecordCall
from pbxd.calls.recording import CallRecorder
from pbxd.config import parse_config
from pbxd.errors import ConfigError
from pbxd.interfaces import IRecordingService
from pbxd.testing import FakeCall
from pbxd.wiring_recording import install_recording, recorded_extensions

EXT = {"password": "a-long-password"}


def parse(data):
    return parse_config(data, source="pbx.yml", base_dir="/etc/pbxd")


# -- configuration ------------------------------------------------------------------


def test_recording_keys_and_extension_flags():
    config = parse({"recording": {"extensions": [1000, "*"], "folder": "rec", "stereo": True},
                    "extensions": {"1000": {**EXT, "record": True}, "1001": EXT}})
    section = config.recording
    assert section.extensions == ("1000", "*") and section.folder == "/etc/pbxd/rec"
    assert recorded_extensions(config) == {"1000"}
    defaults = parse({}).recording
    assert (defaults.extensions, defaults.folder, defaults.announce) == ((), None, False)


@pytest.mark.parametrize(("data", "key"), [
    ({"recording": {"extensions": "1000"}}, "recording.extensions"),
    ({"recording": {"extensions": ["10 00"]}}, "recording.extensions[0]"),
    ({"recording": {"folder": 3}}, "recording.folder"),
    ({"recording": {"stero": True}}, "recording.stero"),
    ({"extensions": {"1000": {**EXT, "record": "always"}}}, "extensions.1000.record"),
])
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert caught.value.key == key


# -- the record_call application ---------------------------------------------------------


class FakeRecording:
    def __init__(self):
        self.marks = {}

    def record(self, call_id, stereo=None, announce=None):
        self.marks[call_id] = (stereo, announce)

    def unmark(self, call_id):
        return self.marks.pop(call_id, None) is not None


@pytest.mark.parametrize(("args", "mark", "status"), [
    (None, (None, None), "ON"),
    ({"stereo": True, "announce": "no"}, (True, False), "ON"),
    ("yes", (None, None), "ON"),
    (False, None, "OFF"),
    ({"enabled": False}, None, "OFF"),
])
def test_record_call_marks_or_unmarks_the_call(args, mark, status):
    service = FakeRecording()
    service.marks["fake-call-1"] = ("old", "old")
    call = FakeCall(services={IRecordingService: service})
    RecordCall().execute(call, args)
    assert service.marks.get("fake-call-1") == mark and call.variables["RECORDCALL"] == status


def test_record_call_without_a_service_goes_on():
    call = FakeCall()
    d = RecordCall().execute(call, None)
    assert d.called and call.variables["RECORDCALL"] == "UNAVAILABLE" and not call.hungup


@pytest.mark.parametrize("args", [{"stero": True}, {"stereo": "maybe"}, 3, "sometimes"])
def test_record_call_refuses_bad_arguments_at_startup(args):
    with pytest.raises(ValueError):
        RecordCall().check_args(args)
    RecordCall().check_args({"stereo": "${STEREO}"})  # checked when it runs


# -- composition --------------------------------------------------------------------------


def install(tmp_path, data):
    config = parse_config(data, source="t", base_dir=str(tmp_path))
    calls = SimpleNamespace(deps=SimpleNamespace(recording=None),
                            sessions=SimpleNamespace(services={}))
    parent = MultiService()
    clock = Clock()
    recording = install_recording(config, clock, parent=parent, calls=calls,
                                  state_dir=str(tmp_path / "state"))
    return recording, calls, parent, clock


def test_install_connects_the_calls_layer_and_the_registry(tmp_path):
    recording, calls, parent, _clock = install(tmp_path, {})
    recorder = calls.deps.recording
    assert isinstance(recorder, CallRecorder)
    assert calls.sessions.services[IRecordingService] is recorder
    assert IRecordingService.providedBy(recorder)
    assert recording.store.folder == str(tmp_path / "state" / "recordings")
    assert os.path.isdir(recording.store.folder)
    assert recorder.announcement is not None and recorder.announcement.endswith(
        "call-recorded.wav")
    assert parent.getServiceNamed("recording") is recording.service


def test_reload_applies_flags_defaults_and_retention(tmp_path):
    recording, calls, parent, clock = install(
        tmp_path, {"recording": {"retention_days": 30}, "extensions": {"1000": EXT}})
    recorder = calls.deps.recording
    assert recorder.options_for("c1", "1000", "1001") is None
    hooks = []
    recording.register_reload(SimpleNamespace(register=lambda name, apply, sections: hooks.append(
        (name, apply, sections))))
    ((name, apply, sections),) = hooks
    assert name == "recording" and "recording.extensions" in sections
    new = parse_config({"recording": {"retention_days": 0, "stereo": True,
                                      "sweep_interval": 60},
                        "extensions": {"1000": {**EXT, "record": True}}},
                       source="t", base_dir=str(tmp_path))
    apply(new, None)
    options = recorder.options_for("c1", "1000", "1001")
    assert options is not None and options.stereo and not options.announce
    assert recording.sweeper.retention_days == 0 and recording.sweeper.interval == 60


def test_stopping_waits_for_recordings_being_closed(tmp_path):
    recording, calls, parent, clock = install(tmp_path, {})
    parent.startService()
    pending = calls.deps.recording.pending
    from twisted.internet.defer import Deferred

    closing: Deferred = Deferred()
    pending.add(closing)
    stopped = parent.stopService()
    assert not stopped.called
    closing.callback(None)
    assert stopped.called
