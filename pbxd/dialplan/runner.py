"""Running a call through the dialplan: steps, variables, goto, the end of the call.

:meth:`DialplanRunner.run` routes the call's number in its context, runs the
rule's steps one after the other (each step's arguments with ``${...}``
substituted just before it runs), follows :class:`~pbxd.interfaces.Goto`
results, and makes sure the call ends:

- no rule matches: hang up with cause ``not_found`` (404 if unanswered);
- the steps run out with the call still up: hang up, with the cause that
  ``${DIALSTATUS}`` suggests (BUSY -> ``busy``, NOANSWER -> ``no_answer``,
  CHANUNAVAIL -> ``unavailable``) or ``normal``;
- an application fails: the failure is logged and the call hung up with
  cause ``failure``;
- the caller hangs up: the runner stops at once.

The runner keeps the call's ``EXTEN`` and ``CONTEXT`` variables current, and
``${CALLERID(num)}``, ``${CALLERID(name)}`` and ``${UNIQUEID}`` come from the
call itself. It never imports SIP, RTP or call-control code.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from pbxd import debuglog
from pbxd.dialplan.engine import Dialplan
from pbxd.dialplan.variables import substitute
from pbxd.interfaces import CallHungUp, Goto

__all__ = ["DialplanRunner", "RunResult"]

_STATUS_CAUSES = {"BUSY": "busy", "NOANSWER": "no_answer", "CHANUNAVAIL": "unavailable"}


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a call's dialplan ended.

    ``status``: ``"completed"`` (the steps ran out), ``"not_found"`` (no rule
    for the number), ``"hungup"`` (the call ended, either side, before the steps
    ran out), ``"failed"`` (an application failed or gotos looped).
    ``context``/``number`` are where the dialplan was last.
    """

    status: str
    context: str
    number: str


class DialplanRunner:
    """Runs calls (ICallContext providers) through one compiled :class:`Dialplan`.

    ``max_gotos`` bounds jumps per call so a goto loop ends the call instead of
    spinning forever. Hold one runner per dialplan; a reload makes a new one and
    calls in progress finish on the old.
    """

    log = Logger()

    def __init__(self, dialplan: Dialplan, max_gotos: int = 100) -> None:
        self.dialplan = dialplan
        self.max_gotos = max_gotos

    def run(self, call: Any, context: str | None = None,
            number: str | None = None) -> Deferred[RunResult]:
        """Run ``call`` from ``number`` (default ``call.exten``) in ``context``
        (default ``call.context``). Never fails: fires with a :class:`RunResult`."""
        return Deferred.fromCoroutine(self._run(
            call, context if context is not None else call.context,
            number if number is not None else call.exten))

    async def _run(self, call: Any, context: str, number: str) -> RunResult:
        gotos = 0
        while True:
            match = self.dialplan.route(context, number)
            if match is None:
                self.log.info("No dialplan rule for {number} in {context} (call {call_id})",
                              number=number, context=context, call_id=call.call_id)
                await self._hangup(call, "not_found")
                return RunResult("not_found", context, number)
            call.variables["EXTEN"] = number
            call.variables["CONTEXT"] = context
            jump: Goto | None = None
            for step in match.steps:
                if call.hungup:
                    return RunResult("hungup", context, number)
                try:
                    result = await self._execute(call, step)
                except CallHungUp:
                    return RunResult("hungup", context, number)
                except Exception:
                    self.log.failure("{key} ({app}) failed on call {call_id}",
                                     key=step.key, app=step.app, call_id=call.call_id)
                    await self._hangup(call, "failure")
                    return RunResult("failed", context, number)
                if isinstance(result, Goto):
                    jump = result
                    break
            if jump is None:
                if call.hungup:
                    return RunResult("completed", context, number)
                cause = _STATUS_CAUSES.get(call.variables.get("DIALSTATUS", ""), "normal")
                await self._hangup(call, cause if not call.answered else "normal")
                return RunResult("completed", context, number)
            gotos += 1
            if gotos > self.max_gotos:
                self.log.error("More than {max} gotos on call {call_id}: a loop? Last at {key}",
                               max=self.max_gotos, call_id=call.call_id, key=match.key)
                await self._hangup(call, "failure")
                return RunResult("failed", context, number)
            context = jump.context or context
            number = jump.number

    async def _execute(self, call: Any, step: Any) -> Any:
        args = substitute(step.args, lambda name: _lookup(call, name))
        if debuglog.ENABLED:
            self.log.debug("{key}: {app}({args!r}) on call {call_id}",
                           key=step.key, app=step.app, args=args, call_id=call.call_id)
        result = maybeDeferred(step.application.execute, call, args)
        value = await result
        if inspect.iscoroutine(value):  # a plugin that returned a coroutine object
            value = await Deferred.fromCoroutine(value)
        return value

    async def _hangup(self, call: Any, cause: str) -> None:
        if call.hungup:
            return
        try:
            await maybeDeferred(call.hangup, cause)
        except Exception:
            self.log.failure("Hanging up call {call_id} failed", call_id=call.call_id)


def _lookup(call: Any, name: str) -> str | None:
    """A variable's value for substitution: the call's own fields, then its variables."""
    if name in ("CALLERID(num)", "CALLERID_NUM"):
        return call.caller
    if name in ("CALLERID(name)", "CALLERID_NAME"):
        return call.caller_name
    if name == "UNIQUEID":
        return call.call_id
    value = call.variables.get(name)
    return None if value is None else str(value)
