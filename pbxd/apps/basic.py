"""The control applications: answer, hangup, wait, set, goto."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, race, succeed
from twisted.internet.task import deferLater
from twisted.plugin import IPlugin
from zope.interface import implementer

from pbxd.apps.args import has_variables, parse_goto, seconds
from pbxd.interfaces import HANGUP_CAUSES, CallHungUp, IDialplanApplication

__all__ = ["Answer", "GotoApp", "Hangup", "Set", "Wait"]


@implementer(IPlugin, IDialplanApplication)
class Answer:
    """``answer``: answer the call. No arguments."""

    name = "answer"

    def execute(self, call: Any, args: Any) -> Deferred[None]:
        return call.answer()


@implementer(IPlugin, IDialplanApplication)
class Hangup:
    """``hangup`` or ``hangup: busy`` / ``hangup: {cause: busy}``: end the call.

    Causes are the keys of ``pbxd.interfaces.HANGUP_CAUSES`` (``normal``,
    ``busy``, ``rejected``, ``not_found``, ...); on an unanswered call the
    cause picks the SIP response (busy -> 486).
    """

    name = "hangup"

    def check_args(self, args: Any) -> None:
        self._cause(args)

    def _cause(self, args: Any) -> str:
        cause = args.get("cause") if isinstance(args, Mapping) else args
        if cause is None:
            return "normal"
        if has_variables(cause):
            return cause
        if cause not in HANGUP_CAUSES:
            raise ValueError(f"unknown cause {cause!r} (one of {', '.join(HANGUP_CAUSES)})")
        return str(cause)

    def execute(self, call: Any, args: Any) -> Deferred[None]:
        cause = self._cause(args)
        return call.hangup(cause if cause in HANGUP_CAUSES else "normal")


@implementer(IPlugin, IDialplanApplication)
class Wait:
    """``wait: 2`` (or ``{seconds: 2}``): do nothing for a while (hangup ends it)."""

    name = "wait"

    def check_args(self, args: Any) -> None:
        value = args.get("seconds") if isinstance(args, Mapping) else args
        if not has_variables(value):
            seconds(value, "wait", default=1.0)

    def execute(self, call: Any, args: Any) -> Deferred[None]:
        value = args.get("seconds") if isinstance(args, Mapping) else args
        delay = seconds(value, "wait", default=1.0)
        timer: Deferred[None] = deferLater(call.clock, delay)  # cancelled (timer and all) if hangup wins
        return race([timer, call.when_hungup()]).addCallback(_after_wait)


def _after_wait(result: tuple[int, Any]) -> None:
    index, value = result
    if index == 1:
        raise CallHungUp(value)
    return None


@implementer(IPlugin, IDialplanApplication)
class Set:
    """``set: {NAME: value, ...}`` or ``set: NAME=value``: set channel variables."""

    name = "set"

    def check_args(self, args: Any) -> None:
        self._pairs(args)

    def _pairs(self, args: Any) -> dict[str, str]:
        if isinstance(args, str) and "=" in args:
            name, value = args.split("=", 1)
            args = {name.strip(): value}
        if not isinstance(args, Mapping) or not args:
            raise ValueError(f"expected {{NAME: value}} or 'NAME=value', got {args!r}")
        pairs = {}
        for name, value in args.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"{name!r} is not a variable name")
            pairs[name] = "" if value is None else str(value)
        return pairs

    def execute(self, call: Any, args: Any) -> Deferred[None]:
        call.variables.update(self._pairs(args))
        return succeed(None)


@implementer(IPlugin, IDialplanApplication)
class GotoApp:
    """``goto: 1000`` / ``goto: sales,1000`` / ``goto: {context: sales, number: 1000}``:
    go on at another number (and context); the rest of this rule is skipped."""

    name = "goto"

    def check_args(self, args: Any) -> None:
        if not has_variables(args):
            parse_goto(args)

    def execute(self, call: Any, args: Any) -> Deferred[Any]:
        return succeed(parse_goto(args))
