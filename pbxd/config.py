"""Load and validate ``etc/config.yml`` into a typed :class:`Config` (layer 1, pure).

The file is read once, at startup (and on reload); the rest of pbxd gets its
slice of the frozen :class:`Config` and never reads dotted strings. Every
problem raises :class:`pbxd.errors.ConfigError`, whose ``str`` is one line
naming the file and the key::

    etc/config.yml: sip.listen[1]: port 70000 is out of range 1-65535

The dataclasses live in :mod:`pbxd.configschema` and are re-exported here;
single-value checkers are in :mod:`pbxd.configvalues`. ``docs/configuration.md``
documents every key.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import yaml

from pbxd import configmedia
from pbxd import configtables as tables
from pbxd import configvalues as v
from pbxd.configschema import (
    AdminConfig,
    AdminToken,
    CallsConfig,
    Config,
    Extension,
    ListenSpec,
    PBXConfig,
    RateLimit,
    RegistrarConfig,
    RTPConfig,
    Rule,
    SecurityConfig,
    SIPConfig,
    Step,
    StoreConfig,
    Timers,
    TLSConfig,
    VoicemailConfig,
    default_dialplan,
)
from pbxd.errors import ConfigError

__all__ = [
    "AdminConfig", "AdminToken", "CallsConfig", "Config", "ConfigError", "Extension",
    "ListenSpec", "PBXConfig", "RateLimit", "RegistrarConfig", "RTPConfig", "Rule",
    "SecurityConfig", "SIPConfig", "Step", "StoreConfig", "Timers", "TLSConfig",
    "VoicemailConfig", "load_config", "parse_config", "DIGEST_ALGORITHMS",
]

DIGEST_ALGORITHMS = ("SHA-256", "MD5")
_REALM = re.compile(r'[^"\\\s]+')


def _keys(cls: type, *exclude: str) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in exclude]


# --------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and keeps ``0123`` as a string, not octal."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node.start_mark.line)
        except TypeError:
            continue
        if first != key_node.start_mark.line:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {first + 1})", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=True)


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int | str:
    text = loader.construct_scalar(node)
    if isinstance(text, str) and re.fullmatch(r"[-+]?0[0-9_]+", text):
        return text  # a leading zero is an extension number or PIN, not YAML 1.1 octal
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def load_config(path: str) -> Config:
    """Read, parse and validate the YAML file at ``path``.

    Relative paths in it (``pbx.state_dir``, certificates, ...) are resolved
    against the file's directory. Raises :class:`ConfigError`.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read the configuration: {exc.strerror or exc}", path) from None
    except UnicodeDecodeError:
        raise ConfigError("(file)", "the configuration is not UTF-8 text", path) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("(yaml)", f"{where}{problem}", path) from None
    base_dir = os.path.dirname(os.path.abspath(path))
    return parse_config({} if data is None else data, source=path, base_dir=base_dir)


def parse_config(data: Mapping[str, Any], *, source: str = "<config>", base_dir: str = ".") -> Config:
    """Validate already-loaded YAML data (a mapping) into a :class:`Config`.

    ``source`` names the file in error messages and is kept as ``Config.source``;
    ``base_dir`` is the directory relative paths are resolved against.
    """
    try:
        return _parse(data, source, os.path.abspath(base_dir))
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.message, source) from None


def _parse(data: Any, source: str, base_dir: str) -> Config:
    top = v.Section(data, "", _keys(Config, "source"))
    pbx = _pbx(top.data.get("pbx"), base_dir)
    security = _security(top.data.get("security"))
    dialplan = top.get("dialplan", tables.dialplan, default_dialplan())
    sip = _sip(top.data.get("sip"), base_dir)
    sip_data = top.data.get("sip")
    legacy_size = sip_data.get("max_message_size") if isinstance(sip_data, Mapping) else None
    limits = tables.limits(top.data.get("limits"), sip.max_message_size if legacy_size is not None else None)
    return Config(
        source=source,
        pbx=pbx,
        sip=dataclasses.replace(sip, max_message_size=limits.max_message_size),
        registrar=_registrar(top.data.get("registrar")),
        rtp=_rtp(top.data.get("rtp")),
        calls=_calls(top.data.get("calls")),
        security=security,
        limits=limits,
        extensions=top.get("extensions", tables.extensions, MappingProxyType({}),
                           dialplan=dialplan, algorithms=security.digest_algorithms),
        dialplan=dialplan,
        admin=tables.admin(top.data.get("admin")),
        store=_store(top.data.get("store"), pbx.state_dir),
        voicemail=configmedia.voicemail(top.data.get("voicemail"), base_dir),
        recording=configmedia.recording(top.data.get("recording"), base_dir),
        moh=configmedia.moh(top.data.get("moh"), base_dir),
        plugins=top.get("plugins", _plugins, ()),
    )


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------


