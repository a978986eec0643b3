"""Call recordings on disk: naming, listing, deleting, retention (layer 3).

A recording is two files in ``recording.folder`` (default
``state_dir/recordings``)::

    20240131-142501-3f2a00001.wav     the audio (8 kHz 16-bit PCM, mono or stereo)
    20240131-142501-3f2a00001.json    what it is: call id, caller, callee, start, seconds ...

The id is the file name without ``.wav``: the UTC start time and the PBX call id
(``-2``, ``-3`` ... for a call's further bridges). The WAV file is the
recording; the JSON file is written when the recording starts and rewritten
durably (temporary file, ``fsync``, rename, directory ``fsync``) when it
stops. A WAV without JSON (a crash before the first write) is still listed,
with what the file itself says.

Every method touching the disk runs through ``run_blocking`` (a thread pool in
production, at once in tests) and returns a Deferred. Recordings in progress
(:meth:`RecordingStore.begin` until :meth:`RecordingStore.finish`) are never
deleted. :class:`RetentionSweeper` deletes recordings older than
``retention_days`` every ``sweep_interval`` seconds of the injected clock.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["ID_PATTERN", "RecordingStore", "RetentionSweeper"]

RunBlocking = Callable[[Callable[[], Any]], "Deferred[Any]"]

ID_PATTERN = re.compile(r"[0-9]{8}-[0-9]{6}-[A-Za-z0-9_.+-]{1,80}")
"""What a recording id looks like (no slash, no dot-dot: safe as a file name)."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")
_WAV_HEADER = 44


class RecordingStore:
    """The recordings folder (created if missing)."""

    log = Logger()

    def __init__(self, folder: str, *, run_blocking: RunBlocking | None = None) -> None:
        self.folder = folder
        os.makedirs(folder, mode=0o750, exist_ok=True)
        self._run: RunBlocking = run_blocking or (lambda f: maybeDeferred(f))
        self.active: set[str] = set()
        """Ids of the recordings in progress."""
        self._first: dict[str, Deferred[Any]] = {}  # the metadata write of begin(), running

    # -- recording ---------------------------------------------------------------

    def begin(self, call_id: str, start: float, meta: dict[str, Any]) -> tuple[str, str]:
        """A fresh ``(id, wav path)`` for a recording of ``call_id`` starting at ``start``
        (epoch); ``meta`` (caller, callee, channels ...) is kept beside it."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(start))
        base = f"{stamp}-{_UNSAFE.sub('_', call_id)[:60] or 'call'}"
        rec_id, n = base, 1
        while rec_id in self.active or os.path.exists(self._wav(rec_id)):
            n += 1
            rec_id = f"{base}-{n}"
        self.active.add(rec_id)
        record = {"id": rec_id, "call_id": call_id, "start": start, **meta}
        first = self._run(lambda: self._write_meta(rec_id, record, durable=False))
        first.addErrback(
            lambda f: self.log.failure("metadata of recording {id} not written", f, id=rec_id))
        self._first[rec_id] = first
        first.addBoth(self._first_written, rec_id)
        return rec_id, self._wav(rec_id)

    def finish(self, rec_id: str, meta: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """The recording stopped (its WAV is durable): update and fsync its metadata."""

        def write() -> dict[str, Any]:
            record = {**self._read_meta(rec_id), **meta, "id": rec_id}
            self._write_meta(rec_id, record, durable=True)
            return record

        def done(result: Any) -> Any:
            self.active.discard(rec_id)
            return result

        first = self._first.get(rec_id)  # never overtaken by the first write (thread pool)
        if first is None:
            return self._run(write).addBoth(done)
        after: Deferred[dict[str, Any]] = Deferred()
        first.addBoth(lambda _: self._run(write).addBoth(done).chainDeferred(after))
        return after

    def _first_written(self, result: Any, rec_id: str) -> None:
        self._first.pop(rec_id, None)

    # -- reading -----------------------------------------------------------------

    def list(self) -> Deferred[list[dict[str, Any]]]:
        """Every recording, newest first (see :meth:`get` for the fields)."""

        def scan() -> list[dict[str, Any]]:
            out = []
            for name in os.listdir(self.folder):
                if name.endswith(".wav") and ID_PATTERN.fullmatch(name[:-4]):
                    record = self._describe(name[:-4])
                    if record is not None:
                        out.append(record)
            out.sort(key=lambda r: (r["start"], r["id"]), reverse=True)
            return out

        return self._run(scan)

    def get(self, rec_id: str) -> Deferred[dict[str, Any] | None]:
        """``{id, call_id, caller, callee, start, seconds, channels, size, recording,
        path}`` (``recording``: still in progress), or None when there is no such one."""
        if not ID_PATTERN.fullmatch(rec_id):
            return maybeDeferred(lambda: None)
        return self._run(lambda: self._describe(rec_id))

    def read(self, rec_id: str) -> Deferred[bytes | None]:
        """The WAV file's bytes, or None when there is no such recording."""

        def read() -> bytes | None:
            try:
                with open(self._wav(rec_id), "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return None

        if not ID_PATTERN.fullmatch(rec_id):
            return maybeDeferred(lambda: None)
        return self._run(read)

    # -- deleting ----------------------------------------------------------------

    def delete(self, rec_id: str) -> Deferred[bool]:
        """Delete a finished recording (False if unknown; ValueError while recording)."""
        if not ID_PATTERN.fullmatch(rec_id):
            return maybeDeferred(lambda: False)
        if rec_id in self.active:
            return maybeDeferred(_refuse, rec_id)
        return self._run(lambda: self._remove(rec_id))

    def sweep(self, before: float) -> Deferred[builtins.list[str]]:
        """Delete every finished recording that started before ``before`` (epoch);
        fires with the ids deleted."""
        active = set(self.active)

        def sweep() -> list[str]:
            gone = []
            for name in os.listdir(self.folder):
                rec_id = name[:-4]
                if not name.endswith(".wav") or rec_id in active or \
                        not ID_PATTERN.fullmatch(rec_id):
                    continue
                record = self._describe(rec_id)
                if record is not None and record["start"] < before and self._remove(rec_id):
                    gone.append(rec_id)
            return gone

        return self._run(sweep)

    # -- files (blocking; run through run_blocking) --------------------------------

    def _wav(self, rec_id: str) -> str:
        return os.path.join(self.folder, f"{rec_id}.wav")

    def _json(self, rec_id: str) -> str:
        return os.path.join(self.folder, f"{rec_id}.json")

    def _read_meta(self, rec_id: str) -> dict[str, Any]:
        try:
            with open(self._json(rec_id), encoding="utf-8") as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_meta(self, rec_id: str, record: dict[str, Any], *, durable: bool) -> None:
        path = self._json(rec_id)
        temp = f"{path}.tmp"
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(record, f, sort_keys=True)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temp, path)
        if durable:
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _describe(self, rec_id: str) -> dict[str, Any] | None:
        path = self._wav(rec_id)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        meta = self._read_meta(rec_id)
        channels = int(meta.get("channels") or 1)
        seconds = meta.get("seconds")
        if seconds is None:  # in progress, or no metadata: what the file holds so far
            seconds = round(max(0, stat.st_size - _WAV_HEADER) / (16000 * channels), 3)
        return {
            "id": rec_id,
            "call_id": str(meta.get("call_id") or ""),
            "caller": str(meta.get("caller") or ""),
            "callee": str(meta.get("callee") or ""),
            "start": float(meta.get("start") or stat.st_mtime),
            "seconds": float(seconds),
            "channels": channels,
            "size": stat.st_size,
            "recording": rec_id in self.active,
            "path": path,
        }

    def _remove(self, rec_id: str) -> bool:
        removed = False
        for path in (self._wav(rec_id), self._json(rec_id)):
            try:
                os.remove(path)
                removed = True
            except FileNotFoundError:
                pass
        return removed


