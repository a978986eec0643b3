"""Digest authentication of SIP requests (RFC 3261 22, RFC 8760), layer 3.

:class:`SIPAuthenticator` turns a request into an :class:`AuthResult`: the
authenticated extension, or the response to send instead. The decisions:

=============================================  ======================================  =========
request                                        answer                                  a failure?
=============================================  ======================================  =========
no credentials for our realm                   401/407 challenge                       no
unparsable credentials, unsupported algorithm  401/407 challenge                       no
  or qop, missing parameters
auth username != claimed extension             403 Forbidden                           yes
  (REGISTER: To user; others: From user)
digest ``uri`` not the Request-URI             401/407 challenge                       yes
  (scheme, host, user compared)
wrong password, unknown extension              401/407 challenge, same headers         yes
right password, nonce expired or not ours      401/407 challenge with ``stale=true``   no
right password, nonce-count reused             401/407 challenge with ``stale=true``   no
right password, fresh nonce, new count         authenticated                           --
=============================================  ======================================  =========

Wrong credentials get a fresh challenge rather than a 403, and an unknown
extension gets exactly the same answer as a known one with a wrong password
(Asterisk's ``alwaysauthreject``): nothing tells a scanner which extensions
exist. Failures are counted per source address in the :class:`BanList`;
a banned source is dropped by the controller before it reaches us.

A challenge carries one WWW-Authenticate (Proxy-Authenticate when
``proxy=True``) per configured algorithm, in configuration order, all
with the same fresh nonce, ``qop="auth"``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbxd.auth.bans import BanList
from pbxd.auth.credentials import SIPDigestCredentials
from pbxd.auth.realm import IExtensionAvatar
from pbxd.errors import SIPParseError
from pbxd.sip.digest import (
    DigestParseError,
    NonceCounter,
    NonceSource,
    canonical_algorithm,
    format_challenge,
    parse_auth_header,
)
from pbxd.sip.message import Request, Response, make_response
from pbxd.sip.uri import URI

__all__ = ["AuthResult", "SIPAuthenticator"]

_REQUIRED = ("username", "realm", "nonce", "uri", "response")


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Exactly one of ``extension`` (authenticated) and ``response`` (send it) is set."""

    extension: Any = None
    response: Response | None = None

    def __post_init__(self) -> None:
        if (self.extension is None) == (self.response is None):
            raise ValueError("AuthResult needs exactly one of extension and response")


