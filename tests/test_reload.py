"""Live reload of the whole server built by make_service (memory reactor, real YAML files)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from test_tap import GOOD, Reactor, sync_database, write
from treq.testing import StubTreq
from twisted.python.failure import Failure

from pbxd.config import load_config
from pbxd.errors import ConfigError
from pbxd.reload import Reloader
from pbxd.service import make_service

BASE = GOOD + """\
security:
  max_failed_attempts: 5
  trusted_networks: [10.0.0.0/8]
admin:
  listen: tcp:28080:interface=127.0.0.1
  tokens:
    - {name: ops, token: "old-token-0123456789abcdef"}
"""


def with_extension(number: str) -> str:
    return BASE.replace('"1000": {password: "secret1000"}',
                        f'"1000": {{password: "secret1000"}}\n  "{number}": {{password: "pw{number}-long"}}')


def fired(d):
    out: list = []
    d.addBoth(out.append)
    assert out, "not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


@pytest.fixture
def server(tmp_path):
    path = write(tmp_path, BASE)
    reactor = Reactor()
    top = make_service(load_config(path), reactor, database=sync_database(tmp_path))
    top.startService()
    yield top, reactor, path
    top.stopService()


def state_of(top):
    return top.getServiceNamed("state")


def api_status(top, token: str) -> int:
    site = state_of(top).getServiceNamed("admin").site
    stub = StubTreq(site.resource)
    d = stub.get("http://pbxd.test/api/v1/bans", headers={"Authorization": f"Bearer {token}"})
    stub.flush()
    return fired(d).code


def extension(top, number: str):
    return state_of(top).stores.extensions.lookup(number)


def test_reload_changes_extensions_security_and_tokens_live(server):
    top, _, path = server
    bans = state_of(top).getServiceNamed("sip").stack.bans
    bans.ban("192.168.7.7", 600, "scanner")
    text = with_extension("1005")
    text = text.replace("max_failed_attempts: 5", "max_failed_attempts: 2")
    text = text.replace("[10.0.0.0/8]", "[10.0.0.0/8, 192.168.0.0/16]")
    text = text.replace("old-token-0123456789abcdef", "new-token-0123456789abcdef")
    Path(path).write_text(text)
    assert extension(top, "1005") is None
    result = fired(top.reloader.reload())
    assert {"extensions", "security", "admin tokens", "listeners"} <= set(result["applied"])
    assert result["failed"] == [] and result["restart_required"] == []
    assert extension(top, "1005") is not None
    assert bans.max_failed_attempts == 2
    assert bans.is_trusted("192.168.1.1")
    assert bans.list() == []  # a newly trusted address is not banned any more
    assert api_status(top, "new-token-0123456789abcdef") == 200
    assert api_status(top, "old-token-0123456789abcdef") == 401


def test_invalid_file_is_refused_and_the_old_configuration_stays(server):
    top, _, path = server
    Path(path).write_text(with_extension("1006").replace("max_failed_attempts: 5",
                                                         "max_failed_attempts: many"))
    with pytest.raises(ConfigError) as err:
        fired(top.reloader.reload())
    assert "security.max_failed_attempts" in str(err.value) and path in str(err.value)
    assert extension(top, "1006") is None
    assert top.reloader.config.security.max_failed_attempts == 5
    assert api_status(top, "old-token-0123456789abcdef") == 200


def test_only_changed_listener_entries_are_closed_and_opened(server):
    top, reactor, path = server
    sip = state_of(top)
    before = {s.spec.endpoint: s for s in sip if getattr(s, "spec", None) is not None}
    Path(path).write_text(BASE.replace("tcp:25060:interface=127.0.0.1",
                                       "tcp:25070:interface=127.0.0.1"))
    result = fired(top.reloader.reload())
    assert result["listeners"] == {"added": ["tcp:25070:interface=127.0.0.1"],
                                   "removed": ["tcp:25060:interface=127.0.0.1"]}
    after = {s.spec.endpoint: s for s in sip if getattr(s, "spec", None) is not None}
    assert set(after) == {"udp:25060:interface=127.0.0.1", "tcp:25070:interface=127.0.0.1",
                          "tls:25061:interface=127.0.0.1"}
    # untouched entries keep their very service (and port)
    assert after["udp:25060:interface=127.0.0.1"] is before["udp:25060:interface=127.0.0.1"]
    assert after["tls:25061:interface=127.0.0.1"] is before["tls:25061:interface=127.0.0.1"]
    assert reactor.udpPorts[0].listening
    assert not before["tcp:25060:interface=127.0.0.1"].running
    assert (25070, "127.0.0.1") in [(p, i) for p, _, _, i in reactor.tcpServers]


def test_sections_without_a_live_hook_are_reported_as_needing_a_restart(server):
    top, _, path = server
    Path(path).write_text(BASE.replace("realm: pbx.test", "realm: other.test"))
    result = fired(top.reloader.reload())
    assert result["restart_required"] == ["pbx"]


def test_registered_hook_checks_before_anything_is_applied(tmp_path):
    path = write(tmp_path, BASE)
    config = load_config(path)
    reloader = Reloader(config)
    applied: list[str] = []

    def check(new):
        if "2000" in new.extensions:
            raise ConfigError("dialplan.default[0]", "unknown application 'dail'")

    reloader.register("first", lambda new, old: applied.append("first"))
    reloader.register("dialplan", lambda new, old: applied.append("dialplan"), check=check,
                      sections=("dialplan",))
    write(tmp_path, with_extension("2000"))
    with pytest.raises(ConfigError):
        fired(reloader.reload())
    assert applied == [] and reloader.config is config
    write(tmp_path, with_extension("2001"))
    result = fired(reloader.reload())
    assert applied == ["first", "dialplan"] and result["applied"] == ["first", "dialplan"]
    assert "2001" in reloader.config.extensions


def test_reload_is_refused_while_shutting_down_or_without_a_file(tmp_path):
    reloader = Reloader(load_config(write(tmp_path, BASE)))
    reloader.refusal = "shutting down"
    with pytest.raises(RuntimeError, match="shutting down"):
        fired(reloader.reload())
    from pbxd.config import parse_config

    with pytest.raises(RuntimeError, match="not read from a file"):
        fired(Reloader(parse_config({})).reload())


def test_sha256_token_form_is_accepted_after_reload(server):
    top, _, path = server
    digest = hashlib.sha256(b"hashed-token-0123456789").hexdigest()
    Path(path).write_text(BASE.replace('{name: ops, token: "old-token-0123456789abcdef"}',
                                       f"{{name: ops, sha256: {digest}}}"))
    fired(top.reloader.reload())
    assert api_status(top, "hashed-token-0123456789") == 200


def test_dialplan_reload_swaps_it_for_new_calls_and_a_bad_rule_refuses_the_reload(server):
    top, _, path = server
    seam = state_of(top).getServiceNamed("calls").sessions.dialplan
    assert seam.matches("default", "1000")
    assert not seam.matches("default", "777")
    Path(path).write_text(BASE + """dialplan:
  default:
    - match: "777"
      do: [answer, echo]
""")
    result = fired(top.reloader.reload())
    assert "dialplan" in result["applied"]
    assert seam.matches("default", "777") and not seam.matches("default", "1000")
    Path(path).write_text(BASE + """dialplan:
  default:
    - match: "888"
      do: [dail]
""")
    with pytest.raises(ConfigError, match="dail"):
        fired(top.reloader.reload())
    assert seam.matches("default", "777")
