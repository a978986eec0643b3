"""Tests of pbxd.sip.parser: datagram parsing, errors and stream framing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxd.errors import SIPParseError
from pbxd.sip.message import Request, Response
from pbxd.sip.parser import StreamFramer, parse_message
from pbxd.sip.uri import CSeq
from tests import sipmessages as golden


def test_invite_with_sdp_parses_request_line_headers_and_body() -> None:
    msg = parse_message(golden.INVITE_SDP)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.uri.user == "1001" and msg.uri.port == 5060
    assert msg.top_via.branch == "z9hG4bK776asdhds"
    assert msg.top_via.params["rport"] is None
    assert msg.from_.tag == "1928301774" and msg.from_.display == "Alice"
    assert msg.to.tag is None
    assert msg.cseq.seq == 314159 and msg.cseq.method == "INVITE"
    assert msg.call_id == "a84b4c76e66710@127.0.0.1"
    assert msg.max_forwards == 70
    assert msg.getall("Allow") == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "NOTIFY", "REFER"]
    assert msg.body.startswith(b"v=0\r\n") and len(msg.body) == 138


def test_response_parses_status_reason_and_record_route() -> None:
    msg = parse_message(golden.OK_200)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (200, "OK")
    assert [str(r.uri) for r in msg.record_routes] == ["sip:127.0.0.1;lr"]


def test_unparsed_message_serializes_byte_identical() -> None:
    for data in (golden.INVITE_SDP, golden.REGISTER, golden.OK_200):
        assert parse_message(data).serialize() == data


def test_bad_cseq_is_a_parse_error_carrying_a_request_for_400() -> None:
    data = golden.REGISTER.replace(b"CSeq: 1826 REGISTER", b"CSeq: x REGISTER")
    with pytest.raises(SIPParseError) as info:
        parse_message(data)
    assert info.value.request is not None
    assert info.value.request.get("Call-ID") == "843817637684230@998sdasdh09"


def test_stream_framer_splits_two_messages_and_skips_keepalives() -> None:
    framer = StreamFramer()
    data = b"\r\n\r\n" + golden.INVITE_SDP + b"\r\n" + golden.REGISTER
    out = framer.feed(data[:100]) + framer.feed(data[100:])
    assert out == [golden.INVITE_SDP, golden.REGISTER]
    assert framer.pending == 0


# ---------------------------------------------------------------------------
# the captured corpus

@pytest.mark.parametrize("name", sorted(golden.ALL))
def test_golden_message_parses_and_round_trips_typed_values(name: str) -> None:
    msg = parse_message(golden.ALL[name])
    assert msg.top_via.branch.startswith("z9hG4bK")
    assert msg.from_.tag and msg.call_id and msg.cseq.seq > 0
    back = parse_message(msg.serialize())
    assert back.vias == msg.vias and back.from_ == msg.from_ and back.to == msg.to
    assert back.cseq == msg.cseq and back.call_id == msg.call_id and back.contacts == msg.contacts
    assert back.body == msg.body


def test_sipp_padded_content_length_is_normalised_on_output() -> None:
    msg = parse_message(golden.SIPP_INVITE)
    assert msg.content_length == 129 == len(msg.body)
    assert b"\r\nContent-Length: 129\r\n" in msg.serialize()


def test_baresip_empty_supported_header_is_kept_and_empty_list() -> None:
    msg = parse_message(golden.BARESIP_INVITE)
    assert msg.getall("Supported") == [] and "Supported" in msg.headers
    assert msg.serialize() == golden.BARESIP_INVITE


# ---------------------------------------------------------------------------
# syntax variants

def test_compact_forms_folding_and_case_insensitive_names() -> None:
    data = (
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 127.0.0.1:5070\r\n ;branch=z9hG4bKf\r\n"
        b"f: <sip:a@127.0.0.1>;tag=1\r\nt: <sip:b@127.0.0.1>\r\ni: cid\r\n"
        b"cSeQ: 7\r\n\tOPTIONS\r\nm: <sip:a@127.0.0.1:5070>\r\nl: 0\r\n\r\n"
    )
    msg = parse_message(data)
    assert msg.top_via.branch == "z9hG4bKf" and msg.cseq == CSeq(7, "OPTIONS")
    assert msg.call_id == "cid" and msg.contacts[0].uri.port == 5070
    out = msg.serialize()
    assert b"\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKf\r\n" in out
    assert b"\r\nCSeq: 7 OPTIONS\r\n" in out
    assert b"\r\nCall-ID: cid\r\n" in out and b"\r\nContent-Length: 0\r\n" in out


def test_leading_crlf_and_bare_lf_line_ends_are_accepted() -> None:
    data = b"\r\n" + golden.REGISTER.replace(b"\r\n", b"\n")
    msg = parse_message(data)
    assert msg.method == "REGISTER" and msg.expires == 7200


def test_missing_content_length_takes_the_rest_of_the_datagram() -> None:
    data = golden.INVITE_SDP.replace(b"Content-Length: 138\r\n", b"")
    assert parse_message(data).body == golden.INVITE_SDP.split(b"\r\n\r\n", 1)[1]


def test_shorter_content_length_truncates_the_body() -> None:
    data = golden.INVITE_SDP.replace(b"Content-Length: 138", b"Content-Length: 3")
    assert parse_message(data).body == b"v=0"


def test_non_utf8_bytes_never_raise_unicode_errors_and_survive_round_trip() -> None:
    data = golden.REGISTER.replace(b"Expires: 7200", b"X-Junk: \xff\xfe\xc3")
    msg = parse_message(data)
    assert msg.serialize() == data


@pytest.mark.parametrize(
    "old, new, reason",
    [
        (b"CSeq: 1826 REGISTER", b"CSeq: 1826", "bad CSeq"),
        (b"Via: SIP/2.0/UDP 127.0.0.1:5062;rport;", b"Via: SIP/2.0/UDP 127.0.0.1:5062;;rport;", "bad Via parameter"),
        (b"From: <sip:1000@127.0.0.1>", b"From: <sip:1000@127.0.0.1", "unterminated <URI>"),
        (b"Content-Length: 0", b"Content-Length: 10", "Content-Length larger than the message"),
        (b"Content-Length: 0", b"Content-Length: -1", "bad Content-Length"),
        (b"Expires: 7200", b"Expires 7200", "header without colon"),
        (b"Max-Forwards: 70", b"Max-Forwards: 256", "bad Max-Forwards"),
        (b"REGISTER sip:127.0.0.1 SIP/2.0", b"REGISTER sip:127.0.0.1:x SIP/2.0", "bad URI port"),
        (b"Call-ID: 843817637684230@998sdasdh09", b"Call-ID: a b", "bad Call-ID"),
        (b"Expires: 7200", b"To: <sip:x@y>", "more than one to header"),
    ],
)
def test_syntax_errors_raise_with_a_best_effort_request(old: bytes, new: bytes, reason: str) -> None:
    assert old in golden.REGISTER
    with pytest.raises(SIPParseError) as info:
        parse_message(golden.REGISTER.replace(old, new))
    assert info.value.reason == reason and not info.value.fatal
    req = info.value.request
    assert req is not None and req.method == "REGISTER"
    assert req.get("Call-ID") is not None


def test_no_request_is_recovered_without_a_via() -> None:
    data = golden.REGISTER.replace(b"Via: SIP/2.0/UDP 127.0.0.1:5062;rport;branch=z9hG4bKnashds7\r\n", b"")
    with pytest.raises(SIPParseError) as info:
        parse_message(data.replace(b"CSeq: 1826", b"CSeq: x"))
    assert info.value.request is None


def test_broken_response_has_no_request() -> None:
    with pytest.raises(SIPParseError) as info:
        parse_message(golden.OK_200.replace(b"CSeq: 314159 INVITE", b"CSeq: INVITE"))
    assert info.value.request is None


@pytest.mark.parametrize(
    "data",
    [b"", b"\r\n\r\n", b"hello", b"SIP/2.0 2000 OK\r\n\r\n", b"SIP/2.0\r\n\r\n", b"INVITE sip:a@b\r\n\r\n",
     b"INVITE  sip:a@b SIP/2.0\r\n\r\n", b"INVITE sip:a@b SIP/2.0 \r\n\r\n", b"\x00\xff\r\n\r\n"],
)
def test_garbage_start_lines_raise_sip_parse_error(data: bytes) -> None:
    with pytest.raises(SIPParseError):
        parse_message(data)


@settings(max_examples=300, deadline=None)
@given(base=st.sampled_from(sorted(golden.ALL)), cut=st.integers(0, 2000),
       insert=st.binary(max_size=8), drop=st.integers(0, 6))
def test_mutated_messages_raise_only_sip_parse_error(base: str, cut: int, insert: bytes, drop: int) -> None:
    data = golden.ALL[base]
    cut %= len(data) + 1
    mutated = data[:cut] + insert + data[cut + drop:]
    try:
        msg = parse_message(mutated)
    except SIPParseError:
        return
    for attr in ("vias", "from_", "to", "cseq", "call_id", "contacts", "routes", "record_routes",
                 "max_forwards", "expires", "content_length"):
        try:
            getattr(msg, attr)
        except SIPParseError:
            pass
    try:
        parse_message(msg.serialize())
    except SIPParseError:
        pass


# ---------------------------------------------------------------------------
# stream framing

def test_framer_reassembles_a_message_fed_byte_by_byte() -> None:
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(golden.SIPP_INVITE)):
        out += framer.feed(golden.SIPP_INVITE[i:i + 1])
        if i < len(golden.SIPP_INVITE) - 1:
            assert out == []
    assert out == [golden.SIPP_INVITE] and framer.pending == 0


def test_framer_reports_pending_partial_bytes() -> None:
    framer = StreamFramer()
    assert framer.feed(golden.REGISTER[:50]) == [] and framer.pending == 50
    assert framer.feed(b"") == [] and framer.pending == 50


def test_framer_understands_the_compact_content_length() -> None:
    data = golden.INVITE_SDP.replace(b"Content-Length: 138", b"l: 138")
    assert StreamFramer().feed(data + data) == [data, data]


@pytest.mark.parametrize(
    "data, reason",
    [
        (golden.REGISTER.replace(b"Content-Length: 0\r\n", b""), "missing Content-Length on a stream"),
        (golden.REGISTER.replace(b"Content-Length: 0", b"Content-Length: x"), "bad Content-Length"),
        (golden.REGISTER.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 5"), "conflicting Content-Length headers"),
        (golden.REGISTER.replace(b"Content-Length: 0", b"Content-Length: 70000"), "message too large"),
        (b"INVITE sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 4000, "header section too large"),
    ],
)
def test_framing_errors_are_fatal(data: bytes, reason: str) -> None:
    with pytest.raises(SIPParseError) as info:
        StreamFramer().feed(data)
    assert info.value.fatal and info.value.reason == reason


def test_framer_max_message_size_is_configurable() -> None:
    framer = StreamFramer(max_message_size=300)
    with pytest.raises(SIPParseError):
        framer.feed(golden.INVITE_SDP)
    assert StreamFramer(max_message_size=len(golden.INVITE_SDP)).feed(golden.INVITE_SDP) == [golden.INVITE_SDP]


def test_framer_is_empty_after_a_fatal_error_even_when_one_chunk_overflows_it() -> None:
    # found by hypothesis (test_fuzz_parsers): 1 byte, then a chunk that takes the
    # buffer past max_message_size left max_message_size + 1 bytes pending
    framer = StreamFramer(max_message_size=300)
    framer.feed(golden.INVITE_SDP[:1])
    with pytest.raises(SIPParseError) as info:
        framer.feed(golden.INVITE_SDP[1:])
    assert info.value.fatal and framer.pending == 0
