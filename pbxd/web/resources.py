"""A small JSON resource framework on twisted.web (layer 6).

An API is a table of :class:`Route` objects, each a path template
(``/bans/{address}``) with one :class:`Operation` per HTTP method. The same
table serves requests (:class:`Router`) and produces the OpenAPI document
(:mod:`pbxd.web.openapi`), so the two cannot drift.

:class:`Router` does, in order: match the path (404), the method (405 with an
``Allow`` header), authenticate (401/429), parse the declared query
parameters (400 naming an unknown or invalid one), parse and check the JSON
body against the operation's schema (400 naming the field), then call the
handler with a :class:`Call`. A handler returns a JSON-able value (200), a
:class:`Response`, or a Deferred/coroutine of one, and raises
:class:`APIError` for an error response. Every error is
``{"error": {"code": ..., "message": ...}}``; unexpected exceptions are
logged and answered with a bare 500, never a traceback or a file path.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from pbxd.web.schema import SchemaError, check

__all__ = [
    "APIError",
    "Call",
    "Operation",
    "Param",
    "Reply",
    "Response",
    "Route",
    "Router",
    "JSONError",
    "json_bytes",
]

MAX_BODY = 64 * 1024
JSON_TYPE = "application/json"


class APIError(Exception):
    """An error response: HTTP ``status``, a machine ``code`` and a human ``message``.

    ``field`` names the offending request field for validation errors.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def invalid(field: str, message: str) -> APIError:
    """A 400 ``invalid_field`` error naming ``field``."""
    return APIError(400, "invalid_field", f"{field}: {message}", field=field)


def not_found(what: str) -> APIError:
    """A 404 ``not_found`` error."""
    return APIError(404, "not_found", f"{what} not found")


@dataclass(frozen=True)
class Response:
    """What a handler may return instead of a bare JSON value.

    ``raw`` (with ``content_type``) replaces the JSON encoding of ``body``.
    """

    body: Any = None
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = JSON_TYPE


@dataclass(frozen=True)
class Param:
    """A query parameter: converted by its schema ``type``, checked against the
    schema, then passed through ``parse`` (a ValueError becomes a 400)."""

    name: str
    schema: Mapping[str, Any]
    description: str = ""
    required: bool = False
    parse: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Reply:
    """A documented response: a description and its body schema per media type."""

    description: str
    schema: Mapping[str, Any] | None = None
    media_type: str = JSON_TYPE
    alternatives: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """One method of a route.

    ``responses`` documents the statuses the handler itself produces; the
    framework adds 400/401/404/429 as they apply. ``body`` is the JSON Schema
    of the request body (None: no body is read).
    """

    method: str
    handler: Callable[[Call], Any]
    summary: str
    responses: Mapping[int, Reply]
    query: Sequence[Param] = ()
    body: Mapping[str, Any] | None = None
    auth: bool = True
    tag: str = ""
    description: str = ""


