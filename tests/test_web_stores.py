"""The stores behind the admin API: audit trail, API extensions, CDR search."""

from __future__ import annotations

import sqlite3

import pytest
from twisted.internet.task import Clock
from webhelpers import fired

from pbxd.auth.checker import stored_ha1
from pbxd.configschema import Extension
from pbxd.sip.digest import compute_ha1
from pbxd.store.audit import SQLiteAuditStore
from pbxd.store.cdr import SQLiteCDRStore
from pbxd.store.db import Database
from pbxd.store.extensions import ConfigExtensionStore
from pbxd.store.extensions_db import (
    ExtensionExists,
    ExtensionNotFound,
    ExtensionReadOnly,
    InvalidExtension,
    SQLiteExtensionStore,
)
from pbxd.store.testing import SynchronousConnectionPool, memory_database


def _extensions(database=None, **kw):
    config = ConfigExtensionStore({"1000": Extension("1000", password="config-password")})
    store = SQLiteExtensionStore(database or memory_database(), config, realm="pbx.test", **kw)
    return fired(store.prepare())


def test_audit_entries_are_durable_and_paged(tmp_path):
    clock = Clock()
    clock.advance(100)
    path = str(tmp_path / "audit.sqlite")
    audit = fired(SQLiteAuditStore(Database(SynchronousConnectionPool(path)), clock).prepare())
    for i in range(3):
        fired(audit.record("ops", "ban.add", f"203.0.113.{i}", {"seconds": i}))
        clock.advance(10)
    reopened = fired(SQLiteAuditStore(Database(SynchronousConnectionPool(path)), clock).prepare())
    page, cursor = fired(reopened.query(limit=2))
    assert [(e["target"], e["time"], e["details"]) for e in page] == [
        ("203.0.113.0", 100, {"seconds": 0}), ("203.0.113.1", 110, {"seconds": 1})]
    rest, end = fired(reopened.query(limit=2, after_cursor=cursor))
    assert [e["target"] for e in rest] == ["203.0.113.2"] and end is None
    assert len(fired(reopened.query(since=110, until=120))[0]) == 1
    with pytest.raises(ValueError):
        fired(reopened.query(after_cursor="x"))


def test_api_extension_authenticates_like_a_config_one():
    store = _extensions()
    created = fired(store.create("2000", {"password": "secret-2000"}))
    assert created.password is None
    for algorithm in ("MD5", "SHA-256"):
        assert stored_ha1(created, algorithm, "2000", "pbx.test") == compute_ha1(
            algorithm, "2000", "pbx.test", "secret-2000")
    assert fired(store.getExtension("2000")) is created
    assert fired(store.getExtension("1000")).password == "config-password"


def test_api_extensions_survive_a_restart(tmp_path):
    path = str(tmp_path / "ext.sqlite")
    store = _extensions(Database(SynchronousConnectionPool(path)))
    fired(store.create("2000", {"password": "secret-2000", "name": "Bob"}))
    fired(store.create("2001", {"ha1": "a" * 32}))
    fired(store.delete("2001"))
    again = _extensions(Database(SynchronousConnectionPool(path)))
    assert [(e.number, source) for e, source in fired(again.list())] == [
        ("1000", "config"), ("2000", "api")]
    assert fired(again.getExtension("2000")).name == "Bob"


def test_config_extension_wins_and_is_read_only():
    store = _extensions()
    with pytest.raises(ExtensionExists):
        fired(store.create("1000", {"password": "whatever-123"}))
    with pytest.raises(ExtensionReadOnly):
        fired(store.update("1000", {"name": "x"}))
    with pytest.raises(ExtensionReadOnly):
        fired(store.delete("1000"))
    with pytest.raises(ExtensionNotFound):
        fired(store.delete("4000"))


def test_update_replaces_credentials_and_keeps_the_rest():
    store = _extensions(contexts={"default", "sales"})
    fired(store.create("2000", {"password": "first-password", "context": "sales",
                                "voicemail_pin": "1234"}))
    updated = fired(store.update("2000", {"ha1_sha256": "b" * 64}))
    assert (updated.ha1, updated.ha1_sha256) == (None, "b" * 64)
    assert (updated.context, updated.voicemail_pin) == ("sales", "1234")
    cleared = fired(store.update("2000", {"voicemail_pin": None}))
    assert cleared.voicemail_pin is None


def test_invalid_fields_are_named_and_nothing_is_stored():
    store = _extensions(contexts={"default"})
    for fields, field in (({}, "password"), ({"password": "x", "context": "other"}, "context"),
                          ({"password": "x", "max_contacts": 0}, "max_contacts"),
                          ({"password": "x", "bogus": 1}, "bogus")):
        with pytest.raises(InvalidExtension) as e:
            fired(store.create("2000", fields))
        assert e.value.field == field
    assert fired(store.getExtension("2000")) is None


def test_failed_write_changes_nothing_in_memory():
    database = memory_database()
    store = _extensions(database)
    database.pool.fail_next()
    with pytest.raises(sqlite3.OperationalError):
        fired(store.create("2000", {"password": "secret-2000"}))
    assert fired(store.getExtension("2000")) is None


def test_cdr_search_filters_on_numbers_and_disposition():
    cdr = fired(SQLiteCDRStore(memory_database()).prepare())
    rows = [("a", "1000", "2000", "answered"), ("b", "1001", "2000", "busy"),
            ("c", "1000", "2001", "answered")]
    for i, (call_id, src, dst, disposition) in enumerate(rows):
        fired(cdr.write({"call_id": call_id, "start": 10.0 * i, "end": 10.0 * i + 5,
                         "source": src, "destination": dst, "disposition": disposition}))

    def ids(**kw):
        return [r["call_id"] for r in fired(cdr.query(**kw))[0]]

    assert ids(source="1000") == ["a", "c"]
    assert ids(destination="2000") == ["a", "b"]
    assert ids(source="1000", disposition="answered", since=5) == ["c"]
    page, cursor = fired(cdr.query(limit=1, destination="2000"))
    assert [r["call_id"] for r in page] == ["a"]
    assert ids(destination="2000", after_cursor=cursor) == ["b"]
