"""Voicemail storage: WAV files in ``state_dir/voicemail/<box>/`` and an SQLite index (layer 3).

Layout of one box::

    voicemail/1000/msg-1700000000-3f2a9c1d.wav   a message (8 kHz mono 16-bit)
    voicemail/1000/greeting-unavailable.wav      the box's own greetings
    voicemail/1000/tmp/                          recordings in progress

What "durable" means here (:meth:`VoicemailStore.add_message`): the recording
(already fsync'ed by the recorder) is renamed into the box directory, the file
and both directories are fsync'ed, and only then is the index row inserted and
committed (SQLite with ``synchronous=FULL``). The Deferred fires after the
commit. A crash between the rename and the commit leaves a message file
without a row: :meth:`VoicemailStore.recover` (run by :meth:`prepare`) indexes
such files again, so nothing the caller heard "saved" for is lost, and drops
index rows whose file is gone. File work runs inside the database interaction,
i.e. in the pool's thread in production, never on the reactor.

Box names come from the dialplan (``${EXTEN}``): only ``[A-Za-z0-9_.+-]``,
not starting with a dot, at most 64 characters (ValueError otherwise), so a
box can never name a path outside ``voicemail/``.
"""

from __future__ import annotations

import os
import re
import secrets
import wave
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbxd.store.db import Database

__all__ = ["MIGRATIONS", "VoicemailStore", "check_box", "fsync_dir"]

_BOX = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,63}")
_MESSAGE = re.compile(r"msg-\d+-[0-9a-f]{8}")
_FIELDS = ("id", "box", "caller", "caller_name", "time", "duration", "folder")
FOLDERS = ("new", "old")

MIGRATIONS = [
    [
        "CREATE TABLE voicemail_messages ("
        " id TEXT PRIMARY KEY,"
        " box TEXT NOT NULL,"
        " caller TEXT NOT NULL DEFAULT '',"
        " caller_name TEXT NOT NULL DEFAULT '',"
        " time REAL NOT NULL,"
        " duration REAL NOT NULL,"
        " folder TEXT NOT NULL DEFAULT 'new')",
        "CREATE INDEX voicemail_messages_box ON voicemail_messages (box, folder, time)",
        "CREATE TABLE voicemail_boxes (box TEXT PRIMARY KEY, pin TEXT)",
    ],
]


def check_box(box: Any) -> str:
    """``box`` if it is a safe box name, else ValueError."""
    if not isinstance(box, str) or not _BOX.fullmatch(box):
        raise ValueError(f"{box!r} is not a voicemail box name")
    return box


