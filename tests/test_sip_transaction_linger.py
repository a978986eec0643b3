"""Lingering transactions (waiting out Timer J/K/L/M/D/H/I) keep only what they need.

A transaction that sent or got its final response only absorbs retransmissions and
ACKs until its timer ends (up to 32 s on UDP). What it keeps meanwhile is walked by
every young garbage collection: these tests check that the parsed messages and the
TU's callbacks it no longer needs are gone, and that what it still does (re-sending
the response or the ACK, matching ACKs and retransmissions) is unchanged.
"""

from __future__ import annotations

import enum
import gc
import types
from typing import Any

from pbxd.sip.message import Headers, Request, Response, make_response
from pbxd.sip.transaction import State
from pbxd.sip.transaction.timers import _Queue
from tests.test_sip_transaction import PHONE, T4, Harness, request, response

MESSAGE_TYPES = (Request, Response, Headers)


def kept(txn: Any, h: Harness) -> list[Any]:
    """Tracked objects reachable from ``txn`` that are its own: not the layer's, the
    transport's, the clock's or its timer queues', nor module-level ones."""
    shared = {id(h.layer), id(h.transport), id(h.clock), id(h.layer.timers),
              id(h.layer._timer_queues), id(h.responses)}
    seen: set[int] = set()
    found: list[Any] = []
    todo = [txn]
    while todo:
        for obj in gc.get_referents(todo.pop()):
            if (id(obj) in seen or id(obj) in shared or not gc.is_tracked(obj)
                    or isinstance(obj, (type, types.ModuleType, enum.Enum, _Queue))):
                continue
            seen.add(id(obj))
            found.append(obj)
            if not isinstance(obj, types.FunctionType):  # (not into its module's globals)
                todo.append(obj)
    return found


def holds_messages(txn: Any, h: Harness) -> bool:
    return any(isinstance(obj, MESSAGE_TYPES) for obj in kept(txn, h))


# -- server transactions ------------------------------------------------------


def test_completed_non_invite_server_keeps_only_the_bytes_it_resends() -> None:
    h = Harness()
    txn = h.server(request(method="REGISTER", sent_by="192.0.2.10:5070",
                           via_params=";rport;received=198.51.100.7"))
    ok = make_response(txn.request, 200, to_tag="me")
    txn.respond(ok)
    assert txn.state is State.COMPLETED
    assert txn.request is None and txn.last_response.status == 200
    assert not holds_messages(txn, h)
    # a retransmission gets the same bytes, to the same (Via) address
    assert h.server(request(method="REGISTER", sent_by="192.0.2.10:5070",
                            via_params=";rport;received=198.51.100.7")) is None
    assert h.transport.sent[-1] == h.transport.sent[0] == (ok.serialize(), ("198.51.100.7", 5070))
    h.clock.advance(64 * 0.5)
    assert len(h.layer) == 0


def test_a_provisional_is_kept_whole_until_the_final() -> None:
    h = Harness()
    txn = h.server(request(method="OPTIONS"))
    trying = make_response(txn.request, 100)
    txn.respond(trying)
    assert txn.last_response is trying and txn.request is not None


def test_a_lingering_transaction_shares_its_status_record_and_address() -> None:
    h = Harness()
    first = h.server(request(method="OPTIONS", branch="z9hG4bKa"))
    second = h.server(request(method="OPTIONS", branch="z9hG4bKb"))
    for txn in (first, second):
        txn.respond(make_response(txn.request, 200, to_tag="me"))
    assert first.last_response is second.last_response
    assert first.address is first.source  # no second tuple for the same address


def test_server_transport_error_on_the_final_still_sees_the_request() -> None:
    h = Harness(trying_delay=None)
    seen: list[Any] = []
    txn = h.server(request(method="OPTIONS"))
    txn.on_transport_error = lambda t: seen.append(t.request)
    h.transport.fail = True
    req = txn.request
    txn.respond(make_response(req, 200, to_tag="me"))
    assert seen == [req] and len(h.layer) == 0


def test_rejected_invite_keeps_its_request_and_matches_its_ack_by_branch() -> None:
    h = Harness(trying_delay=None)
    txn = h.server(request())
    busy = make_response(txn.request, 486, to_tag="me")
    txn.respond(busy)
    assert txn.request is not None and txn.last_response.status == 486
    assert not any(isinstance(o, Response) for o in kept(txn, h))
    assert h.server(request()) is None  # retransmitted INVITE: 486 again
    assert h.transport.sent[-1][0] == busy.serialize()
    h.clock.advance(T4 / 10)
    assert h.layer.match_ack(request(method="ACK", to_tag="me"))
    assert txn.state is State.CONFIRMED


def test_accepted_invite_lets_the_tu_resend_its_2xx() -> None:
    h = Harness(trying_delay=None)
    txn = h.server(request())
    ok = make_response(txn.request, 200, to_tag="me")
    txn.respond(ok)
    assert txn.state is State.ACCEPTED and txn.last_response.status == 200
    txn.respond(make_response(txn.request, 200, to_tag="me"))  # the TU's retransmission
    assert h.transport.lines() == ["SIP/2.0 200 OK"] * 2
    assert not h.layer.match_ack(request(method="ACK", to_tag="me"))  # the TU's ACK


