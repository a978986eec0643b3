"""Composition of the media features: voicemail, message waiting, email, music on hold (layer 7).

:func:`install_features` is called by :func:`pbxd.service.make_service` once the
call manager and the SIP stack exist. It

- opens the :class:`~pbxd.store.voicemail.VoicemailStore` in
  ``state_dir/voicemail`` (its schema is migrated when the state service
  starts, before any call can reach it: the database runs one interaction at
  a time, in order);
- builds the :class:`~pbxd.voicemail.service.VoicemailService` and puts it in
  the call manager's service registry (``ICallContext.service``);
- connects wrong voicemail PINs to the ban list with the caller's address;
- builds the :class:`~pbxd.sip.mwi.MWIService` and routes SUBSCRIBE to it
  (:class:`SubscribeRouter` wraps the controller's request handler, so neither
  the controller nor the call manager knows about subscriptions);
- sends new messages by email when ``voicemail.smtp`` is set;
- gives the calls layer its hold hook (``CallDeps.hold``): music on hold from
  ``moh.folder`` (pbxd's own music when null) unless ``moh.enabled`` is false.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger
from zope.interface import implementer

from pbxd.configschema import Config
from pbxd.errors import ConfigError
from pbxd.interfaces import IRequestHandler, IVoicemailService
from pbxd.moh import DEFAULT_FOLDER
from pbxd.moh.hold import HoldMusic
from pbxd.sip.mwi import MWIService
from pbxd.store.voicemail import VoicemailStore
from pbxd.voicemail.service import VoicemailService

__all__ = ["Features", "SubscribeRouter", "install_features"]

log = Logger()


@implementer(IRequestHandler)
class SubscribeRouter:
    """The controller's request handler: SUBSCRIBEs for message-summary go to the MWI
    service, everything else (and every other attribute) to the call manager."""

    def __init__(self, mwi: MWIService, calls: Any) -> None:
        self.mwi = mwi
        self.calls = calls

    def requestReceived(self, request: Any, txn: Any) -> None:  # noqa: N802 (interface)
        if request.method == "SUBSCRIBE":
            self.mwi.requestReceived(request, txn)
        else:
            self.calls.requestReceived(request, txn)

    def ackReceived(self, request: Any, transport: Any, source: Any) -> None:  # noqa: N802
        self.calls.ackReceived(request, transport, source)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.calls, name)


class FeaturesService(Service):
    """Prepares the voicemail store at start; ends MWI subscriptions at stop."""

    def __init__(self, store: VoicemailStore, mwi: MWIService) -> None:
        self.store, self.mwi = store, mwi
        self.setName("features")

    def startService(self) -> None:
        super().startService()
        d = self.store.prepare()
        d.addCallback(lambda n: log.info("voicemail store ready ({n} message(s) recovered)", n=n))
        d.addErrback(lambda f: log.failure("cannot prepare the voicemail store", f))

    def stopService(self) -> None:
        super().stopService()
        self.mwi.stop()


@dataclass
class Features:
    """What :func:`install_features` built (the admin API and tests use them)."""

    store: VoicemailStore
    voicemail: VoicemailService
    mwi: MWIService
    service: FeaturesService
    moh: HoldMusic | None = None


def caller_address(calls: Any, call_id: str) -> str | None:
    """The IP the caller of ``call_id`` signals from (None when unknown)."""
    call = getattr(calls, "calls", {}).get(call_id)
    leg = getattr(call, "a", None)
    address = getattr(leg, "address", None)
    if address:
        return str(address[0])
    source = getattr(getattr(leg, "txn", None), "source", None)
    return str(source[0]) if source else None


def install_features(config: Config, reactor: Any, *, parent: Any, database: Any,
                     extensions: Any, bans: Any, location: Any, calls: Any, stack: Any,
                     state_dir: str) -> Features:
    """Build and connect voicemail and MWI (see the module docstring)."""
    store = VoicemailStore(database, os.path.join(state_dir, "voicemail"), reactor)

    def failed_login(box: str, call_id: str) -> None:
        ip = caller_address(calls, call_id)
        if ip is not None and bans is not None:
            bans.record_failure(ip, f"wrong voicemail PIN for box {box}")

    voicemail = VoicemailService(store, extensions, config.voicemail, failed_login=failed_login)
    sessions = getattr(calls, "sessions", None)
    if sessions is not None:
        sessions.services[IVoicemailService] = voicemail
    mwi = MWIService(calls.deps.ua, reactor, store.counts, config.pbx.realm, location=location,
                     unsolicited=config.voicemail.unsolicited_mwi,
                     min_expires=config.registrar.min_expires)
    voicemail.subscribe(mwi.counts_changed)
    controller = stack.controller
    controller.request_handler = SubscribeRouter(mwi, calls)
    if "SUBSCRIBE" not in controller.allowed_methods:
        controller.allowed_methods = (*controller.allowed_methods, "SUBSCRIBE")
    if config.voicemail.smtp is not None:
        from pbxd.voicemail.email import EmailSender

        sender = EmailSender(config.voicemail.smtp, config.voicemail.email, reactor)
        voicemail.on_saved.append(sender.message_saved)
    moh = None
    if config.moh.enabled:
        try:
            moh = HoldMusic(reactor, config.moh.folder or DEFAULT_FOLDER,
                            shuffle=config.moh.shuffle)
        except (OSError, ValueError) as e:
            raise ConfigError("moh.folder", str(e), config.source) from None
        calls.deps.hold = moh.hold_changed
    service = FeaturesService(store, mwi)
    service.setServiceParent(parent)
    return Features(store, voicemail, mwi, service, moh)
