"""Composition of call recording (layer 7, beside ``pbxd.service``).

:func:`install_recording` is called by :func:`pbxd.service.make_service` once
the call manager exists. It

- opens the :class:`~pbxd.store.recordings.RecordingStore` in
  ``recording.folder`` (default ``state_dir/recordings``; file work in the
  reactor's thread pool);
- builds the :class:`~pbxd.calls.recording.CallRecorder` (the ``call-recorded``
  prompt for announcements), gives it to the calls layer as
  ``CallDeps.recording`` and puts it in the service registry as
  ``IRecordingService`` (the ``record_call`` application);
- adds :class:`RecordingService` (the retention sweep; at stop it waits for the
  recordings being closed) under ``parent``.

:meth:`Recording.register_reload` makes ``recording.stereo``, ``announce``,
``extensions``, ``retention_days``, ``sweep_interval`` and the extensions'
``record`` flags live on reload (``folder`` needs a restart).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool

from pbxd.calls.recording import ANNOUNCEMENT, CallRecorder
from pbxd.configschema import Config
from pbxd.interfaces import IRecordingService
from pbxd.prompts import resolve_prompt
from pbxd.store.recordings import RecordingStore, RetentionSweeper
from pbxd.wiring_dialplan import custom_prompt_dirs

__all__ = ["Recording", "RecordingService", "install_recording", "recorded_extensions"]

_LIVE = ("recording.stereo", "recording.announce", "recording.extensions",
         "recording.retention_days", "recording.sweep_interval")


def recorded_extensions(config: Config) -> set[str]:
    """The numbers of the extensions with ``record: true``."""
    return {number for number, ext in config.extensions.items() if ext.record}


class RecordingService(MultiService):
    """Holds the retention sweeper; at stop, waits for recordings being made durable."""

    def __init__(self, recorder: CallRecorder, sweeper: RetentionSweeper) -> None:
        super().__init__()
        self.recorder = recorder
        self.setName("recording")
        sweeper.setServiceParent(self)

    def stopService(self) -> Deferred[Any]:  # noqa: N802 (Twisted API)
        d = maybeDeferred(super().stopService)
        d.addCallback(lambda _: self.recorder.flush())
        return d


@dataclass
class Recording:
    """What :func:`install_recording` built."""

    store: RecordingStore
    recorder: CallRecorder
    sweeper: RetentionSweeper
    service: RecordingService

    def register_reload(self, reloader: Any) -> None:
        """Apply the live ``recording:`` keys and ``record`` flags on reload."""

        def apply(new: Config, old: Config) -> None:
            self.recorder.configure(new.recording, recorded_extensions(new))
            self.sweeper.retention_days = new.recording.retention_days
            self.sweeper.set_interval(new.recording.sweep_interval)

        reloader.register("recording", apply, sections=_LIVE)


def _run_blocking(reactor: Any) -> Any:
    """File work in the reactor's thread pool (at once under a test reactor without one)."""
    if not hasattr(reactor, "getThreadPool") or not hasattr(reactor, "callFromThread"):
        return None
    return lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f)


def install_recording(config: Config, reactor: Any, *, parent: Any, calls: Any,
                      state_dir: str) -> Recording:
    """Build and connect call recording (see the module docstring)."""
    section = config.recording
    run_blocking = _run_blocking(reactor)
    store = RecordingStore(section.folder or os.path.join(state_dir, "recordings"),
                           run_blocking=run_blocking)
    try:
        announcement: str | None = resolve_prompt(ANNOUNCEMENT, custom_prompt_dirs(config))
    except (FileNotFoundError, ValueError):
        announcement = None
    recorder = CallRecorder(reactor, store, section, recorded=recorded_extensions(config),
                            announcement=announcement, run_blocking=run_blocking)
    calls.deps.recording = recorder
    sessions = getattr(calls, "sessions", None)
    if sessions is not None:
        sessions.services[IRecordingService] = recorder
    sweeper = RetentionSweeper(store, reactor, section.retention_days, section.sweep_interval)
    service = RecordingService(recorder, sweeper)
    service.setServiceParent(parent)
    return Recording(store, recorder, sweeper, service)
