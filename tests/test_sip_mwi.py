"""RFC 3842 message-waiting: body format, SUBSCRIBE handling, NOTIFY on changes, expiry,
unsubscribe and unsolicited NOTIFY to registered phones (fake UA, Clock, no sockets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from pbxd.sip.mwi import CONTENT_TYPE, MWIService, message_summary
from pbxd.sip.parser import parse_message
from pbxd.sip.uri import URI


@dataclass
class Transport:
    name: str = "UDP"
    local_address: tuple = ("192.0.2.1", 5060)
    reliable: bool = False


@dataclass
class Txn:
    request: Any
    transport: Any = field(default_factory=Transport)
    source: tuple = ("192.0.2.10", 5062)
    extension: Any = None
    responses: list = field(default_factory=list)


@dataclass(frozen=True)
class Ext:
    number: str


class FakeUA:
    def __init__(self):
        self.responses: list = []
        self.sent: list = []  # (request, destination, on_response, on_timeout)

    def contact(self, transport, destination=None, user="pbx"):
        return "<sip:pbx@192.0.2.1:5060>"

    def respond(self, txn, response):
        txn.responses.append(response)
        self.responses.append(response)

    def send_request(self, request, transport, address, *, on_response, on_timeout):
        self.sent.append((request, (transport, address), on_response, on_timeout))

    def send_to(self, request, target, *, on_response, on_timeout):
        self.sent.append((request, target, on_response, on_timeout))
        return succeed(None)

    def answer_last(self, status=200):
        request, _dest, on_response, _t = self.sent[-1]
        from pbxd.sip.message import make_response
        on_response(make_response(request, status))


def subscribe(box="1000", expires=3600, to_tag=None, cseq=1, event="message-summary",
              call_id="sub-1@phone"):
    to = f"<sip:{box}@pbxd.local>" + (f";tag={to_tag}" if to_tag else "")
    raw = (f"SUBSCRIBE sip:{box}@pbxd.local SIP/2.0\r\n"
           "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-s{cseq}\r\n"
           f"From: <sip:{box}@pbxd.local>;tag=phone1\r\nTo: {to}\r\n"
           f"Call-ID: {call_id}\r\nCSeq: {cseq} SUBSCRIBE\r\n"
           "Contact: <sip:1000@192.0.2.10:5062>\r\nMax-Forwards: 70\r\n"
           f"Event: {event}\r\nExpires: {expires}\r\nAccept: {CONTENT_TYPE}\r\n"
           "Content-Length: 0\r\n\r\n")
    return parse_message(raw.encode())


class Counts:
    def __init__(self):
        self.boxes: dict[str, tuple[int, int]] = {}

    def __call__(self, box):
        return succeed(self.boxes.get(box, (0, 0)))


def service(**kw):
    ua, clock, counts = FakeUA(), Clock(), Counts()
    return MWIService(ua, clock, counts, "pbxd.local", **kw), ua, clock, counts


def start(mwi, ua, box="1000", expires=3600):
    request = subscribe(box, expires)
    txn = Txn(request, extension=Ext(box))
    mwi.requestReceived(request, txn)
    return txn


def test_body_format():
    assert message_summary("sip:1000@pbxd.local", 2, 5) == (
        b"Messages-Waiting: yes\r\nMessage-Account: sip:1000@pbxd.local\r\n"
        b"Voice-Message: 2/5 (0/0)\r\n")
    assert message_summary("sip:1@x", 0, 3).startswith(b"Messages-Waiting: no\r\n")


def test_subscribe_is_accepted_and_notified_with_the_counts():
    mwi, ua, clock, counts = service()
    counts.boxes["1000"] = (1, 2)
    txn = start(mwi, ua)
    (ok,) = txn.responses
    assert ok.status == 200 and ok.to.tag and ok.get("Expires") == "3600"
    assert ok.get("Contact") == "<sip:pbx@192.0.2.1:5060>"
    (notify, destination, _r, _t) = ua.sent[0]
    assert notify.method == "NOTIFY" and destination[1] == ("192.0.2.10", 5062)
    assert notify.get("Event") == "message-summary"
    assert notify.get("Subscription-State") == "active;expires=3600"
    assert notify.get("Content-Type") == CONTENT_TYPE
    assert b"Messages-Waiting: yes" in notify.body and b"Voice-Message: 1/2 (0/0)" in notify.body
    assert notify.from_.tag == ok.to.tag and notify.to.tag == "phone1"
    assert str(notify.uri) == "sip:1000@192.0.2.10:5062"


def test_each_change_of_counts_notifies_every_watcher_of_the_box():
    mwi, ua, clock, counts = service()
    start(mwi, ua)
    start(mwi, ua, "1001")
    counts.boxes["1000"] = (3, 0)
    mwi.counts_changed("1000", 3, 0)
    assert len(ua.sent) == 3
    notify = ua.sent[-1][0]
    assert b"Voice-Message: 3/0" in notify.body
    assert [r.cseq.seq for r, *_ in ua.sent if r.from_.tag == ua.sent[0][0].from_.tag] == [
        ua.sent[0][0].cseq.seq, ua.sent[0][0].cseq.seq + 1]


def test_a_phone_may_only_watch_its_own_box():
    mwi, ua, clock, counts = service()
    request = subscribe("1001")
    txn = Txn(request, extension=Ext("1000"))
    mwi.requestReceived(request, txn)
    assert txn.responses[0].status == 403 and ua.sent == [] and mwi.subscriptions == {}


def test_other_event_packages_get_489():
    mwi, ua, clock, counts = service()
    request = subscribe(event="presence")
    txn = Txn(request, extension=Ext("1000"))
    assert not mwi.handles(request)
    mwi.requestReceived(request, txn)
    assert txn.responses[0].status == 489 and txn.responses[0].get("Allow-Events")


def test_too_brief_expires_gets_423():
    mwi, ua, clock, counts = service(min_expires=60)
    txn = start(mwi, ua, expires=10)
    assert txn.responses[0].status == 423 and txn.responses[0].get("Min-Expires") == "60"


def test_expiry_sends_a_final_notify_and_forgets():
    mwi, ua, clock, counts = service()
    start(mwi, ua, expires=120)
    clock.advance(119)
    assert mwi.subscriptions
    clock.advance(1)
    assert mwi.subscriptions == {}
    assert ua.sent[-1][0].get("Subscription-State") == "terminated;reason=timeout"
    mwi.counts_changed("1000", 1, 0)
    assert len(ua.sent) == 2


def test_refresh_extends_and_unsubscribe_ends():
    mwi, ua, clock, counts = service()
    txn = start(mwi, ua, expires=120)
    tag = txn.responses[0].to.tag
    clock.advance(100)
    refresh = subscribe(expires=120, to_tag=tag, cseq=2)
    txn2 = Txn(refresh)
    assert mwi.handles(refresh)
    mwi.requestReceived(refresh, txn2)
    assert txn2.responses[0].status == 200
    assert ua.sent[-1][0].get("Subscription-State") == "active;expires=120"
    clock.advance(100)
    assert mwi.subscriptions  # the refresh moved the expiry
    bye = subscribe(expires=0, to_tag=tag, cseq=3)
    txn3 = Txn(bye)
    mwi.requestReceived(bye, txn3)
    assert txn3.responses[0].status == 200 and mwi.subscriptions == {}
    assert ua.sent[-1][0].get("Subscription-State") == "terminated;reason=timeout"


def test_refresh_of_an_unknown_subscription_gets_481():
    mwi, ua, clock, counts = service()
    request = subscribe(to_tag="nope", cseq=2)
    txn = Txn(request)
    mwi.requestReceived(request, txn)
    assert txn.responses[0].status == 481


def test_expires_zero_on_a_new_subscribe_is_a_one_time_fetch():
    mwi, ua, clock, counts = service()
    counts.boxes["1000"] = (1, 0)
    txn = start(mwi, ua, expires=0)
    assert txn.responses[0].status == 200 and mwi.subscriptions == {}
    notify = ua.sent[-1][0]
    assert notify.get("Subscription-State") == "terminated;reason=timeout"
    assert b"Messages-Waiting: yes" in notify.body


def test_a_notify_answered_481_or_timing_out_ends_the_subscription():
    mwi, ua, clock, counts = service()
    start(mwi, ua)
    ua.answer_last(481)
    assert mwi.subscriptions == {}
    start(mwi, ua)
    ua.sent[-1][3]()  # on_timeout
    assert mwi.subscriptions == {}
    start(mwi, ua)
    ua.answer_last(200)
    assert len(mwi.subscriptions) == 1


@dataclass(eq=False)
class Binding:
    aor: str
    uri: URI
    path: tuple = ()


class Location:
    def __init__(self, bindings):
        self.bindings = bindings
        self.observers = []

    def subscribe(self, observer):
        self.observers.append(observer)

    def lookup(self, aor):
        return [b for b in self.bindings if b.aor == aor]

    def target(self, binding):
        return ("UDP", (binding.uri.host, binding.uri.port or 5060))


def test_unsolicited_notify_to_registered_phones_without_a_subscription():
    phone = Binding("1002", URI.parse("sip:1002@192.0.2.20:5070"))
    location = Location([phone])
    mwi, ua, clock, counts = service(location=location, unsolicited=True)
    counts.boxes["1002"] = (1, 0)
    mwi.counts_changed("1002", 1, 0)
    (notify, target, _r, _t) = ua.sent[0]
    assert target == ("UDP", ("192.0.2.20", 5070))
    assert str(notify.uri) == "sip:1002@192.0.2.20:5070"
    assert notify.get("Event") == "message-summary" and notify.get("Subscription-State") == "active"
    assert notify.to.tag is None and notify.from_.tag and b"Voice-Message: 1/0" in notify.body
    location.observers[0]("added", phone)  # a phone registering hears the state at once
    assert len(ua.sent) == 2
    start(mwi, ua, "1002")  # with a subscription only the subscription is notified
    before = len(ua.sent)
    mwi.counts_changed("1002", 2, 0)
    assert len(ua.sent) == before + 1 and ua.sent[-1][0].to.tag == "phone1"


def test_unsolicited_is_off_by_default():
    location = Location([Binding("1002", URI.parse("sip:1002@192.0.2.20"))])
    mwi, ua, clock, counts = service(location=location)
    mwi.counts_changed("1002", 1, 0)
    assert ua.sent == [] and location.observers == []
