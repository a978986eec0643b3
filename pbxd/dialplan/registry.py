"""Finding dialplan applications with ``twisted.plugin``.

Applications are objects providing :class:`~pbxd.interfaces.IDialplanApplication`
(and ``twisted.plugin.IPlugin``) at module level in a plugin package:

- ``pbxd.plugins``, whose path is extended with ``pluginPackagePaths`` so any
  ``pbxd/plugins/`` directory on ``sys.path`` without an ``__init__.py`` (another
  distribution's dropins) is searched too; pbxd's own built-ins are there;
- each package named in the configuration's ``plugins:`` list (every module
  in it is searched). A plain module named there is searched too: its
  module-level objects providing IDialplanApplication are taken.

Two applications with the same name stop startup: :func:`discover_applications`
raises :class:`pbxd.errors.ConfigError` naming both modules.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

from twisted.logger import Logger
from twisted.plugin import getCache

from pbxd.errors import ConfigError
from pbxd.interfaces import IDialplanApplication

__all__ = ["BUILTIN_PACKAGE", "discover_applications"]

BUILTIN_PACKAGE = "pbxd.plugins"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
log = Logger()


def discover_applications(packages: Sequence[str] = (),
                          builtin: str | None = BUILTIN_PACKAGE) -> dict[str, Any]:
    """Name -> application for every application in ``builtin`` (``pbxd.plugins``,
    or None to skip it) and in ``packages`` (``Config.plugins``).

    Raises ConfigError (key ``plugins[i]`` for a package that cannot be
    imported, ``plugins`` for a duplicate or badly named application).
    """
    found: dict[str, tuple[Any, str]] = {}
    sources: list[tuple[str, str]] = []
    if builtin is not None:
        sources.append((builtin, "plugins"))
    sources.extend((name, f"plugins[{i}]") for i, name in enumerate(packages))
    for package, key in sources:
        module = _import(package, key)
        for app, where in _applications(module):
            name = getattr(app, "name", None)
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ConfigError(key, f"{where} provides an application with a bad name {name!r}")
            if name in found:
                raise ConfigError(key, f"two applications are named {name!r}:"
                                  f" in {found[name][1]} and in {where}")
            found[name] = (app, where)
            log.debug("Dialplan application {name} from {where}", name=name, where=where)
    return {name: app for name, (app, _) in found.items()}


def _import(package: str, key: str) -> ModuleType:
    try:
        return importlib.import_module(package)
    except Exception as exc:
        raise ConfigError(key, f"cannot import plugin package {package!r}:"
                          f" {type(exc).__name__}: {exc}") from None


def _applications(module: ModuleType) -> Iterator[tuple[Any, str]]:
    """(application, module name) for each application in a plugin package or module."""
    if not hasattr(module, "__path__"):
        for attr in vars(module).values():
            if IDialplanApplication.providedBy(attr):
                yield attr, module.__name__
        return
    for dropin in sorted(getCache(module).values(), key=lambda d: d.moduleName):
        for plugin in dropin.plugins:
            app = IDialplanApplication(plugin, None)
            if app is not None:
                yield app, dropin.moduleName
