"""pbxd.sip.transaction.timers: transaction timers in one FIFO per duration.

On a ``task.Clock`` the timers must run exactly when one ``callLater`` each
would have, in the same order relative to the clock's other calls; on a
reactor (which refuses negative delays) overdue timers run at the next wake-up.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.logger import LogLevel, capturedLogs

from pbxd.sip.message import make_response
from pbxd.sip.transaction.timers import RESOLUTION, TimerQueues


def test_timers_of_one_duration_run_at_their_times_with_one_delayed_call():
    clock = task.Clock()
    queues = TimerQueues(clock)
    ran: list[tuple[str, float]] = []
    for name in "abc":
        queues.callLater(32, lambda n: ran.append((n, clock.seconds())), name)
        clock.advance(1)
    assert len(clock.getDelayedCalls()) == 1 and queues.pending() == 3
    clock.advance(28.9)  # 31.9
    assert ran == []
    clock.advance(3)  # 34.9
    assert ran == [("a", 34.9), ("b", 34.9), ("c", 34.9)]  # (task.Clock: seconds() is the end)
    assert clock.getDelayedCalls() == [] and queues.pending() == 0


def test_due_timers_interleave_with_other_calls_in_time_order_within_one_advance():
    clock = task.Clock()
    queues = TimerQueues(clock)
    order: list[str] = []
    queues.callLater(32, order.append, "J1")
    clock.advance(8)
    queues.callLater(32, order.append, "J2")  # due at 40
    clock.callLater(27, order.append, "other")  # due at 35
    clock.callLater(40, order.append, "later")  # due at 48
    clock.advance(100)
    assert order == ["J1", "other", "J2", "later"]


def test_a_timer_runs_not_a_moment_early():
    clock = task.Clock()
    queues = TimerQueues(clock)
    ran: list[str] = []
    queues.callLater(0.5, ran.append, "x")
    clock.advance(0.49)
    assert ran == []
    clock.advance(0.01)
    assert ran == ["x"]


def test_cancelled_timers_do_not_run_and_an_idle_queue_leaves_no_delayed_call():
    clock = task.Clock()
    queues = TimerQueues(clock)
    ran: list[str] = []
    first = queues.callLater(5, ran.append, "first")
    second = queues.callLater(5, ran.append, "second")
    assert first.active() and first.getTime() == 5
    first.cancel()
    first.cancel()  # twice is harmless
    assert not first.active() and queues.pending() == 1
    assert len(clock.getDelayedCalls()) == 1
    second.cancel()
    assert clock.getDelayedCalls() == [] and queues.pending() == 0
    clock.advance(10)
    assert ran == []
    third = queues.callLater(5, ran.append, "third")  # the queue starts again
    clock.advance(5)
    assert ran == ["third"] and not third.active()
    third.cancel()  # after it ran: nothing happens
    assert queues.pending() == 0


def test_a_cancelled_head_is_skipped_and_the_next_runs_at_its_own_time():
    clock = task.Clock()
    queues = TimerQueues(clock)
    ran: list[float] = []
    head = queues.callLater(4, lambda: ran.append(clock.seconds()))
    clock.advance(1)
    queues.callLater(4, lambda: ran.append(clock.seconds()))
    head.cancel()
    clock.advance(3)
    assert ran == []
    clock.advance(1)
    assert ran == [5.0]


def test_a_timer_started_by_a_running_timer_of_the_same_duration_waits_its_turn():
    clock = task.Clock()
    queues = TimerQueues(clock)
    ran: list[float] = []

    def again() -> None:  # Timer G at T2: re-armed from its own expiry
        ran.append(clock.seconds())
        if len(ran) < 3:
            queues.callLater(4, again)

    queues.callLater(4, again)
    clock.advance(4)
    assert ran == [4.0] and len(clock.getDelayedCalls()) == 1
    clock.advance(4)
    clock.advance(4)
    assert ran == [4.0, 8.0, 12.0]
    assert clock.getDelayedCalls() == []


def test_a_timer_may_cancel_the_others_of_its_queue_and_start_a_new_one():
    clock = task.Clock()
    queues = TimerQueues(clock)
    ran: list[tuple[str, float]] = []
    handles: dict[str, Any] = {}

    def first() -> None:  # cancels its neighbour (due at the same time), starts another
        ran.append(("first", clock.seconds()))
        handles["second"].cancel()
        queues.callLater(2, lambda: ran.append(("third", clock.seconds())))

    queues.callLater(2, first)
    handles["second"] = queues.callLater(2, lambda: ran.append(("second", clock.seconds())))
    clock.advance(2)
    assert ran == [("first", 2.0)] and queues.pending() == 1
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(2)
    assert ran == [("first", 2.0), ("third", 4.0)]
    assert clock.getDelayedCalls() == [] and queues.pending() == 0


def test_a_raising_timer_is_logged_and_the_others_still_run():
    clock = task.Clock()
    queues = TimerQueues(clock)
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("TU bug")

    queues.callLater(1, boom)
    queues.callLater(1, ran.append, "after")
    with capturedLogs() as events:
        clock.advance(1)
    assert ran == ["after"]
    assert any(e["log_level"] == LogLevel.critical for e in events)


def test_zero_delay_goes_to_the_clock_directly():
    clock = task.Clock()
    queues = TimerQueues(clock)
    ran: list[int] = []
    call = queues.callLater(0, ran.append, 1)
    assert call in clock.getDelayedCalls()
    clock.advance(0)
    assert ran == [1]


class ReactorClock:
    """Like a reactor: callLater refuses negative delays, calls run when the test says."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[Any] = []

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, fn: Any, *args: Any) -> Any:  # noqa: N802
        assert delay >= 0, delay
        clock = self

        class Call:
            time = self.now + delay
            cancelled = False

            def cancel(self) -> None:
                self.cancelled = True
                clock.calls.remove(self)

            def run(self) -> None:
                clock.calls.remove(self)
                fn(*args)

        call = Call()
        self.calls.append(call)
        return call

    def run_until(self, now: float) -> None:
        """Jump to ``now`` (late, as a busy reactor is) and run what is due."""
        self.now = now
        while True:
            due = [c for c in self.calls if c.time <= now]
            if not due:
                return
            min(due, key=lambda c: c.time).run()


