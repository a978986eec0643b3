"""SQLite copy of the registrar's bindings (:class:`~pbxd.interfaces.ILocationStore`).

The store knows bindings only as records: plain dicts with the keys of
:data:`RECORD_FIELDS` (what :meth:`pbxd.sip.location.Binding.to_record` makes and
:meth:`~pbxd.sip.location.Binding.from_record` reads). The live transport of a
TCP/TLS binding and its reachability are not stored: a connection does not
survive a restart.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pbxd.interfaces import ILocationStore
from pbxd.store.db import CommitWindow, Database

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
    if isinstance(binding, dict):
        return binding
    to_record = getattr(binding, "to_record", None)  # a Binding (before the ABC test below)
    if to_record is not None:
        return to_record()
    if isinstance(binding, Mapping):
        return dict(binding)
    return binding.to_record()  # (AttributeError: neither a record nor a binding)


_FIELDS_OF = operator.itemgetter(*RECORD_FIELDS)
assert RECORD_FIELDS[12:] == ("path", "nat", "registered_at")  # _row_values relies on it


def _row_values(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """The row of ``record`` in :data:`RECORD_FIELDS` order (path as JSON, nat as 0/1);
    a missing field is NULL."""
    try:
        row = _FIELDS_OF(record)  # every field there (what Binding.to_record makes)
    except KeyError:
        get = record.get
        row = tuple(get(name) for name in RECORD_FIELDS)
    path = row[12]
    return (
        *row[:12],
        json.dumps(list(path)) if path else "[]",
        1 if row[13] else 0,
        row[14],
    )


#: insert, or update in place (an upsert, SQLite >= 3.24): the same row as INSERT OR
#: REPLACE gives, without deleting and re-inserting the (aor, contact) key's index entry
#: (a refresh costs about a fifth less)
_INSERT = (
    f"INSERT INTO location_bindings ({', '.join(RECORD_FIELDS)})"
    f" VALUES ({', '.join('?' for _ in RECORD_FIELDS)})"
    " ON CONFLICT (aor, contact) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in RECORD_FIELDS[2:])
)
_DELETE = "DELETE FROM location_bindings WHERE aor = ? AND contact = ?"

#: one write: (aor, rows to insert or replace, contacts to delete)
_Op = tuple[str, list[tuple[Any, ...]], tuple[str, ...]]


@implementer(ILocationStore)
class SQLiteLocationStore:
    """Bindings in the ``location_bindings`` table, keyed by (aor, contact).

    ``clock`` decides what is expired in :meth:`load`. Call :meth:`prepare`
    once (it creates or migrates the table) before using the store.
    """

    log = Logger()

    def __init__(
        self, database: Database, clock: Any, *, commit_delay: float | None = None
    ) -> None:
        self.database = database
        self.clock = clock
        #: shortest time (s) from the start of one write transaction to the start of the
        #: next (see the group commit below); None takes ``database.commit_delay`` (0 if unset)
        self.commit_delay: float = (
            getattr(database, "commit_delay", 0.0) if commit_delay is None else commit_delay
        ) or 0.0
        self._ops: list[_Op] = []
        self._waiting: list[Deferred] = []
        self._writing = False
        self._window = CommitWindow(clock, self.commit_delay)

    def prepare(self) -> Deferred:
        """Create or migrate the table; fires with the store itself."""
        d = self.database.migrate("location", MIGRATIONS)
        d.addCallback(lambda _: self)
        return d

    def load(self) -> Deferred:
        """Fire with the stored, unexpired binding records; expired rows are deleted."""
        self._window.now(self._flush)  # writes made before the load are seen by it
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
        row = _row_values(_record_of(binding))
        return self._write((row[0], [row], ()))

    def remove(self, aor: str, contact: str) -> Deferred:
        """Delete one binding (no error if it is not there)."""
        return self._write((aor, [], (contact,)))

    def replace(self, aor: str, save: list[Any], remove: list[str]) -> Deferred:
        """Save ``save`` bindings and delete the ``remove`` contacts of ``aor`` in one
        transaction (all or nothing): what one REGISTER changes."""
        return self._write((aor, [_row_values(_record_of(b)) for b in save], tuple(remove)))

    # -- group commit ---------------------------------------------------------------
    #
    # Writes made while a database transaction is in flight wait for it and then go
    # together in the next one: under load one commit (one fsync, one thread hop)
    # serves many REGISTERs; when idle a write starts at once. Each Deferred fires only
    # once the transaction holding its change has committed, writes reach the database
    # in the order they were made, and a transaction that fails fails every write in it
    # (each REGISTER's change stays all or nothing; memory is left untouched for all).
    #
    # With ``commit_delay`` > 0 a transaction also starts no sooner than commit_delay
    # after the previous one started: a write to a store idle for that long still
    # starts at once, but under a steady load the writes of up to commit_delay gather
    # in one transaction (at most 1/commit_delay commits a second; each write waits
    # at most commit_delay longer than it would without).

    def _write(self, op: _Op) -> Deferred:
        d: Deferred = Deferred()
        self._ops.append(op)
        self._waiting.append(d)
        if not self._writing and self._window.timer is None:
            self._window.run(self._flush)
        return d

    def _flush(self) -> None:
        ops, waiting = self._ops, self._waiting
        self._ops, self._waiting = [], []
        self._writing = True
        done = self.database.run(self._replace_batch, ops)
        done.addBoth(self._flushed, waiting)

    def _flushed(self, result: Any, waiting: list[Deferred]) -> None:
        self._writing = False
        if isinstance(result, Failure):
            for d in waiting:
                d.errback(result)
        else:
            for d in waiting:
                d.callback(None)
        if self._ops and not self._writing and self._window.timer is None:
            self._window.run(self._flush)

    @staticmethod
    def _replace_batch(txn: Any, ops: list[_Op]) -> None:
        """The worker side: apply ``ops`` (aor, rows to save, contacts to delete), in order."""
        if len(ops) == 1:
            aor, rows, remove = ops[0]
            if remove:
                txn.executemany(_DELETE, [(aor, contact) for contact in remove])
            if rows:
                txn.executemany(_INSERT, rows)
            return
        # several REGISTERs: only the last change of each (aor, contact) matters
        final: dict[tuple[str, str], tuple[Any, ...] | None] = {}
        for aor, rows, remove in ops:
            for contact in remove:
                final[(aor, contact)] = None
            for row in rows:
                final[(row[0], row[1])] = row
        deletes = [key for key, row in final.items() if row is None]
        if deletes:
            txn.executemany(_DELETE, deletes)
        txn.executemany(_INSERT, [row for row in final.values() if row is not None])
