"""The header section of a SIP message (layer 1, pure).

:class:`Headers` keeps an ordered list of ``(key, name, raw_value)`` where
``key`` is the lower-case full name (compact forms expanded, RFC 3261 s7.3.3)
and ``name`` the canonical spelling used on output.  Typed values (Via,
NameAddr, CSeq...) are cached per key by :class:`pbxd.sip.message.Message`
in ``Headers.typed``; any mutation of a header drops its cached value.

Typed values handed out by a message are *live*: a header whose typed value
was read is written from that (possibly modified) object on output and by
``get``/``getall``, so ``msg.top_via.params['received'] = ip`` is seen by
``serialize()`` and by ``make_response``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pbxd.errors import SIPParseError
from pbxd.sip.uri import URI, CSeq, NameAddr, Via

__all__ = [
    "Headers", "COMPACT", "LIST_HEADERS", "canonical_name", "header_key", "split_list",
    "URI", "NameAddr", "Via", "CSeq",
]

#: compact form -> full lower-case name (RFC 3261 s7.3.3 and later RFCs)
COMPACT: dict[str, str] = {
    "v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
    "l": "content-length", "c": "content-type", "k": "supported", "e": "content-encoding",
    "s": "subject", "o": "event", "u": "allow-events", "r": "refer-to", "b": "referred-by",
    "x": "session-expires", "y": "identity", "a": "accept-contact", "j": "reject-contact",
    "d": "request-disposition", "n": "identity-info",
}

_CANONICAL_NAMES = (
    "Via From To Call-ID CSeq Contact Max-Forwards Content-Length Content-Type Expires "
    "Route Record-Route Allow Supported Require Proxy-Require Unsupported User-Agent Server "
    "Authorization WWW-Authenticate Proxy-Authenticate Proxy-Authorization Authentication-Info "
    "Accept Accept-Encoding Accept-Language Alert-Info Call-Info Content-Disposition "
    "Content-Encoding Content-Language Date Error-Info In-Reply-To MIME-Version Min-Expires "
    "Organization Priority Reply-To Retry-After Subject Timestamp Warning Event Allow-Events "
    "Subscription-State Refer-To Referred-By Refer-Sub Session-Expires Min-SE Identity "
    "Identity-Info Path Service-Route P-Asserted-Identity P-Preferred-Identity Privacy Reason "
    "RSeq RAck Replaces Join Diversion Remote-Party-ID Accept-Contact Reject-Contact "
    "Request-Disposition Security-Client Security-Server Security-Verify SIP-ETag SIP-If-Match "
    "History-Info Target-Dialog Recv-Info Info-Package Content-ID Max-Breadth Geolocation "
    "Feature-Caps Flow-Timer P-Asserted-Service P-Charging-Vector P-Access-Network-Info "
    "P-Called-Party-ID P-Associated-URI P-Visited-Network-ID Path Priv-Answer-Mode "
    "Answer-Mode Alert-Info"
).split()
_CANONICAL: dict[str, str] = {n.lower(): n for n in _CANONICAL_NAMES}

#: lower-case name or compact form -> (key, canonical name)
_KNOWN: dict[str, tuple[str, str]] = {k: (k, n) for k, n in _CANONICAL.items()}
_KNOWN.update({c: (full, _CANONICAL[full]) for c, full in COMPACT.items()})

#: headers whose values are comma-separated lists (RFC 3261 s7.3.1); authentication
#: headers, Date and the other single-value headers are never split.
LIST_HEADERS: frozenset[str] = frozenset(
    "via contact route record-route allow supported require proxy-require unsupported "
    "accept accept-encoding accept-language alert-info call-info content-encoding "
    "content-language error-info in-reply-to warning allow-events path service-route "
    "p-asserted-identity p-preferred-identity reason accept-contact reject-contact "
    "request-disposition security-client security-server security-verify history-info "
    "recv-info".split()
)

# headers whose typed values are mutable objects written back on output
_RENDERED: frozenset[str] = frozenset("via contact route record-route from to cseq".split())


#: spelling seen -> header_key / canonical_name of it (bounded: new spellings past the
#: limit are worked out each time)
_KEYS: dict[str, str] = {}
_NAMES: dict[str, str] = {}
for _low, (_key, _name) in _KNOWN.items():
    _KEYS[_low] = _KEYS[_name] = _KEYS[_low.upper()] = _key
    _NAMES[_low] = _NAMES[_name] = _NAMES[_low.upper()] = _name
_KEYS_LIMIT = len(_KEYS) + 2048


def header_key(name: str) -> str:
    """The lower-case full name for ``name`` (compact forms expanded)."""
    key = _KEYS.get(name)
    if key is None:
        low = name.strip().lower()
        known = _KNOWN.get(low)
        key = known[0] if known else low
        if len(_KEYS) < _KEYS_LIMIT:
            _KEYS[name] = key
    return key


def canonical_name(name: str) -> str:
    """The canonical spelling of ``name`` (``'v'`` -> ``'Via'``); unknown names unchanged."""
    canonical = _NAMES.get(name)
    if canonical is None:
        known = _KNOWN.get(name.strip().lower())
        canonical = known[1] if known else name.strip()
        if len(_NAMES) < _KEYS_LIMIT:
            _NAMES[name] = canonical
    return canonical


def split_list(value: str, keep_empty: bool = False) -> list[str]:
    """Split a list header value on commas outside quotes and ``<>``.

    Elements are stripped; empty ones are dropped unless ``keep_empty``.
    Raises SIPParseError on an unterminated quoted string or ``<``.
    """
    if "," not in value:
        value = value.strip()
        return [value] if value or keep_empty else []
    if '"' not in value and "<" not in value:
        parts = value.split(",")
    else:
        parts = []
        start = i = 0
        n = len(value)
        while i < n:
            c = value[i]
            if c == '"':
                i += 1
                while i < n and value[i] != '"':
                    i += 2 if value[i] == "\\" else 1
                if i >= n:
                    raise SIPParseError("unterminated quoted string")
            elif c == "<":
                i = value.find(">", i)
                if i < 0:
                    raise SIPParseError("unterminated <")
            elif c == ",":
                parts.append(value[start:i])
                start = i + 1
            i += 1
        parts.append(value[start:])
    out = [p.strip() for p in parts]
    return out if keep_empty else [p for p in out if p]


class Headers:
    """Ordered, case-insensitive SIP headers.

    ``entries`` is the list of ``(key, name, raw_value)``; one entry per header
    line.  ``typed`` maps a key to its cached typed value (a list for list
    headers); keys in ``live`` are rendered from ``typed`` on output.
    ``checked`` is True while the lines are those :func:`pbxd.sip.parser.parse_message`
    checked (From, To, Call-ID, CSeq and Max-Forwards at most once each, and every
    one present has its typed value): any change made here clears it.  ``plain`` is
    True when, besides, the lines hold no Record-Route or Timestamp (then
    :func:`pbxd.sip.message.make_response` copies Via, From, To, Call-ID and CSeq
    only); it means nothing while ``checked`` is False.
    """

    __slots__ = ("entries", "typed", "live", "checked", "plain")

    def __init__(self, items: Iterable[tuple[str, Any]] | Mapping[str, Any] | None = None) -> None:
        self.entries: list[tuple[str, str, str]] = []
        self.typed: dict[str, Any] = {}
        self.live: set[str] = set()
        self.checked = False
        self.plain = False
        if items is not None:
            pairs = items.items() if isinstance(items, Mapping) else items
            for name, value in pairs:
                self.add(name, value)

    # -- reading -----------------------------------------------------------
    def _rendered(self, key: str) -> list[str]:
        value = self.typed[key]
        if type(value) is list or isinstance(value, list):
            return [str(v) for v in value]
        return [str(value)]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (first list element for list headers), or ``default``."""
        key = _KEYS.get(name) or header_key(name)
        if key in self.live:
            values = self._rendered(key)
            return values[0] if values else default
        for k, _, v in self.entries:
            if k == key:
                if key in LIST_HEADERS:
                    items = split_list(v)
                    if not items:
                        continue
                    return items[0]
                return v
        return default

    def getall(self, name: str) -> list[str]:
        """All values of ``name`` in order; list headers are split on commas."""
        key = _KEYS.get(name) or header_key(name)
        if key in self.live:
            return self._rendered(key)
        values = [v for k, _, v in self.entries if k == key]
        if values and key in LIST_HEADERS:
            if len(values) == 1:
                value = values[0]
                if "," not in value:  # split_list of it
                    value = value.strip()
                    return [value] if value else []
                return split_list(value)
            out: list[str] = []
            for v in values:
                out.extend(split_list(v))
            return out
        return values

    def raw(self, name: str) -> list[str]:
        """The raw value of each ``name`` line (no comma splitting, no rendering)."""
        key = _KEYS.get(name) or header_key(name)
        return [v for k, _, v in self.entries if k == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        return any(k == key for k, _, _ in self.entries)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Yield ``(canonical_name, value)`` per header line, as it would be written."""
        done: set[str] = set()
        for key, name, value in self.entries:
            if key in self.live:
                if key not in done:
                    done.add(key)
                    for v in self._rendered(key):
                        yield name, v
                continue
            yield name, value

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    # -- writing -----------------------------------------------------------
    def _drop(self, key: str) -> None:
        self.typed.pop(key, None)
        self.live.discard(key)
        self.checked = False

    def _materialise(self, key: str) -> None:
        """Write a live typed value back into the entries before they are edited."""
        if key not in self.live:
            return
        values = self._rendered(key)
        name = canonical_name(key)
        new: list[tuple[str, str, str]] = []
        placed = False
        for entry in self.entries:
            if entry[0] == key:
                if not placed:
                    new.extend((key, entry[1], v) for v in values)
                    placed = True
            else:
                new.append(entry)
        if not placed:
            new.extend((key, name, v) for v in values)
        self.entries = new
        self._drop(key)

    def set(self, name: str, value: Any) -> None:
        """Replace every ``name`` header by ``value`` (a list/tuple gives several lines),
        at the position of the first one (or at the end)."""
        key = _KEYS.get(name) or header_key(name)
        if self.typed:
            self.typed.pop(key, None)
        if self.live:
            self.live.discard(key)
        self.checked = False  # self._drop(key), inline
        cname = _NAMES.get(name) or canonical_name(name)
        entries = self.entries
        for entry in entries:
            if entry[0] == key:
                break
        else:  # none yet: added at the end
            if type(value) is str:
                entries.append((key, cname, value))
            elif isinstance(value, (list, tuple)):
                entries.extend([(key, cname, str(v)) for v in value])
            else:
                entries.append((key, cname, str(value)))
            return
        if type(value) is str:
            values = [value]
        else:
            values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        new: list[tuple[str, str, str]] = []
        placed = False
        for entry in entries:
            if entry[0] == key:
                if not placed:
                    new.extend((key, cname, v) for v in values)
                    placed = True
            else:
                new.append(entry)
        if not placed:
            new.extend((key, cname, v) for v in values)
        self.entries = new

    def add(self, name: str, value: Any, first: bool = False) -> None:
        """Add a ``name`` header line: after the existing ones, or before them if ``first``."""
        key = _KEYS.get(name) or header_key(name)
        if key in self.live:
            self._materialise(key)
        if key in self.typed:
            del self.typed[key]
        self.checked = False
        entry = (key, _NAMES.get(name) or canonical_name(name), value if type(value) is str else str(value))
        if not first:
            self.entries.append(entry)
            return
        for i, e in enumerate(self.entries):
            if e[0] == key:
                self.entries.insert(i, entry)
                return
        self.entries.append(entry)

    def remove(self, name: str) -> None:
        """Remove every ``name`` header (no error if there is none)."""
        key = header_key(name)
        self._drop(key)
        self.entries = [e for e in self.entries if e[0] != key]

    def copy(self) -> Headers:
        """An independent copy holding the current (rendered) values, without typed caches."""
        h = Headers()
        if not self.live:
            h.entries = list(self.entries)
        else:
            h.entries = [(header_key(n), n, v) for n, v in self]
        return h

    def lines(self) -> list[str]:
        """``"Name: value"`` strings in output order (Content-Length included as stored)."""
        if not self.live:
            return [f"{n}: {v}" for _, n, v in self.entries]
        return [f"{n}: {v}" for n, v in self]
