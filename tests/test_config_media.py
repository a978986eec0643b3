"""The voicemail:, recording: and moh: sections of the configuration."""

from __future__ import annotations

import pytest

from pbxd.config import parse_config
from pbxd.errors import ConfigError


def parse(data):
    return parse_config(data, source="pbx.yml", base_dir="/etc/pbxd")


def test_defaults():
    config = parse({})
    assert config.voicemail.silence_seconds == 5.0 and config.voicemail.unsolicited_mwi is False
    assert config.voicemail.smtp is None and dict(config.voicemail.email) == {}
    assert config.recording.stereo is False and config.recording.retention_days == 90.0
    assert config.moh.enabled and config.moh.folder is None


def test_full_sections():
    config = parse({
        "voicemail": {"unsolicited_mwi": True, "silence_seconds": 0, "email": {1000: "a@example.org"},
                      "smtp": {"host": "mail", "port": 2525, "from": "pbx@example.org",
                               "starttls": True}},
        "recording": {"stereo": True, "announce": True, "retention_days": 0},
        "moh": {"folder": "music", "shuffle": False},
    })
    vm = config.voicemail
    assert vm.unsolicited_mwi and vm.silence_seconds == 0 and dict(vm.email) == {"1000": "a@example.org"}
    assert (vm.smtp.host, vm.smtp.port, vm.smtp.sender, vm.smtp.starttls) == (
        "mail", 2525, "pbx@example.org", True)
    assert config.recording.stereo and config.recording.announce
    assert config.moh.folder == "/etc/pbxd/music" and not config.moh.shuffle


@pytest.mark.parametrize(("data", "key"), [
    ({"voicemail": {"email": {1000: "nope"}, "smtp": {"host": "h"}}}, "voicemail.email.1000"),
    ({"voicemail": {"email": {1000: "a@b.c"}}}, "voicemail.email"),
    ({"voicemail": {"smtp": {"port": 25}}}, "voicemail.smtp.host"),
    ({"voicemail": {"smtp": {"host": "h", "sender": "x@y.z"}}}, "voicemail.smtp.sender"),
    ({"voicemail": {"unsolicited_mwi": "yes"}}, "voicemail.unsolicited_mwi"),
    ({"recording": {"retention_days": -1}}, "recording.retention_days"),
    ({"moh": {"colour": "blue"}}, "moh.colour"),
])
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert caught.value.key == key
