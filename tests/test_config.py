"""Tests for pbxd.config: defaults, every validation error names its key, file loading."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
from pathlib import Path

import pytest

from pbxd.config import (
    Config,
    ConfigError,
    Extension,
    ListenSpec,
    Rule,
    Step,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "etc" / "config.yml"


def write(tmp_path: Path, text: str, name: str = "config.yml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------


def test_empty_config_gives_complete_defaults_resolved_against_base_dir(tmp_path):
    config = parse_config({}, base_dir=str(tmp_path))
    assert config.source == "<config>"
    assert config.pbx.realm == "pbxd.local"
    assert config.pbx.state_dir == str(tmp_path / "var")
    assert config.pbx.user_agent.startswith("pbxd/")
    assert [(s.transport, s.port, s.interface) for s in config.sip.listen] == [
        ("UDP", 5060, ""), ("TCP", 5060, ""), ("TLS", 5061, "")]
    assert config.sip.tls.auto and config.sip.tls.min_version == "1.2"
    assert (config.sip.timers.t1, config.sip.timers.t2, config.sip.timers.t4) == (0.5, 4.0, 5.0)
    assert config.registrar.default_expires == 3600 and config.registrar.nat == "auto"
    assert config.rtp.port_range == (10000, 20000)
    assert config.calls.max_forwards == 70
    assert config.security.digest_algorithms == ("MD5",)
    assert config.security.rate_limit.requests == 200
    assert dict(config.extensions) == {}
    assert config.admin.listen == "tcp:8080:interface=127.0.0.1"
    assert config.store.url == f"sqlite:{tmp_path / 'var' / 'pbxd.sqlite'}"
    assert config.store.kind == "sqlite"
    assert config.voicemail.max_message_seconds == 180
    assert config.plugins == ()


def test_default_dialplan_dials_1xxx_then_voicemail_and_has_echo_test():
    rules = parse_config({}).dialplan["default"]
    assert rules[0] == Rule("_1XXX", (Step("dial", {"to": "${EXTEN}", "timeout": 20}),
                                      Step("voicemail", {"box": "${EXTEN}"})))
    assert rules[1] == Rule("*43", (Step("answer"), Step("echo")))


def test_config_objects_are_frozen():
    config = parse_config({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pbx.realm = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.extensions["1"] = Extension("1", password="x")  # type: ignore[index]


def test_empty_sections_count_as_empty_mappings():
    config = parse_config({"voicemail": None, "pbx": None})
    assert config.voicemail.max_messages == 100


# --------------------------------------------------------------------------
# Every bad value names its key
# --------------------------------------------------------------------------

BAD = [
    ({"store": {"commit_window": "2s"}}, "store.commit_window", "too long"),
    ({"store": {"commit_window": -1}}, "store.commit_window", ""),
    ({"store": {"commit_window": "soon"}}, "store.commit_window", ""),
    ({"bogus": 1}, "bogus", "unknown key"),
    ({"pbx": {"relm": "x"}}, "pbx.relm", "did you mean 'realm'"),
    ([1, 2], "(top level)", "expected a mapping"),
    ({"pbx": []}, "pbx", "expected a mapping"),
    ({"pbx": {"realm": 5}}, "pbx.realm", "expected a string"),
    ({"pbx": {"realm": "a b"}}, "pbx.realm", "realm"),
    ({"pbx": {"external_address": "not an/addr"}}, "pbx.external_address", "host name"),
    ({"sip": {"listen": ["udp:70000"]}}, "sip.listen[0]", "port 70000 is out of range 1-65535"),
    ({"sip": {"listen": ["udp:5060", "tcp:0"]}}, "sip.listen[1]", "out of range"),
    ({"sip": {"listen": ["sctp:5060"]}}, "sip.listen[0]", "unknown listener type"),
    ({"sip": {"listen": ["udp:abc"]}}, "sip.listen[0]", "not a number"),
    ({"sip": {"listen": ["udp"]}}, "sip.listen[0]", "no port"),
    ({"sip": {"listen": ["udp:5060:interface=foo"]}}, "sip.listen[0]", "not an IP address"),
    ({"sip": {"listen": ["udp:5060:color=red"]}}, "sip.listen[0]", "unknown option"),
    ({"sip": {"listen": ["tcp:5060:interface=::1"]}}, "sip.listen[0]", "escape the colons"),
    ({"sip": {"listen": ["udp:5060", "udp:5060"]}}, "sip.listen[1]", "duplicate listener"),
    ({"sip": {"listen": []}}, "sip.listen", "at least one"),
    ({"sip": {"listen": "udp:5060"}}, "sip.listen", "expected a list"),
    ({"sip": {"listen": [5060]}}, "sip.listen[0]", "expected a string"),
    ({"sip": {"tls": {"min_version": "1.1"}}}, "sip.tls.min_version", "not one of"),
    ({"sip": {"tls": {"verify_client": "yes"}}}, "sip.tls.verify_client", "true or false"),
    ({"sip": {"timers": {"t1": 0}}}, "sip.timers.t1", "above 0"),
    ({"sip": {"timers": {"t1": "fast"}}}, "sip.timers.t1", "not a duration"),
    ({"sip": {"timers": {"t1": 5, "t2": 1}}}, "sip.timers.t2", "t1"),
    ({"sip": {"max_message_size": 10}}, "sip.max_message_size", "out of range"),
    ({"registrar": {"min_expires": 4000}}, "registrar.min_expires", "above max_expires"),
    ({"registrar": {"default_expires": 10}}, "registrar.default_expires", "outside"),
    ({"registrar": {"max_expires": 1.5}}, "registrar.max_expires", "whole number"),
    ({"registrar": {"nat": "sometimes"}}, "registrar.nat", "not one of"),
    ({"registrar": {"max_contacts": 0}}, "registrar.max_contacts", "out of range"),
    ({"registrar": {"qualify_interval": -1}}, "registrar.qualify_interval", "at least 0"),
    ({"voicemail": {"greeting_dir": "no-such-folder"}}, "voicemail.greeting_dir",
     "no such directory"),
    ({"rtp": {"address": "localhost"}}, "rtp.address", "not an IPv4 or IPv6 address"),
    ({"rtp": {"port_range": [10001, 20000]}}, "rtp.port_range[0]", "even"),
    ({"rtp": {"port_range": [20000, 10000]}}, "rtp.port_range", "below last port"),
    ({"rtp": {"port_range": [80, 10000]}}, "rtp.port_range[0]", "out of range 1024-65535"),
    ({"rtp": {"port_range": [10000]}}, "rtp.port_range", "two ports"),
    ({"rtp": {"timeout": True}}, "rtp.timeout", "expected a duration"),
    ({"calls": {"max_forwards": 300}}, "calls.max_forwards", "out of range 1-255"),
    ({"calls": {"no_answer_timeout": "10 minutes"}}, "calls.no_answer_timeout", "not a duration"),
    ({"security": {"require_authentication": 1}}, "security.require_authentication", "true or false"),
    ({"security": {"trusted_networks": ["10.0.0.0/33"]}}, "security.trusted_networks[0]", "not a CIDR"),
    ({"security": {"trusted_networks": ["10.0.0.1/8"]}}, "security.trusted_networks[0]", "10.0.0.0/8"),
    ({"security": {"digest_algorithms": ["SHA-1"]}}, "security.digest_algorithms[0]", "unknown digest algorithm"),
    ({"security": {"digest_algorithms": []}}, "security.digest_algorithms", "at least one"),
    ({"security": {"digest_algorithms": ["MD5", "md5"]}}, "security.digest_algorithms[1]", "twice"),
    ({"security": {"ban_duration": "5 days"}}, "security.ban_duration", "not a duration"),
    ({"security": {"rate_limit": {"requests": -1}}}, "security.rate_limit.requests", "below the minimum 0"),
    ({"security": {"rate_limit": {"burst": 3}}}, "security.rate_limit.burst", "unknown key"),
    ({"extensions": {"10 00": {"password": "x"}}}, "extensions.10 00", "not a valid extension number"),
    ({"extensions": {"1000": {}}}, "extensions.1000", "needs a credential"),
    ({"extensions": {"1000": {"password": 1234}}}, "extensions.1000.password", "expected a string"),
    ({"extensions": {"1000": {"ha1": "abc"}}}, "extensions.1000.ha1", "32 hexadecimal digits"),
    ({"extensions": {"1000": {"ha1_sha256": "0" * 32}}}, "extensions.1000.ha1_sha256", "64 hexadecimal"),
    ({"extensions": {"1000": {"password": "x", "pasword": "y"}}}, "extensions.1000.pasword", "unknown key"),
    ({"extensions": {"1000": {"password": "x", "context": "nowhere"}}}, "extensions.1000.context", "unknown dialplan context"),
    ({"extensions": {"1000": {"password": "x", "voicemail_pin": "12a"}}}, "extensions.1000.voicemail_pin", "PIN"),
    ({"extensions": {"1000": {"password": "x", "max_contacts": 0}}}, "extensions.1000.max_contacts", "out of range"),
    ({"extensions": {1000: {"password": "x"}, "1000": {"password": "y"}}}, "extensions.1000", "duplicate extension"),
    ({"extensions": {"1000": {"ha1": "0" * 32}}, "security": {"digest_algorithms": ["SHA-256"]}},
     "extensions.1000", "digest_algorithms"),
    ({"extensions": []}, "extensions", "expected a mapping"),
    ({"dialplan": {"default": [{"match": "1", "do": []}]}}, "dialplan.default[0].do", "at least one step"),
    ({"dialplan": {"default": [{"do": ["answer"]}]}}, "dialplan.default[0].match", "missing key"),
    ({"dialplan": {"default": [{"match": "1", "do": ["answer"], "then": 1}]}}, "dialplan.default[0].then", "unknown key"),
    ({"dialplan": {"default": [{"match": "1", "do": [{"a": 1, "b": 2}]}]}}, "dialplan.default[0].do[0]", "one-key mapping"),
    ({"dialplan": {"default": [{"match": "1", "do": ["play prompt"]}]}}, "dialplan.default[0].do[0]", "application name"),
    ({"dialplan": {"default": [{"match": "1", "do": ["answer"]}, {"match": "1", "do": ["echo"]}]}},
     "dialplan.default[1].match", "duplicate match"),
    ({"dialplan": {"default": {"match": "1"}}}, "dialplan.default", "expected a list"),
    ({"admin": {"listen": "udp:8080"}}, "admin.listen", "unknown listener type"),
    ({"admin": {"tokens": [{"name": "ops"}]}}, "admin.tokens[0]", "exactly one of token or sha256"),
    ({"admin": {"tokens": [{"name": "ops", "token": "short"}]}}, "admin.tokens[0].token", "at least 16"),
    ({"admin": {"tokens": [{"name": "ops", "sha256": "xyz"}]}}, "admin.tokens[0].sha256", "64 hexadecimal"),
    ({"admin": {"tokens": [{"token": "a" * 20}]}}, "admin.tokens[0].name", "missing key"),
    ({"admin": {"tokens": [{"name": "a", "token": "a" * 20}, {"name": "a", "token": "b" * 20}]}},
     "admin.tokens[1]", "duplicate token"),
    ({"store": {"url": "mysql://x"}}, "store.url", "is not sqlite:PATH"),
    ({"store": {"url": "postgresql://pbx@db/pbx"}}, "store.url", "PostgreSQL is not supported"),
    ({"store": {"url": "sqlite:"}}, "store.url", "needs a file name"),
    ({"voicemail": {"max_messages": 0}}, "voicemail.max_messages", "below the minimum 1"),
    ({"voicemail": {"min_message_seconds": 200}}, "voicemail.min_message_seconds", "above max"),
    ({"voicemail": {"smtp_server": "mail"}}, "voicemail.smtp_server", "unknown key"),
    ({"plugins": ["not-a-package"]}, "plugins[0]", "importable package name"),
    ({"plugins": ["acme.apps", "acme.apps"]}, "plugins[1]", "twice"),
    ({"plugins": "acme"}, "plugins", "expected a list"),
]


@pytest.mark.parametrize(("data", "key", "fragment"), BAD, ids=[f"{b[1]}:{b[2]}" for b in BAD])
def test_bad_value_raises_config_error_naming_key(data, key, fragment):
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="etc/config.yml")
    error = info.value
    assert error.key == key
    assert fragment in error.message
    assert error.file == "etc/config.yml"
    assert str(error) == f"etc/config.yml: {key}: {error.message}"
    assert "\n" not in str(error)


def test_listen_port_error_reads_as_one_line_with_file_and_key():
    with pytest.raises(ConfigError) as info:
        parse_config({"sip": {"listen": ["udp:5060", "udp:70000"]}}, source="etc/config.yml")
    assert str(info.value) == "etc/config.yml: sip.listen[1]: port 70000 is out of range 1-65535"


# --------------------------------------------------------------------------
# Listen forms
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("udp:5060", ("UDP", 5060, "")),
    ("udp:5062:interface=192.0.2.1", ("UDP", 5062, "192.0.2.1")),
    ("tls:5061:interface=\\:\\:1", ("TLS", 5061, "::1")),
    ("tcp:5060:interface=\\:\\:1", ("TCP", 5060, "::1")),
    ("tcp:port=5070:interface=127.0.0.1:backlog=10", ("TCP", 5070, "127.0.0.1")),
    ("tcp:5071:127.0.0.1", ("TCP", 5071, "127.0.0.1")),
    ("tcp6:5072:interface=2001\\:db8\\:\\:5", ("TCP", 5072, "2001:db8::5")),
    ("ssl:5063:privateKey=server.pem", ("TLS", 5063, "")),
    ("UDP:5064", ("UDP", 5064, "")),
])
def test_listen_forms_parse_to_transport_port_and_interface(text, expected):
    (spec,) = parse_config({"sip": {"listen": [text]}}).sip.listen
    assert (spec.transport, spec.port, spec.interface) == expected
    assert spec.endpoint == text


def test_ipv6_interface_with_escaped_colons_loads_from_unquoted_yaml(tmp_path):
    path = write(tmp_path, "sip:\n  listen:\n    - tcp:5060:interface=\\:\\:1\n    - 'udp:5060:interface=\\:\\:1'\n")
    specs = load_config(path).sip.listen
    assert [(s.transport, s.interface) for s in specs] == [("TCP", "::1"), ("UDP", "::1")]
    assert specs[0].endpoint == "tcp:5060:interface=\\:\\:1"


@pytest.mark.parametrize("text", [
    "tcp:5060:interface=\\:\\:1",
    "tcp:port=5070:interface=127.0.0.1:backlog=10",
    "tcp6:5072:interface=2001\\:db8\\:\\:5",
    "ssl:5063:privateKey=k.pem:backlog=5",
])
def test_stream_endpoint_parsing_agrees_with_twisted_tokenizer(text):
    from twisted.internet import endpoints  # tests may use Twisted; pbxd.config may not

    args, kwargs = endpoints._parse(text)
    named = dict(zip(("port", "interface"), args[1:], strict=False)) | kwargs
    (spec,) = parse_config({"sip": {"listen": [text]}}).sip.listen
    assert spec.port == int(named["port"])
    assert spec.interface == named.get("interface", "")


def test_listen_keeps_other_endpoint_options():
    (spec,) = parse_config({"sip": {"listen": ["ssl:5063:privateKey=k.pem:backlog=5"]}}).sip.listen
    assert spec == ListenSpec("TLS", 5063, "", "ssl:5063:privateKey=k.pem:backlog=5",
                              (("privateKey", "k.pem"), ("backlog", "5")))


def test_same_port_on_other_transport_or_interface_is_not_a_duplicate():
    listen = ["udp:5060", "tcp:5060", "udp:5060:interface=127.0.0.1"]
    assert len(parse_config({"sip": {"listen": listen}}).sip.listen) == 3


def test_listen_duplicates_compare_normalised_interfaces():
    listen = ["udp:5060:interface=\\:\\:1", "udp:5060:interface=0\\:0\\:0\\:0\\:0\\:0\\:0\\:1"]
    with pytest.raises(ConfigError, match="duplicate listener"):
        parse_config({"sip": {"listen": listen}})


def test_sip_listeners_filters_by_transport():
    assert [s.port for s in parse_config({}).sip.listeners("TLS")] == [5061]


# --------------------------------------------------------------------------
# Values and conversions
# --------------------------------------------------------------------------


def test_yaml_int_extension_number_becomes_string(tmp_path):
    config = load_config(write(tmp_path, "extensions:\n  1000: {password: secret}\n"))
    assert list(config.extensions) == ["1000"]
    assert config.extensions["1000"] == Extension("1000", name="1000", password="secret")


def test_leading_zero_numbers_in_yaml_stay_strings_not_octal(tmp_path):
    text = "extensions:\n  0100: {password: s, voicemail_pin: 0123}\n"
    ext = load_config(write(tmp_path, text)).extensions["0100"]
    assert ext.voicemail_pin == "0123"


def test_ha1_is_lower_cased_and_pin_int_accepted():
    ext = parse_config({"extensions": {"7": {"ha1": "AB" * 16, "voicemail_pin": 42}}}).extensions["7"]
    assert ext.ha1 == "ab" * 16 and ext.voicemail_pin == "42" and ext.password is None


def test_durations_accept_units():
    config = parse_config({"sip": {"timers": {"t1": "500ms", "t2": "4s", "t4": 5}},
                           "security": {"ban_duration": "1h"}, "registrar": {"max_expires": "2h"}})
    assert config.sip.timers.t1 == 0.5 and config.sip.timers.t2 == 4.0
    assert config.security.ban_duration == 3600.0
    assert config.registrar.max_expires == 7200


def test_zero_disables_qualify_rtp_timeout_and_rate_limit():
    config = parse_config({"registrar": {"qualify_interval": 0}, "rtp": {"timeout": 0},
                           "security": {"rate_limit": {"requests": 0}}})
    assert config.registrar.qualify_interval == 0
    assert config.rtp.timeout == 0
    assert config.security.rate_limit.requests == 0


def test_trusted_networks_are_parsed_and_match_addresses():
    security = parse_config({"security": {"trusted_networks": ["192.168.1.0/24", "2001:db8::/32", "10.1.2.3"]}}).security
    assert security.trusted_networks[0] == ipaddress.ip_network("192.168.1.0/24")
    assert security.is_trusted("192.168.1.77")
    assert security.is_trusted("2001:db8::1")
    assert security.is_trusted("10.1.2.3")
    assert not security.is_trusted("10.1.2.4")
    assert not security.is_trusted("not-an-ip")


def test_digest_algorithms_are_upper_cased_in_order():
    config = parse_config({"security": {"digest_algorithms": ["sha-256", "MD5"]}})
    assert config.security.digest_algorithms == ("SHA-256", "MD5")


def test_unquoted_yaml_tls_version_is_accepted(tmp_path):
    config = load_config(write(tmp_path, "sip:\n  tls:\n    min_version: 1.3\n"))
    assert config.sip.tls.min_version == "1.3"


def test_nat_yaml_booleans_map_to_always_and_never():
    assert parse_config({"registrar": {"nat": True}}).registrar.nat == "always"
    assert parse_config({"registrar": {"nat": False}}).registrar.nat == "never"


def test_dialplan_steps_keep_arguments_and_int_match_becomes_string():
    config = parse_config({"dialplan": {"internal": [
        {"match": 100, "do": ["answer", {"playback": "hello"}, {"hangup": None}]}]}})
    (rule,) = config.dialplan["internal"]
    assert rule == Rule("100", (Step("answer"), Step("playback", "hello"), Step("hangup")))


def test_given_dialplan_replaces_the_default():
    config = parse_config({"dialplan": {"office": [{"match": "_2XX", "do": ["answer"]}]},
                           "extensions": {"200": {"password": "x", "context": "office"}}})
    assert list(config.dialplan) == ["office"]


def test_admin_token_is_kept_only_as_sha256():
    token = "a-very-long-secret-token"
    admin = parse_config({"admin": {"tokens": [{"name": "ops", "token": token},
                                               {"name": "ci", "sha256": "AB" * 32}]}}).admin
    assert admin.tokens[0].sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert admin.tokens[1].sha256 == "ab" * 32
    assert not hasattr(admin.tokens[0], "token")


def test_admin_listen_null_disables_admin():
    assert parse_config({"admin": {"listen": None}}).admin.listen is None


def test_store_sqlite_memory_is_not_resolved():
    store = parse_config({"store": {"url": "sqlite::memory:"}}).store
    assert store.sqlite_path == ":memory:"


def test_store_commit_window_defaults_to_20ms_and_takes_durations():
    assert parse_config({}).store.commit_window == 0.02
    assert parse_config({"store": {"commit_window": "5ms"}}).store.commit_window == 0.005
    assert parse_config({"store": {"commit_window": 0}}).store.commit_window == 0.0


def test_plugins_are_kept_in_order():
    assert parse_config({"plugins": ["acme.apps", "b"]}).plugins == ("acme.apps", "b")


# --------------------------------------------------------------------------
# Files and paths
# --------------------------------------------------------------------------


def test_example_config_loads_without_errors():
    config = load_config(str(EXAMPLE))
    assert isinstance(config, Config)
    assert config.source == str(EXAMPLE)
    assert set(config.extensions) >= {"1000", "1001", "1002"}
    assert [s.endpoint for s in config.sip.listen] == ["udp:5060", "tcp:5060", "tls:5061"]
    assert config.admin.listen == "tcp:8080:interface=127.0.0.1" and config.admin.tokens


def test_state_dir_and_sqlite_path_resolve_relative_to_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path / "etc", "pbx: {state_dir: ../state}\n"))
    assert config.pbx.state_dir == str(tmp_path / "state")
    assert config.store.sqlite_path == str(tmp_path / "state" / "pbxd.sqlite")


def test_absolute_state_dir_is_kept(tmp_path):
    config = parse_config({"pbx": {"state_dir": str(tmp_path / "abs")}}, base_dir="/elsewhere")
    assert config.pbx.state_dir == str(tmp_path / "abs")


def test_unreadable_certificate_path_is_an_error_naming_key(tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("KEY")
    data = {"sip": {"tls": {"certificate": "missing.pem", "private_key": "key.pem"}}}
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="c.yml", base_dir=str(tmp_path))
    assert info.value.key == "sip.tls.certificate"
    assert "missing.pem" in info.value.message


def test_certificate_files_resolve_relative_to_base_dir(tmp_path):
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("PEM")
    tls = parse_config({"sip": {"tls": {"certificate": "cert.pem", "private_key": "key.pem",
                                        "ca_file": "ca.pem"}}}, base_dir=str(tmp_path)).sip.tls
    assert tls.certificate == str(tmp_path / "cert.pem") and not tls.auto
    assert tls.ca_file == str(tmp_path / "ca.pem")


def test_certificate_file_with_auto_key_is_an_error(tmp_path):
    (tmp_path / "cert.pem").write_text("PEM")
    with pytest.raises(ConfigError) as info:
        parse_config({"sip": {"tls": {"certificate": "cert.pem"}}}, base_dir=str(tmp_path))
    assert info.value.key == "sip.tls.private_key"


def test_yaml_syntax_error_is_config_error_with_line(tmp_path):
    path = write(tmp_path, "pbx:\n  realm: a\n   bad: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "(yaml)"
    assert info.value.file == path
    assert "line 3" in info.value.message


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = write(tmp_path, "extensions:\n  1000: {password: a}\n  1000: {password: b}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "(yaml)"
    assert "duplicate key 1000" in info.value.message and "line 3" in info.value.message


def test_unsafe_yaml_tags_are_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "pbx: !!python/object/apply:os.system [echo hi]\n"))
    assert info.value.key == "(yaml)"


def test_missing_config_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "nope.yml"))
    assert info.value.key == "(file)"


def test_empty_file_gives_defaults(tmp_path):
    config = load_config(write(tmp_path, "# nothing\n"))
    assert config.pbx.state_dir == os.path.join(str(tmp_path), "var")


def test_errors_from_a_loaded_file_name_that_file(tmp_path):
    path = write(tmp_path, "rtp:\n  port_range: [10001, 20000]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: rtp.port_range[0]: ")


def test_every_yaml_example_in_the_configuration_reference_loads(tmp_path):
    text = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    blocks = text.split("```yaml\n")[1:]
    assert len(blocks) >= 5
    for i, block in enumerate(blocks):
        load_config(write(tmp_path, block.split("```")[0], f"example{i}.yml"))


def test_include_rule_names_another_context():
    cfg = parse_config({"dialplan": {
        "default": [{"include": "shared"}, {"match": "100", "do": ["answer"]}],
        "shared": [{"match": "*43", "do": ["answer", "echo"]}],
    }})
    first, second = cfg.dialplan["default"]
    assert first.include == "shared" and first.steps == () and first.match == ""
    assert second.include is None and second.match == "100"


def test_include_rule_takes_no_other_keys():
    with pytest.raises(ConfigError) as err:
        parse_config({"dialplan": {"default": [{"include": "shared", "do": ["answer"]}]}})
    assert "dialplan.default[0]" in str(err.value)
