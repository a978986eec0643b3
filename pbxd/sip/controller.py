"""The SIP controller: the one place parsed messages enter (layer 3).

Every transport hands its messages to one :class:`SIPController`
(``messageReceived``). For each message, in this order:

1. the ban list (``bans.allowMessage``: banned or flooding sources are dropped
   silently, before any transaction exists);
2. responses go to their client transaction (unmatched ones are dropped);
3. an ACK is absorbed by its INVITE transaction (non-2xx) or handed to the
   request handler's ``ackReceived`` (2xx);
4. retransmitted requests are absorbed by the transaction layer;
5. :func:`pbxd.sip.validation.check_request` (RFC 3261 §8.2 errors);
6. OPTIONS is answered here (200 with Allow, Accept, Supported);
7. REGISTER is authenticated and given to the registrar;
8. anything else is authenticated when it starts something (out of dialog,
   INVITE) and given to the :class:`~pbxd.interfaces.IRequestHandler`.

A request that will only be challenged (it needs authentication, carries no
credentials, has no To tag and passes every check before authentication) is
answered *statelessly* (RFC 3261 §8.2.7), as Kamailio's ``sl_send_reply``
does: the 401/407 goes out without a server transaction, with a To tag that
is a keyed hash of the request's transaction identifiers
(:func:`stateless_tag`), so a retransmission of the request gets a fresh
challenge under the same tag and the ACK of a 407 is recognised and dropped.

Nothing raises out of here: a failure in an upper layer is logged and the
request gets a 500.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pbxd import debuglog
from pbxd.interfaces import ISIPMessageReceiver
from pbxd.sip.message import make_response
from pbxd.sip.tokens import random_hex
from pbxd.sip.transaction import response_address
from pbxd.sip.validation import check_request, stamp_via

#: Methods the PBX offers when every part is configured (the Allow header).
DEFAULT_METHODS: tuple[str, ...] = (
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "UPDATE", "REFER", "NOTIFY",
)
#: Methods that need the request handler (calls layer).
HANDLER_METHODS = frozenset(DEFAULT_METHODS) - {"OPTIONS", "REGISTER"}
#: Methods never challenged: they cannot answer a challenge.
UNCHALLENGED = frozenset({"ACK", "CANCEL", "OPTIONS"})
ACCEPT = "application/sdp"

Address = tuple[str, int]


def new_tag() -> str:
    """A random To tag for responses we make ourselves (48 random bits, RFC 3261 §19.3)."""
    return random_hex(12)


#: The To tags of stateless challenges start with this (random tags are hex digits only).
STATELESS_TAG_PREFIX = "sl-"
#: The keyed hash of :func:`stateless_tag`, its key drawn once per process (copied per use:
#: a copy skips hashing the key block again).
_STATELESS_MAC = hashlib.blake2b(digest_size=8, key=os.urandom(32))


def stateless_tag(message: Any) -> str:
    """The To tag of a stateless response to ``message`` (RFC 3261 §8.2.7).

    ``sl-`` and a 64-bit keyed BLAKE2b of the top Via branch, Call-ID, From tag
    and CSeq number: the same for every retransmission of a request and for the
    ACK of a non-2xx answer to an INVITE (which repeats all four, §17.1.1.3),
    different for every other request, and not computable without the key.
    Raises what the header accessors raise for a message whose headers do not parse.
    """
    via = message.top_via
    from_ = message.from_
    cseq = message.cseq
    seed = (f"{via.branch if via is not None else ''}\0{message.call_id}\0"
            f"{from_.tag if from_ is not None else ''}\0{cseq.seq if cseq is not None else ''}")
    mac = _STATELESS_MAC.copy()
    mac.update(seed.encode("utf-8", "surrogatepass"))
    return STATELESS_TAG_PREFIX + mac.hexdigest()


#: ``_route`` has not looked at the request yet (as opposed to None: nothing refuses it).
_UNCHECKED: Any = object()


@implementer(ISIPMessageReceiver)
class SIPController:
    """Routes SIP messages between transports, transactions, auth, registrar and calls.

    :param transactions: the :class:`~pbxd.sip.transaction.TransactionLayer`.
    :param clock: an ``IReactorTime``.
    :param realm: the local domain (digest realm).
    :param user_agent: the ``Server`` header of responses made here.
    :param registrar: gets ``register(request, txn, extension)``; None: REGISTER is 405.
    :param request_handler: an ``IRequestHandler``; None: INVITE and the rest are 405.
    :param authenticator: a ``SIPAuthenticator``; None: no authentication.
    :param bans: a ``BanList`` (``allowMessage``, ``ban``); None: nobody is refused.
    :param allowed_methods: what the PBX serves (defaults to :data:`DEFAULT_METHODS`,
        less REGISTER without a registrar and less the call methods without a handler).
    :param supported: option tags for ``Supported`` and the 420 check.
    :param max_malformed: unparseable messages a source may send per
        ``malformed_window`` seconds before it is banned (0 disables).
    :param max_transactions_per_source: live server transactions one IP may
        hold; a new request over it gets a stateless 503 (0: no limit).
    :param max_dialogs_per_source: calls in progress one IP may hold, asked of
        the request handler's ``calls_from(ip)`` when it has one (0: no limit).
    :param overload: an :class:`~pbxd.sip.overload.OverloadGuard`; new INVITEs
        get 503 with ``Retry-After`` while it refuses them.
    """

    log = Logger()
    metrics: Any = None  # a pbxd.web.metrics.Metrics (sip_received), set by the composition root

    def __init__(
        self,
        transactions: Any,
        clock: Any,  # IReactorTime
        realm: str,
        user_agent: str,
        *,
        registrar: Any = None,
        request_handler: Any = None,
        authenticator: Any = None,
        bans: Any = None,
        allowed_methods: Iterable[str] | None = None,
        supported: Iterable[str] = (),
        max_malformed: int = 50,
        malformed_window: float = 60.0,
        max_transactions_per_source: int = 0,
        max_dialogs_per_source: int = 0,
        overload: Any = None,
        retry_after: int = 5,
    ) -> None:
        self.transactions = transactions
        self.clock = clock
        self.realm = realm
        self.user_agent = user_agent
        self.registrar = registrar
        self.request_handler = request_handler
        self.authenticator = authenticator
        self.bans = bans
        self.supported = tuple(supported)
        methods = tuple(m.upper() for m in (allowed_methods or DEFAULT_METHODS))
        if registrar is None:
            methods = tuple(m for m in methods if m != "REGISTER")
        if request_handler is None:
            methods = tuple(m for m in methods if m not in HANDLER_METHODS)
        self.allowed_methods = methods
        self.max_malformed = max_malformed
        self.malformed_window = malformed_window
        self._malformed: dict[str, list[float]] = {}
        self.max_transactions_per_source = max_transactions_per_source
        self.max_dialogs_per_source = max_dialogs_per_source
        self.overload = overload
        self.retry_after = getattr(overload, "retry_after", retry_after)
        self._txn_counts: dict[str, int] = {}
        self.draining: str | None = None  # set at shutdown: new INVITEs get 503 + Retry-After
        previous = getattr(transactions, "on_server_terminated", None)
        if hasattr(transactions, "on_server_terminated"):
            transactions.on_server_terminated = (
                self._server_gone if previous is None else _chain(previous, self._server_gone)
            )

    # ------------------------------------------------------------ entry points

    def messageReceived(self, message: Any, transport: Any, source: Address) -> None:
        """A parsed request or response from ``source``. Never raises."""
        try:
            if not self.allowMessage(source):
                return
            if self.metrics is not None:
                self.metrics.sip_received(message)
            if getattr(message, "method", None) is None:
                self._response(message, transport, source)
            elif message.method == "ACK":
                self._ack(message, transport, source)
            else:
                self._request(message, transport, source)
        except Exception:
            self.log.failure("Failed handling a SIP message from {source}", source=source)

    def malformedReceived(self, error: Any, transport: Any, source: Address) -> None:
        """Input that did not parse: a stateless 400 when a response can be formed."""
        try:
            if not self.allowMessage(source):
                return
            self._count_malformed(source[0])
            request = getattr(error, "request", None)
            self.log.info(
                "Malformed SIP from {source}: {reason}", source=source, reason=error.reason
            )
            if request is None or getattr(request, "method", "ACK") == "ACK":
                return
            stamp_via(request, source)
            version = (getattr(request, "version", "") or "").upper()
            status = getattr(error, "status", 400)
            if version and version != "SIP/2.0":
                response = make_response(request, 505, "Version Not Supported", to_tag=new_tag())
            elif status == 513:
                response = make_response(request, 513, "Message Too Large", to_tag=new_tag())
            else:
                response = make_response(request, 400, error.reason, to_tag=new_tag())
            self._send_stateless(request, response, transport, source)
        except Exception:
            self.log.failure("Failed answering malformed input from {source}", source=source)

    def _send_stateless(self, request: Any, response: Any, transport: Any, source: Address) -> None:
        """Send ``response`` without a transaction (to the Via address on UDP)."""
        self._stamp(response)
        address = source
        try:
            via = request.top_via
        except Exception:
            via = None  # unparseable Via: answer where it came from
        if via is not None and not (transport.reliable and transport.connected):
            address = response_address(via, source, transport.reliable)
        transport.send(response.serialize(), address)

    def _unavailable(self, request: Any, reason: str) -> Any:
        """503 with Retry-After (RFC 3261 §21.5.4)."""
        response = make_response(request, 503, "Service Unavailable", to_tag=new_tag())
        response.set("Retry-After", f"{self.retry_after} ({reason})")
        return response

    def transactions_from(self, ip: str) -> int:
        """Live server transactions from ``ip``."""
        return self._txn_counts.get(ip, 0)

    def _server_gone(self, txn: Any) -> None:
        ip = getattr(txn, "_counted_ip", None)
        if ip is None:
            return
        count = self._txn_counts.get(ip, 0) - 1
        if count <= 0:
            self._txn_counts.pop(ip, None)
        else:
            self._txn_counts[ip] = count

    def connectionLost(self, transport: Any) -> None:
        """A stream connection closed: transactions and bindings on it are told."""
        for part, hook in (
            (self.transactions, "transport_lost"),
            (self.registrar, "connectionLost"),
            (self.request_handler, "connectionLost"),
        ):
            method = getattr(part, hook, None)
            if method is None:
                continue
            try:
                method(transport)
            except Exception:
                self.log.failure("{hook} failed for {peer}", hook=hook, peer=transport.peer)

    def allowMessage(self, source: Address) -> bool:
        """False for a banned or flooding source (drop silently)."""
        if self.bans is None:
            return True
        return bool(self.bans.allowMessage(source))

    # ------------------------------------------------------------ dispatch

    def _response(self, response: Any, transport: Any, source: Address) -> None:
        if not self.transactions.match_response(response, transport, source):
            self.log.debug(
                "Stray {status} response from {source}", status=response.status, source=source
            )

    def _ack(self, ack: Any, transport: Any, source: Address) -> None:
        if self.transactions.match_ack(ack):
            return
        if self._acks_stateless_answer(ack):
            # the ACK of a 407 sent without a transaction: nothing waits for it
            if debuglog.ENABLED:
                self.log.debug("ACK of a stateless challenge from {source} dropped", source=source)
            return
        if check_request(ack, supported=self.supported) is not None:
            self.log.debug("Dropped invalid ACK from {source}", source=source)
            return
        if self.request_handler is not None:
            self.request_handler.ackReceived(ack, transport, source)

    def _request(self, request: Any, transport: Any, source: Address) -> None:
        ip = source[0]
        cap = self.max_transactions_per_source
        if (cap and self._txn_counts.get(ip, 0) >= cap and not self._is_retransmission(request)
                and not self._trusted(ip)):
            self.log.info("{method} from {source} refused: {cap} transactions in progress",
                          method=request.method, source=source, cap=cap)
            if request.method != "ACK":
                self._send_stateless(request, self._unavailable(request, "too many transactions"),
                                     transport, source)
            return
        refusal = _UNCHECKED
        auth = failure = None
        if (self.authenticator is not None and self._challengeable(request)
                and not self._is_retransmission(request)):
            # RFC 3261 §8.2.7: a request that is only going to be challenged is
            # answered without a transaction (no timers, no table entry, not counted)
            try:
                refusal = self._refusal(request, source)
                if refusal is None:
                    auth = self._authenticate(request, source)
                    if self._challenged_statelessly(auth, request, transport, source):
                        return
            except Exception:
                failure = Failure()  # answered 500 in the transaction, as from _route
        txn = self.transactions.server_transaction(request, transport, source)
        if txn is None:
            return  # a retransmission, absorbed
        if cap:
            try:
                txn._counted_ip = ip
                self._txn_counts[ip] = self._txn_counts.get(ip, 0) + 1
            except AttributeError:
                pass
        if failure is not None:
            self._internal_error(failure, txn)
            return
        try:
            self._route(request, txn, source, refusal, auth)
        except Exception:
            self._internal_error(Failure(), txn)

    def _challengeable(self, request: Any) -> bool:
        """True for a request that needs authentication (REGISTER, or a method that is
        not in :data:`UNCHALLENGED`), has no To tag (so is not in a dialog: its ACK can
        be recognised by our tag) and carries no credentials at all."""
        method = request.method
        if method in UNCHALLENGED:
            return False
        try:
            to = request.to
        except Exception:
            return False
        return (to is not None and to.tag is None and request.get("Authorization") is None
                and request.get("Proxy-Authorization") is None)

    def _challenged_statelessly(self, auth: Any, request: Any, transport: Any,
                                source: Address) -> bool:
        """Send ``auth``'s response without a transaction when it is a synchronous
        401/407; False (nothing sent) for anything else."""
        if isinstance(auth, Deferred):
            return False
        response = auth.response
        if response is None or response.status not in (401, 407):
            return False
        # the same tag for every retransmission of the request (§8.2.7), recognisable in its ACK
        response.set("To", request.to.with_tag(stateless_tag(request)))
        self._send_stateless(request, response, transport, source)
        return True

    def _acks_stateless_answer(self, ack: Any) -> bool:
        """True for the ACK of a response made by :meth:`_challenged_statelessly`."""
        try:
            to = ack.to
            tag = to.tag if to is not None else None
            return (tag is not None and tag.startswith(STATELESS_TAG_PREFIX)
                    and tag == stateless_tag(ack))
        except Exception:
            return False

    def _route(self, request: Any, txn: Any, source: Address, refusal: Any = _UNCHECKED,
               auth: Any = None) -> None:
        """Answer or hand on ``request`` in ``txn``. ``refusal`` and ``auth`` are what
        :meth:`_refusal` and the authenticator said when ``_request`` asked already."""
        if refusal is _UNCHECKED:
            refusal = self._refusal(request, source)
        if refusal is not None:
            response, reason = refusal
            if reason is not None:
                self.log.info("{txn} {method} from {source} refused: {reason}",
                              txn=getattr(txn, "id", None), method=request.method,
                              source=source, reason=reason)
            self.respond(txn, response)
            return
        method = request.method
        if method == "OPTIONS":
            self.respond(txn, self.options_response(request))
        elif method == "REGISTER":
            self._authenticated(request, txn, source, self._register, auth)
        elif method in UNCHALLENGED or self._in_dialog(request):
            self._handle(request, txn, None)
        else:
            self._authenticated(request, txn, source, self._handle, auth)

    def _refusal(self, request: Any, source: Address) -> tuple[Any, str | None] | None:
        """``(response, reason to log or None)`` when ``request`` is refused before any
        authentication (RFC 3261 §8.2 errors, 503 to a new call, 400 to a REGISTER
        whose To is not a SIP URI), None when it may go on."""
        error = check_request(
            request,
            supported=self.supported,
            served_methods=self.allowed_methods,
            to_tag=new_tag(),
        )
        if error is not None:
            return error, f"{error.status} {error.reason}"
        method = request.method
        if method == "INVITE" and not self._in_dialog_invite(request):
            refusal = self._refuse_new_call(request, source)
            if refusal is not None:
                return self._unavailable(request, refusal), refusal
        elif method == "REGISTER":
            problem = self._register_problem(request)
            if problem:
                return make_response(request, 400, problem, to_tag=new_tag()), None
        return None

    def _authenticate(self, request: Any, source: Address) -> Any:
        """The authenticator's answer for ``request``: an AuthResult or a Deferred of one."""
        # 401/WWW-Authenticate for REGISTER, 407/Proxy-Authenticate for everything else,
        # as Asterisk and Kamailio do (phones expect a call to be proxy-challenged).
        return self.authenticator.authenticate(request, source,
                                               proxy=request.method != "REGISTER")

    def _authenticated(self, request: Any, txn: Any, source: Address, then: Any,
                       result: Any = None) -> None:
        """Run ``then(request, txn, extension)`` once ``request`` is authenticated
        (``result``: the authenticator's answer when it was asked already)."""
        if self.authenticator is None:
            then(request, txn, None)
            return
        # the authenticator answers at once when it can (an in-memory extension store)
        # and with a Deferred otherwise; the synchronous case costs no Deferred
        if result is None:
            result = self._authenticate(request, source)
        if isinstance(result, Deferred):
            result.addCallback(self._decided, request, txn, then)
            result.addErrback(self._internal_error, txn)
        else:
            self._decided(result, request, txn, then)

    def _decided(self, result: Any, request: Any, txn: Any, then: Any) -> None:
        if result.response is not None:
            self._stamp(result.response)
            txn.respond(result.response)
        else:
            then(request, txn, result.extension)

    def _register(self, request: Any, txn: Any, extension: Any) -> None:
        self._call_upper(self.registrar.register, request, txn, extension)

    def _handle(self, request: Any, txn: Any, extension: Any) -> None:
        if extension is not None:
            try:
                txn.extension = extension
            except AttributeError:
                pass
        self._call_upper(self.request_handler.requestReceived, request, txn)

    def _call_upper(self, fn: Any, request: Any, txn: Any, *args: Any) -> None:
        """``fn(request, txn, *args)``: an exception or a failed Deferred gets a 500."""
        try:
            result = fn(request, txn, *args)
        except Exception:
            self._internal_error(Failure(), txn)
            return
        if isinstance(result, Deferred):
            result.addErrback(self._internal_error, txn)

    @staticmethod
    def _register_problem(request: Any) -> str | None:
        """A 400 reason for a REGISTER whose To is not a SIP AOR (RFC 3261 §10.3, RFC 4475 unksm2)."""
        scheme = request.to.uri.scheme
        if scheme not in ("sip", "sips"):
            return f"To must be a sip: or sips: URI, not {scheme}:"
        return None

    def _is_retransmission(self, request: Any) -> bool:
        find = getattr(self.transactions, "_find_server", None)
        if find is None:
            return False
        try:
            return find(request, request.method) is not None
        except Exception:
            return False

    @staticmethod
    def _in_dialog_invite(request: Any) -> bool:
        try:
            return request.to.tag is not None
        except Exception:
            return False

    def _refuse_new_call(self, request: Any, source: Address) -> str | None:
        """Why a new INVITE gets 503 now (draining, overload, call rate, dialogs per source)."""
        if self.draining:
            return self.draining
        if self.overload is not None:
            counts = self.authenticator is None or any(
                request.get(h) is not None for h in ("Authorization", "Proxy-Authorization")
            )
            reason = self.overload.why_not(counts)
            if reason is not None:
                return reason
        cap = self.max_dialogs_per_source
        calls_from = getattr(self.request_handler, "calls_from", None)
        if (cap and calls_from is not None and calls_from(source[0]) >= cap
                and not self._trusted(source[0])):
            return "too many calls from this address"
        return None

    def _trusted(self, ip: str) -> bool:
        """Sources in ``security.trusted_networks`` (an SBC or proxy in front) have no
        per-source caps: they carry the traffic of many phones."""
        return self.bans is not None and self.bans.is_trusted(ip)

    @staticmethod
    def _in_dialog(request: Any) -> bool:
        """True for a request with a To tag: the dialog layer decides (481 if unknown)."""
        try:
            to = request.to
        except Exception:
            return False
        return to is not None and to.tag is not None and request.method != "INVITE"

    # ------------------------------------------------------------ responses

    def options_response(self, request: Any) -> Any:
        """200 OK to an OPTIONS addressed to us: what we allow, accept and support."""
        response = make_response(request, 200, to_tag=new_tag())
        response.set("Allow", ", ".join(self.allowed_methods))
        response.set("Accept", ACCEPT)
        response.set("Supported", ", ".join(self.supported))
        self._stamp(response)
        return response

    def respond(self, txn: Any, response: Any) -> None:
        """Send ``response`` on ``txn`` with our Server header."""
        self._stamp(response)
        txn.respond(response)

    def _stamp(self, response: Any) -> None:
        if self.user_agent and response.get("Server") is None:
            response.add("Server", self.user_agent)  # none yet: add appends, as set would

    def _internal_error(self, failure: Failure, txn: Any) -> None:
        """Log ``failure`` and answer 500 if no final response was sent yet."""
        self.log.failure(
            "Failed handling {method} from {source}",
            failure,
            method=getattr(txn, "method", None) or getattr(txn.request, "method", "?"),
            source=getattr(txn, "source", None),
        )
        try:
            last = getattr(txn, "last_response", None)
            if last is None or last.status < 200:
                self.respond(txn, make_response(txn.request, 500, "Server Internal Error",
                                                to_tag=new_tag()))
        except Exception:
            self.log.failure("Could not send 500")

    def _count_malformed(self, ip: str) -> None:
        """Ban a source that keeps sending garbage."""
        if not self.max_malformed or self.bans is None:
            return
        now = self.clock.seconds()
        entry = self._malformed.get(ip)
        if entry is None or now - entry[1] > self.malformed_window:
            if len(self._malformed) > 10000:
                self._malformed.clear()
            entry = self._malformed[ip] = [0.0, now]
        entry[0] += 1
        if entry[0] >= self.max_malformed:
            del self._malformed[ip]
            self.bans.ban(ip, self.bans.ban_duration, "malformed SIP flood")


def _chain(first: Any, second: Any) -> Any:
    def both(txn: Any) -> None:
        try:
            first(txn)
        finally:
            second(txn)

    return both
