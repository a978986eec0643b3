"""pbxd.sip.validation: RFC 3261 §8.2 checks in order, and RFC 3581 Via stamping."""

from __future__ import annotations

import pytest

from pbxd.sip.message import Request
from pbxd.sip.parser import parse_message
from pbxd.sip.validation import check_request, same_host, stamp_via

GOOD = (
    "OPTIONS sip:pbx.example.org SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:1000@pbx.example.org>;tag=a1\r\n"
    "To: <sip:pbx.example.org>\r\n"
    "Call-ID: c1@192.0.2.10\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)

SERVED = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS")


def req(text: str = GOOD, **replace: str):
    """Parse ``text`` after replacing whole header lines: name=None removes one."""
    for old, new in replace.items():
        text = text.replace(old.replace("_", "-"), new)
    return parse_message(text.encode())


def build(text: str) -> Request:
    """A Request made directly from ``text`` (no parser checks): for inputs the parser refuses."""
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    method, uri, version = head[0].split(" ")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in head[1:]]
    return Request(method, uri, headers, version=version)


def check(request, **kw):
    kw.setdefault("served_methods", SERVED)
    kw.setdefault("supported", ("path",))
    return check_request(request, **kw)


def test_valid_request_passes():
    assert check(req()) is None


def test_bad_version_is_505():
    response = check(req(GOOD.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia")))
    assert response.status == 505


def test_unknown_scheme_is_416():
    response = check(req(GOOD.replace("OPTIONS sip:pbx.example.org", "OPTIONS unknownscheme:xyz")))
    assert response.status == 416


@pytest.mark.parametrize("scheme_uri", ["sips:pbx.example.org", "tel:+15551234567"])
def test_sips_and_tel_are_accepted(scheme_uri):
    assert check(req(GOOD.replace("sip:pbx.example.org SIP", f"{scheme_uri} SIP"))) is None


def test_require_with_an_unterminated_quote_is_400_not_an_exception():
    text = GOOD.replace("Max-Forwards", 'Require: "path, foo\r\nMax-Forwards')
    response = check(req(text))
    assert response.status == 400 and "Require" in response.reason


def test_unknown_require_is_420_listing_only_unknown_tags():
    text = GOOD.replace("Max-Forwards", "Require: path, foo, Bar\r\nMax-Forwards")
    response = check(req(text))
    assert response.status == 420
    assert response.getall("Unsupported") == ["foo", "Bar"]


def test_require_is_ignored_on_cancel():
    text = GOOD.replace("OPTIONS", "CANCEL").replace("Max-Forwards", "Require: foo\r\nMax-Forwards")
    assert check(req(text)) is None


def test_max_forwards_zero_is_483_even_for_options():
    response = check(req(GOOD.replace("Max-Forwards: 70", "Max-Forwards: 0")))
    assert response.status == 483


def test_missing_max_forwards_is_accepted_for_rfc2543_clients():
    assert check(req(GOOD.replace("Max-Forwards: 70\r\n", ""))) is None


def test_garbage_max_forwards_is_400():
    assert check(build(GOOD.replace("Max-Forwards: 70", "Max-Forwards: many"))).status == 400


@pytest.mark.parametrize("header", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_mandatory_header_is_400_naming_it(header):
    lines = [line for line in GOOD.split("\r\n") if not line.startswith(header + ":")]
    response = check(parse_message("\r\n".join(lines).encode()))
    assert response.status == 400
    assert header in response.reason


@pytest.mark.parametrize("header", ["From: <sip:x@y>;tag=9", "Call-ID: other", "CSeq: 2 OPTIONS"])
def test_repeated_single_header_is_400(header):
    text = GOOD.replace("Content-Length", header + "\r\nContent-Length")
    response = check(build(text))
    assert response.status == 400
    assert "Multiple" in response.reason


def test_cseq_method_mismatch_is_400():
    response = check(req(GOOD.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE")))
    assert response.status == 400
    assert "CSeq" in response.reason


def test_unknown_method_is_501():
    text = GOOD.replace("OPTIONS", "FOOBAR")
    assert check(req(text)).status == 501


def test_known_but_unserved_method_is_405_with_allow():
    text = GOOD.replace("OPTIONS", "SUBSCRIBE")
    response = check(req(text))
    assert response.status == 405
    assert response.getall("Allow") == list(SERVED)


def test_allow_header_can_differ_from_served():
    text = GOOD.replace("OPTIONS", "MESSAGE")
    response = check(req(text), allowed_methods=("INVITE", "BYE"))
    assert response.getall("Allow") == ["INVITE", "BYE"]


def test_first_failing_check_wins_505_before_416():
    text = GOOD.replace("OPTIONS sip:pbx.example.org SIP/2.0", "OPTIONS foo:bar SIP/3.0")
    assert check(req(text)).status == 505


def test_first_failing_check_wins_416_before_483():
    text = GOOD.replace("sip:pbx.example.org SIP", "foo:bar SIP").replace(
        "Max-Forwards: 70", "Max-Forwards: 0"
    )
    assert check(req(text)).status == 416


def test_first_failing_check_wins_420_before_483():
    text = GOOD.replace("Max-Forwards: 70", "Max-Forwards: 0\r\nRequire: foo")
    assert check(req(text)).status == 420


def test_first_failing_check_wins_483_before_400():
    text = GOOD.replace("Max-Forwards: 70", "Max-Forwards: 0").replace("CSeq: 1 OPTIONS", "CSeq: 1 BYE")
    assert check(req(text)).status == 483


def test_first_failing_check_wins_400_before_501():
    text = GOOD.replace("OPTIONS", "FOOBAR").replace("CSeq: 1 FOOBAR", "CSeq: 1 BAR")
    assert check(req(text)).status == 400


def test_first_failing_check_wins_501_before_405():
    text = GOOD.replace("OPTIONS", "FOOBAR")
    assert check(req(text), served_methods=("INVITE",)).status == 501


def test_error_response_carries_to_tag_and_copies_dialog_headers():
    response = check(req(GOOD.replace("OPTIONS", "FOOBAR")), to_tag="t42")
    assert response.to.tag == "t42"
    assert response.call_id == "c1@192.0.2.10"
    assert response.top_via.branch == "z9hG4bK-1"


def test_stamp_via_adds_received_when_host_differs():
    request = req()
    stamp_via(request, ("203.0.113.5", 40000))
    assert request.top_via.params["received"] == "203.0.113.5"
    assert "rport" not in request.top_via.params
    assert b";received=203.0.113.5" in request.serialize()


def test_stamp_via_leaves_matching_host_alone():
    request = req()
    stamp_via(request, ("192.0.2.10", 5060))
    assert "received" not in request.top_via.params


def test_stamp_via_fills_bare_rport_and_always_adds_received():
    request = req(GOOD.replace("branch=z9hG4bK-1", "rport;branch=z9hG4bK-1"))
    stamp_via(request, ("192.0.2.10", 33333))
    via = request.top_via
    assert via.params["rport"] == "33333"
    assert via.params["received"] == "192.0.2.10"


def test_stamp_via_keeps_an_rport_that_has_a_value():
    request = req(GOOD.replace("branch=z9hG4bK-1", "rport=5070;branch=z9hG4bK-1"))
    stamp_via(request, ("192.0.2.10", 33333))
    assert request.top_via.params["rport"] == "5070"


def test_stamp_via_compares_ipv6_forms():
    text = GOOD.replace("192.0.2.10:5060", "[2001:db8:0:0::1]:5060")
    request = req(text)
    stamp_via(request, ("2001:db8::1", 5060))
    assert "received" not in request.top_via.params


def test_same_host_handles_mapped_ipv4():
    assert same_host("::ffff:192.0.2.1", "192.0.2.1")
    assert not same_host("192.0.2.1", "192.0.2.2")
