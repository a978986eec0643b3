"""Request validation (RFC 3261 §8.2) and Via stamping (RFC 3581) (layer 1, pure).

:func:`check_request` answers the question "may a UAS process this request?"
with either ``None`` or the error response to send. The checks run in a fixed
order so a request that breaks several rules always gets the same answer:

1. 505 Version Not Supported: the request line is not ``SIP/2.0``.
2. 416 Unsupported URI Scheme: the Request-URI is not ``sip:``, ``sips:`` or ``tel:``.
3. 420 Bad Extension: ``Require`` names an option we do not support (the 420
   lists them in ``Unsupported``). Never for ACK or CANCEL (RFC 3261 §8.2.2.3).
4. 483 Too Many Hops: ``Max-Forwards: 0``, whatever the method (RFC 3261 §16.3
   lets a proxy answer OPTIONS itself; as a UAS we follow §8.2 and RFC 4475 zeromf).
5. 400 Bad Request: a mandatory header (Via, From, To, Call-ID, CSeq) is
   missing, repeated (From, To, Call-ID, CSeq, Max-Forwards) or unparseable,
   or the CSeq method differs from the request method. A *missing*
   Max-Forwards is accepted (RFC 2543 clients omit it, RFC 4475 §3.4.1); an
   unparseable one is a 400.
6. 501 Not Implemented: a method we do not know at all.
7. 405 Method Not Allowed (+ ``Allow``): a known method we do not serve.

The caller must never send the result for an ACK (nothing answers an ACK).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from pbxd.errors import SIPParseError
from pbxd.sip.message import make_response as _make_response

#: Methods of RFC 3261 and its common extensions; anything else gets 501.
KNOWN_METHODS: frozenset[str] = frozenset(
    "INVITE ACK BYE CANCEL OPTIONS REGISTER PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER "
    "MESSAGE UPDATE".split()
)
#: Request-URI schemes a UAS accepts.
SCHEMES: frozenset[str] = frozenset({"sip", "sips", "tel"})
#: Headers a request must carry exactly once (Via may repeat).
SINGLE_HEADERS: tuple[str, ...] = ("From", "To", "Call-ID", "CSeq")

_PARSE_ERRORS = (SIPParseError, ValueError, TypeError, AttributeError, IndexError)
#: the header lines _header_problem counts, and the 400 phrases of a missing/repeated one
_COUNTED = {"max-forwards": None, "via": "Via", "from": "From", "to": "To", "call-id": "Call-ID",
            "cseq": "CSeq"}
#: what _typed_problem reads (and so makes live)
_READ = frozenset(("via", "from", "to", "cseq"))
#: id of a tuple or frozenset of methods -> (it, kept alive so the id stays its own,
#: its upper-cased set); bounded
_UPPER: dict[int, tuple[Any, frozenset[str]]] = {}


def _upper_set(methods: Iterable[str]) -> frozenset[str]:
    """``{m.upper() for m in methods}``, remembered for tuples and frozensets."""
    known = _UPPER.get(id(methods))
    if known is not None and known[0] is methods:
        return known[1]
    upper = frozenset(m.upper() for m in methods)
    if isinstance(methods, (tuple, frozenset)):
        if len(_UPPER) >= 64:
            _UPPER.clear()
        _UPPER[id(methods)] = (methods, upper)
    return upper


def check_request(
    request: Any,
    *,
    supported: Iterable[str] = frozenset(),
    allowed_methods: Iterable[str] | None = None,
    served_methods: Iterable[str] | None = None,
    known_methods: Iterable[str] = KNOWN_METHODS,
    to_tag: str | None = None,
) -> Any | None:
    """The error response for ``request`` per RFC 3261 §8.2, or None if it may be processed.

    ``supported``: option tags we implement (compared case-insensitively).
    ``served_methods``: methods this server handles (None: all known ones).
    ``allowed_methods``: what a 405 lists in ``Allow`` (default ``served_methods``).
    ``to_tag``: the tag added to ``To`` in the error response (RFC 3261 §8.2.6.2).
    """

    method = request.method.upper()
    version = request.version
    if version != "SIP/2.0" and (version or "").upper() != "SIP/2.0":
        return _error(request, 505, "Version Not Supported", to_tag)
    bad_uri = False
    try:
        scheme = request.uri.scheme
        if scheme not in SCHEMES:
            scheme = (scheme or "").lower()
    except _PARSE_ERRORS:
        scheme = str(getattr(request, "uri_text", "")).partition(":")[0].strip().lower()
        bad_uri = True
    if scheme not in SCHEMES:
        return _error(request, 416, "Unsupported URI Scheme", to_tag)
    if method != "ACK" and method != "CANCEL":
        try:
            unsupported = unsupported_options(request, supported)
        except _PARSE_ERRORS:  # e.g. an unterminated quoted string in Require
            return _error(request, 400, "Malformed Require", to_tag)
        if unsupported:
            response = _error(request, 420, "Bad Extension", to_tag)
            response.set("Unsupported", ", ".join(unsupported))
            return response
    problem = _header_problem(request, method)
    if problem is None and bad_uri:
        problem = "Malformed Request-URI"
    if problem == "483":
        return _error(request, 483, "Too Many Hops", to_tag)
    if problem:
        return _error(request, 400, problem, to_tag)
    known = KNOWN_METHODS if known_methods is KNOWN_METHODS else _upper_set(known_methods)
    if method not in known:
        return _error(request, 501, "Not Implemented", to_tag)
    if served_methods is not None:
        if method not in _upper_set(served_methods):
            allow = allowed_methods if allowed_methods is not None else served_methods
            response = _error(request, 405, "Method Not Allowed", to_tag)
            response.set("Allow", ", ".join(m.upper() for m in allow))
            return response
    return None


def _error(request: Any, status: int, reason: str, to_tag: str | None) -> Any:
    return _make_response(request, status, reason, to_tag=to_tag)


def unsupported_options(request: Any, supported: Iterable[str]) -> list[str]:
    """Option tags in ``Require`` that are not in ``supported``, in order, without duplicates."""
    required = request.getall("Require")
    if not required:
        return []
    ours = {tag.lower() for tag in supported}
    out: list[str] = []
    for tag in required:
        tag = tag.strip()
        if tag and tag.lower() not in ours and tag not in out:
            out.append(tag)
    return out


def _header_problem(request: Any, method: str) -> str | None:
    """'483', a 400 reason phrase, or None. Max-Forwards is looked at first (483 before 400)."""
    headers = request.headers
    if headers.checked:  # as parsed: no header repeated, Max-Forwards a number up to 255
        typed = headers.typed
        if typed.get("max-forwards") == 0:
            return "483"
        if not ("via" in typed and "from" in typed and "to" in typed and "call-id" in typed
                and "cseq" in typed):
            for key, name in _COUNTED.items():
                if name is not None and key not in typed:
                    return f"Missing {name} header"
        # _typed_problem of values the parser checked: Via, From, To and CSeq parsed (and,
        # as reading them does, made live), a Call-ID without white space
        headers.live |= _READ
        cseq = typed["cseq"]
        if cseq.method.upper() != method:
            return "CSeq method does not match request method"
        if not 0 <= cseq.seq < 2**31:
            return "CSeq number out of range"
        return None
    # one pass over the header lines: how many of each, and the Max-Forwards values
    counts = dict.fromkeys(_COUNTED, 0)
    max_forwards: list[str] = []
    for key, _, value in request.headers.entries:
        if key in counts:
            counts[key] += 1
            if key == "max-forwards":
                max_forwards.append(value)
    if len(max_forwards) > 1:
        return "Multiple Max-Forwards headers"
    if max_forwards:
        text = max_forwards[0].strip()
        if not text.isdigit() or len(text.lstrip("0")) > 3:  # '0068' is 68 (RFC 4475 wsinv)
            return "Bad Max-Forwards"
        if int(text) == 0:
            return "483"
    for key, name in _COUNTED.items():
        if name is None:
            continue
        count = counts[key]
        if count == 0:
            return f"Missing {name} header"
        if count > 1 and key != "via":
            return f"Multiple {name} headers"
    return _typed_problem(request, method)


def _typed_problem(request: Any, method: str) -> str | None:
    """The 400 reason phrase for Via, From, To, Call-ID or CSeq values, or None."""
    try:
        if not request.vias:
            return "Missing Via header"
        request.from_  # noqa: B018 - parse it
        request.to  # noqa: B018
        call_id = request.call_id
        cseq = request.cseq
    except _PARSE_ERRORS as e:
        return f"Bad header: {getattr(e, 'reason', e)}"
    if not call_id or not str(call_id).strip():
        return "Empty Call-ID"
    if cseq.method.upper() != method:
        return "CSeq method does not match request method"
    if not 0 <= cseq.seq < 2**31:
        return "CSeq number out of range"
    return None


def stamp_via(request: Any, source: tuple[str, int]) -> None:
    """Record where ``request`` really came from on its top Via (RFC 3261 §18.2.1, RFC 3581).

    Adds ``received=<source ip>`` when the Via host is not that IP (or when
    ``rport`` is present, RFC 3581 §4), and fills a bare ``rport`` with the
    source port. A request whose Via cannot be parsed is left alone (it
    fails :func:`check_request` later).
    """
    try:
        via = request.top_via
    except _PARSE_ERRORS:
        return
    if via is None:
        return
    host, port = source[0], source[1]
    params = via.params
    wants_rport = "rport" in params and not params.get("rport")
    if wants_rport:
        params["rport"] = str(port)
    if wants_rport or not same_host(via.host, host):
        if params.get("received") != host:
            params["received"] = host
    elif "received" in params and params.get("received") != host:
        # a received= we did not add would steer our responses elsewhere (reflection)
        params["received"] = host


def same_host(a: str, b: str) -> bool:
    """True if ``a`` and ``b`` name the same IP (textual forms may differ) or are equal names."""
    if a == b:
        return True
    try:
        ia = ipaddress.ip_address(a.strip("[]"))
        ib = ipaddress.ip_address(b.strip("[]"))
    except ValueError:
        return a.lower() == b.lower()
    if isinstance(ia, ipaddress.IPv6Address) and ia.ipv4_mapped:
        ia = ia.ipv4_mapped
    if isinstance(ib, ipaddress.IPv6Address) and ib.ipv4_mapped:
        ib = ib.ipv4_mapped
    return ia == ib
