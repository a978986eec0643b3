"""Test helpers for plugin authors: a fake call to run applications without a network.

:class:`FakeCall` provides :class:`pbxd.interfaces.ICallContext`. Script what
the caller does (digits they press, ``TIMEOUT`` where they stay silent, how
each dial attempt ends) and, after the application ran, assert on what it
did (``played``, ``answered``, ``hangup_cause``, ``variables``, ``dialled``,
``actions`` in order)::

    from twisted.trial.unittest import SynchronousTestCase
    from pbxd.testing import FakeCall, TIMEOUT

    call = FakeCall(exten="500", digits=[TIMEOUT, "2"])
    goto = self.successResultOf(menu.execute(call, {...}))

Everything fires synchronously except what waits for time or the caller:
digits asked for when the script is exhausted wait on ``call.clock`` (a
``task.Clock``; ``call.clock.advance(5)`` times them out, ``call.press("1")``
answers them), ``echo`` and ``bridge`` last until ``call.caller_hangs_up()``.
:func:`runner_for` builds a dialplan runner from a parsed configuration, its
``plugins:`` included, to test a plugin through the dialplan.
"""

from __future__ import annotations

import wave
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from pbxd.interfaces import DIAL_STATUSES, HANGUP_CAUSES, CallHungUp, ICallContext
from pbxd.prompts import is_tone, resolve_prompt

__all__ = ["TIMEOUT", "DialAttempt", "FakeCall", "runner_for"]


class _Timeout:
    def __repr__(self) -> str:
        return "TIMEOUT"


#: In a FakeCall's ``digits`` script: the caller presses nothing until the wait times out.
TIMEOUT = _Timeout()


@dataclass(frozen=True, slots=True)
class DialAttempt:
    """One ``dial`` the application made, and how it ended."""

    targets: tuple[str, ...]
    timeout: float
    status: str


def _combine(statuses: list[str]) -> str:
    """What ringing several targets at once gives, like the real call layer."""
    if "ANSWER" in statuses:
        return "ANSWER"
    if statuses and all(s == "BUSY" for s in statuses):
        return "BUSY"
    return "NOANSWER" if "NOANSWER" in statuses else "CHANUNAVAIL"


