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

from dataclasses import dataclass
from types import CoroutineType
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

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
        return _Run(self, call, context if context is not None else call.context,
                    number if number is not None else call.exten).start()


_PENDING = object()
_NEXT = object()
_GOTO = object()


class _Run:
    """One call's way through the dialplan: the steps run one after the other, straight
    through while they finish at once, waiting on the Deferred of one that does not.

    (Written with callbacks rather than a coroutine: most steps of a call finish at once,
    and a coroutine with maybeDeferred per step cost more than the steps themselves.)
    """

    __slots__ = ("runner", "call", "context", "number", "gotos", "match", "index", "done",
                 "_sync", "_box")

    def __init__(self, runner: DialplanRunner, call: Any, context: str, number: str) -> None:
        self.runner, self.call = runner, call
        self.context, self.number = context, number
        self.gotos = 0
        self.match: Any = None
        self.index = 0
        self.done: Deferred[RunResult] = Deferred()
        self._sync = False
        self._box: Any = _PENDING

    def start(self) -> Deferred[RunResult]:
        done = self.done
        try:
            self._drive()
        except BaseException:  # a bug here: the Deferred fails, as the coroutine's did
            if not done.called:
                done.errback(Failure())
        return done

    def _finish(self, status: str) -> None:
        self.done.callback(RunResult(status, self.context, self.number))

    def _drive(self) -> None:
        """Route and run steps, following gotos, until a step has to be waited for."""
        while True:
            call, context, number = self.call, self.context, self.number
            match = self.runner.dialplan.route(context, number)
            if match is None:
                self.runner.log.info(
                    "No dialplan rule for {number} in {context} (call {call_id})",
                    number=number, context=context, call_id=call.call_id)
                self._hangup("not_found", "not_found")
                return
            variables = call.variables
            variables["EXTEN"] = number
            variables["CONTEXT"] = context
            self.match, self.index = match, 0
            if self._steps() is not _GOTO:
                return

    def _steps(self) -> object:
        """Run steps from ``self.index`` until one has to be waited for, or the end;
        _GOTO when the dialplan goes on elsewhere."""
        call, steps = self.call, self.match.steps
        while self.index < len(steps):
            step = steps[self.index]
            if call.hungup:
                self._finish("hungup")
                return None
            value = self._execute(step)
            while True:  # settle it: a value, a Failure, a Deferred or a coroutine
                if type(value) is CoroutineType:
                    value = Deferred.fromCoroutine(value)
                if not isinstance(value, Deferred):
                    break
                self._sync, self._box = True, _PENDING
                value.addBoth(self._settled)
                self._sync = False
                value, self._box = self._box, _PENDING
                if value is _PENDING:
                    return None  # self._settled goes on when it fires
            outcome = self._stepped(value)
            if outcome is not _NEXT:
                return outcome
        self._ran_out()
        return None

    def _execute(self, step: Any) -> Any:
        call = self.call
        args = substitute(step.args, lambda name: _lookup(call, name))
        if debuglog.ENABLED:
            self.runner.log.debug("{key}: {app}({args!r}) on call {call_id}",
                                  key=step.key, app=step.app, args=args, call_id=call.call_id)
        try:
            return step.application.execute(call, args)
        except BaseException:
            return Failure()

    def _settled(self, result: Any) -> None:
        if self._sync:
            self._box = result
            return
        if type(result) is CoroutineType:  # a plugin that returned a coroutine object
            Deferred.fromCoroutine(result).addBoth(self._settled)
            return
        try:
            outcome = self._stepped(result)
            if outcome is _NEXT:
                outcome = self._steps()
            if outcome is _GOTO:
                self._drive()
        except BaseException:
            if not self.done.called:
                self.done.errback(Failure())

    def _stepped(self, result: Any) -> object:
        """The outcome of the step at ``self.index``: _NEXT to go on with the next step,
        _GOTO after a goto, None when the run is over."""
        step = self.match.steps[self.index]
        if isinstance(result, Failure):
            if result.check(CallHungUp):
                self._finish("hungup")
            elif result.check(Exception):
                self.runner.log.failure("{key} ({app}) failed on call {call_id}", result,
                                        key=step.key, app=step.app, call_id=self.call.call_id)
                self._hangup("failure", "failed")
            else:
                self.done.errback(result)
            return None
        if isinstance(result, Goto):
            self.gotos += 1
            if self.gotos > self.runner.max_gotos:
                self.runner.log.error(
                    "More than {max} gotos on call {call_id}: a loop? Last at {key}",
                    max=self.runner.max_gotos, call_id=self.call.call_id, key=self.match.key)
                self._hangup("failure", "failed")
                return None
            self.context = result.context or self.context
            self.number = result.number
            return _GOTO
        self.index += 1
        return _NEXT

    def _ran_out(self) -> None:
        call = self.call
        if call.hungup:
            self._finish("completed")
            return
        cause = _STATUS_CAUSES.get(call.variables.get("DIALSTATUS", ""), "normal")
        self._hangup(cause if not call.answered else "normal", "completed")

    def _hangup(self, cause: str, status: str) -> None:
        """Hang the call up with ``cause`` (unless it is already), then finish."""
        call = self.call
        if call.hungup:
            self._finish(status)
            return
        try:
            result = call.hangup(cause)
        except Exception:
            self.runner.log.failure("Hanging up call {call_id} failed", call_id=call.call_id)
            self._finish(status)
            return
        if type(result) is CoroutineType:
            result = Deferred.fromCoroutine(result)
        if isinstance(result, Failure):
            self.runner.log.failure("Hanging up call {call_id} failed", result,
                                    call_id=call.call_id)
        if not isinstance(result, Deferred):
            self._finish(status)
            return

        def failed(failure: Failure) -> None:
            self.runner.log.failure("Hanging up call {call_id} failed", failure,
                                    call_id=call.call_id)

        result.addErrback(failed).addCallback(lambda _: self._finish(status))


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
