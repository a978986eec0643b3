"""The RFC 4475 and RFC 5118 torture messages through pbxd.sip.parser.

The messages are read at test time from ``../shared/testdata`` (the
``testdata`` fixture of conftest.py skips when the corpus is absent).

Each file has a verdict:

- ``VALID``: must parse; typed headers readable; serialize + reparse gives the
  same typed values.
- ``PARSED``: the defect is semantic, so the parser accepts it and a later
  step (pbxd.sip.validation, the registrar, the transaction layer) answers.
- ``ERROR``: SIPParseError; ``True`` when a 400 can be formed from
  ``error.request`` (a request whose Via/From/To/Call-ID/CSeq were
  recovered), ``False`` when the input must be dropped (responses, no Via).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pbxd.errors import SIPParseError
from pbxd.sip.message import Request, Response, make_response
from pbxd.sip.parser import parse_message

VALID, PARSED = "valid", "parsed"


def ERROR(recoverable: bool) -> tuple[str, bool]:  # noqa: N802 - reads as a verdict in the table
    """An expected SIPParseError; ``recoverable`` says whether a 400 can be formed."""
    return ("error", recoverable)


RFC4475: dict[str, object] = {
    # 3.1.1 valid messages: all elements must accept them
    "wsinv": VALID,        # 3.1.1.1 short tortuous INVITE: folding, LWS, compact forms
    "intmeth": VALID,      # 3.1.1.2 wide range of valid characters; 501 for the odd method
    "esc01": VALID,        # 3.1.1.3 valid use of the % escaping mechanism
    "escnull": VALID,      # 3.1.1.4 escaped nulls in URIs
    "esc02": VALID,        # 3.1.1.5 % in method is not an escape (unknown method -> 501)
    "lwsdisp": VALID,      # 3.1.1.6 no LWS between display name and <
    "longreq": VALID,      # 3.1.1.7 long values in header fields
    "dblreq": VALID,       # 3.1.1.8 extra trailing octets in a UDP datagram (ignored)
    "semiuri": VALID,      # 3.1.1.9 semicolon-separated parameters in the URI user part
    "transports": VALID,   # 3.1.1.10 varied and unknown transport types
    "mpart01": VALID,      # 3.1.1.11 multipart MIME body
    "unreason": VALID,     # 3.1.1.12 unusual (UTF-8) reason phrase
    "noreason": VALID,     # 3.1.1.13 empty reason phrase
    # 3.1.2 invalid messages
    "badinv01": ERROR(True),    # 3.1.2.1 extraneous header field separators -> 400
    "clerr": ERROR(True),       # 3.1.2.2 Content-Length larger than the message -> 400
    "ncl": ERROR(True),         # 3.1.2.3 negative Content-Length -> 400
    "scalar02": ERROR(True),    # 3.1.2.4 overlarge request scalars (CSeq) -> 400
    "scalarlg": ERROR(False),   # 3.1.2.5 overlarge response scalars -> dropped
    "quotbal": ERROR(True),     # 3.1.2.6 unterminated quoted display name -> 400
    "ltgtruri": ERROR(True),    # 3.1.2.7 <> around the Request-URI -> 400
    "lwsruri": ERROR(True),     # 3.1.2.8 LWS inside the Request-URI -> 400
    "lwsstart": ERROR(True),    # 3.1.2.9 multiple SP between request-line elements -> 400
    "trws": ERROR(True),        # 3.1.2.10 SP at the end of the request-line -> 400
    "escruri": PARSED,          # 3.1.2.11 escaped headers in the Request-URI: 400 or ignore them
    "baddate": PARSED,          # 3.1.2.12 bad time zone in Date: may be forwarded (Date not parsed)
    "regbadct": ERROR(True),    # 3.1.2.13 addr-spec Contact with ? not in <> -> 400
    "badaspec": ERROR(True),    # 3.1.2.14 spaces inside an addr-spec -> 400
    "baddn": ERROR(True),       # 3.1.2.15 non-token characters in an unquoted display name -> 400
    "badvers": PARSED,          # 3.1.2.16 SIP/7.0 -> 505 from validation
    "mismatch01": PARSED,       # 3.1.2.17 CSeq method != request method -> 400 from validation
    "mismatch02": PARSED,       # 3.1.2.18 unknown method, CSeq mismatch -> 400 from validation
    "bigcode": ERROR(False),    # 3.1.2.19 overlarge status code -> response dropped
    # 3.2 transaction layer
    "badbranch": PARSED,        # 3.2.1 branch without the magic cookie: RFC 2543 matching
    # 3.3 application layer semantics
    "insuf": PARSED,            # 3.3.1 missing mandatory headers -> 400 from validation
    "unkscm": PARSED,           # 3.3.2 unknown Request-URI scheme -> 416
    "novelsc": PARSED,          # 3.3.3 novel URI schemes in headers: accepted
    "unksm2": PARSED,           # 3.3.4 unknown scheme in To and Contact, sip: Request-URI
    "bext01": PARSED,           # 3.3.5 unknown Proxy-Require/Require -> 420
    "invut": PARSED,            # 3.3.6 unknown Content-Type -> 415
    "regaut01": PARSED,         # 3.3.7 REGISTER with unknown Authorization scheme -> 401
    "multi01": ERROR(True),     # 3.3.8 multiple values in single-value headers -> 400
    "mcl01": ERROR(True),       # 3.3.9 multiple Content-Length values -> 400
    "bcast": PARSED,            # 3.3.10 200 OK with a broadcast Via sent-by: dropped by the UA
    "zeromf": PARSED,           # 3.3.11 Max-Forwards 0 -> 483 (OPTIONS may be answered)
    "cparam01": PARSED,         # 3.3.12 REGISTER with a Contact parameter
    "cparam02": PARSED,         # 3.3.13 REGISTER with a URL parameter in the Contact
    "regescrt": PARSED,         # 3.3.14 REGISTER with escaped headers in the Contact URI
    "sdp01": PARSED,            # 3.3.15 unacceptable Accept offering -> 406/415
    # 3.4 backward compatibility
    "inv2543": PARSED,          # 3.4.1 RFC 2543 INVITE (no branch, addr-spec From/To)
    # test.dat of the archive (no section): a header line without a colon and no Via
    "test": ERROR(False),
}

RFC5118: dict[str, object] = {
    "ipv6-good": VALID,                       # 4.1 valid IPv6 reference in the Request-URI
    "ipv6-bad": ERROR(True),                  # 4.2 IPv6 address without [] -> 400
    "port-ambiguous": VALID,                  # 4.3 [2001:db8::10:5070]: no port
    "port-unambiguous": VALID,                # 4.3 [2001:db8::10]:5070
    "via-received-param-with-delim": VALID,   # 4.5 received=[...] tolerated
    "via-received-param-no-delim": VALID,     # 4.5 received=2001:...
    "ipv6-in-sdp": VALID,                     # 4.6
    "mult-ip-in-header": VALID,               # 4.7 IPv4 and IPv6 mixed in headers
    "mult-ip-in-sdp": VALID,                  # 4.8
    "ipv4-mapped-ipv6": VALID,                # 4.9
    "ipv6-correct-abnf-2-colons": VALID,      # 4.10
    "ipv6-bug-abnf-3-colons": VALID,          # 4.10 must be tolerated
}

TYPED = ("vias", "from_", "to", "cseq", "call_id", "contacts", "routes", "record_routes", "max_forwards")


def _typed(msg: Request | Response) -> dict[str, object]:
    values = {name: getattr(msg, name) for name in TYPED}
    values["start"] = (msg.method, msg.uri) if isinstance(msg, Request) else (msg.status, msg.reason)
    values["body"] = msg.body
    return values


def _read(testdata: Path, folder: str, name: str) -> bytes:
    return (testdata / folder / f"{name}.sip").read_bytes()


def _check(data: bytes, verdict: object) -> None:
    if verdict in (VALID, PARSED):
        msg = parse_message(data)
        before = _typed(msg)
        again = parse_message(msg.serialize())
        assert _typed(again) == before
        return
    assert isinstance(verdict, tuple)
    with pytest.raises(SIPParseError) as info:
        parse_message(data)
    recoverable = verdict[1]
    assert (info.value.request is not None) == recoverable
    if recoverable:
        resp = make_response(info.value.request, 400, info.value.reason, to_tag="pbxd")
        assert resp.serialize().startswith(b"SIP/2.0 400 ")


def test_table_covers_every_file(testdata: Path) -> None:
    assert {p.stem for p in (testdata / "rfc4475").glob("*.sip")} == set(RFC4475)
    assert {p.stem for p in (testdata / "rfc5118").glob("*.sip")} == set(RFC5118)


@pytest.mark.parametrize("name", sorted(RFC4475))
def test_rfc4475_message(testdata: Path, name: str) -> None:
    _check(_read(testdata, "rfc4475", name), RFC4475[name])


@pytest.mark.parametrize("name", sorted(RFC5118))
def test_rfc5118_message(testdata: Path, name: str) -> None:
    _check(_read(testdata, "rfc5118", name), RFC5118[name])


def test_wsinv_values_after_folding(testdata: Path) -> None:
    msg = parse_message(_read(testdata, "rfc4475", "wsinv"))
    assert [v.host for v in msg.vias] == ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    assert msg.from_.display == 'J Rosenberg \\"' and msg.from_.tag == "98asjd8"
    assert msg.to.tag == "1918181833n" and msg.cseq.seq == 9 and msg.max_forwards == 68
    assert msg.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.contacts[0].params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}


def test_esc01_escapes_are_undone(testdata: Path) -> None:
    msg = parse_message(_read(testdata, "rfc4475", "esc01"))
    assert msg.uri.user == "sips:user@example.com"
    assert msg.to.uri.user == "user" and msg.from_.uri.user == "I have spaces"
    assert msg.contacts[0].uri.params == {"lr": None, "name": "value%41"}


def test_dblreq_keeps_only_content_length_bytes(testdata: Path) -> None:
    msg = parse_message(_read(testdata, "rfc4475", "dblreq"))
    assert msg.method == "REGISTER" and len(msg.body) == msg.content_length == 0


def test_semiuri_user_keeps_its_semicolons(testdata: Path) -> None:
    msg = parse_message(_read(testdata, "rfc4475", "semiuri"))
    assert ";" in msg.uri.user and msg.uri.params == {}


def test_rfc5118_ipv6_hosts_and_ports(testdata: Path) -> None:
    amb = parse_message(_read(testdata, "rfc5118", "port-ambiguous"))
    assert amb.uri.host == "2001:db8::10:5070" and amb.uri.port is None
    unamb = parse_message(_read(testdata, "rfc5118", "port-unambiguous"))
    assert unamb.uri.host == "2001:db8::10" and unamb.uri.port == 5070
    via = parse_message(_read(testdata, "rfc5118", "via-received-param-no-delim")).top_via
    assert via.host == "2001:db8::9:1" and ":" in via.params["received"]
