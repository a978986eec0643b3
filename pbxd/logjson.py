"""JSON-lines logging for ``twistd --logger`` (layer 7).

::

    twistd -n --logger=pbxd.logjson.observer pbx -c etc/config.yml

twistd calls :func:`observer` with no arguments and installs what it returns.
Each twisted.logger event becomes one JSON object on one line, with the
event's fields (``call``, ``txn``, ``source``, ``method`` ...), its
``log_format`` and ``log_time``, ``log_level`` and ``log_namespace``, as
:func:`twisted.logger.jsonFileLogObserver` writes them; ``twisted.logger``'s
``eventsFromJSONLogFile`` reads them back. The output goes to standard output,
or appended to the file named by the ``PBXD_LOG_JSON`` environment variable.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from twisted.logger import FileLogObserver, ILogObserver, formatEvent, jsonFileLogObserver
from zope.interface import implementer

__all__ = ["observer", "json_observer"]


def json_observer(out: IO[str]) -> Any:
    """A log observer writing each event to ``out`` as one JSON line (with ``text``)."""
    return _WithText(jsonFileLogObserver(out, recordSeparator=""))


def _add_text(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its formatted message as ``text`` (for log tools that want one)."""
    if "text" not in event:
        try:
            event = dict(event, text=formatEvent(event))
        except Exception:  # a broken format must not lose the event
            pass
    return event


@implementer(ILogObserver)
class _WithText:
    """Wraps an observer: every event also carries its formatted ``text``."""

    def __init__(self, inner: FileLogObserver) -> None:
        self.inner = inner

    def __call__(self, event: dict[str, Any]) -> None:
        self.inner(_add_text(event))


def observer() -> Any:
    """``twistd --logger=pbxd.logjson.observer``: JSON lines on stdout or ``$PBXD_LOG_JSON``."""
    path = os.environ.get("PBXD_LOG_JSON")
    out: IO[str] = open(path, "a", encoding="utf-8", buffering=1) if path else sys.stdout  # noqa: SIM115
    return json_observer(out)
