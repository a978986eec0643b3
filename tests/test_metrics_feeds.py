"""The Prometheus counters are fed by the parts that see the events."""

from __future__ import annotations

from test_sip_controller import INVITE, OPTIONS, make_controller, receive
from twisted.internet import task

from pbxd.auth.bans import BanList
from pbxd.calls.cdr import CDRWriter
from pbxd.sip.transport import SIPDatagramProtocol
from pbxd.web.metrics import Metrics


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_controller_counts_incoming_requests_and_transports_count_outgoing_responses():
    metrics = Metrics()
    controller, transport, _ = make_controller()
    controller.metrics = metrics
    controller.transactions.metrics = metrics
    receive(controller, transport, OPTIONS)
    receive(controller, transport, OPTIONS.replace("OPTIONS", "FROBNICATE"))
    assert value(metrics, "pbxd_sip_messages_total", direction="in", method="OPTIONS",
                 status="") == 1
    assert value(metrics, "pbxd_sip_messages_total", direction="in", method="other",
                 status="") == 1
    assert value(metrics, "pbxd_sip_transactions_started_total", kind="server") == 2
    udp = SIPDatagramProtocol(controller, task.Clock())
    udp.metrics = metrics

    class Port:
        def write(self, data, address):
            pass

    udp.transport = Port()
    for msg, _ in transport.sent:
        udp.send(msg.serialize(), ("192.0.2.10", 5060))
    udp.send(INVITE.encode(), ("192.0.2.10", 5060))
    assert value(metrics, "pbxd_sip_messages_total", direction="out", method="OPTIONS",
                 status="200") == 1
    assert value(metrics, "pbxd_sip_messages_total", direction="out", method="other",
                 status="501") == 1
    assert value(metrics, "pbxd_sip_messages_total", direction="out", method="INVITE",
                 status="") == 1


def test_bans_and_cdrs_feed_bans_calls_and_rtp_counters():
    metrics = Metrics()
    bans = BanList(task.Clock(), trusted_networks=["10.0.0.0/8"])
    bans.metrics = metrics
    bans.ban("203.0.113.5", 60, "scan")
    bans.ban("10.1.1.1", 60, "trusted: not banned")
    assert value(metrics, "pbxd_bans_added_total") == 1
    writer = CDRWriter(None)
    writer.metrics = metrics
    writer.write({"disposition": "ANSWERED", "media": {
        "a": {"packets_out": 500, "lost": 3}, "b": {"packets_out": 498, "lost": 0}}})
    writer.write({"disposition": "NO ANSWER", "media": {}})
    assert value(metrics, "pbxd_calls_total", disposition="answered") == 1
    assert value(metrics, "pbxd_calls_total", disposition="no_answer") == 1
    assert value(metrics, "pbxd_rtp_packets_relayed_total") == 998
    assert value(metrics, "pbxd_rtp_packets_lost_total") == 3
