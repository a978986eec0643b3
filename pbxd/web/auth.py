"""Bearer-token authentication of the admin API through twisted.cred (layer 6).

- :class:`BearerToken` credentials carry the token presented in
  ``Authorization: Bearer <token>``.
- :class:`AdminTokenChecker` knows only the SHA-256 of each configured token
  (``admin.tokens``; a plaintext token in the file is hashed when parsed). It
  hashes the presented token and compares it with *every* known hash with
  :func:`hmac.compare_digest`, so neither the comparison nor the position of
  the match leaks through timing. The avatar ID is the token's name.
- :class:`FailureLimiter` counts failed attempts per source IP; after
  ``max_failures`` within ``window`` seconds the source is locked out for
  ``lockout`` seconds (429 with ``Retry-After``, even with a right token).
- :class:`RequestLimiter` is the API's flood protection: a token bucket per
  source IP (``admin.rate_limit``, the SIP flood limiter's
  :class:`~pbxd.auth.bans.TokenBuckets`); a source over it gets 429 with
  ``Retry-After`` on every path, trusted networks excepted.
- :class:`TokenAuthenticator` ties them together for the router: it fires
  with the token name or fails with a 401/429 :class:`APIError`, and logs
  (and counts in the metrics) every failure.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

from twisted.cred import error as cred_error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from pbxd.auth.bans import TokenBuckets
from pbxd.web.resources import APIError, client_host

__all__ = [
    "IBearerToken",
    "IAdminUser",
    "BearerToken",
    "AdminUser",
    "AdminTokenChecker",
    "AdminRealm",
    "FailureLimiter",
    "RequestLimiter",
    "TokenAuthenticator",
]

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="pbxd"'}


class IBearerToken(ICredentials):
    """A bearer token presented over HTTP."""

    token = Attribute("the token text (str)")


class IAdminUser(Interface):
    """The avatar of an authenticated admin API client."""

    name = Attribute("the name of the token it authenticated with")


@implementer(IBearerToken)
class BearerToken:
    """Credentials: one presented bearer token."""

    def __init__(self, token: str) -> None:
        self.token = token


@implementer(IAdminUser)
class AdminUser:
    """An authenticated API client, known by its token name."""

    def __init__(self, name: str) -> None:
        self.name = name


@implementer(ICredentialsChecker)
class AdminTokenChecker:
    """Checks bearer tokens against the SHA-256 hex digests of ``admin.tokens``.

    ``tokens`` are objects with ``name`` and ``sha256`` (AdminToken). The
    avatar ID is the token name (bytes-free: a str).
    """

    credentialInterfaces = (IBearerToken,)

    def __init__(self, tokens: Iterable[Any]) -> None:
        self.replace(tokens)

    def replace(self, tokens: Iterable[Any]) -> None:
        """Use ``tokens`` from now on (configuration reload)."""
        self._tokens = [(t.name, bytes.fromhex(t.sha256)) for t in tokens]

    def requestAvatarId(self, credentials: Any) -> Deferred:
        """Fire with the token's name, or fail with UnauthorizedLogin."""
        presented = hashlib.sha256(credentials.token.encode("utf-8")).digest()
        match = None
        for name, digest in self._tokens:  # no early exit: constant work per token
            if hmac.compare_digest(presented, digest):
                match = name
        if match is None:
            return fail(cred_error.UnauthorizedLogin("unknown token"))
        return succeed(match)


@implementer(IRealm)
class AdminRealm:
    """Gives every authenticated token an :class:`AdminUser` avatar."""

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        """Return ``(IAdminUser, AdminUser(avatarId), logout)``."""
        if IAdminUser not in interfaces:
            raise NotImplementedError("only IAdminUser avatars are available")
        return IAdminUser, AdminUser(avatarId), lambda: None


def too_many(code: str, what: str, seconds: float) -> APIError:
    """A 429 ``code`` error: too many ``what`` from this address, retry in ``seconds``."""
    return APIError(
        429,
        code,
        f"too many {what} from this address; try again later",
        headers={"Retry-After": str(max(1, math.ceil(seconds)))},
    )


class FailureLimiter:
    """Failed authentications per source, with a lockout (memory bounded).

    :param clock: IReactorTime for ``seconds()``.
    :param max_failures: failures within ``window`` seconds that lock a source
        out for ``lockout`` seconds; 0 disables the lockout.
    :param max_sources: hard cap of tracked sources (oldest dropped first).
    """

    def __init__(
        self,
        clock: Any,
        *,
        max_failures: int = 5,
        window: float = 60.0,
        lockout: float = 300.0,
        max_sources: int = 10_000,
    ) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_sources = max_sources
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked: OrderedDict[str, float] = OrderedDict()  # source -> until

    def locked_for(self, source: str) -> float:
        """Seconds ``source`` stays locked out (0 when it is not)."""
        until = self._locked.get(source)
        if until is None:
            return 0.0
        left = until - self.clock.seconds()
        if left <= 0:
            del self._locked[source]
            return 0.0
        return left

    def failure(self, source: str) -> bool:
        """Count one failure from ``source``; True when it is now locked out."""
        if self.max_failures <= 0:
            return False
        now = self.clock.seconds()
        window = self._failures.pop(source, None) or deque(maxlen=self.max_failures)
        while window and window[0] <= now - self.window:
            window.popleft()
        window.append(now)
        if len(window) >= self.max_failures:
            self._locked[source] = now + self.lockout
            self._cap(self._locked)
            return True
        self._failures[source] = window
        self._cap(self._failures)
        return False

    def success(self, source: str) -> None:
        """Forget the failures of ``source`` after a good token."""
        self._failures.pop(source, None)

    def tracked(self) -> int:
        """How many sources are held in memory."""
        return len(self._failures) + len(self._locked)

    def _cap(self, table: OrderedDict[str, Any]) -> None:
        while len(table) > self.max_sources:
            table.popitem(last=False)