@dataclass(frozen=True)
class Route:
    """A path template (segments, ``{name}`` captures one) and its operations."""

    path: str
    operations: Sequence[Operation]
    params: Mapping[str, str] = field(default_factory=dict)  # path param -> description

    @property
    def segments(self) -> tuple[str, ...]:
        """The path split on ``/`` (no empty segments)."""
        return tuple(s for s in self.path.split("/") if s)

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        """The captured path parameters if ``segments`` match, else None."""
        mine = self.segments
        if len(mine) != len(segments):
            return None
        captured: dict[str, str] = {}
        for pattern, segment in zip(mine, segments, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                if not segment:
                    return None
                captured[pattern[1:-1]] = segment
            elif pattern != segment:
                return None
        return captured

    def methods(self) -> list[str]:
        """The methods served, in table order."""
        return [op.method for op in self.operations]


@dataclass
class Call:
    """One request as a handler sees it."""

    request: Any
    path: dict[str, str]
    query: dict[str, Any]
    body: Any
    user: str | None
    client: str


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def client_host(request: Any) -> str:
    """The peer IP of ``request`` (``"unknown"`` if it has none)."""
    address = request.getClientAddress()
    return getattr(address, "host", None) or "unknown"


def write_response(request: Any, response: Response) -> None:
    """Write ``response`` and finish ``request`` (nothing if it is gone)."""
    if getattr(request, "_pbxd_gone", False):
        return
    request.setResponseCode(response.status)
    data = response.raw if response.raw is not None else json_bytes(response.body)
    request.setHeader(b"content-type", response.content_type.encode())
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")
    for name, value in response.headers.items():
        request.setHeader(name.encode(), value.encode())
    if response.status != 204:
        request.setHeader(b"content-length", str(len(data)).encode())
        request.write(data)
    request.finish()


def error_response(error: APIError) -> Response:
    """The Response for an :class:`APIError`."""
    return Response(error.body(), error.status, error.headers)


class JSONError(Resource):
    """A leaf answering every request with one JSON error (e.g. 404 off the tree)."""

    isLeaf = True

    def __init__(self, error: APIError) -> None:
        super().__init__()
        self.error = error

    def render(self, request: Any) -> Any:
        write_response(request, error_response(self.error))
        return NOT_DONE_YET


#: Called with the request; fires with the user name or fails with an APIError.
Authenticate = Callable[[Any], Deferred]


def _convert(param: Param, raw: str) -> Any:
    kind = param.schema.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "boolean":
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
    except ValueError:
        raise invalid(param.name, f"must be {kind}") from None
    return raw


class Router(Resource):
    """Serves a route table below the point it is mounted (a leaf resource)."""

    isLeaf = True
    log = Logger()

    def __init__(self, routes: Sequence[Route], authenticate: Authenticate) -> None:
        super().__init__()
        self.routes = list(routes)
        self.authenticate = authenticate
        seen: set[tuple[str, ...]] = set()
        for route in self.routes:
            if route.segments in seen:
                raise ValueError(f"duplicate route {route.path}")
            seen.add(route.segments)

    def render(self, request: Any) -> Any:
        """Dispatch; the answer is always written asynchronously."""
        request._pbxd_gone = False

        def gone(_: Any) -> None:
            request._pbxd_gone = True

        request.notifyFinish().addErrback(gone)
        ensureDeferred(self._serve(request)).addErrback(self._crashed, request)
        return NOT_DONE_YET

    def _crashed(self, failure: Any, request: Any) -> None:
        self.log.failure("admin API failed writing a response", failure)

    def find(self, segments: Sequence[str]) -> tuple[Route, dict[str, str]] | None:
        """The route matching ``segments`` and its captured parameters."""
        for route in self.routes:
            captured = route.match(segments)
            if captured is not None:
                return route, captured
        return None

    async def _serve(self, request: Any) -> None:
        try:
            response = await self._dispatch(request)
        except APIError as e:
            response = error_response(e)
        except Exception:
            self.log.failure(
                "admin API: {method} {path} failed",
                method=request.method.decode("latin-1"),
                path=request.path.decode("latin-1", "replace"),
            )
            response = error_response(APIError(500, "internal_error", "internal server error"))
        write_response(request, response)

    async def _dispatch(self, request: Any) -> Response:
        try:
            segments = [unquote(s.decode("utf-8"), errors="strict") for s in request.postpath]
        except UnicodeDecodeError:
            raise APIError(400, "bad_path", "the path is not valid UTF-8") from None
        while segments and segments[-1] == "":
            segments.pop()
        found = self.find(segments)
        if found is None:
            raise APIError(404, "not_found", "no such resource")
        route, params = found
        method = request.method.decode("latin-1")
        operation = next((op for op in route.operations if op.method == method), None)
        if operation is None:
            allow = ", ".join(route.methods())
            raise APIError(
                405,
                "method_not_allowed",
                f"{method} is not allowed here; allowed: {allow}",
                headers={"Allow": allow},
            )
        user = None
        if operation.auth:
            user = await self.authenticate(request)
        call = Call(
            request=request,
            path=params,
            query=self._query(request, operation),
            body=self._body(request, operation),
            user=user,
            client=client_host(request),
        )
        result = operation.handler(call)
        if inspect.isawaitable(result):
            result = await result
        return result if isinstance(result, Response) else Response(result)

    @staticmethod
    def _query(request: Any, operation: Operation) -> dict[str, Any]:
        declared = {p.name: p for p in operation.query}
        values: dict[str, Any] = {}
        for raw_name, raw_values in (request.args or {}).items():
            name = raw_name.decode("utf-8", "replace")
            param = declared.get(name)
            if param is None:
                raise invalid(name, "is not a known query parameter")
            if len(raw_values) != 1:
                raise invalid(name, "must be given once")
            try:
                text = raw_values[0].decode("utf-8")
            except UnicodeDecodeError:
                raise invalid(name, "is not valid UTF-8") from None
            value = _convert(param, text)
            try:
                check(value, param.schema, name)
                values[name] = param.parse(value) if param.parse else value
            except SchemaError as e:
                raise invalid(name, e.message) from None
            except ValueError as e:
                raise invalid(name, str(e)) from None
        for param in operation.query:
            if param.required and param.name not in values:
                raise invalid(param.name, "is required")
        return values

    @staticmethod
    def _body(request: Any, operation: Operation) -> Any:
        if operation.body is None:
            return None
        content = request.content
        data = content.read(MAX_BODY + 1) if content is not None else b""
        if len(data) > MAX_BODY:
            raise APIError(413, "body_too_large", f"the body is over {MAX_BODY} bytes")
        if not data.strip():
            raise invalid("body", "a JSON object is required")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise APIError(400, "invalid_json", f"the body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise invalid("body", "must be a JSON object")
        try:
            check(body, operation.body)
        except SchemaError as e:
            raise invalid(e.field or "body", e.message) from None
        return body
