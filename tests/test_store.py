"""SQLite stores: schema migration, location/ban/CDR persistence, extension lookup.

Everything runs on real sqlite3 files in tmp_path through the synchronous pool.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from pbxd.errors import ConfigError
from pbxd.interfaces import IBanStore, ICDRStore, IExtensionStore, ILocationStore
from pbxd.store.bans import SQLiteBanStore
from pbxd.store.cdr import SQLiteCDRStore
from pbxd.store.db import Database, configure_connection, make_pool, sqlite_path
from pbxd.store.extensions import ConfigExtensionStore, LayeredExtensionStore
from pbxd.store.location import SQLiteLocationStore
from pbxd.store.testing import SynchronousConnectionPool

_ok = SynchronousTestCase().successResultOf
_failed = SynchronousTestCase().failureResultOf


def _db(tmp_path) -> Database:
    return Database(SynchronousConnectionPool(str(tmp_path / "pbxd.sqlite")))


def _record(contact="sip:1000@192.0.2.10:5060", expires_at=2000.0, **kw):
    record = {
        "aor": "1000",
        "contact": contact,
        "expires_at": expires_at,
        "q": 0.5,
        "call_id": "abc@phone",
        "cseq": 7,
        "instance": '"<urn:uuid:00000000-0000-0000-0000-000000000001>"',
        "reg_id": 1,
        "user_agent": "Phone/1.0",
        "transport": "UDP",
        "source_host": "203.0.113.5",
        "source_port": 40000,
        "path": ("<sip:edge.example.com;lr>",),
        "nat": True,
        "registered_at": 1000.0,
    }
    record.update(kw)
    return record


# -- URL and connection ---------------------------------------------------------


def test_postgresql_url_is_refused_with_a_clear_message():
    with pytest.raises(ConfigError) as info:
        sqlite_path("postgresql://pbx@db/pbxd")
    assert info.value.key == "store.url"
    assert "not supported yet" in str(info.value)


def test_unknown_store_scheme_is_a_config_error():
    with pytest.raises(ConfigError):
        sqlite_path("mysql://x")
    with pytest.raises(ConfigError):
        sqlite_path("sqlite:")


def test_sqlite_url_gives_the_path():
    assert sqlite_path("sqlite:/var/lib/pbxd/pbxd.sqlite") == "/var/lib/pbxd/pbxd.sqlite"
    assert sqlite_path("sqlite:///var/lib/pbxd.sqlite") == "/var/lib/pbxd.sqlite"


def test_connections_use_wal_and_full_sync(tmp_path):
    connection = sqlite3.connect(str(tmp_path / "x.sqlite"))
    configure_connection(connection)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_make_pool_builds_a_single_connection_sqlite_pool(tmp_path):
    reactor = MemoryReactorClock()
    pool = make_pool(f"sqlite:{tmp_path / 'p.sqlite'}", reactor)
    assert (pool.dbapiName, pool.min, pool.max) == ("sqlite3", 1, 1)
    assert pool.openfun is configure_connection
    assert pool.connkw["check_same_thread"] is False


# -- synchronous pool -----------------------------------------------------------


def test_fake_pool_rolls_back_a_failing_interaction(tmp_path):
    pool = SynchronousConnectionPool(str(tmp_path / "t.sqlite"))
    _ok(pool.runOperation("CREATE TABLE t (x INTEGER)"))

    def insert_then_fail(txn):
        txn.execute("INSERT INTO t VALUES (1)")
        raise ValueError("boom")

    _failed(pool.runInteraction(insert_then_fail), ValueError)
    assert _ok(pool.runQuery("SELECT count(*) FROM t")) == [(0,)]
    pool.fail_next()
    _failed(pool.runOperation("INSERT INTO t VALUES (2)"), sqlite3.OperationalError)
    assert _ok(pool.runQuery("SELECT count(*) FROM t")) == [(0,)]


# -- migrations -----------------------------------------------------------------


def test_migrations_run_once_and_in_order(tmp_path):
    db = _db(tmp_path)
    steps = [["CREATE TABLE a (x)"], ["ALTER TABLE a ADD COLUMN y"]]
    assert _ok(db.migrate("demo", steps[:1])) == 1
    assert _ok(db.migrate("demo", steps)) == 2
    assert _ok(db.migrate("demo", steps)) == 2  # nothing re-run (ALTER would fail)
    assert _ok(db.version("demo")) == 2
    assert _ok(db.version("other")) == 0


def test_a_newer_schema_is_not_downgraded(tmp_path):
    db = _db(tmp_path)
    _ok(db.migrate("demo", [["CREATE TABLE a (x)"], ["CREATE TABLE b (x)"]]))
    _failed(db.migrate("demo", [["CREATE TABLE a (x)"]]), RuntimeError)


# -- location -------------------------------------------------------------------


def test_location_store_round_trips_a_binding(tmp_path):
    clock = Clock()
    clock.advance(1500)
    store = _ok(SQLiteLocationStore(_db(tmp_path), clock).prepare())
    assert ILocationStore.providedBy(store)
    _ok(store.save(_record()))
    assert _ok(store.load()) == [_record()]


def test_location_store_drops_expired_bindings_on_load(tmp_path):
    clock = Clock()
    clock.advance(1500)
    db = _db(tmp_path)
    store = _ok(SQLiteLocationStore(db, clock).prepare())
    _ok(store.save(_record("sip:1000@192.0.2.10", expires_at=1400.0)))
    _ok(store.save(_record("sip:1000@192.0.2.11", expires_at=1600.0)))
    assert [r["contact"] for r in _ok(store.load())] == ["sip:1000@192.0.2.11"]
    rows = _ok(db.pool.runQuery("SELECT contact FROM location_bindings"))
    assert rows == [("sip:1000@192.0.2.11",)]  # deleted, not just filtered


def test_location_store_survives_reopening_the_file(tmp_path):
    clock = Clock()
    store = _ok(SQLiteLocationStore(_db(tmp_path), clock).prepare())
    _ok(store.save(_record()))
    _ok(store.save(_record(expires_at=3000.0)))  # replace, same key
    store.database.close()
    again = _ok(SQLiteLocationStore(_db(tmp_path), clock).prepare())
    loaded = _ok(again.load())
    assert len(loaded) == 1 and loaded[0]["expires_at"] == 3000.0


def test_location_store_replace_is_all_or_nothing(tmp_path):
    clock = Clock()
    db = _db(tmp_path)
    store = _ok(SQLiteLocationStore(db, clock).prepare())
    _ok(store.save(_record("sip:1000@192.0.2.10")))
    bad = _record("sip:1000@192.0.2.12", call_id=None)  # NOT NULL violation
    _failed(store.replace("1000", [bad], ["sip:1000@192.0.2.10"]), sqlite3.IntegrityError)
    assert [r["contact"] for r in _ok(store.load())] == ["sip:1000@192.0.2.10"]
    _ok(store.replace("1000", [_record("sip:1000@192.0.2.12")], ["sip:1000@192.0.2.10"]))
    assert [r["contact"] for r in _ok(store.load())] == ["sip:1000@192.0.2.12"]
    _ok(store.remove("1000", "sip:1000@192.0.2.12"))
    assert _ok(store.load()) == []


# -- bans -----------------------------------------------------------------------


def test_ban_store_keeps_bans_in_force_and_drops_expired(tmp_path):
    clock = Clock()
    clock.advance(100)
    store = _ok(SQLiteBanStore(_db(tmp_path), clock).prepare())
    assert IBanStore.providedBy(store)
    _ok(store.save("198.51.100.7", 400.0, "5 failed REGISTER"))
    _ok(store.save("198.51.100.8", 50.0, "old"))
    _ok(store.save("198.51.100.9", 500.0, "x"))
    _ok(store.remove("198.51.100.9"))
    assert _ok(store.load()) == [("198.51.100.7", 400.0, "5 failed REGISTER")]


# -- CDR ------------------------------------------------------------------------


@dataclass
class _CDR:
    call_id: str
    start: float
    end: float
    disposition: str = "ANSWERED"
    answer: float | None = None
    source: str = "1000"
    destination: str = "1001"
    codecs: list = field(default_factory=lambda: ["PCMU"])
    media: dict = field(default_factory=lambda: {"a": {"packets": 10}})
    hangup_cause: str = "normal"
    hangup_side: str = "caller"
    context: str = "default"  # not a column: kept in extra


def test_cdr_write_then_query_returns_the_record(tmp_path):
    store = _ok(SQLiteCDRStore(_db(tmp_path)).prepare())
    assert ICDRStore.providedBy(store)
    row_id = _ok(store.write(_CDR("c1", start=100.0, answer=105.0, end=130.0)))
    records, cursor = _ok(store.query())
    assert cursor is None
    (record,) = records
    assert record["id"] == row_id
    assert record["duration"] == 30.0 and record["billsec"] == 25.0
    assert record["codecs"] == ["PCMU"] and record["media"] == {"a": {"packets": 10}}
    assert record["context"] == "default"
    assert record["hangup_side"] == "caller"


def test_cdr_query_filters_by_time_and_pages(tmp_path):
    store = _ok(SQLiteCDRStore(_db(tmp_path)).prepare())
    for i in range(5):
        _ok(
            store.write(
                {
                    "call_id": f"c{i}",
                    "start": 100.0 * i,
                    "end": 100.0 * i + 1,
                    "disposition": "NO ANSWER",
                }
            )
        )
    page, cursor = _ok(store.query(since=100.0, until=400.0, limit=2))
    assert [r["call_id"] for r in page] == ["c1", "c2"] and cursor is not None
    page, cursor = _ok(store.query(since=100.0, until=400.0, limit=2, after_cursor=cursor))
    assert [r["call_id"] for r in page] == ["c3"] and cursor is None
    assert page[0]["billsec"] == 0.0


def test_cdr_without_required_fields_is_refused(tmp_path):
    store = _ok(SQLiteCDRStore(_db(tmp_path)).prepare())
    _failed(store.write({"call_id": "x", "start": 1.0}), ValueError)
    _failed(store.query(after_cursor="nope"), ValueError)


# -- extensions -----------------------------------------------------------------


def test_config_extension_store_finds_known_numbers_only():
    alice = object()
    store = ConfigExtensionStore({"1000": alice})
    assert IExtensionStore.providedBy(store)
    assert _ok(store.getExtension("1000")) is alice
    assert _ok(store.getExtension("9999")) is None
    bob = object()
    store.replace({"1001": bob})
    assert _ok(store.getExtension("1000")) is None
    assert _ok(store.getExtension("1001")) is bob


def test_layered_store_prefers_the_first_store():
    first, second = object(), object()
    layered = LayeredExtensionStore(
        ConfigExtensionStore({"1000": first}),
        ConfigExtensionStore({"1000": second, "2000": second}),
    )
    assert _ok(layered.getExtension("1000")) is first
    assert _ok(layered.getExtension("2000")) is second
    assert _ok(layered.getExtension("3000")) is None


def test_open_database_sets_the_group_commit_delay(tmp_path):
    from pbxd.store.db import DEFAULT_COMMIT_DELAY, open_database

    url = f"sqlite:{tmp_path / 'p.sqlite'}"
    database = open_database(url, MemoryReactorClock())
    assert database.commit_delay == DEFAULT_COMMIT_DELAY > 0
    assert SQLiteLocationStore(database, Clock()).commit_delay == DEFAULT_COMMIT_DELAY
    assert open_database(url, MemoryReactorClock(), commit_delay=0.0).commit_delay == 0.0
    assert Database(SynchronousConnectionPool()).commit_delay == 0.0
