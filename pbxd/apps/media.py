"""The media applications: playback and echo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from pbxd.interfaces import IDialplanApplication

__all__ = ["Echo", "Playback", "prompt_list"]


def prompt_list(value: Any) -> list[str]:
    """One prompt or a list of them (names, WAV paths or ``tone:...``)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError(f"expected a prompt or a list of prompts, got {value!r}")
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(f"a prompt is a name or a WAV file path, got {item!r}")
    return list(items)


@implementer(IPlugin, IDialplanApplication)
class Playback:
    """``playback: goodbye`` / ``playback: [please-hold, /srv/moh.wav]`` /
    ``playback: {prompts: [...], answer: false}``.

    Plays the prompts one after the other (answering first unless
    ``answer: false``, which plays them as early media). A prompt that cannot
    be played is logged and skipped; ``${PLAYBACKSTATUS}`` is then ``FAILED``,
    otherwise ``SUCCESS``.
    """

    name = "playback"
    log = Logger()

    def _parse(self, args: Any) -> tuple[list[str], bool]:
        if isinstance(args, Mapping):
            unknown = set(args) - {"prompts", "answer"}
            if unknown:
                raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
            return prompt_list(args.get("prompts")), bool(args.get("answer", True))
        return prompt_list(args), True

    def check_args(self, args: Any) -> None:
        self._parse(args)

    def execute(self, call: Any, args: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(self._run(call, *self._parse(args)))

    async def _run(self, call: Any, prompts: list[str], answer: bool) -> None:
        if answer and not call.answered:
            await call.answer()
        status = "SUCCESS"
        for prompt in prompts:
            try:
                await call.play(prompt)
            except (FileNotFoundError, ValueError) as exc:
                self.log.warn("Cannot play {prompt} on call {call_id}: {error}",
                              prompt=prompt, call_id=call.call_id, error=exc)
                status = "FAILED"
        call.variables["PLAYBACKSTATUS"] = status


@implementer(IPlugin, IDialplanApplication)
class Echo:
    """``echo``: the caller hears their own audio until they hang up (answers first)."""

    name = "echo"

    def execute(self, call: Any, args: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(self._run(call))

    async def _run(self, call: Any) -> None:
        if not call.answered:
            await call.answer()
        await call.echo()
