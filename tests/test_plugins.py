"""Discovery of dialplan applications, and the example plugin of docs/plugins.md
installed through ``plugins:`` and called through the dialplan."""

from __future__ import annotations

import datetime
import importlib
import sys
import textwrap
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import pbxd.plugins
from pbxd.config import parse_config
from pbxd.dialplan import discover_applications
from pbxd.errors import ConfigError
from pbxd.testing import FakeCall, runner_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

APP_MODULE = """
from twisted.internet.defer import succeed
from twisted.plugin import IPlugin
from zope.interface import implementer
from pbxd.interfaces import IDialplanApplication

@implementer(IPlugin, IDialplanApplication)
class App:
    def __init__(self, name):
        self.name = name
    def execute(self, call, args):
        call.variables["RAN"] = self.name
        return succeed(None)

{assignments}
"""


def write_module(path: Path, assignments: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(APP_MODULE.format(assignments=textwrap.dedent(assignments)))


@pytest.fixture
def pkg_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("tplug_")]:
        del sys.modules[name]


def test_plugins_package_finds_the_builtins():
    apps = discover_applications()
    assert {"answer", "dial", "menu", "playback", "echo", "wait", "set", "goto", "hangup"} <= set(apps)


def test_a_plugins_package_adds_its_applications(pkg_dir):
    (pkg_dir / "tplug_a").mkdir()
    (pkg_dir / "tplug_a" / "__init__.py").write_text("")
    write_module(pkg_dir / "tplug_a" / "one.py", "x = App('greet')\ny = App('shout')\n")
    apps = discover_applications(["tplug_a"])
    assert {"greet", "shout", "answer"} <= set(apps)


def test_a_plain_module_can_be_named_too(pkg_dir):
    write_module(pkg_dir / "tplug_mod.py", "x = App('solo')\n")
    assert "solo" in discover_applications(["tplug_mod"], builtin=None)


def test_duplicate_names_stop_startup_naming_both_modules(pkg_dir):
    (pkg_dir / "tplug_dup").mkdir()
    (pkg_dir / "tplug_dup" / "__init__.py").write_text("")
    write_module(pkg_dir / "tplug_dup" / "mine.py", "x = App('answer')\n")
    with pytest.raises(ConfigError) as info:
        discover_applications(["tplug_dup"])
    assert info.value.key == "plugins[0]"
    assert "'answer'" in str(info.value)
    assert "pbxd.plugins.builtin_apps" in str(info.value)
    assert "tplug_dup.mine" in str(info.value)


def test_a_bad_application_name_is_refused(pkg_dir):
    write_module(pkg_dir / "tplug_badname.py", "x = App('two words')\n")
    with pytest.raises(ConfigError, match="bad name"):
        discover_applications(["tplug_badname"], builtin=None)


def test_a_package_that_cannot_be_imported_is_named():
    with pytest.raises(ConfigError) as info:
        discover_applications(["pbxd_does_not_exist"])
    assert info.value.key == "plugins[0]"


def test_other_distributions_can_drop_modules_into_pbxd_plugins(tmp_path, monkeypatch):
    # a pbxd/plugins directory without __init__.py elsewhere on sys.path (pluginPackagePaths)
    write_module(tmp_path / "pbxd" / "plugins" / "tplug_dropin.py", "x = App('dropped')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.reload(pbxd.plugins)
        assert str(tmp_path / "pbxd" / "plugins") in pbxd.plugins.__path__
        assert "dropped" in discover_applications()
    finally:
        monkeypatch.undo()
        importlib.reload(pbxd.plugins)
        sys.modules.pop("pbxd.plugins.tplug_dropin", None)
    assert "dropped" not in discover_applications()


def _at(year, month, day, hour, minute) -> Clock:
    clock = Clock()
    clock.advance(datetime.datetime(year, month, day, hour, minute, tzinfo=datetime.UTC).timestamp())
    return clock


EXAMPLE_CONFIG = {
    "plugins": ["pbxd_example"],
    "dialplan": {
        "default": [{"match": "500", "do": [{"office_hours": {
            "days": ["mon", "tue", "wed", "thu", "fri"], "hours": "09:00-17:00",
            "utc_offset": 1, "open": "sales,100", "closed": "closed,s",
            "closed_prompt": "goodbye"}}]}],
        "sales": [{"match": "100", "do": [{"dial": {"to": "1001&1002", "timeout": 20}}]}],
        "closed": [{"match": "s", "do": [{"playback": "leave-message"}, "hangup"]}],
    },
}


class ExamplePluginTests(SynchronousTestCase):
    """The worked example of docs/plugins.md, loaded through ``plugins:``."""

    def setUp(self):
        sys.path.insert(0, str(EXAMPLES))
        self.addCleanup(sys.path.remove, str(EXAMPLES))
        self.runner = runner_for(parse_config(EXAMPLE_CONFIG))

    def test_open_hours_go_to_the_sales_ring_group(self):
        # Wednesday 2024-05-15 12:30 UTC is 13:30 at utc_offset 1
        call = FakeCall(exten="500", clock=_at(2024, 5, 15, 12, 30),
                        dial_results={"1002": "ANSWER"})
        result = self.successResultOf(self.runner.run(call))
        assert (result.context, result.number) == ("sales", "100")
        assert call.variables["OFFICE"] == "open" and call.variables["WEEKDAY"] == "wed"
        assert call.dialled[0].targets == ("1001", "1002")
        assert call.played == []

    def test_closed_plays_the_prompt_and_goes_to_the_closed_context(self):
        # 16:30 UTC is 17:30 local: closed
        call = FakeCall(exten="500", clock=_at(2024, 5, 15, 16, 30))
        result = self.successResultOf(self.runner.run(call))
        assert (result.context, result.status) == ("closed", "completed")
        assert call.variables["OFFICE"] == "closed"
        assert call.played == ["goodbye", "leave-message"]
        assert call.dialled == []

    def test_weekend_is_closed(self):
        call = FakeCall(exten="500", clock=_at(2024, 5, 18, 12, 0))  # a Saturday
        self.successResultOf(self.runner.run(call))
        assert (call.variables["WEEKDAY"], call.variables["OFFICE"]) == ("sat", "closed")

    def test_its_check_args_stops_a_bad_dialplan_naming_the_rule(self):
        bad = dict(EXAMPLE_CONFIG, dialplan={"default": [
            {"match": "500", "do": [{"office_hours": {"open": "1", "closed": "2",
                                                      "days": ["someday"]}}]}]})
        with pytest.raises(ConfigError) as info:
            runner_for(parse_config(bad))
        assert info.value.key == "dialplan.default[0].do[0]"
        assert "someday" in str(info.value)

    def test_without_the_plugins_entry_the_application_is_unknown(self):
        with pytest.raises(ConfigError, match="unknown application 'office_hours'"):
            runner_for(parse_config(dict(EXAMPLE_CONFIG, plugins=[])))
