"""The composition root: typed config in, a ``MultiService`` tree out (layer 7).

This is the only module that picks concrete classes and wires them together;
each part gets its collaborators and its slice of the configuration. The
reactor is imported only inside :func:`make_service`.

The tree::

    MultiService "pbxd"
      SIPStackService      stops the transaction layer on shutdown
      UDPListener          one per ``udp:`` entry of sip.listen
      StreamListener       one per ``tcp:``/``tls:``/``ssl:`` entry

Adding a part (registrar, calls, admin API): build it in :func:`make_service`
between the SIP stack parts and the listeners, and pass it to
:func:`build_sip_stack` (``registrar=``, ``request_handler=``) or add its
service to ``top``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.cred.portal import Portal
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from pbxd.auth.bans import BanList
from pbxd.auth.checker import ExtensionChecker
from pbxd.auth.realm import ExtensionRealm
from pbxd.auth.sipauth import SIPAuthenticator
from pbxd.configschema import Config
from pbxd.listeners import HTTPListener, stop_reactor
from pbxd.reload import ListenerSet, Reloader, ReloadService, register_dialplan, register_hooks
from pbxd.shutdown import Drainer, PBXService
from pbxd.sip.controller import SIPController
from pbxd.sip.digest import NonceCounter, NonceSource
from pbxd.sip.location import LocationService
from pbxd.sip.overload import OverloadGuard
from pbxd.sip.qualify import Qualifier, options_maker
from pbxd.sip.registrar import Registrar
from pbxd.sip.transaction import TransactionLayer
from pbxd.sip.transport import (
    ConnectionLimiter,
    ConnectionTable,
    Connector,
    SIPDatagramProtocol,
)
from pbxd.store.audit import SQLiteAuditStore
from pbxd.store.bans import SQLiteBanStore
from pbxd.store.cdr import SQLiteCDRStore
from pbxd.store.db import Database, open_database
from pbxd.store.extensions import ConfigExtensionStore
from pbxd.store.extensions_db import SQLiteExtensionStore
from pbxd.store.location import SQLiteLocationStore
from pbxd.web import calls as calls_api
from pbxd.web import recordings as recordings_api
from pbxd.web import reload as reload_api
from pbxd.web import voicemail as voicemail_api
from pbxd.web.metrics import LoopLagMonitor, Metrics
from pbxd.wiring_dialplan import compile_dialplan
from pbxd.wiring_dialplan import connect_calls as _connect_calls
from pbxd.wiring_dialplan import make_calls as _make_calls
from pbxd.wiring_recording import install_recording
from pbxd.wiring_voicemail import install_features

log = Logger()



@dataclass
class SIPStack:
    """The SIP parts shared by all listeners (what the calls layer is given)."""

    transactions: TransactionLayer
    controller: SIPController
    connections: ConnectionTable
    connector: Connector
    bans: BanList
    authenticator: SIPAuthenticator | None
    udp: list[SIPDatagramProtocol] = field(default_factory=list)
    limiter: ConnectionLimiter = field(default_factory=ConnectionLimiter)  # limits.max_connections*
    metrics: Any = None  # pbxd.web.metrics.Metrics: transports count what they send
    overload: OverloadGuard | None = None  # limits.overload
    tls: Any = None  # the ReloadableContextFactory of tls: listeners (reload_certificate())


def make_service(config: Config, reactor: Any = None, *, database: Any = None) -> MultiService:
    """Build the whole server for ``config``; ``reactor`` defaults to the global one.

    ``database`` (a :class:`pbxd.store.db.Database`) replaces the one opened from
    ``store.url``: tests pass one over a synchronous pool.
    """
    uses_global_reactor = reactor is None
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    state_dir = prepare_state_dir(config.pbx.state_dir)
    top = PBXService()
    top.setName("pbxd")

    stores = build_stores(config, reactor, database)
    state = StateService(stores)
    state.setServiceParent(top)  # every other part is its child: the database closes last

    bans = build_bans(config, reactor, store=stores.bans)
    extensions = stores.extensions  # config extensions first, then those made through the API
    metrics = Metrics()
    LoopLagMonitor(reactor, metrics).setServiceParent(state)
    authenticator = build_authenticator(config, reactor, bans, extensions)
    registrar = build_registrar(config, reactor, extensions, store=stores.location)
    state.restore_with(registrar.location, bans)
    calls = _make_calls(config, reactor, registrar.location, stores.cdr, extensions)
    stack = build_sip_stack(
        config,
        reactor,
        bans=bans,
        authenticator=authenticator,
        registrar=registrar,
        request_handler=calls,
    )
    _connect_calls(calls, stack, config, reactor)
    features = install_features(config, reactor, parent=state, database=stores.database,
                                extensions=extensions, bans=bans,
                                location=registrar.location, calls=calls, stack=stack,
                                state_dir=state_dir)
    recording = install_recording(config, reactor, parent=state, calls=calls, state_dir=state_dir)
    wire_metrics(metrics, stack, calls)
    SIPStackService(stack).setServiceParent(state)

    listeners = ListenerSet(state, stack, reactor, state_dir)
    listeners.open(config)
    install_qualifier(config, reactor, parent=state, location=registrar.location, stack=stack,
                      ua=calls.deps.ua)
    reloader = top.reloader = Reloader(config)  # more parts: reloader.register(name, apply)
    admin = build_admin(config, reactor, stores=stores, location=registrar.location, bans=bans,
                        metrics=metrics, extra_routes=[
                            *calls_api.routes(calls, stores.audit, stores.extensions),
                            *reload_api.routes(reloader, stores.audit),
                            *voicemail_api.routes(features.voicemail, features.store,
                                                  stores.audit),
                            *recordings_api.routes(recording.store, stores.audit)])
    listeners.set_admin(admin)
    top.drainer = Drainer(reactor, count_calls=lambda: len(calls.active_calls()),
                          refuse_new=lambda reason: _refuse(stack, reloader, reason),
                          drain_time=config.calls.drain_time)
    register_hooks(reloader, stores=stores, bans=bans, stack=stack, listeners=listeners,
                   site=admin.site if admin is not None else None, calls=calls,
                   drainer=top.drainer, make_authenticator=lambda new: _new_authenticator(
                       new, reactor, stack, extensions, metrics))
    if getattr(calls, "sessions", None) is not None:
        register_dialplan(reloader, calls.sessions.dialplan, compile_dialplan)
    recording.register_reload(reloader)
    ReloadService(reloader, reactor, signals=uses_global_reactor).setServiceParent(state)
    calls.setServiceParent(state)  # last child: stopped first, BYEs go out while listeners are up
    return top


def install_qualifier(config: Config, reactor: Any, *, parent: Any, location: Any,
                      stack: SIPStack, ua: Any) -> Qualifier:
    """OPTIONS to every binding each ``registrar.qualify_interval`` (0: none are sent); a
    binding that does not answer within ``registrar.qualify_timeout`` is not called until
    it answers again. Started after the listeners, so that its first round can send."""
    reg = config.registrar
    qualifier = Qualifier(location, stack.transactions, reactor, reg.qualify_interval,
                          reg.qualify_timeout, options_maker(ua, config.pbx.realm),
                          connector=stack.connector)
    qualifier.setName("qualify")
    qualifier.setServiceParent(parent)
    return qualifier


# -- calls and the dialplan: pbxd/wiring_dialplan.py -------------------------------


def wire_metrics(metrics: Any, stack: SIPStack, calls: Any) -> None:
    """Point the counting parts at ``metrics`` (listeners read ``stack.metrics``)."""
    stack.metrics = metrics
    for part in (stack.controller, stack.transactions, stack.bans, stack.authenticator,
                 calls.cdrs):
        if part is not None:
            part.metrics = metrics
    metrics.watch("active_calls", lambda: len(calls.active_calls()))
    metrics.watch("transactions", lambda: len(stack.transactions))


def _refuse(stack: SIPStack, reloader: Any, reason: str) -> None:
    """Shutdown: new INVITEs get 503 + Retry-After, reloads are refused."""
    stack.controller.draining = reason
    reloader.refusal = reason


def _new_authenticator(config: Config, reactor: Any, stack: SIPStack, extensions: Any,
                       metrics: Any) -> Any:
    """A SIPAuthenticator for a reload that turns require_authentication on."""
    auth = build_authenticator(config, reactor, stack.bans, extensions)
    if auth is not None:
        auth.metrics = metrics
    return auth


def build_admin(
    config: Config, reactor: Any, *, stores: Stores, location: Any, bans: Any, metrics: Any,
    extra_routes: Any = (),
) -> HTTPListener | None:
    """The admin API listener (``admin.listen``), or None when it is null."""
    if config.admin.listen is None:
        return None
    from pbxd.web.api import make_admin_site

    site = make_admin_site(
        tokens=config.admin.tokens, clock=reactor, location=location, bans=bans,
        extensions=stores.extensions, cdr_store=stores.cdr, audit_store=stores.audit,
        metrics=metrics, extra_routes=extra_routes,
        rate_limit_requests=config.admin.rate_limit.requests,
        rate_limit_window=config.admin.rate_limit.window,
    )
    endpoint = endpoints.serverFromString(reactor, config.admin.listen)
    return HTTPListener(reactor, config.admin.listen, endpoint, site)


@dataclass
class Stores:
    """The durable stores over one database."""

    database: Database
    location: SQLiteLocationStore
    bans: SQLiteBanStore
    cdr: SQLiteCDRStore
    extensions: SQLiteExtensionStore
    audit: SQLiteAuditStore

    def prepare(self) -> list[Deferred]:
        """Migrate every store's schema (and load API extensions into memory)."""
        return [store.prepare() for store in
                (self.location, self.bans, self.cdr, self.extensions, self.audit)]


