"""Registrar (RFC 3261 section 10.3) over a real SQLite location store and a fake clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbxd.sip.location import LocationService
from pbxd.sip.message import Request
from pbxd.sip.parser import parse_message
from pbxd.sip.registrar import Registrar
from pbxd.store.db import Database
from pbxd.store.extensions import ConfigExtensionStore
from pbxd.store.location import SQLiteLocationStore
from pbxd.store.testing import SynchronousConnectionPool

_ok = SynchronousTestCase().successResultOf

PHONE = ("203.0.113.5", 40000)


@dataclass(frozen=True)
class Ext:
    number: str
    name: str = ""
    context: str = "default"
    max_contacts: int | None = None


class FakeTransport:
    def __init__(self, name="UDP"):
        self.name = name
        self.reliable = name != "UDP"
        self.connected = True


class FakeServerTransaction:
    def __init__(self, transport, source):
        self.transport = transport
        self.source = source
        self.responses = []

    def respond(self, response):
        self.responses.append(response)


def register_request(
    *contacts, call_id="call-1@phone", cseq=1, expires=None, via_params=";rport", extra=()
):
    lines = [
        "REGISTER sip:pbxd.local SIP/2.0",
        f"Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK{cseq}x{call_id[:4]}{via_params}",
        "From: <sip:1000@pbxd.local>;tag=f1",
        "To: <sip:1000@pbxd.local>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "Max-Forwards: 70",
        "User-Agent: TestPhone/1.0",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += list(extra)
    lines += ["Content-Length: 0", "", ""]
    return parse_message("\r\n".join(lines).encode())


class Harness:
    def __init__(self, path, clock=None, **limits):
        self.clock = clock or Clock()
        if clock is None:
            self.clock.advance(1_700_000_000)
        self.pool = SynchronousConnectionPool(str(path))
        self.store = _ok(SQLiteLocationStore(Database(self.pool), self.clock).prepare())
        self.location = LocationService(self.clock, self.store)
        settings = dict(min_expires=60, max_expires=3600, default_expires=1800, max_contacts=3)
        settings.update(limits)
        self.registrar = Registrar(self.location, self.clock, **settings)
        self.transport = FakeTransport()

    def register(self, request, ext=Ext("1000"), transport=None, source=PHONE):
        txn = FakeServerTransaction(transport or self.transport, source)
        self.registrar.register(request, txn, ext)
        return txn

    def answer(self, *contacts, ext=Ext("1000"), **kw):
        txn = self.register(register_request(*contacts, **kw), ext)
        (response,) = txn.responses
        return response

    def stored(self):
        return sorted(r["contact"] for r in _ok(self.store.load()))


def listed(response):
    """{contact uri: expires} from a 200 OK."""
    out = {}
    for value in response.getall("Contact"):
        uri, _, params = value.partition(">")
        expires = [p for p in params.split(";") if p.startswith("expires=")]
        out[uri.lstrip("<")] = int(expires[0].split("=")[1])
    return out


@pytest.fixture
def h(tmp_path):
    return Harness(tmp_path / "pbxd.sqlite")


A = "<sip:1000@192.168.1.20:5060>"
B = "<sip:1000@192.168.1.21:5060>"
C = "<sip:1000@192.168.1.22:5060>"
D = "<sip:1000@192.168.1.23:5060>"


def test_register_answers_200_with_the_binding_and_a_date(h):
    response = h.answer(A, expires=600)
    assert response.status == 200
    assert listed(response) == {"sip:1000@192.168.1.20:5060": 600}
    assert response.get("Date").endswith("GMT")
    assert response.to.tag is not None
    assert h.stored() == ["sip:1000@192.168.1.20:5060"]
    (binding,) = h.location.lookup("1000")
    assert binding.flow == ("UDP", *PHONE) and binding.nat  # rport in Via
    assert binding.user_agent == "TestPhone/1.0" and binding.transport is h.transport


def test_200_is_sent_only_after_the_binding_is_saved(h):
    h.pool.hold()
    txn = h.register(register_request(A, expires=600))
    assert txn.responses == []
    h.pool.release()
    assert [r.status for r in txn.responses] == [200]


def test_store_failure_answers_500_and_registers_nothing(h):
    h.pool.fail_next()
    assert h.answer(A, expires=600).status == 500
    assert h.location.lookup("1000") == [] and h.stored() == []


def test_contact_expires_parameter_wins_over_the_header(h):
    response = h.answer(A + ";expires=120", B, expires=900)
    assert listed(response) == {
        "sip:1000@192.168.1.20:5060": 120,
        "sip:1000@192.168.1.21:5060": 900,
    }


def test_default_expiry_applies_without_header_or_parameter(h):
    assert listed(h.answer(A)) == {"sip:1000@192.168.1.20:5060": 1800}


def test_too_brief_expiry_gets_423_with_min_expires(h):
    response = h.answer(A + ";expires=30", B, expires=600)
    assert response.status == 423 and response.get("Min-Expires") == "60"
    assert h.location.bindings("1000") == [] and h.stored() == []


def test_long_expiry_is_clamped_to_the_maximum(h):
    assert listed(h.answer(A, expires=86400)) == {"sip:1000@192.168.1.20:5060": 3600}
    h.clock.advance(3600)
    assert h.location.lookup("1000") == [] and h.stored() == []


def test_expires_zero_removes_only_that_contact(h):
    h.answer(A, B, expires=600)
    response = h.answer(A + ";expires=0", cseq=2)
    assert response.status == 200
    assert listed(response) == {"sip:1000@192.168.1.21:5060": 600}
    assert h.stored() == ["sip:1000@192.168.1.21:5060"]


def test_star_with_expires_zero_removes_everything(h):
    h.answer(A, B, expires=600)
    response = h.answer("*", expires=0, cseq=2)
    assert response.status == 200 and response.getall("Contact") == []
    assert h.location.bindings("1000") == [] and h.stored() == []


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [(("*",), 60), (("*",), None), (("*", A), 0)],
)
def test_star_needs_expires_zero_and_no_other_contact(h, contacts, expires):
    h.answer(B, expires=600)
    parsed = register_request(expires=expires, cseq=2)
    request = Request("REGISTER", parsed.uri, [(k, v) for k, v in parsed.headers])
    for contact in contacts:  # built, not parsed: the parser refuses '*' beside a URI
        request.add("Contact", contact)
    response = h.register(request).responses[0]
    assert (response.status, response.reason) == (
        400,
        "Contact: * needs Expires: 0 and no other Contact",
    )
    assert h.stored() == ["sip:1000@192.168.1.21:5060"]


def test_register_without_contact_lists_current_bindings(h):
    h.answer(A, expires=600)
    h.clock.advance(100)
    response = h.answer(cseq=2)
    assert response.status == 200
    assert listed(response) == {"sip:1000@192.168.1.20:5060": 500}


def test_same_call_id_with_old_cseq_is_refused(h):
    h.answer(A, expires=600, cseq=5)
    for cseq in (5, 4):
        assert h.answer(A + ";expires=0", cseq=cseq).status == 500
    assert len(h.location.bindings("1000")) == 1
    assert h.answer(A + ";expires=0", cseq=6).status == 200
    assert h.location.bindings("1000") == []


def test_other_call_id_may_update_whatever_its_cseq(h):
    h.answer(A, expires=600, cseq=5)
    response = h.answer(A, expires=300, cseq=1, call_id="another-call@phone")
    assert listed(response) == {"sip:1000@192.168.1.20:5060": 300}
    assert h.location.bindings("1000")[0].call_id == "another-call@phone"


def test_q_values_order_lookup_and_are_echoed(h):
    response = h.answer(A + ";q=0.2", B + ";q=0.9", expires=600)
    assert [b.contact for b in h.location.lookup("1000")] == [
        "sip:1000@192.168.1.21:5060",
        "sip:1000@192.168.1.20:5060",
    ]
    assert any(";q=0.9" in v for v in response.getall("Contact"))
    assert h.answer(C + ";q=1.5", expires=600, cseq=2).status == 400


INSTANCE = '+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'


def test_same_instance_and_reg_id_replaces_the_old_binding(h):
    h.answer(f"{A};{INSTANCE};reg-id=1", f"{B};{INSTANCE};reg-id=2", expires=600)
    # the phone moved (new address, new Call-ID after a reboot)
    response = h.answer(f"{C};{INSTANCE};reg-id=1", expires=600, call_id="after-reboot")
    assert set(listed(response)) == {"sip:1000@192.168.1.22:5060", "sip:1000@192.168.1.21:5060"}
    assert h.stored() == ["sip:1000@192.168.1.21:5060", "sip:1000@192.168.1.22:5060"]
    values = response.getall("Contact")
    assert all(INSTANCE in v for v in values) and any("reg-id=1" in v for v in values)
    kept = [b for b in h.location.bindings("1000") if b.reg_id == 1]
    assert kept[0].instance == INSTANCE.split("=", 1)[1]


def test_exceeding_max_contacts_evicts_the_oldest(h):
    h.answer(A, expires=600)
    h.clock.advance(1)
    h.answer(B, expires=600, call_id="b")
    h.clock.advance(1)
    h.answer(C, expires=600, call_id="c")
    h.clock.advance(1)
    h.answer(A, expires=600, cseq=2)  # A refreshed: now B is the oldest
    h.clock.advance(1)
    response = h.answer(D, expires=600, call_id="d")
    assert response.status == 200
    assert set(listed(response)) == {
        "sip:1000@192.168.1.20:5060",
        "sip:1000@192.168.1.22:5060",
        "sip:1000@192.168.1.23:5060",
    }
    assert "sip:1000@192.168.1.21:5060" not in h.stored()


def test_extension_limit_overrides_default_and_too_many_at_once_is_403(h):
    one = Ext("1000", max_contacts=1)
    h.answer(A, expires=600, ext=one)
    assert set(listed(h.answer(B, expires=600, call_id="x", ext=one))) == {
        "sip:1000@192.168.1.21:5060"
    }
    response = h.answer(C, D, expires=600, call_id="y", ext=one)
    assert response.status == 403
    assert h.stored() == ["sip:1000@192.168.1.21:5060"]


def test_to_must_match_the_authenticated_extension(h):
    assert h.answer(A, expires=600, ext=Ext("2000")).status == 403
    assert h.stored() == []


def test_unauthenticated_register_for_unknown_extension_is_404(tmp_path):
    h = Harness(tmp_path / "db")
    h.registrar.extensions = ConfigExtensionStore({"1000": Ext("1000")})
    assert h.answer(A, expires=600, ext=None).status == 200
    h.registrar.extensions = ConfigExtensionStore({})
    assert h.answer(A, expires=600, cseq=2, ext=None).status == 404


def test_tcp_binding_goes_when_its_connection_closes(h):
    conn = FakeTransport("TCP")
    tcp_contact = "<sip:1000@203.0.113.5:40000;transport=tcp>"
    h.register(register_request(tcp_contact, expires=600, via_params=""), transport=conn)
    (binding,) = h.location.lookup("1000")
    assert binding.flow[0] == "TCP" and binding.transport is conn and not binding.nat
    conn.connected = False
    h.registrar.connectionLost(conn)
    assert h.location.lookup("1000") == [] and h.stored() == []


def test_public_contact_without_rport_is_not_flagged_nat(h):
    h.answer("<sip:1000@203.0.113.5:40000>", expires=600, via_params="")
    (binding,) = h.location.lookup("1000")
    assert not binding.nat
    assert h.location.target(binding) == (h.transport, ("203.0.113.5", 40000))


def test_registrations_of_one_aor_are_handled_in_order(h):
    h.pool.hold()
    first = h.register(register_request(A, expires=600, cseq=1))
    second = h.register(register_request(A + ";expires=0", cseq=2))
    assert first.responses == [] and second.responses == []
    h.pool.release()  # runs the first save; the second then plans against it
    assert first.responses[0].status == 200
    h.pool.release()
    assert second.responses[0].status == 200 and h.location.bindings("1000") == []
    assert h.registrar._locks == {}


def test_bindings_survive_a_restart(tmp_path):
    h = Harness(tmp_path / "db")
    h.answer(A, expires=600)
    h.answer(B, expires=60, call_id="short")
    clock = Clock()
    clock.advance(h.clock.seconds() + 120)
    again = Harness(tmp_path / "db", clock=clock)
    assert _ok(again.location.restore()) == 1
    assert listed(again.answer(cseq=9)) == {"sip:1000@192.168.1.20:5060": 480}


def test_registrations_queued_behind_one_in_flight_run_in_order_and_each_fires(h):
    h.pool.hold()
    fired: list = []
    answered: list = []
    requests = (
        register_request(A, expires=600, cseq=3),
        register_request(A, expires=300, cseq=3),  # same Call-ID, same CSeq: refused
        register_request(B, expires=600, cseq=4),
        register_request(C, expires=600, cseq=1, call_id="other"),
    )
    for n, request in enumerate(requests):
        txn = FakeServerTransaction(h.transport, PHONE)
        txn.respond = lambda response, n=n: answered.append((n, response.status))
        h.registrar.register(request, txn, Ext("1000")).addCallback(fired.append)
    # another AOR is not queued behind them
    wire = register_request(A, expires=600).serialize().replace(b"sip:1000@", b"sip:1001@")
    other = h.register(parse_message(wire), ext=Ext("1001"))
    assert answered == [] and fired == [] and other.responses == []
    h.pool.release()
    assert answered == [(0, 200), (1, 500), (2, 200), (3, 200)] and fired == [None] * 4
    assert other.responses[0].status == 200
    assert sorted(b.contact for b in h.location.bindings("1000")) == [
        "sip:1000@192.168.1.20:5060", "sip:1000@192.168.1.21:5060", "sip:1000@192.168.1.22:5060"]
    assert h.location.bindings("1000")[-1].expires_at == h.clock.seconds() + 600
    assert h.registrar._locks == {}


def test_a_register_that_needs_no_store_write_is_answered_at_once(h):
    h.answer(A, expires=600)
    h.pool.hold()
    txn = h.register(register_request(cseq=2))  # a listing
    assert [r.status for r in txn.responses] == [200] and h.registrar._locks == {}
    h.pool.release()


def test_path_is_kept_and_echoed_only_when_the_ua_supports_it(h):
    path = "<sip:edge.example.net;lr>"
    response = h.answer(A, expires=600, extra=("k: timer, path", f"Path: {path}"))
    assert response.getall("Path") == [path]
    assert h.location.bindings("1000")[0].path == (path,)
    response = h.answer(B, expires=600, call_id="b", extra=("Supported: timer", f"Path: {path}"))
    assert {b.contact: b.path for b in h.location.bindings("1000")} == {
        "sip:1000@192.168.1.20:5060": (path,), "sip:1000@192.168.1.21:5060": ()}
    assert response.getall("Path") == [path]  # A's binding still has it
