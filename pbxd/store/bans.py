"""SQLite copy of IP bans (:class:`~pbxd.interfaces.IBanStore`).

The guard that decides bans keeps them in memory; this store only makes them
survive a restart. Expired bans are dropped (and deleted) when loaded.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from pbxd.interfaces import IBanStore
from pbxd.store.db import Database

MIGRATIONS = [
    [
        "CREATE TABLE bans ("
        " address TEXT PRIMARY KEY,"
        " until REAL NOT NULL,"
        " reason TEXT NOT NULL DEFAULT '')",
    ],
]


@implementer(IBanStore)
class SQLiteBanStore:
    """Bans in the ``bans`` table, one row per address.

    ``clock`` decides what is expired in :meth:`load`. Call :meth:`prepare`
    once before use.
    """

    log = Logger()

    def __init__(self, database: Database, clock: Any) -> None:
        self.database = database
        self.clock = clock

    def prepare(self) -> Deferred:
        """Create or migrate the table; fires with the store itself."""
        d = self.database.migrate("bans", MIGRATIONS)
        d.addCallback(lambda _: self)
        return d

    def load(self) -> Deferred:
        """Fire with ``[(address, until_epoch, reason)]`` of the bans still in force."""
        return self.database.run(self._load, self.clock.seconds())

    @staticmethod
    def _load(txn: Any, now: float) -> list[tuple[str, float, str]]:
        txn.execute("DELETE FROM bans WHERE until <= ?", (now,))
        txn.execute("SELECT address, until, reason FROM bans ORDER BY until")
        return [(row[0], float(row[1]), row[2]) for row in txn.fetchall()]

    def save(self, address: str, until: float, reason: str) -> Deferred:
        """Insert or extend the ban of ``address``."""

        def save(txn: Any) -> None:
            txn.execute(
                "INSERT OR REPLACE INTO bans (address, until, reason) VALUES (?, ?, ?)",
                (address, until, reason),
            )

        return self.database.run(save)

    def remove(self, address: str) -> Deferred:
        """Lift the ban of ``address`` (no error if there is none)."""

        def remove(txn: Any) -> None:
            txn.execute("DELETE FROM bans WHERE address = ?", (address,))

        return self.database.run(remove)
