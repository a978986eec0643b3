"""Prometheus metrics: a private registry, the helpers others call, /metrics, loop lag."""

from __future__ import annotations

import re

import pytest
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)
from prometheus_client.openmetrics import exposition as openmetrics
from twisted.internet.task import Clock
from webhelpers import Env

from pbxd.sip.parser import parse_message
from pbxd.web import metrics as metrics_module
from pbxd.web.metrics import LAG_BUCKETS, SIP_METHODS, LoopLagMonitor, Metrics


def value(metrics: Metrics, name: str, labels: dict | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_each_metrics_object_has_its_own_registry():
    a, b = Metrics(), Metrics()
    a.call_ended("answered")
    assert value(a, "pbxd_calls_total", {"disposition": "answered"}) == 1
    assert value(b, "pbxd_calls_total", {"disposition": "answered"}) is None
    assert REGISTRY.get_sample_value("pbxd_calls_total", {"disposition": "answered"}) is None


def test_counters_by_label():
    m = Metrics()
    m.sip_message("in", "INVITE")
    m.sip_message("out", "INVITE", 200)
    m.sip_message("out", "INVITE", 200)
    m.transaction("server")
    m.auth_failure("sip")
    m.ban_added()
    m.rtp(relayed=100, lost=2)
    m.rtp(relayed=50)
    assert value(m, "pbxd_sip_messages_total",
                 {"direction": "in", "method": "INVITE", "status": ""}) == 1
    assert value(m, "pbxd_sip_messages_total",
                 {"direction": "out", "method": "INVITE", "status": "200"}) == 2
    assert value(m, "pbxd_sip_transactions_started_total", {"kind": "server"}) == 1
    assert value(m, "pbxd_auth_failures_total", {"surface": "sip"}) == 1
    assert value(m, "pbxd_bans_added_total") == 1
    assert value(m, "pbxd_rtp_packets_relayed_total") == 150
    assert value(m, "pbxd_rtp_packets_lost_total") == 2


def test_watched_gauges_read_current_state():
    m = Metrics()
    calls = [1, 2]
    m.watch("active_calls", lambda: len(calls))
    assert value(m, "pbxd_active_calls") == 2
    calls.append(3)
    assert value(m, "pbxd_active_calls") == 3
    with pytest.raises(ValueError):
        m.watch("nonsense", lambda: 0)


def test_loop_lag_monitor_records_how_late_timers_run():
    clock, m = Clock(), Metrics()
    monitor = LoopLagMonitor(clock, m, interval=1.0)
    monitor.startService()
    clock.advance(1.0)
    clock.advance(1.5)  # the second tick runs 0.5 s late
    assert value(m, "pbxd_event_loop_lag_seconds_count") == 2
    assert value(m, "pbxd_event_loop_lag_seconds_sum") == pytest.approx(0.5)
    monitor.stopService()
    assert clock.getDelayedCalls() == []


def test_metrics_page_serves_the_registry_with_registrations_and_bans():
    env = Env()
    env.register("1000", "sip:1000@192.168.1.5")
    env.bans.ban("203.0.113.1", 60, "x")
    env.metrics.call_ended("busy")
    reply = env.call("GET", "/metrics", token=None)
    assert reply.status == 200
    assert reply.header("content-type").startswith("text/plain")
    text = reply.raw.decode()
    assert "pbxd_registrations 1.0" in text
    assert "pbxd_bans 1.0" in text
    assert 'pbxd_calls_total{disposition="busy"} 1.0' in text


def test_metrics_page_refuses_other_methods_in_json():
    reply = Env().call("POST", "/metrics", token=None)
    assert reply.status == 405
    assert reply.header("allow") == "GET"
    assert reply.json["error"]["code"] == "method_not_allowed"


def counted(m) -> None:
    """The same counts, through the Metrics API or (for the reference) by hand."""
    m.sip_message("in", "INVITE")
    m.sip_message("in", "FROBNICATE")
    m.sip_message("out", "INVITE", 200)
    m.sip_message("out", "INVITE", 200)
    m.sip_message("out", "BYE", 99)
    m.sip_message("in", "INVITE")
    m.transaction("server")
    m.transaction("client")
    m.call_ended("answered")
    m.call_ended("busy")
    m.auth_failure("sip")
    m.ban_added()
    m.rtp(relayed=100, lost=2)
    m.rtp(relayed=50)


class Reference:
    """What Metrics was before its counters were plain numbers: prometheus_client
    Counters of the same names, help and labels, fed the same way."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        for name, doc in (("pbxd_registrations", "Current registrar bindings"),
                          ("pbxd_active_calls", "Calls in progress"),
                          ("pbxd_bans", "IP addresses currently banned"),
                          ("pbxd_sip_transactions", "SIP transactions in progress")):
            Gauge(name, doc, registry=r)
        self.calls = Counter("pbxd_calls", "Calls ended, by disposition", ["disposition"],
                             registry=r)
        self.sip_messages = Counter(
            "pbxd_sip_messages",
            "SIP messages by direction (in/out), method and status ('' for requests)",
            ["direction", "method", "status"], registry=r)
        self.transactions_started = Counter(
            "pbxd_sip_transactions_started", "SIP transactions created, by kind (client/server)",
            ["kind"], registry=r)
        self.auth_failures = Counter(
            "pbxd_auth_failures", "Failed authentications, by surface (sip/admin)",
            ["surface"], registry=r)
        self.bans_added = Counter("pbxd_bans_added", "Bans imposed", registry=r)
        self.rtp_relayed = Counter("pbxd_rtp_packets_relayed", "RTP packets relayed", registry=r)
        self.rtp_lost = Counter("pbxd_rtp_packets_lost", "RTP packets lost (by sequence)",
                                registry=r)
        Histogram("pbxd_event_loop_lag_seconds", "How late the reactor ran a timer",
                  buckets=LAG_BUCKETS, registry=r)

    def sip_message(self, direction, method, status=None):
        method = method if method in SIP_METHODS else "other"
        status = "" if status is None or not 100 <= status <= 699 else str(status)
        self.sip_messages.labels(direction, method, status).inc()

    def transaction(self, kind):
        self.transactions_started.labels(kind).inc()

    def call_ended(self, disposition):
        self.calls.labels(disposition).inc()

    def auth_failure(self, surface):
        self.auth_failures.labels(surface).inc()

    def ban_added(self):
        self.bans_added.inc()

    def rtp(self, relayed=0, lost=0):
        self.rtp_relayed.inc(relayed)
        self.rtp_lost.inc(lost)


def without_created_values(text: str) -> str:
    return re.sub(r"(_created(\{[^}]*\})?) [0-9.e+]+", r"\1 T", text)


@pytest.mark.parametrize("encoder", [generate_latest, openmetrics.generate_latest])
def test_exposition_is_what_prometheus_client_counters_gave(encoder):
    m, reference = Metrics(), Reference()
    counted(m)
    counted(reference)
    text = encoder(m.registry).decode()
    assert without_created_values(text) == without_created_values(
        encoder(reference.registry).decode())
    assert 'pbxd_sip_messages_total{direction="in",method="other",status=""} 1.0' in text
    assert 'pbxd_rtp_packets_relayed_total 150.0' in text


def test_created_is_when_a_series_first_counted(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(metrics_module.time, "time", lambda: now[0])
    m = Metrics()
    now[0] = 1005.0
    m.call_ended("busy")
    now[0] = 1009.0
    m.call_ended("busy")
    m.call_ended("answered")
    assert value(m, "pbxd_calls_created", {"disposition": "busy"}) == 1005.0
    assert value(m, "pbxd_calls_created", {"disposition": "answered"}) == 1009.0
    assert value(m, "pbxd_bans_added_created") == 1000.0


def test_created_series_follow_prometheus_clients_switch():
    m = Metrics()
    m.call_ended("busy")
    disable_created_metrics()
    try:
        text = generate_latest(m.registry).decode()
    finally:
        enable_created_metrics()
    assert 'pbxd_calls_total{disposition="busy"} 1.0' in text
    assert "_created" not in text


def test_counter_names_are_checked_against_the_registry():
    m = Metrics()
    with pytest.raises(ValueError):
        Counter("pbxd_calls", "again", registry=m.registry)
    with pytest.raises(ValueError):
        m.calls.inc(("answered", "extra label"))


def test_method_and_status_labels_stay_bounded():
    m = Metrics()
    for i in range(2000):
        m.sip_message("in", f"X{i}")
        m.sip_message("out", "INVITE", 1000 + i)
    assert value(m, "pbxd_sip_messages_total",
                 {"direction": "in", "method": "other", "status": ""}) == 2000
    assert value(m, "pbxd_sip_messages_total",
                 {"direction": "out", "method": "INVITE", "status": ""}) == 2000
    assert len(m.sip_messages.cells) == 2


def old_sip_sent(data: bytes) -> tuple:
    """How sip_sent read a message before its byte lookups (the oracle)."""
    if data.startswith(b"SIP/2.0 "):
        try:
            status = int(data[8:11])
        except ValueError:
            status = None
        start = data.find(b"\r\nCSeq:")
        end = data.find(b"\r\n", start + 7) if start >= 0 else -1
        fields = data[start + 7:end].split() if end > 0 else []
        method = fields[-1].decode("ascii", "replace") if fields else "other"
        return "out", method, status
    return "out", data[:data.find(b" ")].decode("ascii", "replace"), None


SENT = [
    b"SIP/2.0 200 OK\r\nVia: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    b"SIP/2.0 401 Unauthorized\r\nCSeq: 2 REGISTER\r\n\r\n",
    b"SIP/2.0 501 Not Implemented\r\nCSeq: 7 FROBNICATE\r\n\r\n",
    b"SIP/2.0 099 Early\r\nCSeq: 1 INVITE\r\n\r\n",
    b"SIP/2.0 700 Late\r\nCSeq: 1 INVITE\r\n\r\n",
    b"SIP/2.0 abc Nonsense\r\nCSeq: 1 BYE\r\n\r\n",
    b"SIP/2.0 2001 Long\r\nCSeq: 1 BYE\r\n\r\n",
    b"SIP/2.0 180 Ringing\r\nCSeq:\t1\tINVITE\r\n\r\n",
    b"SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE \r\n\r\n",
    b"SIP/2.0 180 Ringing\r\nCSeq:  INVITE\r\n\r\n",
    b"SIP/2.0 180 Ringing\r\nCSeq: 1 x\tINVITE\r\n\r\n",
    b"SIP/2.0 180 Ringing\r\nCSeq:\r\n\r\n",
    b"SIP/2.0 180 Ringing\r\nCSeq:1 INVITE\r\n\r\n",
    b"SIP/2.0 183 Progress\r\nCSeq:INVITE\r\n\r\n",
    b"SIP/2.0 200 OK\r\nCSeq:1\tBYE\r\nCSeq: 2 INVITE\r\n\r\n",
    b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\nCSeq: 2 BYE\r\n\r\n",
    b"SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE",
    b"SIP/2.0 180 Ringing\r\ncseq: 1 INVITE\r\n\r\n",
    b"SIP/2.0 180 Ringing\r\nContent-Length: 0\r\n\r\n",
    b"SIP/2.0 ",
    b"INVITE sip:1001@pbx SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n",
    b"ACK sip:1001@pbx SIP/2.0\r\n\r\n",
    b"FROBNICATE sip:1001@pbx SIP/2.0\r\n\r\n",
    b"invite sip:1001@pbx SIP/2.0\r\n\r\n",
    b"NOSPACE",
    b"",
]


def test_sip_sent_counts_what_it_counted_before():
    m, reference = Metrics(), Reference()
    for data in SENT:
        m.sip_sent(data)
        reference.sip_message(*old_sip_sent(data))
    assert without_created_values(generate_latest(m.registry).decode()) == \
        without_created_values(generate_latest(reference.registry).decode())
    assert value(m, "pbxd_sip_messages_total",
                 {"direction": "out", "method": "INVITE", "status": "200"}) == 2
    assert value(m, "pbxd_sip_messages_total",
                 {"direction": "out", "method": "INVITE", "status": "180"}) == 5


def test_sip_received_counts_requests_by_method_and_responses_by_cseq_method_and_status():
    m = Metrics()
    m.sip_received(parse_message(b"INVITE sip:1001@pbx SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n"))
    m.sip_received(parse_message(b"SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\n\r\n"))
    m.sip_received(parse_message(b"SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\n\r\n"))
    m.sip_received(parse_message(b"SIP/2.0 200 OK\r\nCSeq: 7 FROBNICATE\r\n\r\n"))
    m.sip_received(parse_message(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"))
    assert value(m, "pbxd_sip_messages_total",
                 {"direction": "in", "method": "INVITE", "status": ""}) == 1
    assert value(m, "pbxd_sip_messages_total",
                 {"direction": "in", "method": "INVITE", "status": "180"}) == 2
    assert value(m, "pbxd_sip_messages_total",
                 {"direction": "in", "method": "other", "status": "200"}) == 2


def test_counters_refuse_to_go_down():
    m = Metrics()
    with pytest.raises(ValueError):
        m.rtp(relayed=-1)
    assert value(m, "pbxd_rtp_packets_relayed_total") == 0
