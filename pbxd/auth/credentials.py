"""SIP digest credentials for twisted.cred (layer 3)."""

from __future__ import annotations

import hmac

from twisted.cred.credentials import ICredentials
from zope.interface import Attribute, implementer

from pbxd.sip.digest import canonical_algorithm, compute_response

__all__ = ["ISIPDigestCredentials", "SIPDigestCredentials"]


class ISIPDigestCredentials(ICredentials):
    """The parameters of one Digest Authorization / Proxy-Authorization header
    plus the request method, checkable against a stored HA1."""

    username = Attribute("the authentication user name")
    realm = Attribute("the realm the client answered")
    method = Attribute("the request method")
    uri = Attribute("the digest-uri parameter")
    nonce = Attribute("the nonce being answered")
    nc = Attribute("nonce-count as sent (8 hex digits)")
    cnonce = Attribute("client nonce")
    qop = Attribute("'auth', or None for an RFC 2069 answer")
    algorithm = Attribute("canonical algorithm name: MD5, SHA-256, MD5-sess, SHA-256-sess")
    response = Attribute("the request-digest, lower-case hex")

    def checkHA1(ha1: str) -> bool:  # type: ignore[misc, empty-body]
        """True if ``response`` matches ``ha1`` = H(username:realm:password)
        computed with ``algorithm``'s hash (constant-time comparison)."""


@implementer(ISIPDigestCredentials)
class SIPDigestCredentials:
    """Digest credentials presented in a SIP request."""

    def __init__(
        self,
        username: str,
        realm: str,
        method: str,
        uri: str,
        nonce: str,
        nc: str,
        cnonce: str,
        qop: str | None,
        algorithm: str | None,
        response: str,
    ) -> None:
        self.username = username
        self.realm = realm
        self.method = method
        self.uri = uri
        self.nonce = nonce
        self.nc = nc
        self.cnonce = cnonce
        self.qop = qop
        self.algorithm = canonical_algorithm(algorithm)
        self.response = response.lower()

    @property
    def base_algorithm(self) -> str:
        """The hash family whose stored HA1 is needed: 'MD5' or 'SHA-256'."""
        return self.algorithm.removesuffix("-sess")

    def checkHA1(self, ha1: str) -> bool:
        """See :meth:`ISIPDigestCredentials.checkHA1`."""
        expected = compute_response(
            self.algorithm,
            ha1,
            self.nonce,
            self.method,
            self.uri,
            qop=self.qop,
            nc=self.nc,
            cnonce=self.cnonce,
        )
        response = self.response
        if response.isascii():  # compare_digest takes ASCII str as they are
            return hmac.compare_digest(expected, response)
        return hmac.compare_digest(expected.encode("ascii"), response.encode("ascii", "replace"))

    def __repr__(self) -> str:
        return (
            f"<SIPDigestCredentials {self.username!r}@{self.realm!r} "
            f"{self.method} {self.algorithm}>"
        )
