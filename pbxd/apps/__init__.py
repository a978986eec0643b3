"""pbxd's built-in dialplan applications (layer 5).

They are written exactly like third-party plugins: each is an object
providing ``IPlugin`` and ``IDialplanApplication`` that sees only the
``ICallContext``; ``pbxd/plugins/builtin_apps.py`` exposes them to
``twisted.plugin`` discovery. See ``docs/plugins.md`` for their arguments.
"""