def _pbx(value: Any, base_dir: str) -> PBXConfig:
    s, d = v.Section(value, "pbx", _keys(PBXConfig)), PBXConfig()
    return PBXConfig(
        realm=s.get("realm", v.string, d.realm, pattern=_REALM, what="a realm (no spaces or quotes)"),
        state_dir=v.path(s.data.get("state_dir", d.state_dir), s.sub("state_dir"), base_dir=base_dir),
        external_address=s.get("external_address", v.optional(v.host), None),
        user_agent=s.get("user_agent", v.string, d.user_agent),
    )


def _sip(value: Any, base_dir: str) -> SIPConfig:
    s, d = v.Section(value, "sip", _keys(SIPConfig)), SIPConfig()
    return SIPConfig(
        listen=s.get("listen", _listen, d.listen),
        tls=_tls(s.data.get("tls"), base_dir),
        timers=_timers(s.data.get("timers")),
        max_message_size=s.get("max_message_size", v.integer, d.max_message_size,
                               low=1024, high=tables.MAX_MESSAGE_CEILING),
    )


def _listen(value: Any, key: str) -> tuple[ListenSpec, ...]:
    specs: list[ListenSpec] = []
    seen: dict[tuple[str, int, str], int] = {}
    for i, item in enumerate(v.items(value, key)):
        spec = v.listen_spec(item, f"{key}[{i}]")
        ident = (spec.transport, spec.port, spec.interface)
        if ident in seen:
            raise ConfigError(f"{key}[{i}]", f"duplicate listener: {spec.transport} port {spec.port}"
                              f" is already in {key}[{seen[ident]}]")
        seen[ident] = i
        specs.append(spec)
    if not specs:
        raise ConfigError(key, "at least one listener is needed")
    return tuple(specs)


def _tls(value: Any, base_dir: str) -> TLSConfig:
    s, d = v.Section(value, "sip.tls", _keys(TLSConfig)), TLSConfig()

    def cert_or_auto(item: Any, key: str) -> str:
        if item == "auto":
            return "auto"
        return v.readable_file(item, key, base_dir=base_dir)

    certificate = s.get("certificate", cert_or_auto, d.certificate)
    private_key = s.get("private_key", cert_or_auto, d.private_key)
    if (certificate == "auto") != (private_key == "auto"):
        which = "private_key" if certificate != "auto" else "certificate"
        raise ConfigError(s.sub(which), "certificate and private_key must both be 'auto' or both"
                          " be files (give the same file twice for a combined PEM)")
    version = s.data.get("min_version", d.min_version)
    if isinstance(version, float):
        version = f"{version:g}"  # YAML reads 1.2 unquoted as a number
    return TLSConfig(
        certificate=certificate,
        private_key=private_key,
        ca_file=s.get("ca_file", v.optional(v.readable_file), None, base_dir=base_dir),
        verify_client=s.get("verify_client", v.boolean, d.verify_client),
        min_version=v.string(version, s.sub("min_version"), choices=("1.2", "1.3")),
    )


def _timers(value: Any) -> Timers:
    s, d = v.Section(value, "sip.timers", _keys(Timers)), Timers()
    timers = Timers(*(s.get(name, v.duration, getattr(d, name)) for name in ("t1", "t2", "t4")))
    if timers.t2 < timers.t1:
        raise ConfigError("sip.timers.t2", f"t2 ({timers.t2:g}) must not be below t1 ({timers.t1:g})")
    return timers


def _registrar(value: Any) -> RegistrarConfig:
    s, d = v.Section(value, "registrar", _keys(RegistrarConfig)), RegistrarConfig()

    def nat(item: Any, key: str) -> str:
        if isinstance(item, bool):  # YAML 1.1 reads yes/no/on/off as booleans
            return "always" if item else "never"
        return v.string(item, key, choices=("auto", "always", "never"))

    r = RegistrarConfig(
        min_expires=s.get("min_expires", v.seconds, d.min_expires, low=1),
        max_expires=s.get("max_expires", v.seconds, d.max_expires, low=1),
        default_expires=s.get("default_expires", v.seconds, d.default_expires, low=1),
        max_contacts=s.get("max_contacts", v.integer, d.max_contacts, low=1, high=1000),
        nat=s.get("nat", nat, d.nat),
        qualify_interval=s.get("qualify_interval", v.duration, d.qualify_interval, positive=False),
        qualify_timeout=s.get("qualify_timeout", v.duration, d.qualify_timeout),
    )
    if r.min_expires > r.max_expires:
        raise ConfigError("registrar.min_expires", f"{r.min_expires} is above max_expires ({r.max_expires})")
    if not r.min_expires <= r.default_expires <= r.max_expires:
        raise ConfigError("registrar.default_expires", f"{r.default_expires} is outside"
                          f" min_expires-max_expires ({r.min_expires}-{r.max_expires})")
    return r


