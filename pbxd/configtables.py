"""The configuration's tables: extensions, dialplan contexts, admin tokens (layer 1, pure).

Helpers of :mod:`pbxd.config`; each function takes the YAML value and its
dotted key and returns frozen objects of :mod:`pbxd.configschema`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pbxd import configvalues as v
from pbxd.configschema import (
    AdminConfig,
    AdminToken,
    Extension,
    LimitsConfig,
    OverloadConfig,
    RateLimit,
    Rule,
    Step,
)
from pbxd.errors import ConfigError

NAME = re.compile(r"[A-Za-z0-9_.-]+")
_APP = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_PIN = re.compile(r"[0-9]+")
_EXTENSION_KEYS = ("name", "password", "ha1", "ha1_sha256", "context", "max_contacts", "voicemail_pin",
                   "record")


def _name(value: Any, key: str, what: str) -> str:
    """A mapping key that names something: a token; YAML integers (1000) become strings."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ConfigError(f"{key}.{value}", f"{value!r} is not a valid {what} (letters, digits, _ . -)")
    return value


def extensions(value: Any, key: str, *, dialplan: Mapping[str, Any],
               algorithms: tuple[str, ...]) -> Mapping[str, Extension]:
    """``extensions:`` number -> Extension, checked against the dialplan's contexts and
    the digest algorithms offered (an extension must be able to authenticate)."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping of numbers to extensions, got {v.describe(value)}")
    result: dict[str, Extension] = {}
    for raw_number, body in value.items():
        number = _name(raw_number, key, "extension number")
        if number in result:
            raise ConfigError(f"{key}.{number}", "duplicate extension (given as a number and a string?)")
        result[number] = ext = _extension(number, body, f"{key}.{number}")
        if ext.context not in dialplan:
            raise ConfigError(f"{key}.{number}.context", f"unknown dialplan context {ext.context!r}")
        usable = (ext.password is not None or (ext.ha1 is not None and "MD5" in algorithms)
                  or (ext.ha1_sha256 is not None and "SHA-256" in algorithms))
        if not usable:
            raise ConfigError(f"{key}.{number}", "its ha1 does not match any of"
                              f" security.digest_algorithms ({', '.join(algorithms)})")
    return MappingProxyType(result)


def _extension(number: str, body: Any, key: str) -> Extension:
    s = v.Section(body, key, _EXTENSION_KEYS)

    def pin(item: Any, pin_key: str) -> str:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            item = str(item)
        return v.string(item, pin_key, pattern=_PIN, what="a PIN of digits")

    ext = Extension(
        number=number,
        name=s.get("name", v.string, number),
        password=s.get("password", v.string, None),
        ha1=s.get("ha1", v.hex_digest, None, length=32),
        ha1_sha256=s.get("ha1_sha256", v.hex_digest, None, length=64),
        context=s.get("context", v.string, "default", pattern=NAME, what="a context name"),
        max_contacts=s.get("max_contacts", v.optional(v.integer), None, low=1, high=1000),
        voicemail_pin=s.get("voicemail_pin", v.optional(pin), None),
        record=s.get("record", v.boolean, False),
    )
    if ext.password is None and ext.ha1 is None and ext.ha1_sha256 is None:
        raise ConfigError(key, "needs a credential: password, ha1 or ha1_sha256")
    return ext


def dialplan(value: Any, key: str) -> Mapping[str, tuple[Rule, ...]]:
    """``dialplan:`` context -> rules. Only the structure is checked here; application
    names and patterns are checked by the dialplan engine."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping of contexts to rules, got {v.describe(value)}")
    contexts: dict[str, tuple[Rule, ...]] = {}
    for raw_name, rules in value.items():
        name = _name(raw_name, key, "context name")
        ctx_key = f"{key}.{name}"
        parsed: list[Rule] = []
        where: dict[str, int] = {}
        for i, rule in enumerate(v.items(rules, ctx_key)):
            parsed.append(_rule(rule, f"{ctx_key}[{i}]"))
            if parsed[-1].include is not None:
                continue
            match = parsed[-1].match
            if match in where:
                raise ConfigError(f"{ctx_key}[{i}].match", f"duplicate match {match!r}"
                                  f" (already in {ctx_key}[{where[match]}])")
            where[match] = i
        contexts[name] = tuple(parsed)
    return MappingProxyType(contexts)


def _rule(value: Any, key: str) -> Rule:
    if isinstance(value, Mapping) and "include" in value:
        inc = v.Section(value, key, ("include",))
        return Rule(match="", steps=(), include=_name(inc.data["include"], key + ".include",
                                                       "context name"))
    s = v.Section(value, key, ("match", "do"))

    def match(item: Any, match_key: str) -> str:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        return v.string(item, match_key)

    steps = [_step(step, f"{key}.do[{i}]") for i, step in enumerate(s.require("do", v.items))]
    if not steps:
        raise ConfigError(s.sub("do"), "a rule needs at least one step")
    return Rule(match=s.require("match", match), steps=tuple(steps))


def _step(value: Any, key: str) -> Step:
    if isinstance(value, str):
        return Step(v.string(value, key, pattern=_APP, what="an application name"))
    if isinstance(value, Mapping) and len(value) == 1:
        ((app, args),) = value.items()
        return Step(v.string(app, key, pattern=_APP, what="an application name"), args)
    raise ConfigError(key, "a step is an application name or a one-key mapping {app: args},"
                      f" got {v.describe(value)}")


