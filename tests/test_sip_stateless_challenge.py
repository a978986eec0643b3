"""Stateless digest challenges (RFC 3261 §8.2.7) in pbxd.sip.controller.

A REGISTER or a new INVITE without credentials is answered 401/407 without a
server transaction; the To tag is a keyed hash of the request, so a
retransmission is challenged again under the same tag and the ACK of a 407 is
recognised and dropped. Everything else (credentials, refusals, To tags, an
authenticator that answers later) keeps its transaction. Real controller,
transaction layer, ban list and SIPAuthenticator on a ``task.Clock``.
"""

from __future__ import annotations

import re

from twisted.cred.portal import Portal
from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.logger import LogLevel, capturedLogs

from pbxd.auth.bans import BanList
from pbxd.auth.checker import ExtensionChecker
from pbxd.auth.realm import ExtensionRealm
from pbxd.auth.sipauth import AuthResult, SIPAuthenticator
from pbxd.configschema import Extension
from pbxd.sip.controller import STATELESS_TAG_PREFIX, SIPController, stateless_tag
from pbxd.sip.digest import NonceSource
from pbxd.sip.message import make_response
from pbxd.sip.overload import OverloadGuard
from pbxd.sip.parser import parse_message
from pbxd.sip.transaction import TransactionLayer
from pbxd.sip.validation import stamp_via
from pbxd.store.extensions import ConfigExtensionStore
from tests.test_auth import answer
from tests.test_sip_controller import (
    INVITE,
    OPTIONS,
    PHONE,
    REGISTER,
    FakeTransport,
    Handler,
    Registrar,
)

REALM = "pbx.example.org"


def ack_for(invite: str, to_tag: str) -> str:
    """The ACK of a non-2xx answer to ``invite`` (RFC 3261 §17.1.1.3): same branch,
    Call-ID, From and CSeq number, the To of the response."""
    text = invite.replace("INVITE sip", "ACK sip").replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
    return text.replace("To: <sip:1001@pbx.example.org>",
                        f"To: <sip:1001@pbx.example.org>;tag={to_tag}")


def with_credentials(text: str, header: str, value: str, branch: str, cseq: int) -> str:
    """``text`` as the new request that answers a challenge: new branch, next CSeq."""
    old_branch = re.search(r"branch=([^;\r]+)", text).group(1)
    method = text.split(" ", 1)[0]
    return text.replace(old_branch, branch).replace(
        f"CSeq: 1 {method}", f"{header}: {value}\r\nCSeq: {cseq} {method}")


class Stack:
    """A controller with the real authenticator, a fake UDP transport and a stub registrar."""

    def __init__(self, *, authenticator=None, bans=None, **kw) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.bans = bans or BanList(self.clock, max_failed_attempts=3, failure_window=60,
                                    ban_duration=300)
        store = ConfigExtensionStore({"1000": Extension("1000", password="secret1000")})
        self.auth = authenticator or SIPAuthenticator(
            Portal(ExtensionRealm(store), [ExtensionChecker(store)]),
            NonceSource(b"test-secret-0123456789abcdef", lifetime=30),
            self.bans, self.clock, REALM)
        self.layer = TransactionLayer(self.clock, trying_delay=None)
        self.registrar = Registrar()
        self.handler = Handler(status=180)
        self.controller = SIPController(
            self.layer, self.clock, REALM, "pbxd/test", registrar=self.registrar,
            request_handler=self.handler, authenticator=self.auth, bans=self.bans, **kw)
        self.transport = FakeTransport()

    def receive(self, text: str, source=PHONE, transport=None) -> None:
        message = parse_message(text.encode())
        stamp_via(message, source)  # as the transports do (received, rport)
        self.controller.messageReceived(message, transport or self.transport, source)

    @property
    def last(self):
        return self.transport.sent[-1][0]


