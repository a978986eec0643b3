"""Tests of pbxd.sip.uri: URI, NameAddr, Via and CSeq."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxd.errors import SIPParseError
from pbxd.sip.uri import URI, CSeq, NameAddr, Via


def test_sip_uri_fields_are_split_and_host_lower_cased() -> None:
    uri = URI.parse("sip:alice:secret@Example.COM:5070;transport=tcp;lr?Subject=hi&Priority=urgent")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sip", "alice", "secret", "example.com", 5070)
    assert uri.params == {"transport": "tcp", "lr": None}
    assert uri.headers == {"Subject": "hi", "Priority": "urgent"}
    assert uri.transport == "TCP"
    assert uri.host_port == ("example.com", 5070)


def test_sips_scheme_is_lower_cased_and_kept() -> None:
    uri = URI.parse("SIPS:bob@biloxi.example.com")
    assert uri.scheme == "sips" and str(uri) == "sips:bob@biloxi.example.com"


def test_ipv6_reference_has_no_brackets_and_gets_them_back_on_output() -> None:
    uri = URI.parse("sip:[::1]:5060;transport=udp")
    assert uri.host == "::1" and uri.port == 5060 and uri.user is None
    assert str(uri) == "sip:[::1]:5060;transport=udp"


def test_escaped_user_is_unescaped_and_reescaped_where_needed() -> None:
    uri = URI.parse("sip:%75se%72@example.com")
    assert uri.user == "user"
    assert str(uri) == "sip:user@example.com"
    spaced = URI.parse("sip:I%20have%20spaces@example.net")
    assert spaced.user == "I have spaces"
    assert str(spaced) == "sip:I%20have%20spaces@example.net"
    assert URI.parse(str(spaced)) == spaced


def test_escaped_uri_params_compare_unescaped() -> None:
    uri = URI.parse("sip:caller@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.params == {"lr": None, "name": "value%41"}
    assert URI.parse(str(uri)) == uri


def test_tel_uri_keeps_number_as_user_and_has_empty_host() -> None:
    uri = URI.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+1-201-555-0123", "")
    assert uri.params == {"phone-context": "example.com"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


def test_unknown_scheme_is_kept_opaque_for_a_416_later() -> None:
    uri = URI.parse("nobodyKnowsThisScheme:totallyopaquecontent")
    assert uri.scheme == "nobodyknowsthisscheme" and uri.opaque == "totallyopaquecontent"
    assert str(uri) == "nobodyknowsthisscheme:totallyopaquecontent"


def test_copy_is_independent() -> None:
    uri = URI.parse("sip:a@b;lr")
    dup = uri.copy()
    dup.params["transport"] = "tls"
    assert uri.params == {"lr": None} and dup != uri


@pytest.mark.parametrize(
    "text",
    [
        "", "sip:", "example.com", "sip:user@", "sip:@host", "sip:user@exa mple.com",
        "sip:user@host:65536", "sip:user@host:5x", "sip:us%zzer@host", "sip:[::1",
        "sip:2001:db8::10", "sip:<user@host>", "sip:host;=x", "tel:abc!",
    ],
)
def test_malformed_uris_raise_sip_parse_error(text: str) -> None:
    with pytest.raises(SIPParseError):
        URI.parse(text)


def test_name_addr_with_quoted_display_and_escapes() -> None:
    na = NameAddr.parse('"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98asjd8')
    assert na.display == 'J Rosenberg \\"'
    assert na.tag == "98asjd8"
    assert NameAddr.parse(str(na)) == na


def test_name_addr_token_display_name_is_accepted() -> None:
    na = NameAddr.parse("Bob Smith <sip:bob@example.com>")
    assert na.display == "Bob Smith" and na.uri.user == "bob"
    assert str(na) == '"Bob Smith" <sip:bob@example.com>'


def test_uri_params_inside_angle_brackets_stay_with_the_uri() -> None:
    na = NameAddr.parse("<sip:bob@example.com;transport=tcp>;expires=60;q=0.5")
    assert na.uri.params == {"transport": "tcp"}
    assert na.params == {"expires": "60", "q": "0.5"}


def test_addr_spec_params_are_header_params() -> None:
    na = NameAddr.parse("sip:alice@atlanta.example.com;tag=1928301774")
    assert na.uri.params == {} and na.tag == "1928301774"
    assert str(na) == "<sip:alice@atlanta.example.com>;tag=1928301774"


def test_quoted_header_param_value_keeps_its_quotes() -> None:
    na = NameAddr.parse('<sip:a@b>;+sip.instance="<urn:uuid:1;x>"')
    assert na.params["+sip.instance"] == '"<urn:uuid:1;x>"'


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:a@b>', "Bell, Alexander <sip:a.g.bell@bell-tel.com>",
        "<sip:a@b", "sip:user@example.com?Route=%3Csip:x%3E", "<sip:a@b>;tag=a b", "<sip:a@b>;;x",
        '"x" sip:a@b', "<sip:a@b> garbage",
    ],
)
def test_malformed_name_addr_raises(text: str) -> None:
    with pytest.raises(SIPParseError):
        NameAddr.parse(text)


def test_via_with_lws_ipv6_port_and_params() -> None:
    via = Via.parse("SIP / 2.0 / tcp [2001:db8::9:1]:5061 ; branch=z9hG4bKx ;rport;received=[2001:db8::9:255]")
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", "TCP", "2001:db8::9:1", 5061)
    assert via.branch == "z9hG4bKx"
    assert via.params["rport"] is None
    assert via.params["received"] == "[2001:db8::9:255]"
    assert str(via) == "SIP/2.0/TCP [2001:db8::9:1]:5061;branch=z9hG4bKx;rport;received=[2001:db8::9:255]"
    assert Via.parse(str(via)) == via


@pytest.mark.parametrize(
    "text",
    ["SIP/2.0 host", "SIP/2.0/UDP", "SIP/2.0/UDP host:99999", "SIP/2.0/UDP host;;", "SIP/2.0/UDP 2001:db8::1"],
)
def test_malformed_via_raises(text: str) -> None:
    with pytest.raises(SIPParseError):
        Via.parse(text)


def test_cseq_leading_zeros_and_limit() -> None:
    assert CSeq.parse("0009 INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(2**31 - 1, "BYE")) == "2147483647 BYE"
    for bad in ("2147483648 INVITE", "36893488147419103232 INVITE", "INVITE", "1", "-1 INVITE", "1 IN VITE"):
        with pytest.raises(SIPParseError):
            CSeq.parse(bad)


_URI_CHARS = "abAB09-_.!~*'()&=+$,/:;@?[]%x"


@settings(max_examples=400, deadline=None)
@given(user=st.text(_URI_CHARS, max_size=6), host=st.sampled_from(["h.example.com", "10.0.0.1", "H_1.", "a-b"]),
       port=st.sampled_from(["", ":5060", ":0", ":70000"]), params=st.text(_URI_CHARS, max_size=10))
def test_fast_path_agrees_with_the_general_sip_uri_parser(user: str, host: str, port: str, params: str) -> None:
    rest = (user + "@" if user else "") + host + port + (";" + params if params else "")
    try:
        general = URI._parse_sip("sip", rest)
    except SIPParseError:
        general = None
    try:
        fast = URI.parse("sip:" + rest)
    except SIPParseError:
        fast = None
    assert fast == general
