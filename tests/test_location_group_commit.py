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


# -- commit_delay: under a steady load one transaction gathers the writes of a window --


def _delayed_store(tmp_path, delay=0.01):
    pool = SynchronousConnectionPool(str(tmp_path / "db"))
    clock = Clock()
    store = SQLiteLocationStore(Database(pool, commit_delay=delay), clock)
    assert store.commit_delay == delay
    fired = []
    store.prepare().addCallback(fired.append)
    assert fired == [store]
    return store, pool, clock


def test_the_database_commit_delay_is_the_default_and_zero_without_one(tmp_path):
    pool = SynchronousConnectionPool(str(tmp_path / "db"))
    assert SQLiteLocationStore(Database(pool), Clock()).commit_delay == 0.0
    assert SQLiteLocationStore(Database(pool, commit_delay=0.02), Clock()).commit_delay == 0.02
    assert SQLiteLocationStore(Database(pool), Clock(), commit_delay=0.005).commit_delay == 0.005


def test_with_a_commit_delay_an_idle_store_still_writes_at_once(tmp_path):
    store, pool, clock = _delayed_store(tmp_path)
    done = []
    store.replace("1000", [_record("1000", "sip:a@h")], []).addBoth(done.append)
    assert done == [None] and _rows(tmp_path / "db") == [("1000", "sip:a@h", 1)]
    clock.advance(0.01)  # idle for a whole window: the next one goes at once too
    store.replace("1001", [_record("1001", "sip:b@h")], []).addBoth(done.append)
    assert done == [None, None]


def test_writes_within_the_window_wait_for_it_and_share_one_transaction(tmp_path):
    store, pool, clock = _delayed_store(tmp_path)
    done: list = []
    store.replace("1000", [_record("1000", "sip:a@h")], []).addBoth(done.append)
    before = pool.interactions
    clock.advance(0.004)
    store.replace("1001", [_record("1001", "sip:b@h")], []).addBoth(done.append)
    clock.advance(0.003)
    store.replace("1002", [_record("1002", "sip:c@h")], []).addBoth(done.append)
    # nothing is acknowledged before it is committed
    assert done == [None] and pool.interactions == before
    assert _rows(tmp_path / "db") == [("1000", "sip:a@h", 1)]
    clock.advance(0.0029)
    assert done == [None] and pool.interactions == before
    clock.advance(0.0002)  # 10 ms after the first transaction started (and a float ulp)
    assert done == [None, None, None] and pool.interactions == before + 1
    assert [r[0] for r in _rows(tmp_path / "db")] == ["1000", "1001", "1002"]
    assert clock.getDelayedCalls() == []


def test_a_batch_applies_its_writes_in_order(tmp_path):
    store, pool, clock = _delayed_store(tmp_path)
    store.replace("1000", [_record("1000", "sip:a@h")], [])  # starts the window
    done: list = []
    store.replace("1000", [_record("1000", "sip:x@h", cseq=1)], []).addBoth(done.append)
    store.remove("1000", "sip:x@h").addBoth(done.append)  # removed after it was saved
    store.remove("1000", "sip:a@h").addBoth(done.append)
    store.save(_record("1000", "sip:a@h", cseq=7)).addBoth(done.append)  # saved again
    store.replace("1001", [_record("1001", "sip:b@h", cseq=2)], []).addBoth(done.append)
    store.replace("1001", [_record("1001", "sip:b@h", cseq=3)], ["sip:gone@h"]).addBoth(
        done.append)
    clock.advance(0.01)
    assert done == [None] * 6
    assert _rows(tmp_path / "db") == [("1000", "sip:a@h", 7), ("1001", "sip:b@h", 3)]


def test_a_failed_delayed_batch_fails_each_write_and_the_next_window_goes_on(tmp_path):
    store, pool, clock = _delayed_store(tmp_path)
    store.replace("1000", [_record("1000", "sip:a@h")], [])
    first, second, third = [], [], []
    store.replace("1001", [_record("1001", "sip:b@h")], []).addBoth(first.append)
    store.remove("1000", "sip:a@h").addBoth(second.append)
    pool.fail_next()
    clock.advance(0.01)
    assert first[0].check(sqlite3.OperationalError)
    assert second[0].check(sqlite3.OperationalError)
    store.remove("1000", "sip:a@h").addBoth(third.append)
    assert third == []
    clock.advance(0.01)
    assert third == [None] and _rows(tmp_path / "db") == []


def test_a_load_sees_the_writes_still_waiting_for_their_window(tmp_path):
    store, pool, clock = _delayed_store(tmp_path)
    store.replace("1000", [_record("1000", "sip:a@h")], [])
    done: list = []
    store.replace("1001", [_record("1001", "sip:b@h")], []).addBoth(done.append)
    loaded: list = []
    store.load().addCallback(loaded.append)
    assert done == [None]
    assert sorted(r["contact"] for r in loaded[0]) == ["sip:a@h", "sip:b@h"]
    assert clock.getDelayedCalls() == []


def test_writes_made_while_a_delayed_transaction_is_in_flight_wait_for_it(tmp_path):
    store, pool, clock = _delayed_store(tmp_path)
    store.replace("1000", [_record("1000", "sip:a@h")], [])
    done: list = []
    store.replace("1001", [_record("1001", "sip:b@h")], []).addBoth(done.append)
    pool.hold()
    clock.advance(0.01)  # the second transaction starts and is held
    store.replace("1002", [_record("1002", "sip:c@h")], []).addBoth(done.append)
    clock.advance(0.05)
    assert done == []
    pool.release()  # it commits; the third write's window (from its start) is over
    assert done == [None, None]
    assert [r[0] for r in _rows(tmp_path / "db")] == ["1000", "1001", "1002"]


def test_a_wall_clock_set_back_delays_a_write_no_more_than_the_window(tmp_path):
    store, pool, clock = _delayed_store(tmp_path)
    clock.advance(3600)
    store.replace("1000", [_record("1000", "sip:a@h")], [])
    clock.rightNow -= 1800  # the system clock was set back half an hour
    done: list = []
    store.replace("1001", [_record("1001", "sip:b@h")], []).addBoth(done.append)
    assert done == []
    clock.advance(0.01)
    assert done == [None]


def test_store_commit_window_from_the_configuration_reaches_the_database(tmp_path):
    from twisted.internet.testing import MemoryReactorClock

    from pbxd.config import parse_config
    from pbxd.service import build_stores

    config = parse_config({"pbx": {"state_dir": str(tmp_path)},
                           "store": {"commit_window": "5ms"}})
    stores = build_stores(config, MemoryReactorClock())
    try:
        assert stores.database.commit_delay == 0.005
    finally:
        stores.database.close()


def test_a_saved_binding_overwrites_every_column_of_the_previous_one(tmp_path):
    store, _ = _store(tmp_path)
    full = {**_record("1000", "sip:a@h"), "q": 0.5, "instance": "<urn:uuid:1>", "reg_id": 1,
            "user_agent": "old", "path": ("<sip:p1;lr>",), "nat": True}
    store.replace("1000", [full], [])
    plain = _record("1000", "sip:a@h", cseq=2)  # no q, instance, reg-id, agent, path or NAT
    store.replace("1000", [plain], [])
    loaded: list = []
    store.load().addCallback(loaded.append)
    assert loaded == [[{**plain, "q": None, "instance": None, "reg_id": None,
                        "user_agent": None, "path": (), "nat": False}]]
