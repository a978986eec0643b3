"""The audit trail of changes made through the admin API (layer 3).

Each entry says who (the API token's name) did what (an action such as
``ban.add``), to which target (``203.0.113.7``), when (epoch seconds from the
injected clock) and with which details (a JSON object; never secrets).
:meth:`SQLiteAuditStore.record` fires once the entry is committed, so the API
acknowledges a change only when its audit entry is durable.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbxd.store.db import Database

__all__ = ["SQLiteAuditStore", "AUDIT_FIELDS"]

AUDIT_FIELDS = ("id", "time", "who", "action", "target", "details")

MIGRATIONS = [
    [
        "CREATE TABLE audit ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " time REAL NOT NULL,"
        " who TEXT NOT NULL,"
        " action TEXT NOT NULL,"
        " target TEXT NOT NULL DEFAULT '',"
        " details TEXT NOT NULL DEFAULT '{}')",
        "CREATE INDEX audit_time ON audit (time)",
    ],
]


class SQLiteAuditStore:
    """Audit entries in the ``audit`` table. Call :meth:`prepare` once before use."""

    log = Logger()

    def __init__(self, database: Database, clock: Any) -> None:
        self.database = database
        self.clock = clock

    def prepare(self) -> Deferred:
        """Create or migrate the table; fires with the store itself."""
        d = self.database.migrate("audit", MIGRATIONS)
        d.addCallback(lambda _: self)
        return d

    def record(
        self, who: str, action: str, target: str = "", details: dict[str, Any] | None = None
    ) -> Deferred:
        """Append one entry; fires with its id once committed."""
        row = (self.clock.seconds(), who, action, target, json.dumps(details or {}, default=str))

        def insert(txn: Any) -> int:
            txn.execute(
                "INSERT INTO audit (time, who, action, target, details) VALUES (?, ?, ?, ?, ?)",
                row,
            )
            return txn.lastrowid

        return self.database.run(insert)

    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        who: str | None = None,
        action: str | None = None,
        limit: int = 100,
        after_cursor: str | None = None,
    ) -> Deferred:
        """Fire with ``(entries, next_cursor)``: entries with time in [since, until),
        oldest first, at most ``limit`` (1-1000); ``next_cursor`` (opaque) gives the
        next page and is None on the last one. A bad cursor fails with ValueError."""
        return self.database.page(
            "audit", ", ".join(AUDIT_FIELDS),
            (("time >= ?", since), ("time < ?", until), ("who = ?", who), ("action = ?", action)),
            limit, after_cursor, _entry)


def _entry(row: tuple) -> dict[str, Any]:
    entry = dict(zip(AUDIT_FIELDS, row, strict=True))
    entry["details"] = json.loads(entry["details"] or "{}")
    return entry
