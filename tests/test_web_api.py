"""The /api/v1 endpoints, driven in memory through StubTreq over real stores."""

from __future__ import annotations

import csv
import io

import pytest
from webhelpers import NOW, OTHER_TOKEN, Env, fired


@pytest.fixture
def env() -> Env:
    return Env()


# -- framework behaviour --------------------------------------------------------


def test_unknown_path_is_a_json_404(env):
    for path in ("/api/v1/nothing", "/api/v1", "/api", "/elsewhere", "/api/v2/health"):
        reply = env.call("GET", path)
        assert reply.status == 404, path
        assert reply.json == {"error": {"code": "not_found", "message": "no such resource"}}


def test_wrong_method_is_405_with_allow_and_json_body(env):
    reply = env.call("PATCH", "/api/v1/bans/203.0.113.1")
    assert reply.status == 405
    assert reply.header("allow") == "GET, DELETE"
    assert reply.json["error"]["code"] == "method_not_allowed"
    assert reply.header("content-type") == "application/json"


def test_trailing_slash_is_the_same_resource(env):
    assert env.call("GET", "/api/v1/bans/").status == 200


def test_unknown_query_parameter_is_named(env):
    reply = env.call("GET", "/api/v1/bans", params={"colour": "red"})
    assert reply.status == 400
    assert reply.json["error"]["field"] == "colour"


def test_body_that_is_not_json_is_400(env):
    reply = env.call("POST", "/api/v1/bans", data=b"{address: 1")
    assert reply.status == 400
    assert reply.json["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "address"),
        ({"address": 7}, "address"),
        ({"address": "203.0.113.5", "seconds": -1}, "seconds"),
        ({"address": "203.0.113.5", "seconds": "ten"}, "seconds"),
        ({"address": "203.0.113.5", "colour": "red"}, "colour"),
        ({"address": "not-an-ip"}, "address"),
    ],
)
def test_ban_validation_errors_name_the_field(env, body, field):
    reply = env.call("POST", "/api/v1/bans", body=body)
    assert reply.status == 400
    assert reply.json["error"]["code"] == "invalid_field"
    assert reply.json["error"]["field"] == field
    assert env.bans.list() == []
    assert env.audit_entries() == []


def test_unexpected_error_is_a_bare_500_without_traceback(env):
    def broken():
        raise RuntimeError("/secret/path/db.sqlite exploded")

    env.location.all_bindings = broken
    reply = env.call("GET", "/api/v1/registrations")
    assert reply.status == 500
    assert reply.json == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert b"secret" not in reply.raw and b"Traceback" not in reply.raw


# -- health ----------------------------------------------------------------------


def test_health_reports_version_and_uptime(env):
    env.clock.advance(42)
    body = env.call("GET", "/api/v1/health", token=None).json
    assert body["status"] == "ok" and body["uptime"] == 42


# -- registrations ---------------------------------------------------------------


def test_registrations_list_contact_flow_user_agent_and_expiry(env):
    env.register("1000", "sip:1000@192.168.1.5:5060", expires=600, ua="Yealink T46")
    env.clock.advance(100)
    (binding,) = env.call("GET", "/api/v1/registrations").json
    assert binding["aor"] == "1000"
    assert binding["contact"] == "sip:1000@192.168.1.5:5060"
    assert binding["flow"] == {"transport": "UDP", "host": "192.0.2.10", "port": 5060,
                               "connected": False}
    assert binding["user_agent"] == "Yealink T46"
    assert binding["expires"] == 500


def test_registrations_filter_by_aor_and_get_one(env):
    env.register("1000", "sip:1000@192.168.1.5")
    env.register("1001", "sip:1001@192.168.1.6")
    assert [b["aor"] for b in env.call("GET", "/api/v1/registrations").json] == ["1000", "1001"]
    only = env.call("GET", "/api/v1/registrations", params={"aor": "1001"}).json
    assert [b["aor"] for b in only] == ["1001"]
    assert env.call("GET", "/api/v1/registrations/1001").json[0]["contact"] == "sip:1001@192.168.1.6"
    assert env.call("GET", "/api/v1/registrations/1999").status == 404


def test_delete_registration_unregisters_and_is_audited(env):
    env.register("1000", "sip:1000@192.168.1.5")
    env.register("1000", "sip:1000@192.168.1.7")
    reply = env.call("DELETE", "/api/v1/registrations/1000",
                     params={"contact": "sip:1000@192.168.1.5"})
    assert reply.status == 200
    assert reply.json == {"aor": "1000", "removed": ["sip:1000@192.168.1.5"]}
    assert [b.contact for b in env.location.bindings("1000")] == ["sip:1000@192.168.1.7"]
    assert env.call("DELETE", "/api/v1/registrations/1000").json["removed"] == [
        "sip:1000@192.168.1.7"]
    assert env.location.bindings("1000") == []
    entries = env.audit_entries()
    assert [(e["who"], e["action"], e["target"]) for e in entries] == [
        ("ops", "registration.delete", "1000")] * 2
    assert env.call("DELETE", "/api/v1/registrations/1000").status == 404