def _refuse(rec_id: str) -> bool:
    raise ValueError(f"recording {rec_id} is in progress")


class RetentionSweeper(Service):
    """Deletes recordings older than ``retention_days`` (0: never) every ``interval`` s."""

    log = Logger()

    def __init__(self, store: RecordingStore, clock: Any, retention_days: float,
                 interval: float = 3600.0) -> None:
        self.store = store
        self.clock = clock
        self.retention_days = retention_days
        self.interval = interval
        self.deleted = 0
        self._loop: LoopingCall | None = None
        self.setName("recording-retention")

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Sweep now, then every ``interval`` seconds."""
        super().startService()
        self._loop = LoopingCall(self.sweep)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: self.log.failure("recording retention sweep stopped", f))

    def stopService(self) -> None:  # noqa: N802 (Twisted API)
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def set_interval(self, interval: float) -> None:
        """Sweep every ``interval`` seconds from the next sweep on."""
        self.interval = interval
        if self._loop is not None:
            self._loop.interval = interval

    def sweep(self) -> Deferred[list[str]] | None:
        """Delete what is too old now (nothing when retention_days is 0)."""
        if self.retention_days <= 0:
            return None
        before = self.clock.seconds() - self.retention_days * 86400.0
        d = self.store.sweep(before)

        def done(gone: list[str]) -> list[str]:
            self.deleted += len(gone)
            if gone:
                self.log.info("retention: deleted {n} recording(s) older than {days:g} days",
                              n=len(gone), days=self.retention_days)
            return gone

        d.addCallback(done)
        d.addErrback(lambda f: self.log.failure("recording retention sweep failed", f))
        return d
