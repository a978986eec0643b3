"""B2BUA calls end to end on a fake clock: real controller, transactions, UA, manager, relay."""

from __future__ import annotations

import struct

import pytest
from test_calls_support import World, line_of, sdp

A_ADDR = ("192.0.2.10", 5062)
B_ADDR = ("192.0.2.20", 5064)
B2_ADDR = ("192.0.2.21", 5066)


def rtp(seq: int, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160, 0x1234) + b"\xff" * 160


@pytest.fixture
def world() -> World:
    return World()


def ringing(world: World, *, b_addrs=(B_ADDR,)):
    a = world.phone("1000", A_ADDR, register=False)
    bs = [world.phone("1001", addr) for addr in b_addrs]
    a.invite("1001")
    invites = [b.new()[-1] for b in bs]
    assert all(m.method == "INVITE" for m in invites)
    return a, bs, invites


def answered(world: World):
    a, (b,), (invite,) = ringing(world)
    b.answer(invite, 180)
    b.answer(invite, 200, sdp(B_ADDR[0], 5000))
    ok = a.last(200)
    a.ack_2xx(ok)
    a.new()
    b.new()
    return a, b, ok, invite


def test_basic_call_bridges_media_and_bye_from_caller_ends_both_legs(world: World) -> None:
    a, (b,), (invite,) = ringing(world)
    # B's INVITE is a new dialog: own Call-ID, From tag, our Contact and SDP address
    assert invite.call_id != a.call_id
    assert invite.from_.tag != a.tag and invite.from_.uri.user == "1000"
    assert b"c=IN IP4 192.0.2.1" in invite.body and b"192.0.2.10" not in invite.body
    b.answer(invite, 180)
    assert a.lines() == ["180 INVITE"]
    b.answer(invite, 200, sdp(B_ADDR[0], 5000))
    assert b.lines() == ["ACK"]
    ok = a.last(200)
    assert b"c=IN IP4 192.0.2.1" in ok.body and b"192.0.2.20" not in ok.body
    a.ack_2xx(ok)
    call = world.call()
    assert call.state == "ANSWERED" and call.a.state == "CONFIRMED"

    # RTP from A's SDP address to A's port arrives at B's SDP address from B's port
    a_port = call.a_sdp.media.port
    b_port = call.b_sdp.media.port
    world.rtp_ports[a_port].protocol.datagramReceived(rtp(1), ("192.0.2.10", 4000))
    assert world.rtp_ports[b_port].written == [(rtp(1), ("192.0.2.20", 5000))]
    # strangers are not relayed
    world.rtp_ports[a_port].protocol.datagramReceived(rtp(2), ("198.51.100.9", 4000))
    assert len(world.rtp_ports[b_port].written) == 1

    a.request("BYE", ok)
    assert a.lines()[-1] == "200 BYE"
    bye = b.new()[-1]
    assert bye.method == "BYE" and bye.call_id == invite.call_id
    b.answer(bye, 200)
    assert world.manager.calls == {}
    (cdr,) = world.cdrs
    assert cdr["disposition"] == "ANSWERED" and cdr["hangup_side"] == "caller"
    assert cdr["source"] == "1000" and cdr["destination"] == "1001"
    assert cdr["codecs"] == ["PCMU", "telephone-event"]
    assert cdr["media"]["a"]["packets_in"] == 1 and cdr["media"]["b"]["packets_out"] == 1
    assert not world.rtp_ports[a_port].listening


def test_bye_from_callee_hangs_up_caller(world: World) -> None:
    a, b, ok, invite = answered(world)
    b.request("BYE", invite)
    assert b.lines() == ["200 BYE"]
    bye = a.new()[-1]
    assert bye.method == "BYE" and bye.call_id == a.call_id
    assert bye.from_.tag == ok.to.tag and bye.to.tag == a.tag
    a.answer(bye, 200)
    (cdr,) = world.cdrs
    assert cdr["hangup_side"] == "callee" and cdr["disposition"] == "ANSWERED"


