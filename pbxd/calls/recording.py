"""Recording bridged calls to WAV (layer 4): the ``IRecordingService`` and the bridge hook.

A :class:`CallRecorder` is given to the calls layer as ``CallDeps.recording``.
When a dialplan ``dial`` is answered, :class:`~pbxd.calls.dialling.Dialling`
hands it the session and the dialer (:meth:`CallRecorder.answered`); it
decides whether this bridge is recorded:

- the call was marked by the ``record_call`` application
  (:meth:`CallRecorder.record`, through ``ICallContext.service``), or
- the caller or the answering callee is a recorded extension
  (``extensions.N.record: true`` or ``recording.extensions``; ``"*"``: every call).

A recorded bridge gets a :class:`~pbxd.rtp.recorder.Recorder` fed by both legs'
``LegMedia.listeners`` (caller: ``feed_a``, left channel in stereo; callee:
``feed_b``), in a file named by the :class:`~pbxd.store.recordings.RecordingStore`.
With ``announce`` both parties first hear the ``call-recorded`` prompt (the
caller from the session's player, the callee from a player continuing the
caller's stream) and only then are connected and recorded. When the bridge ends
(:meth:`CallRecorder.unbridged`: the callee or the caller hung up, or the PBX
ended the call) the recorder stops: the WAV is written and fsync'ed, then its
metadata. The id goes into the session's ``recordings`` (the CDR's
``recording``). Bridges of a call without a dialplan are not recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from zope.interface import implementer

from pbxd.interfaces import IRecordingService
from pbxd.rtp.player import Player
from pbxd.rtp.recorder import Recorder, Recording

__all__ = ["CallRecorder", "RecordOptions"]

ANNOUNCEMENT = "call-recorded"


@dataclass(frozen=True, slots=True)
class RecordOptions:
    """How one bridge is recorded."""

    stereo: bool = False
    announce: bool = False


@dataclass
class _Active:
    recorder: Recorder
    rec_id: str
    a_media: Any
    b_media: Any


@implementer(IRecordingService)
class CallRecorder:
    """Records the bridges of marked calls and of recorded extensions.

    :param clock: IReactorTime for recorders and players.
    :param store: a :class:`~pbxd.store.recordings.RecordingStore`.
    :param config: the ``recording:`` section (stereo, announce, extensions).
    :param recorded: extension numbers with ``record: true`` (besides ``config.extensions``).
    :param announcement: the WAV path of the announcement (None: the prompt cannot play).
    :param run_blocking: runs the recorder's closing fsyncs (a thread pool in production).
    """

    log = Logger()

    def __init__(self, clock: Any, store: Any, config: Any, *, recorded: Iterable[str] = (),
                 announcement: str | None = None,
                 run_blocking: Callable[[Callable[[], Any]], Deferred[Any]] | None = None
                 ) -> None:
        self.clock = clock
        self.store = store
        self.announcement = announcement
        self.run_blocking = run_blocking
        self.marks: dict[str, RecordOptions] = {}
        self.active: dict[tuple[str, int], _Active] = {}
        self.announcing: dict[tuple[str, int], Player] = {}
        self.pending: set[Deferred[Any]] = set()
        self.configure(config, recorded)

    def configure(self, config: Any, recorded: Iterable[str] = ()) -> None:
        """Take a (re)loaded ``recording:`` section and set of recorded extensions."""
        self.defaults = RecordOptions(bool(config.stereo), bool(config.announce))
        self.extensions = frozenset(config.extensions) | frozenset(recorded)

    # -- IRecordingService ----------------------------------------------------------

    def record(self, call_id: str, stereo: bool | None = None,
               announce: bool | None = None) -> None:
        """Mark ``call_id``: its bridges from now on are recorded."""
        d = self.defaults
        self.marks[call_id] = RecordOptions(d.stereo if stereo is None else bool(stereo),
                                            d.announce if announce is None else bool(announce))
        self.log.info("call {call}: marked for recording", call=call_id)

    def unmark(self, call_id: str) -> bool:
        return self.marks.pop(call_id, None) is not None

    def is_marked(self, call_id: str) -> bool:
        return call_id in self.marks

    # -- what the calls layer calls ---------------------------------------------------

    def options_for(self, call_id: str, caller: str, callee: str) -> RecordOptions | None:
        """How a bridge of ``call_id`` between ``caller`` and ``callee`` is recorded
        (None: it is not)."""
        mark = self.marks.get(call_id)
        if mark is not None:
            return mark
        extensions = self.extensions
        if extensions and ("*" in extensions or caller in extensions or callee in extensions):
            return self.defaults
        return None

    def answered(self, session: Any, dialer: Any) -> None:
        """A dial of ``session`` was answered: connect it, announcing and recording
        when this bridge is recorded (``session.connect_dialer`` bridges it)."""
        if not self.extensions and session.id not in self.marks:  # nothing is recorded
            session.connect_dialer(dialer)
            return
        options = self.options_for(session.id, session.caller, callee_of(dialer))
        if options is None:
            session.connect_dialer(dialer)
            return
        if not options.announce or self.announcement is None:
            session.connect_dialer(dialer)
            self._start(session, dialer, options)
            return
        session.disconnect_dialer(dialer)  # early media relayed so far stops for the prompt
        key = (session.id, id(dialer))
        codec = session.codecs[0] if session.codecs else "PCMU"
        b_player = Player(self.clock, dialer.media, codec, **continuing(session.media))
        self.announcing[key] = b_player
        played = [session.play(self.announcement), b_player.play(self.announcement)]

        def announced(_: Any) -> None:
            b_player.stop("announced")
            if self.announcing.pop(key, None) is not b_player:
                return  # the bridge ended during the announcement (unbridged)
            if session.dialer is dialer and not session.ended:
                session.connect_dialer(dialer)
                self._start(session, dialer, options)

        DeferredList(played, consumeErrors=True).addCallback(announced)

    def unbridged(self, session: Any, dialer: Any) -> None:
        """The bridge of ``dialer`` ends (before its media closes): stop recording."""
        key = (session.id, id(dialer))
        player = self.announcing.pop(key, None)
        if player is not None:
            player.stop("hangup")
        active = self.active.pop(key, None)
        if active is None:
            return
        for media, feed in ((active.a_media, active.recorder.feed_a),
                            (active.b_media, active.recorder.feed_b)):
            if media is not None and feed in media.listeners:
                media.listeners.remove(feed)
        active.recorder.stop("hangup")

    def call_ended(self, call_id: str) -> None:
        """Forget the call's mark."""
        self.marks.pop(call_id, None)

    def flush(self) -> Deferred[Any]:
        """Fire once every recording stopped so far is durable with its metadata."""
        return DeferredList(list(self.pending), consumeErrors=True)

    # -- recording ----------------------------------------------------------------------

    def _start(self, session: Any, dialer: Any, options: RecordOptions) -> None:
        callee = callee_of(dialer)
        channels = 2 if options.stereo else 1
        meta = {"caller": session.caller, "callee": callee, "channels": channels}
        rec_id, path = self.store.begin(session.id, self.clock.seconds(), meta)
        try:
            recorder = Recorder(self.clock, path, channels=channels,
                                run_blocking=self.run_blocking)
        except OSError:
            self.log.failure("call {call}: cannot record to {path}", call=session.id, path=path)
            self.store.finish(rec_id, {"seconds": 0.0, "reason": "failed"})
            return
        a_media, b_media = session.media, dialer.media
        a_media.listeners.append(recorder.feed_a)
        b_media.listeners.append(recorder.feed_b)
        self.active[(session.id, id(dialer))] = _Active(recorder, rec_id, a_media, b_media)
        session.recordings.append(rec_id)
        self.log.info("call {call}: recording {caller} <-> {callee} to {path} ({mode})",
                      call=session.id, caller=session.caller, callee=callee, path=path,
                      mode="stereo" if options.stereo else "mono")

        def stopped(recording: Recording) -> Any:
            return self.store.finish(rec_id, {"seconds": round(recording.seconds, 3),
                                              "reason": recording.reason})

        def failed(failure: Any) -> None:
            self.log.failure("recording {id} failed", failure, id=rec_id)
            self.store.finish(rec_id, {"reason": "failed"}).addErrback(lambda _: None)

        done = recorder.stopped.addCallbacks(stopped, failed)
        done.addErrback(lambda f: self.log.failure("metadata of recording {id}", f, id=rec_id))
        self.pending.add(done)
        done.addBoth(lambda _: self.pending.discard(done))


def callee_of(dialer: Any) -> str:
    """The extension (or dialled target) of the fork that answered ``dialer``."""
    winner = dialer.winner
    for fork, target in zip(dialer.forks, dialer.targets, strict=False):
        if fork is winner:
            return str(target.extension)
    return ""


def continuing(media: Any) -> dict[str, int]:
    """Sequence number and timestamp carrying on from what ``media``'s phone sent (what the
    other phone heard of it, if anything), so phones that drop "older" packets (baresip 1.0)
    play both the announcement and the relayed audio after it."""
    stats = getattr(media, "stats", None)
    if stats is None or not getattr(stats, "packets", 0):
        return {}
    return {"sequence": (stats.max_seq + 1) & 0xFFFF,
            "timestamp": (getattr(stats, "_last_ts", 0) + 160) & 0xFFFFFFFF}
