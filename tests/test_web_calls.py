"""/api/v1/calls and /api/v1/reload, driven in memory through StubTreq."""

from __future__ import annotations

import pytest
from webhelpers import NOW, OTHER_TOKEN, Env

from pbxd.errors import ConfigError


@pytest.fixture
def env() -> Env:
    return Env()


# -- calls ------------------------------------------------------------------------


def test_calls_list_shows_legs_state_duration_codecs_and_media(env):
    call_id = env.calls.add("1000", "1001")
    env.clock.advance(12.5)
    reply = env.call("GET", "/api/v1/calls")
    assert reply.status == 200
    (call,) = reply.json
    assert call["id"] == call_id
    assert (call["caller"], call["destination"], call["state"]) == ("1000", "1001", "ANSWERED")
    assert call["duration"] == 12.5
    assert call["codecs"] == ["PCMU"]
    assert call["start"] == "2023-11-14T22:13:20.000Z"
    assert call["legs"][0]["role"] == "caller"
    assert call["media"]["a"]["packets_in"] == 50


def test_get_one_call_and_unknown_call_is_404(env):
    call_id = env.calls.add("1000", "1001", answered=False)
    reply = env.call("GET", f"/api/v1/calls/{call_id}")
    assert reply.status == 200 and reply.json["answer"] is None
    missing = env.call("GET", "/api/v1/calls/nope")
    assert missing.status == 404
    assert missing.json["error"]["code"] == "not_found"


def test_hangup_ends_the_call_and_is_audited(env):
    call_id = env.calls.add("1000", "1001")
    reply = env.call("DELETE", f"/api/v1/calls/{call_id}")
    assert reply.status == 200 and reply.json["id"] == call_id
    assert env.call("GET", "/api/v1/calls").json == []
    assert env.calls.ended == [(call_id, "admin hangup")]
    (entry,) = env.audit_entries()
    assert (entry["who"], entry["action"], entry["target"]) == ("ops", "call.hangup", call_id)
    assert env.call("DELETE", f"/api/v1/calls/{call_id}").status == 404
    assert len(env.audit_entries()) == 1


def test_originate_starts_a_call_lists_it_and_audits_it(env):
    reply = env.call("POST", "/api/v1/calls", body={"from": "1000", "to": "1001"})
    assert reply.status == 201
    assert reply.json["from"] == "1000" and reply.json["timeout"] == 30.0
    call_id = reply.json["id"]
    assert reply.header("location") == f"/api/v1/calls/{call_id}"
    assert [c["id"] for c in env.call("GET", "/api/v1/calls").json] == [call_id]
    (entry,) = env.audit_entries()
    assert entry["action"] == "call.originate" and entry["target"] == "1000->1001"
    assert entry["details"] == {"id": call_id, "timeout": 30.0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "1001"}, "from"),
        ({"from": "1000"}, "to"),
        ({"from": "1000", "to": "10 01"}, "to"),
        ({"from": "", "to": "1001"}, "from"),
        ({"from": "1000", "to": "1001", "timeout": 0}, "timeout"),
        ({"from": "1000", "to": "1001", "timeout": "soon"}, "timeout"),
        ({"from": "1000", "to": "1001", "colour": "red"}, "colour"),
    ],
)
def test_originate_validation_errors_name_the_field(env, body, field):
    reply = env.call("POST", "/api/v1/calls", body=body)
    assert reply.status == 400
    assert reply.json["error"]["field"] == field
    assert env.calls.calls == {} and env.audit_entries() == []


def test_originate_from_an_unknown_extension_is_404(env):
    reply = env.call("POST", "/api/v1/calls", body={"from": "4321", "to": "1000"})
    assert reply.status == 404 and reply.json["error"]["field"] == "from"
    assert env.calls.calls == {}


@pytest.mark.parametrize(
    ("refusal", "status", "code"),
    [
        (LookupError("1000 is not registered"), 404, "not_found"),
        (ValueError("to: cannot be dialled"), 400, "invalid_field"),
        (RuntimeError("no RTP ports left"), 409, "originate_failed"),
    ],
)
def test_originate_refused_by_the_manager(env, refusal, status, code):
    env.calls.refuse = refusal
    reply = env.call("POST", "/api/v1/calls", body={"from": "1000", "to": "1001"})
    assert reply.status == status
    assert reply.json["error"]["code"] == code
    assert env.audit_entries() == []


def test_originate_while_shutting_down_is_503(env):
    env.calls.stopping = True
    reply = env.call("POST", "/api/v1/calls", body={"from": "1000", "to": "1001"})
    assert reply.status == 503 and reply.header("retry-after") == "30"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/calls"), ("POST", "/api/v1/calls"), ("GET", "/api/v1/calls/x"),
    ("DELETE", "/api/v1/calls/x"), ("POST", "/api/v1/reload"),
])
def test_calls_and_reload_need_a_right_token(env, method, path):
    call_id = env.calls.add("1000", "1001")
    body = {"from": "1000", "to": "1001"} if path.endswith("calls") and method == "POST" else None
    for token in (None, "wrong-token-123456789", OTHER_TOKEN[:-1]):
        reply = env.call(method, path.replace("/x", f"/{call_id}"), token=token, body=body)
        assert reply.status == 401, (method, path, token)
    assert list(env.calls.calls) == [call_id]
    assert env.reloader.count == 0


def test_wrong_method_on_calls_is_405(env):
    reply = env.call("PUT", "/api/v1/calls/abc", body={})
    assert reply.status == 405 and reply.header("allow") == "GET, DELETE"
    assert env.call("GET", "/api/v1/reload").status == 405


# -- reload -----------------------------------------------------------------------


def test_reload_answers_what_changed_and_is_audited(env):
    env.clock.advance(5)
    reply = env.call("POST", "/api/v1/reload", token=OTHER_TOKEN)
    assert reply.status == 200
    assert reply.json["applied"] == ["extensions", "security"]
    (entry,) = env.audit_entries()
    assert (entry["who"], entry["action"]) == ("noc", "config.reload")
    assert entry["target"] == "/etc/pbxd/config.yml"
    assert entry["time"] == NOW + 5


def test_reload_of_an_invalid_file_is_409_with_the_config_error_line(env):
    env.reloader.error = ConfigError("sip.listen[0]", "port 70000 is out of range", "/etc/x.yml")
    reply = env.call("POST", "/api/v1/reload")
    assert reply.status == 409
    assert reply.json["error"]["code"] == "invalid_config"
    assert reply.json["error"]["message"].startswith(
        "/etc/x.yml: sip.listen[0]: port 70000 is out of range")
    assert env.audit_entries() == []


def test_reload_that_cannot_run_now_is_409(env):
    env.reloader.error = RuntimeError("a reload is already running")
    reply = env.call("POST", "/api/v1/reload")
    assert reply.status == 409 and reply.json["error"]["code"] == "reload_refused"
