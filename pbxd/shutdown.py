"""Graceful shutdown on SIGTERM (layer 7).

twistd turns SIGTERM into ``reactor.stop()``; its 'before shutdown' trigger
calls ``stopService`` of the application and waits for the Deferred. Other
'before shutdown' triggers run at the same moment, not ahead of it, so a
trigger cannot hold the services up: the drain is the first step of the root
service's own ``stopService`` instead (:class:`PBXService`), which twistd
waits for.

The drain (:class:`Drainer`): new INVITEs get ``503`` with ``Retry-After``
(the controller's ``draining`` reason), reloads are refused, and calls in
progress may go on for ``calls.drain_time`` seconds. Then the services stop
as before: the CallManager ends what is left (BYE to both sides) and waits
for every CDR, and the state service closes the database after all its
children have stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()

REASON = "shutting down"


class Drainer:
    """Refuse new calls, then wait up to ``drain_time`` for the calls in progress.

    :param clock: IReactorTime.
    :param count_calls: how many calls are in progress now.
    :param refuse_new: called once with the reason when the drain starts (the
        composition root points it at the controller and the reloader).
    :param drain_time: ``calls.drain_time`` seconds (0: do not wait).
    :param poll: seconds between looks at the call count.
    """

    def __init__(self, clock: Any, *, count_calls: Callable[[], int],
                 refuse_new: Callable[[str], None], drain_time: float,
                 poll: float = 0.25) -> None:
        self.clock = clock
        self.count_calls = count_calls
        self.refuse_new = refuse_new
        self.drain_time = drain_time
        self.poll = poll
        self.draining = False

    def drain(self) -> Deferred:
        """Fire with the number of calls still up when the wait ended (0: all finished)."""
        self.draining = True
        self.refuse_new(REASON)
        count = self.count_calls()
        if count == 0 or self.drain_time <= 0:
            log.info("shutdown: {count} calls in progress, not waiting", count=count)
            return succeed(count)
        log.info("shutdown: new calls refused; waiting up to {seconds}s for {count} calls",
                 seconds=self.drain_time, count=count)
        deadline = self.clock.seconds() + self.drain_time
        done: Deferred = Deferred()

        def look() -> None:
            left = self.count_calls()
            if left and self.clock.seconds() < deadline:
                return
            loop.stop()
            if left:
                log.info("shutdown: drain time over, ending {count} calls", count=left)
            else:
                log.info("shutdown: every call has finished")
            done.callback(left)

        loop = LoopingCall(look)
        loop.clock = self.clock
        loop.start(self.poll, now=False)
        return done


class PBXService(MultiService):
    """The root service: on stop, drain first (if a :class:`Drainer` is set), then stop."""

    def __init__(self) -> None:
        super().__init__()
        self.drainer: Drainer | None = None
        # the pbxd.reload.Reloader (set by pbxd.service; reload is a sibling layer, not imported)
        self.reloader: Any = None

    def stopService(self) -> Deferred:
        """Drain, then stop every child (the calls end, the database closes last)."""
        if self.drainer is None:
            return super().stopService()
        d = self.drainer.drain()
        d.addErrback(lambda f: log.failure("drain failed", f))
        d.addBoth(lambda _: MultiService.stopService(self))
        return d
