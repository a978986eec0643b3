"""pbxd.tap and pbxd.service: command line, config errors, the service tree."""

from __future__ import annotations

import os

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from pbxd import tap
from pbxd.config import load_config
from pbxd.service import make_service
from pbxd.store.db import Database
from pbxd.store.testing import SynchronousConnectionPool


def sync_database(tmp_path) -> Database:
    return Database(SynchronousConnectionPool(str(tmp_path / "pbxd.sqlite")))

GOOD = """\
pbx:
  realm: pbx.test
  state_dir: state
sip:
  listen:
    - udp:25060:interface=127.0.0.1
    - tcp:25060:interface=127.0.0.1
    - tls:25061:interface=127.0.0.1
extensions:
  "1000": {password: "secret1000"}
"""


class UDPPort:
    """What UDPListener needs of the port listenUDP returns."""

    def __init__(self, port, protocol, interface, maxPacketSize):  # noqa: N803
        self.port, self.protocol, self.interface = port, protocol, interface
        self.maxPacketSize = maxPacketSize
        self.listening = True

    def getHost(self):  # noqa: N802
        return IPv4Address("UDP", self.interface, self.port)

    def stopListening(self):  # noqa: N802
        self.listening = False


class Reactor(MemoryReactorClock):
    """MemoryReactorClock plus the listenUDP it lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: list[UDPPort] = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):  # noqa: N802, N803
        self.udpPorts.append(UDPPort(port, protocol, interface, maxPacketSize))
        return self.udpPorts[-1]


def write(tmp_path, text: str) -> str:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return str(path)


def test_help_mentions_config_option():
    text = str(tap.Options())
    assert "-c" in text and "--config" in text
    assert "etc/config.yml" in text


def test_default_config_path_is_etc_config_yml():
    assert tap.Options()["config"] == "etc/config.yml"


def test_bad_value_is_one_line_usage_error_naming_file_and_key(tmp_path):
    path = write(tmp_path, GOOD.replace("udp:25060:interface=127.0.0.1", "udp:70000"))
    with pytest.raises(usage.UsageError) as err:
        tap.Options().parseOptions(["-c", path])
    message = str(err.value)
    assert "\n" not in message
    assert path in message
    assert "sip.listen[0]" in message


def test_unknown_key_is_usage_error_naming_it(tmp_path):
    path = write(tmp_path, GOOD + "bogus_section: 1\n")
    with pytest.raises(usage.UsageError) as err:
        tap.Options().parseOptions(["--config", path])
    assert "bogus_section" in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file_is_one_line_usage_error(tmp_path):
    missing = str(tmp_path / "nope.yml")
    with pytest.raises(usage.UsageError) as err:
        tap.Options().parseOptions(["-c", missing])
    assert missing in str(err.value)
    assert "\n" not in str(err.value)


def test_good_config_is_loaded_by_options(tmp_path):
    options = tap.Options()
    options.parseOptions(["-c", write(tmp_path, GOOD)])
    assert options.loaded.pbx.realm == "pbx.test"


def test_make_service_listens_on_every_configured_transport(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    reactor = Reactor()
    service = make_service(config, reactor, database=sync_database(tmp_path))
    assert os.path.isdir(config.pbx.state_dir)
    service.startService()
    [udp] = reactor.udpPorts
    assert (udp.port, udp.interface) == (25060, "127.0.0.1")
    # SIP over TCP, and the admin API on its default 127.0.0.1:8080
    assert [(p, i) for p, _, _, i in reactor.tcpServers] == [(25060, "127.0.0.1"),
                                                             (8080, "127.0.0.1")]
    assert [(p, i) for p, _, _, _, i in reactor.sslServers] == [(25061, "127.0.0.1")]
    assert os.path.exists(os.path.join(config.pbx.state_dir, "tls", "pbxd-cert.pem"))
    service.stopService()
    assert not udp.listening


def test_udp_listener_does_not_truncate_large_datagrams(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    reactor = Reactor()
    make_service(config, reactor, database=sync_database(tmp_path)).startService()
    [port] = reactor.udpPorts
    assert port.maxPacketSize >= 65507


def test_admin_api_is_not_started_when_admin_listen_is_null(tmp_path):
    config = load_config(write(tmp_path, GOOD + "admin: {listen: null}\n"))
    reactor = Reactor()
    make_service(config, reactor, database=sync_database(tmp_path)).startService()
    assert [p for p, _, _, _ in reactor.tcpServers] == [25060]


def test_database_closes_only_after_every_part_has_stopped(tmp_path):
    from twisted.application.service import Service
    from twisted.internet.defer import Deferred

    config = load_config(write(tmp_path, GOOD + "admin: {listen: null}\n"))
    database = sync_database(tmp_path)
    top = make_service(config, Reactor(), database=database)
    top.startService()
    pending: Deferred = Deferred()

    class SlowToStop(Service):
        def stopService(self):  # noqa: N802
            super().stopService()
            return pending  # e.g. the calls service writing its last CDRs

    SlowToStop().setServiceParent(top.getServiceNamed("state"))
    stopped = top.stopService()
    assert not database.pool.closed
    pending.callback(None)
    assert database.pool.closed
    assert stopped.called


def test_a_certificate_that_is_not_one_stops_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pem"
    bad.write_text("junk\n")
    path = write(tmp_path, GOOD.replace("extensions:", f"""  tls: {{certificate: {bad}, private_key: {bad}}}
admin: {{listen: null}}
extensions:"""))
    options = tap.Options()
    options.parseOptions(["-c", path])
    with pytest.raises(SystemExit) as exit_:
        tap.makeService(options)
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert path in err and "sip.tls.certificate" in err


def test_startup_objects_are_frozen_and_full_collections_made_rare():
    import gc

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # CPython's defaults
        tap.freeze_startup_objects()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (700, 10, tap.FULL_COLLECTION_THRESHOLD)
        assert tap.FULL_COLLECTION_THRESHOLD >= 100 * 10
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
