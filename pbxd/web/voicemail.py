"""``/voicemail``: boxes, their messages, message audio (``audio/wav``), delete (layer 6).

Over the voicemail service (``box_exists``, ``messages``, ``delete``: a delete
tells message-waiting subscribers) and its store (``boxes``, ``get``). Deletes
are audited (``voicemail.delete``).
"""

from __future__ import annotations

from typing import Any

from pbxd.web.fields import ISO_SCHEMA, audited, error, iso, reply
from pbxd.web.resources import Call, Operation, Reply, Response, Route, not_found

__all__ = ["routes"]

MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "box", "caller", "time", "duration", "folder"],
    "properties": {
        "id": {"type": "string"},
        "box": {"type": "string"},
        "caller": {"type": "string", "description": "the caller's number"},
        "caller_name": {"type": "string"},
        "time": ISO_SCHEMA,
        "duration": {"type": "number", "description": "seconds"},
        "folder": {"enum": ["new", "old"]},
    },
}
COUNTS = {"new": {"type": "integer"}, "old": {"type": "integer"}}
BOXES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["boxes"],
    "properties": {"boxes": {"type": "array", "items": {
        "type": "object", "required": ["box", "new", "old"],
        "properties": {"box": {"type": "string"}, **COUNTS}}}},
}
BOX_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["box", "new", "old", "messages"],
    "properties": {"box": {"type": "string"}, **COUNTS,
                   "messages": {"type": "array", "items": MESSAGE_SCHEMA}},
}


def message_json(message: dict[str, Any]) -> dict[str, Any]:
    """A message for the API (time in ISO 8601, no file path)."""
    return {"id": message["id"], "box": message["box"], "caller": message["caller"],
            "caller_name": message.get("caller_name", ""), "time": iso(message["time"]),
            "duration": message["duration"], "folder": message["folder"]}


def routes(voicemail: Any, store: Any, audit: Any) -> list[Route]:
    """The voicemail routes over a VoicemailService and its VoicemailStore."""

    async def box_of(call: Call) -> str:
        box = call.path["box"]
        if not await voicemail.box_exists(box):
            raise not_found(f"voicemail box {box}")
        return str(box)

    async def message_of(call: Call) -> dict[str, Any]:
        box = await box_of(call)
        message = await store.get(box, call.path["message"])
        if message is None:
            raise not_found(f"message {call.path['message']} of box {box}")
        return dict(message)

    async def list_boxes(call: Call) -> dict[str, Any]:
        boxes = await store.boxes()
        return {"boxes": [{"box": box, "new": new, "old": old}
                          for box, (new, old) in boxes.items()]}

    async def get_box(call: Call) -> dict[str, Any]:
        box = await box_of(call)
        messages = await voicemail.messages(box)
        new = sum(1 for m in messages if m["folder"] == "new")
        return {"box": box, "new": new, "old": len(messages) - new,
                "messages": [message_json(m) for m in messages]}

    async def audio(call: Call) -> Response:
        message = await message_of(call)
        try:
            with open(message["path"], "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise not_found(f"audio of message {message['id']}") from None
        return Response(raw=data, content_type="audio/wav", headers={
            "Content-Disposition": f'attachment; filename="{message["id"]}.wav"'})

    async def delete(call: Call) -> dict[str, Any]:
        message = await message_of(call)
        if not await voicemail.delete(message["box"], message["id"]):
            raise not_found(f"message {message['id']}")
        await audited(audit, call, "voicemail.delete", f"{message['box']}/{message['id']}",
                      {"caller": message["caller"]})
        return message_json(message)

    return [
        Route("/voicemail", [
            Operation("GET", list_boxes, "Voicemail boxes holding messages, with their counts",
                      {200: reply("boxes and counts", BOXES_SCHEMA)}, tag="voicemail"),
        ]),
        Route("/voicemail/{box}", [
            Operation("GET", get_box, "The messages of one box", {
                200: reply("counts and messages, new first", BOX_SCHEMA),
                404: error("no such box")}, tag="voicemail"),
        ], params={"box": "the box (extension) number"}),
        Route("/voicemail/{box}/{message}", [
            Operation("GET", audio, "Download a message (WAV, 8 kHz mono)", {
                200: Reply("the recording", {"type": "string", "format": "binary"},
                           media_type="audio/wav"),
                404: error("no such box or message")}, tag="voicemail"),
            Operation("DELETE", delete, "Delete a message (message-waiting is updated)", {
                200: reply("the deleted message", MESSAGE_SCHEMA),
                404: error("no such box or message")}, tag="voicemail"),
        ], params={"box": "the box (extension) number", "message": "the message id"}),
    ]
