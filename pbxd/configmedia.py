"""Parsing the media feature sections: ``voicemail:``, ``recording:``, ``moh:`` (layer 1, pure).

The dataclasses are in :mod:`pbxd.configschema`; see ``docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pbxd import configvalues as v
from pbxd.configschema import MOHConfig, RecordingConfig, SMTPConfig, VoicemailConfig
from pbxd.errors import ConfigError

__all__ = ["moh", "recording", "voicemail"]

_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")
_BOX = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,63}")
_SMTP_KEYS = ("host", "port", "from", "username", "password", "starttls", "timeout")


def _keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def voicemail(value: Any, base_dir: str) -> VoicemailConfig:
    """The ``voicemail:`` section."""
    s, d = v.Section(value, "voicemail", _keys(VoicemailConfig)), VoicemailConfig()
    vm = VoicemailConfig(
        max_message_seconds=s.get("max_message_seconds", v.duration, d.max_message_seconds),
        min_message_seconds=s.get("min_message_seconds", v.duration, d.min_message_seconds,
                                  positive=False),
        max_messages=s.get("max_messages", v.integer, d.max_messages, low=1),
        greeting_dir=s.get("greeting_dir", v.optional(v.directory), None, base_dir=base_dir),
        silence_seconds=s.get("silence_seconds", v.duration, d.silence_seconds, positive=False),
        unsolicited_mwi=s.get("unsolicited_mwi", v.boolean, d.unsolicited_mwi),
        email=_email(s.data.get("email"), "voicemail.email"),
        smtp=None if s.data.get("smtp") is None else _smtp(s.data["smtp"], "voicemail.smtp"),
    )
    if vm.min_message_seconds > vm.max_message_seconds:
        raise ConfigError("voicemail.min_message_seconds", "is above max_message_seconds")
    if vm.email and vm.smtp is None:
        raise ConfigError("voicemail.email", "needs voicemail.smtp to send through")
    return vm


def _email(value: Any, key: str) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping of box to address, got {v.describe(value)}")
    out: dict[str, str] = {}
    for box, address in value.items():
        box = str(box)
        if not _BOX.fullmatch(box):
            raise ConfigError(f"{key}.{box}", "is not a box (extension) number")
        out[box] = v.string(address, f"{key}.{box}", pattern=_ADDRESS, what="an e-mail address")
    return MappingProxyType(out)


def _smtp(value: Any, key: str) -> SMTPConfig:
    s, d = v.Section(value, key, _SMTP_KEYS), SMTPConfig("localhost")
    optional_string = v.optional(v.string)
    return SMTPConfig(
        host=s.require("host", v.string),
        port=s.get("port", v.integer, d.port, low=1, high=65535),
        sender=s.get("from", v.string, d.sender, pattern=_ADDRESS, what="an e-mail address"),
        username=s.get("username", optional_string, None),
        password=s.get("password", optional_string, None),
        starttls=s.get("starttls", v.boolean, d.starttls),
        timeout=s.get("timeout", v.duration, d.timeout),
    )


def recording(value: Any, base_dir: str = ".") -> RecordingConfig:
    """The ``recording:`` section (``folder`` relative to the config file)."""
    s, d = v.Section(value, "recording", _keys(RecordingConfig)), RecordingConfig()
    return RecordingConfig(
        stereo=s.get("stereo", v.boolean, d.stereo),
        announce=s.get("announce", v.boolean, d.announce),
        retention_days=s.get("retention_days", v.duration, d.retention_days, positive=False),
        sweep_interval=s.get("sweep_interval", v.duration, d.sweep_interval),
        extensions=s.get("extensions", _recorded, d.extensions),
        folder=s.get("folder", v.optional(v.path), None, base_dir=base_dir),
    )


def _recorded(value: Any, key: str) -> tuple[str, ...]:
    """``recording.extensions``: extension numbers, or ``"*"`` for every call."""
    out = []
    for n, item in enumerate(v.items(value, key)):
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        item_key = f"{key}[{n}]"
        if item != "*":
            item = v.string(item, item_key, pattern=_BOX, what='an extension number or "*"')
        out.append(item)
    return tuple(out)


def moh(value: Any, base_dir: str) -> MOHConfig:
    """The ``moh:`` section (``folder`` relative to the config file)."""
    s, d = v.Section(value, "moh", _keys(MOHConfig)), MOHConfig()
    return MOHConfig(
        enabled=s.get("enabled", v.boolean, d.enabled),
        folder=s.get("folder", v.optional(v.path), None, base_dir=base_dir),
        shuffle=s.get("shuffle", v.boolean, d.shuffle),
    )
