"""HTTP Digest for SIP (RFC 2617, RFC 7616, RFC 8760), sans I/O (layer 1).

- :func:`parse_auth_header` / :func:`format_auth_params`: the ``auth-param``
  lists of WWW-Authenticate, Proxy-Authenticate, Authorization and
  Proxy-Authorization, with quoted strings and backslash escapes.
- :func:`compute_ha1`, :func:`compute_ha2`, :func:`compute_response`: the
  hashes for MD5, SHA-256 and their ``-sess`` variants, ``qop=auth``.
- :class:`NonceSource`: stateless HMAC-signed nonces that carry their own
  issue time, so they expire (``stale``) without any table.
- :class:`NonceCounter`: nonce-count replay protection in a bounded table.

Nothing here reads a clock: callers pass ``now`` (seconds).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import re
import struct
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

__all__ = [
    "ALGORITHMS",
    "DigestParseError",
    "NonceCounter",
    "NonceSource",
    "canonical_algorithm",
    "challenge_parts",
    "compute_ha1",
    "compute_ha2",
    "compute_response",
    "format_auth_params",
    "format_challenge",
    "hash_hex",
    "parse_auth_header",
    "quote_string",
    "session_ha1",
]

try:
    # CPython's own MD5: the same digest as OpenSSL's, without the EVP lookup that
    # hashlib.md5 pays on every construction (about twice as fast on these short inputs)
    from _md5 import md5 as _md5
except ImportError:  # pragma: no cover - a CPython built without it
    _md5 = hashlib.md5

#: Supported algorithm names (canonical spelling) and their hash constructors.
ALGORITHMS: dict[str, Callable[..., hashlib._Hash]] = {
    "MD5": _md5,
    "MD5-sess": _md5,
    "SHA-256": hashlib.sha256,
    "SHA-256-sess": hashlib.sha256,
}
_BY_UPPER = {name.upper(): name for name in ALGORITHMS}
# names already canonical, and None/"" meaning MD5: no upper() needed
_CANONICAL: dict[str | None, str] = {None: "MD5", "": "MD5"}
_CANONICAL.update((name, name) for name in ALGORITHMS)
_SESS = frozenset(name for name in ALGORITHMS if name.endswith("-sess"))

# Parameters written as tokens (unquoted) in challenges and credentials;
# everything else is a quoted-string (RFC 2617 3.2.1/3.2.2, RFC 3261 25.1).
_TOKEN_PARAMS = frozenset({"algorithm", "stale", "nc"})


class DigestParseError(ValueError):
    """An auth header value is not a well-formed ``scheme auth-param, ...`` list."""


# --------------------------------------------------------------------------
# Parsing and formatting
# --------------------------------------------------------------------------


def quote_string(value: str) -> str:
    """Return ``value`` as a quoted-string, escaping ``\\`` and ``"``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# The auth-param grammar as the old character-by-character reader applied it
# (maximal munch everywhere, hence the possessive quantifiers): optional
# whitespace, a token scheme, then ``name = value`` pairs, each followed by
# the end or by a comma (a trailing comma is allowed). A token is any run of
# characters other than the RFC 2616 separators and CR/LF; a quoted string
# may contain anything, ``\x`` standing for ``x``.
_WS = r"[ \t\r\n]*+"
_TOKEN = r'[^()<>@,;:\\"/\[\]?={} \t\r\n]'
_QUOTED = r'"([^"\\]*+(?:\\.[^"\\]*+)*+)"'
_PARAM = rf"({_TOKEN}++){_WS}={_WS}(?:{_QUOTED}|({_TOKEN}*+)){_WS}(?:,{_WS}|\Z)"
_SCHEME_RE = re.compile(rf"{_WS}({_TOKEN}++){_WS}")
_PARAM_RE = re.compile(_PARAM, re.DOTALL)
# One auth-param, or else everything left (its name group is then empty):
# findall therefore covers the rest of the value contiguously, and stops at
# the first thing that is not an auth-param (taking one character at a time
# there would try the auth-param again at every later offset: quadratic).
_PARAMS_RE = re.compile(rf"{_PARAM}|.+", re.DOTALL)
_NAME_RE = re.compile(rf"({_TOKEN}++){_WS}")
_QUOTED_RE = re.compile(_QUOTED, re.DOTALL)
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


