"""Overload detection: event-loop lag and the new-call rate (layer 3).

The SIP controller asks :meth:`OverloadGuard.admit_call` before it starts any
work for a new INVITE (out of dialog). When the server is overloaded the
INVITE gets ``503 Service Unavailable`` with ``Retry-After``; calls and
registrations in progress are not affected, because only new INVITEs are
refused (RFC 3261 §21.5.4, RFC 7339's reasoning without its negotiation).

Two signals, both on the injected clock:

- :class:`LoopLagMonitor`: a ``LoopingCall`` ticks every ``interval`` seconds
  and measures how late each tick runs. A tick later than ``max_lag`` means the
  reactor is saturated (a CPU-bound flood, a slow database callback); the state
  is held for ``hold`` seconds after the last late tick so it does not flap.
- :class:`CallRateLimiter`: a token bucket of ``rate`` new calls per second
  with bursts of up to one second's worth.

Memory is constant: a few floats per guard.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

SMOOTHING = 0.3
"""Weight of the newest tick in the smoothed lag."""


class LoopLagMonitor:
    """Measures the lateness of a periodic tick on ``clock``.

    :param max_lag: seconds of lateness that mean "overloaded"; 0 disables.
    :param interval: seconds between ticks.
    :param hold: seconds the overloaded state is kept after the last late tick.
    """

    log = Logger()

    def __init__(self, clock: Any, max_lag: float, interval: float = 0.1, hold: float = 1.0) -> None:
        self.clock = clock
        self.max_lag = max_lag
        self.interval = interval
        self.hold = hold
        self.lag = 0.0  # lateness of the last tick, seconds
        self.smoothed = 0.0  # moving average of the lateness, seconds
        self.max_seen = 0.0
        self._expected = 0.0
        self._until = float("-inf")
        self._loop: LoopingCall | None = None

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._loop is not None and self._loop.running

    def start(self) -> None:
        """Start ticking (no-op when disabled or already running)."""
        if self.max_lag <= 0 or self.running:
            return
        loop = LoopingCall(self._tick)
        loop.clock = self.clock
        self._expected = self.clock.seconds() + self.interval
        loop.start(self.interval, now=False)
        self._loop = loop

    def stop(self) -> None:
        """Stop ticking."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _tick(self) -> None:
        now = self.clock.seconds()
        self.lag = max(0.0, now - self._expected)
        self._expected = now + self.interval
        if self.lag > self.max_seen:
            self.max_seen = self.lag
        self.smoothed += SMOOTHING * (self.lag - self.smoothed)
        if self.smoothed > self.max_lag:
            if now >= self._until:
                self.log.warn("event loop {lag:.3f}s late: refusing new calls", lag=self.lag)
            self._until = now + self.hold

    @property
    def overloaded(self) -> bool:
        """True while the smoothed lag is (or was within ``hold`` seconds) over ``max_lag``."""
        if self.max_lag <= 0:
            return False
        return self.smoothed > self.max_lag or self.clock.seconds() < self._until


class CallRateLimiter:
    """A token bucket: at most ``rate`` admissions per second, bursts up to ``rate``.

    ``rate`` 0 disables the limit.
    """

    def __init__(self, clock: Any, rate: float) -> None:
        self.clock = clock
        self.rate = float(rate)
        self._tokens = max(1.0, self.rate)
        self._last = clock.seconds()

    def admit(self) -> bool:
        """Take one token; False when none is left this second."""
        if self.rate <= 0:
            return True
        now = self.clock.seconds()
        capacity = max(1.0, self.rate)
        self._tokens = min(capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class OverloadGuard:
    """What the controller asks before starting a new call.

    :param max_loop_lag: ``limits.overload.max_loop_lag`` (0 disables the lag check).
    :param max_call_rate: ``limits.overload.max_call_rate`` (0: no limit).
    :param retry_after: seconds for the ``Retry-After`` of the 503.
    """

    log = Logger()

    def __init__(
        self,
        clock: Any,
        *,
        max_loop_lag: float = 0.5,
        max_call_rate: float = 0.0,
        retry_after: int = 5,
        interval: float = 0.1,
        hold: float = 1.0,
    ) -> None:
        self.clock = clock
        self.lag = LoopLagMonitor(clock, max_loop_lag, interval, hold)
        self.rate = CallRateLimiter(clock, max_call_rate)
        self.retry_after = retry_after
        self.refused = 0

    def start(self) -> None:
        """Start the loop-lag monitor."""
        self.lag.start()

    def stop(self) -> None:
        """Stop the loop-lag monitor."""
        self.lag.stop()

    def why_not(self, counts: bool = True) -> str | None:
        """None when a new call may start now, else the reason for its 503.

        ``counts`` False checks only the loop lag (an INVITE that will merely be
        challenged is not a call yet and does not use up the call rate).
        """
        if self.lag.overloaded:
            reason = "overloaded"
        elif counts and not self.rate.admit():
            reason = "call rate exceeded"
        else:
            return None
        self.refused += 1
        return reason
