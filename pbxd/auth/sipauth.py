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
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbxd.auth.bans import BanList
from pbxd.auth.credentials import SIPDigestCredentials
from pbxd.auth.realm import NOT_YET, IExtensionAvatar, fired_value
from pbxd.errors import SIPParseError
from pbxd.sip.digest import (
    DigestParseError,
    NonceCounter,
    NonceSource,
    canonical_algorithm,
    challenge_parts,
    parse_auth_header,
)
from pbxd.sip.message import Request, Response, make_response
from pbxd.sip.uri import URI

__all__ = ["AuthResult", "SIPAuthenticator"]

_REQUIRED = ("username", "realm", "nonce", "uri", "response")


class AuthResult:
    """Exactly one of ``extension`` (authenticated) and ``response`` (send it)
    is set. A plain class (one is made per request; a frozen dataclass costs
    three times as much): treat it as immutable."""

    __slots__ = ("extension", "response")

    def __init__(self, extension: Any = None, response: Response | None = None) -> None:
        if (extension is None) == (response is None):
            raise ValueError("AuthResult needs exactly one of extension and response")
        self.extension = extension
        self.response = response

    def __repr__(self) -> str:
        return f"AuthResult(extension={self.extension!r}, response={self.response!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.extension, self.response) == (other.extension, other.response)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.extension, self.response))


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
        # challenge header values around the nonce, by stale, per algorithm
        self._challenges = {
            stale: tuple(challenge_parts(realm, a, stale=stale) for a in self.algorithms)
            for stale in (False, True)
        }

    # ------------------------------------------------------------ responses

    def challenge(self, request: Request, *, proxy: bool = False, stale: bool = False) -> Response:
        """A 401 (or 407) with one challenge per algorithm and a fresh nonce."""
        response = make_response(request, 407 if proxy else 401, to_tag=_to_tag(request))
        nonce = self.nonces.make(self.clock.seconds())
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for before, after in self._challenges[stale]:
            response.add(name, before + nonce + after)
        return response

    def _forbidden(self, request: Request) -> Response:
        return make_response(request, 403, "Forbidden", to_tag=_to_tag(request))

    # ------------------------------------------------------------ checking

    def authenticate(
        self, request: Request, source: tuple[str, int], *, proxy: bool = False
    ) -> AuthResult | Deferred[AuthResult]:
        """Check ``request`` from ``source``: an :class:`AuthResult` when the
        answer is known at once (no credentials, bad ones, or a store that
        answers synchronously), else a Deferred firing with one. Never raises
        and never fails: a broken store gives a 500 response."""
        try:
            return self._authenticate(request, source[0], proxy)
        except Exception:
            self.log.failure(
                "authentication of a {method} from {source} failed",
                method=request.method,
                source=source[0],
            )
            return AuthResult(response=make_response(request, 500, to_tag=_to_tag(request)))

    def _authenticate(
        self, request: Request, ip: str, proxy: bool
    ) -> AuthResult | Deferred[AuthResult]:
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

        nonce = self.nonces.verify(credentials.nonce, self.clock.seconds())
        login = self.portal.login(credentials, None, IExtensionAvatar)
        # An in-memory store has answered already: take the outcome now
        # instead of running more callbacks.
        avatar = fired_value(login)
        if avatar is not NOT_YET:
            return self._logged_in(avatar, request, ip, proxy, credentials, nc, nonce)
        outcome: list[Any] = []  # a failure, or the avatar of a store that answers later
        login.addBoth(outcome.append)
        if outcome:
            return self._logged_in(outcome[0], request, ip, proxy, credentials, nc, nonce)
        d = login.addCallback(
            lambda _: self._logged_in(outcome[0], request, ip, proxy, credentials, nc, nonce)
        )
        d.addErrback(self._broken, request, ip)
        return d

    def _logged_in(
        self,
        outcome: Any,
        request: Request,
        ip: str,
        proxy: bool,
        credentials: SIPDigestCredentials,
        nc: int,
        nonce: tuple[str, float | None],
    ) -> AuthResult:
        """The answer once the portal's login has ``outcome`` (avatar tuple or Failure)."""
        username = credentials.username
        if isinstance(outcome, Failure):
            if outcome.check(UnauthorizedLogin):
                self._failed(ip, f"wrong credentials for {username}")
                return AuthResult(response=self.challenge(request, proxy=proxy))
            self.log.failure(
                "authentication of {user} from {source} failed", outcome, user=username, source=ip
            )
            return AuthResult(response=make_response(request, 500, to_tag=_to_tag(request)))
        extension = outcome[1]
        nonce_state, issued = nonce
        if nonce_state != "ok":
            self.log.info(
                "{state} nonce from {source} for {user}",
                state=nonce_state,
                source=ip,
                user=username,
            )
            return AuthResult(response=self.challenge(request, proxy=proxy, stale=True))
        assert issued is not None  # checked 'ok' above
        if self.counter.use(credentials.nonce, nc, issued) != "ok":
            self.log.warn(
                "nonce-count {nc} reused from {source} for {user}", nc=nc, source=ip, user=username
            )
            return AuthResult(response=self.challenge(request, proxy=proxy, stale=True))
        return AuthResult(extension=extension)

    def _broken(self, failure: Failure, request: Request, ip: str) -> AuthResult:
        """An unexpected error after an asynchronous login: 500, as for a broken store."""
        self.log.failure(
            "authentication of a {method} from {source} failed",
            failure,
            method=request.method,
            source=ip,
        )
        return AuthResult(response=make_response(request, 500, to_tag=_to_tag(request)))

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
        get = params.get
        username, realm, nonce, uri, response = (
            get("username"), get("realm"), get("nonce"), get("uri"), get("response")
        )  # fmt: skip
        if not (username and realm and nonce and uri and response):
            missing = [name for name in _REQUIRED if not get(name)]
            raise ValueError(f"missing {', '.join(missing)}")
        algorithm = canonical_algorithm(get("algorithm"))
        if algorithm not in self.algorithms:
            raise ValueError(f"algorithm {algorithm} not offered")
        if get("qop") != "auth":
            raise ValueError(f"qop {get('qop')!r} not offered")
        nc_text, cnonce = get("nc", ""), get("cnonce", "")
        if len(nc_text) != 8 or not cnonce:
            raise ValueError("qop=auth needs nc (8 hex digits) and cnonce")
        nc = int(nc_text, 16)  # ValueError when not hex
        credentials = SIPDigestCredentials(
            username,
            realm,
            request.method,
            uri,
            nonce,
            nc_text,
            cnonce,
            "auth",
            algorithm,
            response,
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
    if digest_uri == str(request_uri):  # what phones send: the Request-URI as received
        return True
    try:
        uri = URI.parse(digest_uri)
    except SIPParseError:
        return False
    return (uri.scheme, uri.host, uri.user) == (
        request_uri.scheme,
        request_uri.host,
        request_uri.user,
    )


#: 64-bit BLAKE2b (Python's own, copied per use: no OpenSSL lookup) for :func:`_to_tag`
_TAG_HASH = hashlib.blake2b(digest_size=8)


def _to_tag(request: Request) -> str:
    """A To tag that depends only on the request's dialog identifiers, so
    retransmissions and every challenge of one request look alike."""
    try:
        from_ = request.from_
        from_tag = from_.tag if from_ is not None else ""
    except SIPParseError:
        from_tag = ""
    h = _TAG_HASH.copy()
    h.update(f"{request.call_id or ''}|{from_tag}".encode("utf-8", "replace"))
    return h.hexdigest()
