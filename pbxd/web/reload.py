"""``/reload``: re-read the configuration file and the TLS certificates (layer 6).

Uses a reloader (:class:`pbxd.reload.Reloader` in the composition root)
through one method, ``reload() -> Deferred[dict]``, which fails with
:class:`~pbxd.errors.ConfigError` for an invalid new configuration (the old
one stays in force) and with ``RuntimeError`` when a reload cannot run now
(one is already running, the server is shutting down, no file to read).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import maybeDeferred

from pbxd.errors import ConfigError
from pbxd.web.fields import audited, error, reply
from pbxd.web.resources import APIError, Call, Operation, Route

NAMES = {"type": "array", "items": {"type": "string"}}
RELOADED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["source", "applied", "listeners", "restart_required"],
    "properties": {
        "source": {"type": "string", "description": "the configuration file re-read"},
        "applied": {**NAMES, "description": "the parts that took the new configuration"},
        "listeners": {
            "type": "object",
            "required": ["added", "removed"],
            "properties": {"added": NAMES, "removed": NAMES},
            "description": "listener entries (sip.listen, admin.listen) opened and closed",
        },
        "restart_required": {**NAMES, "description": "changed sections that need a restart"
                                                     " (pbx, rtp, store, plugins ...)"},
    },
}


def routes(reloader: Any, audit: Any) -> list[Route]:
    """``POST /reload`` over ``reloader``."""

    async def reload(call: Call) -> dict[str, Any]:
        try:
            result = await maybeDeferred(reloader.reload)
        except ConfigError as e:
            raise APIError(409, "invalid_config",
                           f"{e} (the running configuration stays in force)") from None
        except RuntimeError as e:
            raise APIError(409, "reload_refused", str(e)) from None
        await audited(audit, call, "config.reload", str(result.get("source", "")), {
            "applied": result.get("applied", []), "listeners": result.get("listeners", {}),
            "restart_required": result.get("restart_required", [])})
        return result

    return [Route("/reload", [
        Operation("POST", reload, "Re-read the configuration file and TLS certificates", {
            200: reply("the new configuration is in force", RELOADED_SCHEMA),
            409: error("the new configuration is invalid (the old one stays in force),"
                       " or a reload cannot run now")},
            tag="admin",
            description="Extensions, dialplan, security, admin tokens, TLS certificates and"
                        " listener entries change live; calls and registrations in progress"
                        " are untouched. Same as SIGHUP."),
    ])]
