"""Shared pieces of the admin API endpoints: times, paging, audit, schemas (layer 6)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from twisted.logger import Logger

from pbxd.web.resources import APIError, Call, Param, Reply

log = Logger()

ERROR_REF = {"$ref": "#/components/schemas/Error"}
TIME_SCHEMA = {"type": "string", "description": "ISO 8601 (UTC when no offset) or epoch seconds"}
ISO_SCHEMA = {"type": "string", "description": "ISO 8601 UTC time"}


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (``2024-05-01T12:00:00.250Z``); None stays None."""
    if epoch is None:
        return None
    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """Epoch seconds from ``text``: a number, or ISO 8601 (naive means UTC)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be ISO 8601 or epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def time_param(name: str, description: str) -> Param:
    """A query parameter holding a time (ISO 8601 or epoch)."""
    return Param(name, {"type": "string"}, description + " (ISO 8601 or epoch seconds)",
                 parse=parse_time)


LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
              "page size (default 100)")
CURSOR = Param("cursor", {"type": "string", "minLength": 1},
               "next_cursor of the previous page")


def page_schema(item: Mapping[str, Any]) -> dict[str, Any]:
    """A page of ``item``: ``{"records": [...], "next_cursor": str|null}``."""
    return {
        "type": "object",
        "required": ["records", "next_cursor"],
        "properties": {
            "records": {"type": "array", "items": item},
            "next_cursor": {"type": ["string", "null"],
                            "description": "pass as cursor for the next page; null on the last"},
        },
    }


def reply(description: str, schema: Mapping[str, Any] | None = None) -> Reply:
    """A documented JSON response."""
    return Reply(description, schema)


def error(description: str) -> Reply:
    """A documented error response."""
    return Reply(description, ERROR_REF)


async def audited(
    audit: Any, call: Call, action: str, target: str, details: Mapping[str, Any] | None = None
) -> None:
    """Write the audit entry of a change made by ``call``'s token; a failure is a 500
    (the change itself was applied: the message says so)."""
    try:
        await audit.record(call.user or "?", action, target, dict(details or {}))
    except Exception:
        log.failure("could not audit {action} of {target} by {who}", action=action,
                    target=target, who=call.user)
        raise APIError(500, "audit_failed",
                       "the change was applied but its audit entry could not be written"
                       ) from None
