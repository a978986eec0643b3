"""The ``record_call`` application: record the call's bridges from here on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from pbxd.apps.args import has_variables
from pbxd.interfaces import IDialplanApplication, IRecordingService

__all__ = ["RecordCall", "flag"]

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def flag(value: Any, what: str) -> bool | None:
    """A yes/no option: a bool, or a string such as ``"yes"``/``"off"``; None if absent."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{what} must be true or false, got {value!r}")


@implementer(IPlugin, IDialplanApplication)
class RecordCall:
    """``record_call`` / ``record_call: {stereo: true, announce: false}`` / ``record_call: false``.

    Marks the call so that every bridge made after this step (a ``dial`` that
    is answered) is recorded to a WAV file in ``recording.folder``, named in
    the call's CDR (``recording``). ``stereo`` (one party per channel) and
    ``announce`` (both parties hear "this call is recorded" before they are
    connected) default to the ``recording:`` section. ``record_call: false``
    takes the mark off again. Sets ``${RECORDCALL}`` to ``ON``, ``OFF``, or
    ``UNAVAILABLE`` when the server has no recording service (the call goes on).
    """

    name = "record_call"
    log = Logger()

    def _parse(self, args: Any) -> tuple[bool, bool | None, bool | None]:
        if args is None:
            return True, None, None
        if isinstance(args, Mapping):
            unknown = set(args) - {"stereo", "announce", "enabled"}
            if unknown:
                raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
            enabled = flag(args.get("enabled"), "enabled")
            return (enabled is not False, flag(args.get("stereo"), "stereo"),
                    flag(args.get("announce"), "announce"))
        enabled = flag(args, "record_call")
        return enabled is not False, None, None

    def check_args(self, args: Any) -> None:
        if isinstance(args, Mapping):
            args = {k: (True if has_variables(v) else v) for k, v in args.items()}
        elif has_variables(args):
            return
        self._parse(args)

    def execute(self, call: Any, args: Any) -> Deferred[None]:
        enabled, stereo, announce = self._parse(args)
        try:
            service = call.service(IRecordingService)
        except LookupError:
            self.log.warn("call {call}: record_call but no recording service",
                          call=call.call_id)
            call.variables["RECORDCALL"] = "UNAVAILABLE"
            return succeed(None)
        if enabled:
            service.record(call.call_id, stereo=stereo, announce=announce)
        else:
            service.unmark(call.call_id)
        call.variables["RECORDCALL"] = "ON" if enabled else "OFF"
        return succeed(None)