@implementer(ICallContext)
class FakeCall:
    """An ICallContext with a scripted caller. See the module docstring.

    ``digits``: key presses in order; a string is several presses, ``TIMEOUT``
    a silent wait. ``dial_results``: a mapping target -> status (targets
    missing from it are ``CHANUNAVAIL``), or a list of statuses, one per
    ``dial`` call. ``record_seconds``: how long the caller speaks when
    recorded; ``record_audio(seconds) -> bytes`` the 16-bit PCM written (silence
    by default). ``prompt_dirs``: extra directories searched for prompt names.
    ``services``: what :meth:`service` finds, by interface (e.g.
    ``{IVoicemailService: my_fake}``).
    """

    def __init__(self, exten: str = "1000", caller: str = "2000", caller_name: str = "",
                 context: str = "default", *, digits: Iterable[Any] = (),
                 dial_results: Mapping[str, str] | Sequence[str] | None = None,
                 record_seconds: float = 3.0, transfer_result: bool = True,
                 answered: bool = False, clock: Clock | None = None,
                 variables: Mapping[str, str] | None = None, call_id: str = "fake-call-1",
                 prompt_dirs: Sequence[str] = (), services: Mapping[Any, Any] | None = None,
                 record_audio: Any = None) -> None:
        self.call_id, self.exten, self.caller = call_id, exten, caller
        self.caller_name, self.context = caller_name, context
        self.variables: dict[str, str] = dict(variables or {})
        self.clock = clock if clock is not None else Clock()
        self.answered, self.hungup = answered, False
        self.hangup_cause: str | None = None
        self.hung_up_by: str | None = None  # "app" or "caller"
        self.actions: list[tuple[Any, ...]] = []
        self.played: list[str] = []
        self.dialled: list[DialAttempt] = []
        self.recordings: list[dict[str, Any]] = []
        self.transfers: list[str] = []
        self.bridged: list[Any] = []
        self.echoed = False
        self.record_seconds, self.transfer_result = record_seconds, transfer_result
        self.prompt_dirs = tuple(prompt_dirs)
        self.services: dict[Any, Any] = dict(services or {})
        self.record_audio = record_audio
        self._dial_results = dial_results if dial_results is not None else {}
        self._script: deque[Any] = deque()
        self._watchers: list[Deferred[str]] = []
        self._collector: _Collector | None = None
        for item in digits:
            self._script.extend([item] if item is TIMEOUT else list(str(item)))

    # -- driving the caller --------------------------------------------------------

    def press(self, digits: str) -> None:
        """The caller presses ``digits`` now."""
        self._script.extend(digits)
        if self._collector is not None:
            self._collector.feed()

    def caller_hangs_up(self, cause: str = "normal") -> None:
        """The caller hangs up: pending operations fail with CallHungUp."""
        self._end(cause, "caller")

    # -- ICallContext --------------------------------------------------------------

    def answer(self) -> Deferred[None]:
        if self.hungup:
            return fail(CallHungUp(self.hangup_cause or "normal"))
        if not self.answered:
            self.answered = True
            self.actions.append(("answer",))
        return succeed(None)

    def hangup(self, cause: str = "normal") -> Deferred[None]:
        if cause not in HANGUP_CAUSES:
            return fail(ValueError(f"unknown hangup cause {cause!r}"))
        if not self.hungup:
            self.actions.append(("hangup", cause))
            self._end(cause, "app")
        return succeed(None)

    def when_hungup(self) -> Deferred[str]:
        if self.hungup:
            return succeed(self.hangup_cause or "normal")
        d: Deferred[str] = Deferred()
        self._watchers.append(d)
        return d

    def play(self, prompt: str, interrupt_digits: str = "") -> Deferred[str]:
        if self.hungup:
            return fail(CallHungUp(self.hangup_cause or "normal"))
        if not is_tone(prompt):
            try:
                resolve_prompt(prompt, self.prompt_dirs)
            except (FileNotFoundError, ValueError) as exc:
                return fail(exc)
        self.played.append(prompt)
        self.actions.append(("play", prompt))
        head = self._script[0] if self._script else None
        if interrupt_digits and isinstance(head, str) and head in interrupt_digits:
            return succeed(self._script.popleft())
        return succeed("")

    def collect_digits(self, max_digits: int = 1, timeout: float = 5.0,
                       terminators: str = "#", first_timeout: float | None = None) -> Deferred[str]:
        if self.hungup:
            return fail(CallHungUp(self.hangup_cause or "normal"))
        self.actions.append(("collect", max_digits, timeout))
        collector = _Collector(self, max_digits, timeout, terminators, first_timeout)
        collector.feed()
        if not collector.result.called:
            self._collector = collector
            collector.start_timer()
        return collector.result

    def record(self, path: str, max_seconds: float = 60.0, silence_seconds: float = 0.0,
               stop_digits: str = "#") -> Deferred[dict[str, Any]]:
        if self.hungup:
            return fail(CallHungUp(self.hangup_cause or "normal"))
        head = self._script[0] if self._script else None
        seconds = min(self.record_seconds, max_seconds)
        digit = ""
        if isinstance(head, str) and head in stop_digits:
            digit, reason = self._script.popleft(), "digit"
        elif self.record_seconds >= max_seconds:
            reason = "max"
        else:
            reason = "silence" if silence_seconds > 0 else "hangup"
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(self.record_audio(seconds) if self.record_audio is not None
                          else b"\0\0" * int(seconds * 8000))
        result = {"path": path, "seconds": seconds, "reason": reason, "digit": digit}
        self.recordings.append(result)
        self.actions.append(("record", path))
        if reason == "hangup":
            self.caller_hangs_up()
        return succeed(result)

    def echo(self) -> Deferred[None]:
        self.echoed = True
        self.actions.append(("echo",))
        return self.when_hungup().addCallback(lambda _: None)

    def dial(self, targets: Sequence[str], timeout: float = 30.0) -> Deferred[str]:
        if self.hungup:
            return succeed("CANCEL")
        if isinstance(self._dial_results, Mapping):
            status = _combine([self._dial_results.get(t, "CHANUNAVAIL") for t in targets])
        else:
            index = len(self.dialled)
            status = self._dial_results[index] if index < len(self._dial_results) else "CHANUNAVAIL"
        if status not in DIAL_STATUSES:
            return fail(ValueError(f"scripted dial status {status!r} is not one of {DIAL_STATUSES}"))
        self.dialled.append(DialAttempt(tuple(targets), timeout, status))
        self.actions.append(("dial", tuple(targets), timeout))
        if status == "CANCEL":
            self.caller_hangs_up()
        return succeed(status)

    def bridge(self, other: Any) -> Deferred[None]:
        if self.hungup:
            return fail(CallHungUp(self.hangup_cause or "normal"))
        self.bridged.append(other)
        self.actions.append(("bridge", other))
        return self.when_hungup().addCallback(lambda _: None)

    def transfer(self, target: str) -> Deferred[bool]:
        if self.hungup:
            return fail(CallHungUp(self.hangup_cause or "normal"))
        self.transfers.append(target)
        self.actions.append(("transfer", target))
        if self.transfer_result:
            self._end("normal", "app")
        return succeed(self.transfer_result)

    def service(self, interface: Any) -> Any:
        try:
            return self.services[interface]
        except KeyError:
            raise LookupError(f"no provider of {getattr(interface, '__name__', interface)}"
                              " on this call") from None

    # -- internals ----------------------------------------------------------------

    def _end(self, cause: str, by: str) -> None:
        if self.hungup:
            return
        self.hungup, self.hangup_cause, self.hung_up_by = True, cause, by
        collector, self._collector = self._collector, None
        if collector is not None:
            collector.stop(CallHungUp(cause))
        watchers, self._watchers = self._watchers, []
        for d in watchers:
            d.callback(cause)