# -- bans ------------------------------------------------------------------------


def test_ban_add_list_lift_with_audit(env):
    reply = env.call("POST", "/api/v1/bans",
                     body={"address": "203.0.113.9", "seconds": 600, "reason": "scanner"})
    assert reply.status == 201
    assert reply.json["expires"] == 600 and reply.json["reason"] == "scanner"
    assert env.bans.is_banned("203.0.113.9")
    env.clock.advance(100)
    (listed,) = env.call("GET", "/api/v1/bans").json
    assert listed["address"] == "203.0.113.9" and listed["expires"] == 500
    assert env.call("GET", "/api/v1/bans/203.0.113.9").json["reason"] == "scanner"
    assert env.call("DELETE", "/api/v1/bans/203.0.113.9", token=OTHER_TOKEN).status == 200
    assert not env.bans.is_banned("203.0.113.9")
    assert env.call("DELETE", "/api/v1/bans/203.0.113.9").status == 404
    assert env.call("GET", "/api/v1/bans/203.0.113.9").status == 404
    entries = env.audit_entries()
    assert [(e["who"], e["action"], e["target"]) for e in entries] == [
        ("ops", "ban.add", "203.0.113.9"), ("noc", "ban.lift", "203.0.113.9")]
    assert entries[0]["details"] == {"seconds": 600, "reason": "scanner"}
    assert entries[0]["time"] == NOW


def test_trusted_address_cannot_be_banned(env):
    reply = env.call("POST", "/api/v1/bans", body={"address": "10.1.2.3"})
    assert reply.status == 409
    assert reply.json["error"]["code"] == "trusted_address"
    assert env.bans.list() == []


def test_ban_path_with_bad_address_names_it(env):
    reply = env.call("DELETE", "/api/v1/bans/nonsense")
    assert reply.status == 400 and reply.json["error"]["field"] == "address"


def test_audit_failure_is_reported_not_hidden(env):
    env.database.pool.fail_next()
    reply = env.call("POST", "/api/v1/bans", body={"address": "203.0.113.9"})
    assert reply.status == 500
    assert reply.json["error"]["code"] == "audit_failed"


# -- extensions ------------------------------------------------------------------


def test_extensions_list_flags_config_ones(env):
    listed = env.call("GET", "/api/v1/extensions").json
    assert listed == [{"number": "1000", "name": "Alice", "context": "default",
                       "source": "config", "credentials": ["password"],
                       "max_contacts": None, "voicemail_pin": False}]


def test_config_extensions_are_read_only(env):
    for method, body in (("PUT", {"name": "Bob"}), ("DELETE", None)):
        reply = env.call(method, "/api/v1/extensions/1000", body=body)
        assert reply.status == 409, method
        assert reply.json["error"]["code"] == "read_only"
    reply = env.call("POST", "/api/v1/extensions", body={"number": "1000", "password": "x" * 12})
    assert reply.status == 409
    assert env.audit_entries() == []


def test_extension_create_update_delete(env):
    reply = env.call("POST", "/api/v1/extensions", body={
        "number": "2000", "name": "Bob", "password": "bob-password", "voicemail_pin": "1234"})
    assert reply.status == 201
    assert reply.header("location") == "/api/v1/extensions/2000"
    assert reply.json["source"] == "api"
    assert reply.json["credentials"] == ["ha1", "ha1_sha256"]
    assert b"bob-password" not in reply.raw and b"1234" not in reply.raw
    stored = fired(env.extensions.getExtension("2000"))
    assert stored.password is None and len(stored.ha1) == 32
    updated = env.call("PUT", "/api/v1/extensions/2000", body={"name": "Robert"}).json
    assert updated["name"] == "Robert" and updated["voicemail_pin"] is True
    assert fired(env.extensions.getExtension("2000")).ha1 == stored.ha1
    assert env.call("GET", "/api/v1/extensions/2000").json["name"] == "Robert"
    assert env.call("DELETE", "/api/v1/extensions/2000").status == 200
    assert env.call("GET", "/api/v1/extensions/2000").status == 404
    assert fired(env.extensions.getExtension("2000")) is None
    entries = env.audit_entries()
    assert [(e["action"], e["target"]) for e in entries] == [
        ("extension.create", "2000"), ("extension.update", "2000"), ("extension.delete", "2000")]
    assert entries[0]["details"]["password"] == "***"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "no number", "password": "long-enough"}, "number"),
        ({"number": "20 00", "password": "long-enough"}, "number"),
        ({"number": "2000"}, "password"),
        ({"number": "2000", "password": "short"}, "password"),
        ({"number": "2000", "ha1": "abc"}, "ha1"),
        ({"number": "2000", "password": "long-enough", "context": "nowhere"}, "context"),
        ({"number": "2000", "password": "long-enough", "max_contacts": 0}, "max_contacts"),
        ({"number": "2000", "password": "long-enough", "secret": 1}, "secret"),
    ],
)
def test_extension_validation_names_the_field(env, body, field):
    reply = env.call("POST", "/api/v1/extensions", body=body)
    assert reply.status == 400, reply.json
    assert reply.json["error"]["field"] == field
    assert fired(env.extensions.getExtension("2000")) is None