def build_stores(config: Config, reactor: Any, database: Any = None) -> Stores:
    """Open ``store.url`` (SQLite by default) and the stores kept in it."""
    if database is None:
        database = open_database(config.store.url, reactor,
                                 commit_delay=config.store.commit_window)
    extensions = SQLiteExtensionStore(
        database, ConfigExtensionStore(config.extensions),
        realm=config.pbx.realm, contexts=config.dialplan.keys(),
    )
    return Stores(
        database,
        SQLiteLocationStore(database, reactor),
        SQLiteBanStore(database, reactor),
        SQLiteCDRStore(database),
        extensions,
        SQLiteAuditStore(database, reactor),
    )


class StateService(MultiService):
    """Owns the stores; every part that uses them is its child.

    At start it prepares the stores and restores registrations and bans;
    ``ready()`` gives a Deferred that fires once that is done, and listeners
    wait for it, so no REGISTER is answered before the stored bindings are
    back. At stop the database is closed only after every child has stopped
    (the calls service writes its last CDRs then).
    """

    def __init__(self, stores: Stores) -> None:
        super().__init__()
        self.stores = stores
        self.setName("state")
        self._location: Any = None
        self._bans: Any = None
        self._ready = False
        self._waiting: list[Deferred] = []

    def restore_with(self, location: Any, bans: Any) -> None:
        """What to restore at start."""
        self._location, self._bans = location, bans

    def ready(self) -> Deferred:
        """A Deferred firing when the stores are prepared and state restored."""
        if self._ready:
            return _fired()
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d

    def startService(self) -> None:
        """Migrate the schema, then restore bindings and bans."""
        super().startService()
        stores = self.stores
        d = DeferredList(
            stores.prepare(),
            fireOnOneErrback=True,
            consumeErrors=True,
        )
        if self._location is not None:
            d.addCallback(lambda _: self._location.restore())
            d.addCallback(lambda n: log.info("restored {count} registrations", count=n))
        if self._bans is not None:
            d.addCallback(lambda _: self._bans.load())
        d.addCallbacks(self._restored, self._failed)

    def _restored(self, _: Any) -> None:
        self._ready = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def _failed(self, failure: Any) -> None:
        log.failure("cannot open the store", failure)
        from twisted.internet import reactor

        stop_reactor(reactor)

    def stopService(self) -> Deferred:
        """Stop the children, then close the database."""
        d = super().stopService()
        d.addBoth(self._close)
        return d

    def _close(self, result: Any) -> Any:
        self.stores.database.close()
        return result


