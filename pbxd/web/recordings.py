"""``/recordings``: call recordings listed, downloaded (``audio/wav``), deleted (layer 6).

Over a :class:`~pbxd.store.recordings.RecordingStore` (``list``, ``get``,
``read``, ``delete``). A CDR's ``recording`` is the id used here. Deletes are
audited (``recording.delete``); a recording still in progress cannot be
deleted (409).
"""

from __future__ import annotations

from typing import Any

from pbxd.web.fields import ISO_SCHEMA, audited, error, iso, reply
from pbxd.web.resources import APIError, Call, Operation, Param, Reply, Response, Route, not_found

__all__ = ["routes"]

RECORDING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "call_id", "start", "seconds", "channels", "size", "recording"],
    "properties": {
        "id": {"type": "string", "description": "the CDR's `recording`"},
        "call_id": {"type": "string", "description": "the PBX call id (the CDR's pbx_call_id)"},
        "caller": {"type": "string"},
        "callee": {"type": "string"},
        "start": ISO_SCHEMA,
        "seconds": {"type": "number", "description": "length of the audio"},
        "channels": {"enum": [1, 2], "description": "2: stereo, caller left, callee right"},
        "size": {"type": "integer", "description": "bytes of the WAV file"},
        "recording": {"type": "boolean", "description": "true while the call is recorded"},
    },
}
LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["recordings"],
    "properties": {"recordings": {"type": "array", "items": RECORDING_SCHEMA}},
}
CALL_PARAM = Param("call_id", {"type": "string", "minLength": 1},
                   "only the recordings of this PBX call id")


def recording_json(record: dict[str, Any]) -> dict[str, Any]:
    """A recording for the API (start in ISO 8601, no file path)."""
    return {"id": record["id"], "call_id": record["call_id"], "caller": record["caller"],
            "callee": record["callee"], "start": iso(record["start"]),
            "seconds": record["seconds"], "channels": record["channels"],
            "size": record["size"], "recording": record["recording"]}


def routes(store: Any, audit: Any) -> list[Route]:
    """The recording routes over a RecordingStore."""

    async def recording_of(call: Call) -> dict[str, Any]:
        record = await store.get(call.path["id"])
        if record is None:
            raise not_found(f"recording {call.path['id']}")
        return dict(record)

    async def list_all(call: Call) -> dict[str, Any]:
        records = await store.list()
        wanted = call.query.get("call_id")
        if wanted:
            records = [r for r in records if r["call_id"] == wanted]
        return {"recordings": [recording_json(r) for r in records]}

    async def download(call: Call) -> Response:
        data = await store.read(call.path["id"])
        if data is None:
            raise not_found(f"recording {call.path['id']}")
        return Response(raw=data, content_type="audio/wav", headers={
            "Content-Disposition": f'attachment; filename="{call.path["id"]}.wav"'})

    async def delete(call: Call) -> dict[str, Any]:
        record = await recording_of(call)
        try:
            deleted = await store.delete(record["id"])
        except ValueError:
            raise APIError(409, "in_progress", f"recording {record['id']} is in progress"
                           ) from None
        if not deleted:
            raise not_found(f"recording {record['id']}")
        await audited(audit, call, "recording.delete", record["id"],
                      {"call_id": record["call_id"], "caller": record["caller"],
                       "callee": record["callee"]})
        return recording_json(record)

    return [
        Route("/recordings", [
            Operation("GET", list_all, "Call recordings, newest first",
                      {200: reply("the recordings", LIST_SCHEMA)}, query=[CALL_PARAM],
                      tag="recordings"),
        ]),
        Route("/recordings/{id}", [
            Operation("GET", download, "Download a recording (WAV, 8 kHz, mono or stereo)", {
                200: Reply("the recording", {"type": "string", "format": "binary"},
                           media_type="audio/wav"),
                404: error("no such recording")}, tag="recordings"),
            Operation("DELETE", delete, "Delete a recording (audited)", {
                200: reply("the deleted recording", RECORDING_SCHEMA),
                404: error("no such recording"),
                409: error("the call is still being recorded")}, tag="recordings"),
        ], params={"id": "the recording id (a CDR's `recording`)"}),
    ]
