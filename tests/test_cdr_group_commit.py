"""CDRWriter's group commit: CDRs of calls ending while a write is in flight share the
next transaction; each write fires once committed; flush waits for queued ones too."""

from __future__ import annotations

import sqlite3

from pbxd.calls.cdr import CDRWriter
from pbxd.store.cdr import SQLiteCDRStore
from pbxd.store.db import Database
from pbxd.store.testing import SynchronousConnectionPool


def _cdr(call_id: str, **extra) -> dict:
    return {"call_id": call_id, "start": 10.0, "answer": 11.0, "end": 20.0,
            "source": "1000", "destination": "1001", "disposition": "ANSWERED", **extra}


def _writer(tmp_path):
    pool = SynchronousConnectionPool(str(tmp_path / "db"))
    store = SQLiteCDRStore(Database(pool))
    ready = []
    store.prepare().addCallback(ready.append)
    assert ready == [store]
    return CDRWriter(store), pool


def _call_ids(tmp_path) -> list[str]:
    with sqlite3.connect(tmp_path / "db") as connection:
        return [r[0] for r in connection.execute("SELECT call_id FROM cdr ORDER BY id")]


def test_cdrs_ending_during_a_write_share_the_next_transaction(tmp_path):
    writer, pool = _writer(tmp_path)
    before = pool.interactions
    pool.hold()
    fired: list = []
    for n in range(4):
        writer.write(_cdr(f"c{n}")).addCallback(lambda row, n=n: fired.append((n, row)))
    flushed: list = []
    writer.flush().addCallback(flushed.append)
    assert fired == [] and flushed == [] and _call_ids(tmp_path) == []
    pool.release()
    assert [n for n, _ in fired] == [0, 1, 2, 3] and all(row for _, row in fired)
    assert len(flushed) == 1 and writer.written == 4 and writer.pending == set()
    assert pool.interactions - before == 2  # c0 alone, then c1..c3 in one transaction
    assert _call_ids(tmp_path) == ["c0", "c1", "c2", "c3"]


def test_a_bad_cdr_fails_alone_and_a_failed_transaction_fails_its_batch(tmp_path):
    writer, pool = _writer(tmp_path)
    pool.hold()
    writer.write(_cdr("c0")).addCallback(lambda _: pool.fail_next())  # disk fails next
    writer.write(_cdr("c1"))
    writer.write(_cdr("c2"))
    pool.release()
    assert writer.written == 1 and writer.failed == 2 and writer.pending == set()
    pool.hold()
    writer.write(_cdr("c3"))
    writer.write({"call_id": "bad"})  # no start, end, disposition: refused alone
    writer.write(_cdr("c4"))
    flushed: list = []
    writer.flush().addCallback(flushed.append)
    pool.release()
    assert len(flushed) == 1 and writer.written == 3 and writer.failed == 3
    assert _call_ids(tmp_path) == ["c0", "c3", "c4"]


# -- the commit window (Database.commit_delay): a steady call rate shares transactions --


def _windowed_writer(tmp_path, delay=0.02):
    from twisted.internet.task import Clock

    pool = SynchronousConnectionPool(str(tmp_path / "db"))
    store = SQLiteCDRStore(Database(pool, commit_delay=delay))
    store.prepare()
    clock = Clock()
    clock.advance(1000)
    return CDRWriter(store, clock), pool, clock


def test_an_idle_writer_writes_at_once_and_a_busy_one_gathers_a_window(tmp_path):
    writer, pool, clock = _windowed_writer(tmp_path)
    before = pool.interactions
    fired: list = []
    writer.write(_cdr("c0")).addCallback(fired.append)
    assert len(fired) == 1 and pool.interactions - before == 1  # idle: committed at once
    for n in (1, 2, 3):  # calls ending 5 ms apart, within the 20 ms window
        clock.advance(0.005)
        writer.write(_cdr(f"c{n}")).addCallback(fired.append)
    assert len(fired) == 1 and _call_ids(tmp_path) == ["c0"]  # waiting for the window
    clock.advance(0.005)  # 20 ms after the first transaction started
    assert len(fired) == 4 and pool.interactions - before == 2
    assert _call_ids(tmp_path) == ["c0", "c1", "c2", "c3"]
    clock.advance(1.0)  # idle again: the next one goes at once
    writer.write(_cdr("c4")).addCallback(fired.append)
    assert len(fired) == 5 and pool.interactions - before == 3


def test_flush_does_not_wait_for_the_window(tmp_path):
    writer, pool, clock = _windowed_writer(tmp_path)
    writer.write(_cdr("c0"))
    clock.advance(0.001)
    writer.write(_cdr("c1"))
    assert _call_ids(tmp_path) == ["c0"]
    done: list = []
    writer.flush().addCallback(done.append)  # shutdown: written now, not in 19 ms
    assert len(done) == 1 and _call_ids(tmp_path) == ["c0", "c1"]
    assert clock.getDelayedCalls() == [] or not any(c.active() for c in clock.getDelayedCalls())


def test_without_a_clock_the_writer_never_waits(tmp_path):
    pool = SynchronousConnectionPool(str(tmp_path / "db"))
    store = SQLiteCDRStore(Database(pool, commit_delay=0.02))
    store.prepare()
    writer = CDRWriter(store)
    for n in range(3):
        writer.write(_cdr(f"c{n}"))
    assert _call_ids(tmp_path) == ["c0", "c1", "c2"]
