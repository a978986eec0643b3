"""Bytes to SIP messages (layer 1, pure): datagram parsing and stream framing.

:func:`parse_message` splits the header section once (names lower-cased,
compact forms expanded, folded lines joined) and checks the syntax of what
the SIP core needs on every message: the start line, Via, From, To, Call-ID,
CSeq, Max-Forwards, Contact, Content-Length and the Request-URI.  Those typed
values are cached on the message, so reading them later is free; every other
header is parsed only when it is read.

What is *not* checked here (left to :mod:`pbxd.sip.validation`): missing
mandatory headers, CSeq method different from the request method, the SIP
version (``SIP/7.0`` parses, and gets 505 there), unsupported URI schemes
(parsed as opaque URIs, 416 there), Require/Proxy-Require, Max-Forwards 0.

Every failure raises :class:`pbxd.errors.SIPParseError` and nothing else.
"""

from __future__ import annotations

import re
from typing import Any

from pbxd.errors import SIPParseError
from pbxd.sip.headers import _KNOWN, Headers, split_list
from pbxd.sip.message import Request, Response
from pbxd.sip.uri import _TOKEN_RE, _VIA_RE, URI, CSeq, NameAddr, Via

__all__ = ["parse_message", "oversize_error", "StreamFramer"]

_FOLD_RE = re.compile(r"[ \t]*\n[ \t]+")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+\Z", re.I)
_STATUS_RE = re.compile(r"[1-6][0-9][0-9]\Z")
_NUMBER_RE = re.compile(r"[0-9]+\Z")
_CALLID_RE = re.compile(r"\S+\Z")
_STREAM_CL_RE = re.compile(rb"(?:^|\n)[ \t]*(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I)
_SINGLE = ("from", "to", "call-id", "cseq", "max-forwards")
_CHECKED = frozenset(_SINGLE + ("via", "content-length", "contact"))
#: what _parse_fast looks at: the checked headers and those that make a message not plain
_FAST_CHECKED = _CHECKED | {"record-route", "timestamp"}
#: Default limits (``limits.max_headers`` / ``limits.max_header_length``): exceeding one
#: raises SIPParseError with status 513.
MAX_HEADERS = 256
MAX_HEADER_LENGTH = 8192
#: exact spellings of known names seen so far -> (key, canonical name); bounded
_EXACT: dict[str, tuple[str, str]] = {info[1]: info for info in _KNOWN.values()}
#: whole header lines seen before -> their entry (lines that repeat from message to
#: message: Max-Forwards, To, CSeq, Contact, Content-Length...); bounded, cleared when full
_LINES: dict[str, tuple[str, str, str]] = {}
_LINES_SIZE = 4096
#: headers whose lines are (nearly) never the same twice: not worth remembering
_UNIQUE = frozenset(("via", "call-id", "from", "authorization", "proxy-authorization", "date",
                     "timestamp"))
#: start lines seen before -> (method, Request-URI, version) of a request or
#: (version, status, reason) of a response
_STARTS: dict[str, tuple[str, str, str] | tuple[str, int, str]] = {}
_STARTS_SIZE = 1024
_new = object.__new__


def _split_head(data: bytes) -> tuple[list[str], bytes]:
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, body = data[:end], data[end + 4 :]
    else:
        end = data.find(b"\n\n")
        if end >= 0:
            head, body = data[:end], data[end + 2 :]
        else:  # no empty line: a datagram holding only a header section
            head, body = data.rstrip(b"\r\n"), b""
    if not head:
        raise SIPParseError("empty message")
    text = head.decode("utf-8", "surrogateescape")
    lines = text.split("\r\n")
    # the usual case in one look: CRLF line ends only, and no line starting with a
    # space, a tab (folding) or anything else at or below " " (the least line tells)
    if text.count("\n") == len(lines) - 1 and min(lines)[:1] > " ":
        return lines, body
    if "\n " in text or "\n\t" in text:
        text = _FOLD_RE.sub(" ", text.replace("\r\n", "\n"))
    lines = text.split("\r\n")
    if text.count("\n") != len(lines) - 1:  # bare LF line ends
        lines = text.replace("\r\n", "\n").split("\n")
    return lines, body


def _split_headers(lines: list[str]) -> tuple[list[tuple[str, str, str]], str | None]:
    entries: list[tuple[str, str, str]] = []
    append = entries.append
    error = None
    exact = _EXACT
    known_lines = _LINES
    for i in range(1, len(lines)):
        line = lines[i]
        entry = known_lines.get(line)
        if entry is not None:
            append(entry)
            continue
        name, colon, value = line.partition(":")
        info = exact.get(name)
        if info is not None and colon:
            entry = (info[0], info[1], value.strip(" \t"))
            append(entry)
            if entry[0] not in _UNIQUE and len(line) <= 256:
                if len(known_lines) >= _LINES_SIZE:
                    known_lines.clear()
                known_lines[line] = entry
            continue
        if not colon:
            error = error or "header without colon"
            continue
        info = _KNOWN.get(name.lower())
        if info is not None and len(exact) < 2048:
            exact[name] = info  # remember this spelling of a known name
        if info is None:
            stripped = name.strip(" \t")
            if not _TOKEN_RE.match(stripped):
                error = error or "bad header name"
                continue
            low = stripped.lower()
            info = _KNOWN.get(low) or (low, stripped)
        entries.append((info[0], info[1], value.strip(" \t")))
    return entries, error


def _best_effort(start: str, entries: list[tuple[str, str, str]]) -> Request | None:
    """A Request with what a 400 needs, or None when no response can be formed."""
    parts = start.split()
    if len(parts) > 3:  # LWS inside the Request-URI
        parts = [parts[0], "".join(parts[1:-1]), parts[-1]]
    if len(parts) != 3 or parts[0].upper().startswith("SIP/") or not parts[2].upper().startswith("SIP/"):
        return None
    keep = [e for e in entries if e[0] in ("via", "from", "to", "call-id", "cseq")]
    present = {e[0] for e in keep}
    if len(present) != 5:
        return None
    top = next(e[2] for e in keep if e[0] == "via")
    items = split_list(top) if '"' not in top else [top]
    if not items or _VIA_RE.match(items[0]) is None:
        return None
    headers = Headers()
    headers.entries = keep
    return Request(parts[0], parts[1], headers, version=parts[2])


def _check(msg: Request | Response, entries: list[tuple[str, str, str]], body: bytes) -> bytes:
    """Syntax checks of the core headers; fills the typed cache. Returns the body."""
    typed = msg.headers.typed  # empty: holds the single headers seen so far
    vias: list[Via] | None = None
    cls: list[str] | None = None
    contacts: list[str] | None = None
    checked = _CHECKED
    for key, _, value in entries:
        if key not in checked:
            continue
        if key == "via":
            if vias is None:
                vias = []
            if "," not in value:
                vias.append(Via.parse(value))
                continue
            for item in split_list(value, keep_empty=True):
                if not item:
                    raise SIPParseError("empty Via value")
                vias.append(Via.parse(item))
        elif key == "content-length":
            if cls is None:
                cls = [value]
            else:
                cls.append(value)
        elif key == "contact":
            if contacts is None:
                contacts = [value]
            else:
                contacts.append(value)
        else:
            if key in typed:
                raise SIPParseError(f"more than one {key} header")
            if key == "from" or key == "to":
                typed[key] = NameAddr.parse(value)
            elif key == "cseq":
                typed[key] = CSeq.parse(value)
            elif key == "call-id":
                if not _CALLID_RE.match(value):
                    raise SIPParseError("bad Call-ID")
                typed[key] = value
            else:
                if not _NUMBER_RE.match(value) or int(value) > 255:
                    raise SIPParseError("bad Max-Forwards")
                typed[key] = int(value)
    if vias:
        typed["via"] = vias
    if contacts is not None and not (len(contacts) == 1 and contacts[0] == "*"):
        typed["contact"] = [NameAddr.parse(c) for v in contacts for c in split_list(v)]
    if cls is not None:
        if len(cls) == 1:
            if not _NUMBER_RE.match(cls[0]):
                raise SIPParseError("bad Content-Length")
            length = int(cls[0])
        else:
            if any(not _NUMBER_RE.match(v) for v in cls):
                raise SIPParseError("bad Content-Length")
            length = int(cls[0])
            if any(int(v) != length for v in cls):
                raise SIPParseError("conflicting Content-Length headers")
        if length > len(body):
            raise SIPParseError("Content-Length larger than the message")
        typed["content-length"] = length
        if length < len(body):
            body = body[:length]
    return body


def _too_large(lines: list[str], reason: str, max_headers: int, max_length: int) -> SIPParseError:
    """A 513 error; its best-effort request is recovered from the lines within the limits."""
    start = lines[0]
    request = None
    if start[:4].upper() != "SIP/" and len(start) <= max_length:
        kept = [line for line in lines[1 : max_headers + 1] if len(line) <= max_length]
        request = _best_effort(start, _split_headers([start, *kept])[0])
    return SIPParseError(reason, request=request, status=513)


def oversize_error(head: bytes, reason: str = "Message Too Large") -> SIPParseError:
    """A 513 SIPParseError for a message over the size limit, given its first bytes:
    the best-effort request (for the 513) is recovered from its header section."""
    try:
        lines, _ = _split_head(head[:MAX_HEADER_LENGTH * 4])
        return _too_large(lines, reason, MAX_HEADERS, MAX_HEADER_LENGTH)
    except Exception:
        return SIPParseError(reason, status=513)


def parse_message(
    data: bytes, *, max_headers: int = MAX_HEADERS, max_header_length: int = MAX_HEADER_LENGTH
) -> Request | Response:
    """Parse one whole message (a datagram, or a message framed by StreamFramer).

    The body is Content-Length bytes (the rest of the datagram when the header
    is absent; a shorter Content-Length truncates, RFC 3261 s18.3).  Raises
    SIPParseError; for requests its ``request`` is a best-effort Request when
    the request line, Via, From, To, Call-ID and CSeq could be recovered.
    More than ``max_headers`` header fields, or a line (after unfolding) longer
    than ``max_header_length``, raises it with ``status`` 513.
    """
    # _split_head of the usual message, inline: no leading CRLF, an empty line ending the
    # header section, CRLF line ends only and no folding
    end = data.find(b"\r\n\r\n")
    lines = None
    if end > 0 and data[0] > 13:
        text = data[:end].decode("utf-8", "surrogateescape")
        lines = text.split("\r\n")
        if text.count("\n") == len(lines) - 1 and min(lines)[:1] > " ":
            body = data[end + 4 :]
        else:
            lines = None
    if lines is None:
        try:
            lines, body = _split_head(data)
        except SIPParseError:
            raise
        except Exception as e:  # pragma: no cover - defensive: never leak other errors
            raise SIPParseError("unparsable message") from e
    if len(lines) > max_headers + 1:
        raise _too_large(lines, "Too Many Headers", max_headers, max_header_length)
    # no line is longer than the whole message
    if len(data) > max_header_length and max(map(len, lines)) > max_header_length:
        raise _too_large(lines, "Header Too Long", max_headers, max_header_length)
    try:
        return _parse_fast(lines, body)
    except SIPParseError:
        pass  # the steps below, in their order, say why
    start = lines[0]
    entries, error = _split_headers(lines)
    headers = _new(Headers)
    headers.entries = entries
    headers.typed = {}
    headers.live = set()
    headers.checked = False  # until _check has run
    headers.plain = False
    known = _STARTS.get(start)
    if known is None:
        known = _start_line(start)
    if known is not None and type(known[1]) is int:  # a response
        resp = _new(Response)
        resp.headers = headers
        resp.body = b""
        resp.version, resp.status, resp.reason = known  # type: ignore[assignment]
        if error:
            raise SIPParseError(error)
        try:
            resp.body = _check(resp, entries, body)
        except SIPParseError as e:
            raise SIPParseError(e.reason) from None
        headers.checked = True
        return resp
    try:
        if known is None:
            raise SIPParseError("bad request line")
        if error:
            raise SIPParseError(error)
        req = _new(Request)
        req.headers = headers
        req.body = b""
        req.method, uri, req.version = known  # type: ignore[assignment]
        req._uri_raw = uri  # type: ignore[assignment]
        req._uri_live = False
        req._uri = URI.parse(uri)  # type: ignore[arg-type]
        req.body = _check(req, entries, body)
        headers.checked = True
        return req
    except SIPParseError as e:
        raise SIPParseError(e.reason, request=_best_effort(start, entries)) from None


class _Unusual(SIPParseError):
    """Raised inside _parse_fast for anything it leaves to the step-by-step parse."""

    def __init__(self) -> None:
        super().__init__("unusual")


def _parse_fast(lines: list[str], body: bytes) -> Request | Response:
    """parse_message of a message without errors, in one pass over the header lines.

    It does the work of _split_headers, the start line checks, URI.parse of the
    Request-URI and _check with the same results, but not in the order that
    decides which error a broken message gets: at the first problem it raises
    SIPParseError, and parse_message runs the steps one by one instead.
    """
    start = lines[0]
    known = _STARTS.get(start)
    if known is None:
        known = _start_line(start)
        if known is None:
            raise _Unusual
    typed: dict[str, Any] = {}
    entries: list[tuple[str, str, str]] = []
    append = entries.append
    known_lines = _LINES
    exact = _EXACT
    checked = _FAST_CHECKED
    vias: list[Via] | None = None
    length_text: str | None = None
    contacts: list[str] | None = None
    plain = True
    for line in lines[1:]:
        entry = known_lines.get(line)
        if entry is None:
            name, colon, value = line.partition(":")
            if not colon:
                raise _Unusual
            info = exact.get(name)
            if info is None:  # as _split_headers
                info = _KNOWN.get(name.lower())
                if info is not None:
                    if len(exact) < 2048:
                        exact[name] = info
                else:
                    stripped = name.strip(" \t")
                    if not _TOKEN_RE.match(stripped):
                        raise _Unusual
                    low = stripped.lower()
                    info = _KNOWN.get(low) or (low, stripped)
            key = info[0]
            value = value.strip(" \t")
            entry = (key, info[1], value)
            if key not in _UNIQUE and len(line) <= 256:
                if len(known_lines) >= _LINES_SIZE:
                    known_lines.clear()
                known_lines[line] = entry
        else:
            key, _, value = entry
        append(entry)
        if key not in checked:
            continue
        # the most frequent first: From and To, then one each of Via, CSeq, Call-ID...
        if key == "from" or key == "to":
            if key in typed:
                raise _Unusual
            typed[key] = NameAddr.parse(value)
        elif key == "via":
            if "," in value:
                raise _Unusual
            if vias is None:
                vias = [Via.parse(value)]
            else:
                vias.append(Via.parse(value))
        elif key == "cseq":
            if key in typed:
                raise _Unusual
            typed[key] = CSeq.parse(value)
        elif key == "call-id":
            if key in typed:
                raise _Unusual
            # _CALLID_RE (\S+): printable and no space is the usual case, without the regex
            if not (value and " " not in value and value.isprintable()) and not _CALLID_RE.match(value):
                raise _Unusual
            typed[key] = value
        elif key == "content-length":
            if length_text is not None:
                raise _Unusual
            length_text = value
        elif key == "contact":
            if contacts is None:
                contacts = [value]
            else:
                contacts.append(value)
        elif key == "max-forwards":
            if key in typed:
                raise _Unusual
            number = _NUMBERS.get(value)
            if number is None:
                number = _number(value)
            if number > 255:
                raise _Unusual
            typed[key] = number
        else:  # Record-Route, Timestamp: make_response copies them
            plain = False
    if vias:
        typed["via"] = vias
    if contacts is not None:
        if len(contacts) == 1 and "," not in contacts[0]:  # split_list of it, inline
            if contacts[0] != "*":
                contact = contacts[0].strip()
                typed["contact"] = [NameAddr.parse(contact)] if contact else []
        else:
            typed["contact"] = [NameAddr.parse(c) for v in contacts for c in split_list(v)]
    if length_text is not None:
        length = _NUMBERS.get(length_text)
        if length is None:
            length = _number(length_text)
        if length > len(body):
            raise _Unusual
        typed["content-length"] = length
        if length < len(body):
            body = body[:length]
    headers = _new(Headers)
    headers.entries = entries
    headers.typed = typed
    headers.live = set()
    headers.checked = True
    headers.plain = plain
    msg: Request | Response
    if type(known[1]) is int:
        msg = _new(Response)
        msg.version, msg.status, msg.reason = known  # type: ignore[assignment]
    else:
        msg = _new(Request)
        msg.method, uri, msg.version = known  # type: ignore[assignment]
        msg._uri = URI.parse(uri)  # type: ignore[arg-type]
        msg._uri_raw = uri  # type: ignore[assignment]
        msg._uri_live = False
    msg.headers = headers
    msg.body = body
    return msg


#: digit strings seen (Max-Forwards, Content-Length values) -> their value; bounded
_NUMBERS: dict[str, int] = {}


def _number(text: str) -> int:
    """int(text) of a [0-9]+ text (remembered), else _Unusual."""
    if not _NUMBER_RE.match(text):
        raise _Unusual
    number = int(text)
    if len(text) <= 12:
        if len(_NUMBERS) >= 1024:
            _NUMBERS.clear()
        _NUMBERS[text] = number
    return number


def _start_line(start: str) -> tuple[str, str, str] | tuple[str, int, str] | None:
    """The parts of a status line (version, status, reason) or of a request line
    (method, Request-URI, version), remembered; None for a bad request line."""
    parts: list[str] = []
    known: tuple[str, str, str] | tuple[str, int, str]
    if start[:4].upper() == "SIP/":
        parts = start.split(" ", 2)
        if (
            len(parts) < 2
            or not _VERSION_RE.match(parts[0])
            or not _STATUS_RE.match(parts[1])
        ):
            raise SIPParseError("bad status line")
        known = (parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "")
    else:
        parts = start.split(" ")
        if len(parts) != 3 or not _TOKEN_RE.match(parts[0]) or not _VERSION_RE.match(parts[2]):
            return None
        known = (parts[0], parts[1], parts[2])
    if len(_STARTS) >= _STARTS_SIZE:
        _STARTS.clear()
    _STARTS[start] = known
    return known


class StreamFramer:
    """Cuts a TCP/TLS byte stream into whole messages by Content-Length (RFC 3261 s18.3).

    CRLFs between messages (keep-alives, RFC 5626 s4.4.1) are skipped.  A
    header section longer than ``max_header_size``, a message longer than
    ``max_message_size`` or a missing/invalid Content-Length raises
    SIPParseError with ``fatal=True``: the connection must be closed.
    """

    def __init__(self, max_message_size: int = 65535, max_header_size: int = 16384) -> None:
        self.max_message_size = max_message_size
        self.max_header_size = min(max_header_size, max_message_size)
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes buffered towards the next message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete messages now available.

        A framing error raises SIPParseError whose ``messages`` holds the whole
        messages framed before the bad bytes (deliver them, then close); the
        buffer is emptied, so ``pending`` is 0 after it.
        """
        out: list[bytes] = []
        try:
            self._feed(data, out)
        except SIPParseError as error:
            error.messages = out  # type: ignore[attr-defined]
            if error.fatal:  # the connection is closed: drop what cannot be framed
                del self._buffer[:]
            raise
        return out

    def _feed(self, data: bytes, out: list[bytes]) -> None:
        buf = self._buffer
        buf += data
        while buf:
            skip = 0
            n = len(buf)
            while skip < n and buf[skip] in (13, 10):
                skip += 1
            if skip:
                del buf[:skip]
                if not buf:
                    break
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.max_header_size:
                    raise SIPParseError("header section too large", fatal=True)
                break
            if end + 4 > self.max_header_size:
                raise SIPParseError("header section too large", fatal=True)
            values = _STREAM_CL_RE.findall(bytes(buf[:end]))
            if not values:
                raise SIPParseError("missing Content-Length on a stream", fatal=True)
            stripped = {v.strip() for v in values}
            if len(stripped) != 1:
                raise SIPParseError("conflicting Content-Length headers", fatal=True)
            value = stripped.pop()
            if not value.isdigit() or len(value) > 10:
                raise SIPParseError("bad Content-Length", fatal=True)
            total = end + 4 + int(value)
            if total > self.max_message_size:
                error = oversize_error(bytes(buf[:end]), "message too large")
                error.fatal = True
                raise error
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
