"""pbxd.sip.overload: loop-lag detection and the call-rate bucket, on task.Clock."""

from __future__ import annotations

from twisted.internet import task

from pbxd.sip.overload import CallRateLimiter, LoopLagMonitor, OverloadGuard


def test_on_time_ticks_are_not_overload() -> None:
    clock = task.Clock()
    monitor = LoopLagMonitor(clock, max_lag=0.5, interval=0.1)
    monitor.start()
    clock.pump([0.1] * 50)
    assert monitor.lag < 1e-9 and not monitor.overloaded
    monitor.stop()
    assert clock.getDelayedCalls() == []


def test_a_blocked_loop_is_overload_for_hold_seconds() -> None:
    clock = task.Clock()
    monitor = LoopLagMonitor(clock, max_lag=0.5, interval=0.1, hold=1.0)
    monitor.start()
    clock.advance(0.1)
    clock.advance(2.0)  # the reactor was busy for 2 s: the next tick runs late
    assert monitor.lag > 1.9 and monitor.overloaded and monitor.max_seen > 1.9
    clock.pump([0.1] * 5)  # back on time, but still within hold
    assert monitor.lag < 1e-9 and monitor.overloaded
    clock.pump([0.1] * 6)
    assert not monitor.overloaded
    monitor.stop()


def test_one_brief_stall_is_not_overload_but_persistent_lateness_is() -> None:
    clock = task.Clock()
    monitor = LoopLagMonitor(clock, max_lag=0.5, interval=0.1, hold=1.0)
    monitor.start()
    clock.advance(0.1)
    clock.advance(0.7)  # one fsync-like stall, a little over max_lag
    assert monitor.lag > 0.5 and not monitor.overloaded
    clock.pump([0.1] * 20)
    for _ in range(8):  # now every tick runs 0.6 s late: the reactor is saturated
        clock.advance(0.7)
    assert monitor.overloaded
    monitor.stop()


def test_small_lag_below_the_limit_is_fine() -> None:
    clock = task.Clock()
    monitor = LoopLagMonitor(clock, max_lag=0.5, interval=0.1)
    monitor.start()
    clock.advance(0.1)
    clock.advance(0.4)
    assert 0.2 < monitor.lag < 0.5 and not monitor.overloaded
    monitor.stop()


def test_disabled_monitor_schedules_nothing() -> None:
    clock = task.Clock()
    monitor = LoopLagMonitor(clock, max_lag=0)
    monitor.start()
    assert clock.getDelayedCalls() == [] and not monitor.overloaded and not monitor.running


def test_call_rate_allows_a_burst_then_the_rate() -> None:
    clock = task.Clock()
    rate = CallRateLimiter(clock, 10)
    assert sum(rate.admit() for _ in range(50)) == 10  # one second's burst
    clock.advance(0.5)
    assert sum(rate.admit() for _ in range(50)) == 5
    clock.advance(10)
    assert sum(rate.admit() for _ in range(50)) == 10  # the bucket does not overfill


def test_call_rate_zero_is_unlimited_and_fractional_rates_work() -> None:
    clock = task.Clock()
    assert all(CallRateLimiter(clock, 0).admit() for _ in range(1000))
    slow = CallRateLimiter(clock, 0.5)
    assert slow.admit() and not slow.admit()
    clock.advance(2)
    assert slow.admit()


def test_guard_reasons_and_uncounted_checks() -> None:
    clock = task.Clock()
    guard = OverloadGuard(clock, max_loop_lag=0.5, max_call_rate=2, retry_after=9)
    assert guard.why_not() is None and guard.why_not() is None
    assert guard.why_not() == "call rate exceeded"
    assert guard.why_not(counts=False) is None  # a challenge-only INVITE uses no token
    guard.start()
    clock.advance(0.1)
    clock.advance(3)
    assert guard.why_not(counts=False) == "overloaded"
    assert guard.refused == 2 and guard.retry_after == 9
    guard.stop()
