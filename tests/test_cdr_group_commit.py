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
