"""The SIP realm: an authenticated avatar ID becomes its Extension (layer 3)."""

from __future__ import annotations

from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

__all__ = ["NOT_YET", "ExtensionRealm", "IExtensionAvatar", "fired_value"]

NOT_YET: Any = object()
"""What :func:`fired_value` returns for a Deferred without a value yet."""


def fired_value(d: Deferred) -> Any:
    """The value ``d`` has fired with, or :data:`NOT_YET` if it has not fired,
    waits on another Deferred, or holds a failure (left in ``d`` for its
    errbacks). Lets the in-memory stores' already-fired Deferreds be used
    without running more callbacks."""
    # Not paused: not waiting on a Deferred returned by a callback (a Deferred
    # never fires with a Deferred itself), so ``result`` is final.
    if d.called and not d.paused:
        result = d.result
        if not isinstance(result, Failure):  # (Deferred is an ABC: slower to test)
            return result
    return NOT_YET


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

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        """``(IExtensionAvatar, extension, logout)``, or a Deferred firing with
        it when the store has not answered at once (IRealm allows both)."""
        if IExtensionAvatar not in interfaces:
            raise NotImplementedError("ExtensionRealm only provides IExtensionAvatar")
        number = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        d = self.store.getExtension(number)
        extension = fired_value(d)
        if extension is NOT_YET:
            return d.addCallback(_avatar, number)
        return _avatar(extension, number)


def _avatar(extension: Any, number: str) -> tuple[Any, Any, Any]:
    """The ``requestAvatar`` answer for the store's ``extension`` of ``number``."""
    if extension is None:  # deleted between check and login
        raise UnauthorizedLogin(f"extension {number} vanished")
    return (IExtensionAvatar, extension, _logout)
