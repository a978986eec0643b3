"""The ``voicemail_main`` application: a box owner's menu, driven by digits (layer 5).

Menus (RFC 4733 digits; a digit pressed during a prompt acts at once)::

    PIN            digits then #; three wrong PINs hang up (each one is reported
                   as a failed login, counted for bans like a bad SIP password)
    main menu      1 listen to messages (new first, then old)
                   0 mailbox options
                   # or * goodbye
    while a message plays or after it
                   4 previous   5 repeat   6 next   7 delete   9 save (keep as old)
                   * back to the main menu
    options        1 record the unavailable greeting   2 record the busy greeting
                   5 change the PIN                    * back

A new message becomes old once it has been played to the end (or saved with 9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from pbxd.apps.args import DTMF, mapping, seconds
from pbxd.interfaces import IDialplanApplication, IVoicemailService

__all__ = ["VoicemailMain", "number_prompts", "read_number"]

MAX_PIN_TRIES = 3
MAX_IDLE = 3  # prompts in a row without an answer before hanging up
GREETING_SECONDS = 60.0


async def read_number(call: Any, prompt: str, timeout: float, max_digits: int = 12) -> str:
    """Play ``prompt`` (a digit interrupts it and counts as the first one) and collect
    digits up to ``#``."""
    first = str(await call.play(prompt, interrupt_digits=DTMF) or "")
    if first == "#":
        return ""
    rest = await call.collect_digits(max_digits - len(first), timeout, terminators="#")
    return first + str(rest)


def number_prompts(n: int) -> list[str]:
    """The digit prompts that say ``n`` (digit by digit: "one two" for 12)."""
    return [f"digit-{d}" for d in str(max(0, int(n)))]


@dataclass(frozen=True, slots=True)
class MainOptions:
    """A parsed ``voicemail_main:`` step."""

    box: str | None = None  # None: the caller's own number
    timeout: float = 5.0

    @classmethod
    def parse(cls, args: Any) -> MainOptions:
        options = mapping(args, "voicemail_main", "box")
        unknown = set(options) - {"box", "timeout"}
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        box = options.get("box")
        if isinstance(box, int) and not isinstance(box, bool):
            box = str(box)
        if box is not None and (not isinstance(box, str) or not box):
            raise ValueError(f"box must be a number, got {box!r}")
        return cls(box, seconds(options.get("timeout"), "timeout", default=5.0))


