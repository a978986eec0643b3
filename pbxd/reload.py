"""Live configuration reload: ``POST /api/v1/reload`` and SIGHUP (layer 7).

:class:`Reloader` re-reads ``Config.source`` and hands the new
:class:`~pbxd.configschema.Config` to the parts that registered a hook::

    reloader.register("dialplan", apply, check=compile_it, sections=("dialplan",))

A reload runs in three steps and stops at the first error, so an invalid
file leaves the running configuration in force:

1. parse the file (:class:`~pbxd.errors.ConfigError` names the key);
2. every hook's ``check(new)`` (may raise ConfigError: a dialplan naming an
   unknown application, an unreadable certificate ...);
3. every hook's ``apply(new, old)``, in registration order. A hook that fails
   here is logged and reported in ``failed``; the others still run.

Calls and registrations in progress are never touched: hooks swap what the
*next* request sees (extension tables, ban thresholds, tokens, dialplan).
:class:`ListenerSet` owns the listener services and opens or closes only the
entries that changed. Sections no hook handles (``pbx``, ``store``,
``rtp.port_range`` ...) are reported in ``restart_required``.

:class:`ReloadService` turns SIGHUP into a reload while the server runs.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from pbxd.config import load_config
from pbxd.configschema import Config
from pbxd.listeners import build_tls, listener_service

log = Logger()

Apply = Callable[[Config, Config], Any]
Check = Callable[[Config], Any]


@dataclasses.dataclass
class _Hook:
    name: str
    apply: Apply
    check: Check | None
    sections: tuple[str, ...]


def _normalised(config: Config, live: set[str]) -> dict[str, Any]:
    """``config``'s sections with the live-reloaded parts blanked (to spot the rest)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        name = f.name
        if name == "source" or name in live:
            continue
        value = getattr(config, name)
        parts = {p.split(".", 1)[1] for p in live if p.startswith(name + ".")}
        if parts and dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.replace(value, **{p: None for p in parts})
        out[name] = value
    return out


class Reloader:
    """Re-reads the configuration file and applies it through registered hooks.

    :param config: the configuration in force (its ``source`` is re-read).
    :param load: ``path -> Config`` (raises ConfigError); :func:`load_config` by default.
    """

    def __init__(self, config: Config, *, load: Callable[[str], Config] = load_config) -> None:
        self.config = config
        self.load = load
        self._hooks: list[_Hook] = []
        self._running = False
        self.refusal: str | None = None  # set at shutdown: reloads are refused
        self.count = 0

    def register(self, name: str, apply: Apply, *, check: Check | None = None,
                 sections: Iterable[str] = ()) -> None:
        """Call ``apply(new, old)`` on every reload (after ``check(new)`` of every hook).

        ``sections`` names what the hook makes live (``"security"``,
        ``"sip.listen"``); changes elsewhere are reported as needing a restart.
        """
        self._hooks.append(_Hook(name, apply, check, tuple(sections)))

    @property
    def live_sections(self) -> set[str]:
        """Config sections (or ``section.field``) some hook reloads."""
        return {s for hook in self._hooks for s in hook.sections}

    def reload(self) -> Deferred:
        """Fire with a summary dict; fail with ConfigError (nothing changed) or
        RuntimeError (a reload cannot run now)."""
        return Deferred.fromCoroutine(self._reload())

    async def _reload(self) -> dict[str, Any]:
        if self.refusal is not None:
            raise RuntimeError(f"no reload: {self.refusal}")
        if self._running:
            raise RuntimeError("a reload is already running")
        source = self.config.source
        if not source or source.startswith("<"):
            raise RuntimeError("the configuration was not read from a file")
        self._running = True
        try:
            return await self._run(source)
        finally:
            self._running = False

    async def _run(self, source: str) -> dict[str, Any]:
        old = self.config
        try:
            new = self.load(source)
            for hook in self._hooks:
                if hook.check is not None:
                    await maybeDeferred(hook.check, new)
        except Exception as e:
            log.error("configuration reload refused: {error}", error=e)
            raise
        applied, failed, details = [], [], {}
        for hook in self._hooks:
            try:
                details[hook.name] = await maybeDeferred(hook.apply, new, old)
                applied.append(hook.name)
            except Exception:
                log.failure("reload of {part} failed", part=hook.name)
                failed.append(hook.name)
        self.config = new
        self.count += 1
        live = self.live_sections
        before, after = _normalised(old, live), _normalised(new, live)
        restart = sorted(name for name in after if before.get(name) != after[name])
        if restart:
            log.warn("configuration reload: {sections} change only after a restart",
                     sections=", ".join(restart))
        listeners = details.get("listeners") or {"added": [], "removed": []}
        log.info("configuration reloaded from {source}: {applied}", source=source,
                 applied=", ".join(applied))
        return {"source": source, "applied": applied, "failed": failed,
                "listeners": listeners, "restart_required": restart}