@pytest.mark.parametrize(("status", "disposition"),
                         [(486, "BUSY"), (603, "BUSY"), (480, "NO ANSWER"), (500, "FAILED")])
def test_callee_failure_is_passed_back(world: World, status: int, disposition: str) -> None:
    a, (b,), (invite,) = ringing(world)
    b.answer(invite, status)
    assert b.lines() == ["ACK"]  # the transaction ACKs the non-2xx
    assert a.lines() == [f"{status} INVITE"]
    (cdr,) = world.cdrs
    assert cdr["disposition"] == disposition and cdr["answer"] is None


def test_unknown_number_is_404_and_unregistered_extension_480(world: World) -> None:
    a = world.phone("1000", A_ADDR, register=False)
    a.invite("5555")
    assert a.lines() == ["404 INVITE"]
    a.invite("1002")
    assert a.lines() == ["480 INVITE"]
    assert world.manager.calls == {}


def test_cancel_before_answer_gives_487_and_cancels_the_fork(world: World) -> None:
    a, (b,), (invite,) = ringing(world)
    b.answer(invite, 180)
    a.new()
    a.cancel()
    assert sorted(a.lines()) == ["200 CANCEL", "487 INVITE"]
    cancel = b.new()[-1]
    assert cancel.method == "CANCEL" and cancel.call_id == invite.call_id
    b.answer(cancel, 200)
    b.answer(invite, 487)
    assert world.manager.calls == {}
    (cdr,) = world.cdrs
    assert cdr["disposition"] == "CANCELLED" and cdr["hangup_side"] == "caller"


def test_a_callee_registered_through_a_path_gets_it_as_route_on_invite_and_cancel(
        world: World) -> None:
    path = ("<sip:edge.example.net;lr;ob>", "<sip:192.0.2.99:5070;lr>")
    a = world.phone("1000", A_ADDR, register=False)
    b = world.phone("1001", B_ADDR)
    world.location.bindings["1001"][0].path = path  # RFC 3327: the route to the phone
    a.invite("1001")
    invite = b.new()[-1]
    assert invite.method == "INVITE" and invite.getall("Route") == list(path)
    b.answer(invite, 180)
    a.cancel()
    cancel = b.new()[-1]
    assert cancel.method == "CANCEL" and cancel.getall("Route") == list(path)  # §9.1
    b.answer(cancel, 200)
    b.answer(invite, 487)
    ack = b.new()[-1]
    assert ack.method == "ACK" and ack.getall("Route") == list(path)  # §17.1.1.3
    assert world.manager.calls == {}


def test_no_answer_timeout_cancels_forks_and_gives_480(world: World) -> None:
    a, (b,), (invite,) = ringing(world)
    b.answer(invite, 180)
    a.new()
    world.clock.advance(29.9)
    assert b.new() == []
    world.clock.advance(0.2)
    assert b.lines() == ["CANCEL"]
    assert a.lines() == ["480 INVITE"]
    (cdr,) = world.cdrs
    assert cdr["disposition"] == "NO ANSWER" and cdr["hangup_cause"] == "no answer"


def test_parallel_fork_first_200_wins_the_other_is_cancelled(world: World) -> None:
    a, (b1, b2), (inv1, inv2) = ringing(world, b_addrs=(B_ADDR, B2_ADDR))
    assert inv1.call_id != inv2.call_id
    b1.answer(inv1, 180)
    b2.answer(inv2, 180)
    b2.answer(inv2, 200, sdp(B2_ADDR[0], 6000))
    assert b2.lines() == ["ACK"]
    assert b1.lines() == ["CANCEL"]
    ok = a.last(200)
    assert ok.status == 200
    # the loser answers 200 anyway (crossed the CANCEL): ACK then BYE
    b1.answer(inv1, 200, sdp(B_ADDR[0], 5000))
    assert b1.lines() == ["ACK", "BYE"]
    call = world.call()
    assert call.winner.id.endswith("b2") and call.b_sdp.media.remote == (B2_ADDR[0], 6000)


