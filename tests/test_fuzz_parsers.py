"""Fuzzing the parsers that read untrusted bytes (hypothesis).

For the SIP parser (datagrams and stream framing), the SDP parser and the
RTP/RTCP parsers: random bytes, and mutations (bit flips, deletions,
insertions, duplications, truncations, splices) of real messages from
tests/sipmessages.py and the RFC 4475/5118 torture corpus, never raise
anything but the parser's own error. Whatever the SIP parser accepts can be
serialized and parsed again.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbxd.errors import SIPParseError
from pbxd.rtp.packet import RtcpPacket, RtpPacket, RTPParseError, peek_header
from pbxd.sdp.session import SDPParseError, SessionDescription
from pbxd.sip.parser import StreamFramer, parse_message
from tests import sipmessages
from tests.conftest import sip_corpus

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


SIP_SEEDS = sip_corpus()
SDP_SEEDS = [m.split(b"\r\n\r\n", 1)[1] for m in SIP_SEEDS if b"\r\nv=0" in m and b"\r\n\r\n" in m]
RTP_SEED = bytes([0x80, 0x00, 0x12, 0x34, 0, 0, 0, 160, 0xDE, 0xAD, 0xBE, 0xEF]) + b"\xff" * 160
RTCP_SEED = bytes.fromhex("81c8000c" "deadbeef" "00000000" "00000000" "00000000" "00000000" "00000000"
                          "01020304" "00000000" "00000000" "00000000" "00000000" "00000000")
TOKENS = [b"\r\n", b"\r\n\r\n", b"\n", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\",
          b"%", b"%00", b"\x00", b"\xff", b"[", b"]", b"@", b"=", b"Content-Length: 99999\r\n",
          b"Via: SIP/2.0/UDP [::1\r\n", b"l: -1\r\n", b"CSeq: 99999999999999999999 INVITE\r\n",
          b"\r\n ", b"sip:", b"sips:", b"tel:", b"SIP/2.0", b"m=audio 0 RTP/AVP 0\r\n",
          b"c=IN IP6 ::1\r\n", b"a=rtpmap:96 x/0\r\n"]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """One seed with a few random edits."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.integers(0, 6))
        pos = draw(st.integers(0, len(data)))
        if op == 0 and data and pos < len(data):  # flip bits
            data[pos] ^= draw(st.integers(1, 255))
        elif op == 1:  # delete a run
            del data[pos : pos + draw(st.integers(1, 40))]
        elif op == 2:  # insert random bytes
            data[pos:pos] = draw(st.binary(min_size=1, max_size=20))
        elif op == 3:  # insert a syntax-sensitive token
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == 4:  # duplicate a run
            end = draw(st.integers(pos, len(data)))
            data[pos:pos] = data[pos:end]
        elif op == 5:  # truncate
            del data[pos:]
        else:  # splice in part of another seed
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, len(other)))
            data[pos:pos] = other[start : start + draw(st.integers(1, 200))]
    return bytes(data)


def _sip_roundtrip(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SIPParseError as error:
        assert isinstance(error.reason, str) and error.status in (400, 513)
        return
    # what parses is usable: serialize and parse again, core values readable
    again = parse_message(msg.serialize())
    assert getattr(again, "method", None) == getattr(msg, "method", None)


@FUZZ
@given(st.binary(max_size=2000))
def test_sip_random_bytes(data: bytes) -> None:
    _sip_roundtrip(data)


@FUZZ
@given(mutated(SIP_SEEDS))
def test_sip_mutations(data: bytes) -> None:
    _sip_roundtrip(data)


@FUZZ
@given(mutated(SIP_SEEDS), st.lists(st.integers(1, 300), min_size=1, max_size=10))
def test_stream_framer_mutations_in_random_chunks(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer(max_message_size=8192)
    pos = 0
    try:
        for size in cuts + [len(data)]:
            for message in framer.feed(data[pos : pos + size]):
                _sip_roundtrip(message)
            pos += size
    except SIPParseError as error:
        assert error.fatal
    assert framer.pending <= 8192


@FUZZ
@given(st.binary(max_size=1000))
def test_sdp_random_bytes(data: bytes) -> None:
    try:
        SessionDescription.parse(data)
    except SDPParseError:
        pass


@FUZZ
@given(mutated(SDP_SEEDS))
def test_sdp_mutations(data: bytes) -> None:
    try:
        sdp = SessionDescription.parse(data)
    except SDPParseError:
        return
    SessionDescription.parse(str(sdp) if not hasattr(sdp, "serialize") else sdp.serialize())


@FUZZ
@given(st.one_of(st.binary(max_size=400), mutated([RTP_SEED, RTCP_SEED])))
def test_rtp_and_rtcp_parsers(data: bytes) -> None:
    for parse in (RtpPacket.parse, RtcpPacket.parse_compound, RtcpPacket.parse, peek_header):
        try:
            parse(data)
        except RTPParseError:
            pass


def test_corpus_is_loaded() -> None:
    assert len(SIP_SEEDS) >= len(sipmessages.ALL) and SDP_SEEDS
