"""SIP requests and responses (layer 1, pure).

A :class:`Message` holds :class:`~pbxd.sip.headers.Headers` and a body.
Typed accessors (``vias``, ``from_``, ``cseq``...) parse on first use and
cache the result in the headers; mutating a header (``set``/``add``/
``remove``) drops its cache.  Typed values of Via, From, To, CSeq, Contact,
Route and Record-Route are live: changes made to the returned objects are
written by :meth:`Message.serialize` and seen by :func:`make_response`.

Absent headers: single-value accessors return ``None``, list accessors
``[]``; ``content_length`` falls back to ``len(body)``.  A present but
malformed value raises :class:`pbxd.errors.SIPParseError` (messages from
:func:`pbxd.sip.parser.parse_message` have Via, From, To, Call-ID, CSeq,
Max-Forwards, Contact, Content-Length and the Request-URI checked already, so
for those the accessors do not raise).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pbxd.errors import SIPParseError
from pbxd.sip.headers import (
    _KEYS,
    _NAMES,
    _RENDERED,
    LIST_HEADERS,
    Headers,
    canonical_name,
    header_key,
    split_list,
)
from pbxd.sip.uri import URI, CSeq, NameAddr, Via

__all__ = ["Message", "Request", "Response", "make_response", "REASONS", "URI", "NameAddr", "Via", "CSeq"]

REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 433: "Anonymity Disallowed",
    436: "Bad Identity-Info", 437: "Unsupported Certificate", 438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded",
    469: "Bad Info Package", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}
_CLASS_REASONS = {1: "Trying", 2: "OK", 3: "Redirect", 4: "Request Failure",
                  5: "Server Failure", 6: "Global Failure"}

#: requests whose 18x/2xx responses carry the Record-Route (RFC 3261 s12.1.1)
DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})

HeadersLike = Headers | Iterable[tuple[str, Any]] | Mapping[str, Any] | None


def _int_or_none(text: str | None, limit: int) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        return None
    return min(int(text), limit)


class Message:
    """Common part of :class:`Request` and :class:`Response`."""

    __slots__ = ("headers", "body", "version")

    def __init__(self, headers: HeadersLike = None, body: bytes = b"", version: str = "SIP/2.0") -> None:
        self.headers: Headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body: bytes = body
        self.version: str = version

    # -- raw access --------------------------------------------------------
    # get and getall do what Headers.get/getall do, the usual cases without the extra call

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of ``name`` or ``default``; see :meth:`Headers.get`."""
        h = self.headers
        key = _KEYS.get(name) or header_key(name)
        if key in h.live or key in LIST_HEADERS:
            return h.get(name, default)
        for entry in h.entries:
            if entry[0] == key:
                return entry[2]
        return default

    def getall(self, name: str) -> list[str]:
        """All values of ``name``; list headers split on commas."""
        h = self.headers
        key = _KEYS.get(name) or header_key(name)
        if key in h.live:
            return h._rendered(key)
        for entry in h.entries:  # an absent header (Require...) without building a list
            if entry[0] == key:
                break
        else:
            return []
        values = [v for k, _, v in h.entries if k == key]
        if values and key in LIST_HEADERS:
            if len(values) == 1 and "," not in values[0]:  # split_list of it
                value = values[0].strip()
                return [value] if value else []
            return h.getall(name)
        return values

    def set(self, name: str, value: Any) -> None:
        """Replace all ``name`` headers with ``value`` (drops the typed cache)."""
        self.headers.set(name, value)

    def add(self, name: str, value: Any, first: bool = False) -> None:
        """Add a ``name`` header, after (or with ``first`` before) the existing ones."""
        h = self.headers
        key = _KEYS.get(name) or header_key(name)
        if first or key in h.live or key in h.typed:
            h.add(name, value, first)
            return
        # Headers.add of a header with no typed value, at the end, without the extra call
        h.checked = False
        h.entries.append((key, _NAMES.get(name) or canonical_name(name),
                          value if type(value) is str else str(value)))

    def remove(self, name: str) -> None:
        """Remove every ``name`` header."""
        self.headers.remove(name)

    # -- typed access ------------------------------------------------------
    def _single(self, key: str, parse: Callable[[str], Any], live: bool = True) -> Any:
        h = self.headers
        typed = h.typed
        if key in typed:
            value = typed[key]
        else:
            for entry in h.entries:
                if entry[0] == key:
                    break
            else:
                return None
            value = typed[key] = parse(entry[2])
        if live and key in _RENDERED:
            h.live.add(key)
        return value

    def _list(self, key: str, parse: Callable[[str], Any], live: bool = True) -> list[Any]:
        h = self.headers
        typed = h.typed
        if key in typed:
            value = typed[key]
        else:
            value = []
            for entry in h.entries:
                if entry[0] == key:
                    value.extend([parse(item) for item in split_list(entry[2])])
            if not value:
                return value
            typed[key] = value
        if live:
            h.live.add(key)
        return value

    def _set_typed(self, key: str, value: Any) -> None:
        self.headers.set(canonical_name(key), value)
        if value is not None:
            self.headers.typed[key] = value
            self.headers.live.add(key)

    # the accessors below take the cached value when there is one, as _single/_list do

    @property
    def vias(self) -> list[Via]:
        """All Via values, top first ([] if none)."""
        h = self.headers
        vias = h.typed.get("via")
        if vias is None:
            return self._list("via", Via.parse)
        h.live.add("via")
        return vias  # type: ignore[no-any-return]

    @property
    def top_via(self) -> Via | None:
        """The first Via, or None."""
        h = self.headers
        vias = h.typed.get("via")
        if vias is None:
            vias = self._list("via", Via.parse)
        else:
            h.live.add("via")
        return vias[0] if vias else None

    @property
    def from_(self) -> NameAddr | None:
        """The From value, or None if absent."""
        h = self.headers
        value = h.typed.get("from")
        if value is None:
            return self._single("from", NameAddr.parse)
        h.live.add("from")
        return value  # type: ignore[no-any-return]

    @from_.setter
    def from_(self, value: NameAddr) -> None:
        self._set_typed("from", value)

    @property
    def to(self) -> NameAddr | None:
        """The To value, or None if absent."""
        h = self.headers
        value = h.typed.get("to")
        if value is None:
            return self._single("to", NameAddr.parse)
        h.live.add("to")
        return value  # type: ignore[no-any-return]

    @to.setter
    def to(self, value: NameAddr) -> None:
        self._set_typed("to", value)

    @property
    def call_id(self) -> str | None:
        """The Call-ID (stripped), or None if absent."""
        value = self.headers.typed.get("call-id")
        if value is None:
            return self._single("call-id", str.strip)  # type: ignore[no-any-return]
        return value  # type: ignore[no-any-return]

    @call_id.setter
    def call_id(self, value: str) -> None:
        self.headers.set("Call-ID", value)

    @property
    def cseq(self) -> CSeq | None:
        """The CSeq, or None if absent."""
        h = self.headers
        value = h.typed.get("cseq")
        if value is None:
            return self._single("cseq", CSeq.parse)
        h.live.add("cseq")
        return value  # type: ignore[no-any-return]

    @cseq.setter
    def cseq(self, value: CSeq) -> None:
        self._set_typed("cseq", value)

    @property
    def contact_star(self) -> bool:
        """True for ``Contact: *`` (REGISTER removing all bindings)."""
        if "contact" in self.headers.typed:
            return False
        return any(k == "contact" and v.strip() == "*" for k, _, v in self.headers.entries)

    @property
    def contacts(self) -> list[NameAddr]:
        """The Contact values ([] if absent or for ``Contact: *``)."""
        if self.contact_star:
            return []
        return self._list("contact", NameAddr.parse)

    @property
    def routes(self) -> list[NameAddr]:
        """The Route values, in order ([] if absent)."""
        return self._list("route", NameAddr.parse)

    @property
    def record_routes(self) -> list[NameAddr]:
        """The Record-Route values, in order ([] if absent)."""
        return self._list("record-route", NameAddr.parse)

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards as an int, or None if absent or not a number (the parser
        rejects such messages)."""
        return self._single("max-forwards", lambda v: _int_or_none(v, 2**32))

    @property
    def expires(self) -> int | None:
        """Expires in seconds (clamped to 2**32-1), or None if absent or not a plain
        number (e.g. an RFC 2543 date)."""
        return self._single("expires", lambda v: _int_or_none(v, 2**32 - 1))

    @property
    def content_length(self) -> int:
        """The Content-Length header value, or ``len(body)`` when absent or invalid."""
        value = self._single("content-length", lambda v: _int_or_none(v, 2**63))
        return len(self.body) if value is None else value

    @property
    def content_type(self) -> str | None:
        """The Content-Type value, or None."""
        return self.headers.get("content-type")

    # -- output ------------------------------------------------------------
    def start_line(self) -> str:
        """The request or status line (without CRLF)."""
        raise NotImplementedError

    def serialize(self) -> bytes:
        """The wire form; Content-Length is written from ``len(body)``."""
        h = self.headers
        body = self.body
        out = [self.start_line()]
        append = out.append
        placed = False
        live = h.live
        if not live:  # every line as it is (a response as make_response built it...)
            for key, name, value in h.entries:
                if key != "content-length":
                    append(f"{name}: {value}" if value else name + ":")
                elif not placed:
                    append(f"Content-Length: {len(body)}")
                    placed = True
        else:
            done: set[str] = set()
            for key, name, value in h.entries:
                if key == "content-length":
                    if not placed:
                        append(f"Content-Length: {len(body)}")
                        placed = True
                elif key in live:
                    if key not in done:
                        done.add(key)
                        out += [f"{name}: {v}" for v in h._rendered(key)]
                else:
                    append(f"{name}: {value}" if value else name + ":")
        if not placed:
            append(f"Content-Length: {len(body)}")
        append("\r\n")
        return "\r\n".join(out).encode("utf-8", "surrogateescape") + body

    def __bytes__(self) -> bytes:
        return self.serialize()


class Request(Message):
    """A SIP request.  ``uri`` may be given as a URI or as text (parsed on first access)."""

    __slots__ = ("method", "_uri", "_uri_raw", "_uri_live")

    def __init__(
        self,
        method: str,
        uri: URI | str,
        headers: HeadersLike = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        Message.__init__(self, headers, body, version)
        self.method = method
        if isinstance(uri, URI):
            self._uri: URI | None = uri
            self._uri_raw = ""
            self._uri_live = True
        else:
            self._uri = None
            self._uri_raw = uri
            self._uri_live = False

    @property
    def uri(self) -> URI:
        """The Request-URI (parsed on first access; raises SIPParseError if malformed)."""
        if self._uri is None:
            self._uri = URI.parse(self._uri_raw)
        self._uri_live = True
        return self._uri

    @uri.setter
    def uri(self, value: URI) -> None:
        self._uri = value
        self._uri_live = True

    @property
    def uri_text(self) -> str:
        """The Request-URI as it will be written."""
        if self._uri_live and self._uri is not None:
            return str(self._uri)
        return self._uri_raw

    def start_line(self) -> str:
        """``METHOD uri SIP/2.0``."""
        return f"{self.method} {self.uri_text} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text}>"


class Response(Message):
    """A SIP response; ``reason`` defaults from :data:`REASONS`."""

    __slots__ = ("status", "reason")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: HeadersLike = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        Message.__init__(self, headers, body, version)
        self.status = status
        if reason is None:
            reason = REASONS.get(status) or _CLASS_REASONS.get(status // 100, "Unknown")
        self.reason = reason

    def start_line(self) -> str:
        """``SIP/2.0 status reason``."""
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


#: the headers make_response copies, with the name it writes them under
_COPIED = {"via": "Via", "record-route": "Record-Route", "from": "From", "to": "To",
           "call-id": "Call-ID", "cseq": "CSeq", "timestamp": "Timestamp"}


def _new_response(status: int, reason: str | None, entries: list[tuple[str, str, str]],
                  body: bytes) -> Response:
    """``Response(status, reason, body=body)`` holding ``entries``, without the checks."""
    headers = Headers.__new__(Headers)
    headers.entries = entries
    headers.typed = {}
    headers.live = set()
    headers.checked = headers.plain = False
    resp = Response.__new__(Response)
    resp.headers = headers
    resp.body = body
    resp.version = "SIP/2.0"
    resp.status = status
    if reason is None:
        reason = REASONS.get(status) or _CLASS_REASONS.get(status // 100, "Unknown")
    resp.reason = reason
    return resp



def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """Build a response to ``request`` per RFC 3261 s8.2.6.

    Copies all Via values, From, To (adding ``to_tag`` when To has no tag and
    status > 100), Call-ID and CSeq; Record-Route for 101-299 responses to
    dialog-creating methods; Timestamp for 100.  Works on the best-effort
    request of a SIPParseError (a To that does not parse gets the tag appended).
    """
    src = request.headers
    live = src.live
    if (src.checked and src.plain and "via" in live and "from" in live and "to" in live
            and "cseq" in live):
        # a request as parsed (no Record-Route, no Timestamp) whose Via, From, To and CSeq
        # were read: the lines are the renderings of those values and the Call-ID as parsed
        typed = src.typed
        vias = typed["via"]
        to = typed["to"]
        to_text = str(to)
        if to_tag and status > 100 and to.params.get("tag") is None:
            if "tag" not in to.params and to.uri.scheme.islower():
                to_text = f"{to_text};tag={to_tag}"  # NameAddr.with_tag, rendered once
            else:
                to_text = to.with_tag(to_tag)
        entries = [("via", "Via", str(vias[0]))] if len(vias) == 1 else [
            ("via", "Via", str(v)) for v in vias]
        cseq = typed["cseq"]  # the parser's CSeq: str(cseq), inline
        cseq_line = ("cseq", "CSeq", f"{cseq.seq} {cseq.method}")
        call_id = typed.get("call-id")  # the parse checks the syntax, not the presence
        if call_id is not None:
            entries += (("from", "From", str(typed["from"])), ("to", "To", to_text),
                        ("call-id", "Call-ID", call_id), cseq_line)
        else:
            entries += (("from", "From", str(typed["from"])), ("to", "To", to_text), cseq_line)
        if content_type is not None:
            entries.append(("content-type", "Content-Type", content_type))
        return _new_response(status, reason, entries, body)
    # the copied header lines of the request, by key, in order (one pass)
    found: dict[str, list[tuple[str, str, str]]] = {}
    copied = _COPIED
    for entry in src.entries:
        key = entry[0]
        name = copied.get(key)
        if name is not None:
            if entry[1] != name:
                entry = (key, name, entry[2])
            lines = found.get(key)
            if lines is None:
                found[key] = [entry]
            else:
                lines.append(entry)
    if live:
        for key in live:
            name = copied.get(key)
            if name is not None:
                found[key] = [(key, name, v) for v in src._rendered(key)]
    entries = []
    if "via" in found:
        entries += found["via"]
    if "record-route" in found and 100 < status < 300 and request.method in DIALOG_METHODS:
        entries += found["record-route"]
    if "from" in found:
        entries += found["from"]
    to_values = found.get("to")
    if to_values:
        if to_tag and status > 100:
            rendered = "to" in live  # then to_values[0] is str(request.to) already
            try:
                to = request.to
            except SIPParseError:
                to = None
            if to is None:
                to_values[0] = ("to", "To", f"{to_values[0][2]};tag={to_tag}")
            elif to.tag is None:
                if rendered and "tag" not in to.params and to.uri.scheme.islower():
                    # NameAddr.with_tag without rendering To a second time
                    to_values[0] = ("to", "To", f"{to_values[0][2]};tag={to_tag}")
                else:
                    to_values[0] = ("to", "To", to.with_tag(to_tag))
        entries += to_values
    if "call-id" in found:
        entries += found["call-id"]
    if "cseq" in found:
        entries += found["cseq"]
    if status == 100 and "timestamp" in found:
        entries += found["timestamp"]
    if content_type is not None:
        entries.append(("content-type", "Content-Type", content_type))
    return _new_response(status, reason, entries, body)

