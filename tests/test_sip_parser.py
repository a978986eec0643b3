"""Tests of pbxd.sip.parser: datagram parsing, errors and stream framing."""

from __future__ import annotations

import pytest

from pbxd.errors import SIPParseError
from pbxd.sip.message import Request, Response
from pbxd.sip.parser import StreamFramer, parse_message
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