class ListenerSet:
    """The SIP listener services (one per ``sip.listen`` entry) and the admin listener.

    ``open(config)`` creates them under ``parent``; ``apply(new, old)`` (a
    reload hook) closes the entries that left the file and opens the new
    ones. TLS entries count as changed when ``sip.tls`` changed (they get a
    context from the new files); otherwise their certificate is re-read in
    place (:meth:`check`), so established connections keep theirs.
    """

    def __init__(self, parent: Any, stack: Any, reactor: Any, state_dir: str) -> None:
        self.parent = parent
        self.stack = stack
        self.reactor = reactor
        self.state_dir = state_dir
        self.tls: Any = None
        self.services: dict[Any, Any] = {}  # ListenSpec -> listener service
        self.admin: Any = None  # the HTTPListener
        self._pending_tls: Any = None
        self._tls_config: Any = None  # the sip.tls the current context was built from

    @staticmethod
    def _needs_tls(spec: Any) -> bool:
        return spec.transport == "TLS" and not spec.endpoint.startswith("ssl:")

    def open(self, config: Config) -> None:
        """Create a listener service for every ``sip.listen`` entry."""
        self._tls_config = config.sip.tls
        for spec in config.sip.listen:
            self._add(spec, config)

    def _add(self, spec: Any, config: Config, fatal: bool = True) -> None:
        if self._needs_tls(spec) and self.tls is None:
            self.tls = self.stack.tls = build_tls(config, self.state_dir)
        service = listener_service(spec, self.stack, self.reactor, config, self.tls)
        service.ready = getattr(self.parent, "ready", None)
        service.fatal = fatal
        service.setServiceParent(self.parent)
        self.services[spec] = service

    def set_admin(self, service: Any) -> None:
        """The admin API listener (re-opened when ``admin.listen`` changes)."""
        self.admin = service
        if service is not None:
            service.ready = getattr(self.parent, "ready", None)
            service.setServiceParent(self.parent)

    def check(self, new: Config) -> None:
        """Re-read the certificate files (a bad one raises ConfigError; the old stays)."""
        self._pending_tls = None
        if not any(self._needs_tls(s) for s in new.sip.listen):
            return
        if self.tls is None or new.sip.tls != self._tls_config:
            self._pending_tls = build_tls(new, self.state_dir)
        else:
            self.tls.reload_certificate()

    async def apply(self, new: Config, old: Config) -> dict[str, list[str]]:
        """Close the listeners whose entry left (or changed), open the new ones."""
        tls_changed = self._pending_tls is not None and self.tls is not None
        wanted = set(new.sip.listen)
        gone = [spec for spec in self.services
                if spec not in wanted or (tls_changed and self._needs_tls(spec))]
        for spec in gone:
            service = self.services.pop(spec)
            protocol = getattr(service, "protocol", None)
            if protocol in self.stack.udp:
                self.stack.udp.remove(protocol)
            await maybeDeferred(service.disownServiceParent)
            log.info("SIP listener {endpoint} closed (reload)", endpoint=spec.endpoint)
        if self._pending_tls is not None:
            self.tls = self.stack.tls = self._pending_tls
            self._pending_tls = None
        self._tls_config = new.sip.tls
        added = [spec for spec in new.sip.listen if spec not in self.services]
        for spec in added:
            self._add(spec, new, fatal=False)
        removed = [s.endpoint for s in gone]
        opened = [s.endpoint for s in added]
        if self.admin is not None and new.admin.listen and new.admin.listen != old.admin.listen:
            await self._move_admin(new.admin.listen)
            removed.append(f"admin {old.admin.listen}")
            opened.append(f"admin {new.admin.listen}")
        return {"added": opened, "removed": removed}

    async def _move_admin(self, description: str) -> None:
        from twisted.internet import endpoints

        old = self.admin
        await maybeDeferred(old.disownServiceParent)
        service = type(old)(self.reactor, description,
                           endpoints.serverFromString(self.reactor, description), old.site)
        service.fatal = False
        self.set_admin(service)


