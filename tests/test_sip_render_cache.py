"""URI, NameAddr and Via keep the text they were parsed from and give it back from
``str()`` while their values are unchanged: whatever is done to them, ``str()`` is
what rendering the current values gives (the objects built by the constructors,
which keep no text, are the reference)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxd.errors import SIPParseError
from pbxd.sip.headers import split_list
from pbxd.sip.parser import parse_message
from pbxd.sip.uri import URI, CSeq, NameAddr, Via
from tests import sipmessages
from tests.conftest import sip_corpus


def _fresh_uri(u: URI) -> URI:
    uri = URI(u.scheme, u.user, u.host, u.port, dict(u.params), dict(u.headers), u.password,
              u.opaque)
    uri.scheme = u.scheme  # as it is, even if not lower case
    return uri


def ref_uri(u: URI) -> str:
    return str(_fresh_uri(u))


def ref_nameaddr(n: NameAddr) -> str:
    return str(NameAddr(_fresh_uri(n.uri), n.display, dict(n.params)))


def ref_via(v: Via) -> str:
    return str(Via(v.transport, v.host, v.port, dict(v.params), v.protocol))


def _values() -> tuple[list[str], list[str], list[str]]:
    uris, addrs, vias = [
        "sip:1000@127.0.0.1", "sip:1000@127.0.0.1:5060;transport=UDP", "sip:a@B.example.com",
        "sip:a@h:05060", "sip:a@h;LR", "sip:a@h;lr;lr=1", "sips:a:pw@h;x=1;y", "sip:h",
    ], [
        "<sip:1000@127.0.0.1>;tag=1", '"Alice" <sip:a@h>;tag=x;TAG=y', "Bob <sip:b@h>",
        "<sip:a@H>", "sip:a@h;tag=1", '"A\x7f" <sip:a@h>', "<sip:a@h>;q=0.5;expires=60",
        '<sip:a@h>;p="x;y"', "<tel:+123>;tag=1", "  <sip:a@h> ;tag=1",
        "<sip:a@h>;tag=abc", "<sip:a@h>;tag=ab;c", "<sip:a@h>;tag=a-b", "<sip:a@h>;tag=",
        "<sip:a@h>;tag=\u00e9t\u00e9", "Bob <sip:a@h>;tag=x1", "<sip:a@h>;tag=x ",
    ], [
        "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport", "SIP/2.0/udp H:5060;branch=z",
        "SIP/2.0/UDP h:05060", "SIP/2.0/UDP h;BRANCH=1;branch=2", "SIP / 2.0 / UDP h ; branch=1",
        "SIP/2.0/TCP [::1]:5060;branch=z9hG4bK1", "SIP/2.0/UDP h;received=1.2.3.4;rport=5",
        "SIP/2.0/UDP h:5060;branch=z9hG4bK-1-2;rport", "SIP/2.0/UDP h;branch=a;branch=b",
        "SIP/2.0/UDP h;branch=x;RPORT", "SIP/2.0/UDP h;branch=;rport", "SIP/2.0/UDP h;branch=a b",
        "SIP/2.0/UDP h;branch=z9hG4bKabc;received=1.2.3.4;rport=5", "SIP/2.0/UDP h;branch=a,b",
        "SIP/2.0/UDP h;branch=\u00e9;rport", "SIP/2.0/UDP h;branch=a;rport;rport",
    ]
    for data in sip_corpus():
        try:
            msg = parse_message(data)
        except SIPParseError:
            continue
        for key, _, value in msg.headers.entries:
            if key == "via":
                vias += split_list(value) if '"' not in value else [value]
            elif key in ("from", "to", "contact", "route", "record-route"):
                addrs += split_list(value) if key in ("contact", "route", "record-route") else [value]
        if hasattr(msg, "uri_text"):
            uris.append(msg.uri_text)
    return uris, addrs, vias


URIS, ADDRS, VIAS = _values()


def _parsed(parse: Any, texts: list[str]) -> list[Any]:
    out = []
    for text in texts:
        try:
            out.append(parse(text))
        except SIPParseError:
            pass
    return out


@pytest.mark.parametrize("text", URIS)
def test_parsed_uri_renders_as_its_values(text: str) -> None:
    for _ in range(2):  # parsed, then from the parse cache
        try:
            uri = URI.parse(text)
        except SIPParseError:
            return
        assert str(uri) == ref_uri(uri)
        assert str(uri.copy()) == ref_uri(uri)


@pytest.mark.parametrize("text", ADDRS)
def test_parsed_nameaddr_renders_as_its_values(text: str) -> None:
    for _ in range(2):
        try:
            na = NameAddr.parse(text)
        except SIPParseError:
            return
        assert str(na) == ref_nameaddr(na)
        assert str(na.copy()) == ref_nameaddr(na)
        tagged = na.copy()
        tagged.params["tag"] = "t1"
        assert na.with_tag("t1") == str(tagged)


@pytest.mark.parametrize("text", VIAS)
def test_parsed_via_renders_as_its_values(text: str) -> None:
    try:
        via = Via.parse(text)
    except SIPParseError:
        return
    assert str(via) == ref_via(via)
    assert str(via.copy()) == ref_via(via)


EDITS = st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["a", "b", "tag", "lr", "Q"]),
                           st.sampled_from([None, "1", "x", "UDP"])), max_size=5)


def _edit_params(params: dict[str, Any], op: int, key: str, value: Any) -> None:
    if op == 0:
        params[key] = value
    elif op == 1:
        params.pop(key, None)
    elif op == 2 and params:  # re-insert the first one last (same dict, new order)
        first = next(iter(params))
        params[first] = params.pop(first)
    elif op == 3:
        params.clear()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(URIS), EDITS, st.integers(0, 6))
def test_edited_uri_renders_as_its_values(text: str, edits: list[Any], field: int) -> None:
    try:
        uri = URI.parse(text)
    except SIPParseError:
        return
    for op, key, value in edits:
        _edit_params(uri.params, op, key, value)
        assert str(uri) == ref_uri(uri)
    if field == 1:
        uri.user = "someone"
    elif field == 2:
        uri.host = "example.org"
    elif field == 3:
        uri.port = 5070 if uri.port != 5070 else 5071
    elif field == 4:
        uri.headers["Subject"] = "x"
    elif field == 5:
        uri.password = "pw"
    elif field == 6:
        uri.scheme = "sips" if uri.scheme != "sips" else "sip"
    assert str(uri) == ref_uri(uri)
    dup = uri.copy()
    dup.params["copy"] = None
    assert str(uri) == ref_uri(uri) and str(dup) == ref_uri(dup)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ADDRS), EDITS, EDITS, st.integers(0, 4))
def test_edited_nameaddr_renders_as_its_values(text: str, edits: list[Any], uri_edits: list[Any],
                                               field: int) -> None:
    try:
        na = NameAddr.parse(text)
    except SIPParseError:
        return
    for op, key, value in edits:
        _edit_params(na.params, op, key, value)
        assert str(na) == ref_nameaddr(na)
    for op, key, value in uri_edits:
        _edit_params(na.uri.params, op, key, value)
        assert str(na) == ref_nameaddr(na)
    if field == 1:
        na.display = "Carol" if na.display != "Carol" else None
    elif field == 2:
        na.uri = URI.parse("sip:other@example.org")
    elif field == 3:
        na.uri.user = "x"
    elif field == 4:
        na.uri.host = "example.net"
    assert str(na) == ref_nameaddr(na)
    assert na.with_tag("zz").endswith("zz") or "tag" in na.params
    dup = na.copy()
    dup.params["copy"] = "1"
    assert str(na) == ref_nameaddr(na) and str(dup) == ref_nameaddr(dup)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VIAS), EDITS, st.integers(0, 4))
def test_edited_via_renders_as_its_values(text: str, edits: list[Any], field: int) -> None:
    try:
        via = Via.parse(text)
    except SIPParseError:
        return
    for op, key, value in edits:
        _edit_params(via.params, op, key, value)
        assert str(via) == ref_via(via)
    if field == 1:
        via.host = "example.org"
    elif field == 2:
        via.port = 5070 if via.port != 5070 else 5071
    elif field == 3:
        via.transport = "TLS" if via.transport != "TLS" else "TCP"
    elif field == 4:
        via.protocol = "SIP/3.0"
    assert str(via) == ref_via(via)
    dup = via.copy()
    dup.params["received"] = "192.0.2.1"
    assert str(via) == ref_via(via) and str(dup) == ref_via(dup)


def test_parse_caches_give_independent_objects() -> None:
    a = NameAddr.parse("<sip:1000@127.0.0.1:5060;transport=UDP>;expires=60")
    b = NameAddr.parse("<sip:1000@127.0.0.1:5060;transport=UDP>;expires=60")
    assert a == b and a is not b and a.uri is not b.uri and a.params is not b.params
    a.params["expires"] = "0"
    a.uri.params["transport"] = "TCP"
    assert str(b) == "<sip:1000@127.0.0.1:5060;transport=UDP>;expires=60"
    assert str(a) == "<sip:1000@127.0.0.1:5060;transport=TCP>;expires=0"
    c, d = CSeq.parse("1 INVITE"), CSeq.parse("1 INVITE")
    c.seq = 2
    assert (d.seq, d.method) == (1, "INVITE")
    with pytest.raises(SIPParseError):
        URI.parse("sip:a@h:70000")
    with pytest.raises(SIPParseError):
        URI.parse("sip:a@h:70000")  # errors are never cached


@pytest.mark.parametrize("to", ["<sip:1001@127.0.0.1>", 'Bob <sip:b@H>;x=1', "<sip:a@h>;tag", "sip:a@h"])
def test_make_response_to_a_request_whose_to_was_read_adds_the_tag_to_its_rendering(to: str) -> None:
    from pbxd.sip.message import make_response

    data = sipmessages.INVITE_SDP.replace(b'To: "Bob" <sip:1001@127.0.0.1>', b"To: " + to.encode())
    read = parse_message(data)
    value = read.to
    assert value is not None
    tagged = value.copy()
    tagged.params["tag"] = "abc"
    assert make_response(read, 180, to_tag="abc").get("To") == str(tagged)
    assert make_response(read, 100, to_tag="abc").get("To") == str(value)


def _general(parse: Any, text: str) -> Any:
    """``parse(text)`` by the general code: the fast paths' caches empty and refusing."""
    from pbxd.sip import uri as urimod

    saved = (urimod._via_head, urimod._parse_fast_nameaddr, urimod._parse_fast_uri)
    caches: tuple[dict[str, Any], ...] = (urimod._VIA_HEADS, urimod._NAMEADDR_CACHE,
                                          urimod._URI_CACHE)
    kept = [dict(c) for c in caches]
    for c in caches:
        c.clear()
    refuse: Any = lambda *_: None  # noqa: E731
    urimod._via_head = urimod._parse_fast_nameaddr = urimod._parse_fast_uri = refuse
    try:
        return parse(text)
    finally:
        urimod._via_head, urimod._parse_fast_nameaddr, urimod._parse_fast_uri = saved
        for c, k in zip(caches, kept, strict=True):
            c.update(k)