def fsync_dir(path: str) -> None:
    """fsync a directory so a rename or a new file in it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def wav_seconds(path: str) -> float:
    """The duration of a WAV file (0.0 if it cannot be read)."""
    try:
        with wave.open(path, "rb") as w:
            return w.getnframes() / float(w.getframerate() or 8000)
    except (OSError, wave.Error, EOFError):
        return 0.0


class VoicemailStore:
    """Messages, greetings and PINs of every box.

    :param database: the shared :class:`~pbxd.store.db.Database`.
    :param root: the ``voicemail`` directory (``state_dir/voicemail``), made if missing.
    :param clock: IReactorTime, for message times.
    """

    log = Logger()

    def __init__(self, database: Database, root: str, clock: Any) -> None:
        self.database = database
        self.root = os.path.abspath(root)
        self.clock = clock

    def prepare(self) -> Deferred:
        """Create the schema, then :meth:`recover`; fires with the number of files re-indexed."""
        os.makedirs(self.root, mode=0o750, exist_ok=True)
        d = self.database.migrate("voicemail", MIGRATIONS)
        d.addCallback(lambda _: self.recover())
        return d

    # -- paths ----------------------------------------------------------------

    def box_dir(self, box: str) -> str:
        """The directory of ``box`` (not created)."""
        return os.path.join(self.root, check_box(box))

    def message_path(self, box: str, message_id: str) -> str:
        """Where message ``message_id`` of ``box`` is kept."""
        if not _MESSAGE.fullmatch(message_id):
            raise ValueError(f"{message_id!r} is not a message id")
        return os.path.join(self.box_dir(box), message_id + ".wav")

    def greeting_file(self, box: str, kind: str) -> str:
        """Where the ``kind`` greeting of ``box`` is kept (it may not exist)."""
        if not re.fullmatch(r"[a-z]{1,16}", kind):
            raise ValueError(f"{kind!r} is not a greeting kind")
        return os.path.join(self.box_dir(box), f"greeting-{kind}.wav")

    def temp_path(self, box: str) -> str:
        """A fresh path in ``box``'s ``tmp/`` directory (created) for a recording."""
        tmp = os.path.join(self.box_dir(box), "tmp")
        os.makedirs(tmp, mode=0o750, exist_ok=True)
        return os.path.join(tmp, f"rec-{secrets.token_hex(8)}.wav")

    # -- messages -------------------------------------------------------------

    def add_message(self, box: str, caller: str, duration: float, temp_path: str,
                    caller_name: str = "", when: float | None = None,
                    message_id: str | None = None) -> Deferred:
        """Move ``temp_path`` into ``box`` durably and index it; fires with the message.

        ``message_id`` (``msg-<epoch>-<8 hex>``) is made up when not given."""
        when = self.clock.seconds() if when is None else when
        message_id = message_id or f"msg-{int(when)}-{secrets.token_hex(4)}"
        final = self.message_path(box, message_id)
        row = {"id": message_id, "box": box, "caller": caller or "",
               "caller_name": caller_name or "", "time": when,
               "duration": round(float(duration), 3), "folder": "new"}

        def add(txn: Any) -> dict[str, Any]:
            self._place(temp_path, final)
            txn.execute("INSERT INTO voicemail_messages (id, box, caller, caller_name, time,"
                        " duration, folder) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        tuple(row[f] for f in _FIELDS))
            return {**row, "path": final}

        return self.database.run(add)

    def _place(self, source: str, final: str) -> None:
        """Rename ``source`` to ``final`` and fsync the file and both directories."""
        directory = os.path.dirname(final)
        os.makedirs(directory, mode=0o750, exist_ok=True)
        _fsync_file(source)
        os.replace(source, final)
        fsync_dir(directory)
        source_dir = os.path.dirname(os.path.abspath(source))
        if source_dir != directory:
            fsync_dir(source_dir)

    def messages(self, box: str, folder: str | None = None) -> Deferred:
        """Fire with the messages of ``box`` (new first, then old; each oldest first)."""
        check_box(box)
        if folder is not None and folder not in FOLDERS:
            raise ValueError(f"folder must be one of {FOLDERS}")

        def query(txn: Any) -> list[dict[str, Any]]:
            sql = f"SELECT {', '.join(_FIELDS)} FROM voicemail_messages WHERE box = ?"
            args: tuple = (box,)
            if folder is not None:
                sql += " AND folder = ?"
                args += (folder,)
            txn.execute(sql + " ORDER BY folder = 'old', time, id", args)
            return [self._message(r) for r in txn.fetchall()]

        return self.database.run(query)

    def get(self, box: str, message_id: str) -> Deferred:
        """Fire with one message of ``box``, or None."""
        check_box(box)

        def query(txn: Any) -> dict[str, Any] | None:
            txn.execute(f"SELECT {', '.join(_FIELDS)} FROM voicemail_messages"
                        " WHERE box = ? AND id = ?", (box, message_id))
            row = txn.fetchone()
            return self._message(row) if row else None

        return self.database.run(query)

    def _message(self, row: tuple) -> dict[str, Any]:
        message = dict(zip(_FIELDS, row, strict=True))
        message["path"] = os.path.join(self.root, message["box"], message["id"] + ".wav")
        return message

    def counts(self, box: str) -> Deferred:
        """Fire with ``(new, old)`` of ``box``."""
        check_box(box)

        def query(txn: Any) -> tuple[int, int]:
            txn.execute("SELECT folder, COUNT(*) FROM voicemail_messages WHERE box = ?"
                        " GROUP BY folder", (box,))
            found = dict(txn.fetchall())
            return int(found.get("new", 0)), int(found.get("old", 0))

        return self.database.run(query)

    def boxes(self) -> Deferred:
        """Fire with ``{box: (new, old)}`` of every box holding messages."""

        def query(txn: Any) -> dict[str, tuple[int, int]]:
            txn.execute("SELECT box, SUM(folder = 'new'), SUM(folder = 'old')"
                        " FROM voicemail_messages GROUP BY box ORDER BY box")
            return {box: (int(new or 0), int(old or 0)) for box, new, old in txn.fetchall()}

        return self.database.run(query)

    def set_folder(self, box: str, message_id: str, folder: str) -> Deferred:
        """Move a message to ``folder``; fires with True if it exists."""
        check_box(box)
        if folder not in FOLDERS:
            raise ValueError(f"folder must be one of {FOLDERS}")

        def update(txn: Any) -> bool:
            txn.execute("UPDATE voicemail_messages SET folder = ? WHERE box = ? AND id = ?",
                        (folder, box, message_id))
            return bool(txn.rowcount)

        return self.database.run(update)

    def delete(self, box: str, message_id: str) -> Deferred:
        """Delete a message: the row (committed), then the file. Fires with True if it existed."""
        check_box(box)

        def remove(txn: Any) -> bool:
            txn.execute("DELETE FROM voicemail_messages WHERE box = ? AND id = ?",
                        (box, message_id))
            return bool(txn.rowcount)

        def unlink(existed: bool) -> bool:
            if existed:
                try:
                    os.unlink(self.message_path(box, message_id))
                except FileNotFoundError:
                    pass
            return existed

        return self.database.run(remove).addCallback(unlink)

    # -- greetings and PINs ---------------------------------------------------

    def greeting_path(self, box: str, kind: str) -> str | None:
        """The box's own ``kind`` greeting, None if it has none."""
        path = self.greeting_file(box, kind)
        return path if os.path.isfile(path) else None

    def save_greeting(self, box: str, kind: str, temp_path: str) -> Deferred:
        """Keep ``temp_path`` as the ``kind`` greeting (durably); fires with its path."""
        final = self.greeting_file(box, kind)

        def place(_txn: Any) -> str:
            self._place(temp_path, final)
            return final

        return self.database.run(place)

    def pin(self, box: str) -> Deferred:
        """Fire with the PIN set through the menu for ``box``, or None."""
        check_box(box)

        def query(txn: Any) -> str | None:
            txn.execute("SELECT pin FROM voicemail_boxes WHERE box = ?", (box,))
            row = txn.fetchone()
            return row[0] if row else None

        return self.database.run(query)

    def set_pin(self, box: str, pin: str) -> Deferred:
        """Store a new PIN for ``box`` (it overrides the extension's ``voicemail_pin``)."""
        check_box(box)

        def update(txn: Any) -> None:
            txn.execute("INSERT OR REPLACE INTO voicemail_boxes (box, pin) VALUES (?, ?)",
                        (box, pin))

        return self.database.run(update)

    # -- crash recovery -------------------------------------------------------

    def recover(self) -> Deferred:
        """Index message files that have no row (a crash before the commit), drop rows
        without a file, delete leftover temporary recordings. Fires with the number of
        files indexed again."""
        return self.database.run(self._recover)

    def _recover(self, txn: Any) -> int:
        txn.execute("SELECT box, id FROM voicemail_messages")
        indexed = {(box, mid) for box, mid in txn.fetchall()}
        on_disk: set[tuple[str, str]] = set()
        for box in sorted(os.listdir(self.root)) if os.path.isdir(self.root) else []:
            directory = os.path.join(self.root, box)
            if not _BOX.fullmatch(box) or not os.path.isdir(directory):
                continue
            _clean_tmp(os.path.join(directory, "tmp"))
            for name in os.listdir(directory):
                if name.endswith(".wav") and _MESSAGE.fullmatch(name[:-4]):
                    on_disk.add((box, name[:-4]))
        found = 0
        for box, mid in sorted(on_disk - indexed):
            path = os.path.join(self.root, box, mid + ".wav")
            when = float(mid.split("-")[1])
            txn.execute("INSERT INTO voicemail_messages (id, box, caller, caller_name, time,"
                        " duration, folder) VALUES (?, ?, '', '', ?, ?, 'new')",
                        (mid, box, when, round(wav_seconds(path), 3)))
            self.log.warn("voicemail {box}: re-indexed {id} found without its index row",
                          box=box, id=mid)
            found += 1
        for box, mid in sorted(indexed - on_disk):
            txn.execute("DELETE FROM voicemail_messages WHERE box = ? AND id = ?", (box, mid))
            self.log.warn("voicemail {box}: message {id} has no file; dropped", box=box, id=mid)
        return found


def _clean_tmp(tmp: str, remove: Callable[[str], None] = os.unlink) -> None:
    if not os.path.isdir(tmp):
        return
    for name in os.listdir(tmp):
        try:
            remove(os.path.join(tmp, name))
        except OSError:
            pass
