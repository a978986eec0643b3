"""What client and server transactions share: states, timer values, timer
bookkeeping, sending that never raises, and the RFC 3261 §18.2.2 response address.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.logger import Logger

from pbxd import debuglog
from pbxd.sip.tokens import random_hex

MAGIC_COOKIE = "z9hG4bK"
"""RFC 3261 §8.1.1.7: branches starting with this are globally unique."""


class DelayedCall(Protocol):
    """What ``callLater`` returns (twisted.internet.interfaces.IDelayedCall)."""

    def active(self) -> bool: ...
    def cancel(self) -> None: ...


class Clock(Protocol):
    """The part of IReactorTime the transactions use (a reactor or task.Clock)."""

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any,
                  **kw: Any) -> DelayedCall: ...


class Transport(Protocol):
    """The part of pbxd.interfaces.ISIPTransport the transactions use."""

    name: str
    reliable: bool

    def send(self, data: bytes, address: tuple[str, int]) -> bool: ...


class State(enum.StrEnum):
    """Transaction states of RFC 3261 §17 and RFC 6026 (Accepted)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


@dataclass(frozen=True)
class Timers:
    """Timer base values in seconds (RFC 3261 table 4).

    ``trying_delay`` is how long an INVITE server transaction waits for the TU
    before answering ``100 Trying`` itself (§17.2.1); ``None`` disables it.
    ``d`` is Timer D for unreliable transports (RFC 3261: at least 32 s).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0
    trying_delay: float | None = 0.2

    @property
    def timeout(self) -> float:
        """64*T1: timers B, F, H, J (unreliable), L and M."""
        return 64 * self.t1


def new_branch() -> str:
    """A fresh RFC 3261 branch parameter for the top Via of a new client transaction."""
    return MAGIC_COOKIE + random_hex(16)


def _default_port(via: Any) -> int:
    return 5061 if str(getattr(via, "transport", "")).upper() == "TLS" else 5060


def response_address(via: Any, source: tuple[str, int] | None, reliable: bool) -> tuple[str, int]:
    """Where to send a response to a request whose top Via is ``via`` (RFC 3261 §18.2.2, RFC 3581).

    Reliable transports answer over the connection the request came on; this is the
    fallback when that connection is gone: the ``received`` address (or sent-by host)
    and the sent-by port (default 5060, 5061 for TLS). For unreliable transports
    ``maddr`` is not supported and ignored; an ``rport`` with a value sends to
    (``received`` or the source host, rport); otherwise to (``received`` or the Via
    host, the Via port or the default).
    """
    params = via.params
    received = params.get("received")
    port = via.port or _default_port(via)
    if not reliable:
        rport = params.get("rport")
        if rport:
            try:
                rport_value = int(rport)
            except ValueError:
                rport_value = 0
            if 0 < rport_value < 65536:
                host = received or (source[0] if source else via.host)
                return host, rport_value
    return received or via.host, port


class TransactionBase:
    """Timer bookkeeping and termination common to client and server transactions."""

    log = Logger()
    kind = "transaction"

    def __init__(
        self,
        txn_id: str,
        request: Any,
        transport: Transport,
        clock: Clock,
        timers: Timers,
        on_removed: Callable[[Any], None],
    ) -> None:
        self.id = txn_id
        self.request = request
        self.transport = transport
        self.method: str = request.method
        self.is_invite = self.method == "INVITE"
        self.reliable = bool(transport.reliable)
        self.state = State.TERMINATED
        self._clock = clock
        self._timers = timers
        self._on_removed: Callable[[Any], None] | None = on_removed
        self._calls: dict[str, DelayedCall] = {}
        self.done = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.method} {self.state}>"

    # -- timers ---------------------------------------------------------------

    def _start(self, name: str, delay: float, fn: Callable[[Any], object]) -> None:
        """Start timer ``name``: ``fn(self)`` after ``delay``; a zero delay (reliable
        transports) calls it at once.

        ``fn`` is a function of the class (``ServerTransaction._end``), not a bound
        method: the clock keeps it and the transaction, nothing made per timer (the
        transaction timer queues take a single argument without a tuple). A timer
        that ran stays in ``_calls`` (inactive) until its name is started or stopped.
        """
        calls = self._calls
        if calls:
            self._stop(name)
        if self.done:
            return
        if delay <= 0:
            fn(self)
            return
        calls[name] = self._clock.callLater(delay, fn, self)

    def _stop(self, name: str) -> None:
        call = self._calls.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _stop_all(self) -> None:
        calls = self._calls
        for call in calls.values():
            if call.active():
                call.cancel()
        calls.clear()

    def timer_names(self) -> list[str]:
        """Names of the running timers (for tests and debugging)."""
        return sorted(name for name, call in self._calls.items() if call.active())

    # -- sending and termination ----------------------------------------------

    def _send_bytes(self, data: bytes, address: tuple[str, int]) -> bool:
        """Send through the transport; False (never an exception) on failure."""
        try:
            sent = self.transport.send(data, address)
        except Exception:
            self.log.failure("{txn} send to {address} raised", txn=self.id, address=address)
            return False
        if sent is False:
            self.log.info("{txn} transport {transport} could not send to {address}",
                          txn=self.id, transport=self.transport.name, address=address)
            return False
        return True

    def _terminate(self) -> bool:
        """Go to Terminated, stop every timer and leave the layer's tables.

        Returns False if the transaction had already terminated.
        """
        if self.done:
            return False
        self.done = True
        self.state = State.TERMINATED
        self._stop_all()
        on_removed, self._on_removed = self._on_removed, None
        if on_removed is not None:
            on_removed(self)
        if debuglog.ENABLED:
            self.log.debug("{txn} {method} terminated", txn=self.id, method=self.method)
        return True

    @staticmethod
    def _call(callback: Callable[..., Any] | None, *args: Any) -> None:
        """Call a TU callback; a TU bug is logged, never raised into the transaction."""
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            TransactionBase.log.failure("transaction user callback {cb!r} raised", cb=callback)
