"""SQLite copy of the registrar's bindings (:class:`~pbxd.interfaces.ILocationStore`).

The store knows bindings only as records: plain dicts with the keys of
:data:`RECORD_FIELDS` (what :meth:`pbxd.sip.location.Binding.to_record` makes and
:meth:`~pbxd.sip.location.Binding.from_record` reads). The live transport of a
TCP/TLS binding and its reachability are not stored: a connection does not
survive a restart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pbxd.interfaces import ILocationStore
from pbxd.store.db import Database

RECORD_FIELDS = (
    "aor",
    "contact",
    "expires_at",
    "q",
    "call_id",
    "cseq",
    "instance",
    "reg_id",
    "user_agent",
    "transport",
    "source_host",
    "source_port",
    "path",
    "nat",
    "registered_at",
)

MIGRATIONS = [
    [
        "CREATE TABLE location_bindings ("
        " aor TEXT NOT NULL,"
        " contact TEXT NOT NULL,"
        " expires_at REAL NOT NULL,"
        " q REAL,"
        " call_id TEXT NOT NULL,"
        " cseq INTEGER NOT NULL,"
        " instance TEXT,"
        " reg_id INTEGER,"
        " user_agent TEXT,"
        " transport TEXT NOT NULL,"
        " source_host TEXT,"
        " source_port INTEGER,"
        " path TEXT NOT NULL DEFAULT '[]',"
        " nat INTEGER NOT NULL DEFAULT 0,"
        " registered_at REAL NOT NULL,"
        " PRIMARY KEY (aor, contact))",
        "CREATE INDEX location_bindings_expiry ON location_bindings (expires_at)",
    ],
]


def _record_of(binding: Any) -> dict[str, Any]:
    if isinstance(binding, Mapping):
        return dict(binding)
    return binding.to_record()


def _row_values(record: Mapping[str, Any]) -> list[Any]:
    values = []
    for name in RECORD_FIELDS:
        value = record.get(name)
        if name == "path":
            value = json.dumps(list(value or ()))
        elif name == "nat":
            value = int(bool(value))
        values.append(value)
    return values


@implementer(ILocationStore)
class SQLiteLocationStore:
    """Bindings in the ``location_bindings`` table, keyed by (aor, contact).

    ``clock`` decides what is expired in :meth:`load`. Call :meth:`prepare`
    once (it creates or migrates the table) before using the store.
    """

    log = Logger()

    def __init__(self, database: Database, clock: Any) -> None:
        self.database = database
        self.clock = clock
        self._queued: list[tuple[str, list[dict[str, Any]], list[str], Deferred]] = []
        self._writing = False

    def prepare(self) -> Deferred:
        """Create or migrate the table; fires with the store itself."""
        d = self.database.migrate("location", MIGRATIONS)
        d.addCallback(lambda _: self)
        return d

    def load(self) -> Deferred:
        """Fire with the stored, unexpired binding records; expired rows are deleted."""
        return self.database.run(self._load, self.clock.seconds())

    def _load(self, txn: Any, now: float) -> list[dict[str, Any]]:
        txn.execute("DELETE FROM location_bindings WHERE expires_at <= ?", (now,))
        dropped = txn.rowcount
        if dropped and dropped > 0:
            self.log.info("dropped {count} expired stored bindings", count=dropped)
        columns = ", ".join(RECORD_FIELDS)
        txn.execute(f"SELECT {columns} FROM location_bindings ORDER BY aor, registered_at")
        records = []
        for row in txn.fetchall():
            record = dict(zip(RECORD_FIELDS, row, strict=True))
            record["path"] = tuple(json.loads(record["path"] or "[]"))
            record["nat"] = bool(record["nat"])
            records.append(record)
        return records

    def save(self, binding: Any) -> Deferred:
        """Insert or replace one binding (a Binding or a record dict)."""
        record = _record_of(binding)
        return self._write(record["aor"], [record], [])

    def remove(self, aor: str, contact: str) -> Deferred:
        """Delete one binding (no error if it is not there)."""
        return self._write(aor, [], [contact])

    def replace(self, aor: str, save: list[Any], remove: list[str]) -> Deferred:
        """Save ``save`` bindings and delete the ``remove`` contacts of ``aor`` in one
        transaction (all or nothing): what one REGISTER changes."""
        return self._write(aor, [_record_of(b) for b in save], list(remove))

    # -- group commit ---------------------------------------------------------------
    #
    # Writes made while a database transaction is in flight wait for it and then go
    # together in the next one: under load one commit (one fsync, one thread hop)
    # serves many REGISTERs; when idle a write starts at once. Each Deferred fires only
    # once the transaction holding its change has committed, writes reach the database
    # in the order they were made, and a transaction that fails fails every write in it
    # (each REGISTER's change stays all or nothing; memory is left untouched for all).

    def _write(self, aor: str, records: list[dict[str, Any]], remove: list[str]) -> Deferred:
        d: Deferred = Deferred()
        self._queued.append((aor, records, remove, d))
        if not self._writing:
            self._flush()
        return d

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        self._writing = True
        ops = [(aor, records, remove) for aor, records, remove, _ in batch]
        done = self.database.run(self._replace_batch, ops)
        done.addBoth(self._flushed, [d for *_, d in batch])

    def _flushed(self, result: Any, waiting: list[Deferred]) -> None:
        self._writing = False
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)
        if self._queued and not self._writing:
            self._flush()

    def _replace_batch(
        self, txn: Any, ops: list[tuple[str, list[dict[str, Any]], list[str]]]
    ) -> None:
        for aor, records, remove in ops:
            self._replace(txn, aor, records, remove)

    def _replace(
        self, txn: Any, aor: str, records: list[dict[str, Any]], remove: list[str]
    ) -> None:
        for contact in remove:
            txn.execute(
                "DELETE FROM location_bindings WHERE aor = ? AND contact = ?", (aor, contact)
            )
        columns = ", ".join(RECORD_FIELDS)
        placeholders = ", ".join("?" for _ in RECORD_FIELDS)
        for record in records:
            txn.execute(
                f"INSERT OR REPLACE INTO location_bindings ({columns}) VALUES ({placeholders})",
                _row_values(record),
            )