def test_register_without_credentials_is_challenged_without_a_transaction():
    stack = Stack(max_transactions_per_source=10)
    stack.receive(REGISTER)
    [(challenge, address)] = stack.transport.sent
    assert challenge.status == 401 and address == PHONE
    assert 'realm="pbx.example.org"' in challenge.get("WWW-Authenticate")
    assert challenge.get("Server") == "pbxd/test"
    assert challenge.to.tag == stateless_tag(parse_message(REGISTER.encode()))
    assert challenge.to.tag.startswith(STATELESS_TAG_PREFIX)
    assert challenge.top_via.branch == "z9hG4bK-reg1"
    assert len(stack.layer) == 0
    assert stack.controller.transactions_from(PHONE[0]) == 0
    assert stack.registrar.extensions == []


def test_retransmission_gets_a_fresh_challenge_under_the_same_to_tag():
    stack = Stack()
    stack.receive(REGISTER)
    stack.clock.advance(0.5)  # Timer E: the phone re-sends the same request
    stack.receive(REGISTER)
    first, second = (m for m, _ in stack.transport.sent)
    assert (first.status, second.status) == (401, 401)
    assert first.to.tag == second.to.tag
    nonce = re.compile(r'nonce="([^"]+)"')
    assert (nonce.search(first.get("WWW-Authenticate")).group(1)
            != nonce.search(second.get("WWW-Authenticate")).group(1))
    assert len(stack.layer) == 0


def test_the_tag_depends_on_branch_call_id_from_tag_and_cseq():
    base = stateless_tag(parse_message(REGISTER.encode()))
    for old, new in (("z9hG4bK-reg1", "z9hG4bK-reg9"), ("reg1@", "reg9@"),
                     ("tag=r1", "tag=r9"), ("CSeq: 1", "CSeq: 9")):
        assert stateless_tag(parse_message(REGISTER.replace(old, new).encode())) != base
    # not the method: the ACK of an INVITE's answer repeats the other four
    invite = parse_message(INVITE.encode())
    assert stateless_tag(parse_message(ack_for(INVITE, "x").encode())) == stateless_tag(invite)


def challenged_register(password: str) -> Stack:
    """A REGISTER, its 401, and the REGISTER answering it with ``password`` (1000's)."""
    stack = Stack()
    stack.receive(REGISTER)
    auth = answer(stack.last.get("WWW-Authenticate"), "1000", password, uri=f"sip:{REALM}")
    stack.receive(with_credentials(REGISTER, "Authorization", auth, "z9hG4bK-reg2", 2))
    return stack


def test_the_register_answering_the_challenge_is_registered():
    stack = challenged_register("secret1000")
    assert stack.transport.statuses == [401, 200]
    assert stack.registrar.extensions[0].number == "1000"
    assert len(stack.layer) == 1  # the REGISTER with credentials has its transaction (Timer J)


def test_invite_is_proxy_challenged_statelessly_its_ack_dropped_and_the_call_goes_on():
    stack = Stack(max_transactions_per_source=10)
    stack.receive(INVITE)
    [(challenge, _)] = stack.transport.sent
    assert challenge.status == 407 and challenge.get("Proxy-Authenticate")
    assert len(stack.layer) == 0 and stack.controller.transactions_from(PHONE[0]) == 0
    with capturedLogs() as events:
        stack.receive(ack_for(INVITE, challenge.to.tag))
    assert stack.handler.acks == []
    assert [e for e in events if e["log_level"] >= LogLevel.info] == []
    assert len(stack.transport.sent) == 1 and len(stack.layer) == 0
    auth = answer(challenge.get("Proxy-Authenticate"), "1000", "secret1000", method="INVITE",
                  uri="sip:1001@pbx.example.org")
    stack.receive(with_credentials(INVITE, "Proxy-Authorization", auth, "z9hG4bK-inv2", 2))
    assert stack.transport.statuses == [407, 180]
    [(request, txn)] = stack.handler.requests
    assert request.cseq.seq == 2 and txn.extension.number == "1000"
    assert stack.controller.transactions_from(PHONE[0]) == 1


