"""RTP port allocation and the anchored-media relay, on fake UDP ports and a fake clock."""

from __future__ import annotations

import struct

import pytest
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock

from pbxd.rtp.ports import PortAllocator, PortsExhausted
from pbxd.rtp.relay import LegMedia, bridge


class FakeListener:
    def __init__(self, port: int, protocol, binder: FakeBinder) -> None:
        self.port = port
        self.protocol = protocol
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.binder = binder
        self.listening = True

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def stopListening(self) -> None:  # noqa: N802
        self.listening = False
        self.binder.bound.pop(self.port, None)


class FakeBinder:
    """Stands in for reactor.listenUDP; some ports can be made 'taken'."""

    def __init__(self, taken: set[int] | None = None) -> None:
        self.bound: dict[int, FakeListener] = {}
        self.taken = taken or set()

    def __call__(self, port: int, protocol, interface: str) -> FakeListener:
        if port in self.taken or port in self.bound:
            raise CannotListenError(interface, port, OSError("in use"))
        listener = FakeListener(port, protocol, self)
        self.bound[port] = listener
        return listener


def rtp(seq: int, ts: int, pt: int = 0, payload: bytes = b"\xff" * 160, marker: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (marker << 7), seq, ts, 0x1234) + payload


# -- ports ----------------------------------------------------------------------


def test_pairs_are_even_rtp_and_next_odd_rtcp():
    binder = FakeBinder()
    alloc = PortAllocator(binder, "127.0.0.1", 10001, 10010)
    pair = alloc.allocate(object, object)
    assert pair.rtp_port % 2 == 0
    assert pair.rtcp_port == pair.rtp_port + 1
    assert pair.rtp_port >= 10002


def test_a_half_bound_pair_is_retried_with_fresh_protocols():
    made = []

    def make():
        made.append(object())
        return made[-1]

    binder = FakeBinder(taken={10001})
    alloc = PortAllocator(binder, "127.0.0.1", 10000, 10010)
    pair = alloc.allocate(make, make)
    assert pair.rtp_port == 10002
    assert binder.bound[10002].protocol is not made[0]  # the first RTP protocol is not reused
    assert len(set(map(id, made))) == len(made) == 4  # two tries, two fresh protocols each


def test_busy_ports_are_skipped():
    binder = FakeBinder(taken={10000, 10003})
    alloc = PortAllocator(binder, "127.0.0.1", 10000, 10010)
    # 10000 taken (RTP), 10002 ok but 10003 taken (RTCP) -> 10004
    pair = alloc.allocate(object, object)
    assert pair.rtp_port == 10004
    assert 10002 not in binder.bound  # the half-bound RTP port was released


def test_exhausted_range_raises_and_released_ports_are_reused():
    binder = FakeBinder()
    alloc = PortAllocator(binder, "127.0.0.1", 10000, 10003)
    a = alloc.allocate(object, object)
    b = alloc.allocate(object, object)
    with pytest.raises(PortsExhausted):
        alloc.allocate(object, object)
    a.close()
    assert alloc.in_use == 1
    c = alloc.allocate(object, object)
    assert c.rtp_port == a.rtp_port
    assert b.rtp_port != c.rtp_port


# -- relay ---------------------------------------------------------------------


def make_call(clock: Clock | None = None):
    clock = clock or Clock()
    binder = FakeBinder()
    alloc = PortAllocator(binder, "127.0.0.1", 20000, 20099)
    a = LegMedia(alloc, clock, "A")
    b = LegMedia(alloc, clock, "B")
    a.set_remote(("127.0.0.5", 4000))
    b.set_remote(("127.0.0.6", 6000))
    bridge(a, b)
    return clock, binder, a, b


def deliver(binder: FakeBinder, leg: LegMedia, data: bytes, source, rtcp: bool = False) -> None:
    port = leg.port + (1 if rtcp else 0)
    binder.bound[port].protocol.datagramReceived(data, source)


def test_packet_from_a_goes_out_of_bs_port_to_b_untouched():
    _, binder, a, b = make_call()
    pkt = rtp(1, 160)
    deliver(binder, a, pkt, ("127.0.0.5", 4000))
    assert binder.bound[b.port].sent == [(pkt, ("127.0.0.6", 6000))]
    assert binder.bound[a.port].sent == []


