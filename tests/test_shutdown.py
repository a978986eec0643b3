"""Graceful shutdown: new INVITEs get 503 + Retry-After, calls drain, then services stop."""

from __future__ import annotations

from test_sip_controller import INVITE, OPTIONS, Handler, make_controller, receive
from twisted.application.service import Service
from twisted.internet import task
from twisted.logger import capturedLogs

from pbxd.shutdown import REASON, Drainer, PBXService


class Calls:
    """A count of calls in progress that the test ends by hand."""

    def __init__(self, count: int) -> None:
        self.count = count


def make_drainer(calls: Calls, drain_time: float = 10.0):
    clock = task.Clock()
    reasons: list[str] = []
    drainer = Drainer(clock, count_calls=lambda: calls.count, refuse_new=reasons.append,
                      drain_time=drain_time)
    return drainer, clock, reasons


def results(d) -> list:
    out: list = []
    d.addBoth(out.append)
    return out


def test_drain_without_calls_finishes_at_once_and_refuses_new_calls():
    drainer, _, reasons = make_drainer(Calls(0))
    assert results(drainer.drain()) == [0]
    assert reasons == [REASON]


def test_drain_waits_for_calls_to_finish():
    calls = Calls(2)
    drainer, clock, _ = make_drainer(calls)
    done = results(drainer.drain())
    clock.advance(3)
    assert done == []
    calls.count = 0
    clock.advance(0.25)
    assert done == [0]


def test_drain_gives_up_after_drain_time_with_calls_left():
    calls = Calls(1)
    drainer, clock, _ = make_drainer(calls, drain_time=5)
    done = results(drainer.drain())
    clock.advance(4.9)
    assert done == []
    clock.advance(0.25)
    assert done == [1]


def test_drain_time_zero_does_not_wait():
    drainer, _, _ = make_drainer(Calls(3), drain_time=0)
    assert results(drainer.drain()) == [3]


class Child(Service):
    def __init__(self) -> None:
        self.stopped_at: float | None = None
        self.clock: task.Clock | None = None

    def stopService(self):  # noqa: N802
        self.stopped_at = self.clock.seconds()
        return super().stopService()


def test_root_service_stops_its_children_only_after_the_drain():
    calls = Calls(1)
    drainer, clock, _ = make_drainer(calls, drain_time=10)
    root = PBXService()
    root.drainer = drainer
    child = Child()
    child.clock = clock
    child.setServiceParent(root)
    root.startService()
    stopped = results(root.stopService())
    clock.advance(2)
    assert child.running and child.stopped_at is None and stopped == []
    calls.count = 0
    clock.advance(0.25)
    assert not child.running and child.stopped_at == 2.25
    assert len(stopped) == 1


def test_draining_controller_answers_new_invites_503_with_retry_after():
    handler = Handler()
    controller, transport, _ = make_controller(request_handler=handler)
    controller.draining = REASON
    with capturedLogs() as events:
        receive(controller, transport, INVITE)
    (refusal,) = [e for e in events if "refused" in e.get("log_format", "")]
    assert refusal["txn"] == "s1" and refusal["reason"] == REASON  # the id is in the line
    (response, _), = transport.sent
    assert response.status == 503
    assert response.get("Retry-After").startswith("5 ")
    assert "shutting down" in response.get("Retry-After")
    assert handler.requests == []
    receive(controller, transport, OPTIONS)  # everything else is still served
    assert transport.statuses[-1] == 200
