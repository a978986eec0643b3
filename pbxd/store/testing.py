"""A synchronous stand-in for adbapi's ConnectionPool, for unit tests.

:class:`SynchronousConnectionPool` runs each interaction inline on a real
:mod:`sqlite3` connection (so SQL is really executed, e.g. on a file in
pytest's ``tmp_path``) and returns a Deferred that has already fired, like
adbapi would once its thread finished. Commit/rollback follow adbapi: commit
after the interaction returns, rollback if it raises.

Failures can be injected with :meth:`SynchronousConnectionPool.fail_next` to
test what a caller does when the database refuses a write, and
:meth:`SynchronousConnectionPool.hold` keeps the next interactions pending
until :meth:`release`, to test what happens while a write is in flight.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed

from pbxd.store.db import Database, configure_connection


class _Transaction:
    """Like adbapi.Transaction: a cursor proxy with the connection behind it."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._cursor = connection.cursor()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def close(self) -> None:
        self._cursor.close()


class SynchronousConnectionPool:
    """Runs ``runInteraction`` inline on one sqlite3 connection.

    ``path`` is a file path or ``':memory:'``. Several pools over the same file
    behave like separate processes sharing the database (used to test restarts).
    """

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self.connection = sqlite3.connect(path)
        if path != ":memory:":
            configure_connection(self.connection)
        self.closed = False
        self.interactions = 0
        self._failures: list[BaseException] = []
        self._held: list[tuple[Deferred, Callable[..., Any], tuple, dict]] | None = None

    def fail_next(self, error: BaseException | None = None) -> None:
        """Make the next interaction fail with ``error`` (default sqlite3.OperationalError)
        without touching the database."""
        self._failures.append(error or sqlite3.OperationalError("disk I/O error (injected)"))

    def hold(self) -> None:
        """Queue interactions instead of running them until :meth:`release`."""
        if self._held is None:
            self._held = []

    def release(self) -> None:
        """Run the held interactions in order and fire their Deferreds."""
        held, self._held = self._held or [], None
        for d, fn, args, kw in held:
            self._execute(fn, args, kw).chainDeferred(d)

    def runInteraction(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Deferred:
        """Run ``fn(transaction, *args, **kw)`` in a transaction; already-fired Deferred."""
        if self.closed:
            return fail(RuntimeError("pool is closed"))
        if self._held is not None:
            d: Deferred = Deferred()
            self._held.append((d, fn, args, kw))
            return d
        return self._execute(fn, args, kw)

    def _execute(self, fn: Callable[..., Any], args: tuple, kw: dict) -> Deferred:
        self.interactions += 1
        if self._failures:
            return fail(self._failures.pop(0))
        txn = _Transaction(self.connection)
        try:
            result = fn(txn, *args, **kw)
            txn.close()
            self.connection.commit()
        except BaseException:
            self.connection.rollback()
            return fail()
        return succeed(result)

    def runQuery(self, sql: str, *args: Any) -> Deferred:
        """Execute a query and fire with all rows (adbapi's runQuery)."""

        def query(txn: Any) -> list:
            txn.execute(sql, *args)
            return txn.fetchall()

        return self.runInteraction(query)

    def runOperation(self, sql: str, *args: Any) -> Deferred:
        """Execute a statement and fire with None (adbapi's runOperation)."""

        def operation(txn: Any) -> None:
            txn.execute(sql, *args)

        return self.runInteraction(operation)

    def close(self) -> None:
        """Close the connection."""
        if not self.closed:
            self.closed = True
            self.connection.close()


def memory_database() -> Database:
    """A :class:`Database` over a private in-memory SQLite database."""
    return Database(SynchronousConnectionPool(":memory:"))
