"""Checks SIP digest credentials against the extension store (layer 3)."""

from __future__ import annotations

import os
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from pbxd.auth.credentials import ISIPDigestCredentials
from pbxd.auth.realm import NOT_YET, fired_value
from pbxd.sip.digest import compute_ha1

__all__ = ["ExtensionChecker", "stored_ha1"]

#: HA1s derived from plaintext passwords kept by a checker (then it starts afresh)
_HA1_CACHE_SIZE = 16384


def stored_ha1(extension: Any, algorithm: str, username: str, realm: str) -> str | None:
    """The HA1 of ``extension`` for ``algorithm`` ('MD5' or 'SHA-256', a -sess
    suffix is ignored): the configured ``ha1``/``ha1_sha256`` if set, else
    derived from the plaintext ``password``; None when neither is available."""
    base = algorithm.removesuffix("-sess")
    attr = "ha1" if base == "MD5" else "ha1_sha256"
    given = getattr(extension, attr, None)
    if given:
        return str(given).lower()
    password = getattr(extension, "password", None)
    if password is None:
        return None
    return compute_ha1(base, username, realm, str(password))


@implementer(ICredentialsChecker)
class ExtensionChecker:
    """``ICredentialsChecker`` for :class:`ISIPDigestCredentials`.

    The avatar ID is the extension number (str). Unknown users, users with no
    secret for the requested algorithm and wrong answers all fail with
    ``UnauthorizedLogin`` after the same hashing work (a dummy HA1 is checked
    for unknown users), so timing does not tell which extensions exist
    beyond what the store lookup itself reveals.

    The HA1 of a plaintext password is derived once and remembered (a
    bounded table keyed by algorithm, user, realm and password, so a changed
    password or realm is derived afresh); the dummy HA1 checked for an
    unknown user comes from the same table, so both cost the same.
    """

    credentialInterfaces = (ISIPDigestCredentials,)
    log = Logger()

    def __init__(self, store: Any) -> None:  # IExtensionStore
        self.store = store
        self._dummy_password = os.urandom(16).hex()
        self._ha1s: dict[tuple[str, str, str, str], str] = {}

    def requestAvatarId(self, credentials: Any) -> Deferred:
        """Deferred firing with the extension number, or failing with UnauthorizedLogin."""
        d = self.store.getExtension(credentials.username)
        extension = fired_value(d)
        if extension is NOT_YET:
            return d.addCallback(self._verify, credentials)
        # the store has answered already: check now, no callback to run
        try:
            return succeed(self._verify(extension, credentials))
        except Exception:
            return fail()

    def _derived_ha1(self, base: str, username: str, realm: str, password: str) -> str:
        """``compute_ha1(base, username, realm, password)``, remembered."""
        key = (base, username, realm, password)
        ha1 = self._ha1s.get(key)
        if ha1 is None:
            if len(self._ha1s) >= _HA1_CACHE_SIZE:
                self._ha1s.clear()
            ha1 = self._ha1s[key] = compute_ha1(base, username, realm, password)
        return ha1

    def _verify(self, extension: Any, credentials: Any) -> str:
        base = credentials.algorithm.removesuffix("-sess")
        ha1 = None
        if extension is not None:
            # as stored_ha1, with the derived HA1 remembered
            given = getattr(extension, "ha1" if base == "MD5" else "ha1_sha256", None)
            if given:
                ha1 = str(given).lower()
            else:
                password = getattr(extension, "password", None)
                if password is not None:
                    ha1 = self._derived_ha1(
                        base, credentials.username, credentials.realm, str(password)
                    )
        if ha1 is None:
            # same work as for a real extension with a plaintext password (one
            # dummy per algorithm and realm: a scan of many unknown names finds it
            # remembered, as the HA1 of a known extension is)
            dummy = self._derived_ha1(base, "", credentials.realm, self._dummy_password)
            credentials.checkHA1(dummy)
            raise UnauthorizedLogin("unknown user or no usable secret")
        if not credentials.checkHA1(ha1):
            raise UnauthorizedLogin("wrong digest response")
        return str(extension.number)
