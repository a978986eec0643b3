"""The SIP realm: an authenticated avatar ID becomes its Extension (layer 3)."""

from __future__ import annotations

from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from zope.interface import Interface, implementer

__all__ = ["ExtensionRealm", "IExtensionAvatar"]


class IExtensionAvatar(Interface):
    """Marker for the avatar of a SIP login: the Extension object itself
    (``.number``, ``.password``, ``.ha1``, ``.ha1_sha256``, ...)."""


def _logout() -> None:
    """Nothing to release for a SIP avatar."""


@implementer(IRealm)
class ExtensionRealm:
    """Looks the avatar ID (the extension number) up in the extension store
    and returns the Extension as the ``IExtensionAvatar`` avatar."""

    def __init__(self, store: Any) -> None:  # IExtensionStore
        self.store = store

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Deferred:
        """Deferred firing with ``(IExtensionAvatar, extension, logout)``."""
        if IExtensionAvatar not in interfaces:
            raise NotImplementedError("ExtensionRealm only provides IExtensionAvatar")
        number = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId

        def found(extension: Any) -> tuple[Any, Any, Any]:
            if extension is None:  # deleted between check and login
                raise UnauthorizedLogin(f"extension {number} vanished")
            return (IExtensionAvatar, extension, _logout)

        return self.store.getExtension(number).addCallback(found)
