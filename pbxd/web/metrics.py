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
- gauges read current state when scraped: ``metrics.watch("registrations",
  lambda: len(location.all_bindings()))``, likewise ``active_calls``, ``bans``
  and ``transactions``;
- :class:`LoopLagMonitor` (a Service) measures event-loop lag on the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from twisted.application.service import Service
from twisted.logger import Logger
from twisted.web.resource import Resource

from pbxd.web.resources import APIError, JSONError

__all__ = ["Metrics", "LoopLagMonitor", "MetricsPage", "metrics_resource"]

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Method labels kept as they are; anything else is counted as "other" (a flood of
#: made-up methods must not create unbounded label sets).
SIP_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "UPDATE", "PRACK",
    "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
})


def _method_label(method: str) -> str:
    return method if method in SIP_METHODS else "other"


def _status_label(status: int | None) -> str:
    return "" if status is None or not 100 <= status <= 699 else str(status)


class Metrics:
    """The counters and gauges of pbxd in a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.registrations = Gauge("pbxd_registrations", "Current registrar bindings", registry=r)
        self.active_calls = Gauge("pbxd_active_calls", "Calls in progress", registry=r)
        self.bans = Gauge("pbxd_bans", "IP addresses currently banned", registry=r)
        self.transactions = Gauge(
            "pbxd_sip_transactions", "SIP transactions in progress", registry=r
        )
        self.calls = Counter(
            "pbxd_calls", "Calls ended, by disposition", ["disposition"], registry=r
        )
        self.sip_messages = Counter(
            "pbxd_sip_messages",
            "SIP messages by direction (in/out), method and status ('' for requests)",
            ["direction", "method", "status"],
            registry=r,
        )
        self._sip_children: dict[tuple[str, str, int | None], Any] = {}
        self._children: dict[tuple[int, str], Any] = {}
        self.transactions_started = Counter(
            "pbxd_sip_transactions_started",
            "SIP transactions created, by kind (client/server)",
            ["kind"],
            registry=r,
        )
        self.auth_failures = Counter(
            "pbxd_auth_failures", "Failed authentications, by surface (sip/admin)",
            ["surface"], registry=r,
        )
        self.bans_added = Counter("pbxd_bans_added", "Bans imposed", registry=r)
        self.rtp_relayed = Counter("pbxd_rtp_packets_relayed", "RTP packets relayed", registry=r)
        self.rtp_lost = Counter("pbxd_rtp_packets_lost", "RTP packets lost (by sequence)",
                                registry=r)
        self.loop_lag = Histogram(
            "pbxd_event_loop_lag_seconds",
            "How late the reactor ran a timer",
            buckets=LAG_BUCKETS,
            registry=r,
        )

    def watch(self, gauge: str, read: Callable[[], float]) -> None:
        """Read ``gauge`` (registrations, active_calls, bans, transactions) from
        ``read()`` at every scrape."""
        if gauge not in ("registrations", "active_calls", "bans", "transactions"):
            raise ValueError(f"no such gauge {gauge!r}")
        getattr(self, gauge).set_function(read)

    def _child(self, metric: Any, value: str) -> Any:
        """``metric.labels(value)``, kept: ``labels()`` costs tens of µs (a lock, label
        validation) and these run once per transaction or call. Bounded per metric."""
        key = (id(metric), value)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(value)
            if len(self._children) < 512:
                self._children[key] = child
        return child

    def sip_message(self, direction: str, method: str, status: int | None = None) -> None:
        """Count one SIP message; ``direction`` is 'in' or 'out', ``status`` None for requests."""
        key = (direction, method, status)
        child = self._sip_children.get(key)
        if child is None:  # labels() costs µs per message: keep the children (bounded)
            child = self.sip_messages.labels(direction, _method_label(method),
                                             _status_label(status))
            if len(self._sip_children) < 512:
                self._sip_children[key] = child
        child.inc()

    def sip_received(self, message: Any) -> None:
        """Count one parsed incoming request or response (the controller calls this)."""
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
        """Count one serialized outgoing message (the transports call this on send)."""
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
        self._child(self.transactions_started, kind).inc()

    def call_ended(self, disposition: str) -> None:
        """Count one ended call (answered, busy, no_answer, failed, cancelled ...)."""
        self._child(self.calls, disposition).inc()

    def auth_failure(self, surface: str) -> None:
        """Count one failed authentication on ``surface`` ('sip' or 'admin')."""
        self._child(self.auth_failures, surface).inc()

    def ban_added(self) -> None:
        """Count one ban."""
        self.bans_added.inc()

    def rtp(self, relayed: int = 0, lost: int = 0) -> None:
        """Add relayed and lost RTP packet counts."""
        if relayed:
            self.rtp_relayed.inc(relayed)
        if lost:
            self.rtp_lost.inc(lost)

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
