"""RTP/RTCP wire format (RFC 3550, RFC 5761)."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxd.errors import PBXError
from pbxd.rtp.packet import RtcpPacket, RtpPacket, RTPParseError, is_rtcp, peek_header

# First packet of SIPp's g711a.pcap (PCMA, marker set, 160 bytes of payload).
G711A_FIRST = bytes.fromhex("8088e6fd000000f0dee0ee8f") + b"\xd5" * 240
# First packet of SIPp's dtmf_2833_1.pcap (telephone-event, PT 101, marker, digit 1).
DTMF_START = bytes.fromhex("80e51f30000033e00e05384e010a0000")
DTMF_END = bytes.fromhex("80651f37000033e00e05384e018a08c0")

# RFC 3550 §6.4: a receiver report from SSRC 0x11223344 with one report block,
# followed by an SDES CNAME chunk (a compound packet).
RTCP_RR_SDES = (
    bytes.fromhex("81c9000711223344")
    + bytes.fromhex("55667788010000020000ffff000000100000000000000000")
    + bytes.fromhex("81ca0003112233440103706278000000")
)

PCAP = "/usr/share/sip-tester/g711a.pcap"


def _pcap_udp_payloads(path: str) -> list[bytes]:
    """UDP payloads of an Ethernet/IPv4 pcap (stdlib only)."""
    with open(path, "rb") as f:
        data = f.read()
    (magic,) = struct.unpack_from("<I", data)
    endian = "<" if magic == 0xA1B2C3D4 else ">"
    offset, out = 24, []
    while offset + 16 <= len(data):
        _s, _us, incl, _orig = struct.unpack_from(endian + "IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + incl]
        ihl = (frame[14] & 0x0F) * 4
        out.append(frame[14 + ihl + 8 :])
        offset += 16 + incl
    return out


def test_parse_reads_the_fields_of_a_captured_pcma_packet():
    p = RtpPacket.parse(G711A_FIRST)
    assert p.payload_type == 8
    assert p.marker is True
    assert p.sequence_number == 0xE6FD
    assert p.timestamp == 0xF0
    assert p.ssrc == 0xDEE0EE8F
    assert p.csrc == [] and p.extension_profile is None and p.padding == 0
    assert p.payload == b"\xd5" * 240
    assert p.serialize() == G711A_FIRST


def test_parse_reads_a_captured_telephone_event_packet():
    p = RtpPacket.parse(DTMF_START)
    assert (p.payload_type, p.marker, p.sequence_number) == (101, True, 0x1F30)
    assert (p.timestamp, p.ssrc) == (0x33E0, 0x0E05384E)
    assert p.payload == bytes.fromhex("010a0000")
    assert RtpPacket.parse(DTMF_END).marker is False


@pytest.mark.skipif(not os.path.exists(PCAP), reason="sip-tester pcaps not installed")
def test_every_packet_of_sipp_g711a_pcap_round_trips():
    packets = _pcap_udp_payloads(PCAP)
    assert len(packets) > 100
    previous = None
    for data in packets:
        p = RtpPacket.parse(data)
        assert p.serialize() == data
        assert peek_header(data) == (p.payload_type, p.sequence_number, p.timestamp, p.ssrc)
        assert not is_rtcp(data)
        if previous is not None:
            assert p.sequence_number == (previous.sequence_number + 1) & 0xFFFF
        previous = p


def test_csrc_extension_and_padding_round_trip():
    p = RtpPacket(
        payload_type=0,
        sequence_number=65535,
        timestamp=0xFFFFFFFF,
        ssrc=7,
        marker=False,
        payload=b"abc",
        csrc=[1, 2, 3],
        extension_profile=0xBEDE,
        extension=b"\x10\xff\x00\x00",
        padding=5,
    )
    data = p.serialize()
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert len(data) == 12 + 12 + 4 + 4 + 3 + 5
    assert data[-1] == 5
    assert RtpPacket.parse(data) == p


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated: 0 bytes"),
        (G711A_FIRST[:11], "truncated: 11 bytes"),
        (b"\x40" + G711A_FIRST[1:], "version 1"),
        (b"\x82" + G711A_FIRST[1:12] + b"\0\0\0\1", "2 CSRCs need 20 bytes, got 16"),
        (b"\x90" + G711A_FIRST[1:12] + b"\xbe\xde", "extension header truncated"),
        (b"\x90" + G711A_FIRST[1:12] + b"\xbe\xde\x00\x02\0\0\0\0", "2 words need 24 bytes"),
        (b"\xa0" + G711A_FIRST[1:12], "padding bit set but the packet has no payload"),
        (b"\xa0" + G711A_FIRST[1:12] + b"ab\x09", "padding length 9 invalid"),
        (b"\xa0" + G711A_FIRST[1:12] + b"ab\x00", "padding length 0 invalid"),
    ],
)
def test_malformed_rtp_raises_rtp_parse_error_saying_why(data, message):
    with pytest.raises(RTPParseError, match=message):
        RtpPacket.parse(data)


def test_rtp_parse_error_is_a_pbx_error_and_a_value_error():
    assert issubclass(RTPParseError, PBXError) and issubclass(RTPParseError, ValueError)


def test_peek_header_matches_parse_and_rejects_short_input():
    assert peek_header(DTMF_END) == (101, 0x1F37, 0x33E0, 0x0E05384E)
    with pytest.raises(RTPParseError):
        peek_header(b"\x80\x00")


def test_is_rtcp_tells_rtcp_from_rtp_by_the_second_byte():
    assert is_rtcp(RTCP_RR_SDES)
    assert is_rtcp(bytes.fromhex("80c80006"))  # SR
    assert not is_rtcp(G711A_FIRST)  # PT 8 with marker: 0x88
    assert not is_rtcp(DTMF_START)  # PT 101 with marker: 0xe5 (229)
    assert not is_rtcp(bytes.fromhex("00c8"))  # not version 2
    assert not is_rtcp(b"\x80")


def test_rtcp_compound_packet_headers():
    parts = RtcpPacket.parse_compound(RTCP_RR_SDES)
    assert [(p.packet_type, p.count, p.ssrc, p.length) for p in parts] == [
        (201, 1, 0x11223344, 32),
        (202, 1, 0x11223344, 16),
    ]
    assert RtcpPacket.parse(RTCP_RR_SDES).packet_type == 201


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x81\xc9\x00", "RTCP packet truncated: 3 bytes"),
        (bytes.fromhex("41c9000111223344"), "RTCP version 1"),
        (bytes.fromhex("81c9000711223344"), "runs past"),
        (RTCP_RR_SDES + b"\x81\xca", "truncated at byte 48"),
    ],
)
def test_malformed_rtcp_raises_rtp_parse_error(data, message):
    with pytest.raises(RTPParseError, match=message):
        RtcpPacket.parse_compound(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_raise_only_rtp_parse_error(data):
    for parse in (RtpPacket.parse, RtcpPacket.parse_compound, peek_header):
        try:
            parse(data)
        except RTPParseError:
            pass


@settings(max_examples=300, deadline=None)
@given(
    st.builds(
        RtpPacket,
        payload_type=st.integers(0, 127),
        sequence_number=st.integers(0, 0xFFFF),
        timestamp=st.integers(0, 0xFFFFFFFF),
        ssrc=st.integers(0, 0xFFFFFFFF),
        marker=st.booleans(),
        payload=st.binary(max_size=40),
        csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
        extension_profile=st.none() | st.integers(0, 0xFFFF),
        extension=st.binary(max_size=4).map(lambda b: b.ljust(4, b"\0") if b else b""),
        padding=st.integers(0, 255),
    )
)
def test_any_packet_survives_serialize_then_parse(packet):
    if packet.extension_profile is None:
        packet.extension = b""
    assert RtpPacket.parse(packet.serialize()) == packet
