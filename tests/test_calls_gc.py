"""An ended dialplan call is freed by reference counting, with no help from the cycle
collector: its SIP transactions outlive it (an INVITE client transaction absorbs 2xx
retransmissions for 32 s) but keep only the legs, not the session, its media and its
dialplan state; and nothing of it is left in reference cycles."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from test_calls_support import Phone, World, sdp
from twisted.logger import Logger

from pbxd.calls.dialer import Dialer
from pbxd.calls.leg import Leg
from pbxd.calls.session import Session
from pbxd.calls.sessions import SessionStarter
from pbxd.configschema import default_dialplan
from pbxd.dialplan import Dialplan, discover_applications
from pbxd.wiring_dialplan import DialplanSeam

A_ADDR = ("192.0.2.10", 5062)
B_ADDR = ("192.0.2.20", 5064)


@pytest.fixture
def no_collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # before logging begins, Twisted keeps recent events, and an event keeps its source
    for cls in (Session, Dialer, Leg):
        monkeypatch.setattr(cls, "log", Logger(observer=lambda event: None))
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def dialplan_world() -> World:
    world = World()
    seam = DialplanSeam(Dialplan.compile(default_dialplan(), discover_applications(())))
    world.manager.sessions = SessionStarter(world.manager, seam)
    return world


def phones(world: World) -> tuple[Phone, Phone]:
    return world.phone("1000", A_ADDR, register=False), world.phone("1001", B_ADDR)


def one_call(world: World, a: Phone, b: Phone) -> list[weakref.ref]:
    a.invite("1001")
    invite = b.new()[-1]
    b.answer(invite, 180)
    b.answer(invite, 200, sdp(B_ADDR[0], 5000))
    ok = a.last(200)
    a.ack_2xx(ok)
    (session,) = world.manager.calls.values()
    refs = [weakref.ref(o) for o in (session, session.a_sdp, session.media, session.player)]
    world.clock.advance(0.5)
    a.request("BYE", ok)
    bye = b.new()[-1]
    b.answer(bye, 200)
    assert world.manager.calls == {}
    del session
    world.rtp_ports.clear()  # the fake reactor's table of ports, closed ones included
    return refs


def test_ended_call_is_freed_while_its_transactions_linger(no_collector: None) -> None:
    world = dialplan_world()
    refs = one_call(world, *phones(world))
    assert world.clock.getDelayedCalls()  # transaction timers still running
    assert [r() for r in refs] == [None] * len(refs)


def test_calls_leave_no_reference_cycles(no_collector: None) -> None:
    world = dialplan_world()
    a, b = phones(world)
    one_call(world, a, b)
    world.clock.advance(100)  # every transaction of the first call is over
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(3):
            one_call(world, a, b)
        world.clock.advance(100)
        assert gc.collect() == 0, sorted({type(o).__name__ for o in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