class _Collector:
    """One pending collect_digits on a FakeCall."""

    def __init__(self, call: FakeCall, max_digits: int, timeout: float, terminators: str,
                 first_timeout: float | None) -> None:
        self.call, self.max_digits, self.timeout = call, max_digits, timeout
        self.terminators, self.first_timeout = terminators, first_timeout
        self.digits = ""
        self.result: Deferred[str] = Deferred()
        self.timer: Any = None

    def start_timer(self) -> None:
        delay = self.first_timeout if not self.digits and self.first_timeout else self.timeout
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = self.call.clock.callLater(delay, self.finish)

    def feed(self) -> None:
        script = self.call._script
        while script and not self.result.called:
            item = script.popleft()
            if item is TIMEOUT or item in self.terminators:
                self.finish()
            else:
                self.digits += item
                if len(self.digits) >= self.max_digits:
                    self.finish()
                elif self.timer is not None:
                    self.start_timer()

    def finish(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.call._collector is self:
            self.call._collector = None
        if not self.result.called:
            self.result.callback(self.digits)

    def stop(self, error: Exception) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if not self.result.called:
            self.result.errback(error)


def runner_for(config: Any) -> Any:
    """A :class:`pbxd.dialplan.DialplanRunner` for a parsed :class:`pbxd.config.Config`:
    built-in applications plus those of its ``plugins:``. Raises ConfigError like startup."""
    from pbxd.dialplan import Dialplan, DialplanRunner, discover_applications

    applications = discover_applications(config.plugins)
    return DialplanRunner(Dialplan.compile(config.dialplan, applications))
