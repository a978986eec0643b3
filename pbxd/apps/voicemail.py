"""The ``voicemail`` application: leave a message in a box (layer 5).

Written against :class:`~pbxd.interfaces.ICallContext` and
:class:`~pbxd.interfaces.IVoicemailService` only (``call.service(...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from pbxd.apps.args import has_variables, mapping
from pbxd.interfaces import IDialplanApplication, IVoicemailService

__all__ = ["Voicemail", "VoicemailOptions"]

GREETINGS = ("auto", "unavailable", "busy")
DEFAULT_GREETING = {"unavailable": "vm-unavailable", "busy": "vm-busy"}


@dataclass(frozen=True, slots=True)
class VoicemailOptions:
    """A parsed ``voicemail:`` step."""

    box: str
    greeting: str = "auto"
    beep: bool = True

    @classmethod
    def parse(cls, args: Any) -> VoicemailOptions:
        """Check the arguments; ValueError says what is wrong."""
        options = mapping(args, "voicemail", "box")
        unknown = set(options) - {"box", "greeting", "beep"}
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        box = options.get("box")
        if isinstance(box, int) and not isinstance(box, bool):
            box = str(box)
        if not isinstance(box, str) or not box:
            raise ValueError("'box' is required (e.g. box: \"${EXTEN}\")")
        greeting = options.get("greeting", "auto")
        if greeting not in GREETINGS and not has_variables(greeting):
            raise ValueError(f"greeting must be one of {', '.join(GREETINGS)}, got {greeting!r}")
        return cls(box, str(greeting), bool(options.get("beep", True)))


@implementer(IPlugin, IDialplanApplication)
class Voicemail:
    """``voicemail: {box: "${EXTEN}", greeting: unavailable|busy|auto}`` (or ``voicemail: 1000``).

    Answers, plays the box's own greeting (or the default prompt,
    ``vm-unavailable``/``vm-busy`` then ``leave-message``; ``auto`` picks busy
    when ``${DIALSTATUS}`` is BUSY; ``#`` skips it), a beep, and records until
    ``#``, silence or ``voicemail.max_message_seconds``. A message shorter than
    ``voicemail.min_message_seconds`` is discarded. The message is saved
    durably *before* the caller hears ``message-saved``; if the caller hangs up
    while speaking, what was recorded is saved all the same. Sets
    ``${VMSTATUS}``: SUCCESS (saved), USEREXIT (too short), FAILED (no such box,
    box full, store error). An unknown box ends the step without answering.
    """

    name = "voicemail"
    log = Logger()

    def check_args(self, args: Any) -> None:
        VoicemailOptions.parse(args)

    def execute(self, call: Any, args: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(self._run(call, VoicemailOptions.parse(args)))

    async def _run(self, call: Any, options: VoicemailOptions) -> None:
        vm = call.service(IVoicemailService)
        box = options.box
        call.variables["VMSTATUS"] = "FAILED"
        if not await vm.box_exists(box):
            self.log.info("call {call_id}: no voicemail box {box}", call_id=call.call_id, box=box)
            return
        if not call.answered:
            await call.answer()
        new, old = await vm.counts(box)
        if new + old >= vm.max_messages:
            self.log.warn("voicemail {box} is full ({n} messages)", box=box, n=new + old)
            await call.play("vm-mailbox-full")
            await call.hangup("normal")
            return
        await self._greeting(call, vm, box, options)
        if options.beep:
            await call.play("tone:beep")
        path = vm.recording_path(box)
        result = await call.record(path, max_seconds=vm.max_message_seconds,
                                   silence_seconds=vm.silence_seconds, stop_digits="#")
        seconds = float(result.get("seconds", 0.0))
        if seconds < vm.min_message_seconds:
            vm.discard(path)
            call.variables["VMSTATUS"] = "USEREXIT"
            self.log.info("voicemail {box}: {seconds:.1f} s message discarded (too short)",
                          box=box, seconds=seconds)
        else:
            await vm.save(box, call.caller, seconds, path, call.caller_name)
            call.variables["VMSTATUS"] = "SUCCESS"
            if call.hungup:
                return
            await call.play("message-saved")
        if not call.hungup:
            await call.play("goodbye")
            await call.hangup("normal")

    async def _greeting(self, call: Any, vm: Any, box: str, options: VoicemailOptions) -> None:
        kind = options.greeting
        if kind not in ("unavailable", "busy"):
            kind = "busy" if call.variables.get("DIALSTATUS") == "BUSY" else "unavailable"
        own = await vm.greeting(box, kind)
        prompts = [own] if own else [DEFAULT_GREETING[kind], "leave-message"]
        for prompt in prompts:
            if await call.play(prompt, interrupt_digits="#"):
                return
