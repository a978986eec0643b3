"""The leg state machines: every declared transition, refusals, and the tricky paths
(CANCEL before a provisional, 2xx crossing CANCEL, glare, late CANCEL, CSeq order)."""

from __future__ import annotations

import itertools

import pytest
from test_calls_flow import A_ADDR, B_ADDR, answered, ringing
from test_calls_support import World, line_of, sdp

from pbxd.calls.inbound import InboundLeg
from pbxd.calls.leg import INBOUND, OUTBOUND, IllegalTransition, Leg, LegState
from pbxd.calls.outbound import OutboundLeg

EVENTS = sorted({e for _, e in INBOUND} | {e for _, e in OUTBOUND})


class Registry:
    def __init__(self) -> None:
        self.unbound: list[Leg] = []

    def bind(self, dialog_id, leg) -> None:
        pass

    def unbind(self, leg) -> None:
        self.unbound.append(leg)


def bare(cls: type[Leg], state: LegState) -> tuple[Leg, Registry]:
    registry = Registry()
    leg = Leg.__new__(cls)
    Leg.__init__(leg, "t-1", None, None, registry)
    leg.state = state
    return leg, registry


@pytest.mark.parametrize(("cls", "table"), [(InboundLeg, INBOUND), (OutboundLeg, OUTBOUND)])
def test_every_declared_transition_and_only_those(cls, table) -> None:
    for state, event in itertools.product(LegState, EVENTS):
        leg, registry = bare(cls, state)
        if (state, event) in table:
            assert leg.fire(event) is table[(state, event)]
            ended = table[(state, event)] is LegState.TERMINATED and state is not LegState.TERMINATED
            assert registry.unbound == ([leg] if ended else [])
        else:
            with pytest.raises(IllegalTransition):
                leg.fire(event)
            assert leg.state is state


def test_terminated_is_final_in_both_tables() -> None:
    for table in (INBOUND, OUTBOUND):
        assert not [k for k in table if k[0] is LegState.TERMINATED]


def test_cancel_waits_for_a_provisional_before_it_is_sent() -> None:
    world = World()
    a, (b,), (invite,) = ringing(world)
    a.cancel()
    assert b.new() == []  # no provisional from B yet: CANCEL held back (RFC 3261 9.1)
    fork = world.call().forks[0]
    assert fork.state is LegState.TERMINATING and fork.cancel_pending
    b.answer(invite, 100)
    assert b.lines() == ["CANCEL"]
    b.answer(invite, 487)
    assert fork.state is LegState.TERMINATED


def test_2xx_crossing_our_cancel_is_acked_then_byed() -> None:
    world = World()
    a, (b,), (invite,) = ringing(world)
    b.answer(invite, 180)
    a.cancel()
    assert b.lines() == ["CANCEL"]
    fork = world.manager.calls and list(world.manager.calls.values())[0].forks[0]
    b.answer(invite, 200, sdp(B_ADDR[0], 5000))
    assert b.lines() == ["ACK", "BYE"]
    assert fork.state is LegState.TERMINATING
    b.answer(b.last("BYE"), 200)
    assert fork.state is LegState.TERMINATED and world.manager.calls == {}
    assert "200 INVITE" not in a.lines()  # the caller only ever saw 487


def test_cancel_after_the_answer_changes_nothing() -> None:
    world = World()
    a, (b,), (invite,) = ringing(world)
    b.answer(invite, 200, sdp(B_ADDR[0], 5000))
    a.cancel()
    assert "487 INVITE" not in a.lines()
    assert world.call().state == "ANSWERED" and world.call().a.state is LegState.CONFIRMED


def test_update_glare_gets_491_and_pending_offer_gets_500_retry_after() -> None:
    world = World()
    a, b, ok, invite = answered(world)
    b.request("UPDATE", invite, body=sdp(B_ADDR[0], 5000, "sendonly"))
    assert b.new() == []
    assert a.new()[-1].method == "UPDATE"  # relayed, pending on A's leg
    a.request("UPDATE", ok, body=sdp(A_ADDR[0], 4000, "sendonly"))
    assert a.lines() == ["491 UPDATE"]
    # a second offer from B while its first is unanswered
    b.request("UPDATE", invite, body=sdp(B_ADDR[0], 5000))
    (busy,) = b.new()
    assert busy.status == 500 and busy.get("Retry-After") == "1"


def test_request_after_bye_sent_gets_481() -> None:
    world = World()
    a, b, ok, invite = answered(world)
    b.request("BYE", invite)
    assert world.call().a.state is LegState.TERMINATING
    a.request("INFO", ok, body=b"x")
    assert line_of(a.new()[-1]) == "481 INFO"


def test_out_of_order_cseq_gets_500() -> None:
    world = World()
    a, b, ok, invite = answered(world)
    a.cseq = 0  # next request reuses CSeq 1, below the INVITE's
    a.request("INFO", ok, body=b"x")
    last = a.new()[-1]
    assert last.status == 500 and last.cseq.method == "INFO"


def test_no_answer_on_bye_from_callee_side_times_out_to_terminated() -> None:
    world = World()
    a, b, ok, invite = answered(world)
    a.request("BYE", ok)
    winner = world.call().winner
    assert winner.state is LegState.TERMINATING
    world.clock.advance(32.5)
    assert winner.state is LegState.TERMINATED
