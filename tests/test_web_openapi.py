"""The OpenAPI document matches what the server really does.

The route table is introspected and every documented path and method is
requested: served routes and documented ones are the same set, each answer's
status is documented for that operation and its JSON body matches the
documented schema, undocumented methods get 405, and auth-free operations are
exactly those documented with ``security: []``. docs/admin-api.md is checked
against the document too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from webhelpers import Env

from pbxd.web.apidoc import reference_markdown
from pbxd.web.schema import check

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "admin-api.md"
METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")

VM_ID = "msg-1700000000-0000abcd"
REC_ID = "20231114-221320-00a00001"
#: A valid request for every documented operation: path parameters and body.
EXAMPLES = {
    ("GET", "/health"): ({}, None),
    ("GET", "/openapi.json"): ({}, None),
    ("GET", "/registrations"): ({}, None),
    ("GET", "/registrations/{aor}"): ({"aor": "1000"}, None),
    ("DELETE", "/registrations/{aor}"): ({"aor": "1000"}, None),
    ("GET", "/bans"): ({}, None),
    ("POST", "/bans"): ({}, {"address": "203.0.113.50", "seconds": 60, "reason": "test"}),
    ("GET", "/bans/{address}"): ({"address": "203.0.113.9"}, None),
    ("DELETE", "/bans/{address}"): ({"address": "203.0.113.9"}, None),
    ("GET", "/extensions"): ({}, None),
    ("POST", "/extensions"): ({}, {"number": "3000", "password": "a-long-password"}),
    ("GET", "/extensions/{number}"): ({"number": "2000"}, None),
    ("PUT", "/extensions/{number}"): ({"number": "2000"}, {"name": "Renamed"}),
    ("DELETE", "/extensions/{number}"): ({"number": "2000"}, None),
    ("GET", "/cdr"): ({}, None),
    ("GET", "/audit"): ({}, None),
    ("GET", "/calls"): ({}, None),
    ("POST", "/calls"): ({}, {"from": "1000", "to": "2000", "timeout": 20}),
    ("GET", "/calls/{id}"): ({"id": "00a00001"}, None),
    ("DELETE", "/calls/{id}"): ({"id": "00a00001"}, None),
    ("POST", "/reload"): ({}, None),
    ("GET", "/voicemail"): ({}, None),
    ("GET", "/voicemail/{box}"): ({"box": "1000"}, None),
    ("GET", "/voicemail/{box}/{message}"): ({"box": "1000", "message": VM_ID}, None),
    ("DELETE", "/voicemail/{box}/{message}"): ({"box": "1000", "message": VM_ID}, None),
    ("GET", "/recordings"): ({}, None),
    ("GET", "/recordings/{id}"): ({"id": REC_ID}, None),
    ("DELETE", "/recordings/{id}"): ({"id": REC_ID}, None),
}


def _populated() -> Env:
    env = Env()
    env.register("1000", "sip:1000@192.168.1.5")
    env.bans.ban("203.0.113.9", 600, "scanner")
    env.call("POST", "/api/v1/extensions", body={"number": "2000", "password": "pw-2000-long"})
    env.add_cdr("c1", 1.7e9, "1000", "2000")
    env.calls.add("1000", "2000")  # id 00a00001
    env.add_voicemail("1000", VM_ID)
    assert env.add_recording("00a00001") == REC_ID
    return env


@pytest.fixture
def env() -> Env:
    return _populated()


def _document(env: Env) -> dict:
    reply = env.call("GET", "/api/v1/openapi.json", token=None)
    assert reply.status == 200
    return reply.json


def _operations(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def _fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def _assert_documented(document: dict, method: str, path: str, reply) -> None:
    operation = document["paths"][path][method.lower()]
    documented = operation["responses"]
    assert str(reply.status) in documented, (method, path, reply.status, reply.raw[:200])
    content = documented[str(reply.status)]["content"]
    media = (reply.header("content-type") or "").split(";")[0]
    assert media in content, (method, path, media)
    if media == "application/json":
        check(json.loads(reply.raw), content[media]["schema"],
              components=document["components"]["schemas"])


def test_document_lists_exactly_the_routes_served(env):
    document = _document(env)
    served = {(op.method, route.path) for route in env.site.routes for op in route.operations}
    assert _operations(document) == served
    assert set(EXAMPLES) == served, "every route needs an example request in this test"


def test_document_is_valid_openapi_3_1(env):
    validator = pytest.importorskip("openapi_spec_validator")
    document = _document(env)
    assert document["openapi"].startswith("3.1")
    validator.validate(document)


@pytest.mark.parametrize(("method", "path"), sorted(EXAMPLES))
def test_each_operation_answers_as_documented(method, path):
    env = _populated()
    document = _document(env)
    values, body = EXAMPLES[(method, path)]
    url = "/api/v1" + _fill(path, values)
    reply = env.call(method, url, body=body)
    assert 200 <= reply.status < 300, (method, path, reply.raw[:300])
    _assert_documented(document, method, path, reply)


@pytest.mark.parametrize(("method", "path"), sorted(EXAMPLES))
def test_each_operation_errors_are_documented(method, path):
    env = _populated()
    document = _document(env)
    operation = document["paths"][path][method.lower()]
    values, body = EXAMPLES[(method, path)]
    url = "/api/v1" + _fill(path, values)
    unauthenticated = env.call(method, url, token=None, body=body)
    if operation.get("security") == []:
        assert unauthenticated.status == 200
    else:
        assert unauthenticated.status == 401
        _assert_documented(document, method, path, unauthenticated)
    if values:  # an unknown id
        unknown = {name: "199.51.0.0" if name == "address" else "9999" for name in values}
        reply = env.call(method, "/api/v1" + _fill(path, unknown), body=body)
        assert reply.status == 404, (method, path)
        _assert_documented(document, method, path, reply)
    if operation["parameters"] or body is not None:
        query = {"no_such_parameter": "1"}
        d = env.call(method, url, body=body, params=query)
        assert d.status == 400
        _assert_documented(document, method, path, d)


def test_methods_not_documented_get_405(env):
    document = _document(env)
    for path, item in document["paths"].items():
        values = {"aor": "1000", "address": "203.0.113.9", "number": "2000", "id": "00a00001",
                  "box": "1000", "message": VM_ID}
        for method in METHODS:
            if method.lower() in item:
                continue
            reply = env.call(method, "/api/v1" + _fill(path, values), body={})
            assert reply.status == 405, (method, path)
            allowed = {m.strip() for m in reply.header("allow").split(",")}
            assert allowed == {m.upper() for m in item}
            check(reply.json, document["components"]["schemas"]["Error"])


def test_admin_api_doc_holds_the_generated_reference(env):
    document = _document(env)
    text = DOC_PATH.read_text(encoding="utf-8")
    assert reference_markdown(document) in text, (
        "docs/admin-api.md is out of date: run python -m pbxd.web.apidoc docs/admin-api.md"
    )
