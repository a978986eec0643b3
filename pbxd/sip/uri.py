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
from typing import Any
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
_PLAIN_VALUE_RE = re.compile(_TOKEN + r"\Z")  # a parameter value _PVALUE accepts, unquoted
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
# _FAST_NAMEADDR_RE of a text without '"', cut after its first ">" (the one closing the URI)
_FAST_NAMEADDR_HEAD_RE = re.compile(
    r"[ \t]*(?:(" + _TOKEN + r"(?:[ \t]+" + _TOKEN + r")*)[ \t]*)?<([^<>\s]+)>\Z"
)
_FAST_NAMEADDR_REST_RE = re.compile(
    r"[ \t]*((?:;" + _TOKEN + r"(?:=" + _PVALUE + r")?)*)[ \t]*\Z"
)
_FAST_VIA_RE = re.compile(
    r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_.])?)(?::([0-9]{1,5}))?"
    r"((?:;" + _TOKEN + r"(?:=" + _PVALUE + r")?)*)\Z"
)
# _FAST_VIA_RE without the parameters: the part before the first ";" of a Via it matches
_FAST_VIA_HEAD_RE = re.compile(
    r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_.])?)(?::([0-9]{1,5}))?\Z"
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


def _canonical_params(text: str) -> tuple[dict[str, str | None], bool]:
    """:func:`_fast_params` of ``text`` (which matched ``_FAST_PARAMS_RE`` or the
    parameter part of ``_FAST_SIP_RE``), and whether :func:`format_params` of the
    result gives ``text`` back (every name lower case, none repeated)."""
    params: dict[str, str | None] = {}
    canonical = True
    if '"' in text:
        items = _PARAM_ITEM_RE.findall(text)
        for name, eq, value in items:
            low = name.lower()
            if low != name:
                canonical = False
            params[low] = value if eq else None
        return params, canonical and len(params) == len(items)
    if text.find(";", 1) < 0:  # one parameter
        name, eq, value = text[1:].partition("=")
        low = name.lower()
        params[low] = value if eq else None
        return params, low == name
    parts = text[1:].split(";")
    for part in parts:
        name, eq, value = part.partition("=")
        low = name.lower()
        if low != name:
            canonical = False
        params[low] = value if eq else None
    return params, canonical and len(params) == len(parts)


#: parse caches: text -> immutable parts of the parsed value (each hit builds new
#: objects from them); cleared when full, so any input costs at most a re-parse
_CACHE_SIZE = 2048
_URI_CACHE: dict[str, tuple[str, str | None, str | None, str, int | None,
                            tuple[tuple[str, str | None], ...], str | None]] = {}
#: name-addr text -> display, URI text, parameters, wire form, the URI's _URI_CACHE parts
_NameAddrParts = tuple[str | None, str, tuple[tuple[str, str | None], ...], str, tuple[Any, ...] | None]
_NAMEADDR_CACHE: dict[str, _NameAddrParts] = {}
_CSEQ_CACHE: dict[str, tuple[int, str]] = {}
#: name-addr text up to the ">" after the URI -> (display, URI text, "display <URI>" as written)
_NAMEADDR_HEADS: dict[str, tuple[str | None, str, str]] = {}
#: Via text before the first ";" -> (transport, host, port, what __str__ writes for them)
_VIA_HEADS: dict[str, tuple[str, str, int | None, str]] = {}
#: Via parameters after a first ";branch=..." -> their items (False: not for the fast path)
_VIA_TAILS: dict[str, tuple[tuple[str, str | None], ...] | bool] = {}
_new = object.__new__


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
    out = ""
    for k, v in params.items():
        out += f";{k}" if v is None else f";{k}={v}"
    return out



def _uri_from_parts(cls: Any, parts: tuple[Any, ...]) -> Any:
    """A ``cls`` (URI) built from a cached parse ``(scheme, user, password, host, port,
    param items, raw)``: what :meth:`URI.parse` returns for text it has parsed before."""
    uri = _new(cls)
    uri.scheme, uri.user, uri.password, uri.host, uri.port, items, uri._raw = parts
    uri.params = dict(items) if items else {}
    uri.headers = {}
    uri.opaque = None
    uri._snap = parts
    return uri

