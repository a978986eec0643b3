"""The transaction layer: creates transactions and matches messages to them
(RFC 3261 §17.1.3, §17.2.3 with the RFC 2543 fallback, §9.2 for CANCEL)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from twisted.logger import Logger

from pbxd.errors import PBXError
from pbxd.sip.transaction.client import ClientTransaction
from pbxd.sip.transaction.common import MAGIC_COOKIE, Clock, Timers, Transport
from pbxd.sip.transaction.server import ServerTransaction
from pbxd.sip.transaction.timers import TimerQueues

BranchKey = tuple[str, str, int | None]
_UNMATCHABLE: Any = object()  # the matching headers of a request did not parse
# A missing or unparsable header means "no key", never a crash out of the layer.
_KEY_ERRORS = (PBXError, ValueError, AttributeError, TypeError)


def _branch_key(request: Any) -> BranchKey | None:
    """(branch, sent-by host, sent-by port) for RFC 3261 branches, None for RFC 2543 ones."""
    via = request.top_via
    if via is None:
        raise ValueError("no Via")
    branch = via.branch
    if not branch or not branch.startswith(MAGIC_COOKIE):
        return None
    return branch, via.host.lower(), via.port


def _legacy_key(request: Any, method: str) -> tuple[Any, ...]:
    """RFC 2543 matching (§17.2.3): Request-URI, From tag, Call-ID, CSeq, top Via.

    The To tag is part of the key for non-INVITE methods; for INVITE (and its ACK
    and CANCEL) it is checked after the lookup, because the ACK carries the To tag
    of the response rather than the one of the INVITE.
    """
    via = request.top_via
    via_id = (via.transport, via.host.lower(), via.port, via.branch,
              tuple(sorted((k, v) for k, v in via.params.items()
                           if k not in ("received", "rport", "branch"))))
    to_tag = None if method == "INVITE" else request.to.tag
    return (method, str(request.uri), request.from_.tag, request.call_id,
            request.cseq.seq, via_id, to_tag)


class TransactionLayer:
    """All live client and server transactions of one SIP stack, on one clock.

    The controller's use, message by message::

        if isinstance(msg, Response):
            layer.match_response(msg, transport, source)   # False: stray, drop or log
        elif msg.method == "ACK":
            if not layer.match_ack(msg):                    # True: ACK for a non-2xx, done
                handler.ackReceived(msg, transport, source)  # ACK for a 2xx: the dialog's
        else:
            txn = layer.server_transaction(msg, transport, source)
            if txn is None: return                          # retransmission, absorbed

    ``server_transaction`` never creates a transaction for ACK: given one it behaves
    like ``match_ack`` and returns None. ``trying_delay`` (default 0.2 s, None to
    disable) is the automatic 100 Trying of INVITE server transactions; ``timer_d``
    is Timer D on unreliable transports. ``on_server_terminated(txn)`` is called
    whenever a server transaction leaves the layer.
    """

    log = Logger()

    def __init__(
        self,
        clock: Clock,
        *,
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        trying_delay: float | None = 0.2,
        timer_d: float = 32.0,
        on_server_terminated: Callable[[ServerTransaction], None] | None = None,
    ) -> None:
        self.clock = clock
        # the transactions' timers: one FIFO and one DelayedCall per duration
        self._timer_queues = TimerQueues(clock)
        self.timers = Timers(t1=t1, t2=t2, t4=t4, d=timer_d, trying_delay=trying_delay)
        self.on_server_terminated = on_server_terminated
        self._ids = itertools.count(1)
        self._servers: dict[str, ServerTransaction] = {}
        # RFC 3261 branch -> its server transaction, or when several share the branch
        # (an INVITE and its CANCEL) method -> transaction: no dict per transaction
        self._by_branch: dict[BranchKey, ServerTransaction | dict[str, ServerTransaction]] = {}
        self._legacy: dict[tuple[Any, ...], ServerTransaction] = {}
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self.metrics: Any = None  # pbxd.web.metrics.Metrics (transaction), set by composition
        # made once: each transaction refers to these instead of a bound method of its own
        self._on_server_removed = self._server_removed
        self._on_client_removed = self._client_removed

    def __len__(self) -> int:
        """Live transactions, client and server."""
        return len(self._servers) + len(self._clients)

    def __iter__(self) -> Iterator[ClientTransaction | ServerTransaction]:
        yield from list(self._servers.values())
        yield from list(self._clients.values())

    # -- server side ------------------------------------------------------------

    def server_transaction(self, request: Any, transport: Transport,
                           source: tuple[str, int]) -> ServerTransaction | None:
        """A new server transaction for ``request``, or None when it was absorbed.

        None for a retransmission (the last provisional/final is re-sent as §17.2
        says) and for any ACK (see :meth:`match_ack`). A request whose matching
        headers do not parse gets a transaction that nothing else can match, so the
        controller can still answer 400.
        """
        method = request.method
        if method == "ACK":
            self.match_ack(request)
            return None
        try:
            bkey = _branch_key(request)
        except _KEY_ERRORS:
            bkey = _UNMATCHABLE
        if bkey is not None and bkey is not _UNMATCHABLE:
            # RFC 3261 branch: one lookup serves the retransmission check and the index
            entry = self._by_branch.get(bkey)
            if entry is None:
                existing = None
            elif isinstance(entry, dict):
                existing = entry.get(method)
            else:
                existing = entry if entry.method == method else None
        elif bkey is None:
            existing = self._find_server(request, method)
        else:
            existing = None
        if existing is not None:
            existing.request_retransmitted(request)
            return None
        txn = ServerTransaction(f"s{next(self._ids)}", request, transport, source,
                                clock=self._timer_queues, timers=self.timers,
                                on_removed=self._on_server_removed)
        self._servers[txn.id] = txn
        if bkey is not None and bkey is not _UNMATCHABLE:
            txn.layer_key = bkey
            if entry is None:
                self._by_branch[bkey] = txn
            elif isinstance(entry, dict):
                entry[method] = txn
            else:
                self._by_branch[bkey] = {entry.method: entry, method: txn}
        else:
            self._index_server(txn)
        if self.metrics is not None:
            self.metrics.transaction("server")
        txn.start()
        return txn

    def match_ack(self, ack: Any) -> bool:
        """True when ``ack`` belonged to an INVITE server transaction that sent a
        3xx-6xx (absorbed: Confirmed, Timer I). False otherwise: an ACK for a 2xx,
        which the controller passes to the dialog layer."""
        txn = self._find_server(ack, "ACK")
        return txn.ack_received(ack) if txn is not None else False

    def find_server_transaction_for_cancel(self, cancel: Any) -> ServerTransaction | None:
        """The transaction a CANCEL asks to cancel (RFC 3261 §9.2): matched like the
        CANCEL but with any method other than CANCEL/ACK, INVITE first. RFC 2543
        (branch-less) CANCELs find INVITE transactions only."""
        try:
            bkey = _branch_key(cancel)
            if bkey is not None:
                entry = self._by_branch.get(bkey)
                if entry is None:
                    return None
                if not isinstance(entry, dict):
                    return None if entry.method in ("CANCEL", "ACK") else entry
                by_method = entry
                if "INVITE" in by_method:
                    return by_method["INVITE"]
                for method, txn in by_method.items():
                    if method not in ("CANCEL", "ACK"):
                        return txn
                return None
        except _KEY_ERRORS:
            return None
        return self._find_server(cancel, "INVITE")

    def _find_server(self, request: Any, method: str) -> ServerTransaction | None:
        table_method = "INVITE" if method == "ACK" else method
        try:
            bkey = _branch_key(request)
            if bkey is not None:
                entry = self._by_branch.get(bkey)
                if entry is None:
                    return None
                if isinstance(entry, dict):
                    return entry.get(table_method)
                return entry if entry.method == table_method else None
            txn = self._legacy.get(_legacy_key(request, table_method))
            if txn is None or table_method != "INVITE":
                return txn
            if method == "ACK":
                sent = txn.last_response
                ok = sent is not None and request.to.tag == sent.to.tag
            else:
                ok = request.to.tag == txn.request.to.tag
            return txn if ok else None
        except _KEY_ERRORS:
            return None

    def _index_server(self, txn: ServerTransaction) -> None:
        """Index a transaction without an RFC 3261 branch (or whose Via did not parse)."""
        # matched on its messages (RFC 2543: the To tags of request and response), or
        # not matchable at all: it keeps them to the end
        txn.keep_messages = True
        try:
            lkey = _legacy_key(txn.request, txn.method)
            self._legacy[lkey] = txn
            txn.layer_key = lkey
        except _KEY_ERRORS:
            self.log.info("{txn} {method} not matchable: bad Via/CSeq/From/To",
                          txn=txn.id, method=txn.method)

    def _server_removed(self, txn: ServerTransaction) -> None:
        self._servers.pop(txn.id, None)
        key = txn.layer_key
        if key is None:
            pass
        elif txn.keep_messages:  # RFC 2543
            if self._legacy.get(key) is txn:
                del self._legacy[key]
        else:
            entry = self._by_branch.get(key)
            if entry is txn:
                del self._by_branch[key]
            elif isinstance(entry, dict) and entry.get(txn.method) is txn:
                del entry[txn.method]
                if len(entry) == 1:
                    [self._by_branch[key]] = entry.values()
        if self.on_server_terminated is not None:
            try:
                self.on_server_terminated(txn)
            except Exception:
                self.log.failure("on_server_terminated raised for {txn}", txn=txn.id)

    # -- client side ------------------------------------------------------------

    def client_transaction(
        self,
        request: Any,
        transport: Transport,
        address: tuple[str, int],
        *,
        on_response: Callable[[Any], None] | None,
        on_timeout: Callable[[], None] | None,
    ) -> ClientTransaction:
        """Send ``request`` in a new client transaction and return it.

        The request must carry its own top Via with a unique RFC 3261 branch
        (:func:`new_branch`). Sending failures never raise: they reach
        ``on_timeout`` (on the next clock turn when the very first send fails).
        Raises ValueError for an ACK (never a transaction: send it directly), a
        missing branch, or a branch already in use for this method.
        """
        if request.method == "ACK":
            raise ValueError("ACK is not sent in a transaction; send it over the transport")
        via = request.top_via
        if via is None or not via.branch:
            raise ValueError("a client request needs a top Via with a branch")
        key = (via.branch, request.method)
        if key in self._clients:
            raise ValueError(f"branch {via.branch} already used for {request.method}")
        txn = ClientTransaction(f"c{next(self._ids)}", request, transport, address,
                                clock=self._timer_queues, timers=self.timers,
                                on_response=on_response, on_timeout=on_timeout,
                                on_removed=self._on_client_removed)
        self._clients[key] = txn
        if self.metrics is not None:
            self.metrics.transaction("client")
        if request.method == "CANCEL":
            invite = self._clients.get((via.branch, "INVITE"))
            if invite is not None:
                invite.cancel_sent()
        txn.start()
        return txn

    def match_response(self, response: Any, transport: Transport,
                       source: tuple[str, int]) -> bool:
        """Hand ``response`` to its client transaction (top Via branch + CSeq method).

        False when none matched (a stray response, or a 2xx retransmission after
        Timer M: RFC 6026 lets the UA core handle it)."""
        try:
            via = response.top_via
            key = (via.branch, response.cseq.method) if via is not None else None
        except _KEY_ERRORS:
            return False
        txn = self._clients.get(key) if key is not None else None
        if txn is None:
            return False
        txn.response_received(response)
        return True

    def _client_removed(self, txn: ClientTransaction) -> None:
        key = (txn.branch, txn.method)
        if self._clients.get(key) is txn:
            del self._clients[key]

    # -- housekeeping -----------------------------------------------------------

    def transport_lost(self, transport: Transport) -> None:
        """A stream connection closed: client transactions still waiting on it fail
        with ``failure == 'transport'``. Server transactions keep running (their
        responses fall back to the Via address, RFC 3261 §18.2.2)."""
        for txn in list(self._clients.values()):
            if txn.transport is transport:
                txn.transport_lost()

    def stop(self) -> None:
        """Abandon every transaction without TU callbacks (service shutdown)."""
        for txn in list(self):
            txn._terminate()
