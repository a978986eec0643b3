"""``office_hours``: route calls by the day of the week and the time of day.

Dialplan use::

    - match: "500"
      do:
        - office_hours:
            days: [mon, tue, wed, thu, fri]
            hours: "09:00-17:00"
            utc_offset: 1          # hours east of UTC
            open: sales,100        # goto target while open
            closed: closed,s       # goto target otherwise
            closed_prompt: goodbye # played before going to 'closed' (optional)

It sets ``${OFFICE}`` to ``open`` or ``closed`` and ``${WEEKDAY}`` to the day
(``mon`` ... ``sun``). It reads the time from ``call.clock``, so a test can
set it with ``task.Clock``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.plugin import IPlugin
from zope.interface import implementer

from pbxd.interfaces import Goto, IDialplanApplication

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _target(value: Any) -> Goto:
    parts = str(value).split(",")
    return Goto(parts[-1].strip(), parts[0].strip() if len(parts) == 2 else None)


def _minutes(text: str) -> int:
    hours, minutes = text.strip().split(":")
    return int(hours) * 60 + int(minutes)


@implementer(IPlugin, IDialplanApplication)
class OfficeHours:
    """The ``office_hours`` application."""

    name = "office_hours"

    def check_args(self, args: Any) -> None:
        """Called when the dialplan is loaded: a ValueError stops startup naming the rule."""
        if not isinstance(args, Mapping) or "open" not in args or "closed" not in args:
            raise ValueError("needs at least 'open' and 'closed' goto targets")
        for day in args.get("days", DAYS[:5]):
            if day not in DAYS:
                raise ValueError(f"unknown day {day!r} (use {', '.join(DAYS)})")
        start, _, end = args.get("hours", "09:00-17:00").partition("-")
        if not 0 <= _minutes(start) < _minutes(end) <= 24 * 60:
            raise ValueError(f"hours must be 'HH:MM-HH:MM', got {args.get('hours')!r}")

    def execute(self, call: Any, args: Any) -> Deferred[Goto]:
        """Set the variables, maybe play the closed prompt, and jump."""
        return Deferred.fromCoroutine(self._run(call, args))

    async def _run(self, call: Any, args: Mapping[str, Any]) -> Goto:
        offset = datetime.timedelta(hours=float(args.get("utc_offset", 0)))
        now = datetime.datetime.fromtimestamp(call.clock.seconds(), datetime.UTC) + offset
        day = DAYS[now.weekday()]
        start, _, end = args.get("hours", "09:00-17:00").partition("-")
        minute = now.hour * 60 + now.minute
        is_open = day in args.get("days", DAYS[:5]) and _minutes(start) <= minute < _minutes(end)
        call.variables["WEEKDAY"] = day
        call.variables["OFFICE"] = "open" if is_open else "closed"
        if is_open:
            return _target(args["open"])
        if args.get("closed_prompt"):
            if not call.answered:
                await call.answer()
            await call.play(args["closed_prompt"])
        return _target(args["closed"])


office_hours = OfficeHours()
