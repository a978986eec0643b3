"""``/registrations``: the registrar's bindings; DELETE unregisters (layer 6).

Uses the location service through its read view (``all_bindings()``,
``bindings(aor)``, ``clock``) and one service method (``remove(binding)``).
"""

from __future__ import annotations

from typing import Any

from pbxd.web.fields import ISO_SCHEMA, audited, error, iso, reply
from pbxd.web.resources import Call, Operation, Param, Route, not_found

BINDING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["aor", "contact", "expires", "expires_at", "flow", "user_agent"],
    "properties": {
        "aor": {"type": "string", "description": "the extension number"},
        "contact": {"type": "string"},
        "expires": {"type": "integer", "description": "seconds left"},
        "expires_at": ISO_SCHEMA,
        "registered_at": ISO_SCHEMA,
        "flow": {
            "type": "object",
            "required": ["transport", "host", "port"],
            "properties": {
                "transport": {"type": "string"},
                "host": {"type": "string"},
                "port": {"type": "integer"},
                "connected": {"type": "boolean"},
            },
        },
        "user_agent": {"type": ["string", "null"]},
        "nat": {"type": "boolean"},
        "reachable": {"type": "boolean"},
        "rtt": {"type": ["number", "null"], "description": "qualify round trip, seconds"},
        "q": {"type": ["number", "null"]},
        "instance": {"type": ["string", "null"]},
        "reg_id": {"type": ["integer", "null"]},
        "path": {"type": "array", "items": {"type": "string"}},
        "restored": {"type": "boolean", "description": "loaded from the store after a restart"},
    },
}
LIST_SCHEMA = {"type": "array", "items": BINDING_SCHEMA}
REMOVED_SCHEMA = {
    "type": "object",
    "required": ["aor", "removed"],
    "properties": {
        "aor": {"type": "string"},
        "removed": {"type": "array", "items": {"type": "string"}, "description": "contacts"},
    },
}


def binding_json(binding: Any, now: float) -> dict[str, Any]:
    """The API view of one binding."""
    transport, host, port = binding.flow
    live = binding.transport
    return {
        "aor": binding.aor,
        "contact": binding.contact,
        "expires": binding.expires_in(now),
        "expires_at": iso(binding.expires_at),
        "registered_at": iso(binding.registered_at),
        "flow": {
            "transport": transport,
            "host": host,
            "port": port,
            "connected": bool(live is not None and getattr(live, "connected", True)),
        },
        "user_agent": binding.user_agent,
        "nat": bool(binding.nat),
        "reachable": bool(binding.reachable),
        "rtt": binding.rtt,
        "q": binding.q,
        "instance": binding.instance,
        "reg_id": binding.reg_id,
        "path": list(binding.path),
        "restored": bool(binding.restored),
    }


def routes(location: Any, audit: Any) -> list[Route]:
    """The registration routes over a LocationService-like ``location``."""

    def now() -> float:
        return location.clock.seconds()

    def list_all(call: Call) -> list[dict[str, Any]]:
        aor = call.query.get("aor")
        found = location.bindings(aor) if aor is not None else location.all_bindings()
        t = now()
        return [binding_json(b, t) for b in found]

    def list_one(call: Call) -> list[dict[str, Any]]:
        found = location.bindings(call.path["aor"])
        if not found:
            raise not_found(f"registration of {call.path['aor']}")
        t = now()
        return [binding_json(b, t) for b in found]

    async def unregister(call: Call) -> dict[str, Any]:
        aor = call.path["aor"]
        contact = call.query.get("contact")
        found = [b for b in location.bindings(aor) if contact is None or b.contact == contact]
        if not found:
            raise not_found(f"registration of {aor}" + (f" at {contact}" if contact else ""))
        for binding in found:
            await location.remove(binding)
        removed = [b.contact for b in found]
        await audited(audit, call, "registration.delete", aor, {"contacts": removed})
        return {"aor": aor, "removed": removed}

    aor_param = Param("aor", {"type": "string", "minLength": 1}, "only this AOR")
    contact_param = Param("contact", {"type": "string", "minLength": 1},
                          "only this contact URI (default: all of the AOR)")
    return [
        Route("/registrations", [
            Operation("GET", list_all, "List registrations",
                      {200: reply("every binding, by AOR", LIST_SCHEMA)},
                      query=[aor_param], tag="registrations"),
        ]),
        Route("/registrations/{aor}", [
            Operation("GET", list_one, "The bindings of one AOR",
                      {200: reply("its bindings, best first", LIST_SCHEMA),
                       404: error("no bindings")}, tag="registrations"),
            Operation("DELETE", unregister, "Unregister an AOR (or one of its contacts)",
                      {200: reply("the contacts removed", REMOVED_SCHEMA),
                       404: error("no such binding")},
                      query=[contact_param], tag="registrations"),
        ], params={"aor": "the address of record (extension number)"}),
    ]
