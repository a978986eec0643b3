"""SQLite call detail records (:class:`~pbxd.interfaces.ICDRStore`).

A CDR is a dict or a dataclass with the keys of :data:`CDR_FIELDS`; keys the
table has no column for are kept in a JSON ``extra`` column and come back from
:meth:`SQLiteCDRStore.query` merged into the record. ``codecs`` (a list) and
``media`` (counters: packets, bytes, lost, jitter ... per leg) are JSON.

Times are epoch floats; ``answer`` is None for unanswered calls; ``duration``
is end - start and ``billsec`` end - answer (computed when not given).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from zope.interface import implementer

from pbxd.interfaces import ICDRStore
from pbxd.store.db import Database

CDR_FIELDS = (
    "call_id",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "source",
    "destination",
    "disposition",
    "hangup_cause",
    "hangup_side",
    "codecs",
    "media",
)
_JSON_FIELDS = ("codecs", "media")

MIGRATIONS = [
    [
        "CREATE TABLE cdr ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " call_id TEXT NOT NULL,"
        " start REAL NOT NULL,"
        " answer REAL,"
        ' "end" REAL NOT NULL,'
        " duration REAL NOT NULL,"
        " billsec REAL NOT NULL,"
        " source TEXT,"
        " destination TEXT,"
        " disposition TEXT NOT NULL,"
        " hangup_cause TEXT,"
        " hangup_side TEXT,"
        " codecs TEXT NOT NULL DEFAULT '[]',"
        " media TEXT NOT NULL DEFAULT '{}',"
        " extra TEXT NOT NULL DEFAULT '{}')",
        "CREATE INDEX cdr_start ON cdr (start)",
        "CREATE INDEX cdr_call_id ON cdr (call_id)",
    ],
]

_COLUMNS = ", ".join(f'"{name}"' for name in CDR_FIELDS)


def cdr_record(cdr: Any) -> dict[str, Any]:
    """Normalise a CDR (dict or dataclass) to a dict; fills duration/billsec."""
    if dataclasses.is_dataclass(cdr) and not isinstance(cdr, type):
        record = dataclasses.asdict(cdr)
    elif isinstance(cdr, Mapping):
        record = dict(cdr)
    else:
        raise TypeError(f"a CDR must be a dict or a dataclass, not {type(cdr).__name__}")
    for required in ("call_id", "start", "end", "disposition"):
        if record.get(required) is None:
            raise ValueError(f"CDR without {required!r}")
    if record.get("duration") is None:
        record["duration"] = max(0.0, record["end"] - record["start"])
    if record.get("billsec") is None:
        answer = record.get("answer")
        record["billsec"] = 0.0 if answer is None else max(0.0, record["end"] - answer)
    return record


@implementer(ICDRStore)
class SQLiteCDRStore:
    """CDRs in the ``cdr`` table; :meth:`write` fires once the row is committed."""

    log = Logger()

    def __init__(self, database: Database) -> None:
        self.database = database

    def prepare(self) -> Deferred:
        """Create or migrate the table; fires with the store itself."""
        d = self.database.migrate("cdr", MIGRATIONS)
        d.addCallback(lambda _: self)
        return d

    def write(self, cdr: Any) -> Deferred:
        """Store one CDR; fires with its row id once committed (fsynced: WAL + FULL)."""
        try:
            record = cdr_record(cdr)
        except (TypeError, ValueError) as e:
            return fail(e)
        values = []
        for name in CDR_FIELDS:
            value = record.pop(name, None)
            if name in _JSON_FIELDS:
                value = json.dumps(value if value is not None else ([] if name == "codecs" else {}))
            values.append(value)
        values.append(json.dumps(record, default=str))
        placeholders = ", ".join("?" for _ in values)

        def insert(txn: Any) -> int:
            txn.execute(f"INSERT INTO cdr ({_COLUMNS}, extra) VALUES ({placeholders})", values)
            return txn.lastrowid

        return self.database.run(insert)

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
        """Fire with ``(records, next_cursor)``: CDRs whose start is in [since, until)
        and, when given, with exactly this ``source``/``destination``/``disposition``,
        oldest first, at most ``limit`` (1-1000); ``next_cursor`` (an opaque string)
        gives the next page and is None on the last one. A bad cursor fails with
        ValueError."""
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


def _row_record(row: tuple) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(row[-1] or "{}")
    record["id"] = row[0]
    for name, value in zip(CDR_FIELDS, row[1:-1], strict=True):
        record[name] = json.loads(value) if name in _JSON_FIELDS else value
    return record