def test_update_or_delete_unknown_extension_is_404(env):
    assert env.call("PUT", "/api/v1/extensions/3000", body={"name": "x"}).status == 404
    assert env.call("DELETE", "/api/v1/extensions/3000").status == 404
    assert env.call("GET", "/api/v1/extensions/3000").status == 404


# -- cdr ---------------------------------------------------------------------------


def _cdrs(env):
    env.add_cdr("c1", NOW, "1000", "2000", "answered")
    env.add_cdr("c2", NOW + 3600, "1001", "2000", "busy")
    env.add_cdr("c3", NOW + 7200, "1000", "2001", "answered")
    env.add_cdr("c4", NOW + 10800, "1000", "2000", "no_answer")


def test_cdr_cursor_paging_walks_every_record_once(env):
    _cdrs(env)
    seen, params = [], {"limit": "3"}
    while True:
        page = env.call("GET", "/api/v1/cdr", params=params).json
        seen += [r["call_id"] for r in page["records"]]
        if page["next_cursor"] is None:
            break
        params = {"limit": "3", "cursor": page["next_cursor"]}
    assert seen == ["c1", "c2", "c3", "c4"]


def test_cdr_filters_by_time_and_numbers(env):
    _cdrs(env)

    def ids(**params):
        return [r["call_id"] for r in env.call("GET", "/api/v1/cdr", params=params).json["records"]]

    assert ids(src="1000") == ["c1", "c3", "c4"]
    assert ids(dst="2000", src="1000") == ["c1", "c4"]
    assert ids(since="2023-11-14T23:13:20Z") == ["c2", "c3", "c4"]
    assert ids(since=str(NOW + 1), until=str(NOW + 7200)) == ["c2"]
    assert ids(disposition="busy") == ["c2"]
    record = env.call("GET", "/api/v1/cdr", params={"src": "1001"}).json["records"][0]
    assert record["start"] == "2023-11-14T23:13:20.000Z" and record["codecs"] == ["PCMU"]


def test_cdr_bad_parameters_are_named(env):
    for params, field in (({"since": "last tuesday"}, "since"), ({"limit": "0"}, "limit"),
                          ({"cursor": "abc"}, "cursor"), ({"format": "xml"}, "format")):
        reply = env.call("GET", "/api/v1/cdr", params=params)
        assert reply.status == 400, params
        assert reply.json["error"]["field"] == field


def test_cdr_csv_export(env):
    _cdrs(env)
    reply = env.call("GET", "/api/v1/cdr", params={"format": "csv", "limit": "2", "src": "1000"})
    assert reply.status == 200
    assert reply.header("content-type") == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(reply.raw.decode())))
    assert [r["call_id"] for r in rows] == ["c1", "c3"]
    assert rows[0]["start"] == "2023-11-14T22:13:20.000Z" and rows[0]["hangup_cause"] == ""
    assert rows[0]["codecs"] == '["PCMU"]'
    cursor = reply.header("x-next-cursor")
    rest = env.call("GET", "/api/v1/cdr",
                    params={"format": "csv", "src": "1000", "cursor": cursor})
    assert [r["call_id"] for r in csv.DictReader(io.StringIO(rest.raw.decode()))] == ["c4"]
    assert rest.header("x-next-cursor") is None


# -- audit ---------------------------------------------------------------------------


def test_audit_lists_changes_with_filters_and_paging(env):
    env.call("POST", "/api/v1/bans", body={"address": "203.0.113.1"})
    env.clock.advance(60)
    env.call("POST", "/api/v1/bans", body={"address": "203.0.113.2"}, token=OTHER_TOKEN)
    env.call("DELETE", "/api/v1/bans/203.0.113.1")
    page = env.call("GET", "/api/v1/audit", params={"limit": "2"}).json
    assert [e["target"] for e in page["records"]] == ["203.0.113.1", "203.0.113.2"]
    assert page["records"][0]["time"] == "2023-11-14T22:13:20.000Z"
    rest = env.call("GET", "/api/v1/audit", params={"cursor": page["next_cursor"]}).json
    assert [e["action"] for e in rest["records"]] == ["ban.lift"]
    by_noc = env.call("GET", "/api/v1/audit", params={"who": "noc"}).json["records"]
    assert [e["target"] for e in by_noc] == ["203.0.113.2"]
    later = env.call("GET", "/api/v1/audit", params={"since": str(NOW + 30)}).json["records"]
    assert len(later) == 2
    assert env.call("GET", "/api/v1/audit", params={"action": "ban.lift"}).json[
        "records"][0]["who"] == "ops"


def test_reads_are_not_audited(env):
    for path in ("/api/v1/bans", "/api/v1/extensions", "/api/v1/registrations",
                 "/api/v1/cdr", "/api/v1/audit"):
        assert env.call("GET", path).status == 200
    assert env.audit_entries() == []
