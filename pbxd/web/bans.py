"""``/bans``: list, add and lift IP bans (layer 6).

Uses the BanList through ``list()``, ``ban(ip, seconds, reason)``,
``lift(ip)``, ``is_trusted(ip)`` and its ``clock``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pbxd.web.fields import ISO_SCHEMA, audited, error, iso, reply
from pbxd.web.resources import APIError, Call, Operation, Response, Route, invalid, not_found

BAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["address", "until", "expires", "reason"],
    "properties": {
        "address": {"type": "string"},
        "until": ISO_SCHEMA,
        "expires": {"type": "integer", "description": "seconds left"},
        "reason": {"type": "string"},
    },
}
NEW_BAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["address"],
    "additionalProperties": False,
    "properties": {
        "address": {"type": "string", "description": "an IPv4 or IPv6 address"},
        "seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 10 * 365 * 86400,
                    "description": "ban duration (default 3600)"},
        "reason": {"type": "string", "maxLength": 200, "description": "default 'admin'"},
    },
}
DEFAULT_SECONDS = 3600.0


def _address(text: str, field: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise invalid(field, "must be an IPv4 or IPv6 address") from None


def routes(bans: Any, audit: Any) -> list[Route]:
    """The ban routes over a BanList-like ``bans``."""

    def view(address: str, until: float, reason: str) -> dict[str, Any]:
        left = max(0, int(until - bans.clock.seconds() + 0.5))
        return {"address": address, "until": iso(until), "expires": left, "reason": reason}

    def find(address: str) -> tuple[str, float, str] | None:
        return next((entry for entry in bans.list() if entry[0] == address), None)

    def list_all(call: Call) -> list[dict[str, Any]]:
        return [view(*entry) for entry in bans.list()]

    def get_one(call: Call) -> dict[str, Any]:
        entry = find(_address(call.path["address"], "address"))
        if entry is None:
            raise not_found(f"ban of {call.path['address']}")
        return view(*entry)

    async def add(call: Call) -> Response:
        address = _address(call.body["address"], "address")
        seconds = float(call.body.get("seconds", DEFAULT_SECONDS))
        reason = call.body.get("reason") or "admin"
        if bans.is_trusted(address):
            raise APIError(409, "trusted_address",
                           f"{address} is in security.trusted_networks and cannot be banned")
        if not bans.ban(address, seconds, reason):
            raise APIError(409, "not_banned", f"{address} could not be banned")
        entry = find(address)
        assert entry is not None
        await audited(audit, call, "ban.add", address, {"seconds": seconds, "reason": reason})
        return Response(view(*entry), 201)

    async def lift(call: Call) -> dict[str, Any]:
        address = _address(call.path["address"], "address")
        entry = find(address)
        if entry is None or not bans.lift(address):
            raise not_found(f"ban of {address}")
        await audited(audit, call, "ban.lift", address, {"reason": entry[2]})
        return view(*entry)

    return [
        Route("/bans", [
            Operation("GET", list_all, "List bans", {
                200: reply("current bans, soonest expiry first",
                           {"type": "array", "items": BAN_SCHEMA})}, tag="bans"),
            Operation("POST", add, "Ban an address", {
                201: reply("the ban", BAN_SCHEMA),
                409: error("the address is trusted and cannot be banned")},
                body=NEW_BAN_SCHEMA, tag="bans"),
        ]),
        Route("/bans/{address}", [
            Operation("GET", get_one, "One ban", {
                200: reply("the ban", BAN_SCHEMA), 404: error("not banned")}, tag="bans"),
            Operation("DELETE", lift, "Lift a ban", {
                200: reply("the ban that was lifted", BAN_SCHEMA),
                404: error("not banned")}, tag="bans"),
        ], params={"address": "the banned IP address"}),
    ]
