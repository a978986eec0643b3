"""Tests of pbxd.sip.headers and pbxd.sip.message: headers, typed values, make_response."""

from __future__ import annotations

import pytest

from pbxd.errors import SIPParseError
from pbxd.sip.headers import Headers, canonical_name, split_list
from pbxd.sip.message import REASONS, Request, Response, make_response
from pbxd.sip.parser import parse_message
from pbxd.sip.uri import URI, CSeq, NameAddr, Via
from tests import sipmessages as golden


def test_compact_names_expand_and_output_canonical() -> None:
    h = Headers([("v", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("i", "abc"), ("l", "0"), ("CALL-id", "x")])
    assert h.getall("Call-ID") == ["abc", "x"]
    assert [name for name, _ in h] == ["Via", "Call-ID", "Content-Length", "Call-ID"]
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("X-Custom-thing") == "X-Custom-thing"


def test_list_headers_split_outside_quotes_and_angle_brackets() -> None:
    value = '"Doe, John" <sip:j@a;x=1,2>;q=0.5, <sip:k@b>'
    assert split_list(value) == ['"Doe, John" <sip:j@a;x=1,2>;q=0.5', "<sip:k@b>"]
    h = Headers([("Contact", value), ("Contact", "<sip:l@c>")])
    assert len(h.getall("contact")) == 3
    assert h.get("Contact") == '"Doe, John" <sip:j@a;x=1,2>;q=0.5'


def test_authentication_and_date_headers_are_never_split() -> None:
    auth = 'Digest username="1000", realm="pbxd", nonce="a,b", uri="sip:x", response="y"'
    h = Headers([("Authorization", auth), ("WWW-Authenticate", auth), ("Date", "Sat, 13 Nov 2010 23:29:00 GMT")])
    assert h.getall("authorization") == [auth]
    assert h.getall("www-authenticate") == [auth]
    assert h.get("date") == "Sat, 13 Nov 2010 23:29:00 GMT"


def test_set_replaces_all_at_first_position_add_first_and_remove() -> None:
    h = Headers([("Via", "v1"), ("Route", "<sip:r1>"), ("Via", "v2")])
    h.add("Via", "v0", first=True)
    assert h.getall("Via") == ["v0", "v1", "v2"]
    h.set("via", "only")
    assert [(n, v) for n, v in h] == [("Via", "only"), ("Route", "<sip:r1>")]
    h.remove("ROUTE")
    assert "Route" not in h and h.getall("Route") == []
    assert h.get("Route", "none") == "none"


def test_typed_values_are_cached_and_mutation_drops_the_cache() -> None:
    msg = parse_message(golden.INVITE_SDP)
    assert msg.to is msg.to
    msg.set("To", "<sip:carol@example.com>;tag=zz")
    assert msg.to.uri.user == "carol" and msg.to.tag == "zz"
    msg.add("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKtop", first=True)
    assert [v.host for v in msg.vias] == ["proxy.example.com", "127.0.0.1"]


def test_changes_to_a_typed_via_are_serialized_and_copied_into_responses() -> None:
    msg = parse_message(golden.INVITE_SDP)
    msg.top_via.params["received"] = "127.0.0.2"
    msg.top_via.params["rport"] = "5062"
    wire = parse_message(msg.serialize())
    assert wire.top_via.params["received"] == "127.0.0.2" and wire.top_via.params["rport"] == "5062"
    resp = parse_message(make_response(msg, 486).serialize())
    assert resp.top_via.params["received"] == "127.0.0.2"
    assert msg.get("Via") == "SIP/2.0/UDP 127.0.0.1:5062;rport=5062;branch=z9hG4bK776asdhds;received=127.0.0.2"


def test_absent_headers_give_none_or_empty_lists() -> None:
    msg = Request("OPTIONS", "sip:127.0.0.1")
    assert msg.top_via is None and msg.vias == [] and msg.from_ is None and msg.to is None
    assert msg.cseq is None and msg.call_id is None and msg.contacts == [] and msg.routes == []
    assert msg.max_forwards is None and msg.expires is None and msg.content_length == 0
    assert msg.contact_star is False


def test_malformed_value_raises_sip_parse_error_on_access() -> None:
    msg = Request("OPTIONS", "sip:127.0.0.1", [("Route", "<sip:a")])
    with pytest.raises(SIPParseError):
        _ = msg.routes


def test_contact_star_and_expires() -> None:
    msg = Request("REGISTER", "sip:127.0.0.1", [("Contact", "*"), ("Expires", "0")])
    assert msg.contact_star and msg.contacts == [] and msg.expires == 0
    msg.set("Expires", "99999999999")
    assert msg.expires == 2**32 - 1
    msg.set("Expires", "Sat, 01 Jan 2000 00:00:00 GMT")
    assert msg.expires is None


def test_built_request_serializes_with_content_length_and_reparses() -> None:
    req = Request("INVITE", URI.parse("sip:1001@127.0.0.1"), body=b"v=0\r\n")
    req.add("Via", Via("UDP", "127.0.0.1", 5070, {"branch": "z9hG4bKabc", "rport": None}))
    req.from_ = NameAddr(URI.parse("sip:1000@127.0.0.1"), "Alice", {"tag": "t1"})
    req.to = NameAddr(URI.parse("sip:1001@127.0.0.1"))
    req.call_id = "cid@127.0.0.1"
    req.cseq = CSeq(1, "INVITE")
    req.set("Content-Type", "application/sdp")
    data = req.serialize()
    assert data.startswith(b"INVITE sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;")
    assert b"\r\nContent-Length: 5\r\n\r\nv=0\r\n" in data
    back = parse_message(data)
    assert back.from_ == req.from_ and back.cseq == req.cseq and back.body == b"v=0\r\n"


def test_serialize_rewrites_content_length_from_the_body() -> None:
    msg = parse_message(golden.INVITE_SDP)
    msg.body = b"x"
    assert b"\r\nContent-Length: 1\r\n" in msg.serialize()
    assert msg.serialize().count(b"Content-Length") == 1


def test_response_default_reasons() -> None:
    assert Response(486).reason == "Busy Here"
    assert Response(499).reason == "Request Failure"
    assert Response(200, "Answering").reason == "Answering"
    assert REASONS[481] == "Call/Transaction Does Not Exist"


def test_make_response_copies_dialog_headers_and_adds_to_tag() -> None:
    req = parse_message(golden.INVITE_SDP.replace(b"Max-Forwards: 70\r\n", b"Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nMax-Forwards: 70\r\n"))
    resp = make_response(req, 180, to_tag="abc")
    wire = parse_message(resp.serialize())
    assert (wire.status, wire.reason) == (180, "Ringing")
    assert wire.to.tag == "abc" and wire.from_.tag == "1928301774"
    assert wire.call_id == req.call_id and wire.cseq == req.cseq
    assert [str(v) for v in wire.vias] == [str(v) for v in req.vias]
    assert [str(r.uri) for r in wire.record_routes] == ["sip:p1;lr", "sip:p2;lr"]
    assert wire.body == b"" and wire.get("Content-Length") == "0"


def test_make_response_leaves_existing_tag_and_gives_100_no_tag() -> None:
    req = parse_message(golden.INVITE_SDP)
    assert make_response(req, 100, to_tag="abc").to.tag is None
    req.set("To", "<sip:1001@127.0.0.1>;tag=mine")
    assert make_response(req, 200, to_tag="abc").to.tag == "mine"


def test_make_response_to_register_has_no_record_route_and_takes_a_body() -> None:
    req = parse_message(golden.REGISTER.replace(b"Expires", b"Record-Route: <sip:x;lr>\r\nExpires"))
    resp = make_response(req, 200, to_tag="t", body=b"hello", content_type="text/plain")
    assert resp.getall("Record-Route") == []
    wire = parse_message(resp.serialize())
    assert wire.body == b"hello" and wire.content_type == "text/plain"


def test_make_response_works_on_the_best_effort_request_of_a_parse_error() -> None:
    bad = golden.INVITE_SDP.replace(b"CSeq: 314159 INVITE", b"CSeq: 99999999999 INVITE")
    with pytest.raises(SIPParseError) as info:
        parse_message(bad)
    resp = make_response(info.value.request, 400, info.value.reason, to_tag="x")
    wire = resp.serialize()
    assert wire.startswith(b"SIP/2.0 400 CSeq number too large\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;")
    assert b"\r\nCSeq: 99999999999 INVITE\r\n" in wire and b";tag=x" in wire
