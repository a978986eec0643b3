"""``${...}`` substitution in dialplan step arguments (pure).

Forms, as in Asterisk:

- ``${NAME}``: the variable's value, ``""`` if unset;
- ``${NAME:offset}``: from ``offset`` on (negative: counted from the end), so
  ``${EXTEN:1}`` drops the first digit and ``${EXTEN:-4}`` keeps the last four;
- ``${NAME:offset:length}``: ``length`` characters from ``offset``; a negative
  length drops that many characters from the end (``${EXTEN:0:-1}``).

Names are letters, digits and ``_``, optionally followed by one ``(...)`` as
in ``${CALLERID(num)}``. Substitution goes into strings inside lists and
mappings (keys are left alone); other values pass through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["check_template", "substitute", "substring"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?:\([A-Za-z0-9_]*\))?)(?::(-?\d+))?(?::(-?\d+))?\}")

Lookup = Callable[[str], "str | None"]


def substring(value: str, offset: int, length: int | None = None) -> str:
    """Asterisk's ``${VAR:offset:length}`` on ``value``."""
    if offset < 0:
        offset = max(0, len(value) + offset)
    rest = value[offset:]
    if length is None:
        return rest
    if length >= 0:
        return rest[:length]
    return rest[: max(0, len(rest) + length)]


# A template split once into literal text and references: (text, None, None, None) or
# (None, name, offset, length); the step arguments of a dialplan are a handful of strings.
_Piece = tuple[str | None, str | None, int | None, int | None]
_TEMPLATES: dict[str, tuple[_Piece, ...]] = {}


def _template(text: str) -> tuple[_Piece, ...]:
    pieces = _TEMPLATES.get(text)
    if pieces is not None:
        return pieces
    out: list[_Piece] = []
    at = 0
    for m in _VAR.finditer(text):
        if m.start() > at:
            out.append((text[at:m.start()], None, None, None))
        offset, length = m.group(2), m.group(3)
        out.append((None, m.group(1), None if offset is None else int(offset),
                    None if length is None else int(length)))
        at = m.end()
    if at < len(text):
        out.append((text[at:], None, None, None))
    pieces = tuple(out)
    if len(_TEMPLATES) < 1024:  # bounded: templates come from the configuration
        _TEMPLATES[text] = pieces
    return pieces


def _expand(text: str, lookup: Lookup) -> str:
    parts: list[str] = []
    for literal, name, offset, length in _template(text):
        if name is None:
            parts.append(literal or "")
            continue
        value = lookup(name)
        value = "" if value is None else str(value)
        parts.append(value if offset is None else substring(value, offset, length))
    return parts[0] if len(parts) == 1 else "".join(parts)


def substitute(value: Any, lookup: Lookup | Mapping[str, str]) -> Any:
    """``value`` with every ``${...}`` in its strings replaced through ``lookup``
    (a function returning a value or None, or a mapping)."""
    if isinstance(lookup, Mapping):
        lookup = lookup.get
    if isinstance(value, str):
        return _expand(value, lookup) if "${" in value else value
    if isinstance(value, list | tuple):
        return type(value)(substitute(item, lookup) for item in value)
    if isinstance(value, Mapping):
        return {key: substitute(item, lookup) for key, item in value.items()}
    return value


def check_template(value: Any) -> str | None:
    """The first malformed ``${`` reference in ``value`` (strings inside lists and
    mappings included), or None if all are well formed."""
    if isinstance(value, str):
        rest = _VAR.sub("", value)
        if "${" in rest:
            start = rest.index("${")
            return rest[start : start + 20]
        return None
    items = value.values() if isinstance(value, Mapping) else value
    if isinstance(value, list | tuple | Mapping):
        for item in items:
            bad = check_template(item)
            if bad is not None:
                return bad
    return None
