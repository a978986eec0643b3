"""The admin API tree and its factory, :func:`make_admin_site` (layer 6).

The site serves::

    /api/v1/...            the JSON API (a Router over the route table below)
    /api/v1/openapi.json   its OpenAPI 3.1 document, built from the same table
    /metrics               Prometheus metrics (no token: bind admin.listen to a
                           trusted interface, as the default does)

Every other path is a JSON 404. The route table is a list of route groups,
each a function of the service objects it needs returning ``Route``\\ s.
Adding a group (calls, reload, voicemail) is one line: pass its routes in
``extra_routes`` (e.g. ``calls.routes(call_manager, audit_store)``); the
OpenAPI document and the tests that walk it pick it up by themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Site

from pbxd import __version__
from pbxd.web import bans as bans_api
from pbxd.web import cdr as cdr_api
from pbxd.web import extensions as extensions_api
from pbxd.web import registrations as registrations_api
from pbxd.web.auth import RequestLimiter, make_authenticator
from pbxd.web.fields import CURSOR, ISO_SCHEMA, LIMIT, iso, page_schema, reply, time_param
from pbxd.web.metrics import Metrics, metrics_resource
from pbxd.web.openapi import openapi_route
from pbxd.web.resources import (
    APIError,
    Call,
    JSONError,
    Operation,
    Param,
    Route,
    Router,
    client_host,
)

__all__ = ["AdminSite", "make_admin_site", "make_routes", "health_routes", "audit_routes"]

API_BASE = "/api/v1"

AUDIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "time", "who", "action", "target", "details"],
    "properties": {
        "id": {"type": "integer"},
        "time": ISO_SCHEMA,
        "who": {"type": "string", "description": "the name of the API token"},
        "action": {"type": "string", "description": "e.g. ban.add, extension.update"},
        "target": {"type": "string"},
        "details": {"type": "object"},
    },
}
HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "version", "uptime"],
    "properties": {
        "status": {"enum": ["ok"]},
        "version": {"type": "string"},
        "uptime": {"type": "number", "description": "seconds since the API started"},
    },
}


def health_routes(clock: Any) -> list[Route]:
    """``GET /health``: no token needed."""
    started = clock.seconds()

    def health(call: Call) -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "uptime": clock.seconds() - started}

    return [Route("/health", [
        Operation("GET", health, "Liveness check", {200: reply("the server is up", HEALTH_SCHEMA)},
                  auth=False, tag="meta"),
    ])]


def audit_routes(audit_store: Any) -> list[Route]:
    """``GET /audit``: who changed what through the API, when."""

    async def query(call: Call) -> dict[str, Any]:
        q = call.query
        try:
            entries, cursor = await audit_store.query(
                since=q.get("since"), until=q.get("until"), who=q.get("who"),
                action=q.get("action"), limit=q.get("limit", 100), after_cursor=q.get("cursor"),
            )
        except ValueError:
            raise APIError(400, "invalid_field", "cursor: is not a cursor this server gave",
                           field="cursor") from None
        for entry in entries:
            entry["time"] = iso(entry["time"])
        return {"records": entries, "next_cursor": cursor}

    text = {"type": "string", "minLength": 1}
    return [Route("/audit", [
        Operation("GET", query, "The audit trail, oldest first",
                  {200: reply("a page of audit entries", page_schema(AUDIT_SCHEMA))},
                  query=[time_param("since", "entries at or after"),
                         time_param("until", "entries before"),
                         Param("who", text, "only this token name"),
                         Param("action", text, "only this action, e.g. ban.add"),
                         LIMIT, CURSOR],
                  tag="audit"),
    ])]


def make_routes(
    *,
    clock: Any,
    location: Any,
    bans: Any,
    extensions: Any,
    cdr_store: Any,
    audit_store: Any,
    extra_routes: Iterable[Route] = (),
) -> list[Route]:
    """The whole /api/v1 route table, the OpenAPI route included."""
    routes: list[Route] = [
        *health_routes(clock),
        *registrations_api.routes(location, audit_store),
        *bans_api.routes(bans, audit_store),
        *extensions_api.routes(extensions, audit_store),
        *cdr_api.routes(cdr_store),
        *audit_routes(audit_store),
        *extra_routes,
    ]
    routes.append(openapi_route(lambda: routes, base=API_BASE))
    return routes


class _Tree(Resource):
    """A static branch whose unknown children and own path are JSON 404s."""

    def getChild(self, path: bytes, request: Any) -> Resource:
        return JSONError(APIError(404, "not_found", "no such resource"))

    def render(self, request: Any) -> Any:
        return self.getChild(b"", request).render(request)


class _Root(_Tree):
    """The top of the tree: every request passes the per-source rate limit here
    first (429 with Retry-After, before any routing or authentication)."""

    def __init__(self, limiter: RequestLimiter | None) -> None:
        super().__init__()
        self.limiter = limiter

    def getChildWithDefault(self, path: bytes, request: Any) -> Resource:
        if self.limiter is not None:
            wait = self.limiter.check(client_host(request))
            if wait:
                return JSONError(RequestLimiter.refusal(wait))
        return super().getChildWithDefault(path, request)


def make_root(
    routes: Sequence[Route], authenticate: Any, metrics: Metrics,
    limiter: RequestLimiter | None = None,
) -> Resource:
    """The resource tree: /api/v1 (the router) and /metrics, behind ``limiter``."""
    root, api = _Root(limiter), _Tree()
    root.putChild(b"api", api)  # type: ignore[arg-type]
    api.putChild(b"v1", Router(routes, authenticate))  # type: ignore[arg-type]
    root.putChild(b"metrics", metrics_resource(metrics))  # type: ignore[arg-type]
    return root


class AdminSite(Site):
    """The admin :class:`~twisted.web.server.Site`; ``routes`` is its /api/v1 route table."""

    def __init__(
        self, resource: Resource, routes: Sequence[Route], authenticator: Any,
        limiter: RequestLimiter | None = None,
    ) -> None:
        super().__init__(resource)
        self.routes = list(routes)
        self.authenticator = authenticator
        self.limiter = limiter
        self.displayTracebacks = False

    def replace_tokens(self, tokens: Iterable[Any]) -> None:
        """Accept ``tokens`` (``config.admin.tokens``) from now on: configuration reload."""
        self.authenticator.checker.replace(tokens)

    def replace_rate_limit(self, rate_limit: Any) -> None:
        """Apply ``config.admin.rate_limit`` (``requests``, ``window``): configuration reload."""
        if self.limiter is not None:
            self.limiter.configure(rate_limit.requests, rate_limit.window)


def make_admin_site(
    *,
    tokens: Iterable[Any],
    clock: Any,
    location: Any,
    bans: Any,
    extensions: Any,
    cdr_store: Any,
    audit_store: Any,
    metrics: Metrics,
    extra_routes: Iterable[Route] = (),
    max_failures: int = 5,
    failure_window: float = 60.0,
    lockout: float = 300.0,
    rate_limit_requests: int = 100,
    rate_limit_window: float = 10.0,
) -> AdminSite:
    """Build the admin HTTP site.

    :param tokens: ``config.admin.tokens`` (objects with ``name`` and ``sha256``).
    :param clock: IReactorTime (the reactor): expiry, lockouts, audit times.
    :param location: the LocationService (``all_bindings``, ``bindings``, ``remove``, ``clock``).
    :param bans: the BanList (``list``, ``ban``, ``lift``, ``is_trusted``, ``clock``).
    :param extensions: the admin extension store (SQLiteExtensionStore: ``list``, ``lookup``,
        ``source``, ``create``, ``update``, ``delete``).
    :param cdr_store: a store with the filtered ``query`` of SQLiteCDRStore.
    :param audit_store: SQLiteAuditStore-like (``record``, ``query``).
    :param metrics: the :class:`Metrics` served at /metrics; the registrations and bans
        gauges are pointed at ``location`` and ``bans`` here.
    :param extra_routes: more route groups (calls, reload ...), one line each.
    :param max_failures, failure_window, lockout: wrong tokens from one IP within
        ``failure_window`` seconds that lock it out for ``lockout`` seconds.
    :param rate_limit_requests, rate_limit_window: ``admin.rate_limit``: requests one
        IP may make per window (0: no limit); sources trusted by ``bans`` are exempt.
    """
    authenticate = make_authenticator(
        tokens, clock, metrics=metrics,
        max_failures=max_failures, window=failure_window, lockout=lockout,
    )
    routes = make_routes(
        clock=clock, location=location, bans=bans, extensions=extensions,
        cdr_store=cdr_store, audit_store=audit_store, extra_routes=extra_routes,
    )
    metrics.watch("registrations", lambda: len(location.all_bindings()))
    metrics.watch("bans", lambda: len(bans.list()))
    limiter = RequestLimiter(
        clock, requests=rate_limit_requests, window=rate_limit_window, trusted=bans.is_trusted,
    )
    root = make_root(routes, authenticate, metrics, limiter)
    return AdminSite(root, routes, authenticate, limiter)