def test_early_media_183_reaches_caller_with_pbx_sdp(world: World) -> None:
    a, (b,), (invite,) = ringing(world)
    b.answer(invite, 183, sdp(B_ADDR[0], 5000))
    (progress,) = a.new()
    assert progress.status == 183 and b"c=IN IP4 192.0.2.1" in progress.body
    call = world.call()
    assert call.b_sdp.media.remote == (B_ADDR[0], 5000)
    assert progress.to.tag == call.a.local_tag


def test_missing_ack_retransmits_200_then_ends_the_call() -> None:
    world = World(rtp_timeout=0)
    a, (b,), (invite,) = ringing(world)
    b.answer(invite, 200, sdp(B_ADDR[0], 5000))
    assert a.lines() == ["200 INVITE"]
    world.clock.advance(0.5)
    assert a.lines() == ["200 INVITE"]  # T1
    world.clock.advance(1.0)
    assert a.lines() == ["200 INVITE"]  # 2*T1
    world.clock.advance(30.5)  # 64*T1 = 32 s after the first send
    assert "BYE" in a.lines()
    assert "BYE" in [line_of(m) for m in b.new()]
    (cdr,) = world.cdrs
    assert cdr["hangup_cause"] == "ack timeout" and cdr["disposition"] == "ANSWERED"


def test_hold_reinvite_is_relayed_with_directions_kept(world: World) -> None:
    a, b, ok, invite = answered(world)
    a.request("INVITE", ok, body=sdp(A_ADDR[0], 4000, "sendonly"))
    reinvite = b.new()[-1]
    assert reinvite.method == "INVITE" and reinvite.call_id == invite.call_id
    assert b"a=sendonly" in reinvite.body and b"192.0.2.1" in reinvite.body
    assert b.lines() == []
    b.answer(reinvite, 200, sdp(B_ADDR[0], 5000, "recvonly"))
    assert b.lines() == ["ACK"]
    answer = a.last(200)
    assert answer.cseq.seq == 2 and b"a=recvonly" in answer.body
    assert b"o=pbxd" in answer.body
    assert world.call().on_hold
    a.ack_2xx(answer)
    # resume
    a.request("INVITE", ok, body=sdp(A_ADDR[0], 4000, "sendrecv"))
    resume = b.new()[-1]
    assert b"a=sendrecv" in resume.body
    b.answer(resume, 200, sdp(B_ADDR[0], 5000))
    assert not world.call().on_hold


def test_reinvite_glare_gets_491(world: World) -> None:
    a, b, ok, invite = answered(world)
    b.request("INVITE", invite, body=sdp(B_ADDR[0], 5000, "sendonly"))
    to_a = a.new()[-1]
    assert to_a.method == "INVITE"
    # A sends its own re-INVITE before answering ours: glare on A's leg
    a.request("INVITE", ok, body=sdp(A_ADDR[0], 4000, "sendonly"))
    assert a.lines()[-1] == "491 INVITE"
    # A answers ours with 491 too: B gets 491 back
    a.answer(to_a, 491)
    assert b.lines()[-1] == "491 INVITE"
    assert world.call().state == "ANSWERED"


def test_session_refresh_without_sdp_is_answered_locally(world: World) -> None:
    a, b, ok, invite = answered(world)
    a.request("INVITE", ok)
    refresh = a.last(200)
    assert refresh.cseq.seq == 2 and refresh.body == ok.body
    a.request("UPDATE", ok)
    assert a.lines()[-1] == "200 UPDATE"
    assert b.new() == []


def test_info_is_relayed_and_its_answer_comes_back(world: World) -> None:
    a, b, ok, invite = answered(world)
    a.request("INFO", ok, body=b"Signal=5\r\nDuration=160\r\n")
    info = b.new()[-1]
    assert info.method == "INFO" and info.body.startswith(b"Signal=5")
    b.answer(info, 200)
    assert a.lines()[-1] == "200 INFO"