class URI:
    """A sip:, sips: or tel: URI (other schemes are kept opaque in ``opaque``).

    ``host`` is lower case, IPv6 without brackets, ``''`` for tel: and
    opaque URIs; ``user`` is unescaped (the number for tel:); ``params``
    keys are lower case, ``;lr`` gives ``{'lr': None}``.
    """

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers", "opaque",
                 "_raw", "_snap")

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
        # the wire form as parsed (when it is what __str__ writes) and the values it
        # was parsed into: __str__ returns it while the values are unchanged
        self._raw: str | None = None
        self._snap: tuple[Any, ...] = ()

    @classmethod
    def parse(cls, text: str) -> URI:
        """Parse a URI; raises SIPParseError when it is malformed."""
        cached = _URI_CACHE.get(text)
        if cached is None:
            cached = _parse_fast_uri(text)
        if cached is not None:
            return _uri_from_parts(cls, cached)
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

    def _fresh(self) -> bool:
        """True while ``_raw`` is what __str__ would write (values as parsed)."""
        s = self._snap
        return (
            self.user is s[1] and self.host is s[3] and self.port is s[4] and self.scheme is s[0]
            and self.password is s[2] and self.opaque is None and not self.headers
            and (tuple(self.params.items()) == s[5] if self.params else not s[5])
        )

    def __str__(self) -> str:
        raw = self._raw
        if raw is not None:  # self._fresh(), inline
            s = self._snap
            if (self.user is s[1] and self.host is s[3] and self.port is s[4]
                    and self.scheme is s[0] and self.password is s[2] and self.opaque is None
                    and not self.headers
                    and (tuple(self.params.items()) == s[5] if self.params else not s[5])):
                return raw
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
        uri = _new(URI)
        scheme = self.scheme
        low = scheme.lower()
        uri.scheme = scheme if low == scheme else low
        uri.user = self.user
        uri.password = self.password
        uri.host = self.host
        uri.port = self.port
        uri.params = dict(self.params)
        uri.headers = dict(self.headers)
        uri.opaque = self.opaque
        uri._snap = self._snap
        uri._raw = self._raw if self._raw is not None and self._fresh() else None
        return uri

    @property
    def transport(self) -> str | None:
        """``params['transport']`` upper-cased, or None."""
        t = self.params.get("transport")
        return t.upper() if t else None

    @property
    def host_port(self) -> tuple[str, int | None]:
        """``(host, port)``; port is None when the URI has none."""
        return self.host, self.port


def _parse_fast_uri(text: str) -> tuple[str, str | None, str | None, str, int | None,
                                         tuple[tuple[str, str | None], ...], str | None] | None:
    """The parts of a plain sip:/sips: URI (cached), or None for the general parser."""
    m = _FAST_SIP_RE.match(text)
    if m is None or "%" in text:
        return None
    scheme, user, password, host, port, ptext = m.groups()
    low = host.lower()
    canonical = low == host
    portnum = None
    if port is not None:
        portnum = int(port)
        if portnum > 65535:
            raise SIPParseError("bad URI port")
        if port[0] == "0" and len(port) > 1:
            canonical = False
    items: tuple[tuple[str, str | None], ...] = ()
    if ptext:
        params, canonical_params = _canonical_params(ptext)
        items = tuple(params.items())
        canonical = canonical and canonical_params
    parts = (scheme, user, password, low, portnum, items, text if canonical else None)
    if len(_URI_CACHE) >= _CACHE_SIZE:
        _URI_CACHE.clear()
    _URI_CACHE[text] = parts
    return parts


def _uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not name:
            raise SIPParseError("bad URI parameter")
        name = _unescape(name, "URI parameter").lower()
        params[name] = _unescape(value, "URI parameter") if eq else None
    return params