def test_an_ack_with_a_forged_stateless_tag_goes_to_the_handler():
    stack = Stack()
    stack.receive(ack_for(INVITE, STATELESS_TAG_PREFIX + "0123456789abcdef"))
    stack.receive(ack_for(INVITE.replace("z9hG4bK-inv1", "z9hG4bK-other"),
                          stateless_tag(parse_message(INVITE.encode()))))
    assert len(stack.handler.acks) == 2


def test_a_request_with_credentials_keeps_its_transaction():
    stack = challenged_register("wrong")
    assert stack.transport.statuses == [401, 401]
    assert not stack.last.to.tag.startswith(STATELESS_TAG_PREFIX)
    assert len(stack.layer) == 1
    assert len(stack.bans._failures.get(PHONE[0], ())) == 1


def test_challenges_are_not_failures_and_bans_and_the_rate_limit_still_apply():
    clock = task.Clock()
    bans = BanList(clock, max_failed_attempts=3, failure_window=60, ban_duration=300,
                   rate_limit_requests=5, rate_limit_window=10.0)
    stack = Stack(bans=bans)
    for n in range(4):
        stack.receive(REGISTER.replace("z9hG4bK-reg1", f"z9hG4bK-r{n}"))
    assert stack.transport.statuses == [401] * 4
    assert PHONE[0] not in bans._failures and not bans.is_banned(PHONE[0])
    for n in range(4):  # over the rate: cut off and banned
        stack.receive(REGISTER.replace("z9hG4bK-reg1", f"z9hG4bK-f{n}"))
    assert len(stack.transport.sent) == 5 and bans.is_banned(PHONE[0])
    stack.receive(INVITE)
    assert len(stack.transport.sent) == 5


def test_unknown_and_known_extensions_get_the_same_stateless_challenge():
    def normalised(message) -> list[str]:
        text = message.serialize().decode()
        text = re.sub(r'nonce="[^"]*"', "nonce=*", text)
        return re.sub(r"tag=sl-[0-9a-f]+", "tag=*", text).replace("9999", "1000").split("\r\n")

    stack = Stack()
    stack.receive(REGISTER)
    stack.receive(REGISTER.replace("1000", "9999"))
    known, unknown = (m for m, _ in stack.transport.sent)
    assert normalised(known) == normalised(unknown)
    assert len(stack.layer) == 0


def test_the_per_source_cap_does_not_count_challenges_and_still_refuses_over_it():
    stack = Stack(max_transactions_per_source=1)
    for n in range(3):
        stack.receive(INVITE.replace("z9hG4bK-inv1", f"z9hG4bK-i{n}").replace("inv1@", f"i{n}@"))
    assert stack.transport.statuses == [407] * 3
    assert stack.controller.transactions_from(PHONE[0]) == 0
    stack.receive(OPTIONS)  # a live transaction (Timer J): the source is at its cap
    stack.receive(REGISTER)
    assert stack.transport.statuses[-2:] == [200, 503]
    stack.clock.advance(32)
    stack.receive(REGISTER)
    assert stack.transport.statuses[-1] == 401


def test_tcp_challenge_goes_back_on_the_connection():
    class Stream(FakeTransport):
        name = "TCP"
        reliable = True

    stack = Stack()
    stream = Stream()
    via_elsewhere = REGISTER.replace("SIP/2.0/UDP 192.0.2.10:5060", "SIP/2.0/TCP 198.51.100.7:5099")
    stack.receive(via_elsewhere, source=("192.0.2.10", 40123), transport=stream)
    [(challenge, address)] = stream.sent
    assert challenge.status == 401 and address == ("192.0.2.10", 40123)
    assert stack.transport.sent == [] and len(stack.layer) == 0


