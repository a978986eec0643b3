"""The compiled dialplan: contexts of ordered rules, and routing a number to a rule.

:meth:`Dialplan.compile` turns ``Config.dialplan`` (context -> rules) and the
discovered applications into an immutable :class:`Dialplan`, checking every
match expression, every application name, every ``${...}`` reference,
every include and each application's own ``check_args``; the first problem
raises :class:`pbxd.errors.ConfigError` naming the rule
(``dialplan.default[2].do[0]: unknown application 'dail'``). Compile at
startup and at reload: a reload that fails keeps the old dialplan.

:meth:`Dialplan.route` finds the rule for a number in a context: the
context's own rules first (exact match, then the most specific pattern, then
regexes: see :mod:`pbxd.dialplan.patterns`), then its includes in the order
they are written, depth first; a context is searched once per lookup, so
include cycles are harmless.

An include is a rule with an ``include`` attribute naming another context
(``- include: shared`` in YAML) and no match or steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pbxd.dialplan.patterns import Pattern, PatternError, compile_match
from pbxd.dialplan.variables import check_template
from pbxd.errors import ConfigError

__all__ = ["CompiledStep", "Dialplan", "Match"]


ROUTE_CACHE_SIZE = 4096
"""How many (context, number) answers :meth:`Dialplan.route` remembers at most."""


@dataclass(frozen=True, slots=True)
class CompiledStep:
    """One step bound to its application; ``key`` names it (``dialplan.default[0].do[1]``)."""

    app: str
    application: Any  # an IDialplanApplication provider
    args: Any
    key: str


@dataclass(frozen=True, slots=True)
class Match:
    """The rule a number routed to: where it is written and what to run."""

    context: str  # the context holding the rule (an included one, possibly)
    index: int  # its position in that context
    pattern: str  # its match expression as written
    steps: tuple[CompiledStep, ...]

    @property
    def key(self) -> str:
        """``dialplan.<context>[<index>]``."""
        return f"dialplan.{self.context}[{self.index}]"


@dataclass(frozen=True, slots=True)
class _Context:
    rules: tuple[tuple[Pattern, Match], ...]  # sorted by precedence
    includes: tuple[str, ...]


class Dialplan:
    """An immutable, checked dialplan. Build it with :meth:`compile`."""

    def __init__(self, contexts: Mapping[str, _Context]) -> None:
        self._contexts = MappingProxyType(dict(contexts))
        self._routes: dict[tuple[str, str], Match | None] = {}  # route()'s answers

    @property
    def contexts(self) -> tuple[str, ...]:
        """The context names."""
        return tuple(self._contexts)

    @classmethod
    def compile(cls, contexts: Mapping[str, Sequence[Any]],
                applications: Mapping[str, Any]) -> Dialplan:
        """Check and compile ``contexts`` (``Config.dialplan``) against ``applications``
        (name -> IDialplanApplication). Raises ConfigError naming the rule."""
        compiled: dict[str, _Context] = {}
        for name, rules in contexts.items():
            entries: list[tuple[Pattern, Match]] = []
            includes: list[str] = []
            for i, rule in enumerate(rules):
                key = f"dialplan.{name}[{i}]"
                include = getattr(rule, "include", None)
                if include:
                    if include not in contexts:
                        raise ConfigError(f"{key}.include", f"unknown context {include!r}")
                    includes.append(include)
                    continue
                try:
                    pattern = compile_match(rule.match)
                except PatternError as exc:
                    raise ConfigError(f"{key}.match", str(exc)) from None
                steps = tuple(_step(step, f"{key}.do[{j}]", applications)
                              for j, step in enumerate(rule.steps))
                entries.append((pattern, Match(name, i, rule.match, steps)))
            entries.sort(key=lambda entry: entry[0].sort_key())
            compiled[name] = _Context(tuple(entries), tuple(includes))
        return cls(compiled)

    def route(self, context: str, number: str) -> Match | None:
        """The rule ``number`` runs in ``context``, or None (a 404).

        Answers are remembered (the dialplan never changes; a call asks twice: the
        manager to answer 404 early, the runner to run it), in a table emptied when it
        holds :data:`ROUTE_CACHE_SIZE` numbers, so odd numbers cannot grow it."""
        key = (context, number)
        try:
            return self._routes[key]
        except KeyError:
            pass
        found = self._route(context, number, set())
        routes = self._routes
        if len(routes) >= ROUTE_CACHE_SIZE:
            routes.clear()
        routes[key] = found
        return found

    def _route(self, context: str, number: str, seen: set[str]) -> Match | None:
        ctx = self._contexts.get(context)
        if ctx is None or context in seen:
            return None
        seen.add(context)
        for pattern, match in ctx.rules:
            if pattern.matches(number):
                return match
        for included in ctx.includes:
            found = self._route(included, number, seen)
            if found is not None:
                return found
        return None


def _step(step: Any, key: str, applications: Mapping[str, Any]) -> CompiledStep:
    application = applications.get(step.app)
    if application is None:
        known = ", ".join(sorted(applications)) or "none"
        raise ConfigError(key, f"unknown application {step.app!r} (known: {known})")
    bad = check_template(step.args)
    if bad is not None:
        raise ConfigError(key, f"malformed variable reference {bad!r}"
                          " (expected ${NAME}, ${NAME:offset} or ${NAME:offset:length})")
    check = getattr(application, "check_args", None)
    if check is not None:
        try:
            check(step.args)
        except ValueError as exc:
            raise ConfigError(key, f"{step.app}: {exc}") from None
    return CompiledStep(step.app, application, step.args, key)
