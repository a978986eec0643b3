"""Where extensions are found (:class:`~pbxd.interfaces.IExtensionStore`).

:class:`ConfigExtensionStore` serves the extensions of the configuration file.
:class:`LayeredExtensionStore` asks several stores in order, so extensions made
through the admin API (a SQLite store, later) can be layered under the
read-only ones of the file: ``LayeredExtensionStore(config_store, api_store)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from pbxd.interfaces import IExtensionStore


@implementer(IExtensionStore)
class ConfigExtensionStore:
    """The ``extensions:`` of the configuration (number -> Extension).

    :meth:`replace` swaps the mapping on a configuration reload.
    """

    def __init__(self, extensions: Mapping[str, Any]) -> None:
        self.extensions: Mapping[str, Any] = extensions

    def getExtension(self, number: str) -> Deferred:
        """Fire with the Extension for ``number`` or None."""
        return succeed(self.extensions.get(number))

    def replace(self, extensions: Mapping[str, Any]) -> None:
        """Serve ``extensions`` from now on (configuration reload)."""
        self.extensions = extensions

    def numbers(self) -> list[str]:
        """The extension numbers this store serves, sorted."""
        return sorted(self.extensions)


@implementer(IExtensionStore)
class LayeredExtensionStore:
    """Asks each store in turn; the first that knows the number wins."""

    def __init__(self, *stores: Any) -> None:
        self.stores = list(stores)

    def getExtension(self, number: str) -> Deferred:
        """Fire with the first store's Extension for ``number``, or None."""
        stores = iter(self.stores)

        def next_store(found: Any) -> Any:
            if found is not None:
                return found
            store = next(stores, None)
            if store is None:
                return None
            return store.getExtension(number).addCallback(next_store)

        return succeed(None).addCallback(next_store)
