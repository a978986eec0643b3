"""Qualify: OPTIONS through the real transaction layer, reachability marking, concurrency."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbxd.sip.location import LocationService
from pbxd.sip.message import Request, make_response
from pbxd.sip.parser import parse_message
from pbxd.sip.qualify import Qualifier, options_maker
from pbxd.sip.transaction import TransactionLayer, new_branch
from pbxd.sip.uri import URI

_ok = SynchronousTestCase().successResultOf


class FakeTransport:
    def __init__(self, name="UDP"):
        self.name = name
        self.reliable = name != "UDP"
        self.secure = False
        self.connected = True
        self.local_address = ("192.0.2.1", 5060)
        self.peer = None
        self.sent = []

    def send(self, data, address):
        self.sent.append((parse_message(data), address))
        return True


def make_options(binding, transport, address):
    request = Request("OPTIONS", URI.parse(binding.contact))
    request.add("Via", f"SIP/2.0/{transport.name} 192.0.2.1:5060;branch={new_branch()};rport")
    request.add("From", "<sip:pbxd@pbxd.local>;tag=q1")
    request.add("To", f"<{binding.contact}>")
    request.add("Call-ID", new_branch())
    request.add("CSeq", "1 OPTIONS")
    request.add("Max-Forwards", "70")
    return request


class Harness:
    def __init__(self, count=1, max_in_flight=8, connector=None):
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.location = LocationService(self.clock, nat="always")
        self.transactions = TransactionLayer(self.clock)
        self.transport = FakeTransport()
        self.bindings = []
        for i in range(count):
            contact = f"sip:1000@10.0.0.{i + 1}:5060"
            b = self.location.make_binding(
                aor="1000",
                contact=contact,
                uri=URI.parse(contact),
                expires_at=self.clock.seconds() + 3600,
                call_id=f"c{i}",
                cseq=1,
                flow=("UDP", "203.0.113.9", 40000 + i),
                transport=self.transport,
            )
            self.bindings.append(b)
        _ok(self.location.commit("1000", self.bindings, []))
        self.qualifier = Qualifier(
            self.location,
            self.transactions,
            self.clock,
            30.0,
            5.0,
            make_options,
            connector=connector,
            max_in_flight=max_in_flight,
        )

    def answer(self, index, status=200):
        request, address = self.transport.sent[index]
        response = make_response(request, status, to_tag="t")
        assert self.transactions.match_response(response, self.transport, address)

    def reachable(self):
        return [b.reachable for b in self.bindings]


def test_options_go_to_the_flow_and_an_answer_keeps_the_binding_reachable():
    h = Harness()
    h.qualifier.startService()
    ((request, address),) = h.transport.sent
    assert request.method == "OPTIONS" and address == ("203.0.113.9", 40000)
    h.clock.advance(0.25)
    h.answer(0)
    assert h.bindings[0].reachable and h.bindings[0].rtt == pytest.approx(0.25)
    assert h.qualifier.in_flight == 0


def test_silent_binding_becomes_unreachable_then_reachable_again():
    h = Harness()
    h.qualifier.startService()
    h.clock.advance(5)  # qualify timeout, no answer
    assert h.reachable() == [False]
    assert h.location.lookup("1000") == []
    h.clock.advance(25)  # next round
    latest = len(h.transport.sent) - 1
    assert h.transport.sent[latest][0].method == "OPTIONS"
    h.answer(latest, 404)  # any answer but 408/503 proves it is there
    assert h.reachable() == [True]
    assert h.location.lookup("1000") == h.bindings


@pytest.mark.parametrize("status", [408, 503])
def test_408_and_503_count_as_unreachable(status):
    h = Harness()
    h.qualifier.startService()
    h.answer(0, status)
    assert h.reachable() == [False]


def test_late_answer_after_the_timeout_does_not_flip_the_state():
    h = Harness()
    h.qualifier.startService()
    h.clock.advance(5)
    h.answer(0)  # the transaction is still alive; our probe is over
    assert h.reachable() == [False]


def test_in_flight_probes_are_bounded():
    h = Harness(count=5, max_in_flight=2)
    h.qualifier.startService()
    assert len({id(r) for r, _ in h.transport.sent}) == 2
    h.answer(0)
    assert len({r.get("Via") for r, _ in h.transport.sent}) == 3
    h.clock.advance(5)  # the two outstanding time out, two more go
    assert len({r.get("Via") for r, _ in h.transport.sent}) == 5
    assert h.reachable().count(False) == 2


def test_no_second_probe_while_one_is_outstanding():
    h = Harness()
    h.qualifier.startService()
    h.qualifier.qualify_all()
    assert len({r.get("Via") for r, _ in h.transport.sent}) == 1


def test_restored_binding_is_reached_through_the_connector():
    opened = Deferred()

    class Connector:
        def transportFor(self, name, address):
            self.asked = (name, address)
            return opened

    connector = Connector()
    h = Harness(connector=connector)
    h.bindings[0].transport = None  # as after a restart
    h.qualifier.startService()
    assert connector.asked == ("UDP", ("203.0.113.9", 40000))
    opened.callback(h.transport)
    h.answer(0)
    assert h.reachable() == [True]


def test_without_connector_a_transport_less_binding_is_left_alone():
    h = Harness()
    h.bindings[0].transport = None
    h.qualifier.startService()
    assert h.transport.sent == [] and h.reachable() == [True]


def test_stopping_ends_the_rounds():
    h = Harness()
    h.qualifier.startService()
    h.answer(0)
    h.qualifier.stopService()
    h.clock.advance(120)
    assert len(h.transport.sent) == 1


def test_interval_zero_disables_qualify():
    h = Harness()
    h.qualifier.interval = 0
    h.qualifier.startService()
    h.clock.advance(100)
    assert h.transport.sent == []


def test_options_maker_routes_through_path_with_our_via_and_contact():
    from pbxd.sip.ua import UserAgent

    clock = Clock()
    layer = TransactionLayer(clock)
    ua = UserAgent(layer, None, clock)
    location = LocationService(clock)
    binding = location.make_binding(
        aor="1000", contact="sip:1000@10.0.0.7:5060", uri=URI.parse("sip:1000@10.0.0.7:5060"),
        expires_at=3600, call_id="c", cseq=1, flow=("UDP", "203.0.113.9", 40000),
        path=("<sip:edge.example.net;lr>", "<sip:inner.example.net;lr>"))
    make = options_maker(ua, "pbx.test")
    transport = FakeTransport()
    one = make(binding, transport, ("203.0.113.9", 40000))
    wire = parse_message(one.serialize())  # what goes out parses back
    assert wire.method == "OPTIONS" and str(wire.uri) == "sip:1000@10.0.0.7:5060"
    assert wire.getall("Route") == ["<sip:edge.example.net;lr>", "<sip:inner.example.net;lr>"]
    assert wire.top_via.host == "192.0.2.1" and wire.top_via.branch.startswith("z9hG4bK")
    assert wire.get("Contact") == "<sip:pbx@192.0.2.1:5060>"
    assert wire.from_.tag and wire.cseq.method == "OPTIONS"
    other = make(binding, transport, ("203.0.113.9", 40000))
    assert (other.call_id, other.top_via.branch, other.from_.tag) != (
        one.call_id, one.top_via.branch, one.from_.tag)  # each probe is a new request
    binding.path = ()
    assert make(binding, transport, ("203.0.113.9", 40000)).getall("Route") == []
