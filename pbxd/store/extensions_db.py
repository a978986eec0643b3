"""Extensions made through the admin API, layered under the configuration's (layer 3).

:class:`SQLiteExtensionStore` is the :class:`~pbxd.interfaces.IExtensionStore`
the SIP authenticator should be given: it answers from the configuration file
first (those extensions are read-only here) and then from its
``api_extensions`` table. The table is loaded into memory by :meth:`prepare`
and written through, so lookups on the SIP hot path never wait for the
database; a change is in memory only once it is committed.

Entries are checked with the same rules as the configuration file. A
plaintext password is never stored: it is turned into the MD5 and SHA-256
HA1 of ``number:realm:password`` (so a realm change needs new passwords).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from pbxd.configschema import Extension
from pbxd.configtables import NAME, _extension
from pbxd.errors import ConfigError, PBXError
from pbxd.interfaces import IExtensionStore
from pbxd.sip.digest import compute_ha1
from pbxd.store.db import Database

__all__ = [
    "SQLiteExtensionStore",
    "ExtensionError",
    "ExtensionExists",
    "ExtensionNotFound",
    "ExtensionReadOnly",
    "InvalidExtension",
    "FIELDS",
]

#: What may be given when creating or updating an extension.
FIELDS = ("name", "password", "ha1", "ha1_sha256", "context", "max_contacts", "voicemail_pin")
_CREDENTIALS = ("password", "ha1", "ha1_sha256")
_COLUMNS = ("number", "name", "ha1", "ha1_sha256", "context", "max_contacts", "voicemail_pin")

MIGRATIONS = [
    [
        "CREATE TABLE api_extensions ("
        " number TEXT PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " ha1 TEXT,"
        " ha1_sha256 TEXT,"
        " context TEXT NOT NULL,"
        " max_contacts INTEGER,"
        " voicemail_pin TEXT)",
    ],
]


class ExtensionError(PBXError):
    """A change to an extension was refused."""


class ExtensionExists(ExtensionError):
    """The number is already taken."""


class ExtensionNotFound(ExtensionError):
    """No such extension."""


class ExtensionReadOnly(ExtensionError):
    """The extension comes from the configuration file."""


class InvalidExtension(ExtensionError):
    """A field is invalid; ``field`` names it (``number``, ``password`` ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@implementer(IExtensionStore)
class SQLiteExtensionStore:
    """Config extensions (read-only) over API extensions (in ``api_extensions``).

    :param config_store: the ConfigExtensionStore (``extensions`` mapping, ``replace``).
    :param realm: the digest realm HA1s are computed for.
    :param contexts: the dialplan context names an extension may use (None: any);
        :meth:`set_contexts` changes them on reload.
    """

    log = Logger()

    def __init__(
        self,
        database: Database,
        config_store: Any,
        *,
        realm: str,
        contexts: Iterable[str] | None = None,
    ) -> None:
        self.database = database
        self.config_store = config_store
        self.realm = realm
        self.contexts = frozenset(contexts) if contexts is not None else None
        self._api: dict[str, Extension] = {}

    def prepare(self) -> Deferred:
        """Create or migrate the table and load it; fires with the store itself."""
        d = self.database.migrate("api_extensions", MIGRATIONS)
        d.addCallback(lambda _: self.database.run(self._load))
        d.addCallback(self._loaded)
        return d

    @staticmethod
    def _load(txn: Any) -> list[tuple]:
        txn.execute(f"SELECT {', '.join(_COLUMNS)} FROM api_extensions")
        return txn.fetchall()

    def _loaded(self, rows: list[tuple]) -> SQLiteExtensionStore:
        self._api = {row[0]: Extension(**dict(zip(_COLUMNS, row, strict=True))) for row in rows}
        self.log.info("loaded {count} API extensions", count=len(self._api))
        return self

    def set_contexts(self, contexts: Iterable[str] | None) -> None:
        """The dialplan contexts allowed from now on (configuration reload)."""
        self.contexts = frozenset(contexts) if contexts is not None else None

    # -- reading ----------------------------------------------------------------

    def _config(self) -> Mapping[str, Extension]:
        return self.config_store.extensions

    def getExtension(self, number: str) -> Deferred:
        """Fire with the Extension for ``number`` (config first) or None."""
        return succeed(self.lookup(number))

    def lookup(self, number: str) -> Extension | None:
        """The Extension for ``number`` now (config first), or None."""
        found = self._config().get(number)
        return found if found is not None else self._api.get(number)

    def source(self, number: str) -> str | None:
        """``'config'``, ``'api'`` or None for an unknown number."""
        if number in self._config():
            return "config"
        return "api" if number in self._api else None

    def list(self) -> Deferred:
        """Fire with ``[(Extension, source)]`` of every extension, by number."""
        merged = {n: (e, "api") for n, e in self._api.items()}
        merged.update({n: (e, "config") for n, e in self._config().items()})
        return succeed([merged[n] for n in sorted(merged)])

    # -- changing ---------------------------------------------------------------

    def create(self, number: str, fields: Mapping[str, Any]) -> Deferred:
        """Add an extension; fires with it once committed. Fails with
        InvalidExtension, ExtensionExists."""
        try:
            number = self._number(number)
            if self.source(number) is not None:
                raise ExtensionExists(f"extension {number} already exists")
            extension = self._build(number, dict(fields))
        except ExtensionError as e:
            return fail(e)
        return self._write(extension, "INSERT")

    def update(self, number: str, fields: Mapping[str, Any]) -> Deferred:
        """Change the given fields (a credential replaces all credentials); fires
        with the new Extension. Fails with ExtensionNotFound, ExtensionReadOnly,
        InvalidExtension."""
        try:
            current = self._writable(number)
            merged = {name: getattr(current, name) for name in FIELDS if name != "password"}
            if any(name in fields for name in _CREDENTIALS):
                for name in _CREDENTIALS:
                    merged.pop(name, None)
            merged.update(fields)
            merged = {k: v for k, v in merged.items() if v is not None}
            extension = self._build(number, merged)
        except ExtensionError as e:
            return fail(e)
        return self._write(extension, "REPLACE")

    def delete(self, number: str) -> Deferred:
        """Remove an API extension; fires with the removed Extension."""
        try:
            current = self._writable(number)
        except ExtensionError as e:
            return fail(e)

        def delete(txn: Any) -> None:
            txn.execute("DELETE FROM api_extensions WHERE number = ?", (number,))

        def done(_: Any) -> Extension:
            self._api.pop(number, None)
            return current

        return self.database.run(delete).addCallback(done)

    def _writable(self, number: str) -> Extension:
        source = self.source(number)
        if source is None:
            raise ExtensionNotFound(f"extension {number} not found")
        if source == "config":
            raise ExtensionReadOnly(
                f"extension {number} is defined in the configuration file and is read-only"
            )
        return self._api[number]

    @staticmethod
    def _number(number: Any) -> str:
        if not isinstance(number, str) or not NAME.fullmatch(number):
            raise InvalidExtension("number", "must be letters, digits, _ . - only")
        return number

    def _build(self, number: str, fields: dict[str, Any]) -> Extension:
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise InvalidExtension(unknown[0], "is not a known field")
        try:
            extension = _extension(number, fields, "extension")
        except ConfigError as e:
            field = e.key.removeprefix("extension").lstrip(".") or "password"
            raise InvalidExtension(field, e.message) from None
        if self.contexts is not None and extension.context not in self.contexts:
            raise InvalidExtension("context", f"unknown dialplan context {extension.context!r}")
        if extension.password is not None:
            password = extension.password
            extension = replace(
                extension,
                password=None,
                ha1=compute_ha1("MD5", number, self.realm, password),
                ha1_sha256=compute_ha1("SHA-256", number, self.realm, password),
            )
        return extension

    def _write(self, extension: Extension, verb: str) -> Deferred:
        """``verb`` INSERT (fails with ExtensionExists on a race) or REPLACE."""
        values = [getattr(extension, name) for name in _COLUMNS]
        placeholders = ", ".join("?" for _ in _COLUMNS)
        statement = "INSERT" if verb == "INSERT" else "INSERT OR REPLACE"

        def write(txn: Any) -> None:
            txn.execute(
                f"{statement} INTO api_extensions ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                values,
            )

        def done(_: Any) -> Extension:
            self._api[extension.number] = extension
            return extension

        def taken(failure: Any) -> None:
            failure.trap(sqlite3.IntegrityError)
            raise ExtensionExists(f"extension {extension.number} already exists")

        return self.database.run(write).addCallbacks(done, taken)
