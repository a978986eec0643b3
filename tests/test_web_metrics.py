"""Prometheus metrics: a private registry, the helpers others call, /metrics, loop lag."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from twisted.internet.task import Clock
from webhelpers import Env

from pbxd.web.metrics import LoopLagMonitor, Metrics


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
