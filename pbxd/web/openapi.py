"""The OpenAPI 3.1 document of the admin API, built from the route table (layer 6).

The document is derived from the same :class:`~pbxd.web.resources.Route`
objects that serve requests, so it lists exactly the routes and methods
served. The framework's own answers are added to each operation: 400 when
it takes parameters or a body, 401 when it needs a token, 404 when its
path has parameters, 429 always (per-source rate limit, token lockout). 405 (with ``Allow``) applies to every path and is
described once in ``info.description``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from pbxd import __version__
from pbxd.web.fields import ERROR_REF, reply
from pbxd.web.resources import Call, Operation, Reply, Route
from pbxd.web.schema import ERROR_SCHEMA

__all__ = ["build_document", "openapi_route"]

DESCRIPTION = """\
The JSON admin API of pbxd. Every request except `/health` and `/openapi.json` needs
`Authorization: Bearer <token>` with a token from `admin.tokens`; repeated failures from
one address lock it out for a while (429 with `Retry-After`), and so does sending more
than `admin.rate_limit` requests from one address (trusted networks excepted). Every error has the body
`{"error": {"code": "...", "message": "..."}}` (and `field` for a validation error).
A method a path does not serve gets 405 with an `Allow` header. Changes are recorded
in the audit trail (`/audit`) under the token's name."""

_STATUS_TEXT = {
    400: "invalid parameter or body (the field is named)",
    401: "missing or wrong bearer token",
    404: "not found",
    429: "too many requests from this address, or locked out after repeated"
         " authentication failures (see Retry-After)",
}


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"


def _content(r: Reply) -> dict[str, Any]:
    media = {r.media_type: {"schema": r.schema if r.schema is not None else {}}}
    media.update({k: {"schema": v} for k, v in r.alternatives.items()})
    return media


def _operation(route: Route, op: Operation) -> dict[str, Any]:
    path_params = [s[1:-1] for s in route.segments if s.startswith("{")]
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
         "description": route.params.get(name, "")}
        for name in path_params
    ]
    parameters += [
        {"name": p.name, "in": "query", "required": p.required, "schema": dict(p.schema),
         "description": p.description}
        for p in op.query
    ]
    responses: dict[int, Reply] = dict(op.responses)
    if path_params or op.query or op.body is not None:
        responses.setdefault(400, Reply(_STATUS_TEXT[400], ERROR_REF))
    if path_params:
        responses.setdefault(404, Reply(_STATUS_TEXT[404], ERROR_REF))
    if op.auth:
        responses.setdefault(401, Reply(_STATUS_TEXT[401], ERROR_REF))
    responses.setdefault(429, Reply(_STATUS_TEXT[429], ERROR_REF))
    doc: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{_slug(route.path)}",
        "summary": op.summary,
        "tags": [op.tag] if op.tag else [],
        "parameters": parameters,
        "responses": {
            str(status): {"description": r.description, "content": _content(r)}
            for status, r in sorted(responses.items())
        },
    }
    if op.description:
        doc["description"] = op.description
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": dict(op.body)}},
        }
    if not op.auth:
        doc["security"] = []
    return doc


def build_document(routes: Sequence[Route], *, base: str = "/api/v1") -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``routes`` served under ``base``."""
    paths: dict[str, Any] = {}
    for route in routes:
        paths[route.path] = {op.method.lower(): _operation(route, op) for op in route.operations}
    return {
        "openapi": "3.1.0",
        "info": {"title": "pbxd admin API", "version": __version__, "description": DESCRIPTION},
        "servers": [{"url": base}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
    }


def openapi_route(routes: Callable[[], Sequence[Route]], *, base: str = "/api/v1") -> Route:
    """``GET /openapi.json`` (no token needed) over the final route table ``routes()``."""
    cache: dict[str, Any] = {}

    def document(call: Call) -> dict[str, Any]:
        if "doc" not in cache:
            cache["doc"] = build_document(routes(), base=base)
        return cache["doc"]

    return Route("/openapi.json", [
        Operation("GET", document, "This OpenAPI document",
                  {200: reply("the OpenAPI 3.1 document", {"type": "object"})},
                  auth=False, tag="meta"),
    ])
