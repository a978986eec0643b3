"""parse_message reads a message without errors in one pass (pbxd.sip.parser._parse_fast)
and falls back to the step-by-step parse otherwise: both give the same message, and
every message the one-pass parse refuses gets the step-by-step error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbxd.errors import SIPParseError
from pbxd.sip import parser
from tests import sipmessages
from tests.conftest import sip_corpus

SEEDS = sip_corpus()


def _slow(data: bytes) -> Any:
    """parse_message with the one-pass parse switched off."""
    fast = parser._parse_fast

    def refuse(*_: Any) -> Any:
        raise parser._Unusual

    parser._parse_fast = refuse  # type: ignore[assignment]
    try:
        return parser.parse_message(data)
    finally:
        parser._parse_fast = fast  # type: ignore[assignment]


def _outcome(parse: Any, data: bytes) -> Any:
    try:
        msg = parse(data)
    except SIPParseError as e:
        req = e.request
        return ("error", e.reason, e.status, e.fatal,
                None if req is None else (req.method, req.uri_text, req.headers.entries))
    typed = {k: ([str(x) for x in v] if isinstance(v, list) else str(v))
             for k, v in msg.headers.typed.items()}
    return (type(msg).__name__, msg.start_line(), msg.headers.entries, typed, msg.body,
            sorted(msg.headers.live), getattr(msg, "_uri_raw", None),
            str(msg._uri) if getattr(msg, "_uri", None) is not None else None,
            msg.serialize())


def _same(data: bytes) -> None:
    for _ in range(2):  # the second time with the caches filled
        assert _outcome(parser.parse_message, data) == _outcome(_slow, data)


@pytest.mark.parametrize("data", SEEDS)
def test_corpus_parses_the_same_both_ways(data: bytes) -> None:
    _same(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    tokens = [b"\r\n", b"\n", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"%", b"\x00",
              b"\xff", b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n", b"l: 0\r\n", b"To: <sip:a@b>\r\n",
              b"X-Odd: 1\r\n", b"Contact: *\r\n", b"CSeq: 1 ACK\r\n", b"Max-Forwards: 300\r\n",
              b"Call-ID: \x0b\r\n", b"v: a, b\r\n", b"Content-Length: 0\r\nContent-Length: 0\r\n"]
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.integers(0, 2))
        if op == 0:
            data[pos:pos] = draw(st.sampled_from(tokens))
        elif op == 1:
            del data[pos:pos + draw(st.integers(1, 20))]
        elif pos < len(data):
            data[pos] ^= draw(st.integers(1, 255))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_parse_the_same_both_ways(data: bytes) -> None:
    _same(data)


def _check_outcome(msg: Any) -> Any:
    from pbxd.sip.validation import check_request

    try:
        response = check_request(msg, supported=("path",), served_methods=("INVITE", "ACK", "BYE"),
                                 to_tag="t")
    except SIPParseError as e:  # a Require with an unbalanced quote (as before)
        return ("raised", e.reason)
    return None if response is None else (response.status, response.reason, response.serialize())


def _checked_same(data: bytes) -> None:
    """check_request answers a parsed request (whose header counts it takes from the
    parse) as it answers the same request with them counted again."""
    try:
        msg = parser.parse_message(data)
    except SIPParseError:
        return
    if not hasattr(msg, "method"):
        return
    assert msg.headers.checked
    fast = _check_outcome(msg)
    fast_live = sorted(msg.headers.live)
    msg = parser.parse_message(data)  # afresh: check_request may leave typed values live
    msg.headers.checked = False
    assert _check_outcome(msg) == fast
    assert sorted(msg.headers.live) == fast_live  # the values it read are live either way


@pytest.mark.parametrize("data", SEEDS)
def test_corpus_is_checked_the_same_both_ways(data: bytes) -> None:
    _checked_same(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_requests_are_checked_the_same_both_ways(data: bytes) -> None:
    _checked_same(data)


def test_any_change_to_the_headers_clears_checked() -> None:
    data = sipmessages.INVITE_SDP
    for change in (lambda m: m.add("From", "<sip:x@y>;tag=2"), lambda m: m.set("CSeq", "1 BYE"),
                   lambda m: m.remove("Call-ID"), lambda m: m.add("Via", "SIP/2.0/UDP h", first=True)):
        msg = parser.parse_message(data)
        assert msg.headers.checked
        change(msg)
        assert not msg.headers.checked
    msg = parser.parse_message(data)
    msg.add("From", "<sip:x@y>;tag=2")
    assert _check_outcome(msg)[:2] == (400, "Multiple From headers")


def _responses(msg: Any) -> list[bytes]:
    from pbxd.sip.message import make_response

    out = []
    for status in (100, 180, 200, 407, 486):
        response = make_response(msg, status, to_tag="t1",
                                 content_type="application/sdp" if status == 200 else None)
        out.append(response.serialize())
    return out


def _responded_same(data: bytes) -> None:
    """make_response to a parsed request whose Via, From, To and CSeq were read (as the
    controller does) writes the renderings of those values without looking at the lines
    (pbxd.sip.headers.Headers.plain): the same response as the general path."""
    try:
        msg = parser.parse_message(data)
        if not hasattr(msg, "method"):
            return
        msg.top_via, msg.from_, msg.to, msg.cseq  # noqa: B018
    except SIPParseError:
        return
    fast = _responses(msg)
    plain = msg.headers.plain
    msg.headers.plain = False  # the general path
    assert _responses(msg) == fast
    msg.headers.plain = plain
    assert _responses(msg) == fast


@pytest.mark.parametrize("data", SEEDS)
def test_corpus_gets_the_same_responses_both_ways(data: bytes) -> None:
    _responded_same(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_requests_get_the_same_responses_both_ways(data: bytes) -> None:
    _responded_same(data)


def test_record_route_and_timestamp_make_a_request_not_plain() -> None:
    from pbxd.sip.message import make_response

    data = sipmessages.INVITE_SDP
    msg: Any = parser.parse_message(data)
    assert msg.headers.plain
    for extra, status, copied in ((b"Record-Route: <sip:p.example;lr>\r\n", 180, "Record-Route"),
                                  (b"Timestamp: 54\r\n", 100, "Timestamp")):
        msg = parser.parse_message(data.replace(b"\r\n", b"\r\n" + extra, 1))
        assert msg.headers.checked and not msg.headers.plain
        msg.top_via, msg.from_, msg.to, msg.cseq  # noqa: B018
        assert make_response(msg, status, to_tag="t").get(copied) is not None


@pytest.mark.parametrize("data", SEEDS)
def test_serialize_writes_lines_as_they_are_whatever_else_is_live(data: bytes) -> None:
    try:
        msg = parser.parse_message(data)
    except SIPParseError:
        return
    msg.headers.entries.insert(1, ("x-empty", "X-Empty", ""))  # written as "X-Empty:"
    quick = msg.serialize()
    assert b"\r\nX-Empty:\r\n" in quick
    msg.headers.live = {"x-not-there"}  # a live key with no line: nothing else changes
    assert msg.serialize() == quick