def test_udp_challenge_goes_to_the_via_rport():
    stack = Stack()
    stack.receive(REGISTER.replace("branch=z9hG4bK-reg1", "branch=z9hG4bK-reg1;rport"),
                  source=("203.0.113.5", 61000))
    [(challenge, address)] = stack.transport.sent
    assert address == ("203.0.113.5", 61000)
    assert challenge.top_via.params["received"] == "203.0.113.5"


def test_refusals_before_authentication_stay_in_a_transaction():
    guard = OverloadGuard(task.Clock(), max_loop_lag=0, max_call_rate=0)
    stack = Stack(overload=guard)
    stack.controller.draining = "shutting down"
    stack.receive(INVITE)
    stack.receive(REGISTER.replace("To: <sip:1000@pbx.example.org>", "To: isbn:12"))
    stack.receive(INVITE.replace("INVITE", "FROBNICATE"))
    assert stack.transport.statuses == [503, 400, 501]
    assert len(stack.layer) == 3
    # the INVITE's retransmission is absorbed by its transaction (its 503 again), even
    # once the drain is over
    stack.controller.draining = None
    stack.receive(INVITE)
    assert stack.transport.statuses[-1] == 503 and len(stack.layer) == 3


def test_overload_is_asked_once_per_new_invite():
    clock = task.Clock()
    guard = OverloadGuard(clock, max_loop_lag=0.01, max_call_rate=0)
    guard.lag._until = clock.seconds() + 10  # a late tick a moment ago
    stack = Stack(overload=guard)
    stack.receive(INVITE)
    assert stack.transport.statuses == [503] and guard.refused == 1


def test_requests_with_a_to_tag_are_challenged_in_a_transaction():
    stack = Stack()
    reinvite = INVITE.replace("To: <sip:1001@pbx.example.org>",
                              "To: <sip:1001@pbx.example.org>;tag=dlg")
    stack.receive(reinvite)
    assert stack.transport.statuses == [407] and stack.last.to.tag == "dlg"
    assert len(stack.layer) == 1
    # its ACK is absorbed by that transaction, not handed to the dialog layer
    stack.receive(ack_for(INVITE, "dlg"))
    assert stack.handler.acks == []


def test_an_authenticator_that_answers_later_keeps_the_stateful_path():
    class Later:
        def __init__(self) -> None:
            self.asked = 0
            self.pending: Deferred = Deferred()

        def authenticate(self, request, source, proxy=False):
            self.asked += 1
            return self.pending

    later = Later()
    stack = Stack(authenticator=later)
    stack.receive(REGISTER)
    stack.receive(REGISTER)  # a retransmission: absorbed by the transaction
    assert later.asked == 1 and len(stack.layer) == 1 and stack.transport.sent == []
    later.pending.callback(AuthResult(response=make_response(
        parse_message(REGISTER.encode()), 401, to_tag="later")))
    assert stack.transport.statuses == [401] and stack.last.to.tag == "later"


def test_a_synchronous_non_challenge_answer_is_used_in_a_transaction():

    class Accepting:
        def authenticate(self, request, source, proxy=False):
            return AuthResult(extension="open")

    class Failing:
        def authenticate(self, request, source, proxy=False):
                    return AuthResult(response=make_response(request, 500, to_tag="err"))

    stack = Stack(authenticator=Accepting())
    stack.receive(REGISTER)
    assert stack.transport.statuses == [200] and stack.registrar.extensions == ["open"]
    failing = Stack(authenticator=Failing())
    failing.receive(REGISTER)
    assert failing.transport.statuses == [500] and len(failing.layer) == 1


def test_an_already_fired_deferred_is_stateful_too():
    class Fired:
        def authenticate(self, request, source, proxy=False):
                            return succeed(AuthResult(response=make_response(request, 401, to_tag="d")))

    stack = Stack(authenticator=Fired())
    stack.receive(REGISTER)
    assert stack.transport.statuses == [401] and len(stack.layer) == 1
