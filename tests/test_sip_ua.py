"""pbxd.sip.ua: Via/Contact stamping, target resolution, ACK, 2xx retransmission until ACK."""

from __future__ import annotations

from test_calls_support import Wire
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from pbxd.sip.message import Request, make_response
from pbxd.sip.parser import parse_message
from pbxd.sip.transaction import TransactionLayer, make_cancel
from pbxd.sip.ua import UserAgent

INVITE = (
    "INVITE sip:1001@pbx.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKabc;rport\r\n"
    "From: <sip:1000@pbx.test>;tag=a\r\nTo: <sip:1001@pbx.test>\r\n"
    "Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
PHONE = ("192.0.2.10", 5062)


def make_ua(external: str | None = None, connector=None):
    clock = Clock()
    layer = TransactionLayer(clock, trying_delay=None)
    return clock, layer, UserAgent(layer, connector, clock, external_address=external,
                                   user_agent="pbxd-t")


def bye(uri: str = "sip:1000@192.0.2.10:5062") -> Request:
    req = Request("BYE", uri)
    for name, value in (("From", "<sip:1001@pbx.test>;tag=b"), ("To", "<sip:1000@pbx.test>;tag=a"),
                        ("Call-ID", "c1"), ("CSeq", "2 BYE"), ("Max-Forwards", "70")):
        req.add(name, value)
    return req


def test_send_request_stamps_our_via_with_branch_and_rport() -> None:
    clock, layer, ua = make_ua()
    wire = Wire("UDP")
    responses = []
    ua.send_request(bye(), wire, PHONE, on_response=responses.append, on_timeout=None)
    sent = parse_message(wire.sent[0][0])
    via = sent.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.1", 5060)
    assert via.branch.startswith("z9hG4bK") and "rport" in via.params
    assert sent.get("User-Agent") == "pbxd-t"
    assert wire.sent[0][1] == PHONE
    # the response reaches our callback through the transaction layer
    resp = make_response(sent, 200)
    assert layer.match_response(resp, wire, PHONE)
    assert [r.status for r in responses] == [200]


def test_external_address_replaces_bound_address_in_via_and_contact() -> None:
    clock, layer, ua = make_ua(external="203.0.113.5")
    wire = Wire("TLS", peer=PHONE)
    req = bye()
    ua.add_via(req, wire, PHONE)
    assert req.top_via.host == "203.0.113.5" and req.top_via.transport == "TLS"
    assert ua.contact(wire, PHONE) == "<sip:pbx@203.0.113.5:5060;transport=tls>"


def test_wildcard_bind_uses_the_route_source_address() -> None:
    clock, layer, ua = make_ua()
    wire = Wire("UDP")
    wire.local_address = ("0.0.0.0", 5060)
    assert ua.local_host_port(wire, ("127.0.0.1", 5062)) == ("127.0.0.1", 5060)


def test_send_to_by_name_resolves_through_the_connector_even_later() -> None:
    wire = Wire("TCP", peer=PHONE)
    pending: Deferred = Deferred()

    class Connector:
        asked = []

        def transportFor(self, name, address):  # noqa: N802
            self.asked.append((name, address))
            return pending

    connector = Connector()
    clock, layer, ua = make_ua(connector=connector)
    d = ua.send_to(bye(), ("TCP", PHONE), on_response=None, on_timeout=None)
    got = []
    d.addCallback(got.append)
    assert connector.asked == [("TCP", PHONE)] and wire.sent == []
    pending.callback(wire)
    assert len(wire.sent) == 1 and got[0].method == "BYE"


def test_unreachable_target_calls_on_timeout() -> None:
    class Nowhere:
        def transportFor(self, name, address):  # noqa: N802
            return None

    clock, layer, ua = make_ua(connector=Nowhere())
    timeouts = []
    ua.send_to(bye(), ("TLS", PHONE), on_response=None, on_timeout=lambda: timeouts.append(1))
    assert timeouts == [1]


def test_ack_for_2xx_goes_straight_over_the_transport_with_a_new_branch() -> None:
    clock, layer, ua = make_ua()
    wire = Wire("UDP")
    ack = bye()
    ack.method = "ACK"
    assert ua.send_ack(ack, wire, PHONE)
    assert len(layer) == 0  # no transaction
    sent = parse_message(wire.sent[0][0])
    assert sent.method == "ACK" and sent.top_via.branch.startswith("z9hG4bK")


def _answered(reliable: bool = False):
    clock, layer, ua = make_ua()
    wire = Wire("TCP" if reliable else "UDP", peer=PHONE if reliable else None)
    txn = layer.server_transaction(parse_message(INVITE.encode()), wire, PHONE)
    timeouts = []
    wait = ua.send_2xx(txn, make_response(txn.request, 200, to_tag="t"),
                       lambda: timeouts.append(clock.seconds()))
    return clock, wire, wait, timeouts


def test_2xx_is_retransmitted_t1_doubling_to_t2_until_64_t1() -> None:
    clock, wire, wait, timeouts = _answered()
    times = []
    while clock.seconds() < 40:
        before = len(wire.sent)
        clock.advance(0.25)
        times += [clock.seconds()] * (len(wire.sent) - before)
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]  # T1, 2T1, 4T1, then T2=4 s
    assert all(b - a == 4.0 for a, b in zip(times[3:], times[4:], strict=False))
    assert timeouts == [32.0] and max(times) < 32.0
    assert parse_message(wire.sent[-1][0]).status == 200


def test_ack_stops_the_retransmissions_and_the_timeout() -> None:
    clock, wire, wait, timeouts = _answered()
    clock.advance(0.6)
    count = len(wire.sent)
    wait.acked()
    clock.advance(60)
    assert len(wire.sent) == count and timeouts == []


def test_reliable_transport_sends_2xx_once_but_still_times_out_without_ack() -> None:
    clock, wire, wait, timeouts = _answered(reliable=True)
    clock.advance(31.9)
    assert len(wire.sent) == 1 and timeouts == []
    clock.advance(0.2)
    assert len(timeouts) == 1


def test_sips_target_is_never_sent_over_an_insecure_transport() -> None:
    wire = Wire("TCP", peer=PHONE)  # a plain TCP connection to the phone is open

    class Connector:
        def transportFor(self, name, address):  # noqa: N802
            return wire

    clock, layer, ua = make_ua(connector=Connector())
    request = bye("sips:1000@192.0.2.10:5062")
    timeouts = []
    ua.send_to(request, ("TCP", PHONE), on_response=None, on_timeout=lambda: timeouts.append(1))
    assert wire.sent == [] and timeouts == [1]


def test_our_requests_carry_calls_max_forwards_and_a_cancel_copies_its_invites() -> None:
    clock = Clock()
    layer = TransactionLayer(clock, trying_delay=None)
    ua = UserAgent(layer, None, clock, max_forwards=20)
    wire = Wire("UDP")
    invite = Request("INVITE", "sip:1000@192.0.2.10:5062")
    for name, value in (("From", "<sip:1001@pbx.test>;tag=b"), ("To", "<sip:1000@pbx.test>"),
                        ("Call-ID", "c2"), ("CSeq", "1 INVITE")):
        invite.add(name, value)
    ua.send_request(invite, wire, PHONE, on_response=None, on_timeout=None)
    assert parse_message(wire.sent[-1][0]).get("Max-Forwards") == "20"
    assert make_cancel(invite).get("Max-Forwards") == "20"  # RFC 3261 s9.1: as the INVITE
    ua.send_request(bye(), wire, PHONE, on_response=None, on_timeout=None)  # has its own
    assert parse_message(wire.sent[-1][0]).get("Max-Forwards") == "70"
