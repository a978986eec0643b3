"""voicemail.greeting_dir: a prompt there replaces pbxd's own of the same name wherever the
calls layer plays one (it was parsed and documented, and the calls layer never got it)."""

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
