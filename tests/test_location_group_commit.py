"""The SQLite location store's group commit: writes made while one transaction is in
flight go together in the next, each firing only once that transaction is committed."""

from __future__ import annotations

import sqlite3

from twisted.internet.task import Clock

from pbxd.store.db import Database
from pbxd.store.location import SQLiteLocationStore
from pbxd.store.testing import SynchronousConnectionPool


def _record(aor: str, contact: str, cseq: int = 1) -> dict:
    return {
        "aor": aor, "contact": contact, "expires_at": 1000.0, "call_id": "cid",
        "cseq": cseq, "transport": "UDP", "source_host": "192.0.2.1", "source_port": 5060,
        "registered_at": 0.0,
    }


def _store(tmp_path):
    pool = SynchronousConnectionPool(str(tmp_path / "db"))
    store = SQLiteLocationStore(Database(pool), Clock())
    fired = []
    store.prepare().addCallback(fired.append)
    assert fired == [store]
    return store, pool


def _rows(path) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT aor, contact, cseq FROM location_bindings ORDER BY aor, contact"
        ).fetchall()


def test_writes_made_during_a_transaction_share_the_next_one(tmp_path):
    store, pool = _store(tmp_path)
    before = pool.interactions
    pool.hold()
    results: list[list] = [[], [], []]
    store.replace("1000", [_record("1000", "sip:a@h")], []).addBoth(results[0].append)
    store.replace("1001", [_record("1001", "sip:b@h")], []).addBoth(results[1].append)
    store.replace("1000", [_record("1000", "sip:a@h", cseq=2)], []).addBoth(results[2].append)
    assert results == [[], [], []] and _rows(tmp_path / "db") == []
    pool.release()
    assert results == [[None], [None], [None]]
    # the first write alone, the two made while it was in flight in one transaction,
    # applied in the order they were made (the later CSeq wins)
    assert pool.interactions - before == 2
    assert _rows(tmp_path / "db") == [("1000", "sip:a@h", 2), ("1001", "sip:b@h", 1)]


def test_a_failed_transaction_fails_every_write_in_it_and_later_writes_go_on(tmp_path):
    store, pool = _store(tmp_path)
    pool.hold()
    first, second, third, fourth = [], [], [], []
    # the disk fails right after the first write has committed: the batch behind it fails
    store.save(_record("1000", "sip:a@h")).addCallback(
        lambda _: pool.fail_next()).addBoth(first.append)
    store.replace("1001", [_record("1001", "sip:b@h")], []).addBoth(second.append)
    store.remove("1000", "sip:a@h").addBoth(third.append)
    pool.release()
    assert first == [None]
    assert second[0].check(sqlite3.OperationalError)
    assert third[0].check(sqlite3.OperationalError)
    assert _rows(tmp_path / "db") == [("1000", "sip:a@h", 1)]
    store.remove("1000", "sip:a@h").addBoth(fourth.append)
    assert fourth == [None] and _rows(tmp_path / "db") == []


def test_an_idle_store_writes_at_once(tmp_path):
    store, pool = _store(tmp_path)
    done = []
    store.replace("1000", [_record("1000", "sip:a@h")], []).addBoth(done.append)
    assert done == [None] and _rows(tmp_path / "db") == [("1000", "sip:a@h", 1)]