def _rtp(value: Any) -> RTPConfig:
    s, d = v.Section(value, "rtp", _keys(RTPConfig)), RTPConfig()

    def port_range(item: Any, key: str) -> tuple[int, int]:
        pair = v.items(item, key)
        if len(pair) != 2:
            raise ConfigError(key, "expected two ports: [first, last]")
        first = v.integer(pair[0], f"{key}[0]", low=1024, high=65535)
        last = v.integer(pair[1], f"{key}[1]", low=1024, high=65535)
        if first % 2:
            raise ConfigError(f"{key}[0]", f"{first} must be even (RTP on even ports, RTCP on odd)")
        if first >= last:
            raise ConfigError(key, f"first port {first} must be below last port {last}")
        return (first, last)

    return RTPConfig(
        address=s.get("address", v.ip_address, d.address),
        port_range=s.get("port_range", port_range, d.port_range),
        timeout=s.get("timeout", v.duration, d.timeout, positive=False),
    )


def _calls(value: Any) -> CallsConfig:
    s, d = v.Section(value, "calls", _keys(CallsConfig)), CallsConfig()
    return CallsConfig(
        no_answer_timeout=s.get("no_answer_timeout", v.duration, d.no_answer_timeout),
        max_forwards=s.get("max_forwards", v.integer, d.max_forwards, low=1, high=255),
        drain_time=s.get("drain_time", v.duration, d.drain_time, positive=False),
    )


def _security(value: Any) -> SecurityConfig:
    s, d = v.Section(value, "security", _keys(SecurityConfig)), SecurityConfig()

    def networks(item: Any, key: str) -> tuple[Any, ...]:
        return tuple(v.network(n, f"{key}[{i}]") for i, n in enumerate(v.items(item, key)))

    def algorithms(item: Any, key: str) -> tuple[str, ...]:
        names: list[str] = []
        for i, name in enumerate(v.items(item, key)):
            name = v.string(name, f"{key}[{i}]").upper()
            if name not in DIGEST_ALGORITHMS:
                raise ConfigError(f"{key}[{i}]", f"unknown digest algorithm {name!r}"
                                  f" (expected {' or '.join(DIGEST_ALGORITHMS)})")
            if name in names:
                raise ConfigError(f"{key}[{i}]", f"{name} is listed twice")
            names.append(name)
        if not names:
            raise ConfigError(key, "at least one digest algorithm is needed")
        return tuple(names)

    limit = v.Section(s.data.get("rate_limit"), "security.rate_limit", _keys(RateLimit))
    return SecurityConfig(
        require_authentication=s.get("require_authentication", v.boolean, d.require_authentication),
        max_failed_attempts=s.get("max_failed_attempts", v.integer, d.max_failed_attempts, low=0),
        failure_window=s.get("failure_window", v.duration, d.failure_window),
        ban_duration=s.get("ban_duration", v.duration, d.ban_duration),
        trusted_networks=s.get("trusted_networks", networks, d.trusted_networks),
        digest_algorithms=s.get("digest_algorithms", algorithms, d.digest_algorithms),
        nonce_lifetime=s.get("nonce_lifetime", v.duration, d.nonce_lifetime),
        rate_limit=RateLimit(
            requests=limit.get("requests", v.integer, d.rate_limit.requests, low=0),
            window=limit.get("window", v.duration, d.rate_limit.window),
        ),
    )


def _store(value: Any, state_dir: str) -> StoreConfig:
    s = v.Section(value, "store", _keys(StoreConfig))
    url = s.get("url", v.string, StoreConfig().url)
    window = s.get("commit_window", v.duration, StoreConfig().commit_window, positive=False)
    if window > 1.0:
        raise ConfigError("store.commit_window",
                          f"{window:g}s is too long: a REGISTER's 200 OK waits up to this (max 1s)")
    if url.startswith("sqlite:"):
        file = url[len("sqlite:") :]
        if not file:
            raise ConfigError("store.url", "sqlite: needs a file name (sqlite:pbxd.sqlite)")
        if file != ":memory:":
            file = v.path(file, "store.url", base_dir=state_dir)
        return StoreConfig(f"sqlite:{file}", window)
    if re.match(r"postgres(ql)?://", url):
        raise ConfigError("store.url", "PostgreSQL is not supported by this version;"
                          " use sqlite:PATH (the default)")
    raise ConfigError("store.url", f"{url!r} is not sqlite:PATH")


def _plugins(value: Any, key: str) -> tuple[str, ...]:
    names: list[str] = []
    for i, item in enumerate(v.items(value, key)):
        name = v.dotted_name(item, f"{key}[{i}]")
        if name in names:
            raise ConfigError(f"{key}[{i}]", f"{name!r} is listed twice")
        names.append(name)
    return tuple(names)
