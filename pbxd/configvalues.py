"""Checkers for single configuration values (layer 1, pure).

Each checker takes ``(value, key, ...)`` where ``key`` is the dotted key of the
value (``sip.listen[1]``) and returns the typed value or raises
:class:`pbxd.errors.ConfigError` naming that key. The file name is added by
:func:`pbxd.config.parse_config`.
"""

from __future__ import annotations

import difflib
import ipaddress
import keyword
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pbxd.configschema import IPNetwork, ListenSpec
from pbxd.errors import ConfigError

T = TypeVar("T")

TOKEN = re.compile(r"[A-Za-z0-9_.-]+")
HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def describe(value: object) -> str:
    """A short human description of a YAML value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


class Section:
    """A mapping of the file whose keys must all be known.

    ``None`` (an empty section such as ``voicemail:``) counts as ``{}``.
    Unknown keys raise at once, with a suggestion when one is close.
    """

    def __init__(self, value: object, key: str, allowed: Iterable[str]) -> None:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(key or "(top level)", f"expected a mapping, got {describe(value)}")
        self.key = key
        self.data: dict[Any, Any] = dict(value)
        allowed = list(allowed)
        for name in self.data:
            if not isinstance(name, str) or name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(self.sub(str(name)), f"unknown key{hint}")

    def sub(self, name: str) -> str:
        """The dotted key of ``name`` inside this section."""
        return f"{self.key}.{name}" if self.key else name

    def get(self, name: str, check: Callable[..., T], default: T, **kwargs: Any) -> T:
        """Check and return ``name``'s value, or ``default`` if the key is absent."""
        if name not in self.data:
            return default
        return check(self.data[name], self.sub(name), **kwargs)

    def require(self, name: str, check: Callable[..., T], **kwargs: Any) -> T:
        """Check and return ``name``'s value; its absence is an error."""
        if name not in self.data:
            raise ConfigError(self.sub(name), "missing key")
        return check(self.data[name], self.sub(name), **kwargs)


def string(value: object, key: str, *, pattern: re.Pattern[str] | None = None,
           what: str = "", choices: Iterable[str] = ()) -> str:
    """A non-empty string without control characters, optionally matching ``pattern``/``choices``."""
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {describe(value)}")
    if not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(key, "must be a non-empty string without control characters")
    choices = list(choices)
    if choices and value not in choices:
        raise ConfigError(key, f"{value!r} is not one of {', '.join(choices)}")
    if pattern is not None and not pattern.fullmatch(value):
        raise ConfigError(key, f"{value!r} is not {what or 'valid'}")
    return value


def optional(check: Callable[..., T]) -> Callable[..., T | None]:
    """Wrap ``check`` so that null is accepted (as None)."""

    def checker(value: object, key: str, **kwargs: Any) -> T | None:
        return None if value is None else check(value, key, **kwargs)

    return checker


def boolean(value: object, key: str) -> bool:
    """true or false."""
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {describe(value)}")
    return value


