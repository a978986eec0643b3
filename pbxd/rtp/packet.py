"""RTP and RTCP wire format (RFC 3550, RFC 5761). Pure: no sockets, no Twisted.

``RtpPacket.parse``/``serialize`` for code that needs the whole packet (players,
recorders, DTMF), ``peek_header`` for the relay's hot path (no allocation beyond
the returned tuple), ``is_rtcp`` to demultiplex RTP and RTCP on one port, and a
light ``RtcpPacket`` that walks a compound RTCP packet far enough to count it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pbxd.errors import PBXError

__all__ = [
    "RTPParseError",
    "RtpPacket",
    "RtcpPacket",
    "RTP_HEADER_SIZE",
    "is_rtcp",
    "peek_header",
]

RTP_HEADER_SIZE = 12
RTP_VERSION = 2

_HEADER = struct.Struct("!BBHII")
_PEEK = struct.Struct("!xBHII")
_EXT = struct.Struct("!HH")
_RTCP_HEADER = struct.Struct("!BBHI")

# RTCP packet types (RFC 3550 §12.1, RFC 4585).
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204


class RTPParseError(PBXError, ValueError):
    """An RTP or RTCP packet could not be parsed; the message says why and where."""


def peek_header(data: bytes) -> tuple[int, int, int, int]:
    """Return ``(payload_type, sequence, timestamp, ssrc)`` of an RTP packet.

    The relay's fast path: one ``struct.unpack_from``, no version check beyond
    what the caller does with ``is_rtcp``.  Raises :class:`RTPParseError` when
    ``data`` is shorter than the fixed header.
    """
    if len(data) < RTP_HEADER_SIZE:
        raise RTPParseError(f"RTP packet truncated: {len(data)} bytes, header needs 12")
    b1, seq, ts, ssrc = _PEEK.unpack_from(data)
    return b1 & 0x7F, seq, ts, ssrc


def is_rtcp(data: bytes) -> bool:
    """Tell RTCP from RTP on a multiplexed port (RFC 5761 §4).

    RTCP packet types 192-223 put the second byte in that range; RTP payload
    types 64-95 (which would collide with the marker bit set) are not used.
    """
    return len(data) >= 2 and (data[0] >> 6) == RTP_VERSION and 192 <= data[1] <= 223


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet. ``payload`` excludes padding; ``padding`` is its length."""

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    marker: bool = False
    payload: bytes = b""
    csrc: list[int] = field(default_factory=list)
    extension_profile: int | None = None
    extension: bytes = b""
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse a datagram; raises :class:`RTPParseError` for anything malformed."""
        size = len(data)
        if size < RTP_HEADER_SIZE:
            raise RTPParseError(f"RTP packet truncated: {size} bytes, header needs 12")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        version = b0 >> 6
        if version != RTP_VERSION:
            raise RTPParseError(f"RTP version {version}, expected 2")
        cc = b0 & 0x0F
        offset = RTP_HEADER_SIZE + 4 * cc
        if size < offset:
            raise RTPParseError(f"RTP packet truncated: {cc} CSRCs need {offset} bytes, got {size}")
        csrc = list(struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE)) if cc else []
        profile: int | None = None
        extension = b""
        if b0 & 0x10:
            if size < offset + 4:
                raise RTPParseError(
                    f"RTP extension header truncated at byte {offset}: packet has {size} bytes"
                )
            profile, words = _EXT.unpack_from(data, offset)
            offset += 4
            end = offset + 4 * words
            if size < end:
                raise RTPParseError(
                    f"RTP extension truncated: {words} words need {end} bytes, got {size}"
                )
            extension = bytes(data[offset:end])
            offset = end
        end = size
        padding = 0
        if b0 & 0x20:
            if size == offset:
                raise RTPParseError("RTP padding bit set but the packet has no payload")
            padding = data[-1]
            if padding == 0 or padding > size - offset:
                raise RTPParseError(
                    f"RTP padding length {padding} invalid for {size - offset} payload bytes"
                )
            end = size - padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            marker=bool(b1 & 0x80),
            payload=bytes(data[offset:end]),
            csrc=csrc,
            extension_profile=profile,
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        """Encode the packet; padding of ``self.padding`` bytes is appended if non-zero."""
        if len(self.extension) % 4:
            raise ValueError("RTP extension data must be a multiple of 4 bytes")
        if len(self.csrc) > 15:
            raise ValueError("at most 15 CSRCs")
        b0 = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding:
            b0 |= 0x20
        if self.extension_profile is not None:
            b0 |= 0x10
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [
            _HEADER.pack(
                b0,
                b1,
                self.sequence_number & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
        ]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension_profile is not None:
            parts.append(_EXT.pack(self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


@dataclass(slots=True)
class RtcpPacket:
    """The header of one RTCP packet inside a compound packet (enough to count it).

    ``ssrc`` is the sender's SSRC (SR, RR, APP, and the first SDES chunk / BYE
    source); ``count`` is the RC/SC/subtype field; ``length`` is in bytes.
    """

    packet_type: int
    count: int
    ssrc: int
    length: int

    @classmethod
    def parse_compound(cls, data: bytes) -> list[RtcpPacket]:
        """Split a compound RTCP packet into its parts' headers.

        Raises :class:`RTPParseError` for a bad version or a length field that
        runs past the end of the datagram.
        """
        packets: list[RtcpPacket] = []
        offset = 0
        size = len(data)
        if size < 8:
            raise RTPParseError(f"RTCP packet truncated: {size} bytes, header needs 8")
        while offset < size:
            if size - offset < 8:
                raise RTPParseError(
                    f"RTCP packet truncated at byte {offset}: {size - offset} bytes left"
                )
            b0, pt, words, ssrc = _RTCP_HEADER.unpack_from(data, offset)
            if b0 >> 6 != RTP_VERSION:
                raise RTPParseError(f"RTCP version {b0 >> 6} at byte {offset}, expected 2")
            length = 4 * (words + 1)
            if offset + length > size:
                raise RTPParseError(
                    f"RTCP length {length} at byte {offset} runs past the {size}-byte packet"
                )
            packets.append(cls(packet_type=pt, count=b0 & 0x1F, ssrc=ssrc, length=length))
            offset += length
        return packets

    @classmethod
    def parse(cls, data: bytes) -> RtcpPacket:
        """The first packet of a compound RTCP packet (normally the SR or RR)."""
        return cls.parse_compound(data)[0]
