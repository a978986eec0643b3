"""Config keys the calls layer must be given (both were parsed and documented, and the
calls layer never got them): voicemail.greeting_dir, whose prompts replace pbxd's own of
the same name wherever one is played, and calls.max_forwards, on every request pbxd sends."""

from __future__ import annotations

import shutil

from twisted.internet.task import Clock

from pbxd.calls.context import audio_for
from pbxd.config import parse_config
from pbxd.prompts import PROMPT_DIR, resolve_prompt
from pbxd.store.extensions import ConfigExtensionStore
from pbxd.wiring_dialplan import make_calls


def calls_for(tmp_path, voicemail):
    config = parse_config({"voicemail": voicemail}, source="t", base_dir=str(tmp_path))
    reactor = Clock()
    reactor.listenUDP = lambda port, protocol, interface="": None  # no RTP port is opened here
    return make_calls(config, reactor, None, None, ConfigExtensionStore({}))


def test_a_prompt_in_greeting_dir_replaces_the_shipped_one(tmp_path):
    custom = tmp_path / "prompts"
    custom.mkdir()
    shutil.copy(resolve_prompt("goodbye"), custom / "vm-greeting-saved.wav")
    manager = calls_for(tmp_path, {"greeting_dir": "prompts"})
    dirs = manager.sessions.prompt_dirs
    assert audio_for("vm-greeting-saved", dirs) == str(custom / "vm-greeting-saved.wav")
    # a name the folder lacks is still pbxd's own
    assert audio_for("goodbye", dirs) == f"{PROMPT_DIR}/goodbye.wav"


def test_without_greeting_dir_the_shipped_prompts_play(tmp_path):
    manager = calls_for(tmp_path, {})
    assert audio_for("vm-greeting-saved", manager.sessions.prompt_dirs) == (
        f"{PROMPT_DIR}/vm-greeting-saved.wav")


def test_calls_max_forwards_is_what_the_user_agent_stamps(tmp_path):
    from types import SimpleNamespace

    from test_calls_support import Wire

    from pbxd.sip.message import Request
    from pbxd.sip.transaction import TransactionLayer
    from pbxd.wiring_dialplan import connect_calls

    config = parse_config({"calls": {"max_forwards": 33}}, source="t", base_dir=str(tmp_path))
    manager = calls_for(tmp_path, {})
    clock = Clock()
    stack = SimpleNamespace(transactions=TransactionLayer(clock), connector=SimpleNamespace())
    connect_calls(manager, stack, config, clock)  # as make_service does
    request = Request("OPTIONS", "sip:1000@192.0.2.10")
    manager.deps.ua.add_via(request, Wire("UDP"), ("192.0.2.10", 5060))
    assert request.get("Max-Forwards") == "33"
