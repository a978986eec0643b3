"""SIP value types: URI, NameAddr, Via and CSeq (layer 1, pure).

Parsing follows RFC 3261 section 25 (sip:/sips: URIs, name-addr and
addr-spec, Via, CSeq), RFC 3966 (tel:) and RFC 5118 (IPv6 references).
Every ``parse`` raises :class:`pbxd.errors.SIPParseError` on malformed text
and nothing else.  The objects are small, mutable and cheap to copy; their
``__str__`` gives the wire form back.

Percent-escapes are undone on parse for the user part, URI parameters and
URI headers (``sip:%75ser@h`` has ``user == 'user'``) and applied again on
output where the grammar needs them.  Header parameter values of
:class:`NameAddr` and :class:`Via` are kept as they appear on the wire
(quoted values keep their quotes).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from pbxd.errors import SIPParseError

__all__ = ["URI", "NameAddr", "Via", "CSeq", "parse_params", "format_params"]

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_.])?\Z")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\Z")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_WS_RE = re.compile(r"[\s<>\"]")
_TEL_RE = re.compile(r"[0-9A-Fa-f*#+\-.()pPwW]+\Z")
_DIGITS_RE = re.compile(r"[0-9]{1,10}\Z")
_CSEQ_RE = re.compile(r"\s*([0-9]{1,12})\s+([A-Za-z0-9\-.!%*_+`'~]+)\s*\Z")
_VIA_RE = re.compile(
    r"\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)\s+(\[[^\]\s]*\]|[^\s:;\[\]]+)"
    r"(?:\s*:\s*([0-9]{1,5}))?\s*(.*)\Z",
    re.S,
)
# fast paths: plain forms matched by one regex; anything else takes the general code
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_PVALUE = r"(?:[^;\s\"<>,]+|\"(?:[^\"\\\x00-\x1f]|\\[^\x00-\x1f])*\")"
_FAST_PARAMS_RE = re.compile(r"(?:;" + _TOKEN + r"(?:=" + _PVALUE + r")?)*\Z")
_PARAM_ITEM_RE = re.compile(r";(" + _TOKEN + r")(=?)(" + _PVALUE + r"?)")
_FAST_SIP_RE = re.compile(
    r"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,/]+)(?::([A-Za-z0-9\-_.!~*'()&=+$,]*))?@)?"
    r"([A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_.])?)(?::([0-9]{1,5}))?"
    r"((?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+)?)*)\Z"
)
_FAST_NAMEADDR_RE = re.compile(
    r'[ \t]*(?:"([^"\\\x00-\x1f]*)"[ \t]*|(' + _TOKEN + r"(?:[ \t]+" + _TOKEN + r")*)[ \t]*)?"
    r"<([^<>\s]+)>[ \t]*((?:;" + _TOKEN + r"(?:=" + _PVALUE + r")?)*)[ \t]*\Z"
)
_FAST_VIA_RE = re.compile(
    r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_.])?)(?::([0-9]{1,5}))?"
    r"((?:;" + _TOKEN + r"(?:=" + _PVALUE + r")?)*)\Z"
)


def _fast_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if '"' in text:
        for name, eq, value in _PARAM_ITEM_RE.findall(text):
            params[name.lower()] = value if eq else None
        return params
    for part in text[1:].split(";"):
        name, eq, value = part.partition("=")
        params[name.lower()] = value if eq else None
    return params


# characters that may appear unescaped (besides alphanumerics), RFC 3261 s25.1
_USER_SAFE = "-_.!~*'()&=+$,;?/"
_PASSWORD_SAFE = "-_.!~*'()&=+$,"
_PARAM_SAFE = "-_.!~*'()[]/:&+$"
_HEADER_SAFE = "-_.!~*'()[]/?:+$"
_NEEDS = {
    safe: re.compile("[^A-Za-z0-9" + re.escape(safe) + "]")
    for safe in (_USER_SAFE, _PASSWORD_SAFE, _PARAM_SAFE, _HEADER_SAFE)
}


def _unescape(text: str, what: str) -> str:
    if "%" not in text:
        return text
    if _BAD_ESCAPE_RE.search(text):
        raise SIPParseError(f"bad escape in {what}")
    return unquote(text, errors="surrogateescape")


def _escape(text: str, safe: str) -> str:
    if not _NEEDS[safe].search(text):
        return text
    return quote(text, safe=safe, errors="surrogateescape")


def _check_host(host: str) -> str:
    """Validate a host (IPv6 given without brackets) and lower-case it."""
    if _HOSTNAME_RE.match(host) or (":" in host and _IPV6_RE.match(host)):
        return host.lower()
    raise SIPParseError("bad host")


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_params(text: str, what: str = "parameter") -> dict[str, str | None]:
    """Parse ``;name=value;flag`` header parameters (text starts at the first ``;``).

    Names are lower-cased; values are kept verbatim (quoted strings keep their
    quotes).  Raises SIPParseError on an empty name or unbalanced quotes.
    """
    if _FAST_PARAMS_RE.match(text):
        return _fast_params(text) if text else {}
    params: dict[str, str | None] = {}
    text = text.strip()
    if not text:
        return params
    if text[0] != ";":
        raise SIPParseError(f"bad {what}")
    if '"' in text:
        parts = _split_quoted(text[1:], ";", what)
    else:
        parts = text[1:].split(";")
    for part in parts:
        name, eq, value = part.partition("=")
        name = name.strip()
        if not _TOKEN_RE.match(name):
            raise SIPParseError(f"bad {what}")
        if eq:
            value = value.strip()
            if value[:1] == '"':
                if len(value) < 2 or value[-1] != '"':
                    raise SIPParseError(f"bad {what} value")
            elif not value or _WS_RE.search(value):
                raise SIPParseError(f"bad {what} value")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def _split_quoted(text: str, sep: str, what: str) -> list[str]:
    """Split ``text`` on ``sep`` outside double-quoted strings (with backslash escapes)."""
    parts: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                raise SIPParseError(f"unterminated quoted string in {what}")
        elif c == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def format_params(params: dict[str, str | None]) -> str:
    """Serialise header parameters as ``;name=value;flag``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


