"""Argument helpers shared by the built-in applications (pure).

Each raises ``ValueError`` with a message meant for the dialplan's author;
at startup the dialplan prefixes it with the rule's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pbxd.interfaces import Goto

__all__ = ["DTMF", "has_variables", "mapping", "parse_goto", "seconds", "targets"]

DTMF = "0123456789*#ABCD"


def has_variables(value: Any) -> bool:
    """True if ``value`` is a string with a ``${`` (it can only be checked when it runs)."""
    return isinstance(value, str) and "${" in value


def mapping(args: Any, app: str, main: str) -> dict[str, Any]:
    """``args`` as a dict: None is ``{}``, a scalar or list is ``{main: args}``."""
    if args is None:
        return {}
    if isinstance(args, Mapping):
        return dict(args)
    return {main: args}


def seconds(value: Any, what: str, *, default: float, low: float = 0.0) -> float:
    """A duration in seconds (a number, or a string of one) above ``low``."""
    if value is None:
        return default
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not result > low:
        raise ValueError(f"{what} must be above {low:g}, got {value!r}")
    return result


def parse_goto(value: Any) -> Goto:
    """A goto target: ``"number"``, ``"context,number"`` or ``{context: ..., number: ...}``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, Mapping):
        unknown = set(value) - {"context", "number"}
        if unknown or "number" not in value:
            raise ValueError(f"a goto target is {{context: ..., number: ...}}, got {dict(value)!r}")
        number, context = value["number"], value.get("context")
        return Goto(str(number), None if context is None else str(context))
    if isinstance(value, str) and value:
        parts = [p.strip() for p in value.split(",")]
        if len(parts) == 1 and parts[0]:
            return Goto(parts[0])
        if len(parts) == 2 and all(parts):
            return Goto(parts[1], parts[0])
    raise ValueError(f"a goto target is 'number' or 'context,number', got {value!r}")


def targets(value: Any) -> list[str]:
    """Dial targets: a string (``"1001"``, ``"1001&1002"``) or a list of them."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    items = value.split("&") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"'to' must be a number, 'a&b' or a list, got {value!r}")
    result = [str(item).strip() for item in items]
    if not result or not all(result):
        raise ValueError(f"'to' needs at least one target, got {value!r}")
    return result