def _param_error(value: str, i: int) -> DigestParseError:
    """What is wrong with the auth-params from ``value[i]`` on (the error path only)."""
    seen: set[str] = set()
    while i < len(value):
        m = _PARAM_RE.match(value, i)
        if m is None:
            break
        key = m.group(1).lower()
        if key in seen:
            return DigestParseError(f"auth-param {key!r} repeated")
        seen.add(key)
        i = m.end()
    m = _NAME_RE.match(value, i)
    if m is None:
        return DigestParseError(f"bad auth-param at offset {i}")
    name, j = m.group(1), m.end()
    if j >= len(value) or value[j] != "=":
        return DigestParseError(f"auth-param {name!r} has no value")
    rest = value[j + 1 :].lstrip(" \t\r\n")
    if rest.startswith('"') and _QUOTED_RE.match(rest) is None:
        return DigestParseError("unterminated quoted string")
    return DigestParseError(f"expected ',' after auth-param {name!r}")


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Parse ``Digest name=value, name="quoted", ...``.

    Returns ``(scheme, params)``; the scheme keeps its spelling, parameter
    names are lower case, quoted values are unescaped. A repeated parameter
    is an error (it would make the credentials ambiguous).
    """
    m = _SCHEME_RE.match(value)
    if m is None:
        raise DigestParseError("missing auth scheme")
    start = m.end()
    items = _PARAMS_RE.findall(value, start)
    # a quoted value or a token (never both); an empty name marks the rest
    # that is not an auth-param
    params = {name.lower(): quoted or token for name, quoted, token in items}
    if len(params) != len(items) or "" in params:
        raise _param_error(value, start)
    if "\\" in value:
        for name, quoted, _ in items:
            if "\\" in quoted:
                params[name.lower()] = _UNESCAPE_RE.sub(r"\1", quoted)
    return m.group(1), params


def format_auth_params(scheme: str, params: Iterable[tuple[str, str]] | Mapping[str, str]) -> str:
    """Serialise ``params`` after ``scheme``; ``algorithm``, ``stale`` and ``nc``
    are written as tokens, everything else (including ``qop``, as most
    phones expect in challenges) as quoted strings."""
    items = params.items() if isinstance(params, Mapping) else params
    parts = [
        f"{name}={value}" if name.lower() in _TOKEN_PARAMS else f"{name}={quote_string(value)}"
        for name, value in items
    ]
    return f"{scheme} " + ", ".join(parts)


def format_challenge(
    realm: str,
    nonce: str,
    algorithm: str,
    *,
    stale: bool = False,
    qop: str = "auth",
    opaque: str | None = None,
) -> str:
    """The value of one WWW-Authenticate / Proxy-Authenticate header."""
    params = [("realm", realm), ("nonce", nonce)]
    if opaque is not None:
        params.append(("opaque", opaque))
    params += [("algorithm", canonical_algorithm(algorithm)), ("qop", qop)]
    if stale:
        params.append(("stale", "true"))
    return format_auth_params("Digest", params)


def challenge_parts(
    realm: str,
    algorithm: str,
    *,
    stale: bool = False,
    qop: str = "auth",
    opaque: str | None = None,
) -> tuple[str, str]:
    """``(before, after)`` with ``before + nonce + after ==
    format_challenge(realm, nonce, algorithm, ...)`` for every nonce that
    :func:`quote_string` leaves alone (no ``"`` or ``\\``, as
    :meth:`NonceSource.make` makes them): a challenge is then two
    concatenations."""
    marker = "\x00"
    while marker in realm or marker in qop or (opaque is not None and marker in opaque):
        marker += "\x00"
    text = format_challenge(realm, marker, algorithm, stale=stale, qop=qop, opaque=opaque)
    before, _, after = text.partition(marker)
    return before, after


# --------------------------------------------------------------------------
# Hashes
# --------------------------------------------------------------------------


def canonical_algorithm(name: str | None) -> str:
    """The canonical spelling of ``name`` (case-insensitive; None means MD5).

    Raises ``ValueError`` for an algorithm we do not implement.
    """
    found = _CANONICAL.get(name)
    if found is not None:
        return found
    try:
        return _BY_UPPER[name.upper()]  # type: ignore[union-attr]
    except KeyError:
        raise ValueError(f"unsupported digest algorithm {name!r}") from None


def hash_hex(algorithm: str, data: str) -> str:
    """Hex digest of UTF-8 ``data`` with the hash of ``algorithm``."""
    h = ALGORITHMS.get(algorithm) or ALGORITHMS[canonical_algorithm(algorithm)]
    return h(data.encode("utf-8")).hexdigest()


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """``H(username:realm:password)``: the storable HA1 (never the -sess form)."""
    h = ALGORITHMS.get(algorithm) or ALGORITHMS[canonical_algorithm(algorithm)]
    return h(f"{username}:{realm}:{password}".encode()).hexdigest()


def session_ha1(algorithm: str, ha1: str, nonce: str, cnonce: str) -> str:
    """The HA1 actually used for ``algorithm``: for ``-sess`` variants
    ``H(HA1:nonce:cnonce)`` (RFC 7616 3.4.2), otherwise ``ha1`` itself."""
    if canonical_algorithm(algorithm).endswith("-sess"):
        return hash_hex(algorithm, f"{ha1.lower()}:{nonce}:{cnonce}")
    return ha1.lower()


def compute_ha2(algorithm: str, method: str, uri: str) -> str:
    """``H(method:digest-uri)`` for qop=auth (or no qop)."""
    return hash_hex(algorithm, f"{method}:{uri}")


def compute_response(
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    *,
    qop: str | None = "auth",
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The request-digest. ``ha1`` is the stored ``H(user:realm:password)``;
    the -sess derivation is applied here. Without ``qop`` the RFC 2069 form
    ``H(HA1:nonce:HA2)`` is computed."""
    name = algorithm if algorithm in ALGORITHMS else canonical_algorithm(algorithm)
    h = ALGORITHMS[name]
    real_ha1 = ha1.lower()
    if name in _SESS:
        real_ha1 = h(f"{real_ha1}:{nonce}:{cnonce}".encode()).hexdigest()
    ha2 = h(f"{method}:{uri}".encode()).hexdigest()
    if qop:
        return h(f"{real_ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode()).hexdigest()
    return h(f"{real_ha1}:{nonce}:{ha2}".encode()).hexdigest()


# --------------------------------------------------------------------------
# Nonces
# --------------------------------------------------------------------------

NonceState = Literal["ok", "stale", "invalid"]

_MAC_LEN = 16
_RAND_LEN = 8
_RAW_LEN = 8 + _RAND_LEN + _MAC_LEN
_RAND_BATCH = 256  # nonces' worth of random bytes read at once (one getrandom per 256)
_SKEW = 5.0  # seconds a nonce may appear to come from the future (clock steps, other nodes)
_pack_ms = struct.Struct(">Q").pack
_unpack_ms = struct.Struct(">Q").unpack_from
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
# base64url of _RAW_LEN (32) bytes without padding: 42 characters, then one
# whose low two bits (not part of any byte) are zero.
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")


_SOURCES: weakref.WeakSet[NonceSource] = weakref.WeakSet()


def _forget_pools() -> None:
    """In a forked child: draw new random parts (never the parent's unused ones)."""
    for source in list(_SOURCES):
        source._pool, source._pos = b"", 0


os.register_at_fork(after_in_child=_forget_pools)


class NonceSource:
    """Makes and checks self-validating nonces.

    A nonce is ``base64url(ms timestamp (8) | random (8) | HMAC-SHA256 (16))``:
    no table is needed to know that we issued it and when. Several nodes
    sharing ``secret`` accept each other's nonces. ``random(n)`` is asked for
    the random parts of 256 nonces at once; each part is used once (a forked
    child draws its own).
    """

    def __init__(
        self,
        secret: bytes,
        lifetime: float,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        self.lifetime = lifetime
        self._random = random
        self._pool = b""  # random bytes, taken _RAND_LEN at a time from _pos on
        self._pos = 0
        _SOURCES.add(self)
        # HMAC-SHA256 with the key's inner and outer pads hashed once
        # (RFC 2104): each MAC is then two copies and updates, half the cost
        # of hmac.digest, which sets the key up again every time.
        key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def _mac(self, head: bytes) -> bytes:
        """``HMAC-SHA256(secret, head)`` truncated to 16 bytes."""
        inner = self._inner.copy()
        inner.update(head)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:_MAC_LEN]

    def make(self, now: float) -> str:
        """A fresh nonce issued at ``now``."""
        pos = self._pos
        if pos + _RAND_LEN > len(self._pool):
            self._pool, pos = self._random(_RAND_LEN * _RAND_BATCH), 0
        self._pos = pos + _RAND_LEN
        head = _pack_ms(max(0, int(now * 1000))) + self._pool[pos : pos + _RAND_LEN]
        raw = head + self._mac(head)
        return binascii.b2a_base64(raw, newline=False).translate(_TO_URLSAFE)[:-1].decode("ascii")

    def issued_at(self, nonce: str) -> float | None:
        """The issue time of a nonce we signed, or None if it is not ours.

        Only the exact spelling :meth:`make` produces is ours: 43 characters
        of the URL-safe alphabet whose unused trailing bits are zero (so one
        nonce has exactly one accepted spelling)."""
        if _NONCE_RE.fullmatch(nonce) is None:
            return None
        raw = binascii.a2b_base64(nonce.encode("ascii").translate(_FROM_URLSAFE) + b"=")
        head = raw[:-_MAC_LEN]
        if not hmac.compare_digest(raw[-_MAC_LEN:], self._mac(head)):
            return None
        return _unpack_ms(head, 0)[0] / 1000.0

    def verify(self, nonce: str, now: float) -> tuple[NonceState, float | None]:
        """:meth:`check` and :meth:`issued_at` at once: ``(state, issue time)``
        (the time is None when the nonce is not ours)."""
        issued = self.issued_at(nonce)
        if issued is None or issued > now + _SKEW:
            return "invalid", issued
        if now - issued > self.lifetime:
            return "stale", issued
        return "ok", issued

    def check(self, nonce: str, now: float) -> NonceState:
        """``'ok'``, ``'stale'`` (ours but older than ``lifetime``) or
        ``'invalid'`` (not ours, tampered, or from the future)."""
        return self.verify(nonce, now)[0]


CountState = Literal["ok", "replay", "stale"]

_WINDOW = 64  # nonce-counts accepted out of order, below the highest seen


class NonceCounter:
    """Remembers which nonce-counts were used with each nonce.

    Only nonces that authenticated successfully are entered (so garbage
    cannot churn the table). At most ``max_nonces`` are kept; the first-used
    is evicted first. An evicted nonce cannot be replayed: any nonce not in
    the table that was issued no later than the newest evicted one is
    reported ``'stale'`` (the client just retries with a fresh nonce).

    Counts may arrive slightly out of order (UDP): each nc within the last
    ``64`` below the highest seen is accepted once.
    """

    def __init__(self, max_nonces: int = 16384) -> None:
        if max_nonces < 1:
            raise ValueError("max_nonces must be positive")
        self.max_nonces = max_nonces
        # nonce -> (highest nc, bitmask of the nc values below it, issue time)
        self._seen: OrderedDict[str, tuple[int, int, float]] = OrderedDict()
        self._floor = float("-inf")

    def __len__(self) -> int:
        return len(self._seen)

    def use(self, nonce: str, nc: int, issued: float) -> CountState:
        """Record use of ``nc`` (>= 1) with ``nonce`` issued at ``issued``."""
        if nc < 1:
            return "replay"
        entry = self._seen.get(nonce)
        if entry is None:
            if issued <= self._floor:
                return "stale"
            self._seen[nonce] = (nc, 1, issued)
            while len(self._seen) > self.max_nonces:
                _, (_, _, old_issued) = self._seen.popitem(last=False)
                self._floor = max(self._floor, old_issued)
            return "ok"
        highest, mask, issued = entry
        if nc > highest:
            shift = nc - highest
            mask = ((mask << shift) | 1) & ((1 << _WINDOW) - 1) if shift < _WINDOW else 1
            self._seen[nonce] = (nc, mask, issued)
            return "ok"
        back = highest - nc
        if back >= _WINDOW or mask & (1 << back):
            return "replay"
        self._seen[nonce] = (highest, mask | (1 << back), issued)
        return "ok"
