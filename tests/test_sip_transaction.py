"""The SIP transaction layer (RFC 3261 §17, RFC 6026) on a task.Clock and a recording transport."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pbxd.interfaces import ISIPTransport
from pbxd.sip.message import make_response
from pbxd.sip.parser import parse_message
from pbxd.sip.transaction import State, TransactionLayer, make_cancel, response_address

PHONE = ("192.0.2.10", 5062)
T1, T2, T4 = 0.5, 4.0, 5.0

# ---------------------------------------------------------------------------
# helpers: one function builds messages, from raw SIP text
# ---------------------------------------------------------------------------


def sip(
    start: str,
    *,
    method: str = "INVITE",
    branch: str | None = "z9hG4bKtest1",
    sent_by: str = "192.0.2.10:5062",
    transport: str = "UDP",
    via_params: str = "",
    to_tag: str | None = None,
    seq: int = 1,
    call_id: str = "call-1@192.0.2.10",
) -> object:
    """Parse one message whose start line is ``start`` and whose headers follow the arguments."""
    branch_param = f";branch={branch}" if branch else ""
    to = "<sip:1000@pbx.example>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{start}\r\n"
        f"Via: SIP/2.0/{transport} {sent_by}{branch_param}{via_params}\r\n"
        "Max-Forwards: 70\r\n"
        "From: \"Alice\" <sip:2000@pbx.example>;tag=from-1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {seq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    return parse_message(text.encode())


def request(method: str = "INVITE", **kw: object) -> object:
    return sip(f"{method} sip:1000@pbx.example SIP/2.0", method=method, **kw)


def response(status: int, method: str = "INVITE", **kw: object) -> object:
    return sip(f"SIP/2.0 {status} Whatever", method=method, **kw)


@implementer(ISIPTransport)
class RecordingTransport:
    """An ISIPTransport that records what was sent (or refuses when ``fail`` is set)."""

    def __init__(self, reliable: bool = False) -> None:
        self.name = "TCP" if reliable else "UDP"
        self.reliable = reliable
        self.secure = False
        self.connected = True
        self.local_address = ("192.0.2.1", 5060)
        self.peer = PHONE if reliable else None
        self.fail = False
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def send(self, data: bytes, address: tuple[str, int]) -> bool:
        if self.fail:
            return False
        self.sent.append((data, address))
        return True

    def lines(self) -> list[str]:
        """Start lines of what was sent, in order."""
        return [data.split(b"\r\n", 1)[0].decode() for data, _ in self.sent]

    def last(self) -> object:
        return parse_message(self.sent[-1][0])


class Harness:
    def __init__(self, reliable: bool = False, **layer_kw: object) -> None:
        self.clock = Clock()
        self.layer = TransactionLayer(self.clock, t1=T1, t2=T2, t4=T4, **layer_kw)
        self.transport = RecordingTransport(reliable)
        self.responses: list[object] = []
        self.timeouts = 0

    def client(self, req: object, address: tuple[str, int] = PHONE) -> object:
        def timed_out() -> None:
            self.timeouts += 1

        return self.layer.client_transaction(req, self.transport, address,
                                             on_response=self.responses.append,
                                             on_timeout=timed_out)

    def server(self, req: object) -> object:
        return self.layer.server_transaction(req, self.transport, PHONE)

    def send_times(self, until: float, step: float = 0.25) -> list[float]:
        """Advance the clock to ``until``; the times at which something was sent
        (earlier sends count as 0.0)."""
        times = [0.0] * len(self.transport.sent)
        while self.clock.seconds() < until:
            before = len(self.transport.sent)
            self.clock.advance(step)
            times += [self.clock.seconds()] * (len(self.transport.sent) - before)
        return times


def test_recording_transport_provides_the_interface() -> None:
    assert verifyObject(ISIPTransport, RecordingTransport())


# ---------------------------------------------------------------------------
# INVITE client transaction
# ---------------------------------------------------------------------------


def test_invite_client_retransmits_on_timer_a_doubling_until_timer_b() -> None:
    h = Harness()
    txn = h.client(request())
    times = h.send_times(31.75)
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert h.timeouts == 0 and len(h.layer) == 1
    h.clock.advance(0.25)  # 64*T1 = 32 s
    assert h.timeouts == 1 and txn.failure == "timeout"
    assert txn.state is State.TERMINATED and len(h.layer) == 0
    assert h.clock.getDelayedCalls() == []


def test_invite_client_over_tcp_sends_once_and_times_out_on_timer_b() -> None:
    h = Harness(reliable=True)
    h.client(request(transport="TCP"))
    assert h.send_times(31.75) == [0.0]
    h.clock.advance(0.25)
    assert h.timeouts == 1 and len(h.layer) == 0


def test_invite_client_provisional_stops_retransmissions_and_is_passed_up() -> None:
    h = Harness()
    txn = h.client(request())
    h.clock.advance(0.25)
    assert h.layer.match_response(response(180, to_tag="b"), h.transport, PHONE)
    assert txn.state is State.PROCEEDING
    assert [r.status for r in h.responses] == [180]
    assert h.send_times(100) == [0.0]
    assert h.timeouts == 0  # RFC 3261: Timer B only guards Calling


def test_invite_client_acks_non_2xx_final_with_same_branch_and_response_to_tag() -> None:
    h = Harness()
    invite = request()
    txn = h.client(invite)
    h.layer.match_response(response(486, to_tag="busy-1"), h.transport, PHONE)
    assert txn.state is State.COMPLETED
    assert [r.status for r in h.responses] == [486]
    ack = h.transport.last()
    assert ack.method == "ACK" and str(ack.uri) == str(invite.uri)
    assert len(ack.vias) == 1 and ack.top_via.branch == invite.top_via.branch
    assert ack.to.tag == "busy-1" and ack.from_.tag == "from-1"
    assert (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    assert ack.call_id == invite.call_id
    assert h.transport.sent[-1][1] == PHONE


def test_invite_client_re_acks_retransmitted_final_without_passing_it_up() -> None:
    h = Harness()
    h.client(request())
    h.layer.match_response(response(486, to_tag="busy-1"), h.transport, PHONE)
    assert h.layer.match_response(response(486, to_tag="busy-1"), h.transport, PHONE)
    assert h.transport.lines()[1:] == ["ACK sip:1000@pbx.example SIP/2.0"] * 2
    assert [r.status for r in h.responses] == [486]


def test_invite_client_timer_d_is_32s_on_udp() -> None:
    h = Harness()
    h.client(request())
    h.layer.match_response(response(503, to_tag="x"), h.transport, PHONE)
    h.clock.advance(31.9)
    assert len(h.layer) == 1
    h.clock.advance(0.1)
    assert len(h.layer) == 0 and h.clock.getDelayedCalls() == []


def test_invite_client_timer_d_is_zero_on_tcp() -> None:
    h = Harness(reliable=True)
    h.client(request(transport="TCP"))
    h.layer.match_response(response(404, to_tag="x"), h.transport, PHONE)
    assert h.transport.lines()[-1].startswith("ACK ")
    assert len(h.layer) == 0 and [r.status for r in h.responses] == [404]


def test_invite_client_2xx_goes_to_accepted_and_passes_every_2xx_up_until_timer_m() -> None:
    h = Harness()
    txn = h.client(request())
    h.clock.advance(0.125)
    h.layer.match_response(response(200, to_tag="fork-1"), h.transport, PHONE)
    assert txn.state is State.ACCEPTED
    h.layer.match_response(response(200, to_tag="fork-2"), h.transport, PHONE)
    assert [r.to.tag for r in h.responses] == ["fork-1", "fork-2"]
    assert h.transport.lines() == ["INVITE sip:1000@pbx.example SIP/2.0"]  # TU ACKs 2xx
    h.clock.advance(64 * T1 - 0.25)
    assert len(h.layer) == 1
    h.clock.advance(0.25)
    assert len(h.layer) == 0
    assert not h.layer.match_response(response(200, to_tag="fork-1"), h.transport, PHONE)


def test_client_first_send_failure_reports_after_the_call_returns() -> None:
    h = Harness()
    h.transport.fail = True
    txn = h.client(request())
    assert h.timeouts == 0 and len(h.layer) == 0
    h.clock.advance(0)
    assert h.timeouts == 1 and txn.failure == "transport"


def test_client_retransmission_send_failure_is_a_transport_timeout() -> None:
    h = Harness()
    txn = h.client(request(method="OPTIONS"))
    h.transport.fail = True
    h.clock.advance(T1)
    assert h.timeouts == 1 and txn.failure == "transport" and len(h.layer) == 0


def test_cancel_limits_a_proceeding_invite_to_64_t1() -> None:
    h = Harness()
    invite = request()
    txn = h.client(invite)
    h.layer.match_response(response(180, to_tag="b"), h.transport, PHONE)
    h.clock.advance(60)
    h.client(make_cancel(invite))
    assert h.transport.lines()[-1] == "CANCEL sip:1000@pbx.example SIP/2.0"
    h.layer.match_response(response(200, method="CANCEL", to_tag="b"), h.transport, PHONE)
    h.clock.advance(64 * T1)
    assert txn.failure == "timeout" and h.timeouts == 1 and len(h.layer) == 0


def test_client_transaction_refuses_ack_and_branchless_requests() -> None:
    h = Harness()
    with pytest.raises(ValueError):
        h.client(request(method="ACK"))
    with pytest.raises(ValueError):
        h.client(request(branch=None))
    assert h.transport.sent == []


def test_client_transport_lost_fails_pending_transactions() -> None:
    h = Harness(reliable=True)
    txn = h.client(request(transport="TCP"))
    h.layer.transport_lost(h.transport)
    assert txn.failure == "transport" and h.timeouts == 1 and len(h.layer) == 0


# ---------------------------------------------------------------------------
# non-INVITE client transaction
# ---------------------------------------------------------------------------


def test_non_invite_client_timer_e_doubles_capped_at_t2_until_timer_f() -> None:
    h = Harness()
    txn = h.client(request(method="OPTIONS"))
    times = h.send_times(31.75)
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    h.clock.advance(0.25)
    assert h.timeouts == 1 and txn.failure == "timeout" and len(h.layer) == 0


def test_non_invite_client_in_proceeding_retransmits_every_t2() -> None:
    h = Harness()
    txn = h.client(request(method="BYE"))
    h.clock.advance(0.25)
    h.layer.match_response(response(100, method="BYE"), h.transport, PHONE)
    assert txn.state is State.PROCEEDING
    assert h.send_times(13) == [0.0, 0.5, 4.5, 8.5, 12.5]


def test_non_invite_client_final_passes_up_once_and_timer_k_is_t4_on_udp() -> None:
    h = Harness()
    txn = h.client(request(method="BYE"))
    h.layer.match_response(response(200, method="BYE", to_tag="t"), h.transport, PHONE)
    assert h.layer.match_response(response(200, method="BYE", to_tag="t"), h.transport, PHONE)
    assert [r.status for r in h.responses] == [200]
    assert txn.state is State.COMPLETED and h.send_times(10) == [0.0]
    assert len(h.layer) == 0  # K = T4 = 5 s


def test_non_invite_client_timer_k_is_zero_on_tcp() -> None:
    h = Harness(reliable=True)
    h.client(request(method="BYE", transport="TCP"))
    h.layer.match_response(response(481, method="BYE"), h.transport, PHONE)
    assert len(h.layer) == 0 and [r.status for r in h.responses] == [481]


def test_response_matches_client_by_branch_and_cseq_method_only() -> None:
    h = Harness()
    h.client(request(method="BYE"))
    assert not h.layer.match_response(response(200, method="INVITE"), h.transport, PHONE)
    assert not h.layer.match_response(response(200, method="BYE", branch="z9hG4bKother"),
                                      h.transport, PHONE)
    assert h.responses == []


# ---------------------------------------------------------------------------
# INVITE server transaction
# ---------------------------------------------------------------------------


def test_invite_server_sends_100_trying_after_200ms_of_tu_silence() -> None:
    h = Harness()
    txn = h.server(request())
    h.clock.advance(0.19)
    assert h.transport.sent == []
    h.clock.advance(0.01)
    assert h.transport.lines() == ["SIP/2.0 100 Trying"]
    assert h.transport.sent[0][1] == PHONE and txn.last_response.status == 100


def test_invite_server_sends_no_100_when_tu_answered_first() -> None:
    h = Harness()
    txn = h.server(request())
    txn.respond(make_response(txn.request, 180, to_tag="me"))
    h.clock.advance(1)
    assert h.transport.lines() == ["SIP/2.0 180 Ringing"]


def test_invite_server_automatic_100_can_be_disabled() -> None:
    h = Harness(trying_delay=None)
    h.server(request())
    h.clock.advance(1)
    assert h.transport.sent == []


def test_invite_server_absorbs_retransmission_and_resends_last_provisional() -> None:
    h = Harness(trying_delay=None)
    txn = h.server(request())
    assert h.server(request()) is None  # nothing sent yet: nothing to resend
    assert h.transport.sent == []
    txn.respond(make_response(txn.request, 100))
    txn.respond(make_response(txn.request, 180, to_tag="me"))
    assert h.server(request()) is None
    assert h.transport.lines() == ["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing",
                                   "SIP/2.0 180 Ringing"]
    assert len(h.layer) == 1


def test_invite_server_2xx_accepted_absorbs_invites_passes_acks_until_timer_l() -> None:
    h = Harness(trying_delay=None)
    ended: list[object] = []
    txn = h.server(request())
    txn.on_terminated = ended.append
    ok = make_response(txn.request, 200, to_tag="me")
    txn.respond(ok)
    assert txn.state is State.ACCEPTED
    assert h.server(request()) is None  # absorbed, the 2xx is not re-sent by the transaction
    txn.respond(ok)  # the TU's own 2xx retransmission goes out
    assert h.transport.lines() == ["SIP/2.0 200 OK"] * 2
    assert not h.layer.match_ack(request(method="ACK", branch="z9hG4bKack2xx", to_tag="me"))
    h.clock.advance(64 * T1 - 0.01)
    assert len(h.layer) == 1
    h.clock.advance(0.01)
    assert len(h.layer) == 0 and ended == [txn]


def test_invite_server_retransmits_non_2xx_on_timer_g_until_timer_h() -> None:
    h = Harness(trying_delay=None)
    ack_timeouts: list[object] = []
    txn = h.server(request())
    txn.on_ack_timeout = ack_timeouts.append
    txn.respond(make_response(txn.request, 486, to_tag="me"))
    assert txn.state is State.COMPLETED
    times = h.send_times(31.75)
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert set(h.transport.lines()) == {"SIP/2.0 486 Busy Here"}
    h.clock.advance(0.25)  # Timer H = 64*T1
    assert ack_timeouts == [txn] and len(h.layer) == 0
    assert h.clock.getDelayedCalls() == []


def test_invite_server_ack_confirms_stops_timer_g_and_timer_i_ends_it() -> None:
    h = Harness(trying_delay=None)
    ack_timeouts: list[object] = []
    txn = h.server(request())
    txn.on_ack_timeout = ack_timeouts.append
    txn.respond(make_response(txn.request, 486, to_tag="me"))
    h.clock.advance(0.5)  # one G retransmission
    assert h.layer.match_ack(request(method="ACK", to_tag="me"))
    assert txn.state is State.CONFIRMED
    assert h.server(request(method="ACK", to_tag="me")) is None  # retransmitted ACK absorbed
    assert txn.state is State.CONFIRMED
    h.clock.advance(T4 - 0.25)
    assert len(h.transport.sent) == 2 and len(h.layer) == 1  # G stopped, I running
    h.clock.advance(0.25)
    assert len(h.layer) == 0 and ack_timeouts == []


def test_invite_server_resends_final_to_invite_retransmission_in_completed() -> None:
    h = Harness(trying_delay=None)
    txn = h.server(request())
    txn.respond(make_response(txn.request, 603, to_tag="me"))
    assert h.server(request()) is None
    assert h.transport.lines() == ["SIP/2.0 603 Decline"] * 2


def test_invite_server_over_tcp_no_timer_g_timer_h_still_runs_and_timer_i_is_zero() -> None:
    h = Harness(reliable=True, trying_delay=None)
    txn = h.server(request(transport="TCP"))
    txn.respond(make_response(txn.request, 486, to_tag="me"))
    assert h.send_times(10) == [0.0]
    assert txn.timer_names() == ["H"]
    assert h.layer.match_ack(request(method="ACK", transport="TCP", to_tag="me"))
    assert len(h.layer) == 0


def test_invite_server_drops_a_second_final() -> None:
    h = Harness(trying_delay=None)
    txn = h.server(request())
    txn.respond(make_response(txn.request, 486, to_tag="me"))
    txn.respond(make_response(txn.request, 200, to_tag="me"))
    assert h.transport.lines() == ["SIP/2.0 486 Busy Here"]


def test_server_send_failure_terminates_and_reports_transport_error() -> None:
    h = Harness(trying_delay=None)
    errors: list[object] = []
    txn = h.server(request(method="OPTIONS"))
    txn.on_transport_error = errors.append
    h.transport.fail = True
    txn.respond(make_response(txn.request, 200, to_tag="me"))
    assert errors == [txn] and len(h.layer) == 0


def test_server_over_closed_connection_falls_back_to_via_address() -> None:
    h = Harness(reliable=True, trying_delay=None)
    txn = h.server(request(transport="TCP", sent_by="192.0.2.10:5070",
                           via_params=";received=198.51.100.7"))
    h.transport.connected = False
    txn.respond(make_response(txn.request, 200, to_tag="me"))
    assert h.transport.sent[-1][1] == ("198.51.100.7", 5070)


# ---------------------------------------------------------------------------
# non-INVITE server transaction
# ---------------------------------------------------------------------------


def test_non_invite_server_trying_absorbs_silently_then_resends_provisional() -> None:
    h = Harness()
    txn = h.server(request(method="BYE"))
    h.clock.advance(1)
    assert h.server(request(method="BYE")) is None
    assert h.transport.sent == []  # no automatic 100 for non-INVITE, nothing to resend
    txn.respond(make_response(txn.request, 100))
    assert txn.state is State.PROCEEDING
    assert h.server(request(method="BYE")) is None
    assert h.transport.lines() == ["SIP/2.0 100 Trying"] * 2


def test_non_invite_server_completed_resends_final_until_timer_j() -> None:
    h = Harness()
    txn = h.server(request(method="BYE"))
    txn.respond(make_response(txn.request, 200))
    assert txn.state is State.COMPLETED
    h.clock.advance(10)
    assert h.server(request(method="BYE")) is None
    assert h.transport.lines() == ["SIP/2.0 200 OK"] * 2  # no timer-driven retransmission
    h.clock.advance(64 * T1 - 10.01)
    assert len(h.layer) == 1
    h.clock.advance(0.01)
    assert len(h.layer) == 0
    assert h.server(request(method="BYE")) is not None  # a late copy is a new transaction


def test_non_invite_server_timer_j_is_zero_on_tcp() -> None:
    h = Harness(reliable=True)
    ended: list[object] = []
    txn = h.server(request(method="REGISTER", transport="TCP"))
    txn.on_terminated = ended.append
    txn.respond(make_response(txn.request, 200))
    assert ended == [txn] and len(h.layer) == 0


# ---------------------------------------------------------------------------
# matching (§17.2.3, §9.2, RFC 2543 fallback)
# ---------------------------------------------------------------------------


def test_server_matching_uses_branch_sent_by_and_method() -> None:
    h = Harness(trying_delay=None)
    invite = h.server(request())
    other_host = h.server(request(sent_by="192.0.2.99:5062"))
    cancel = h.server(request(method="CANCEL"))
    assert invite is not None and other_host is not None and cancel is not None
    assert len({invite, other_host, cancel}) == 3 and len(h.layer) == 3


def test_cancel_finds_the_invite_transaction_it_cancels() -> None:
    h = Harness(trying_delay=None)
    invite = h.server(request())
    cancel_req = request(method="CANCEL")
    assert h.layer.find_server_transaction_for_cancel(cancel_req) is invite
    assert h.layer.find_server_transaction_for_cancel(
        request(method="CANCEL", branch="z9hG4bKnothing")) is None
    assert h.layer.find_server_transaction_for_cancel(
        request(method="CANCEL", sent_by="192.0.2.99")) is None


def test_cancel_finds_a_non_invite_transaction_too() -> None:
    h = Harness()
    info = h.server(request(method="INFO"))
    assert h.layer.find_server_transaction_for_cancel(request(method="CANCEL")) is info


def test_rfc2543_branchless_invite_retransmission_ack_and_cancel_are_matched() -> None:
    h = Harness(trying_delay=None)
    txn = h.server(request(branch=None))
    assert txn is not None
    assert h.server(request(branch=None)) is None
    txn.respond(make_response(txn.request, 486, to_tag="me"))
    assert h.layer.find_server_transaction_for_cancel(request(method="CANCEL", branch=None)) is txn
    assert not h.layer.match_ack(request(method="ACK", branch=None, to_tag="other"))
    assert h.layer.match_ack(request(method="ACK", branch=None, to_tag="me"))
    assert txn.state is State.CONFIRMED


def test_rfc2543_requests_differing_in_cseq_or_call_id_are_new_transactions() -> None:
    h = Harness()
    first = h.server(request(method="OPTIONS", branch=None))
    assert h.server(request(method="OPTIONS", branch=None, seq=2)) is not None
    assert h.server(request(method="OPTIONS", branch=None, call_id="other")) is not None
    assert h.server(request(method="OPTIONS", branch=None)) is None
    assert first is not None and len(h.layer) == 3


def test_unmatched_ack_is_not_absorbed() -> None:
    h = Harness()
    assert not h.layer.match_ack(request(method="ACK", to_tag="me"))
    assert h.server(request(method="ACK", to_tag="me")) is None
    assert len(h.layer) == 0


# ---------------------------------------------------------------------------
# response address (RFC 3261 §18.2.2, RFC 3581)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("transport", "via", "reliable", "expected"), [
    ("UDP", "192.0.2.10:5062", False, ("192.0.2.10", 5062)),
    ("UDP", "192.0.2.10", False, ("192.0.2.10", 5060)),
    ("UDP", "192.0.2.10:5062;received=198.51.100.7", False, ("198.51.100.7", 5062)),
    ("UDP", "10.0.0.2:5062;rport=40000;received=198.51.100.7", False, ("198.51.100.7", 40000)),
    ("UDP", "10.0.0.2:5062;rport=40000", False, ("203.0.113.5", 40000)),
    ("UDP", "10.0.0.2:5062;rport", False, ("10.0.0.2", 5062)),
    ("UDP", "10.0.0.2:5062;maddr=224.0.1.75", False, ("10.0.0.2", 5062)),
    ("TCP", "10.0.0.2:5070;received=198.51.100.7;rport=4000", True, ("198.51.100.7", 5070)),
    ("TLS", "phone.example", True, ("phone.example", 5061)),
])
def test_response_address(transport: str, via: str, reliable: bool,
                          expected: tuple[str, int]) -> None:
    parsed = request(transport=transport, sent_by=via.split(";", 1)[0], branch="z9hG4bKx",
                     via_params=(";" + via.split(";", 1)[1]) if ";" in via else "")
    assert response_address(parsed.top_via, ("203.0.113.5", 1234), reliable) == expected


# ---------------------------------------------------------------------------
# no leaks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("reliable", [False, True])
def test_thousand_transactions_all_leave_the_layer_once_timers_ran(reliable: bool) -> None:
    h = Harness(reliable=reliable)
    via_transport = "TCP" if reliable else "UDP"
    for i in range(1000):
        kind, variant = i % 4, (i // 4) % 3
        branch = f"z9hG4bKleak{i}"
        if kind == 0:  # INVITE server: 100 automatically, then a final
            txn = h.server(request(branch=branch, transport=via_transport))
            h.clock.advance(0.001)
            txn.respond(make_response(txn.request, (200, 486, 404)[variant], to_tag="me"))
        elif kind == 1:  # non-INVITE server
            txn = h.server(request(method="OPTIONS", branch=branch, transport=via_transport))
            txn.respond(make_response(txn.request, 200))
        elif kind == 2:  # INVITE client: unanswered, rejected, or ringing then cancelled
            invite = request(branch=branch, transport=via_transport)
            h.client(invite)
            if variant == 1:
                h.layer.match_response(response(486, branch=branch, to_tag="t"),
                                       h.transport, PHONE)
            elif variant == 2:
                h.layer.match_response(response(180, branch=branch, to_tag="t"),
                                       h.transport, PHONE)
                h.client(make_cancel(invite))
        else:  # non-INVITE client left to time out
            h.client(request(method="OPTIONS", branch=branch, transport=via_transport))
    assert len(h.layer) > 500  # most are alive before the clock runs
    h.clock.pump([1.0] * 80)
    assert len(h.layer) == 0
    assert h.clock.getDelayedCalls() == []


# ---------------------------------------------------------------------------
# properties: whatever the peer sends, the TU sees a sane sequence and nothing leaks
# ---------------------------------------------------------------------------

_STATUSES = st.sampled_from([100, 180, 183, 200, 202, 404, 486, 503])


@settings(max_examples=60, deadline=None)
@given(reliable=st.booleans(), method=st.sampled_from(["INVITE", "OPTIONS"]),
       statuses=st.lists(_STATUSES, max_size=8), gaps=st.lists(st.sampled_from([0.0, 0.5, 3.0]),
                                                               min_size=8, max_size=8))
def test_client_passes_at_most_one_non_2xx_final_and_always_ends(
        reliable: bool, method: str, statuses: list[int], gaps: list[float]) -> None:
    h = Harness(reliable=reliable)
    via_transport = "TCP" if reliable else "UDP"
    txn = h.client(request(method=method, transport=via_transport))
    for status, gap in zip(statuses, gaps, strict=False):
        h.clock.advance(gap)
        h.layer.match_response(response(status, method=method, to_tag="t"), h.transport, PHONE)
    finals = [r.status for r in h.responses if r.status >= 200]
    non_2xx = [s for s in finals if s >= 300]
    assert len(non_2xx) <= 1 and (not non_2xx or finals == non_2xx)
    if method != "INVITE":
        assert len(finals) <= 1  # retransmitted finals of non-INVITE are absorbed
    if txn.state is State.PROCEEDING and method == "INVITE":
        # the TU's way out of a ringing INVITE (the CANCEL's own timeout is not counted)
        h.layer.client_transaction(make_cancel(txn.request), h.transport, PHONE,
                                   on_response=None, on_timeout=None)
    h.clock.advance(200)
    assert len(h.layer) == 0 and h.clock.getDelayedCalls() == []
    assert (h.timeouts == 1) == (txn.failure is not None)


@settings(max_examples=60, deadline=None)
@given(reliable=st.booleans(), events=st.lists(
    st.sampled_from(["invite", "ack", "wait", 100, 180, 200, 486]), max_size=10))
def test_invite_server_never_mixes_final_classes_and_always_ends(
        reliable: bool, events: list[object]) -> None:
    h = Harness(reliable=reliable)
    via_transport = "TCP" if reliable else "UDP"
    txn = h.server(request(transport=via_transport))
    for event in events:
        if event == "invite":
            if txn.state is State.TERMINATED:
                break  # (TCP: Timer I is zero) a later INVITE starts a new transaction, rightly
            assert h.server(request(transport=via_transport)) is None
        elif event == "ack":
            h.layer.match_ack(request(method="ACK", transport=via_transport, to_tag="me"))
        elif event == "wait":
            h.clock.advance(0.5)
        else:
            txn.respond(make_response(txn.request, event, to_tag="me"))
    txn.respond(make_response(txn.request, 486, to_tag="me"))  # a no-op if a final was sent
    sent = [int(line.split()[1]) for line in h.transport.lines()]
    finals = {status // 100 for status in sent if status >= 200}
    assert len(finals) == 1
    assert all(status < 200 for status in sent[:sent.index(next(s for s in sent if s >= 200))])
    h.clock.advance(200)
    assert len(h.layer) == 0 and h.clock.getDelayedCalls() == []