def integer(value: object, key: str, *, low: int | None = None, high: int | None = None) -> int:
    """An integer (not a boolean) within ``low``-``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"expected an integer, got {describe(value)}")
    _check_range(value, key, low, high)
    return value


def _check_range(value: float, key: str, low: float | None, high: float | None) -> None:
    if low is not None and high is not None and not low <= value <= high:
        raise ConfigError(key, f"{value:g} is out of range {low:g}-{high:g}")
    if low is not None and value < low:
        raise ConfigError(key, f"{value:g} is below the minimum {low:g}")
    if high is not None and value > high:
        raise ConfigError(key, f"{value:g} is above the maximum {high:g}")


def duration(value: object, key: str, *, positive: bool = True, whole: bool = False) -> float:
    """Seconds: a number or a string with a unit (``500ms``, ``30s``, ``5m``, ``1h``, ``1d``).

    ``positive`` forbids 0 (otherwise 0 is allowed, meaning "disabled");
    ``whole`` requires a whole number of seconds.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(key, f"expected a duration in seconds, got {describe(value)}")
    if isinstance(value, str):
        m = _DURATION.fullmatch(value)
        if not m:
            raise ConfigError(key, f"{value!r} is not a duration (e.g. 30, 2.5, 500ms, 5m, 1h)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        seconds = float(value)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ConfigError(key, f"{value!r} is not a finite duration")
    if seconds < 0 or (positive and seconds == 0):
        raise ConfigError(key, f"duration must be {'above' if positive else 'at least'} 0, got {value!r}")
    if whole and seconds != int(seconds):
        raise ConfigError(key, f"expected a whole number of seconds, got {value!r}")
    return seconds


def seconds(value: object, key: str, *, low: int = 0, high: int | None = None) -> int:
    """A whole number of seconds (an int, or a duration string) within ``low``-``high``."""
    result = int(duration(value, key, positive=False, whole=True))
    _check_range(result, key, low, high)
    return result


def port(value: object, key: str) -> int:
    """A TCP/UDP port 1-65535."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"expected a port number, got {describe(value)}")
    if not 1 <= value <= 65535:
        raise ConfigError(key, f"port {value} is out of range 1-65535")
    return value


def ip_address(value: object, key: str) -> str:
    """An IPv4 or IPv6 literal (no brackets), normalised."""
    text = string(value, key)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError(key, f"{text!r} is not an IPv4 or IPv6 address") from None


def host(value: object, key: str) -> str:
    """An IP literal or a DNS host name."""
    text = string(value, key)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        if HOSTNAME.fullmatch(text):
            return text
    raise ConfigError(key, f"{text!r} is not an IP address or host name")


def network(value: object, key: str) -> IPNetwork:
    """A CIDR (``10.0.0.0/8``, ``2001:db8::/32``) or a single address."""
    text = string(value, key)
    try:
        return ipaddress.ip_network(text)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(key, f"{text!r} is not a CIDR network ({exc})") from None
        raise ConfigError(key, f"{text!r} has host bits set; did you mean {loose}?") from None


def hex_digest(value: object, key: str, *, length: int) -> str:
    """``length`` hexadecimal digits, returned in lower case."""
    text = string(value, key)
    if len(text) != length or not re.fullmatch(r"[0-9A-Fa-f]+", text):
        raise ConfigError(key, f"expected {length} hexadecimal digits")
    return text.lower()


def dotted_name(value: object, key: str) -> str:
    """An importable dotted Python name (``acme.pbx_apps``)."""
    text = string(value, key)
    if not all(p.isidentifier() and not keyword.iskeyword(p) for p in text.split(".")):
        raise ConfigError(key, f"{text!r} is not an importable package name")
    return text


def path(value: object, key: str, *, base_dir: str) -> str:
    """A file-system path, made absolute relative to ``base_dir`` (``~`` expanded)."""
    text = string(value, key)
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(text)))


def directory(value: object, key: str, *, base_dir: str) -> str:
    """A path (resolved like :func:`path`) of a directory that exists."""
    full = path(value, key, base_dir=base_dir)
    if not os.path.isdir(full):
        raise ConfigError(key, f"no such directory: {full}")
    return full


def readable_file(value: object, key: str, *, base_dir: str) -> str:
    """A path (resolved like :func:`path`) of a file that can be opened for reading."""
    full = path(value, key, base_dir=base_dir)
    try:
        with open(full, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(key, f"cannot read {full}: {exc.strerror or exc}") from None
    return full


def items(value: object, key: str) -> list[Any]:
    """A YAML list (null counts as an empty list)."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise ConfigError(key, f"expected a list, got {describe(value)}")
    return list(value)


# --------------------------------------------------------------------------
# Endpoint strings
# --------------------------------------------------------------------------

# Positional argument names, in Twisted's order for tcp/ssl; our own forms for udp/tls.
_POSITIONAL = {
    "udp": ("port", "interface"),
    "tls": ("port", "interface"),
    "tcp": ("port", "interface", "backlog"),
    "tcp6": ("port", "interface", "backlog"),
    "ssl": ("port", "privateKey", "certKey", "sslmethod", "interface", "backlog",
            "extraCertChainFile", "dhParameters"),
}
_TRANSPORT = {"udp": "UDP", "tcp": "TCP", "tcp6": "TCP", "tls": "TLS", "ssl": "TLS"}
SIP_LISTEN_TYPES = ("udp", "tcp", "tcp6", "tls", "ssl")
STREAM_LISTEN_TYPES = ("tcp", "tcp6", "ssl")
_IPV6_HINT = re.compile(r"interface=[0-9A-Fa-f]*:[0-9A-Fa-f]*:")


def _split(text: str, sep: str, limit: int = -1) -> list[str]:
    """Split on ``sep`` where it is not escaped by a backslash (escapes are kept)."""
    parts, start, i = [], 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep and limit != 0:
            parts.append(text[start:i])
            start = i + 1
            limit -= 1
        i += 1
    parts.append(text[start:])
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def listen_spec(value: object, key: str, *, types: Iterable[str] = SIP_LISTEN_TYPES) -> ListenSpec:
    """Parse ``udp:PORT[:interface=ADDR]``, ``tls:...`` or a Twisted ``tcp:``/``ssl:`` string.

    IPv6 interfaces need their colons escaped, Twisted-style: ``interface=\\:\\:1``.
    """
    text = string(value, key)
    hint = " (escape the colons of an IPv6 interface: interface=\\:\\:1)" if _IPV6_HINT.search(text) else ""
    if (len(text) - len(text.rstrip("\\"))) % 2:
        raise ConfigError(key, f"{text!r} ends with a lone backslash")
    parts = _split(text, ":")
    kind = _unescape(parts[0]).strip().lower()
    types = list(types)
    if kind not in types:
        raise ConfigError(key, f"unknown listener type {kind!r} in {text!r} (expected one of {', '.join(types)})")
    names = _POSITIONAL[kind]
    given: dict[str, str] = {}
    positional = 0
    for raw in parts[1:]:
        name_value = _split(raw, "=", limit=1)
        if len(name_value) == 2:
            name, arg = _unescape(name_value[0]), _unescape(name_value[1])
            if name not in names:
                raise ConfigError(key, f"unknown option {name!r} for a {kind} listener in {text!r}{hint}")
        elif positional < len(names):
            name, arg = names[positional], _unescape(raw)
            positional += 1
        else:
            raise ConfigError(key, f"too many arguments in {text!r}{hint}")
        if name in given:
            raise ConfigError(key, f"{name} is given twice in {text!r}{hint}")
        given[name] = arg
    if "port" not in given:
        raise ConfigError(key, f"no port in {text!r} (expected {kind}:PORT)")
    try:
        number = int(given.pop("port"))
    except ValueError:
        raise ConfigError(key, f"port is not a number in {text!r}") from None
    if not 1 <= number <= 65535:
        raise ConfigError(key, f"port {number} is out of range 1-65535")
    interface = given.pop("interface", "")
    if interface:
        try:
            interface = str(ipaddress.ip_address(interface))
        except ValueError:
            raise ConfigError(key, f"interface {interface!r} is not an IP address{hint}") from None
    if "backlog" in given and not given["backlog"].isdigit():
        raise ConfigError(key, f"backlog {given['backlog']!r} is not a number")
    return ListenSpec(_TRANSPORT[kind], number, interface, text, tuple(given.items()))