class _Session:
    """One logged-in caller working through their box."""

    def __init__(self, call: Any, vm: Any, box: str, timeout: float) -> None:
        self.call, self.vm, self.box, self.timeout = call, vm, box, timeout

    async def ask(self, prompts: list[str], digits: str = DTMF) -> str:
        """Play ``prompts`` (a digit stops them) and wait for one digit; "" on silence."""
        for prompt in prompts:
            digit = await self.call.play(prompt, interrupt_digits=digits)
            if digit:
                return str(digit)
        return str(await self.call.collect_digits(1, self.timeout, terminators=""))

    async def say_counts(self) -> None:
        new, old = await self.vm.counts(self.box)
        if new + old == 0:
            await self.call.play("vm-no-messages")
            return
        for prompt in ["vm-you-have", *number_prompts(new), "vm-new-and",
                       *number_prompts(old), "vm-old-messages"]:
            await self.call.play(prompt)

    async def main_menu(self) -> None:
        idle = 0
        while idle < MAX_IDLE:
            digit = await self.ask(["vm-main-menu"])
            if not digit:
                idle += 1
                continue
            idle = 0
            if digit == "1":
                await self.listen()
            elif digit == "0":
                await self.options()
            elif digit in "#*":
                return
            else:
                await self.call.play("invalid")

    async def listen(self) -> None:
        messages = await self.vm.messages(self.box)
        if not messages:
            await self.call.play("vm-no-messages")
            return
        index, idle = 0, 0
        play_it = True
        while 0 <= index < len(messages) and idle < MAX_IDLE:
            message = messages[index]
            digit = ""
            if play_it:
                digit = await self.play_message(index, message)
            play_it = True
            if not digit:
                digit = await self.ask(["vm-message-menu"])
            if not digit:
                idle += 1
                play_it = False
                continue
            idle = 0
            if digit == "4":
                index = max(0, index - 1)
            elif digit == "5":
                pass
            elif digit == "6":
                index += 1
            elif digit == "7":
                await self.vm.delete(self.box, message["id"])
                del messages[index]
                await self.call.play("vm-deleted")
            elif digit == "9":
                await self.vm.mark_old(self.box, message["id"])
                message["folder"] = "old"
                await self.call.play("message-saved")
                index += 1
            elif digit == "*":
                return
            else:
                await self.call.play("invalid")
                play_it = False
        if idle < MAX_IDLE:
            await self.call.play("vm-no-more")

    async def play_message(self, index: int, message: dict[str, Any]) -> str:
        """Say "message N" and play it; a digit interrupts (and is returned)."""
        for prompt in ["vm-message", *number_prompts(index + 1)]:
            digit = await self.call.play(prompt, interrupt_digits=DTMF)
            if digit:
                return str(digit)
        digit = await self.call.play(message["path"], interrupt_digits=DTMF)
        if not digit and message.get("folder") == "new":
            await self.vm.mark_old(self.box, message["id"])
            message["folder"] = "old"
        return str(digit or "")

    async def options(self) -> None:
        idle = 0
        while idle < MAX_IDLE:
            digit = await self.ask(["vm-options"])
            if not digit:
                idle += 1
                continue
            idle = 0
            if digit == "1":
                await self.record_greeting("unavailable")
            elif digit == "2":
                await self.record_greeting("busy")
            elif digit == "5":
                await self.change_pin()
            elif digit == "*":
                return
            else:
                await self.call.play("invalid")

    async def record_greeting(self, kind: str) -> None:
        call, vm = self.call, self.vm
        await call.play("vm-record-greeting")
        await call.play("tone:beep")
        path = vm.recording_path(self.box)
        result = await call.record(path, max_seconds=GREETING_SECONDS,
                                   silence_seconds=vm.silence_seconds, stop_digits="#")
        if float(result.get("seconds", 0.0)) < max(vm.min_message_seconds, 0.5):
            vm.discard(path)
            if not call.hungup:
                await call.play("invalid")
            return
        await vm.set_greeting(self.box, kind, path)
        if not call.hungup:
            await call.play("vm-greeting-saved")

    async def change_pin(self) -> None:
        call = self.call
        first = await read_number(call, "vm-new-password", self.timeout)
        second = await read_number(call, "vm-reenter-password", self.timeout)
        if not first or first != second:
            await call.play("invalid")
            return
        try:
            await self.vm.set_pin(self.box, first)
        except ValueError:
            await call.play("invalid")
            return
        await call.play("vm-password-changed")


@implementer(IPlugin, IDialplanApplication)
class VoicemailMain:
    """``voicemail_main`` / ``voicemail_main: {box: "${CALLERID(num)}", timeout: 5}``.

    The owner's menu (see the module docstring). ``box`` defaults to the
    caller's own number. Answers, asks for the PIN (the box's changed PIN, else
    the extension's ``voicemail_pin``; a box without either cannot be opened),
    says the new and old counts and runs the menus until the caller leaves or
    stays silent three times; then plays ``goodbye`` and hangs up. Sets
    ``${VMMAINSTATUS}``: LOGIN or FAILED.
    """

    name = "voicemail_main"
    log = Logger()

    def check_args(self, args: Any) -> None:
        MainOptions.parse(args)

    def execute(self, call: Any, args: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(self._run(call, MainOptions.parse(args)))

    async def _run(self, call: Any, options: MainOptions) -> None:
        vm = call.service(IVoicemailService)
        box = options.box or call.caller
        call.variables["VMMAINSTATUS"] = "FAILED"
        if not call.answered:
            await call.answer()
        if not await self._login(call, vm, box, options.timeout):
            await call.play("goodbye")
            await call.hangup("normal")
            return
        call.variables["VMMAINSTATUS"] = "LOGIN"
        session = _Session(call, vm, box, options.timeout)
        await session.say_counts()
        await session.main_menu()
        await call.play("goodbye")
        await call.hangup("normal")

    async def _login(self, call: Any, vm: Any, box: str, timeout: float) -> bool:
        exists = await vm.box_exists(box)
        for _ in range(MAX_PIN_TRIES):
            pin = await read_number(call, "vm-password", timeout)
            if exists and pin and await vm.check_pin(box, pin):
                self.log.info("voicemail {box}: login on call {call_id}", box=box,
                              call_id=call.call_id)
                return True
            vm.report_failed_login(box, call.call_id)
            await call.play("vm-incorrect")
        return False