class ReloadService(Service):
    """Reloads on SIGHUP while running (only when ``signals`` is true: the real reactor)."""

    def __init__(self, reloader: Reloader, reactor: Any, *, signals: bool = True) -> None:
        self.reloader = reloader
        self.reactor = reactor
        self.signals = signals
        self._previous: Any = None
        self.setName("reload")

    def startService(self) -> None:
        """Install the SIGHUP handler."""
        super().startService()
        if self.signals and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGHUP, self._signalled)

    def stopService(self) -> Any:
        """Put the previous SIGHUP handler back."""
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
        return super().stopService()

    def _signalled(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.sighup)

    def sighup(self) -> Deferred:
        """Reload now (SIGHUP); errors are logged, never raised."""
        log.info("SIGHUP: reloading the configuration")
        d = self.reloader.reload()
        d.addErrback(lambda f: log.error("SIGHUP reload not applied: {error}", error=f.value))
        return d


def register_hooks(reloader: Reloader, *, stores: Any, bans: Any, stack: Any, site: Any,
                   calls: Any, listeners: ListenerSet, drainer: Any,
                   make_authenticator: Callable[[Config], Any]) -> None:
    """Register the reload hooks of the parts the composition root built."""

    def extensions(new: Config, old: Config) -> None:
        stores.extensions.config_store.replace(new.extensions)
        stores.extensions.set_contexts(new.dialplan.keys())

    def security(new: Config, old: Config) -> None:
        apply_security(new, bans, stack, make_authenticator)

    def call_settings(new: Config, old: Config) -> None:
        calls.deps.no_answer_timeout = new.calls.no_answer_timeout
        calls.rtp_timeout = new.rtp.timeout
        if drainer is not None:
            drainer.drain_time = new.calls.drain_time

    reloader.register("extensions", extensions, sections=("extensions",))
    reloader.register("security", security, sections=("security",))
    if site is not None:
        reloader.register("admin tokens", lambda new, old: site.replace_tokens(new.admin.tokens),
                          sections=("admin.tokens",))
        reloader.register("admin rate limit",
                          lambda new, old: site.replace_rate_limit(new.admin.rate_limit),
                          sections=("admin.rate_limit",))
    reloader.register("listeners", listeners.apply, check=listeners.check,
                      sections=("sip.listen", "sip.tls", "admin.listen"))
    reloader.register("calls", call_settings,
                      sections=("calls.no_answer_timeout", "calls.drain_time", "rtp.timeout"))


def apply_security(new: Config, bans: Any, stack: Any,
                   make_authenticator: Callable[[Config], Any]) -> None:
    """``security:`` live: ban thresholds, trusted networks, flood limit, digest settings."""
    from pbxd.sip.digest import canonical_algorithm

    s = new.security
    bans.max_failed_attempts = s.max_failed_attempts
    bans.failure_window = s.failure_window
    bans.ban_duration = s.ban_duration
    bans.trusted_networks = tuple(s.trusted_networks)
    bans.rate_limit_requests = s.rate_limit.requests or 0
    bans.rate_limit_window = s.rate_limit.window
    for ip, _, _ in bans.list():
        if bans.is_trusted(ip):
            bans.lift(ip)  # a newly trusted network is never banned
    auth = stack.authenticator
    if not s.require_authentication:
        stack.controller.authenticator = None
        return
    if auth is None:
        auth = stack.authenticator = make_authenticator(new)
    else:
        auth.algorithms = tuple(canonical_algorithm(a) for a in s.digest_algorithms)
        auth.nonces.lifetime = s.nonce_lifetime
    stack.controller.authenticator = auth


def register_dialplan(reloader: Reloader, seam: Any, compile_dialplan: Callable[[Config], Any]
                      ) -> None:
    """The dialplan hook: compile in the check step (a bad rule refuses the whole reload),
    then ``seam.replace(compiled)``: new calls use it, calls in progress keep theirs."""
    pending: dict[str, Any] = {}

    def check(new: Config) -> None:
        pending["dialplan"] = compile_dialplan(new)

    def apply(new: Config, old: Config) -> None:
        seam.replace(pending.pop("dialplan"))

    reloader.register("dialplan", apply, check=check, sections=("dialplan", "plugins"))