def test_crossing_byes_end_the_call_once(world: World) -> None:
    a, b, ok, invite = answered(world)
    a.request("BYE", ok)
    bye_to_b = b.new()[-1]
    assert bye_to_b.method == "BYE"
    b.request("BYE", invite)  # B hung up at the same moment
    assert b.lines()[-1] == "200 BYE"
    b.answer(bye_to_b, 200)
    assert len(world.cdrs) == 1 and world.cdrs[0]["hangup_side"] == "caller"
    assert world.manager.calls == {}


def test_bye_timeout_still_terminates_the_leg(world: World) -> None:
    a, b, ok, invite = answered(world)
    b.request("BYE", invite)
    assert a.new()[-1].method == "BYE"  # A never answers it
    world.clock.advance(33)
    assert world.manager.calls == {}
    assert len(world.cdrs) == 1


def test_unknown_dialog_gets_481(world: World) -> None:
    a, b, ok, invite = answered(world)
    ok.to.params["tag"] = "nosuchtag"
    a.request("BYE", ok)
    assert a.lines()[-1] == "481 BYE"


def test_media_timeout_ends_answered_call(world: World) -> None:
    a, b, ok, invite = answered(world)
    world.clock.advance(20)
    call = world.call()
    world.rtp_ports[call.a_sdp.media.port].protocol.datagramReceived(rtp(1), (A_ADDR[0], 4000))
    world.clock.advance(25)
    assert call.state == "ANSWERED"
    world.clock.advance(10)
    assert call.state == "ENDED" and call.hangup_cause == "media timeout"
    assert a.new()[-1].method == "BYE" and b.new()[-1].method == "BYE"


def test_media_timeout_is_not_applied_on_hold(world: World) -> None:
    a, b, ok, invite = answered(world)
    a.request("INVITE", ok, body=sdp(A_ADDR[0], 4000, "inactive"))
    b.answer(b.new()[-1], 200, sdp(B_ADDR[0], 5000, "inactive"))
    a.ack_2xx(a.last(200))
    world.clock.advance(120)
    assert world.call().state == "ANSWERED"


def test_shutdown_ends_every_call_and_writes_cdrs_first(world: World) -> None:
    a, b, ok, invite = answered(world)
    c = world.phone("1002", ("192.0.2.30", 5070), register=False)
    world.known.add("1001")
    c.invite("1001")
    ringing_invite = b.new()[-1]
    b.answer(ringing_invite, 180)
    d = world.manager.shutdown()
    fired = []
    d.addCallback(fired.append)
    assert fired and len(world.cdrs) == 2
    assert a.new()[-1].method == "BYE"
    assert "503 INVITE" in c.lines()
    assert sorted(line_of(m) for m in b.new()) == ["BYE", "CANCEL"]
    assert {r["hangup_cause"] for r in world.cdrs} == {"shutdown"}
    c.invite("1001")
    assert c.lines() == ["503 INVITE"]


def test_ringing_leg_on_closed_connection_ends_call() -> None:
    from test_calls_support import Wire

    world = World()
    tcp = Wire("TCP", peer=A_ADDR)
    a = world.phone("1000", A_ADDR, wire=tcp, register=False)
    b = world.phone("1001", B_ADDR)
    a.invite("1001")
    invite = b.new()[-1]
    b.answer(invite, 200, sdp(B_ADDR[0], 5000))
    a.ack_2xx(a.last(200))
    tcp.connected = False
    world.controller.connectionLost(tcp)
    assert b.new()[-1].method == "BYE"
    (cdr,) = world.cdrs
    assert cdr["hangup_cause"] == "transport closed" and cdr["hangup_side"] == "caller"


def test_active_calls_lists_legs_and_counters(world: World) -> None:
    a, b, ok, invite = answered(world)
    world.clock.advance(3)
    (info,) = world.manager.active_calls()
    assert info["state"] == "ANSWERED" and info["duration"] == 3
    assert [leg["state"] for leg in info["legs"]] == ["CONFIRMED", "CONFIRMED"]
    assert set(info["media"]) == {"a", "b"}
    assert world.manager.hangup(info["id"])
    assert world.manager.active_calls() == []