def test_rfc2543_transactions_keep_their_messages_for_to_tag_matching() -> None:
    h = Harness(trying_delay=None)
    txn = h.server(request(branch=None))
    txn.respond(make_response(txn.request, 486, to_tag="me"))
    assert isinstance(txn.last_response, Response) and txn.request is not None
    assert not h.layer.match_ack(request(method="ACK", branch=None, to_tag="other"))
    assert h.layer.match_ack(request(method="ACK", branch=None, to_tag="me"))
    options = h.server(request(method="OPTIONS", branch=None))
    options.respond(make_response(options.request, 200, to_tag="me"))
    assert options.request is not None
    assert h.server(request(method="OPTIONS", branch=None)) is None
    assert h.transport.lines()[-1] == "SIP/2.0 200 OK"


# -- client transactions ------------------------------------------------------


def test_completed_non_invite_client_drops_request_and_callbacks() -> None:
    h = Harness()
    txn = h.client(request(method="BYE"))
    h.layer.match_response(response(200, method="BYE", to_tag="t"), h.transport, PHONE)
    assert txn.state is State.COMPLETED and len(h.responses) == 1
    assert txn.request is None and txn.on_response is None and txn.on_timeout is None
    assert not holds_messages(txn, h)
    h.layer.match_response(response(200, method="BYE", to_tag="t"), h.transport, PHONE)
    assert len(h.responses) == 1 and h.timeouts == 0  # retransmission absorbed
    h.clock.advance(T4)
    assert len(h.layer) == 0 and h.timeouts == 0


def test_completed_invite_client_re_acks_from_bytes() -> None:
    h = Harness()
    txn = h.client(request())
    h.layer.match_response(response(486, to_tag="t"), h.transport, PHONE)
    ack = h.transport.sent[-1]
    assert ack[0].startswith(b"ACK ") and txn.state is State.COMPLETED
    assert txn.request is None and txn.on_response is None
    assert not holds_messages(txn, h)
    h.layer.match_response(response(486, to_tag="t"), h.transport, PHONE)
    assert h.transport.sent[-1] == ack and len(h.responses) == 1


def test_accepted_invite_client_still_reports_further_2xx() -> None:
    h = Harness()
    txn = h.client(request())
    h.layer.match_response(response(200, to_tag="t"), h.transport, PHONE)
    assert txn.state is State.ACCEPTED and txn.request is None and txn.on_timeout is None
    assert not holds_messages(txn, h)
    h.layer.match_response(response(200, to_tag="t2"), h.transport, PHONE)  # a fork's 2xx
    assert [r.status for r in h.responses] == [200, 200]
    h.clock.advance(64 * 0.5)
    assert len(h.layer) == 0 and h.timeouts == 0


def test_retransmission_timers_need_no_closure_per_transaction() -> None:
    h = Harness(trying_delay=None)
    txn = h.layer.client_transaction(request(method="OPTIONS"), h.transport, PHONE,
                                     on_response=None, on_timeout=None)
    server = h.server(request(method="INFO", branch="z9hG4bKs"))
    server.respond(make_response(server.request, 200, to_tag="me"))
    invite = h.server(request(branch="z9hG4bKi"))
    invite.respond(make_response(invite.request, 486, to_tag="me"))
    for t in (txn, server, invite):
        assert t.timer_names()  # (E+F, J, G+H)
        closures = [o for o in kept(t, h) if isinstance(o, types.CellType) or
                    isinstance(o, types.FunctionType) and o.__closure__ is not None]
        assert closures == []


# -- the layer's index: one entry per branch, a dict only when a branch is shared ----


def _lifecycle_of_invite_and_cancel(cancel_first: bool) -> None:
    h = Harness(trying_delay=None)
    invite = h.server(request(method="INVITE"))
    cancel = h.server(request(method="CANCEL"))
    assert invite is not None and cancel is not None and len(h.layer) == 2
    assert h.layer.find_server_transaction_for_cancel(request(method="CANCEL")) is invite
    cancel.respond(make_response(cancel.request, 200, to_tag="me"))
    if not cancel_first:
        invite.respond(make_response(invite.request, 487, to_tag="me"))
        assert h.layer.match_ack(request(method="ACK", to_tag="me"))
        h.clock.advance(T4)  # Timer I: the INVITE leaves first
        assert invite.state is State.TERMINATED and len(h.layer) == 1
        assert h.server(request(method="CANCEL")) is None  # still absorbed: 200 again
        assert h.transport.lines()[-1] == "SIP/2.0 200 OK"
        assert h.layer.find_server_transaction_for_cancel(request(method="CANCEL")) is None
        assert h.server(request(method="INVITE")) is not None  # a new transaction now
    else:
        h.clock.advance(64 * 0.5)  # Timer J: the CANCEL leaves first
        assert cancel.state is State.TERMINATED and invite.state is State.PROCEEDING
        assert h.server(request(method="INVITE")) is None  # retransmission, absorbed
        assert h.layer.find_server_transaction_for_cancel(request(method="CANCEL")) is invite
        new_cancel = h.server(request(method="CANCEL"))
        assert new_cancel is not None and new_cancel is not cancel


def test_invite_and_cancel_share_a_branch_and_leave_in_either_order() -> None:
    _lifecycle_of_invite_and_cancel(cancel_first=False)
    _lifecycle_of_invite_and_cancel(cancel_first=True)


def test_every_index_entry_goes_when_its_transactions_end() -> None:
    h = Harness(trying_delay=None)
    for i in range(10):
        for method in ("INVITE", "CANCEL", "OPTIONS"):
            txn = h.server(request(method=method, branch=f"z9hG4bK{i % 4}-{method == 'OPTIONS'}"))
            if txn is not None:
                txn.respond(make_response(txn.request, 486 if method == "INVITE" else 200,
                                          to_tag="me"))
        h.clock.advance(1)
    h.clock.advance(200)
    assert len(h.layer) == 0 and h.layer._by_branch == {} and h.layer._legacy == {}
