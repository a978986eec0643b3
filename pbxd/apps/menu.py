"""The ``menu`` application: an IVR level (prompt, one digit, a branch per digit)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.plugin import IPlugin
from zope.interface import implementer

from pbxd.apps.args import DTMF, parse_goto, seconds
from pbxd.apps.media import prompt_list
from pbxd.interfaces import Goto, IDialplanApplication

__all__ = ["Menu", "MenuOptions"]

_KEYS = {"prompt", "options", "timeout", "repeats", "invalid_prompt", "goodbye_prompt",
         "on_timeout", "on_invalid"}


@dataclass(frozen=True, slots=True)
class MenuOptions:
    """A parsed ``menu:`` step."""

    prompts: list[str]
    options: dict[str, Goto]
    timeout: float = 5.0
    repeats: int = 3
    invalid_prompt: str | None = "invalid"
    goodbye_prompt: str | None = "goodbye"
    on_timeout: Goto | None = None
    on_invalid: Goto | None = None

    @classmethod
    def parse(cls, args: Any) -> MenuOptions:
        """Check a ``menu:`` step's arguments; ValueError says what is wrong."""
        if not isinstance(args, Mapping):
            raise ValueError("expected a mapping with at least prompt and options")
        unknown = set(args) - _KEYS
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        raw = args.get("options")
        if not isinstance(raw, Mapping) or not raw:
            raise ValueError("'options' must map digits to goto targets")
        options = {}
        for digit, target in raw.items():
            digit = str(digit)
            if len(digit) != 1 or digit not in DTMF:
                raise ValueError(f"option {digit!r} is not one DTMF digit (0-9 * # A-D)")
            options[digit] = parse_goto(target)
        repeats = args.get("repeats", 3)
        if not isinstance(repeats, int) or isinstance(repeats, bool) or not 1 <= repeats <= 20:
            raise ValueError(f"repeats must be a whole number 1-20, got {repeats!r}")

        def optional_goto(key: str) -> Goto | None:
            return None if args.get(key) is None else parse_goto(args[key])

        return cls(
            prompts=prompt_list(args.get("prompt")),
            options=options,
            timeout=seconds(args.get("timeout"), "timeout", default=5.0),
            repeats=repeats,
            invalid_prompt=args.get("invalid_prompt", "invalid"),
            goodbye_prompt=args.get("goodbye_prompt", "goodbye"),
            on_timeout=optional_goto("on_timeout"),
            on_invalid=optional_goto("on_invalid"),
        )


@implementer(IPlugin, IDialplanApplication)
class Menu:
    """``menu: {prompt: ..., options: {1: sales,s, 2: 2000}, timeout: 5, repeats: 3}``.

    Answers, plays the prompt (a digit interrupts it) and waits ``timeout``
    seconds for one digit. A digit in ``options`` goes to its target and sets
    ``${MENU_DIGIT}``. Another digit plays ``invalid_prompt``; silence just
    repeats. After ``repeats`` tries it goes to ``on_timeout`` or ``on_invalid``
    (whichever happened last) if given, else plays ``goodbye_prompt`` and hangs
    up. Prompts set to null are not played.
    """

    name = "menu"

    def check_args(self, args: Any) -> None:
        MenuOptions.parse(args)

    def execute(self, call: Any, args: Any) -> Deferred[Goto | None]:
        return Deferred.fromCoroutine(self._run(call, MenuOptions.parse(args)))

    async def _run(self, call: Any, menu: MenuOptions) -> Goto | None:
        if not call.answered:
            await call.answer()
        last = "timeout"
        for _ in range(menu.repeats):
            digit = ""
            for prompt in menu.prompts:
                digit = await call.play(prompt, interrupt_digits=DTMF)
                if digit:
                    break
            if not digit:
                digit = await call.collect_digits(1, menu.timeout, terminators="")
            if not digit:
                last = "timeout"
                continue
            if digit in menu.options:
                call.variables["MENU_DIGIT"] = digit
                return menu.options[digit]
            last = "invalid"
            if menu.invalid_prompt:
                await call.play(menu.invalid_prompt)
        target = menu.on_timeout if last == "timeout" else menu.on_invalid
        if target is not None:
            return target
        if menu.goodbye_prompt:
            await call.play(menu.goodbye_prompt)
        await call.hangup("normal")
        return None
