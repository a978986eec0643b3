"""Call detail records for ended calls (layer 4).

:func:`build_cdr` turns an ended :class:`~pbxd.calls.call.Call` into the
record :class:`~pbxd.interfaces.ICDRStore` writes (see
:mod:`pbxd.store.cdr` for the columns). :class:`CDRWriter` writes them and
keeps the writes still in flight, so shutdown can wait for every one.

Dispositions (the names Asterisk users know):

==============  ==========================================================
ANSWERED        the call was answered (whatever ended it later)
NO ANSWER       nobody answered in time (no-answer timeout, 408, 480)
BUSY            the callee was busy or declined (486, 600, 603)
CANCELLED       the caller hung up before the answer (CANCEL)
FAILED          anything else (404, 488, 5xx, no ports, bad SDP ...)
==============  ==========================================================
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbxd.store.db import CommitWindow

BUSY_STATUSES = frozenset({486, 600, 603})
NO_ANSWER_STATUSES = frozenset({408, 480})


def disposition_for(status: int) -> str:
    """The disposition of an unanswered call that ended with final ``status``."""
    if status in BUSY_STATUSES:
        return "BUSY"
    if status in NO_ANSWER_STATUSES:
        return "NO ANSWER"
    if status == 487:
        return "CANCELLED"
    return "FAILED"


def build_cdr(call: Any) -> dict[str, Any]:
    """The CDR of an ended call (a dict with :data:`pbxd.store.cdr.CDR_FIELDS` and extras)."""
    end = call.ended_at if call.ended_at is not None else call.started_at
    answer = call.answered_at
    return {
        "call_id": _sip_call_id(call.a),
        "start": call.started_at,
        "answer": answer,
        "end": end,
        "duration": round(max(0.0, end - call.started_at), 3),
        "billsec": round(max(0.0, end - answer), 3) if answer is not None else 0.0,
        "source": call.caller,
        "destination": call.destination,
        "disposition": call.disposition or "FAILED",
        "hangup_cause": call.hangup_cause,
        "hangup_side": call.hangup_side,
        "codecs": list(call.codecs),
        "media": dict(call.media_counters),
        "pbx_call_id": call.id,
        "answered_by": call.winner.id if call.winner is not None else None,
        **_recordings(call),
    }


def _recordings(call: Any) -> dict[str, Any]:
    """``recording``: the id of the call's (first) recording, in the admin API's
    ``/recordings``; ``recordings``: every one, when a call recorded several bridges."""
    ids = list(getattr(call, "recordings", None) or ())
    if not ids:
        return {}
    return {"recording": ids[0], **({"recordings": ids} if len(ids) > 1 else {})}


def _sip_call_id(leg: Any) -> str | None:
    """The Call-ID of the caller's leg (the INVITE we got, or the one we sent)."""
    message = getattr(leg, "request", None) or getattr(leg, "invite", None)
    return message.call_id if message is not None else getattr(leg, "call_id", None)


def count_call(metrics: Any, record: dict[str, Any]) -> None:
    """Count an ended call by disposition, and its RTP relayed and lost, in ``metrics``."""
    disposition = record.get("disposition") or "FAILED"
    name = _METRIC_NAMES.get(disposition) if type(disposition) is str else None
    metrics.call_ended(name or str(disposition).lower().replace(" ", "_"))
    relayed = lost = 0
    for c in (record.get("media") or {}).values():
        if isinstance(c, dict):
            relayed += int(c.get("packets_out", 0))
            lost += max(0, int(c.get("lost", 0)))
    metrics.rtp(relayed=relayed, lost=lost)


_METRIC_NAMES = {"ANSWERED": "answered", "NO ANSWER": "no_answer", "BUSY": "busy",
                 "CANCELLED": "cancelled", "FAILED": "failed"}


class CDRWriter:
    """Writes CDRs through an ICDRStore; :meth:`flush` waits for those in flight.

    Group commit: when the store has ``write_many``, CDRs of calls that end while a
    write is in flight wait for it and then go together in one transaction (one
    commit and one fsync for many calls under load; at once when idle). With a
    ``clock``, the store's database ``commit_delay`` also spaces the transactions
    (:class:`pbxd.store.db.CommitWindow`): under a steady call rate one transaction
    gathers the CDRs of a window. Each :meth:`write` Deferred still fires only once its
    CDR is committed, and :meth:`flush` waits for the queued ones as well as those
    being written (and starts a waiting group at once).
    """

    log = Logger()
    metrics: Any = None  # a pbxd.web.metrics.Metrics (call_ended, rtp), set by composition

    def __init__(self, store: Any, clock: Any = None) -> None:
        self.store = store
        self.pending: set[Deferred] = set()
        self.written = 0
        self.failed = 0
        self._queued: list[tuple[dict[str, Any], Deferred]] = []
        self._writing = False
        delay = getattr(getattr(store, "database", None), "commit_delay", 0.0)
        self._window = CommitWindow(clock, delay if clock is not None else 0.0)

    def write(self, record: dict[str, Any]) -> Deferred:
        """Start writing ``record``; the Deferred never fails (errors are logged)."""
        if self.metrics is not None:
            count_call(self.metrics, record)
        if self.store is None:
            self.written += 1
            return succeed(None)
        if hasattr(self.store, "write_many"):
            d: Deferred = Deferred()
            self._queued.append((record, d))
            if not self._writing and self._window.timer is None:
                self._window.run(self._flush_queue)
        else:
            try:
                d = self.store.write(record)
            except Exception as e:  # a store bug must not stop call teardown
                d = fail(e)
        self.pending.add(d)
        d.addCallbacks(self._done, self._failed, callbackArgs=(d,), errbackArgs=(d, record))
        return d

    def _done(self, result: Any, d: Deferred) -> Any:
        self.pending.discard(d)
        self.written += 1
        return result

    def _failed(self, failure: Any, d: Deferred, record: dict[str, Any]) -> None:
        self.pending.discard(d)
        self.failed += 1
        self.log.failure("CDR of {call_id} not written", failure, call_id=record.get("call_id"))

    def _flush_queue(self) -> None:
        batch, self._queued = self._queued, []
        self._writing = True
        try:
            written = self.store.write_many([record for record, _ in batch])
        except Exception as e:  # a store bug must not stop call teardown
            written = fail(e)
        written.addBoth(self._written, [d for _, d in batch])

    def _written(self, result: Any, waiting: list[Deferred]) -> None:
        self._writing = False
        for i, d in enumerate(waiting):
            outcome = result if isinstance(result, Failure) else result[i]
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)
        if self._queued and not self._writing and self._window.timer is None:
            self._window.run(self._flush_queue)

    def flush(self) -> Deferred:
        """Fire once every write started so far has finished."""
        self._window.now(self._flush_queue)  # (shutdown: nothing waits for the window)
        return DeferredList(list(self.pending), consumeErrors=True)
