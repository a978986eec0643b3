"""Opening the embedded database and keeping its schema current (layer 3).

The store URL comes from ``store.url`` in the configuration:

- ``sqlite:<absolute path>`` opens a :class:`twisted.enterprise.adbapi.ConnectionPool`
  over the standard :mod:`sqlite3` module with one connection (SQLite has one
  writer anyway), WAL journaling and ``synchronous=FULL`` so that a committed
  transaction survives a crash or power cut.
- ``postgresql://...`` is recognised but not supported yet: a
  :class:`~pbxd.errors.ConfigError` says so.

All database work runs in the pool's thread through ``runInteraction``; nothing
here blocks the reactor. The pool is injected into :class:`Database`, so tests
pass :class:`pbxd.store.testing.SynchronousConnectionPool` instead (it runs
interactions inline and returns already-fired Deferreds).

Schema: every component that owns tables (``location``, ``bans``, ``cdr``, and
later the API extensions or the voicemail index) brings an ordered list of
migration steps; :meth:`Database.migrate` applies the ones not yet recorded in
the ``schema_version`` table, each step in its own transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from pbxd.errors import ConfigError

#: A migration step: SQL statements (run in order) or a callable taking the
#: adbapi Transaction (a cursor proxy with ``execute``/``fetchall``...).
Migration = Sequence[str] | Callable[[Any], None]

#: Group commit of the location and CDR stores (:class:`CommitWindow`): the shortest
#: time, in seconds, from the start of one write transaction to the start of the next,
#: on the database :func:`open_database` opens (``store.commit_window`` in the
#: configuration). A write to a store idle that long starts at once (writes spaced more
#: than this apart never wait); under a steady load a transaction gathers the writes of
#: up to this long (at 400 REGISTER/s about eight per commit instead of one or two:
#: each commit costs an fsync and a thread round trip, ~300-500 us of CPU), and a 200
#: OK waits at most this much longer.
DEFAULT_COMMIT_DELAY = 0.02

_SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " component TEXT PRIMARY KEY,"
    " version INTEGER NOT NULL)"
)


def sqlite_path(url: str) -> str:
    """Return the file path of a ``sqlite:<path>`` URL, or raise ConfigError.

    ``sqlite::memory:`` gives ``':memory:'`` (useful in tests only: each
    connection sees its own database). ``sqlite:///abs/path`` is accepted too.
    """
    if url.startswith(("postgresql:", "postgres:")):
        raise ConfigError(
            "store.url",
            "PostgreSQL is not supported yet; use sqlite:<path> (the default)",
        )
    if not url.startswith("sqlite:"):
        raise ConfigError("store.url", f"unsupported store URL {url!r}; expected sqlite:<path>")
    path = url[len("sqlite:") :]
    if path.startswith("///"):
        path = path[2:]
    if not path:
        raise ConfigError("store.url", "sqlite: URL has no file path")
    return path


def configure_connection(connection: sqlite3.Connection) -> None:
    """Per-connection settings: WAL journal, full fsync on commit, foreign keys.

    Used as the pool's ``cp_openfun`` and by the synchronous test pool.
    """
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=5000")


def make_pool(url: str, reactor: Any = None) -> Any:
    """Build the adbapi ConnectionPool for ``url`` (a ``sqlite:`` URL).

    The reactor is only needed by the pool to start and stop its thread; pass
    it explicitly from the composition root. Raises ConfigError for URLs that
    are not supported.
    """
    path = sqlite_path(url)
    from twisted.enterprise import adbapi

    kwargs: dict[str, Any] = {
        "check_same_thread": False,
        "cp_min": 1,
        "cp_max": 1,
        "cp_openfun": configure_connection,
    }
    if reactor is not None:
        kwargs["cp_reactor"] = reactor
    return adbapi.ConnectionPool("sqlite3", path, **kwargs)


class CommitWindow:
    """When the next group commit of a store may start (the stores that group writes:
    location bindings, CDRs).

    ``run(flush)`` calls ``flush()`` at once when no group started within the last
    ``delay`` seconds (an idle store writes immediately), otherwise when ``delay`` has
    passed since the previous group started, so that under a steady load one
    transaction gathers the writes of a window: at most ``1/delay`` commits a second,
    each write waiting at most ``delay`` longer than it would without. ``delay`` 0
    always flushes at once. While a flush is scheduled, :attr:`timer` is set.
    """

    def __init__(self, clock: Any, delay: float) -> None:
        self.clock = clock
        self.delay = delay or 0.0
        self.timer: Any = None
        self._started: float | None = None

    def run(self, flush: Callable[[], Any]) -> None:
        """Call ``flush()`` now or once the window allows."""
        delay = self.delay
        if delay > 0.0 and self._started is not None:
            wait = self._started + delay - self.clock.seconds()
            if wait > 0.0:  # (never more than delay: the wall clock may have gone back)
                self.timer = self.clock.callLater(min(wait, delay), self._fire, flush)
                return
        self._fire(flush)

    def now(self, flush: Callable[[], Any]) -> None:
        """Cancel a scheduled flush and run it at once (e.g. before a read)."""
        if self.timer is not None:
            self.timer.cancel()
            self._fire(flush)

    def _fire(self, flush: Callable[[], Any]) -> None:
        self.timer = None
        if self.delay > 0.0:
            self._started = self.clock.seconds()
        flush()


class Database:
    """The shared database handle: one pool, schema versions per component.

    ``pool`` is anything with adbapi's ``runInteraction(fn, *args, **kw) ->
    Deferred`` and ``close()``. ``commit_delay`` is read by the stores that group
    their writes (see :data:`DEFAULT_COMMIT_DELAY`); 0 starts each group at once.
    """

    log = Logger()

    def __init__(self, pool: Any, *, commit_delay: float = 0.0) -> None:
        self.pool = pool
        self.commit_delay = commit_delay

    def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Deferred:
        """Run ``fn(transaction, *args, **kw)`` in one database transaction."""
        return self.pool.runInteraction(fn, *args, **kw)

    def page(
        self,
        table: str,
        columns: str,
        filters: Sequence[tuple[str, Any]],
        limit: int,
        after_cursor: str | None,
        record: Callable[[tuple], dict[str, Any]],
    ) -> Deferred:
        """One page of ``table`` in ``id`` order (keyset paging).

        ``columns`` is the SELECT list (``id`` first); ``filters`` are
        ``(clause with one ?, value)`` pairs, skipped when the value is None;
        ``record`` turns a row into a dict. Fires with ``(records, next_cursor)``:
        at most ``limit`` (clamped to 1-1000) records, and an opaque cursor for the
        next page (None on the last one). A bad cursor fails with ValueError.
        """
        limit = max(1, min(int(limit), 1000))
        clauses = [clause for clause, value in filters if value is not None]
        args: list[Any] = [value for _, value in filters if value is not None]
        if after_cursor is not None:
            try:
                args.append(int(after_cursor))
            except ValueError:
                return fail(ValueError(f"bad cursor {after_cursor!r}"))
            clauses.append("id > ?")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {columns} FROM {table} {where} ORDER BY id LIMIT ?"
        args.append(limit + 1)

        def select(txn: Any) -> tuple[list[dict[str, Any]], str | None]:
            txn.execute(sql, args)
            rows = txn.fetchall()
            records = [record(row) for row in rows[:limit]]
            return records, (str(rows[limit - 1][0]) if len(rows) > limit else None)

        return self.pool.runInteraction(select)

    def migrate(self, component: str, migrations: Sequence[Migration]) -> Deferred:
        """Apply the steps of ``migrations`` that ``component`` has not had yet.

        Step ``i`` (0-based) brings the component to version ``i + 1``. Fires
        with the resulting version.
        """
        return self.pool.runInteraction(self._migrate, component, list(migrations))

    def _migrate(self, txn: Any, component: str, migrations: list[Migration]) -> int:
        txn.execute(_SCHEMA_VERSION_TABLE)
        txn.execute("SELECT version FROM schema_version WHERE component = ?", (component,))
        row = txn.fetchone()
        current = row[0] if row else 0
        if current > len(migrations):
            raise RuntimeError(
                f"database schema of {component!r} is version {current}, newer than "
                f"this pbxd knows ({len(migrations)}): refusing to downgrade"
            )
        for version in range(current + 1, len(migrations) + 1):
            step = migrations[version - 1]
            if callable(step):
                step(txn)
            else:
                for statement in step:
                    txn.execute(statement)
            self.log.info(
                "schema {component} migrated to version {version}",
                component=component,
                version=version,
            )
        if len(migrations) != current:
            txn.execute(
                "INSERT OR REPLACE INTO schema_version (component, version) VALUES (?, ?)",
                (component, len(migrations)),
            )
        return len(migrations)

    def version(self, component: str) -> Deferred:
        """Deferred firing with the schema version of ``component`` (0 if none)."""

        def query(txn: Any) -> int:
            txn.execute(_SCHEMA_VERSION_TABLE)
            txn.execute("SELECT version FROM schema_version WHERE component = ?", (component,))
            row = txn.fetchone()
            return row[0] if row else 0

        return self.pool.runInteraction(query)

    def close(self) -> None:
        """Close the pool (stops its thread for a real adbapi pool)."""
        self.pool.close()


def open_database(
    url: str, reactor: Any = None, *, commit_delay: float = DEFAULT_COMMIT_DELAY
) -> Database:
    """Open the database named by ``store.url``; raises ConfigError if unsupported."""
    return Database(make_pool(url, reactor), commit_delay=commit_delay)
