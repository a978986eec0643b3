"""CDR search for the admin API: the CDR store plus number filters (layer 3).

:class:`SearchableCDRStore` is a :class:`~pbxd.store.cdr.SQLiteCDRStore`
(same table, same ``write``) whose :meth:`~SearchableCDRStore.query` also
filters on the calling (``source``) and called (``destination``) numbers and
the disposition. Build it instead of the plain store where the admin API needs
to search.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail

from pbxd.store.cdr import CDR_FIELDS, SQLiteCDRStore, _row_record

__all__ = ["SearchableCDRStore"]

_COLUMNS = ", ".join(f'"{name}"' for name in CDR_FIELDS)


class SearchableCDRStore(SQLiteCDRStore):
    """SQLiteCDRStore with number and disposition filters on :meth:`query`."""

    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        after_cursor: str | None = None,
        *,
        source: str | None = None,
        destination: str | None = None,
        disposition: str | None = None,
    ) -> Deferred:
        """Fire with ``(records, next_cursor)`` like the base query: start in
        [since, until), exact ``source``/``destination``/``disposition`` when
        given, oldest first, at most ``limit`` (1-1000). A bad cursor fails
        with ValueError."""
        limit = max(1, min(int(limit), 1000))
        clauses: list[str] = []
        args: list[Any] = []
        for clause, value in (
            ("start >= ?", since),
            ("start < ?", until),
            ("source = ?", source),
            ("destination = ?", destination),
            ("disposition = ?", disposition),
        ):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        if after_cursor is not None:
            try:
                args.append(int(after_cursor))
            except ValueError:
                return fail(ValueError(f"bad cursor {after_cursor!r}"))
            clauses.append("id > ?")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT id, {_COLUMNS}, extra FROM cdr {where} ORDER BY id LIMIT ?"
        args.append(limit + 1)

        def select(txn: Any) -> tuple[list[dict[str, Any]], str | None]:
            txn.execute(sql, args)
            rows = txn.fetchall()
            records = [_row_record(row) for row in rows[:limit]]
            return records, (str(rows[limit - 1][0]) if len(rows) > limit else None)

        return self.database.run(select)