class SIPAuthenticator:
    """Challenges and checks SIP requests against a cred ``Portal``.

    :param portal: a ``Portal`` with an :class:`ExtensionRealm` and an
        :class:`ExtensionChecker` (or any checker of ISIPDigestCredentials).
    :param nonces: signs and checks nonces (its lifetime makes them stale).
    :param bans: failures are reported here; None to count nothing.
    :param clock: ``IReactorTime``.
    :param realm: our digest realm (``pbx.realm``).
    :param algorithms: ``security.digest_algorithms``, challenge order.
    :param counter: nonce-count table (a default-sized one when omitted).
    """

    log = Logger()

    def __init__(
        self,
        portal: Any,
        nonces: NonceSource,
        bans: BanList | None,
        clock: Any,
        realm: str,
        algorithms: Sequence[str] = ("MD5",),
        *,
        counter: NonceCounter | None = None,
    ) -> None:
        self.portal = portal
        self.nonces = nonces
        self.bans = bans
        self.clock = clock
        self.realm = realm
        self.algorithms = tuple(canonical_algorithm(a) for a in algorithms)
        if not self.algorithms:
            raise ValueError("at least one digest algorithm is needed")
        self.counter = counter if counter is not None else NonceCounter()

    # ------------------------------------------------------------ responses

    def challenge(self, request: Request, *, proxy: bool = False, stale: bool = False) -> Response:
        """A 401 (or 407) with one challenge per algorithm and a fresh nonce."""
        status = 407 if proxy else 401
        response = make_response(request, status, to_tag=_to_tag(request))
        nonce = self.nonces.make(self.clock.seconds())
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for algorithm in self.algorithms:
            response.add(name, format_challenge(self.realm, nonce, algorithm, stale=stale))
        return response

    def _forbidden(self, request: Request) -> Response:
        return make_response(request, 403, "Forbidden", to_tag=_to_tag(request))

    # ------------------------------------------------------------ checking

    def authenticate(
        self, request: Request, source: tuple[str, int], *, proxy: bool = False
    ) -> Deferred[AuthResult]:
        """Check ``request`` from ``source``; fires with an :class:`AuthResult`
        (never fails: a broken store gives a 500 response)."""
        return Deferred.fromCoroutine(self._authenticate(request, source, proxy))

    async def _authenticate(
        self, request: Request, source: tuple[str, int], proxy: bool
    ) -> AuthResult:
        ip = source[0]
        params = self._credentials_for_us(
            request.getall("Proxy-Authorization" if proxy else "Authorization"), ip
        )
        if params is None:
            return AuthResult(response=self.challenge(request, proxy=proxy))

        claimed = _claimed_user(request)
        username = params.get("username")
        if username is None or claimed is None or username != claimed:
            self._failed(ip, f"auth user {username!r} does not match extension {claimed!r}")
            return AuthResult(response=self._forbidden(request))

        try:
            credentials, nc = self._make_credentials(request, params)
        except ValueError as e:
            self.log.info(
                "unusable credentials from {source} for {user}: {why}",
                source=ip,
                user=username,
                why=str(e),
            )
            return AuthResult(response=self.challenge(request, proxy=proxy))

        if not _uri_matches(credentials.uri, request.uri):
            self._failed(ip, f"digest uri {credentials.uri!r} is not the Request-URI")
            return AuthResult(response=self.challenge(request, proxy=proxy))

        nonce_state = self.nonces.check(credentials.nonce, self.clock.seconds())
        try:
            _, extension, _ = await self.portal.login(credentials, None, IExtensionAvatar)
        except UnauthorizedLogin:
            self._failed(ip, f"wrong credentials for {username}")
            return AuthResult(response=self.challenge(request, proxy=proxy))
        except Exception:
            self.log.failure(
                "authentication of {user} from {source} failed", user=username, source=ip
            )
            return AuthResult(response=make_response(request, 500, to_tag=_to_tag(request)))

        if nonce_state != "ok":
            self.log.info(
                "{state} nonce from {source} for {user}",
                state=nonce_state,
                source=ip,
                user=username,
            )
            return AuthResult(response=self.challenge(request, proxy=proxy, stale=True))
        issued = self.nonces.issued_at(credentials.nonce)
        assert issued is not None  # checked 'ok' above
        if self.counter.use(credentials.nonce, nc, issued) != "ok":
            self.log.warn(
                "nonce-count {nc} reused from {source} for {user}", nc=nc, source=ip, user=username
            )
            return AuthResult(response=self.challenge(request, proxy=proxy, stale=True))
        return AuthResult(extension=extension)

    def _credentials_for_us(self, values: list[str], ip: str) -> dict[str, str] | None:
        """The params of the first Digest credentials addressed to our realm."""
        for value in values:
            try:
                scheme, params = parse_auth_header(value)
            except DigestParseError as e:
                self.log.info("bad credentials from {source}: {why}", source=ip, why=str(e))
                continue
            if scheme.lower() == "digest" and params.get("realm") == self.realm:
                return params
        return None

    def _make_credentials(
        self, request: Request, params: dict[str, str]
    ) -> tuple[SIPDigestCredentials, int]:
        """Build the cred credentials; ValueError when something is missing or not offered."""
        missing = [name for name in _REQUIRED if not params.get(name)]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        algorithm = canonical_algorithm(params.get("algorithm"))
        if algorithm not in self.algorithms:
            raise ValueError(f"algorithm {algorithm} not offered")
        if params.get("qop") != "auth":
            raise ValueError(f"qop {params.get('qop')!r} not offered")
        nc_text, cnonce = params.get("nc", ""), params.get("cnonce", "")
        if len(nc_text) != 8 or not cnonce:
            raise ValueError("qop=auth needs nc (8 hex digits) and cnonce")
        nc = int(nc_text, 16)  # ValueError when not hex
        credentials = SIPDigestCredentials(
            username=params["username"],
            realm=params["realm"],
            method=request.method,
            uri=params["uri"],
            nonce=params["nonce"],
            nc=nc_text,
            cnonce=cnonce,
            qop="auth",
            algorithm=algorithm,
            response=params["response"],
        )
        return credentials, nc

    metrics: Any = None  # a pbxd.web.metrics.Metrics (auth_failure), set by composition

    def _failed(self, ip: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.auth_failure("sip")
        if self.bans is not None:
            self.bans.record_failure(ip, reason)
        else:
            self.log.warn("auth failure from {source}: {reason}", source=ip, reason=reason)


def _claimed_user(request: Request) -> str | None:
    """The extension a request claims: the To user of REGISTER, else the From user."""
    try:
        addr = request.to if request.method == "REGISTER" else request.from_
    except SIPParseError:
        return None
    return None if addr is None else addr.uri.user


def _uri_matches(digest_uri: str, request_uri: URI) -> bool:
    """Loose RFC 3261 22.4 check: same scheme, host and user."""
    try:
        uri = URI.parse(digest_uri)
    except SIPParseError:
        return False
    return (uri.scheme, uri.host, uri.user) == (
        request_uri.scheme,
        request_uri.host,
        request_uri.user,
    )


def _to_tag(request: Request) -> str:
    """A To tag that depends only on the request's dialog identifiers, so
    retransmissions and every challenge of one request look alike."""
    try:
        from_tag = request.from_.tag if request.from_ is not None else ""
    except SIPParseError:
        from_tag = ""
    seed = f"{request.get('Call-ID') or ''}|{from_tag}"
    return hashlib.sha256(seed.encode("utf-8", "replace")).hexdigest()[:16]
