"""``/cdr``: call detail records by time range and number, paged, JSON or CSV (layer 6).

The store's ``query(since, until, limit, after_cursor, source=, destination=,
disposition=)`` fires with ``(records, next_cursor)``
(:class:`pbxd.store.cdr.SQLiteCDRStore`). With ``format=csv`` the
page is sent as ``text/csv`` and the next cursor in the ``X-Next-Cursor``
header (absent on the last page).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pbxd.web.fields import CURSOR, ISO_SCHEMA, LIMIT, error, iso, page_schema, time_param
from pbxd.web.resources import Call, Operation, Param, Reply, Response, Route, invalid

#: CSV columns, in order (times in ISO 8601; codecs and media as JSON).
CSV_COLUMNS = (
    "id", "call_id", "start", "answer", "end", "duration", "billsec", "source", "destination",
    "disposition", "hangup_cause", "hangup_side", "codecs", "media",
)
_TIMES = ("start", "answer", "end")

CDR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "call_id", "start", "end", "duration", "disposition"],
    "properties": {
        "id": {"type": "integer"},
        "call_id": {"type": "string"},
        "start": ISO_SCHEMA,
        "answer": {"type": ["string", "null"], "description": "ISO 8601; null if unanswered"},
        "end": ISO_SCHEMA,
        "duration": {"type": "number"},
        "billsec": {"type": "number"},
        "source": {"type": ["string", "null"]},
        "destination": {"type": ["string", "null"]},
        "disposition": {"type": "string"},
        "hangup_cause": {"type": ["string", "null"]},
        "hangup_side": {"type": ["string", "null"]},
        "codecs": {"type": "array"},
        "media": {"type": "object"},
        "recording": {"type": "string",
                      "description": "the call's recording (an id of /recordings); absent if none"},
    },
}


def cdr_json(record: dict[str, Any]) -> dict[str, Any]:
    """A CDR for the API: times as ISO 8601."""
    out = dict(record)
    for name in _TIMES:
        out[name] = iso(record.get(name))
    return out


def cdr_csv(records: list[dict[str, Any]]) -> bytes:
    """CSV with a header row of :data:`CSV_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        row = cdr_json(record)
        writer.writerow(
            json.dumps(row.get(c), separators=(",", ":")) if c in ("codecs", "media")
            else ("" if row.get(c) is None else row.get(c))
            for c in CSV_COLUMNS
        )
    return buffer.getvalue().encode("utf-8")


def routes(cdr_store: Any) -> list[Route]:
    """The CDR route over a searchable CDR store."""

    async def query(call: Call) -> Any:
        q = call.query
        try:
            records, cursor = await cdr_store.query(
                since=q.get("since"),
                until=q.get("until"),
                limit=q.get("limit", 100),
                after_cursor=q.get("cursor"),
                source=q.get("src"),
                destination=q.get("dst"),
                disposition=q.get("disposition"),
            )
        except ValueError:
            raise invalid("cursor", "is not a cursor this server gave") from None
        if q.get("format") == "csv":
            headers = {"Content-Disposition": 'attachment; filename="cdr.csv"'}
            if cursor is not None:
                headers["X-Next-Cursor"] = cursor
            return Response(raw=cdr_csv(records), content_type="text/csv; charset=utf-8",
                            headers=headers)
        return {"records": [cdr_json(r) for r in records], "next_cursor": cursor}

    number = {"type": "string", "minLength": 1, "maxLength": 64}
    return [
        Route("/cdr", [
            Operation("GET", query, "Query call detail records", {
                200: Reply("a page of CDRs, oldest first", page_schema(CDR_SCHEMA),
                           alternatives={"text/csv": {"type": "string"}}),
                400: error("a bad parameter or cursor")},
                query=[
                    time_param("since", "calls started at or after"),
                    time_param("until", "calls started before"),
                    Param("src", number, "calling number"),
                    Param("dst", number, "called number"),
                    Param("disposition", {"type": "string", "minLength": 1},
                          "e.g. answered, busy, no_answer, failed"),
                    LIMIT,
                    CURSOR,
                    Param("format", {"enum": ["json", "csv"]},
                          "json (default) or csv (next cursor in X-Next-Cursor)"),
                ], tag="cdr"),
        ]),
    ]
