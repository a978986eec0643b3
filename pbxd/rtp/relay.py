"""Anchored media: relaying RTP and RTCP between the legs of a call (layer 2).

Each leg has a :class:`LegMedia`: the PBX's RTP/RTCP port pair that one phone
sends to. A packet arriving on leg A's pair is sent out of leg B's pair to
B's phone (symmetric RTP: every phone receives from the port it sends to),
payload untouched.

Where packets are accepted from (no RTP bleed):

- before the answer, only from the IPs the leg allows (the address its SDP
  named, plus the signalling source of a NATed phone); the destination is the
  SDP address;
- after :meth:`LegMedia.allow_latch` (the answer), the first packet from an
  allowed IP latches the destination to its exact source address and port;
  from then on only that address is accepted.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from pbxd import debuglog
from pbxd.rtp.ports import PortAllocator, PortPair
from pbxd.rtp.stats import ReceiveStats

_HEADER = struct.Struct("!BBHI")
Address = tuple[str, int]
PacketListener = Callable[[bytes], None]


class _MediaSocket(DatagramProtocol):
    """The protocol on one bound port: hands datagrams to its leg."""

    __slots__ = ("leg", "rtcp")
    noisy = False  # no "starting on PORT" log lines for every call

    def __init__(self, leg: LegMedia, rtcp: bool) -> None:
        self.leg = leg
        self.rtcp = rtcp

    def datagramReceived(self, data: bytes, addr: Address) -> None:  # noqa: N802 (Twisted API)
        try:
            if self.rtcp:
                self.leg.rtcp_received(data, addr)
            else:
                self.leg.rtp_received(data, addr)
        except Exception:
            self.leg.log.failure("RTP packet handling failed on leg {leg}", leg=self.leg.name)


class LegMedia:
    """The PBX's media endpoint facing one phone."""

    log = Logger()

    def __init__(self, allocator: PortAllocator, clock: Any, name: str = "") -> None:
        self.name = name
        self._clock = clock
        self._pair: PortPair | None = allocator.allocate(
            lambda: _MediaSocket(self, False), lambda: _MediaSocket(self, True)
        )
        self.address = allocator.address
        self.peer: LegMedia | None = None
        self.remote: Address | None = None
        self.remote_rtcp: Address | None = None
        self._allowed: frozenset[str] = frozenset()
        self._may_latch = False
        self.latched = False
        self.stats = ReceiveStats()
        self.packets_out = 0
        self.bytes_out = 0
        self.strangers = 0
        self.last_received: float = clock.seconds()
        self.listeners: list[PacketListener] = []
        self.dtmf_pt: int | None = None
        """The telephone-event payload type negotiated on this leg (RFC 4733), if any."""
        self.on_dtmf_packet: Callable[[int, int, bytes], None] | None = None
        """Called with (marker, rtp timestamp, payload) for telephone-event packets."""

    # -- set-up ---------------------------------------------------------

    @property
    def port(self) -> int:
        """Our RTP port (RTCP is port + 1)."""
        assert self._pair is not None, "leg media is closed"
        return self._pair.rtp_port

    @property
    def closed(self) -> bool:
        return self._pair is None

    def set_remote(self, address: Address, allowed_ips: Iterable[str] = ()) -> None:
        """Point the leg at the phone's SDP address; accept packets from these IPs too.

        A new SDP (re-INVITE) un-latches: the phone may have moved.
        """
        host, port = address
        self.remote = (host, port)
        self.remote_rtcp = (host, port + 1)
        self._allowed = frozenset({host, *allowed_ips})
        self.latched = False

    def allow_latch(self) -> None:
        """The call is answered: latch to the first packet from an allowed IP."""
        self._may_latch = True

    def close(self) -> None:
        """Release the ports; further packets are not relayed."""
        if self._pair is not None:
            self._pair.close()
            self._pair = None
        self.peer = None
        self.listeners = []
        self.on_dtmf_packet = None

    # -- the hot path ---------------------------------------------------

    def rtp_received(self, data: bytes, addr: Address) -> None:
        """A datagram arrived on our RTP port."""
        if not self._accept(addr, rtcp=False):
            return
        self.last_received = now = self._clock.seconds()
        if len(data) >= 12:
            _b0, b1, seq, ts = _HEADER.unpack_from(data)
            self.stats.update(seq, ts, now, size=len(data))
            if self.dtmf_pt is not None and (b1 & 0x7F) == self.dtmf_pt and self.on_dtmf_packet:
                self.on_dtmf_packet(b1 & 0x80, ts, data[12:])
        peer = self.peer
        if peer is not None and peer.remote is not None:
            peer._send(data, peer.remote, False)
        for listener in self.listeners:
            listener(data)

    def rtcp_received(self, data: bytes, addr: Address) -> None:
        """A datagram arrived on our RTCP port."""
        if not self._accept(addr, rtcp=True):
            return
        peer = self.peer
        if peer is not None and peer.remote_rtcp is not None:
            peer._send(data, peer.remote_rtcp, True)

    def _accept(self, addr: Address, *, rtcp: bool) -> bool:
        if self.latched and not rtcp:
            if addr == self.remote:
                return True
            self.strangers += 1
            return False
        if addr[0] not in self._allowed:
            self.strangers += 1
            return False
        if self._may_latch:
            if rtcp:
                self.remote_rtcp = addr
            else:
                if addr != self.remote and debuglog.ENABLED:  # once per leg: a per-call event
                    self.log.debug("leg {leg} latched to {addr}", leg=self.name, addr=addr)
                self.remote = addr
                self.latched = True
        return True

    def _send(self, data: bytes, address: Address, rtcp: bool) -> None:
        pair = self._pair
        if pair is None:
            return
        (pair.rtcp_listener if rtcp else pair.rtp_listener).write(data, address)
        if not rtcp:
            self.packets_out += 1
            self.bytes_out += len(data)

    def send_rtp(self, data: bytes) -> None:
        """Send a packet made by the PBX itself (prompts, tones) to this leg's phone."""
        if self.remote is not None:
            self._send(data, self.remote, False)

    def counters(self) -> dict[str, Any]:
        """Per-leg media counters for the CDR and the admin API."""
        s = self.stats
        return {
            "packets_in": s.packets,
            "bytes_in": s.bytes,
            "lost": s.lost,
            "jitter_ms": round(s.jitter_seconds * 1000, 2),
            "packets_out": self.packets_out,
            "bytes_out": self.bytes_out,
            "strangers": self.strangers,
        }


def bridge(a: LegMedia, b: LegMedia) -> None:
    """Relay between two legs in both directions."""
    a.peer = b
    b.peer = a


def unbridge(a: LegMedia, b: LegMedia) -> None:
    """Stop relaying between two legs (each keeps its ports)."""
    if a.peer is b:
        a.peer = None
    if b.peer is a:
        b.peer = None