def test_on_a_reactor_a_late_wake_up_runs_everything_overdue_at_once():
    clock = ReactorClock()
    queues = TimerQueues(clock)
    ran: list[str] = []
    for n in range(5):
        clock.now = n * 0.002
        queues.callLater(32, ran.append, str(n))
    assert len(clock.calls) == 1
    clock.run_until(32.0075)  # the reactor comes round late: 0..3 are overdue
    assert ran == ["0", "1", "2", "3"] and len(clock.calls) == 1
    # 4 is due in half a millisecond: the next wake-up is a millisecond on
    assert clock.calls[0].time == 32.0075 + RESOLUTION
    clock.run_until(32.008)
    assert ran == ["0", "1", "2", "3"]
    clock.run_until(32.0085)
    assert ran == ["0", "1", "2", "3", "4"] and clock.calls == []


def test_on_a_reactor_timers_due_within_a_millisecond_share_a_wake_up():
    clock = ReactorClock()
    queues = TimerQueues(clock)
    ran: list[tuple[int, float]] = []
    for n in range(100):  # one timer every 0.1 ms, as under load
        clock.now = n * 0.0001
        queues.callLater(5, lambda n=n: ran.append((n, clock.now)))
    wake_ups = 0
    while clock.calls:
        call = clock.calls[0]
        clock.now = call.time  # a punctual reactor
        call.run()
        wake_ups += 1
    assert [n for n, _ in ran] == list(range(100))
    assert wake_ups <= 11  # one per millisecond, not one per timer
    lateness = [at - (5 + n * 0.0001) for n, at in ran]
    assert min(lateness) >= -1e-9 and max(lateness) <= RESOLUTION + 1e-9


def test_the_layer_keeps_one_delayed_call_per_duration():
    from tests.test_sip_transaction import Harness, request

    h = Harness()
    for n in range(200):  # 200 answered non-INVITE requests: 200 Timers J of 64*T1
        txn = h.server(request("OPTIONS", branch=f"z9hG4bK-{n}", call_id=f"c{n}"))
        txn.respond(make_response(txn.request, 200, to_tag="t"))
        h.clock.advance(0.01)
    assert len(h.layer) == 200 and len(h.clock.getDelayedCalls()) == 1
    h.clock.advance(29.99)  # 31.99: the first one ends at 32, 32 s after its answer
    assert len(h.layer) == 200
    h.clock.advance(1.0)  # 32.99: those answered in the first second ended
    assert 99 <= len(h.layer) <= 101
    h.clock.advance(1.01)
    assert len(h.layer) == 0 and h.clock.getDelayedCalls() == []


def test_timers_pass_none_one_or_several_arguments_as_given():
    clock = task.Clock()
    queues = TimerQueues(clock)
    got: list[tuple[Any, ...]] = []
    queues.callLater(1, lambda *a: got.append(a))
    queues.callLater(1, lambda *a: got.append(a), (1, 2))  # one argument that is a tuple
    queues.callLater(1, lambda *a: got.append(a), None)
    queues.callLater(1, lambda *a: got.append(a), "x", "y")
    cancelled = queues.callLater(1, lambda *a: got.append(a), "never")
    cancelled.cancel()
    clock.advance(1)
    assert got == [(), ((1, 2),), (None,), ("x", "y")]
    assert not cancelled.active() and queues.pending() == 0