class RequestLimiter:
    """Requests per source IP over the whole admin API (memory bounded).

    :param clock: IReactorTime for ``seconds()``.
    :param requests: requests a source may make per ``window`` seconds
        (bursts up to that many); 0 disables the limit.
    :param trusted: ``ip -> bool``; trusted sources are never limited (the
        BanList's ``is_trusted``, so ``security.trusted_networks`` and its reload).
    """

    log = Logger()

    def __init__(
        self,
        clock: Any,
        *,
        requests: int = 100,
        window: float = 10.0,
        trusted: Callable[[str], bool] | None = None,
        max_sources: int = 10_000,
    ) -> None:
        self.clock = clock
        self.trusted = trusted
        self.buckets = TokenBuckets(requests, window, max_sources)
        self._limited: set[str] = set()  # sources refused since the last sweep (log once)
        self._next_sweep = clock.seconds() + window

    def configure(self, requests: int, window: float) -> None:
        """New limits (configuration reload); the buckets carry on."""
        self.buckets.requests, self.buckets.window = requests, window

    def check(self, source: str) -> float:
        """Count one request from ``source``: 0.0 to serve it, else the seconds
        until it may make another (answer 429)."""
        if not self.buckets.requests or (self.trusted is not None and self.trusted(source)):
            return 0.0
        now = self.clock.seconds()
        if now >= self._next_sweep:
            self._next_sweep = now + self.buckets.window
            self.buckets.sweep(now)
            self._limited.clear()
        wait = self.buckets.take(source, now)
        if wait and source not in self._limited and len(self._limited) < 1000:
            self._limited.add(source)
            self.log.warn(
                "admin API request flood from {source}: over {limit} requests in {window}s",
                source=source, limit=self.buckets.requests, window=self.buckets.window,
            )
        return wait

    def tracked(self) -> int:
        """How many sources are held in memory."""
        return len(self.buckets) + len(self._limited)

    @staticmethod
    def refusal(seconds: float) -> APIError:
        """The 429 answer for a source over the limit."""
        return too_many("rate_limited", "requests", seconds)


class TokenAuthenticator:
    """The router's authentication step: ``authenticate(request) -> Deferred[name]``.

    ``metrics`` (optional) gets ``auth_failure("admin")`` for each failure.
    """

    log = Logger()

    def __init__(self, portal: Portal, limiter: FailureLimiter, metrics: Any = None) -> None:
        self.portal = portal
        self.limiter = limiter
        self.metrics = metrics
        self.checker: AdminTokenChecker | None = None  # set by make_authenticator

    def __call__(self, request: Any) -> Deferred:
        return self.authenticate(request)

    def authenticate(self, request: Any) -> Deferred:
        """Fire with the token name, or fail with a 401 or 429 APIError."""
        source = client_host(request)
        locked = self.limiter.locked_for(source)
        if locked:
            return fail(self._locked_out(locked))
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return fail(self._failed(source, "no bearer token"))
        d = self.portal.login(BearerToken(token), None, IAdminUser)  # type: ignore[arg-type]

        def ok(result: Any) -> str:
            _, avatar, _ = result
            self.limiter.success(source)
            return avatar.name

        def bad(failure: Any) -> None:
            failure.trap(cred_error.UnauthorizedLogin, cred_error.UnhandledCredentials)
            raise self._failed(source, "wrong token")

        return d.addCallbacks(ok, bad)

    def _failed(self, source: str, reason: str) -> APIError:
        locked = self.limiter.failure(source)
        if self.metrics is not None:
            self.metrics.auth_failure("admin")
        self.log.warn(
            "admin API authentication failure from {source}: {reason}{lock}",
            source=source,
            reason=reason,
            lock=" (locked out)" if locked else "",
        )
        if locked:
            return self._locked_out(self.limiter.lockout)
        return APIError(
            401, "unauthorized", "a valid bearer token is required", headers=CHALLENGE
        )

    @staticmethod
    def _locked_out(seconds: float) -> APIError:
        return too_many("locked_out", "failed authentications", seconds)


def make_authenticator(
    tokens: Iterable[Any], clock: Any, *, metrics: Any = None, **limits: Any
) -> TokenAuthenticator:
    """A :class:`TokenAuthenticator` over a Portal with the token checker.

    ``limits`` go to :class:`FailureLimiter` (max_failures, window, lockout).
    """
    checker = AdminTokenChecker(tokens)
    portal = Portal(AdminRealm(), [checker])  # type: ignore[arg-type,list-item]
    authenticator = TokenAuthenticator(portal, FailureLimiter(clock, **limits), metrics)
    authenticator.checker = checker
    return authenticator
