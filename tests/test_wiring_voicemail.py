"""install_features: voicemail in the service registry, SUBSCRIBE routed to MWI, wrong
PINs counted by the ban list, email on save (fakes for the calls layer, real stores)."""

from __future__ import annotations

from types import SimpleNamespace

from test_sip_mwi import FakeUA, Txn, subscribe
from test_voicemail_store import Ext, leave
from twisted.application.service import MultiService
from twisted.internet.task import Clock

from pbxd.auth.bans import BanList
from pbxd.config import parse_config
from pbxd.interfaces import IVoicemailService
from pbxd.store.db import Database
from pbxd.store.extensions import ConfigExtensionStore
from pbxd.store.testing import SynchronousConnectionPool
from pbxd.wiring_voicemail import SubscribeRouter, caller_address, install_features


class FakeCalls:
    def __init__(self):
        self.sessions = SimpleNamespace(services={})
        self.deps = SimpleNamespace(ua=FakeUA())
        self.calls = {"c1": SimpleNamespace(a=SimpleNamespace(address=("198.51.100.7", 5060)))}
        self.received = []

    def requestReceived(self, request, txn):
        self.received.append(request.method)

    def calls_from(self, ip):
        return 3


def install(tmp_path, **voicemail):
    config = parse_config({"voicemail": voicemail, "security": {"max_failed_attempts": 3}},
                          source="t", base_dir=str(tmp_path))
    clock, calls, parent = Clock(), FakeCalls(), MultiService()
    bans = BanList(clock, max_failed_attempts=3)
    controller = SimpleNamespace(request_handler=calls, allowed_methods=("INVITE", "BYE"))
    database = Database(SynchronousConnectionPool(str(tmp_path / "db.sqlite")))
    features = install_features(
        config, clock, parent=parent, database=database,
        extensions=ConfigExtensionStore({"1000": Ext("1000", "1234")}), bans=bans,
        location=None, calls=calls, stack=SimpleNamespace(controller=controller),
        state_dir=str(tmp_path))
    parent.startService()
    return features, calls, controller, bans


def test_voicemail_is_in_the_registry_and_its_store_is_prepared(tmp_path):
    features, calls, controller, bans = install(tmp_path)
    assert calls.sessions.services[IVoicemailService] is features.voicemail
    assert (tmp_path / "voicemail").is_dir()
    leave(features.voicemail)  # the schema exists: a save works


def test_subscribe_goes_to_mwi_and_the_rest_to_calls(tmp_path):
    features, calls, controller, bans = install(tmp_path)
    router = controller.request_handler
    assert isinstance(router, SubscribeRouter) and "SUBSCRIBE" in controller.allowed_methods
    request = subscribe("1000")
    router.requestReceived(request, Txn(request, extension=Ext("1000")))
    assert len(features.mwi.subscriptions) == 1 and calls.received == []
    router.requestReceived(SimpleNamespace(method="INVITE"), None)
    assert calls.received == ["INVITE"] and router.calls_from("x") == 3


def test_a_saved_message_notifies_the_subscriber(tmp_path):
    features, calls, controller, bans = install(tmp_path)
    request = subscribe("1000")
    controller.request_handler.requestReceived(request, Txn(request, extension=Ext("1000")))
    leave(features.voicemail)
    notify = calls.deps.ua.sent[-1][0]
    assert b"Messages-Waiting: yes" in notify.body and b"Voice-Message: 1/0" in notify.body


def test_wrong_pins_count_as_failed_logins_of_the_callers_address(tmp_path):
    features, calls, controller, bans = install(tmp_path)
    assert caller_address(calls, "c1") == "198.51.100.7" and caller_address(calls, "x") is None
    for _ in range(3):
        features.voicemail.report_failed_login("1000", "c1")
    assert bans.is_banned("198.51.100.7")


def test_stopping_ends_subscriptions(tmp_path):
    features, calls, controller, bans = install(tmp_path)
    request = subscribe("1000")
    controller.request_handler.requestReceived(request, Txn(request, extension=Ext("1000")))
    features.service.stopService()
    assert features.mwi.subscriptions == {}
    assert calls.deps.ua.sent[-1][0].get("Subscription-State").startswith("terminated")
