"""``/calls``: calls in progress, originate, hang up (layer 6).

Uses the CallManager through ``active_calls()`` (a list of ``Call.info()``
dicts: legs, state, duration, codecs, media counters), ``hangup(call_id)``,
``originate(ext_a, ext_b, *, timeout, caller_id) -> Deferred[call_id]`` (ring
extension A; when A answers, dial B) and its ``stopping`` flag. The
extension store (``lookup(number)``) checks both numbers before anything
rings. Originate and hang-up are written to the audit trail.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import maybeDeferred

from pbxd.web.fields import ISO_SCHEMA, audited, error, iso, reply
from pbxd.web.resources import APIError, Call, Operation, Response, Route, not_found

NUMBER = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[0-9A-Za-z*#+._-]+$"}

COUNTERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RTP counters of one leg's media (packets_in, bytes_in, lost, jitter_ms,"
                   " packets_out, bytes_out, strangers)",
}
LEG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "role", "state"],
    "properties": {
        "id": {"type": "string"},
        "role": {"type": "string", "description": "caller (the A leg) or callee (a fork)"},
        "state": {"type": "string"},
    },
}
CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "caller", "destination", "state", "start", "answer", "duration",
                 "codecs", "legs", "media"],
    "properties": {
        "id": {"type": "string", "description": "the PBX call id (in its log lines and CDR)"},
        "caller": {"type": "string"},
        "destination": {"type": "string"},
        "state": {"type": "string", "description": "e.g. RINGING, ANSWERED"},
        "start": ISO_SCHEMA,
        "answer": {"type": ["string", "null"], "description": "ISO 8601 UTC time or null"},
        "duration": {"type": "number", "description": "seconds since the call started"},
        "codecs": {"type": "array", "items": {"type": "string"}},
        "on_hold": {"type": "boolean"},
        "legs": {"type": "array", "items": LEG_SCHEMA},
        "media": {"type": "object", "description": "leg name (a, b) -> counters",
                  "additionalProperties": COUNTERS_SCHEMA},
    },
}
ORIGINATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["from", "to"],
    "additionalProperties": False,
    "description": "ring extension `from`; when it answers, dial `to` from it",
    "properties": {
        "from": {**NUMBER, "description": "the extension rung first"},
        "to": {**NUMBER, "description": "the number dialled once `from` answers"},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300,
                    "description": "seconds `from` may ring (default 30)"},
        "caller_id": {"type": "string", "maxLength": 64,
                      "description": "the name shown on `from`'s phone"},
    },
}
ORIGINATED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "from", "to"],
    "properties": {
        "id": {"type": "string", "description": "the new call's id"},
        "from": {"type": "string"},
        "to": {"type": "string"},
        "timeout": {"type": "number"},
    },
}
DEFAULT_TIMEOUT = 30.0


def call_json(info: dict[str, Any]) -> dict[str, Any]:
    """The API view of one ``Call.info()`` dict (times as ISO 8601)."""
    out = dict(info)
    out["start"] = iso(info.get("start"))
    out["answer"] = iso(info.get("answer"))
    out.setdefault("on_hold", False)
    return out


def _originate_error(e: Exception) -> APIError:
    """An APIError for a failed originate (the manager's exception)."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, LookupError):
        return APIError(404, "not_found", str(e).strip("'\"") or "no such extension")
    if isinstance(e, ValueError):
        return APIError(400, "invalid_field", str(e))
    return APIError(409, "originate_failed", str(e) or type(e).__name__)


def routes(manager: Any, audit: Any, extensions: Any = None) -> list[Route]:
    """The call routes over a CallManager-like ``manager``."""

    def find(call_id: str) -> dict[str, Any] | None:
        return next((c for c in manager.active_calls() if c["id"] == call_id), None)

    def list_all(call: Call) -> list[dict[str, Any]]:
        return [call_json(c) for c in manager.active_calls()]

    def get_one(call: Call) -> dict[str, Any]:
        found = find(call.path["id"])
        if found is None:
            raise not_found(f"call {call.path['id']}")
        return call_json(found)

    async def hangup(call: Call) -> dict[str, Any]:
        call_id = call.path["id"]
        found = find(call_id)
        if found is None or not manager.hangup(call_id):
            raise not_found(f"call {call_id}")
        await audited(audit, call, "call.hangup", call_id,
                      {"caller": found.get("caller"), "destination": found.get("destination")})
        return call_json(found)

    async def originate(call: Call) -> Response:
        body = call.body
        ext_a, ext_b = body["from"], body["to"]
        timeout = float(body.get("timeout", DEFAULT_TIMEOUT))
        if getattr(manager, "stopping", False):
            raise APIError(503, "shutting_down", "the server is shutting down",
                           headers={"Retry-After": "30"})
        if extensions is not None and extensions.lookup(ext_a) is None:
            raise APIError(404, "not_found", f"from: extension {ext_a} not found", field="from")
        try:
            call_id = await maybeDeferred(manager.originate, ext_a, ext_b, timeout=timeout,
                                          caller_id=body.get("caller_id"))
        except Exception as e:
            raise _originate_error(e) from None
        await audited(audit, call, "call.originate", f"{ext_a}->{ext_b}",
                      {"id": call_id, "timeout": timeout})
        return Response({"id": call_id, "from": ext_a, "to": ext_b, "timeout": timeout}, 201,
                        {"Location": f"/api/v1/calls/{call_id}"})

    return [
        Route("/calls", [
            Operation("GET", list_all, "List calls in progress", {
                200: reply("calls not yet ended, oldest first",
                           {"type": "array", "items": CALL_SCHEMA})}, tag="calls"),
            Operation("POST", originate, "Originate a call (ring `from`, then dial `to`)", {
                201: reply("the call was started", ORIGINATED_SCHEMA),
                404: error("`from` is not an extension"),
                409: error("the call could not be started"),
                503: error("the server is shutting down")},
                body=ORIGINATE_SCHEMA, tag="calls"),
        ]),
        Route("/calls/{id}", [
            Operation("GET", get_one, "One call in progress", {
                200: reply("the call", CALL_SCHEMA), 404: error("no such call")}, tag="calls"),
            Operation("DELETE", hangup, "Hang up a call (BYE/CANCEL to every leg)", {
                200: reply("the call as it was when hung up", CALL_SCHEMA),
                404: error("no such call")}, tag="calls"),
        ], params={"id": "the call id (as listed)"}),
    ]
