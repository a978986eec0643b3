"""RFC 4733 telephone-events: payloads, de-duplicating detection, generation."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxd.rtp.dtmf import (
    DIGITS,
    FLASH,
    DtmfDetector,
    DtmfGenerator,
    TelephoneEvent,
    digit_for_event,
    event_for_digit,
)
from pbxd.rtp.packet import RtpPacket, RTPParseError

# SIPp's dtmf_2833_1.pcap: digit 1, start with marker, 6 updates, end packet sent 3 times.
DTMF_1 = [
    bytes.fromhex(h)
    for h in (
        "80e51f30000033e00e05384e010a0000",
        "80651f31000033e00e05384e010a0140",
        "80651f32000033e00e05384e010a0280",
        "80651f33000033e00e05384e010a03c0",
        "80651f34000033e00e05384e010a0500",
        "80651f35000033e00e05384e010a0640",
        "80651f36000033e00e05384e010a0780",
        "80651f37000033e00e05384e018a08c0",
        "80651f37000033e00e05384e018a08c0",
        "80651f37000033e00e05384e018a08c0",
    )
]
PCAP_DIR = "/usr/share/sip-tester"
PCAP_DIGITS = {**{str(d): str(d) for d in range(10)}, "star": "*", "pound": "#"}


def _feed_all(detector: DtmfDetector, packets: list[bytes]) -> list[str]:
    out = []
    for data in packets:
        p = RtpPacket.parse(data)
        digit = detector.feed(p.marker, p.timestamp, p.payload)
        if digit is not None:
            out.append(digit)
    return out


def test_telephone_event_payload_fields():
    end = TelephoneEvent.parse(bytes.fromhex("018a08c0"))
    assert (end.event, end.end, end.volume, end.duration) == (1, True, 10, 2240)
    assert end.digit == "1"
    assert end.serialize() == bytes.fromhex("018a08c0")
    start = TelephoneEvent.parse(bytes.fromhex("0b0a0000"))
    assert (start.event, start.end, start.digit) == (11, False, "#")


def test_truncated_telephone_event_raises_rtp_parse_error():
    with pytest.raises(RTPParseError, match="needs 4"):
        TelephoneEvent.parse(b"\x01\x0a\x00")


def test_event_codes_cover_digits_star_pound_letters_and_flash():
    assert [digit_for_event(code) for code in range(17)] == list("0123456789*#ABCD!")
    assert digit_for_event(17) is None
    assert (
        event_for_digit("#") == 11 and event_for_digit("d") == 15 and event_for_digit(FLASH) == 16
    )
    with pytest.raises(ValueError):
        event_for_digit("E")


def test_captured_digit_with_three_end_packets_is_reported_once():
    detector = DtmfDetector()
    assert _feed_all(detector, DTMF_1) == ["1"]
    assert detector.digits == ["1"]


def test_digit_is_reported_on_its_first_packet():
    detector = DtmfDetector()
    p = RtpPacket.parse(DTMF_1[0])
    assert detector.feed(p.marker, p.timestamp, p.payload) == "1"


def test_lost_start_packets_still_report_the_digit_once():
    assert _feed_all(DtmfDetector(), DTMF_1[7:]) == ["1"]


def test_retransmitted_old_event_after_a_new_one_is_ignored():
    generator = DtmfGenerator(101, 1234)
    first = [p.serialize() for p in generator.packets("5", 8000)]
    second = [p.serialize() for p in generator.packets("6", 9600)]
    stream = first + second[:2] + first[-1:] + second[2:]  # late end packet of the 5
    assert _feed_all(DtmfDetector(), stream) == ["5", "6"]


def test_same_digit_twice_is_two_presses():
    generator = DtmfGenerator()
    packets = generator.packets("7", 0) + generator.packets("7", 1600)
    detector = DtmfDetector()
    assert [detector.feed_packet(p) for p in packets].count("7") == 2


def test_long_event_segment_without_marker_is_not_a_new_press():
    detector = DtmfDetector()
    assert detector.feed(True, 1000, TelephoneEvent(9, False, 10, 65535).serialize()) == "9"
    # RFC 4733 §2.5.1.3: next segment gets a new timestamp, same event, no marker
    assert detector.feed(False, 1000 + 65535, TelephoneEvent(9, False, 10, 800).serialize()) is None
    assert detector.feed(False, 1000 + 65535, TelephoneEvent(9, True, 10, 1600).serialize()) is None
    assert detector.feed(True, 200000, TelephoneEvent(9, False, 10, 160).serialize()) == "9"
    assert detector.digits == ["9", "9"]


def test_non_dtmf_events_and_short_payloads_are_ignored():
    detector = DtmfDetector()
    assert detector.feed(True, 1, TelephoneEvent(70, False).serialize()) is None
    assert detector.feed(True, 2, b"\x01") is None
    assert detector.digits == []


def test_generator_sequence_shape():
    generator = DtmfGenerator(payload_type=96, ssrc=42, sequence=65534, volume=7)
    packets = generator.packets("#", 4294967000, duration_ms=100)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)
    assert {p.timestamp for p in packets} == {4294967000}
    assert {(p.payload_type, p.ssrc) for p in packets} == {(96, 42)}
    assert [p.sequence_number for p in packets][:3] == [65534, 65535, 0]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {(e.event, e.volume) for e in events} == {(11, 7)}
    assert generator.sequence == (65534 + len(packets)) & 0xFFFF


def test_generator_short_digit_is_one_end_packet_three_times():
    events = DtmfGenerator().events("A", duration_ms=10)
    assert [(e.end, e.duration) for e in events] == [(True, 80)] * 3


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=DIGITS, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_generated_digits_survive_duplication_and_are_reported_once_each(digits, rnd):
    generator = DtmfGenerator()
    stream: list[RtpPacket] = []
    for index, digit in enumerate(digits):
        packets = generator.packets(digit, index * 2000, duration_ms=rnd.choice([40, 100, 250]))
        # duplicate some packets next to themselves (network duplication)
        for p in packets:
            stream += [p] * rnd.choice([1, 1, 2])
    detector = DtmfDetector()
    assert "".join(d for p in stream if (d := detector.feed_packet(p))) == digits


@pytest.mark.parametrize("name", sorted(PCAP_DIGITS))
def test_sipp_dtmf_pcaps_yield_their_digit_once(name):
    path = os.path.join(PCAP_DIR, f"dtmf_2833_{name}.pcap")
    if not os.path.exists(path):
        pytest.skip("sip-tester pcaps not installed")
    with open(path, "rb") as f:
        data = f.read()
    offset, payloads = 24, []
    while offset + 16 <= len(data):
        incl = struct.unpack_from("<I", data, offset + 8)[0]
        payloads.append(data[offset + 16 + 42 : offset + 16 + incl])  # Ethernet+IPv4+UDP
        offset += 16 + incl
    assert _feed_all(DtmfDetector(), payloads) == [PCAP_DIGITS[name]]