def test_rtcp_is_relayed_between_rtcp_ports():
    _, binder, a, b = make_call()
    deliver(binder, a, b"\x81\xc9rtcp", ("127.0.0.5", 4001), rtcp=True)
    assert binder.bound[b.port + 1].sent == [(b"\x81\xc9rtcp", ("127.0.0.6", 6001))]


def test_strangers_are_dropped_before_and_after_answer():
    _, binder, a, b = make_call()
    deliver(binder, a, rtp(1, 160), ("127.0.0.66", 4000))
    assert binder.bound[b.port].sent == []
    assert a.strangers == 1
    a.allow_latch()
    deliver(binder, a, rtp(2, 320), ("127.0.0.5", 4010))  # latches to the new port
    deliver(binder, a, rtp(3, 480), ("127.0.0.66", 4000))  # stranger still refused
    deliver(binder, a, rtp(4, 640), ("127.0.0.5", 4999))  # same IP, other port: refused once latched
    assert [d for d, _ in binder.bound[b.port].sent] == [rtp(2, 320)]
    assert a.strangers == 3


def test_latching_redirects_replies_to_the_nat_source():
    _, binder, a, b = make_call()
    a.allow_latch()
    deliver(binder, a, rtp(1, 160), ("127.0.0.5", 34567))  # NAT changed the port
    deliver(binder, b, rtp(1, 160), ("127.0.0.6", 6000))
    assert binder.bound[a.port].sent == [(rtp(1, 160), ("127.0.0.5", 34567))]


def test_no_latching_before_answer_keeps_sdp_destination():
    _, binder, a, b = make_call()
    deliver(binder, a, rtp(1, 160), ("127.0.0.5", 34567))
    deliver(binder, b, rtp(1, 160), ("127.0.0.6", 6000))
    assert binder.bound[a.port].sent == [(rtp(1, 160), ("127.0.0.5", 4000))]


def test_signalling_source_of_a_natted_phone_is_allowed():
    clock = Clock()
    binder = FakeBinder()
    alloc = PortAllocator(binder, "127.0.0.1", 20000, 20099)
    a = LegMedia(alloc, clock, "A")
    b = LegMedia(alloc, clock, "B")
    a.set_remote(("192.168.1.20", 4000), allowed_ips=["127.0.0.9"])
    b.set_remote(("127.0.0.6", 6000))
    bridge(a, b)
    a.allow_latch()
    deliver(binder, a, rtp(1, 160), ("127.0.0.9", 5555))
    assert len(binder.bound[b.port].sent) == 1
    deliver(binder, b, rtp(1, 160), ("127.0.0.6", 6000))
    assert binder.bound[a.port].sent[-1][1] == ("127.0.0.9", 5555)


def test_counters_count_loss_and_bytes():
    clock, binder, a, b = make_call()
    for seq in (1, 2, 4, 5):  # 3 lost
        clock.advance(0.02)
        deliver(binder, a, rtp(seq, seq * 160), ("127.0.0.5", 4000))
    c = a.counters()
    assert c["packets_in"] == 4
    assert c["lost"] == 1
    assert c["bytes_in"] == 4 * 172
    assert b.counters()["packets_out"] == 4


def test_last_received_follows_the_clock():
    clock, binder, a, _ = make_call()
    clock.advance(7)
    deliver(binder, a, rtp(1, 160), ("127.0.0.5", 4000))
    assert a.last_received == 7


def test_telephone_events_reach_the_dtmf_hook_and_are_still_relayed():
    _, binder, a, b = make_call()
    seen = []
    a.dtmf_pt = 101
    a.on_dtmf_packet = lambda marker, ts, payload: seen.append((bool(marker), ts, payload))
    event = bytes([5, 0x80 | 10, 0, 160])
    deliver(binder, a, rtp(1, 8000, pt=101, payload=event, marker=1), ("127.0.0.5", 4000))
    assert seen == [(True, 8000, event)]
    assert len(binder.bound[b.port].sent) == 1


def test_closed_leg_releases_ports_and_relays_nothing():
    _, binder, a, b = make_call()
    port = b.port
    b.close()
    assert port not in binder.bound
    deliver(binder, a, rtp(1, 160), ("127.0.0.5", 4000))
    assert a.counters()["packets_in"] == 1
    assert b.closed