def admin(value: Any) -> AdminConfig:
    """``admin:`` the API listener (a tcp:/tcp6:/ssl: endpoint or null), its tokens
    and its per-source request rate limit."""
    s, d = v.Section(value, "admin", ("listen", "tokens", "rate_limit")), AdminConfig()

    def listen(item: Any, key: str) -> str:
        return v.listen_spec(item, key, types=v.STREAM_LISTEN_TYPES).endpoint

    tokens: list[AdminToken] = []
    for i, item in enumerate(v.items(s.data.get("tokens"), "admin.tokens")):
        key = f"admin.tokens[{i}]"
        t = v.Section(item, key, ("name", "token", "sha256"))
        name = t.require("name", v.string, pattern=NAME, what="a token name")
        if ("token" in t.data) == ("sha256" in t.data):
            raise ConfigError(key, "give exactly one of token or sha256")
        if "token" in t.data:
            secret = t.require("token", v.string)
            if len(secret) < 16:
                raise ConfigError(t.sub("token"), "a token must be at least 16 characters")
            digest = hashlib.sha256(secret.encode()).hexdigest()
        else:
            digest = t.require("sha256", v.hex_digest, length=64)
        for other in tokens:
            if other.name == name or other.sha256 == digest:
                raise ConfigError(key, f"duplicate token (same name or secret as {other.name!r})")
        tokens.append(AdminToken(name, digest))
    limit = v.Section(s.data.get("rate_limit"), "admin.rate_limit", ("requests", "window"))
    rate_limit = RateLimit(
        requests=limit.get("requests", v.integer, d.rate_limit.requests, low=0),
        window=limit.get("window", v.duration, d.rate_limit.window),
    )
    return AdminConfig(listen=s.get("listen", v.optional(listen), d.listen), tokens=tuple(tokens),
                       rate_limit=rate_limit)


_LIMIT_KEYS = (
    "max_message_size", "max_headers", "max_header_length", "max_connections",
    "max_connections_per_source", "idle_timeout", "incomplete_timeout",
    "max_transactions_per_source", "max_dialogs_per_source", "max_outstanding_nonces", "overload",
)
#: largest accepted max_message_size: 16 MiB (a stream message is buffered whole)
MAX_MESSAGE_CEILING = 16 * 1024 * 1024


def limits(value: Any, legacy_message_size: int | None = None) -> LimitsConfig:
    """``limits:`` resource limits; ``legacy_message_size`` is ``sip.max_message_size``
    when the file sets it (the old spelling, still honoured)."""
    s, d = v.Section(value, "limits", _LIMIT_KEYS), LimitsConfig()
    size = s.get("max_message_size", v.integer, None, low=1024, high=MAX_MESSAGE_CEILING)
    if size is None:
        size = legacy_message_size if legacy_message_size is not None else d.max_message_size
    elif legacy_message_size is not None and legacy_message_size != size:
        raise ConfigError("sip.max_message_size", f"{legacy_message_size} conflicts with"
                          f" limits.max_message_size ({size}); set only limits.max_message_size")

    def count(name: str, low: int, high: int) -> int:
        return s.get(name, v.integer, getattr(d, name), low=low, high=high)

    header_length = count("max_header_length", 256, MAX_MESSAGE_CEILING)
    if "max_header_length" not in s.data:
        header_length = min(header_length, size)  # the default follows a small message size

    lim = LimitsConfig(
        max_message_size=size,
        max_headers=count("max_headers", 16, 10000),
        max_header_length=header_length,
        max_connections=count("max_connections", 1, 1_000_000),
        max_connections_per_source=count("max_connections_per_source", 1, 1_000_000),
        idle_timeout=s.get("idle_timeout", v.duration, d.idle_timeout),
        incomplete_timeout=s.get("incomplete_timeout", v.duration, d.incomplete_timeout),
        max_transactions_per_source=count("max_transactions_per_source", 1, 10_000_000),
        max_dialogs_per_source=count("max_dialogs_per_source", 1, 10_000_000),
        max_outstanding_nonces=count("max_outstanding_nonces", 16, 10_000_000),
        overload=_overload(s.data.get("overload")),
    )
    if lim.max_connections_per_source > lim.max_connections:
        raise ConfigError("limits.max_connections_per_source", f"{lim.max_connections_per_source}"
                          f" is above max_connections ({lim.max_connections})")
    if lim.max_header_length > lim.max_message_size:
        raise ConfigError("limits.max_header_length", f"{lim.max_header_length} is above"
                          f" max_message_size ({lim.max_message_size})")
    if lim.incomplete_timeout > lim.idle_timeout:
        raise ConfigError("limits.incomplete_timeout", f"{lim.incomplete_timeout:g} is above"
                          f" idle_timeout ({lim.idle_timeout:g})")
    return lim


def _overload(value: Any) -> OverloadConfig:
    s, d = v.Section(value, "limits.overload", ("max_loop_lag", "max_call_rate", "retry_after")), OverloadConfig()

    def rate(item: Any, key: str) -> float:
        if isinstance(item, bool) or not isinstance(item, int | float) or item < 0:
            raise ConfigError(key, f"expected a number of calls per second >= 0 (0: no limit),"
                              f" got {v.describe(item)}")
        return float(item)

    return OverloadConfig(
        max_loop_lag=s.get("max_loop_lag", v.duration, d.max_loop_lag, positive=False),
        max_call_rate=s.get("max_call_rate", rate, d.max_call_rate),
        retry_after=s.get("retry_after", v.seconds, d.retry_after, low=1, high=86400),
    )
