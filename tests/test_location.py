"""Location service: lookup order, expiry, persistence across restarts, TCP flows, NAT targets."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbxd.sip.location import LocationService, nat_detected
from pbxd.sip.uri import URI
from pbxd.store.db import Database
from pbxd.store.location import SQLiteLocationStore
from pbxd.store.testing import SynchronousConnectionPool

_case = SynchronousTestCase()
_ok = _case.successResultOf
_failed = _case.failureResultOf
_no_result = _case.assertNoResult


class FakeTransport:
    """An ISIPTransport stand-in recording what is sent."""

    def __init__(self, name="UDP", connected=True):
        self.name = name
        self.reliable = name in ("TCP", "TLS")
        self.secure = name == "TLS"
        self.connected = connected
        self.sent = []

    def send(self, data, address):
        self.sent.append((data, address))
        return True


def _store(path, clock):
    db = Database(SynchronousConnectionPool(str(path)))
    return _ok(SQLiteLocationStore(db, clock).prepare())


def _binding(
    location,
    contact="sip:1000@192.0.2.10:5060",
    *,
    aor="1000",
    expires=300.0,
    flow=("UDP", "192.0.2.10", 5060),
    transport=None,
    q=None,
    nat=False,
    **kw,
):
    return location.make_binding(
        aor=aor,
        contact=contact,
        uri=URI.parse(contact),
        expires_at=location.clock.seconds() + expires,
        call_id="cid",
        cseq=1,
        q=q,
        flow=flow,
        transport=transport,
        nat=nat,
        **kw,
    )


@pytest.fixture
def clock():
    c = Clock()
    c.advance(1_700_000_000)
    return c


def test_lookup_orders_by_q_and_skips_unreachable(clock):
    location = LocationService(clock)
    low = _binding(location, "sip:1000@192.0.2.1", q=0.1)
    high = _binding(location, "sip:1000@192.0.2.2", q=0.9)
    plain = _binding(location, "sip:1000@192.0.2.3")  # no q counts as 1.0
    _ok(location.commit("1000", [low, high, plain], []))
    assert location.lookup("1000") == [plain, high, low]
    location.set_reachable(high, False)
    assert location.lookup("1000") == [plain, low]
    assert location.bindings("1000") == [plain, high, low]
    location.set_reachable(high, True, rtt=0.02)
    assert high in location.lookup("1000") and high.rtt == 0.02
    assert location.lookup("2000") == []


def test_binding_expires_on_the_clock_and_leaves_the_store(clock, tmp_path):
    store = _store(tmp_path / "db", clock)
    location = LocationService(clock, store)
    short = _binding(location, "sip:1000@192.0.2.1", expires=60)
    long = _binding(location, "sip:1000@192.0.2.2", expires=600)
    _ok(location.commit("1000", [short, long], []))
    clock.advance(59)
    assert len(location.lookup("1000")) == 2
    clock.advance(1)
    assert location.lookup("1000") == [long]
    assert [r["contact"] for r in _ok(store.load())] == ["sip:1000@192.0.2.2"]
    clock.advance(540)
    assert location.aors() == [] and clock.getDelayedCalls() == []


def test_refresh_replaces_the_timer_instead_of_adding_one(clock):
    location = LocationService(clock)
    _ok(location.commit("1000", [_binding(location, expires=60)], []))
    fresh = _binding(location, expires=120)
    _ok(location.commit("1000", [fresh], []))
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(60)
    assert location.lookup("1000") == [fresh]


@pytest.mark.parametrize("first, second", [(60, 120), (120, 30)])
def test_refresh_moves_the_same_timer_to_the_new_expiry(clock, first, second):
    location = LocationService(clock)
    _ok(location.commit("1000", [_binding(location, expires=first)], []))
    [timer] = clock.getDelayedCalls()
    clock.advance(10)
    fresh = _binding(location, expires=second)
    _ok(location.commit("1000", [fresh], []))
    assert clock.getDelayedCalls() == [timer] and fresh.timer is timer
    clock.advance(second - 1)
    assert location.lookup("1000") == [fresh]
    clock.advance(1)
    assert location.aors() == [] and clock.getDelayedCalls() == [] and fresh.timer is None


def test_expiry_timer_of_a_binding_removed_meanwhile_does_nothing(clock):
    location = LocationService(clock)
    binding = _binding(location, expires=60)
    _ok(location.commit("1000", [binding], []))
    other = _binding(location, "sip:1000@192.0.2.11:5060", expires=600)
    _ok(location.commit("1000", [other], []))
    location._expired("1000", "sip:1000@192.0.2.99:5060")  # no such contact: ignored
    clock.advance(60)
    assert location.bindings("1000") == [other]


def test_commit_applies_only_after_the_store_has_saved(clock, tmp_path):
    store = _store(tmp_path / "db", clock)
    location = LocationService(clock, store)
    store.database.pool.hold()
    d = location.commit("1000", [_binding(location)], [])
    _no_result(d)
    assert location.lookup("1000") == []
    store.database.pool.release()
    assert [b.contact for b in _ok(d)] == ["sip:1000@192.0.2.10:5060"]


def test_store_failure_leaves_memory_unchanged(clock, tmp_path):
    store = _store(tmp_path / "db", clock)
    location = LocationService(clock, store)
    store.database.pool.fail_next()
    _failed(location.commit("1000", [_binding(location)], []))
    assert location.lookup("1000") == [] and clock.getDelayedCalls() == []


def test_restart_restores_bindings_and_drops_expired(clock, tmp_path):
    path = tmp_path / "db"
    location = LocationService(clock, _store(path, clock))
    tcp = FakeTransport("TCP")
    _ok(
        location.commit(
            "1000",
            [
                _binding(
                    location,
                    "sip:1000@10.0.0.5:5060;transport=tcp",
                    expires=600,
                    flow=("TCP", "203.0.113.9", 41000),
                    transport=tcp,
                    nat=True,
                    q=0.5,
                    instance='"<urn:uuid:1>"',
                    reg_id=1,
                    user_agent="Phone/2",
                ),
                _binding(location, "sip:1000@192.0.2.7", expires=30),
            ],
            [],
        )
    )
    clock.advance(100)  # the UDP binding expired while pbxd was down (timer not run)
    restarted = LocationService(clock, _store(path, clock))
    assert _ok(restarted.restore()) == 1
    (b,) = restarted.lookup("1000")
    assert (b.contact, b.q, b.instance, b.reg_id, b.user_agent, b.nat) == (
        "sip:1000@10.0.0.5:5060;transport=tcp",
        0.5,
        '"<urn:uuid:1>"',
        1,
        "Phone/2",
        True,
    )
    assert b.restored and b.transport is None
    assert b.expires_in(clock.seconds()) == 500
    # no connection yet: open a new one to the flow address
    assert restarted.target(b) == ("TCP", ("203.0.113.9", 41000))
    clock.advance(500)
    assert restarted.lookup("1000") == []


def test_closing_a_connection_removes_its_bindings_only(clock, tmp_path):
    store = _store(tmp_path / "db", clock)
    location = LocationService(clock, store)
    conn_a, conn_b = FakeTransport("TCP"), FakeTransport("TLS")
    a = _binding(
        location,
        "sip:1000@10.0.0.1;transport=tcp",
        flow=("TCP", "203.0.113.1", 5000),
        transport=conn_a,
    )
    b = _binding(
        location,
        "sip:1000@10.0.0.2;transport=tls",
        flow=("TLS", "203.0.113.2", 5001),
        transport=conn_b,
    )
    _ok(location.commit("1000", [a, b], []))
    conn_a.connected = False
    assert location.transport_closed(conn_a) == [a]
    assert location.lookup("1000") == [b]
    assert [r["contact"] for r in _ok(store.load())] == ["sip:1000@10.0.0.2;transport=tls"]


def test_binding_whose_connection_closed_during_the_save_is_dropped(clock, tmp_path):
    store = _store(tmp_path / "db", clock)
    location = LocationService(clock, store)
    conn = FakeTransport("TCP")
    store.database.pool.hold()
    d = location.commit(
        "1000", [_binding(location, flow=("TCP", "203.0.113.1", 5000), transport=conn)], []
    )
    conn.connected = False
    location.transport_closed(conn)  # nothing to remove yet
    store.database.pool.release()
    _ok(d)
    assert location.lookup("1000") == [] and _ok(store.load()) == []


def test_observers_hear_additions_refreshes_and_removals(clock):
    location = LocationService(clock)
    events = []
    location.subscribe(lambda event, b: events.append((event, b.contact)))
    first = _binding(location, expires=10)
    _ok(location.commit("1000", [first], []))
    _ok(location.commit("1000", [_binding(location, expires=10)], []))
    clock.advance(10)
    assert [e for e, _ in events] == ["added", "refreshed", "removed"]


# -- NAT ------------------------------------------------------------------------

PRIVATE = "sip:1000@192.168.1.20:5062"
PUBLIC = "sip:1000@198.51.100.20:5062"
SOURCE = ("198.51.100.77", 40001)


@pytest.mark.parametrize(
    ("contact", "source_host", "rport", "expected"),
    [
        (PRIVATE, "198.51.100.77", False, True),  # private contact, other source
        (PRIVATE, "192.168.1.20", False, False),  # private but same as source: LAN
        ("sip:1000@127.0.0.1:5060", "198.51.100.77", False, True),  # loopback
        ("sip:1000@[fd00::5]:5060", "2001:db8::1", False, True),  # IPv6 ULA
        ("sip:1000@100.64.3.4", "198.51.100.77", False, True),  # CGNAT
        (PUBLIC, "198.51.100.77", False, False),  # public literal: trust it
        ("sip:1000@phone.example.com", "198.51.100.77", False, False),  # hostname
        (PUBLIC, "198.51.100.20", True, True),  # rport asked for
    ],
)
def test_nat_detection(contact, source_host, rport, expected):
    assert nat_detected(URI.parse(contact), source_host, rport) is expected


@pytest.mark.parametrize(
    ("mode", "flow_name", "contact", "nat", "live", "expected"),
    [
        # auto: NAT-flagged UDP binding goes to the flow, over the same socket
        ("auto", "UDP", PRIVATE, True, True, ("LIVE", SOURCE)),
        # auto: not flagged: straight to the contact (same UDP socket)
        ("auto", "UDP", PUBLIC, False, True, ("LIVE", ("198.51.100.20", 5062))),
        # auto: restored UDP binding, no socket known: names the transport
        ("auto", "UDP", PRIVATE, True, False, ("UDP", SOURCE)),
        ("auto", "UDP", PUBLIC, False, False, ("UDP", ("198.51.100.20", 5062))),
        # auto: TCP with its connection open: reuse it even without the NAT flag
        ("auto", "TCP", PUBLIC + ";transport=tcp", False, True, ("LIVE", SOURCE)),
        # auto: TCP without a connection and no NAT flag: connect to the contact
        ("auto", "TCP", PUBLIC + ";transport=tcp", False, False, ("TCP", ("198.51.100.20", 5062))),
        # always: the flow, whatever the contact says
        ("always", "UDP", PUBLIC, False, True, ("LIVE", SOURCE)),
        ("always", "TLS", "sips:1000@192.168.1.20", True, False, ("TLS", SOURCE)),
        # never: the contact, whatever the flow; sips defaults to TLS 5061
        ("never", "UDP", PRIVATE, True, True, ("LIVE", ("192.168.1.20", 5062))),
        ("never", "TCP", "sips:1000@192.168.1.20", True, True, ("TLS", ("192.168.1.20", 5061))),
    ],
)
def test_target_selection(clock, mode, flow_name, contact, nat, live, expected):
    location = LocationService(clock, nat=mode)
    transport = FakeTransport(flow_name) if live else None
    b = _binding(location, contact, flow=(flow_name, *SOURCE), transport=transport, nat=nat)
    got_transport, address = location.target(b)
    if expected[0] == "LIVE":
        assert got_transport is transport
    else:
        assert got_transport == expected[0]
    assert address == expected[1]


def test_closed_connection_is_not_used_as_target(clock):
    location = LocationService(clock)
    conn = FakeTransport("TCP", connected=False)
    b = _binding(location, PUBLIC, flow=("TCP", *SOURCE), transport=conn, nat=True)
    assert location.target(b) == ("TCP", SOURCE)


def test_path_sends_to_the_first_hop(clock):
    location = LocationService(clock)
    b = _binding(
        location,
        PRIVATE,
        flow=("UDP", "203.0.113.50", 5060),
        nat=True,
        path=("<sip:edge.example.net:5070;lr>", "<sip:other;lr>"),
    )
    assert location.target(b) == ("UDP", ("edge.example.net", 5070))


def test_unknown_nat_mode_is_refused(clock):
    with pytest.raises(ValueError):
        LocationService(clock, nat="sometimes")


def test_refresh_with_a_binding_that_has_a_timer_of_its_own_cancels_the_old_one(clock):
    location = LocationService(clock)
    _ok(location.commit("1000", [_binding(location, expires=60)], []))
    [old_timer] = clock.getDelayedCalls()
    fresh = _binding(location, expires=600)
    fresh.timer = clock.callLater(600, lambda: None)  # (not made by the location service)
    _ok(location.commit("1000", [fresh], []))
    assert not old_timer.active()
    clock.advance(60)
    assert location.lookup("1000") == [fresh]
    clock.advance(540)  # its own expiry, on a timer of the location service
    assert location.aors() == [] and clock.getDelayedCalls() == []
