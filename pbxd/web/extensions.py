"""``/extensions``: list, read, create, update and delete extensions (layer 6).

The store is an IExtensionStore with the admin methods of
:class:`pbxd.store.extensions_db.SQLiteExtensionStore`: ``list()``,
``lookup(number)``, ``source(number)``, ``create(number, fields)``,
``update(number, fields)``, ``delete(number)``. Extensions from the
configuration file are listed with ``"source": "config"`` and refuse changes
with 409. Secrets (passwords, HA1s, PINs) are never returned.
"""

from __future__ import annotations

from typing import Any

from pbxd.store.extensions_db import (
    ExtensionExists,
    ExtensionNotFound,
    ExtensionReadOnly,
    InvalidExtension,
)
from pbxd.web.fields import audited, error, reply
from pbxd.web.resources import APIError, Call, Operation, Response, Route, invalid, not_found

EXTENSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["number", "name", "context", "source", "credentials"],
    "properties": {
        "number": {"type": "string"},
        "name": {"type": "string"},
        "context": {"type": "string"},
        "source": {"enum": ["config", "api"],
                   "description": "config: from the configuration file, read-only"},
        "credentials": {"type": "array", "items": {"enum": ["password", "ha1", "ha1_sha256"]},
                        "description": "which credentials are set (never their values)"},
        "max_contacts": {"type": ["integer", "null"]},
        "voicemail_pin": {"type": "boolean", "description": "whether a PIN is set"},
    },
}
_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 100},
    "password": {"type": "string", "minLength": 8, "maxLength": 200,
                 "description": "stored only as MD5 and SHA-256 HA1"},
    "ha1": {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
    "ha1_sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
    "context": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
    "max_contacts": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000},
    "voicemail_pin": {"type": ["string", "null"], "pattern": "^[0-9]+$"},
}
NUMBER_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$", "maxLength": 64}
CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["number"],
    "additionalProperties": False,
    "properties": {"number": NUMBER_SCHEMA, **_FIELDS},
    "description": "one of password, ha1 or ha1_sha256 is required",
}
UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": _FIELDS,
    "description": "only the fields given change; a credential replaces all credentials;"
                   " null clears max_contacts or voicemail_pin",
}


def extension_json(extension: Any, source: str) -> dict[str, Any]:
    """The API view of an extension: no secrets."""
    return {
        "number": extension.number,
        "name": extension.name,
        "context": extension.context,
        "source": source,
        "credentials": [c for c in ("password", "ha1", "ha1_sha256")
                        if getattr(extension, c, None) is not None],
        "max_contacts": extension.max_contacts,
        "voicemail_pin": extension.voicemail_pin is not None,
    }


def _changes(fields: dict[str, Any]) -> dict[str, Any]:
    """What goes in the audit entry: field names, secrets masked."""
    secret = ("password", "ha1", "ha1_sha256", "voicemail_pin")
    return {k: ("***" if k in secret and v is not None else v) for k, v in fields.items()}


def _translate(e: Exception) -> APIError:
    if isinstance(e, InvalidExtension):
        return invalid(e.field, e.message)
    if isinstance(e, ExtensionReadOnly):
        return APIError(409, "read_only", str(e))
    if isinstance(e, ExtensionExists):
        return APIError(409, "exists", str(e))
    if isinstance(e, ExtensionNotFound):
        return not_found(str(e).removesuffix(" not found"))
    raise e


def routes(store: Any, audit: Any) -> list[Route]:
    """The extension routes over an admin extension store."""

    async def list_all(call: Call) -> list[dict[str, Any]]:
        return [extension_json(e, source) for e, source in await store.list()]

    def get_one(call: Call) -> dict[str, Any]:
        number = call.path["number"]
        extension = store.lookup(number)
        if extension is None:
            raise not_found(f"extension {number}")
        return extension_json(extension, store.source(number))

    async def create(call: Call) -> Response:
        fields = dict(call.body)
        number = fields.pop("number")
        try:
            extension = await store.create(number, fields)
        except (InvalidExtension, ExtensionExists) as e:
            raise _translate(e) from None
        await audited(audit, call, "extension.create", number, _changes(fields))
        return Response(extension_json(extension, "api"), 201,
                        {"Location": f"/api/v1/extensions/{number}"})

    async def update(call: Call) -> dict[str, Any]:
        number = call.path["number"]
        try:
            extension = await store.update(number, call.body)
        except (InvalidExtension, ExtensionNotFound, ExtensionReadOnly) as e:
            raise _translate(e) from None
        await audited(audit, call, "extension.update", number, _changes(call.body))
        return extension_json(extension, "api")

    async def delete(call: Call) -> dict[str, Any]:
        number = call.path["number"]
        try:
            extension = await store.delete(number)
        except (ExtensionNotFound, ExtensionReadOnly) as e:
            raise _translate(e) from None
        await audited(audit, call, "extension.delete", number)
        return extension_json(extension, "api")

    one = {200: reply("the extension", EXTENSION_SCHEMA), 404: error("no such extension")}
    read_only = error("the extension is defined in the configuration file (read-only)")
    return [
        Route("/extensions", [
            Operation("GET", list_all, "List extensions", {
                200: reply("every extension, by number",
                           {"type": "array", "items": EXTENSION_SCHEMA})}, tag="extensions"),
            Operation("POST", create, "Create an extension", {
                201: reply("the new extension", EXTENSION_SCHEMA),
                409: error("the number is taken")}, body=CREATE_SCHEMA, tag="extensions"),
        ]),
        Route("/extensions/{number}", [
            Operation("GET", get_one, "One extension", one, tag="extensions"),
            Operation("PUT", update, "Update an extension (the fields given)",
                      {**one, 409: read_only}, body=UPDATE_SCHEMA, tag="extensions"),
            Operation("DELETE", delete, "Delete an extension",
                      {**one, 409: read_only}, tag="extensions"),
        ], params={"number": "the extension number"}),
    ]
