"""The call context dialplan applications see: ICallContext over a Session (layer 4).

:class:`CallContext` is the plugin API made real. It never hands out SIP or
RTP objects; everything goes through the :class:`~pbxd.calls.session.Session`
of the call. What it adds:

- one type-ahead buffer of digits (RFC 4733 events and SIP INFO alike, in the
  order pressed), consumed by ``play(..., interrupt_digits)``,
  ``collect_digits`` and ``record(stop_digits=...)``;
- prompt names (:func:`pbxd.prompts.resolve_prompt`), WAV paths and
  ``tone:ringback|busy|beep|silence`` turned into audio sources;
- the hangup rules of the interface: pending operations fail with
  :class:`~pbxd.interfaces.CallHungUp`, new ones at once (``dial`` gives
  ``CANCEL``, ``echo`` and ``record`` finish normally);
- ``dial`` targets resolved by the manager (extension numbers through the
  location service, ``sip:`` URIs as they are); ``transfer`` is a new dial
  whose answer hands the caller over; ``service`` looks up the registry the
  composition root filled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from pbxd import debuglog
from pbxd.calls.session import Session
from pbxd.interfaces import HANGUP_CAUSES, CallHungUp, ICallContext
from pbxd.prompts import is_tone, resolve_prompt
from pbxd.rtp import tones
from pbxd.rtp.echo import Echo
from pbxd.rtp.recorder import Recorder
from pbxd.rtp.sources import SampleSource, ToneSource

__all__ = ["CallContext", "audio_for"]

MAX_BUFFERED_DIGITS = 64


def audio_for(prompt: str, search_dirs: Sequence[str] = ()) -> Any:
    """The source or WAV path for a prompt name, a WAV path or ``tone:<name>``.

    Raises FileNotFoundError / ValueError like :func:`pbxd.prompts.resolve_prompt`."""
    if is_tone(prompt):
        name = prompt[5:]
        if name == "silence":
            return SampleSource(tones.silence(1.0), name=prompt)
        if name == "beep":
            return ToneSource("beep")
        tone = ToneSource(name)
        return ToneSource(name, seconds=len(tone.period) / 8000)
    if prompt.startswith("tone:"):
        raise ValueError(f"unknown tone {prompt!r}")
    return resolve_prompt(prompt, search_dirs)


@implementer(ICallContext)
class CallContext:
    """The caller's side of one call for the dialplan (see :class:`ICallContext`)."""

    log = Logger()

    def __init__(self, session: Session, *, context: str = "default",
                 resolve: Callable[[Sequence[str]], list[Any]] | None = None,
                 services: Mapping[Any, Any] | None = None,
                 prompt_dirs: Sequence[str] = (), transfer_timeout: float = 30.0) -> None:
        self.session = session
        self.call_id = session.id
        self.exten = session.destination
        self.caller = session.caller
        self.caller_name = session.caller_name or ""
        self.context = context
        self.variables: dict[str, str] = {}
        self.clock = session.deps.clock
        self.prompt_dirs = tuple(prompt_dirs)
        self.transfer_timeout = transfer_timeout
        self._resolve = resolve or (lambda targets: [])
        self._services = dict(services or {})
        self._digits: deque[str] = deque(maxlen=MAX_BUFFERED_DIGITS)
        self._listener: Callable[[], None] | None = None
        self._watchers: list[Deferred[str]] = []
        self._handed_over = False
        session.on_digit = self._digit_in
        session.on_end.append(self._ended)

    # -- state -------------------------------------------------------------------

    @property
    def answered(self) -> bool:
        return self.session.answered

    @property
    def hungup(self) -> bool:
        return self.session.ended or self._handed_over

    @property
    def hangup_cause(self) -> str | None:
        if self._handed_over:
            return "normal"
        return self.session.hangup_cause if self.session.ended else None

    def _gone(self) -> Deferred[Any]:
        return fail(CallHungUp(self.hangup_cause or "normal"))

    def _ended(self, cause: str) -> None:
        watchers, self._watchers = self._watchers, []
        for d in watchers:
            d.callback(cause if not self._handed_over else "normal")
        listener, self._listener = self._listener, None
        if listener is not None:
            listener()

    # -- digits ------------------------------------------------------------------

    def _digit_in(self, digit: str) -> None:
        self._digits.append(digit)
        if self._listener is not None:
            self._listener()

    def _take(self, wanted: str) -> str:
        """Remove and return the first buffered digit among ``wanted`` ("" if none)."""
        for digit in self._digits:
            if digit in wanted:
                self._digits.remove(digit)
                return digit
        return ""

    # -- ICallContext ----------------------------------------------------------------

    def answer(self) -> Deferred[None]:
        if self.hungup:
            return self._gone()
        self.session.answer()
        return succeed(None)

    def hangup(self, cause: str = "normal") -> Deferred[None]:
        if cause not in HANGUP_CAUSES:
            return fail(ValueError(f"unknown hangup cause {cause!r}"))
        if not self.session.ended:
            self.session.end(cause, "pbx", a_status=HANGUP_CAUSES[cause])
        return succeed(None)

    def when_hungup(self) -> Deferred[str]:
        if self.hungup:
            return succeed(self.hangup_cause or "normal")
        d: Deferred[str] = Deferred()
        self._watchers.append(d)
        return d

    def play(self, prompt: str, interrupt_digits: str = "") -> Deferred[str]:
        if self.hungup:
            return self._gone()
        try:
            audio = audio_for(prompt, self.prompt_dirs)
        except (FileNotFoundError, ValueError) as exc:
            return fail(exc)
        if interrupt_digits:
            digit = self._take(interrupt_digits)
            if digit:
                return succeed(digit)
        try:
            played = self.session.play(audio)
        except (OSError, ValueError) as exc:
            return fail(exc)
        result: Deferred[str] = Deferred()

        def finished(_: Any) -> None:
            if self._listener is on_digit:
                self._listener = None
            if result.called:
                return
            if self.hungup:
                result.errback(CallHungUp(self.hangup_cause or "normal"))
            else:
                result.callback("")

        def on_digit() -> None:
            if self.hungup:
                finished(None)
                return
            digit = self._take(interrupt_digits)
            if digit and not result.called:
                self._listener = None
                result.callback(digit)
                played.cancel()

        if interrupt_digits:
            self._listener = on_digit
        played.addBoth(finished)
        return result

    def collect_digits(self, max_digits: int = 1, timeout: float = 5.0,
                       terminators: str = "#", first_timeout: float | None = None
                       ) -> Deferred[str]:
        if self.hungup:
            return self._gone()
        result: Deferred[str] = Deferred()
        got: list[str] = []
        timer: list[Any] = [None]

        def finish() -> None:
            if timer[0] is not None and timer[0].active():
                timer[0].cancel()
            if self._listener is feed:
                self._listener = None
            if not result.called:
                result.callback("".join(got))

        def arm() -> None:
            if timer[0] is not None and timer[0].active():
                timer[0].cancel()
            delay = first_timeout if not got and first_timeout is not None else timeout
            timer[0] = self.clock.callLater(delay, finish)

        def feed() -> None:
            if self.hungup:
                if timer[0] is not None and timer[0].active():
                    timer[0].cancel()
                self._listener = None
                if not result.called:
                    result.errback(CallHungUp(self.hangup_cause or "normal"))
                return
            while self._digits and not result.called:
                digit = self._digits.popleft()
                if digit in terminators:
                    finish()
                    return
                got.append(digit)
                if len(got) >= max_digits:
                    finish()
                    return
                arm()

        feed()
        if not result.called:
            self._listener = feed
            arm()
        return result

    def record(self, path: str, max_seconds: float = 60.0, silence_seconds: float = 0.0,
               stop_digits: str = "#") -> Deferred[dict[str, Any]]:
        if self.hungup:
            return self._gone()
        session = self.session
        outcome = {"digit": ""}
        try:
            recorder = Recorder(self.clock, path, max_seconds=max_seconds,
                                silence_seconds=silence_seconds or None)
        except OSError as exc:
            return fail(exc)
        media = session.media
        media.listeners.append(recorder.feed_a)

        def on_event() -> None:
            if self.hungup:
                recorder.stop("hangup")
                return
            digit = self._take(stop_digits) if stop_digits else ""
            if digit:
                outcome["digit"] = digit
                recorder.stop("digit")

        def done(recording: Any) -> dict[str, Any]:
            if self._listener is on_event:
                self._listener = None
            if recorder.feed_a in media.listeners:
                media.listeners.remove(recorder.feed_a)
            return {"path": recording.path, "seconds": recording.seconds,
                    "reason": recording.reason, "digit": outcome["digit"]}

        self._listener = on_event
        on_event()
        return recorder.stopped.addCallback(done)

    def echo(self) -> Deferred[None]:
        if self.hungup:
            return succeed(None)
        self.session.stop_playing()
        echo = Echo(self.session.media)
        echo.start()

        def stop(_: Any) -> None:
            echo.stop()

        return self.when_hungup().addCallback(stop)

    def dial(self, targets: Sequence[str], timeout: float = 30.0) -> Deferred[str]:
        if self.hungup:
            return succeed("CANCEL")
        if isinstance(targets, str):
            targets = [targets]
        resolved = self._resolve(list(targets))
        if debuglog.ENABLED:
            self.log.debug("call {call}: dial {targets} ({forks} contact(s), {timeout}s)",
                           call=self.call_id, targets=",".join(targets), forks=len(resolved),
                           timeout=timeout)
        d = self.session.dial(resolved, timeout)

        def status(value: str) -> str:
            self.variables["DIALSTATUS"] = value
            return value

        return d.addCallback(status)

    def bridge(self, other: Any) -> Deferred[None]:
        if self.hungup:
            return self._gone()
        theirs = getattr(other, "session", None)
        if not isinstance(theirs, Session) or theirs.ended or not theirs.answered:
            return fail(ValueError("bridge needs another answered call of this PBX"))
        self.session.answer()
        self.session.bridge_with(theirs)
        done: Deferred[None] = Deferred()

        def ended(_: str) -> None:
            self.session.unbridge_peer()
            if not done.called:
                done.callback(None)

        theirs.on_end.append(ended)
        self.session.on_end.append(ended)
        return done

    def transfer(self, target: str) -> Deferred[bool]:
        if self.hungup:
            return self._gone()
        resolved = self._resolve([target])
        if not resolved:
            return succeed(False)
        result: Deferred[bool] = Deferred()

        def answered() -> None:
            self.log.info("call {call}: handed over to {target}", call=self.call_id,
                          target=target)
            self._handed_over = True
            self._ended("normal")
            if not result.called:
                result.callback(True)

        def over(status: str) -> None:
            if self._handed_over:
                self.session.end("normal", "callee")
            elif not result.called:
                if self.session.ended:
                    result.errback(CallHungUp(self.hangup_cause or "normal"))
                else:
                    result.callback(False)

        self.session.dial(resolved, self.transfer_timeout, on_answer=answered).addCallback(over)
        return result

    def service(self, interface: Any) -> Any:
        try:
            return self._services[interface]
        except KeyError:
            name = getattr(interface, "__identifier__", None) or repr(interface)
            raise LookupError(f"no provider of {name} is configured on this server") from None