def _parse_fast_nameaddr(
    text: str,
) -> tuple[tuple[str | None, str, tuple[tuple[str, str | None], ...], str, tuple[Any, ...] | None],
           URI] | None:
    """The parts of a plain name-addr (cached) and its URI, or None for the general parser.

    The URI is kept as text (URI.parse has its own cache); the wire form is what
    __str__ writes when the URI's own wire form is kept too.
    """
    display: str | None
    items: tuple[tuple[str, str | None], ...] = ()
    gt = text.find(">") if '"' not in text else -1
    if gt > 0:  # the part before the parameters is usually one seen before
        head = text[: gt + 1]
        known = _NAMEADDR_HEADS.get(head)
        if known is None:
            hm = _FAST_NAMEADDR_HEAD_RE.match(head)
            if hm is None:
                return None
            words, uritext = hm.groups()
            display = " ".join(words.split()) if words else None
            prefix = f"<{uritext}>" if display is None else f'"{display}" <{uritext}>'
        else:
            display, uritext, prefix = known
            if text[gt + 1 : gt + 6] == ";tag=":
                tag = text[gt + 6 :]
                if tag.isalnum():  # the usual ";tag=..." alone: what the regex would accept
                    uri = URI.parse(uritext)
                    items = (("tag", tag),)
                    parts: _NameAddrParts = (display, uritext, items, prefix + text[gt + 1 :],
                                             uri._snap or None)
                    if len(_NAMEADDR_CACHE) >= _CACHE_SIZE:
                        _NAMEADDR_CACHE.clear()
                    _NAMEADDR_CACHE[text] = parts
                    return parts, uri
        rm = _FAST_NAMEADDR_REST_RE.match(text, gt + 1)
        if rm is None:
            return None
        uri = URI.parse(uritext)  # raises for a bad URI before anything is cached
        if known is None:
            if len(_NAMEADDR_HEADS) >= _CACHE_SIZE:
                _NAMEADDR_HEADS.clear()
            _NAMEADDR_HEADS[head] = (display, uritext, prefix)
        ptext = rm.group(1)
        if ptext:
            params, canonical = _canonical_params(ptext)
            items = tuple(params.items())
            if not canonical:
                ptext = format_params(params)
        parts = (display, uritext, items, prefix + ptext, uri._snap or None)
        if len(_NAMEADDR_CACHE) >= _CACHE_SIZE:
            _NAMEADDR_CACHE.clear()
        _NAMEADDR_CACHE[text] = parts
        return parts, uri
    m = _FAST_NAMEADDR_RE.match(text)
    if m is None:
        return None
    quoted, words, uritext, ptext = m.groups()
    uri = URI.parse(uritext)  # raises for a bad URI before anything is cached
    if quoted is not None:
        display = quoted
        prefix = f'"{quoted}" <' if "\x7f" not in quoted else _quote_display(quoted) + " <"
    elif words:
        display = " ".join(words.split())
        prefix = f'"{display}" <'
    else:
        display = None
        prefix = "<"
    if ptext:
        params, canonical = _canonical_params(ptext)
        items = tuple(params.items())
        if not canonical:
            ptext = format_params(params)
    parts = (display, uritext, items, f"{prefix}{uritext}>{ptext}", uri._snap or None)
    if len(_NAMEADDR_CACHE) >= _CACHE_SIZE:
        _NAMEADDR_CACHE.clear()
    _NAMEADDR_CACHE[text] = parts
    return parts, uri


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

    __slots__ = ("display", "uri", "params", "_raw", "_snap")

    def __init__(
        self, uri: URI, display: str | None = None, params: dict[str, str | None] | None = None
    ) -> None:
        self.uri = uri
        self.display = display
        self.params: dict[str, str | None] = {} if params is None else params
        # as URI._raw: the wire form while display, uri and params are as parsed
        self._raw: str | None = None
        self._snap: tuple[Any, ...] = ()

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse name-addr or addr-spec form; raises SIPParseError when malformed."""
        cached = _NAMEADDR_CACHE.get(text)
        if cached is not None:
            uparts = cached[4]
            if uparts is None:
                uri = URI.parse(cached[1])
            else:  # URI.parse from its cache, without the lookup
                uri = _uri_from_parts(URI, uparts)
        else:
            fast = _parse_fast_nameaddr(text)
            if fast is not None:
                cached, uri = fast
        if cached is not None:
            display, _, items, raw, _ = cached
            na = _new(cls)
            na.display = display
            na.uri = uri
            na.params = dict(items) if items else {}
            na._raw = raw if uri._raw is not None else None
            na._snap = (display, uri, items)
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

    def _fresh(self) -> bool:
        """True while ``_raw`` is what __str__ would write (values as parsed)."""
        s = self._snap
        uri = self.uri
        return (
            uri is s[1] and self.display is s[0] and uri._raw is not None and uri._fresh()
            and (tuple(self.params.items()) == s[2] if self.params else not s[2])
        )

    def __str__(self) -> str:
        raw = self._raw
        if raw is not None:  # self._fresh() and self.uri._fresh(), inline
            s = self._snap
            uri = self.uri
            if uri is s[1] and self.display is s[0] and uri._raw is not None:
                u = uri._snap
                if (uri.user is u[1] and uri.host is u[3] and uri.port is u[4]
                        and uri.scheme is u[0] and uri.password is u[2] and uri.opaque is None
                        and not uri.headers
                        and (tuple(uri.params.items()) == u[5] if uri.params else not u[5])
                        and (tuple(self.params.items()) == s[2] if self.params else not s[2])):
                    return raw
        out = f"<{self.uri}>"
        if self.display is not None:
            out = f"{_quote_display(self.display)} {out}"
        return out + format_params(self.params) if self.params else out

    def with_tag(self, tag: str) -> str:
        """``str(self)`` with ``tag`` set: as a copy whose ``params['tag'] = tag``."""
        if "tag" not in self.params and self.uri.scheme.islower():  # a new parameter goes last
            return f"{self};tag={tag}"
        na = self.copy()
        na.params["tag"] = tag
        return str(na)

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return self.display == other.display and self.uri == other.uri and self.params == other.params

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> NameAddr:
        """An independent copy."""
        na = NameAddr(self.uri.copy(), self.display, dict(self.params))
        if self._raw is not None and self._fresh() and na.uri._raw is not None:
            na._raw = self._raw
            na._snap = (self.display, na.uri, self._snap[2])
        return na


class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...``."""

    __slots__ = ("protocol", "transport", "host", "port", "params", "_raw", "_snap", "_memo")

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
        # as URI._raw: the wire form while the values are as parsed
        self._raw: str | None = None
        self._snap: tuple[Any, ...] = ()
        # (parameters, __str__) of the last rendering with other parameters (a stamped Via
        # is written into every response)
        self._memo: tuple[tuple[tuple[str, str | None], ...], str] | None = None

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value; raises SIPParseError when malformed."""
        # a plain Via (what _FAST_VIA_RE matches): its head (no ";" in it) is usually
        # one seen before, the parameters (the branch) are new
        semi = text.find(";")
        head = text if semi < 0 else text[:semi]
        known = _VIA_HEADS.get(head)
        if known is None:
            known = _via_head(head)
        if known is not None:
            ptext = "" if semi < 0 else text[semi:]
            if not ptext:
                params: dict[str, str | None] = {}
                items: tuple[tuple[str, str | None], ...] | None = ()
            else:
                items = None
                if ptext[:8] == ";branch=":  # the usual form: a new branch, the rest seen before
                    end = ptext.find(";", 8)
                    tail: tuple[tuple[str, str | None], ...] | bool | None = ()
                    if end < 0:
                        branch = ptext[8:]
                    else:
                        branch = ptext[8:end]
                        tail = _VIA_TAILS.get(ptext[end:])
                        if tail is None:
                            tail = _via_tail(ptext[end:])
                    if type(tail) is tuple and (branch.isalnum() or _PLAIN_VALUE_RE.match(branch)):
                        items = (("branch", branch), *tail) if tail else (("branch", branch),)
                        params = dict(items)
                if items is None:
                    if _FAST_PARAMS_RE.match(ptext):
                        params, canonical = _canonical_params(ptext)
                        items = tuple(params.items())
                        if not canonical:
                            ptext = format_params(params)
                    else:
                        known = None
        if known is not None:
            via = _new(cls)
            via.protocol = "SIP/2.0"
            via.transport, via.host, via.port, canonical_head = known
            via.params = params
            via._raw = canonical_head + ptext
            via._snap = ("SIP/2.0", known[0], known[1], known[2], items, len(canonical_head))
            via._memo = None
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
        raw = self._raw
        if raw is not None:
            s = self._snap
            if (self.host is s[2] and self.port is s[3] and self.transport is s[1]
                    and self.protocol is s[0]):
                params = self.params
                items = tuple(params.items())
                if items == s[4]:
                    return raw
                memo = self._memo
                if memo is not None and memo[0] == items:
                    return memo[1]
                out = raw[: s[5]] + format_params(params)  # the part before the parameters
                self._memo = (items, out)
                return out
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
        via = Via(self.transport, self.host, self.port, dict(self.params), self.protocol)
        s = self._snap
        if (self._raw is not None and via.transport == s[1] and self.host is s[2]
                and self.port is s[3] and self.protocol is s[0]):
            via.transport = s[1]
            via._raw = self._raw
            via._snap = s
        return via


def _via_tail(text: str) -> tuple[tuple[str, str | None], ...] | bool:
    """The parameters of ``text``, what follows the branch in a plain Via, when their
    form is canonical and has no other branch, else False (remembered)."""
    items: tuple[tuple[str, str | None], ...] | bool = False
    if _FAST_PARAMS_RE.match(text):
        params, canonical = _canonical_params(text)
        if canonical and "branch" not in params:
            items = tuple(params.items())
    if len(_VIA_TAILS) >= _CACHE_SIZE:
        _VIA_TAILS.clear()
    _VIA_TAILS[text] = items
    return items


def _via_head(head: str) -> tuple[str, str, int | None, str] | None:
    """Transport, host, port and canonical text of the part of a plain Via before its
    parameters (remembered), or None when the general parser must look at it."""
    m = _FAST_VIA_HEAD_RE.match(head)
    if m is None:
        return None
    transport, host, port = m.groups()
    transport = transport.upper()
    host = host.lower()
    portnum = None
    if port is not None:
        portnum = int(port)
        if portnum > 65535:
            return None  # the general parser says what is wrong
    known = (transport, host, portnum,
             f"SIP/2.0/{transport} {host}" if portnum is None else f"SIP/2.0/{transport} {host}:{portnum}")
    if len(_VIA_HEADS) >= _CACHE_SIZE:
        _VIA_HEADS.clear()
    _VIA_HEADS[head] = known
    return known


class CSeq:
    """The CSeq value: a sequence number below 2**31 and a method."""

    __slots__ = ("seq", "method")

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse ``"4711 INVITE"``; raises SIPParseError when malformed or too large."""
        cseq = _new(cls)
        cached = _CSEQ_CACHE.get(text)
        if cached is not None:
            cseq.seq, cseq.method = cached
            return cseq
        m = _CSEQ_RE.match(text)
        if m is None:
            raise SIPParseError("bad CSeq")
        seq = int(m.group(1))
        if seq >= 2**31:
            raise SIPParseError("CSeq number too large")
        cseq.seq = seq
        cseq.method = m.group(2)
        if len(_CSEQ_CACHE) >= _CACHE_SIZE:
            _CSEQ_CACHE.clear()
        _CSEQ_CACHE[text] = (seq, cseq.method)
        return cseq

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.seq}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return self.seq == other.seq and self.method == other.method

    __hash__ = None  # type: ignore[assignment]
