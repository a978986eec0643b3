"""Voicemail storage and the voicemail service: durable saves, counts, PINs, crash recovery.

Real sqlite3 files and real WAV files in tmp_path, through the synchronous pool.
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass

import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbxd.interfaces import IVoicemailService
from pbxd.store.db import Database
from pbxd.store.extensions import ConfigExtensionStore
from pbxd.store.testing import SynchronousConnectionPool
from pbxd.store.voicemail import VoicemailStore, check_box
from pbxd.voicemail.service import VoicemailService

_t = SynchronousTestCase()
ok, failed = _t.successResultOf, _t.failureResultOf


@dataclass(frozen=True)
class Ext:
    number: str
    voicemail_pin: str | None = None


@dataclass(frozen=True)
class Limits:
    max_message_seconds: float = 60.0
    min_message_seconds: float = 1.0
    max_messages: int = 10
    silence_seconds: float = 4.0


def write_wav(path, seconds: float = 2.0) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x00" * int(seconds * 8000))
    return str(path)


def make_store(tmp_path, clock=None) -> VoicemailStore:
    db = Database(SynchronousConnectionPool(str(tmp_path / "pbxd.sqlite")))
    clock = clock or Clock()
    store = VoicemailStore(db, str(tmp_path / "voicemail"), clock)
    ok(store.prepare())
    return store


def make_service(tmp_path, **kw) -> VoicemailService:
    extensions = ConfigExtensionStore({"1000": Ext("1000", "1234"), "1001": Ext("1001")})
    return VoicemailService(make_store(tmp_path), extensions, Limits(), **kw)


def leave(service, box="1000", caller="2000", seconds=2.0) -> dict:
    """A message of ``seconds`` from ``caller``, one second after the previous one."""
    service.store.clock.advance(1)
    path = service.recording_path(box)
    write_wav(path, seconds)
    return ok(service.save(box, caller, seconds, path))


# -- the store -----------------------------------------------------------------------


def test_box_names_cannot_escape_the_voicemail_directory():
    for bad in ("../etc", ".hidden", "a/b", "", "x" * 65, None, 1000):
        with pytest.raises(ValueError):
            check_box(bad)
    assert check_box("1000") == "1000" and check_box("sales.main") == "sales.main"


def test_a_saved_message_is_moved_into_its_box_and_indexed(tmp_path):
    clock = Clock()
    clock.advance(1_700_000_000)
    store = make_store(tmp_path, clock)
    temp = store.temp_path("1000")
    write_wav(temp, 3.0)
    message = ok(store.add_message("1000", "2000", 3.0, temp, "Bob"))
    assert not os.path.exists(temp)
    assert os.path.dirname(message["path"]) == str(tmp_path / "voicemail" / "1000")
    with wave.open(message["path"]) as w:
        assert w.getnframes() == 24000
    assert message["time"] == 1_700_000_000 and message["folder"] == "new"
    listed = ok(store.messages("1000"))
    assert [(m["id"], m["caller"], m["caller_name"], m["duration"]) for m in listed] == [
        (message["id"], "2000", "Bob", 3.0)]
    assert ok(store.counts("1000")) == (1, 0)


def test_the_index_survives_a_restart(tmp_path):
    store = make_store(tmp_path)
    temp = store.temp_path("1000")
    write_wav(temp)
    message = ok(store.add_message("1000", "2000", 2.0, temp))
    store.database.close()
    again = make_store(tmp_path)
    assert [m["id"] for m in ok(again.messages("1000"))] == [message["id"]]


def test_a_failed_commit_fails_the_save_and_recovery_keeps_the_file(tmp_path):
    store = make_store(tmp_path)
    temp = store.temp_path("1000")
    write_wav(temp, 2.0)
    store.database.pool.fail_next()
    failed(store.add_message("1000", "2000", 2.0, temp))
    # the injected failure happens before the interaction runs: nothing moved
    assert os.path.exists(temp)

    def crash_after_rename(txn):
        store._place(temp, store.message_path("1000", "msg-1700000000-0badcafe"))
        raise OSError("power cut before the commit")

    failed(store.database.run(crash_after_rename))
    assert ok(store.messages("1000")) == []
    assert ok(store.recover()) == 1
    (message,) = ok(store.messages("1000"))
    assert message["id"] == "msg-1700000000-0badcafe" and message["duration"] == 2.0


def test_recovery_drops_rows_without_files_and_temporary_recordings(tmp_path):
    store = make_store(tmp_path)
    temp = store.temp_path("1000")
    write_wav(temp)
    message = ok(store.add_message("1000", "2000", 2.0, temp))
    os.unlink(message["path"])
    leftover = write_wav(store.temp_path("1000"))
    assert ok(store.recover()) == 0
    assert ok(store.messages("1000")) == [] and not os.path.exists(leftover)


def test_folders_ordering_and_delete(tmp_path):
    clock = Clock()
    store = make_store(tmp_path, clock)
    ids = []
    for _ in range(3):
        clock.advance(10)
        temp = store.temp_path("1000")
        write_wav(temp)
        ids.append(ok(store.add_message("1000", "2000", 2.0, temp))["id"])
    assert ok(store.set_folder("1000", ids[0], "old")) is True
    assert [m["id"] for m in ok(store.messages("1000"))] == [ids[1], ids[2], ids[0]]
    assert ok(store.counts("1000")) == (2, 1)
    assert ok(store.boxes()) == {"1000": (2, 1)}
    path = store.message_path("1000", ids[1])
    assert ok(store.delete("1000", ids[1])) is True and not os.path.exists(path)
    assert ok(store.delete("1000", ids[1])) is False
    assert ok(store.set_folder("1000", "msg-1-00000000", "old")) is False


# -- the service ---------------------------------------------------------------------


def test_service_provides_the_interface(tmp_path):
    assert IVoicemailService.providedBy(make_service(tmp_path))


def test_boxes_are_extensions(tmp_path):
    service = make_service(tmp_path)
    assert ok(service.box_exists("1000")) is True
    assert ok(service.box_exists("4711")) is False
    assert ok(service.box_exists("../x")) is False
    failed(service.counts("4711")).trap(KeyError)


def test_listeners_hear_counts_after_save_mark_old_and_delete(tmp_path):
    service = make_service(tmp_path)
    heard = []
    unsubscribe = service.subscribe(lambda box, new, old: heard.append((box, new, old)))
    message = leave(service)
    assert heard == [("1000", 1, 0)]
    assert ok(service.mark_old("1000", message["id"])) is True
    assert ok(service.delete("1000", message["id"])) is True
    assert ok(service.delete("1000", message["id"])) is False
    assert heard == [("1000", 1, 0), ("1000", 0, 1), ("1000", 0, 0)]
    unsubscribe()
    leave(service)
    assert len(heard) == 3


def test_on_saved_hooks_get_the_message(tmp_path):
    service = make_service(tmp_path)
    saved = []
    service.on_saved.append(saved.append)
    message = leave(service)
    assert saved == [message]


def test_pin_from_the_extension_then_changed(tmp_path):
    service = make_service(tmp_path)
    assert ok(service.check_pin("1000", "1234")) is True
    assert ok(service.check_pin("1000", "4321")) is False
    assert ok(service.check_pin("1001", "")) is False  # no PIN: cannot be opened
    failed(service.set_pin("1000", "12")).trap(ValueError)
    ok(service.set_pin("1000", "98765"))
    assert ok(service.check_pin("1000", "1234")) is False
    assert ok(service.check_pin("1000", "98765")) is True


def test_greetings_are_kept_per_kind(tmp_path):
    service = make_service(tmp_path)
    assert ok(service.greeting("1000", "busy")) is None
    temp = write_wav(service.recording_path("1000"), 1.5)
    path = ok(service.set_greeting("1000", "busy", temp))
    assert ok(service.greeting("1000", "busy")) == path and os.path.isfile(path)
    assert ok(service.greeting("1000", "unavailable")) is None
    failed(service.greeting("1000", "rude")).trap(ValueError)


def test_failed_logins_are_reported_with_the_call(tmp_path):
    reports = []
    service = make_service(tmp_path, failed_login=lambda box, call_id: reports.append(
        (box, call_id)))
    service.report_failed_login("1000", "c-1")
    assert reports == [("1000", "c-1")]