class URI:
    """A sip:, sips: or tel: URI (other schemes are kept opaque in ``opaque``).

    ``host`` is lower case, IPv6 without brackets, ``''`` for tel: and
    opaque URIs; ``user`` is unescaped (the number for tel:); ``params``
    keys are lower case, ``;lr`` gives ``{'lr': None}``.
    """

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers", "opaque")

    def __init__(
        self,
        scheme: str = "sip",
        user: str | None = None,
        host: str = "",
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: dict[str, str] | None = None,
        password: str | None = None,
        opaque: str | None = None,
    ) -> None:
        self.scheme = scheme.lower()
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = {} if params is None else params
        self.headers: dict[str, str] = {} if headers is None else headers
        self.opaque = opaque

    @classmethod
    def parse(cls, text: str) -> URI:
        """Parse a URI; raises SIPParseError when it is malformed."""
        m = _FAST_SIP_RE.match(text)
        if m is not None and "%" not in text:
            scheme, user, password, host, port, ptext = m.groups()
            uri = cls.__new__(cls)
            uri.scheme = scheme
            uri.user = user
            uri.password = password
            uri.host = host.lower()
            uri.port = int(port) if port is not None else None
            if uri.port is not None and uri.port > 65535:
                raise SIPParseError("bad URI port")
            uri.params = _fast_params(ptext) if ptext else {}
            uri.headers = {}
            uri.opaque = None
            return uri
        scheme, colon, rest = text.partition(":")
        if not colon or not rest or _WS_RE.search(text) or not _SCHEME_RE.match(scheme):
            raise SIPParseError("bad URI")
        scheme = scheme.lower()
        if scheme == "sip" or scheme == "sips":
            return cls._parse_sip(scheme, rest)
        if scheme == "tel":
            number, _, ptext = rest.partition(";")
            if not _TEL_RE.match(number):
                raise SIPParseError("bad tel URI")
            return cls("tel", number, "", None, _uri_params(ptext) if ptext else {})
        return cls(scheme, opaque=rest)

    @classmethod
    def _parse_sip(cls, scheme: str, rest: str) -> URI:
        user = password = None
        at = rest.find("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            if ":" in userinfo:
                userinfo, _, pw = userinfo.partition(":")
                password = _unescape(pw, "password")
            if not userinfo:
                raise SIPParseError("bad URI user")
            user = _unescape(userinfo, "URI user")
        headers: dict[str, str] = {}
        if "?" in rest:
            rest, _, htext = rest.partition("?")
            for item in htext.split("&"):
                hname, eq, hvalue = item.partition("=")
                if not hname or not eq:
                    raise SIPParseError("bad URI header")
                headers[_unescape(hname, "URI header")] = _unescape(hvalue, "URI header")
        hostport, _, ptext = rest.partition(";")
        if hostport.startswith("["):
            end = hostport.find("]")
            if end < 0:
                raise SIPParseError("bad IPv6 reference")
            host, portpart = hostport[1:end], hostport[end + 1 :]
            if ":" not in host:
                raise SIPParseError("bad IPv6 reference")
        else:
            host, colon, portpart = hostport.partition(":")
            portpart = colon + portpart
        port = None
        if portpart:
            if portpart[0] != ":" or not _DIGITS_RE.match(portpart[1:]):
                raise SIPParseError("bad URI port")
            port = int(portpart[1:])
            if port > 65535:
                raise SIPParseError("bad URI port")
        host = _check_host(host)
        if ":" in host and not hostport.startswith("["):
            raise SIPParseError("bad URI host")
        params = _uri_params(ptext) if ptext else {}
        return cls(scheme, user, host, port, params, headers, password)

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            out = f"tel:{self.user or ''}"
        else:
            out = self.scheme + ":"
            if self.user is not None:
                out += _escape(self.user, _USER_SAFE)
                if self.password is not None:
                    out += ":" + _escape(self.password, _PASSWORD_SAFE)
                out += "@"
            out += _format_host(self.host)
            if self.port is not None:
                out += f":{self.port}"
        for k, v in self.params.items():
            out += ";" + _escape(k, _PARAM_SAFE)
            if v is not None:
                out += "=" + _escape(v, _PARAM_SAFE)
        if self.headers:
            out += "?" + "&".join(
                f"{_escape(k, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}" for k, v in self.headers.items()
            )
        return out

    def __repr__(self) -> str:
        return f"URI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, URI):
            return NotImplemented
        return (
            self.scheme == other.scheme
            and self.user == other.user
            and self.password == other.password
            and self.host == other.host
            and self.port == other.port
            and self.params == other.params
            and self.headers == other.headers
            and self.opaque == other.opaque
        )

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> URI:
        """An independent copy (params and headers dicts are copied)."""
        return URI(
            self.scheme, self.user, self.host, self.port, dict(self.params), dict(self.headers),
            self.password, self.opaque,
        )

    @property
    def transport(self) -> str | None:
        """``params['transport']`` upper-cased, or None."""
        t = self.params.get("transport")
        return t.upper() if t else None

    @property
    def host_port(self) -> tuple[str, int | None]:
        """``(host, port)``; port is None when the URI has none."""
        return self.host, self.port


def _uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not name:
            raise SIPParseError("bad URI parameter")
        name = _unescape(name, "URI parameter").lower()
        params[name] = _unescape(value, "URI parameter") if eq else None
    return params


def _unquote_display(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\(.)", r"\1", text, flags=re.S)


_DISPLAY_ESCAPE_RE = re.compile(r'(["\\\x00-\x08\x0a-\x1f\x7f])')


def _quote_display(text: str) -> str:
    return '"' + _DISPLAY_ESCAPE_RE.sub(r"\\\1", text) + '"'


class NameAddr:
    """A name-addr or addr-spec: the value of From, To, Contact, Route, Record-Route.

    ``display`` is the unquoted display name or None; ``params`` are the header
    parameters after the URI (for addr-spec form, everything after the first
    ``;`` is a header parameter, RFC 3261 s20.10).
    """

    __slots__ = ("display", "uri", "params")

    def __init__(
        self, uri: URI, display: str | None = None, params: dict[str, str | None] | None = None
    ) -> None:
        self.uri = uri
        self.display = display
        self.params: dict[str, str | None] = {} if params is None else params

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse name-addr or addr-spec form; raises SIPParseError when malformed."""
        m = _FAST_NAMEADDR_RE.match(text)
        if m is not None:
            quoted, words, uritext, ptext = m.groups()
            na = cls.__new__(cls)
            if quoted is not None:
                na.display = quoted
            elif words:
                na.display = " ".join(words.split())
            else:
                na.display = None
            na.uri = URI.parse(uritext)
            na.params = _fast_params(ptext) if ptext else {}
            return na
        text = text.strip()
        display = None
        if text.startswith('"'):
            i, n = 1, len(text)
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                raise SIPParseError("unterminated quoted display name")
            display = _unquote_display(text[1:i])
            rest = text[i + 1 :].lstrip()
            if not rest.startswith("<"):
                raise SIPParseError("bad name-addr")
        else:
            lt = text.find("<")
            if lt < 0:
                uritext, _, ptext = text.partition(";")
                uritext = uritext.rstrip()
                if not uritext or "?" in uritext or "," in uritext:
                    raise SIPParseError("bad addr-spec")
                return cls(URI.parse(uritext), None, parse_params(";" + ptext) if _ else {})
            words = text[:lt].split()
            for w in words:
                if not _TOKEN_RE.match(w):
                    raise SIPParseError("bad display name")
            display = " ".join(words) or None
            rest = text[lt:]
        gt = rest.find(">")
        if gt < 0:
            raise SIPParseError("unterminated <URI>")
        uri = URI.parse(rest[1:gt])
        after = rest[gt + 1 :]
        return cls(uri, display, parse_params(after) if after.strip() else {})

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter, or None."""
        return self.params.get("tag")

    def __str__(self) -> str:
        out = f"<{self.uri}>"
        if self.display is not None:
            out = f"{_quote_display(self.display)} {out}"
        return out + format_params(self.params) if self.params else out

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return self.display == other.display and self.uri == other.uri and self.params == other.params

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> NameAddr:
        """An independent copy."""
        return NameAddr(self.uri.copy(), self.display, dict(self.params))


class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...``."""

    __slots__ = ("protocol", "transport", "host", "port", "params")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.protocol = protocol
        self.transport = transport.upper()
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = {} if params is None else params

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value; raises SIPParseError when malformed."""
        fm = _FAST_VIA_RE.match(text)
        if fm is not None:
            transport, host, port, ptext = fm.groups()
            via = cls.__new__(cls)
            via.protocol = "SIP/2.0"
            via.transport = transport.upper()
            via.host = host.lower()
            via.port = int(port) if port is not None else None
            if via.port is not None and via.port > 65535:
                raise SIPParseError("bad Via port")
            via.params = _fast_params(ptext) if ptext else {}
            return via
        m = _VIA_RE.match(text)
        if m is None:
            raise SIPParseError("bad Via")
        name, version, transport, host, port, rest = m.groups()
        if host[0] == "[":
            host = host[1:-1]
            if ":" not in host:
                raise SIPParseError("bad Via host")
        elif ":" in host:
            raise SIPParseError("bad Via host")
        host = _check_host(host)
        portnum = None
        if port is not None:
            portnum = int(port)
            if portnum > 65535:
                raise SIPParseError("bad Via port")
        params = parse_params(rest, "Via parameter") if rest else {}
        return cls(transport, host, portnum, params, f"{name.upper()}/{version}")

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter, or None."""
        return self.params.get("branch")

    def __str__(self) -> str:
        out = f"{self.protocol}/{self.transport} {_format_host(self.host)}"
        if self.port is not None:
            out += f":{self.port}"
        return out + format_params(self.params) if self.params else out

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return (
            self.protocol == other.protocol
            and self.transport == other.transport
            and self.host == other.host
            and self.port == other.port
            and self.params == other.params
        )

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> Via:
        """An independent copy."""
        return Via(self.transport, self.host, self.port, dict(self.params), self.protocol)


class CSeq:
    """The CSeq value: a sequence number below 2**31 and a method."""

    __slots__ = ("seq", "method")

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse ``"4711 INVITE"``; raises SIPParseError when malformed or too large."""
        m = _CSEQ_RE.match(text)
        if m is None:
            raise SIPParseError("bad CSeq")
        seq = int(m.group(1))
        if seq >= 2**31:
            raise SIPParseError("CSeq number too large")
        return cls(seq, m.group(2))

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.seq}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return self.seq == other.seq and self.method == other.method

    __hash__ = None  # type: ignore[assignment]
