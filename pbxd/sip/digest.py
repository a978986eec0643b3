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

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

__all__ = [
    "ALGORITHMS",
    "DigestParseError",
    "NonceCounter",
    "NonceSource",
    "canonical_algorithm",
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

#: Supported algorithm names (canonical spelling) and their hash constructors.
ALGORITHMS: dict[str, Callable[..., hashlib._Hash]] = {
    "MD5": hashlib.md5,
    "MD5-sess": hashlib.md5,
    "SHA-256": hashlib.sha256,
    "SHA-256-sess": hashlib.sha256,
}
_BY_UPPER = {name.upper(): name for name in ALGORITHMS}

# Parameters written as tokens (unquoted) in challenges and credentials;
# everything else is a quoted-string (RFC 2617 3.2.1/3.2.2, RFC 3261 25.1).
_TOKEN_PARAMS = frozenset({"algorithm", "stale", "nc"})

_SEPARATORS = frozenset('()<>@,;:\\"/[]?={} \t')


class DigestParseError(ValueError):
    """An auth header value is not a well-formed ``scheme auth-param, ...`` list."""


# --------------------------------------------------------------------------
# Parsing and formatting
# --------------------------------------------------------------------------


def quote_string(value: str) -> str:
    """Return ``value`` as a quoted-string, escaping ``\\`` and ``"``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _token(text: str, i: int) -> tuple[str, int]:
    start = i
    while i < len(text) and text[i] not in _SEPARATORS and text[i] not in "\r\n":
        i += 1
    return text[start:i], i


def _quoted(text: str, i: int) -> tuple[str, int]:
    """Read a quoted-string starting at ``text[i] == '"'``; return (value, next index)."""
    out: list[str] = []
    i += 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                break
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise DigestParseError("unterminated quoted string")


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Parse ``Digest name=value, name="quoted", ...``.

    Returns ``(scheme, params)``; the scheme keeps its spelling, parameter
    names are lower case, quoted values are unescaped. A repeated parameter
    is an error (it would make the credentials ambiguous).
    """
    i = _skip_ws(value, 0)
    scheme, i = _token(value, i)
    if not scheme:
        raise DigestParseError("missing auth scheme")
    params: dict[str, str] = {}
    i = _skip_ws(value, i)
    while i < len(value):
        name, i = _token(value, i)
        if not name:
            raise DigestParseError(f"bad auth-param at offset {i}")
        i = _skip_ws(value, i)
        if i >= len(value) or value[i] != "=":
            raise DigestParseError(f"auth-param {name!r} has no value")
        i = _skip_ws(value, i + 1)
        if i < len(value) and value[i] == '"':
            val, i = _quoted(value, i)
        else:
            val, i = _token(value, i)
        key = name.lower()
        if key in params:
            raise DigestParseError(f"auth-param {key!r} repeated")
        params[key] = val
        i = _skip_ws(value, i)
        if i < len(value):
            if value[i] != ",":
                raise DigestParseError(f"expected ',' at offset {i}")
            i = _skip_ws(value, i + 1)
    return scheme, params


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


# --------------------------------------------------------------------------
# Hashes
# --------------------------------------------------------------------------


def canonical_algorithm(name: str | None) -> str:
    """The canonical spelling of ``name`` (case-insensitive; None means MD5).

    Raises ``ValueError`` for an algorithm we do not implement.
    """
    if name is None or name == "":
        return "MD5"
    try:
        return _BY_UPPER[name.upper()]
    except KeyError:
        raise ValueError(f"unsupported digest algorithm {name!r}") from None


def hash_hex(algorithm: str, data: str) -> str:
    """Hex digest of UTF-8 ``data`` with the hash of ``algorithm``."""
    return ALGORITHMS[canonical_algorithm(algorithm)](data.encode("utf-8")).hexdigest()


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """``H(username:realm:password)``: the storable HA1 (never the -sess form)."""
    return hash_hex(algorithm, f"{username}:{realm}:{password}")


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
    real_ha1 = session_ha1(algorithm, ha1, nonce, cnonce)
    ha2 = compute_ha2(algorithm, method, uri)
    if qop:
        return hash_hex(algorithm, f"{real_ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return hash_hex(algorithm, f"{real_ha1}:{nonce}:{ha2}")


# --------------------------------------------------------------------------
# Nonces
# --------------------------------------------------------------------------

NonceState = Literal["ok", "stale", "invalid"]

_MAC_LEN = 16
_RAND_LEN = 8
_RAW_LEN = 8 + _RAND_LEN + _MAC_LEN
_SKEW = 5.0  # seconds a nonce may appear to come from the future (clock steps, other nodes)


class NonceSource:
    """Makes and checks self-validating nonces.

    A nonce is ``base64url(ms timestamp (8) | random (8) | HMAC-SHA256 (16))``:
    no table is needed to know that we issued it and when. Several nodes
    sharing ``secret`` accept each other's nonces.
    """

    def __init__(
        self,
        secret: bytes,
        lifetime: float,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        self._secret = secret
        self.lifetime = lifetime
        self._random = random

    def _mac(self, head: bytes) -> bytes:
        return hmac.new(self._secret, head, hashlib.sha256).digest()[:_MAC_LEN]

    def make(self, now: float) -> str:
        """A fresh nonce issued at ``now``."""
        head = struct.pack(">Q", max(0, int(now * 1000))) + self._random(_RAND_LEN)
        return base64.urlsafe_b64encode(head + self._mac(head)).rstrip(b"=").decode("ascii")

    def issued_at(self, nonce: str) -> float | None:
        """The issue time of a nonce we signed, or None if it is not ours."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii") + b"=" * (-len(nonce) % 4))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
        if len(raw) != _RAW_LEN:
            return None
        head, mac = raw[:-_MAC_LEN], raw[-_MAC_LEN:]
        if not hmac.compare_digest(mac, self._mac(head)):
            return None
        return struct.unpack(">Q", head[:8])[0] / 1000.0

    def check(self, nonce: str, now: float) -> NonceState:
        """``'ok'``, ``'stale'`` (ours but older than ``lifetime``) or
        ``'invalid'`` (not ours, tampered, or from the future)."""
        issued = self.issued_at(nonce)
        if issued is None or issued > now + _SKEW:
            return "invalid"
        if now - issued > self.lifetime:
            return "stale"
        return "ok"


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
