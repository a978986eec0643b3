"""The ``dial`` application: one target, a ring group, or a hunt group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.plugin import IPlugin
from zope.interface import implementer

from pbxd.apps.args import has_variables, mapping, seconds, targets
from pbxd.interfaces import IDialplanApplication

__all__ = ["Dial", "combine_statuses"]

STRATEGIES = ("ringall", "sequential")
# When a hunt group fails, the status reported is the "most hopeful" of its targets'.
_FAILURE_ORDER = ("NOANSWER", "BUSY", "CHANUNAVAIL")


def combine_statuses(statuses: list[str]) -> str:
    """The DIALSTATUS of a hunt group that ended without an answer."""
    for status in ("CANCEL", *_FAILURE_ORDER):
        if status in statuses:
            return status
    return "CHANUNAVAIL"


@implementer(IPlugin, IDialplanApplication)
class Dial:
    """``dial: {to: ..., timeout: 20, strategy: ringall}`` (or ``dial: 1001``).

    ``to`` is a number or SIP URI, ``"1001&1002"``, or a list. With
    ``strategy: ringall`` (the default) every target rings at once (a ring
    group) for ``timeout`` seconds; with ``sequential`` they ring one after the
    other (a hunt group), each for ``timeout`` seconds, until one answers or
    the caller hangs up. ``${DIALSTATUS}`` is set to ANSWER, BUSY, NOANSWER,
    CHANUNAVAIL or CANCEL; the dialplan goes on with the next step after the
    bridged call or the failure (e.g. to voicemail).
    """

    name = "dial"

    def _parse(self, args: Any) -> tuple[list[str], float, str]:
        options = mapping(args, "dial", "to")
        unknown = set(options) - {"to", "timeout", "strategy"}
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        if "to" not in options:
            raise ValueError("'to' is required")
        strategy = options.get("strategy", "ringall")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        timeout = seconds(options.get("timeout"), "timeout", default=30.0)
        return targets(options["to"]), timeout, strategy

    def check_args(self, args: Any) -> None:
        if isinstance(args, Mapping):
            args = {k: (1 if has_variables(v) and k == "timeout" else v) for k, v in args.items()}
        self._parse(args)

    def execute(self, call: Any, args: Any) -> Deferred[None]:
        to, timeout, strategy = self._parse(args)
        if strategy == "ringall":  # one dial: no coroutine needed
            def dialled(status: str) -> None:
                call.variables["DIALSTATUS"] = status

            return call.dial(to, timeout).addCallback(dialled)
        return Deferred.fromCoroutine(self._run(call, to, timeout, strategy))

    async def _run(self, call: Any, to: list[str], timeout: float, strategy: str) -> None:
        if strategy == "ringall":
            status = await call.dial(to, timeout)
        else:
            statuses: list[str] = []
            for target in to:
                status = await call.dial([target], timeout)
                statuses.append(status)
                if status in ("ANSWER", "CANCEL") or call.hungup:
                    break
            if status != "ANSWER":
                status = combine_statuses(statuses)
        call.variables["DIALSTATUS"] = status
