"""Prometheus metrics of pbxd and the ``/metrics`` resource (layer 6).

:class:`Metrics` owns a private :class:`prometheus_client.CollectorRegistry`
(never the global one, so tests and several servers in one process do not
collide). The composition root builds one and hands it to whoever counts:

- the SIP transports / controller: ``metrics.sip_message("in", "INVITE")``,
  ``metrics.sip_message("out", "INVITE", 200)``, ``metrics.transaction("server")``;
- the authenticators: ``metrics.auth_failure("sip")`` (the admin API does
  ``auth_failure("admin")`` itself);
- the calls layer: ``metrics.call_ended("answered")``;
- the RTP relay: ``metrics.rtp(relayed=n, lost=m)``;
- the counters are plain numbers in dicts (:class:`CounterFamily`, no lock: all of
  this runs on the reactor thread), turned into Prometheus samples when scraped;
- gauges read current state when scraped: ``metrics.watch("registrations",
  lambda: len(location.all_bindings()))``, likewise ``active_calls``, ``bans``
  and ``transactions``;
- :class:`LoopLagMonitor` (a Service) measures event-loop lag on the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily
from twisted.application.service import Service
from twisted.logger import Logger
from twisted.web.resource import Resource

from pbxd.sip.message import Response
from pbxd.web.resources import APIError, JSONError

__all__ = ["Metrics", "LoopLagMonitor", "MetricsPage", "metrics_resource"]

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Method labels kept as they are; anything else is counted as "other" (a flood of
#: made-up methods must not create unbounded label sets).
SIP_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "UPDATE", "PRACK",
    "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
})
#: The method label of a known method's bytes, and the status of a status code's three
#: digits: what :meth:`Metrics.sip_sent` reads without decoding or ``int()``.
_METHOD_BYTES = {method.encode("ascii"): method for method in SIP_METHODS}
_STATUS_BYTES = {str(status).encode("ascii"): status for status in range(100, 700)}


class CounterFamily:
    """A Prometheus counter kept as plain numbers and exported when scraped.

    A :class:`prometheus_client.Counter` takes a lock per increment (and its
    ``labels()`` more); pbxd counts on the reactor thread and is scraped there
    (:class:`MetricsPage`), so a dict of label tuple -> count is enough. The
    exposition is what a ``Counter`` of the same name, help and label names
    gives: ``NAME_total`` and ``NAME_created`` per series (``_created`` from
    the first count of that series, or from construction without labels; left
    out after ``prometheus_client.disable_created_metrics()``), series in the
    order they first counted. Label values are ``str()`` of the key's items,
    ``None`` giving ``""``. Each series is a one-item list (a cell), so a count is
    one dict lookup and an in-place add.
    """

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...] = (),
                 registry: CollectorRegistry | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        #: label values tuple -> [count]; what the counting methods add to
        self.cells: dict[tuple[Any, ...], list[float]] = {}
        self.created: dict[tuple[Any, ...], float] = {}
        if not labelnames:
            self.cell(())
        if registry is not None:
            registry.register(self)

    def inc(self, key: tuple[Any, ...] = (), amount: float = 1) -> None:
        """Add ``amount`` (not negative) to the series ``key`` (a tuple of label values)."""
        if amount < 0:
            raise ValueError(f"{self.name}: counters only go up, not by {amount}")
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cell(key)
        cell[0] += amount

    def cell(self, key: tuple[Any, ...]) -> list[float]:
        """The cell of series ``key``, started (at 0, created now) if it is new."""
        cell = self.cells.get(key)
        if cell is None:
            if len(key) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {key!r}")
            cell = self.cells[key] = [0]
            self.created[key] = time.time()
        return cell

    def describe(self) -> list[CounterMetricFamily]:
        """The family without samples (the registry checks names with it)."""
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The family and one ``_total`` (and ``_created``) sample per series."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        created = self.created if prometheus_client.metrics._use_created else None
        for key, cell in list(self.cells.items()):
            labels = ["" if v is None else str(v) for v in key]
            family.add_metric(labels, float(cell[0]),
                              created=created[key] if created is not None else None)
        yield family


class Metrics:
    """The counters and gauges of pbxd in a private registry.

    Counters are :class:`CounterFamily` (plain numbers, no lock), counted and
    scraped on the reactor thread; gauges and the loop-lag histogram are
    ``prometheus_client``'s own.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.registrations = Gauge("pbxd_registrations", "Current registrar bindings", registry=r)
        self.active_calls = Gauge("pbxd_active_calls", "Calls in progress", registry=r)
        self.bans = Gauge("pbxd_bans", "IP addresses currently banned", registry=r)
        self.transactions = Gauge(
            "pbxd_sip_transactions", "SIP transactions in progress", registry=r
        )
        self.calls = CounterFamily(
            "pbxd_calls", "Calls ended, by disposition", ("disposition",), registry=r
        )
        #: keys (direction, method label, status or None): a method outside
        #: SIP_METHODS is counted as "other" and a status outside 100-699 as None
        self.sip_messages = CounterFamily(
            "pbxd_sip_messages",
            "SIP messages by direction (in/out), method and status ('' for requests)",
            ("direction", "method", "status"),
            registry=r,
        )
        self.transactions_started = CounterFamily(
            "pbxd_sip_transactions_started",
            "SIP transactions created, by kind (client/server)",
            ("kind",),
            registry=r,
        )
        self.auth_failures = CounterFamily(
            "pbxd_auth_failures", "Failed authentications, by surface (sip/admin)",
            ("surface",), registry=r,
        )
        self.bans_added = CounterFamily("pbxd_bans_added", "Bans imposed", registry=r)
        self.rtp_relayed = CounterFamily("pbxd_rtp_packets_relayed", "RTP packets relayed",
                                         registry=r)
        self.rtp_lost = CounterFamily("pbxd_rtp_packets_lost", "RTP packets lost (by sequence)",
                                      registry=r)
        self.loop_lag = Histogram(
            "pbxd_event_loop_lag_seconds",
            "How late the reactor ran a timer",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self._sip_cells = self.sip_messages.cells

    def watch(self, gauge: str, read: Callable[[], float]) -> None:
        """Read ``gauge`` (registrations, active_calls, bans, transactions) from
        ``read()`` at every scrape."""
        if gauge not in ("registrations", "active_calls", "bans", "transactions"):
            raise ValueError(f"no such gauge {gauge!r}")
        getattr(self, gauge).set_function(read)

    def sip_message(self, direction: str, method: str, status: int | None = None) -> None:
        """Count one SIP message; ``direction`` is 'in' or 'out', ``status`` None for requests."""
        cell = self._sip_cells.get((direction, method, status))
        if cell is None:  # only keys already in label form are ever stored
            cell = self._sip_cell(direction, method, status)
        cell[0] += 1

    def _sip_cell(self, direction: str, method: str, status: int | None) -> list[float]:
        if method not in SIP_METHODS:
            method = "other"
        if status is not None and not 100 <= status <= 699:
            status = None
        return self.sip_messages.cell((direction, method, status))

    def sip_received(self, message: Any) -> None:
        """Count one parsed incoming request or response (the controller calls this)."""
        if message.__class__ is Response:  # no getattr(..., "method") raising inside
            try:
                cseq = message.cseq
            except Exception:  # a CSeq that does not parse
                cseq = None
            self.sip_message("in", cseq.method if cseq is not None else "other", message.status)
            return
        method = getattr(message, "method", None)
        if method is not None:
            self.sip_message("in", method)
            return
        try:
            method = message.cseq.method
        except Exception:
            method = "other"
        self.sip_message("in", method, getattr(message, "status", None))

    def sip_sent(self, data: bytes) -> None:
        """Count one serialized outgoing message (the transports call this on send).

        A response counts under its status and the method of its CSeq, a request
        under its method; known methods and 100-699 are looked up as bytes, anything
        else takes :meth:`_sent_other` (decode, ``int()``)."""
        if data.startswith(b"SIP/2.0 "):
            # partition, not find(sub, start, end): no argument parsing per call
            line = data.partition(b"\r\nCSeq:")[2].partition(b"\r\n")
            if line[1]:
                method = _METHOD_BYTES.get(line[0].rpartition(b" ")[2])
                status = _STATUS_BYTES.get(data[8:11])
                if method is not None and status is not None:
                    cell = self._sip_cells.get(("out", method, status))
                    if cell is None:
                        cell = self.sip_messages.cell(("out", method, status))
                    cell[0] += 1
                    return
        else:
            method = _METHOD_BYTES.get(data[:data.find(b" ")])
            if method is not None:
                cell = self._sip_cells.get(("out", method, None))
                if cell is None:
                    cell = self.sip_messages.cell(("out", method, None))
                cell[0] += 1
                return
        self._sent_other(data)

    def _sent_other(self, data: bytes) -> None:
        """:meth:`sip_sent` for what its byte lookups do not know."""
        if data.startswith(b"SIP/2.0 "):
            try:
                status: int | None = int(data[8:11])
            except ValueError:
                status = None
            start = data.find(b"\r\nCSeq:")
            end = data.find(b"\r\n", start + 7) if start >= 0 else -1
            fields = data[start + 7:end].split() if end > 0 else []
            method = fields[-1].decode("ascii", "replace") if fields else "other"
            self.sip_message("out", method, status)
        else:
            self.sip_message("out", data[:data.find(b" ")].decode("ascii", "replace"))

    def transaction(self, kind: str) -> None:
        """Count one new transaction ('client' or 'server')."""
        self.transactions_started.inc((kind,))

    def call_ended(self, disposition: str) -> None:
        """Count one ended call (answered, busy, no_answer, failed, cancelled ...)."""
        self.calls.inc((disposition,))

    def auth_failure(self, surface: str) -> None:
        """Count one failed authentication on ``surface`` ('sip' or 'admin')."""
        self.auth_failures.inc((surface,))

    def ban_added(self) -> None:
        """Count one ban."""
        self.bans_added.inc()

    def rtp(self, relayed: int = 0, lost: int = 0) -> None:
        """Add relayed and lost RTP packet counts."""
        if relayed:
            self.rtp_relayed.inc((), relayed)
        if lost:
            self.rtp_lost.inc((), lost)

    def observe_lag(self, seconds: float) -> None:
        """Record one event-loop lag sample."""
        self.loop_lag.observe(max(0.0, seconds))


class LoopLagMonitor(Service):
    """Every ``interval`` seconds, records how late the clock ran the timer."""

    log = Logger()

    def __init__(self, clock: Any, metrics: Metrics, interval: float = 1.0) -> None:
        self.clock = clock
        self.metrics = metrics
        self.interval = interval
        self._call: Any = None
        self._due = 0.0

    def startService(self) -> None:
        """Start sampling."""
        super().startService()
        self._schedule()

    def stopService(self) -> Any:
        """Stop sampling."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return super().stopService()

    def _schedule(self) -> None:
        self._due = self.clock.seconds() + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        self.metrics.observe_lag(self.clock.seconds() - self._due)
        self._schedule()


class MetricsPage(Resource):
    """``GET /metrics``: the registry in the Prometheus text (or OpenMetrics) format.

    Rendered on the reactor thread (collection is in memory and quick), unlike
    prometheus_client's own Twisted resource, which uses the global reactor's
    thread pool.
    """

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Any) -> bytes:
        """The exposition, in the format the Accept header asks for."""
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        request.setHeader(b"content-type", content_type.encode())
        return encoder(self.metrics.registry)

    def render(self, request: Any) -> Any:
        """GET, else a JSON 405."""
        if request.method in (b"GET", b"HEAD"):
            return super().render(request)
        error = APIError(405, "method_not_allowed", "only GET is allowed here",
                         headers={"Allow": "GET"})
        return JSONError(error).render(request)


def metrics_resource(metrics: Metrics) -> Resource:
    """The twisted.web resource serving ``metrics`` (see :class:`MetricsPage`)."""
    return MetricsPage(metrics)
