"""Transaction timers kept in one FIFO per duration (a clock for the transactions).

Almost every transaction timer has a fixed duration: Timers B, F, H, J, L, M
(64*T1), K and I (T4), D, the automatic 100 Trying, and the first A/E/G
interval (T1). Timers of one duration started one after another also expire one
after another, so they need no heap: :class:`TimerQueues` keeps them in a deque
per duration, with a single ``callLater`` per deque for the one at its head,
instead of a ``DelayedCall`` (object, heap push, pop or cancel) per timer. A
cancelled timer is only marked, and skipped when its turn comes; a deque whose
every timer was cancelled or fired leaves no ``DelayedCall`` behind.

A timer never runs before its time. On a ``task.Clock`` it runs exactly when a
``callLater`` of its own would have, in the same order relative to the clock's
other calls. On a reactor a deque wakes up at most once per :data:`RESOLUTION`
(1 ms) and runs every timer that is due by then, so a timer may run up to 1 ms
late; under load that is what saves the wake-ups (one per millisecond instead
of one per timer) and keeps the reactor's heap of ``DelayedCall`` objects, whose
comparisons are Python calls, down to a handful of entries.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock as _TaskClock
from twisted.logger import Logger

__all__ = ["TimerQueues"]


class _Timer:
    """One timer: what ``callLater`` returns (``active``, ``cancel``).

    ``args`` is the tuple of arguments, or with ``one`` set the single argument
    itself (a transaction's timers are ``fn(txn)``: no tuple kept per timer).
    """

    __slots__ = ("when", "fn", "args", "one", "queue")

    def __init__(self, when: float, fn: Callable[..., Any], args: Any, one: bool,
                 queue: _Queue) -> None:
        self.when = when
        self.fn: Callable[..., Any] | None = fn
        self.args = args
        self.one = one
        self.queue = queue

    def active(self) -> bool:
        """True until it ran or was cancelled."""
        return self.fn is not None

    def cancel(self) -> None:
        """Do not run it (no error when it already ran or was cancelled)."""
        if self.fn is not None:
            self.fn = None
            self.args = None
            self.queue.cancelled()

    def getTime(self) -> float:  # noqa: N802 - IDelayedCall
        """When it runs (clock seconds)."""
        return self.when


#: On a reactor, a deque's next wake-up is at least this long after the last one (seconds):
#: a timer may run up to a millisecond after its time (SIP's shortest timer is T1, 500 ms),
#: and under load one wake-up then runs the dozens of timers due in that millisecond.
RESOLUTION = 0.001

#: the wake-up of a deque that is running its timers (timers started meanwhile wait for it)
_RUNNING: Any = object()


class _Queue:
    """The timers of one duration, in start order (which is expiry order)."""

    __slots__ = ("clock", "delay", "timers", "live", "call", "due", "exact")

    log = Logger()

    def __init__(self, clock: Any, delay: float) -> None:
        self.clock = clock
        self.delay = delay
        self.timers: deque[_Timer] = deque()
        self.live = 0
        self.call: Any = None  # the DelayedCall of the head, _RUNNING, or None when empty
        self.due = 0.0  # the time of the head that call was scheduled for
        # task.Clock takes a time in the past and orders it among its calls; a reactor
        # asserts delay >= 0 (and then runs what is overdue at once anyway)
        self.exact = isinstance(clock, _TaskClock)

    def add(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> _Timer:
        clock = self.clock
        if len(args) == 1:
            timer = _Timer(clock.seconds() + self.delay, fn, args[0], True, self)
        else:
            timer = _Timer(clock.seconds() + self.delay, fn, args, False, self)
        self.timers.append(timer)
        self.live += 1
        if self.call is None:
            self.due = timer.when
            self.call = clock.callLater(self.delay, self._run)
        return timer

    def cancelled(self) -> None:
        """A live timer was cancelled: when none is left, drop the deque and its wake-up."""
        self.live -= 1
        if self.live == 0:
            self.timers.clear()
            call = self.call
            if call is not None and call is not _RUNNING:
                self.call = None
                call.cancel()

    def _run(self) -> None:
        # what is due: up to this wake-up's own time on a task.Clock (later ones get
        # their own, in order with the clock's other calls), up to now on a reactor
        bound = self.due if self.exact else max(self.due, self.clock.seconds())
        self.call = _RUNNING
        timers = self.timers
        while timers:
            timer = timers[0]
            fn = timer.fn
            if fn is None:
                timers.popleft()
                continue
            if timer.when > bound:
                break
            timers.popleft()
            args = timer.args
            timer.fn = None
            timer.args = None
            self.live -= 1
            try:
                if timer.one:
                    fn(args)
                else:
                    fn(*args)
            except Exception:
                self.log.failure("transaction timer {fn!r} raised", fn=fn)
        self.call = None
        while timers and timers[0].fn is None:
            timers.popleft()
        if timers:
            self.due = due = timers[0].when
            delay = due - self.clock.seconds()
            if delay < RESOLUTION and not self.exact:
                # a reactor refuses a time in the past; and under load, when the next
                # head is due within a millisecond, one wake-up serves all of them
                delay = RESOLUTION
            self.call = self.clock.callLater(delay, self._run)


class TimerQueues:
    """A ``callLater`` for transactions: one FIFO (and one ``DelayedCall``) per duration.

    :param clock: the ``IReactorTime`` the wake-ups are scheduled on.

    ``callLater(delay, fn, *args)`` returns an object with ``active()``,
    ``cancel()`` and ``getTime()``. A delay of 0 or less goes to ``clock``
    directly. Durations are few (the timer values and their doublings); each
    gets its deque on first use and keeps it.
    """

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self._queues: dict[float, _Queue] = {}

    def callLater(self, delay: float, fn: Callable[..., Any], *args: Any) -> Any:  # noqa: N802
        """Run ``fn(*args)`` ``delay`` seconds from now; the handle can cancel it."""
        queue = self._queues.get(delay)
        if queue is None:
            if delay <= 0:
                return self.clock.callLater(delay, fn, *args)
            queue = self._queues[delay] = _Queue(self.clock, delay)
        return queue.add(fn, args)

    def pending(self) -> int:
        """Timers started and neither run nor cancelled yet."""
        return sum(q.live for q in self._queues.values())