def _outcome(parse: Any, text: str, fields: Any) -> Any:
    try:
        value = parse(text)
    except SIPParseError as e:
        return ("error", e.reason)
    return fields(value), str(value)


def _via_fields(v: Via) -> Any:
    return v.protocol, v.transport, v.host, v.port, list(v.params.items())


def _nameaddr_fields(n: NameAddr) -> Any:
    u = n.uri
    return (n.display, list(n.params.items()), u.scheme, u.user, u.password, u.host, u.port,
            list(u.params.items()), u.headers, u.opaque)


@pytest.mark.parametrize("text", VIAS)
def test_via_fast_paths_give_the_values_of_the_general_parse(text: str) -> None:
    general = _general(lambda t: _outcome(Via.parse, t, _via_fields), text)
    for _ in range(2):  # parsed, then with the caches filled
        fast = _outcome(Via.parse, text, _via_fields)
        assert fast[0] == general[0]


@pytest.mark.parametrize("text", ADDRS)
def test_nameaddr_fast_paths_give_the_values_of_the_general_parse(text: str) -> None:
    general = _general(lambda t: _outcome(NameAddr.parse, t, _nameaddr_fields), text)
    for _ in range(2):
        fast = _outcome(NameAddr.parse, text, _nameaddr_fields)
        assert fast[0] == general[0]
