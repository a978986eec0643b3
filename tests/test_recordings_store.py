"""The recordings folder (RecordingStore) and the retention sweep on a fake clock."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from twisted.internet.task import Clock

from pbxd.rtp.recorder import wav_header
from pbxd.store.recordings import RecordingStore, RetentionSweeper

DAY = 86400.0
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def fired(d: Any) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "not fired"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def made(store: RecordingStore, call_id: str, start: float, seconds: float = 1.0,
         channels: int = 1) -> str:
    """A finished recording of ``seconds`` of audio."""
    rec_id, path = store.begin(call_id, start, {"caller": "1000", "callee": "1001",
                                                "channels": channels})
    data = b"\x01\x00" * int(seconds * 8000 * channels)
    with open(path, "wb") as f:
        f.write(wav_header(channels, len(data)) + data)
    fired(store.finish(rec_id, {"seconds": seconds, "reason": "hangup"}))
    return rec_id


def test_ids_carry_the_utc_start_and_the_call_and_never_collide(tmp_path) -> None:
    store = RecordingStore(str(tmp_path / "rec"))
    first, path = store.begin("0a1b00001", T0, {})
    second, _ = store.begin("0a1b00001", T0, {})
    odd, _ = store.begin("../etc/passwd", T0, {})
    assert first == "20231114-221320-0a1b00001" and second == f"{first}-2"
    assert path == os.path.join(store.folder, f"{first}.wav")
    assert "/" not in odd and ".." in odd and odd.startswith("20231114-221320-")
    assert store.active == {first, second, odd}


def test_list_get_read_and_metadata_of_finished_and_running_recordings(tmp_path) -> None:
    store = RecordingStore(str(tmp_path / "rec"))
    old = made(store, "c1", T0, seconds=2.0, channels=2)
    running, path = store.begin("c2", T0 + 60, {"caller": "1002", "channels": 1})
    with open(path, "wb") as f:
        f.write(wav_header(1, 0) + b"\x00\x00" * 4000)
    listed = fired(store.list())
    assert [r["id"] for r in listed] == [running, old]  # newest first
    assert listed[0]["recording"] is True and listed[0]["seconds"] == 0.5
    record = fired(store.get(old))
    assert (record["call_id"], record["caller"], record["callee"], record["channels"],
            record["seconds"], record["recording"]) == ("c1", "1000", "1001", 2, 2.0, False)
    assert record["size"] == 44 + 2 * 16000 * 2 and record["start"] == T0
    assert fired(store.read(old))[:4] == b"RIFF"
    with open(os.path.join(store.folder, f"{old}.json")) as f:
        assert json.load(f)["reason"] == "hangup"
    assert fired(store.get("nope")) is None and fired(store.read("../../x")) is None


def test_delete_removes_both_files_and_refuses_a_recording_in_progress(tmp_path) -> None:
    store = RecordingStore(str(tmp_path / "rec"))
    done = made(store, "c1", T0)
    running, _ = store.begin("c2", T0, {})
    assert fired(store.delete(done)) is True
    assert fired(store.delete(done)) is False
    assert not any(name.startswith(done) for name in os.listdir(store.folder))
    with pytest.raises(ValueError, match="in progress"):
        fired(store.delete(running))


def test_wav_without_metadata_is_listed_from_the_file(tmp_path) -> None:
    store = RecordingStore(str(tmp_path / "rec"))
    path = os.path.join(store.folder, "20231114-221320-lost.wav")
    with open(path, "wb") as f:
        f.write(wav_header(1, 16000) + b"\x00" * 16000)
    os.utime(path, (T0, T0))
    (record,) = fired(store.list())
    assert (record["id"], record["seconds"], record["start"], record["call_id"]) == \
        ("20231114-221320-lost", 1.0, T0, "")


def test_sweep_deletes_what_is_older_than_retention_every_interval(tmp_path) -> None:
    store = RecordingStore(str(tmp_path / "rec"))
    clock = Clock()
    clock.advance(T0 + 10 * DAY)
    ancient = made(store, "c1", T0)  # 10 days old
    recent = made(store, "c2", T0 + 9 * DAY)  # 1 day old
    sweeper = RetentionSweeper(store, clock, retention_days=7, interval=3600)
    sweeper.startService()  # sweeps at once
    assert [r["id"] for r in fired(store.list())] == [recent]
    clock.advance(6 * DAY)  # hourly sweeps; the recent one is now 7 days + 0 s old
    clock.advance(3600)
    assert fired(store.list()) == [] and sweeper.deleted == 2
    sweeper.stopService()
    assert not clock.getDelayedCalls()
    assert ancient not in os.listdir(store.folder)


def test_sweep_spares_recordings_in_progress_and_retention_zero_keeps_all(tmp_path) -> None:
    store = RecordingStore(str(tmp_path / "rec"))
    clock = Clock()
    clock.advance(T0 + 100 * DAY)
    running, path = store.begin("c1", T0, {})
    open(path, "wb").close()
    kept = made(store, "c2", T0)
    RetentionSweeper(store, clock, retention_days=0).startService()
    assert len(fired(store.list())) == 2
    assert fired(store.sweep(clock.seconds())) == [kept]
    assert [r["id"] for r in fired(store.list())] == [running]


def test_sweep_interval_can_change_while_running(tmp_path) -> None:
    store = RecordingStore(str(tmp_path / "rec"))
    clock = Clock()
    clock.advance(T0)
    sweeper = RetentionSweeper(store, clock, retention_days=1, interval=3600)
    sweeper.startService()
    sweeper.set_interval(60)
    clock.advance(3600)  # the sweep already scheduled, then every minute
    made(store, "c1", T0 - 2 * DAY)
    clock.advance(60)
    assert fired(store.list()) == []


def test_final_metadata_waits_for_the_first_write_of_a_thread_pool(tmp_path) -> None:
    from twisted.internet.defer import Deferred

    queued: list[tuple[Any, Deferred]] = []

    def run_later(f: Any) -> Deferred:  # a pool whose jobs finish when the test says
        d: Deferred = Deferred()
        queued.append((f, d))
        return d

    store = RecordingStore(str(tmp_path / "rec"), run_blocking=run_later)
    rec_id, _path = store.begin("c1", T0, {"caller": "1000"})
    finished = store.finish(rec_id, {"seconds": 3.0})
    assert len(queued) == 1  # the final write is not started before the first is done
    f, d = queued.pop()
    d.callback(f())
    f, d = queued.pop()
    d.callback(f())
    assert fired(finished)["seconds"] == 3.0 and rec_id not in store.active
    with open(os.path.join(store.folder, f"{rec_id}.json")) as fh:
        assert json.load(fh) == {"id": rec_id, "call_id": "c1", "caller": "1000",
                                 "start": T0, "seconds": 3.0}
