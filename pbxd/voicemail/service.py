"""The voicemail service applications reach through ``call.service(IVoicemailService)`` (layer 4).

:class:`VoicemailService` puts together what a box is made of: the extension
it belongs to (``IExtensionStore``: it exists, and its ``voicemail_pin``), the
messages, greetings and changed PINs in the :class:`~pbxd.store.voicemail.VoicemailStore`,
and the parts that want to hear about new messages: message-waiting
(``subscribe``) and voicemail to email (``on_saved``). Wrong PINs go to
``failed_login(box, call_id)``, which the composition root connects to the
ban list with the caller's address.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from pbxd.interfaces import GREETING_KINDS, IVoicemailService
from pbxd.store.voicemail import VoicemailStore, check_box

__all__ = ["VoicemailService"]

Listener = Callable[[str, int, int], Any]
_PIN = re.compile(r"\d{4,12}")


@implementer(IVoicemailService)
class VoicemailService:
    """See the module docstring. ``config`` is ``config.voicemail`` (limits)."""

    log = Logger()

    def __init__(self, store: VoicemailStore, extensions: Any, config: Any, *,
                 failed_login: Callable[[str, str], Any] | None = None) -> None:
        self.store = store
        self.extensions = extensions
        self.max_message_seconds = float(config.max_message_seconds)
        self.min_message_seconds = float(config.min_message_seconds)
        self.silence_seconds = float(getattr(config, "silence_seconds", 5.0))
        self.max_messages = int(config.max_messages)
        self.failed_login = failed_login
        self._listeners: list[Listener] = []
        self.on_saved: list[Callable[[dict[str, Any]], Any]] = []
        """Called with each saved message (voicemail to email)."""

    # -- boxes ----------------------------------------------------------------

    def box_exists(self, box: str) -> Deferred:
        try:
            check_box(box)
        except ValueError:
            return succeed(False)
        return self.extensions.getExtension(box).addCallback(lambda ext: ext is not None)

    def _known(self, box: str) -> Deferred:
        """Fire with the Extension of ``box``; KeyError if there is none."""
        try:
            check_box(box)
        except ValueError as e:
            return fail(e)

        def found(ext: Any) -> Any:
            if ext is None:
                raise KeyError(f"no voicemail box {box!r}")
            return ext

        return self.extensions.getExtension(box).addCallback(found)

    def recording_path(self, box: str) -> str:
        return self.store.temp_path(box)

    def discard(self, path: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

    # -- messages -------------------------------------------------------------

    def save(self, box: str, caller: str, duration: float, temp_path: str,
             caller_name: str = "") -> Deferred:
        d = self._known(box)
        d.addCallback(lambda _: self.store.add_message(box, caller, duration, temp_path,
                                                       caller_name))

        def saved(message: dict[str, Any]) -> Deferred:
            self.log.info("voicemail {box}: message {id} from {caller} ({seconds:.1f} s) saved",
                          box=box, id=message["id"], caller=caller, seconds=duration)
            for hook in list(self.on_saved):
                try:
                    hook(message)
                except Exception:
                    self.log.failure("voicemail on_saved hook failed")
            return self._changed(box).addCallback(lambda _: message)

        return d.addCallback(saved)

    def counts(self, box: str) -> Deferred:
        return self._known(box).addCallback(lambda _: self.store.counts(box))

    def messages(self, box: str) -> Deferred:
        return self._known(box).addCallback(lambda _: self.store.messages(box))

    def mark_old(self, box: str, message_id: str) -> Deferred:
        d = self._known(box).addCallback(lambda _: self.store.set_folder(box, message_id, "old"))
        return d.addCallback(self._then_changed, box)

    def delete(self, box: str, message_id: str) -> Deferred:
        d = self._known(box).addCallback(lambda _: self.store.delete(box, message_id))
        return d.addCallback(self._then_changed, box)

    def _then_changed(self, changed: bool, box: str) -> Deferred:
        if not changed:
            return succeed(False)
        return self._changed(box).addCallback(lambda _: True)

    # -- greetings and PIN ----------------------------------------------------

    def greeting(self, box: str, kind: str) -> Deferred:
        if kind not in GREETING_KINDS:
            return fail(ValueError(f"greeting kind must be one of {GREETING_KINDS}"))
        return self._known(box).addCallback(lambda _: self.store.greeting_path(box, kind))

    def set_greeting(self, box: str, kind: str, temp_path: str) -> Deferred:
        if kind not in GREETING_KINDS:
            return fail(ValueError(f"greeting kind must be one of {GREETING_KINDS}"))
        return self._known(box).addCallback(
            lambda _: self.store.save_greeting(box, kind, temp_path))

    def check_pin(self, box: str, pin: str) -> Deferred:
        def compare(stored: str | None, ext: Any) -> bool:
            expected = stored if stored is not None else getattr(ext, "voicemail_pin", None)
            if not expected or not isinstance(pin, str):
                return False
            return hmac.compare_digest(expected.encode(), pin.encode())

        d = self._known(box)
        d.addCallback(lambda ext: self.store.pin(box).addCallback(compare, ext))
        return d

    def set_pin(self, box: str, pin: str) -> Deferred:
        if not isinstance(pin, str) or not _PIN.fullmatch(pin):
            return fail(ValueError("a PIN is 4 to 12 digits"))
        return self._known(box).addCallback(lambda _: self.store.set_pin(box, pin))

    def report_failed_login(self, box: str, call_id: str) -> None:
        self.log.warn("voicemail {box}: wrong PIN on call {call_id}", box=box, call_id=call_id)
        if self.failed_login is not None:
            try:
                self.failed_login(box, call_id)
            except Exception:
                self.log.failure("reporting a failed voicemail login")

    # -- message waiting ------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _changed(self, box: str) -> Deferred:
        def tell(counts: tuple[int, int]) -> None:
            for listener in list(self._listeners):
                try:
                    listener(box, *counts)
                except Exception:
                    self.log.failure("message-waiting listener failed for {box}", box=box)

        d = self.store.counts(box).addCallback(tell)
        d.addErrback(lambda f: self.log.failure("counting messages of {box}", f, box=box))
        return d
