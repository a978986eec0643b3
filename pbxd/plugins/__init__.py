"""pbxd's plugin package: dropin modules providing dialplan applications.

Like ``twisted.plugins``, its path is extended with every ``pbxd/plugins``
directory on ``sys.path`` (without an ``__init__.py``), so other
distributions can ship dropins here. See ``docs/plugins.md``.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # noqa: F821 - set by the import system
__all__: list[str] = []