def _fired() -> Deferred:
    d: Deferred = Deferred()
    d.callback(None)
    return d


def prepare_state_dir(state_dir: str) -> str:
    """Create ``state_dir`` (mode 0750) if it is missing; return it."""
    os.makedirs(state_dir, mode=0o750, exist_ok=True)
    return state_dir


def build_bans(config: Config, reactor: Any, store: Any = None) -> BanList:
    """The ban list and flood limiter from ``security:``."""
    security = config.security
    return BanList(
        reactor,
        max_failed_attempts=security.max_failed_attempts,
        failure_window=security.failure_window,
        ban_duration=security.ban_duration,
        trusted_networks=security.trusted_networks,
        rate_limit_requests=security.rate_limit.requests,
        rate_limit_window=security.rate_limit.window,
        store=store,
    )


def build_authenticator(
    config: Config, reactor: Any, bans: BanList, store: Any
) -> SIPAuthenticator | None:
    """Digest authentication against ``store`` (an IExtensionStore); None if not required."""
    if not config.security.require_authentication:
        return None
    realm: Any = ExtensionRealm(store)
    checker: Any = ExtensionChecker(store)
    portal = Portal(realm, [checker])
    nonces = NonceSource(os.urandom(32), config.security.nonce_lifetime)
    return SIPAuthenticator(
        portal, nonces, bans, reactor, config.pbx.realm, config.security.digest_algorithms,
        counter=NonceCounter(config.limits.max_outstanding_nonces),
    )


