"""Dialplan match expressions: exact numbers, Asterisk patterns and ``re:`` regexes (pure).

A rule's ``match`` is one of:

- an exact number (``"1000"``, ``"*43"``, ``"alice"``): equal strings only;
- an Asterisk pattern, starting with ``_``: ``X`` is any digit 0-9, ``Z`` 1-9,
  ``N`` 2-9, ``[1-5]`` / ``[137]`` / ``[1-35]`` one digit of a set, ``.`` one or
  more characters of anything, ``!`` zero or more; any other character matches
  itself (``X``, ``Z``, ``N`` in either case), and ``-`` is ignored as in Asterisk
  (``_1-800-NXX-XXXX``);
- ``re:<regex>``: a Python regular expression that must match the whole number.

Precedence when several rules of a context match (:func:`sort_key`): an exact
match always wins; then Asterisk patterns, most specific first; then regexes in
file order. Specificity compares patterns position by position, left to right:
at the first position where they differ, the element matching fewer characters
wins (a literal matches 1, ``N`` 8, ``Z`` 9, ``X`` 10, ``[..]`` its size,
``.`` and ``!`` more than any, ``!`` last). So ``_12X`` beats ``_1XX`` beats
``_XXX`` and ``_1XXX`` beats ``_1.``. Equal patterns keep their file order.
This is Asterisk's ordering of ``ext_cmp`` in spirit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Pattern", "PatternError", "compile_match"]

_CLASSES = {"X": "0123456789", "Z": "123456789", "N": "23456789"}
_DOT_WEIGHT = 1000  # '.' one or more of anything
_BANG_WEIGHT = 1001  # '!' zero or more: the least specific element


class PatternError(ValueError):
    """A match expression that cannot be compiled; the message says why."""


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled match expression.

    ``kind`` is ``"exact"``, ``"pattern"`` or ``"regex"``; ``text`` is the
    expression as written; ``weights`` the per-position specificity of an
    Asterisk pattern (empty otherwise).
    """

    kind: str
    text: str
    regex: re.Pattern[str] | None = None
    weights: tuple[int, ...] = ()

    def matches(self, number: str) -> bool:
        """True if ``number`` matches."""
        if self.regex is None:
            return number == self.text
        return self.regex.fullmatch(number) is not None

    def sort_key(self) -> tuple[int, tuple[int, ...]]:
        """Smaller is preferred: exact, then patterns by specificity, then regexes.

        Python's sort is stable, so equal keys keep the rules' file order.
        """
        rank = {"exact": 0, "pattern": 1, "regex": 2}[self.kind]
        return (rank, self.weights)


def compile_match(text: str) -> Pattern:
    """Compile a rule's ``match`` text. Raises :class:`PatternError`."""
    if not text:
        raise PatternError("an empty match")
    if text.startswith("re:"):
        source = text[3:]
        if not source:
            raise PatternError("'re:' needs a regular expression after it")
        try:
            return Pattern("regex", text, re.compile(source))
        except re.error as exc:
            raise PatternError(f"bad regular expression {source!r}: {exc}") from None
    if text.startswith("_"):
        regex, weights = _asterisk(text)
        return Pattern("pattern", text, re.compile(regex, re.DOTALL), weights)
    if any(c.isspace() for c in text):
        raise PatternError(f"{text!r}: a number cannot contain spaces")
    return Pattern("exact", text)


def _asterisk(text: str) -> tuple[str, tuple[int, ...]]:
    body = text[1:]
    parts: list[str] = []
    weights: list[int] = []
    i = 0
    while i < len(body):
        c = body[i]
        upper = c.upper()
        if upper in _CLASSES:
            parts.append(f"[{_CLASSES[upper]}]")
            weights.append(len(_CLASSES[upper]))
        elif c == "[":
            end = body.find("]", i + 1)
            if end < 0:
                raise PatternError(f"{text!r}: '[' at position {i + 1} is not closed")
            chars = _char_set(body[i + 1 : end], text)
            parts.append("[" + re.escape("".join(sorted(chars))) + "]")
            weights.append(len(chars))
            i = end
        elif c == "]":
            raise PatternError(f"{text!r}: ']' at position {i + 1} without '['")
        elif c == ".":
            parts.append(".+")
            weights.append(_DOT_WEIGHT)
        elif c == "!":
            parts.append(".*")
            weights.append(_BANG_WEIGHT)
        elif c == "-":
            pass  # Asterisk ignores dashes: _1-800-NXX-XXXX
        elif c.isspace():
            raise PatternError(f"{text!r}: a pattern cannot contain spaces")
        else:
            parts.append(re.escape(c))
            weights.append(1)
        i += 1
    if not parts:
        raise PatternError(f"{text!r}: '_' starts a pattern but nothing follows it")
    return "".join(parts), tuple(weights)


def _char_set(inside: str, text: str) -> set[str]:
    """The characters of a ``[...]`` class: single characters and ``a-b`` ranges."""
    if not inside:
        raise PatternError(f"{text!r}: an empty '[]'")
    chars: set[str] = set()
    i = 0
    while i < len(inside):
        if i + 2 < len(inside) and inside[i + 1] == "-":
            low, high = inside[i], inside[i + 2]
            if low > high:
                raise PatternError(f"{text!r}: range '{low}-{high}' is backwards")
            chars.update(chr(c) for c in range(ord(low), ord(high) + 1))
            i += 3
        else:
            if inside[i] == "-" or inside[i] == "[":
                raise PatternError(f"{text!r}: unexpected {inside[i]!r} in '[{inside}]'")
            chars.add(inside[i])
            i += 1
    return chars
