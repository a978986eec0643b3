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
from twisted.python.failure import Failure
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
_INSERT = (f"INSERT INTO cdr ({_COLUMNS}, extra) "
           f"VALUES ({', '.join('?' for _ in range(len(CDR_FIELDS) + 1))})")


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


_FIELD_SET = frozenset(CDR_FIELDS)
_PLAIN_FIELDS = CDR_FIELDS[:11]  # the columns before codecs and media
assert CDR_FIELDS[11:] == _JSON_FIELDS
# json.dumps(value) and json.dumps(value, default=str) without building an encoder per call
_to_json = json.JSONEncoder().encode
_extra_to_json = json.JSONEncoder(default=str).encode
_CODECS_JSON: dict[tuple[Any, ...], str] = {}  # codec lists are few: each encoded once


def _codecs_json(codecs: Any) -> str:
    if type(codecs) is not list or not all(type(c) is str for c in codecs):
        return _to_json(codecs if codecs is not None else [])
    key = tuple(codecs)
    text = _CODECS_JSON.get(key)
    if text is None:
        text = _to_json(codecs)
        if len(_CODECS_JSON) < 256:  # bounded against odd codec names
            _CODECS_JSON[key] = text
    return text


def _row_values(cdr: Any) -> list[Any]:
    """The values of :data:`_INSERT` for one CDR (TypeError/ValueError if it is not one)."""
    record = cdr_record(cdr)
    get = record.get
    values = [get(name) for name in _PLAIN_FIELDS]
    media = get("media")
    values.append(_codecs_json(get("codecs")))
    values.append(_to_json(media if media is not None else {}))
    values.append(_extra_to_json({k: v for k, v in record.items() if k not in _FIELD_SET}))
    return values


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
            values = _row_values(cdr)
        except (TypeError, ValueError) as e:
            return fail(e)

        def insert(txn: Any) -> int:
            txn.execute(_INSERT, values)
            return txn.lastrowid

        return self.database.run(insert)

    def write_many(self, cdrs: list[Any]) -> Deferred:
        """Store several CDRs in one transaction (one commit, one fsync); fires once it is
        committed with, for each CDR in order, its row id or the Failure that refused it
        (a CDR that is not valid is left out; the others are written)."""
        rows: list[list[Any] | Failure] = []
        for cdr in cdrs:
            try:
                rows.append(_row_values(cdr))
            except (TypeError, ValueError):
                rows.append(Failure())

        def insert(txn: Any) -> list[int | Failure]:
            out: list[int | Failure] = []
            for row in rows:
                if isinstance(row, Failure):
                    out.append(row)
                else:
                    txn.execute(_INSERT, row)
                    out.append(txn.lastrowid)
            return out

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
        return self.database.page(
            "cdr", f"id, {_COLUMNS}, extra",
            (("start >= ?", since), ("start < ?", until), ("source = ?", source),
             ("destination = ?", destination), ("disposition = ?", disposition)),
            limit, after_cursor, _row_record)


def _row_record(row: tuple) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(row[-1] or "{}")
    record["id"] = row[0]
    for name, value in zip(CDR_FIELDS, row[1:-1], strict=True):
        record[name] = json.loads(value) if name in _JSON_FIELDS else value
    return record