def build_registrar(
    config: Config, reactor: Any, extensions: Any, store: Any = None
) -> Registrar:
    """The registrar and its location service (bindings kept in ``store``)."""
    reg = config.registrar
    location = LocationService(reactor, store=store, nat=reg.nat)
    return Registrar(
        location,
        reactor,
        min_expires=reg.min_expires,
        max_expires=reg.max_expires,
        default_expires=reg.default_expires,
        max_contacts=reg.max_contacts,
        extensions=extensions,
        server=config.pbx.user_agent,
    )


def build_sip_stack(
    config: Config,
    reactor: Any,
    *,
    bans: BanList,
    authenticator: Any = None,
    registrar: Any = None,
    request_handler: Any = None,
) -> SIPStack:
    """Transaction layer, controller and connection table, shared by every listener."""
    timers = config.sip.timers
    limits = config.limits
    transactions = TransactionLayer(reactor, t1=timers.t1, t2=timers.t2, t4=timers.t4)
    overload = OverloadGuard(reactor, max_loop_lag=limits.overload.max_loop_lag,
                             max_call_rate=limits.overload.max_call_rate,
                             retry_after=limits.overload.retry_after)
    controller = SIPController(
        transactions,
        reactor,
        config.pbx.realm,
        config.pbx.user_agent,
        registrar=registrar,
        request_handler=request_handler,
        authenticator=authenticator,
        bans=bans,
        max_transactions_per_source=limits.max_transactions_per_source,
        max_dialogs_per_source=limits.max_dialogs_per_source,
        overload=overload,
    )
    connections = ConnectionTable()
    udp: list[SIPDatagramProtocol] = []
    connector = Connector(connections, udp)
    limiter = ConnectionLimiter(limits.max_connections, limits.max_connections_per_source)
    return SIPStack(transactions, controller, connections, connector, bans, authenticator, udp,
                    limiter, overload)


class SIPStackService(Service):
    """Owns the SIP stack's lifetime: transactions are abandoned on shutdown."""

    def __init__(self, stack: SIPStack) -> None:
        self.stack = stack
        self.setName("sip")

    def startService(self) -> None:
        """Start the overload monitor (event-loop lag)."""
        super().startService()
        if self.stack.overload is not None:
            self.stack.overload.start()

    def stopService(self) -> None:
        """Stop every transaction timer and the overload monitor."""
        super().stopService()
        if self.stack.overload is not None:
            self.stack.overload.stop()
        self.stack.transactions.stop()
