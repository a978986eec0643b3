"""``twistd pbx``: command-line options and the service maker (layer 7).

``Options`` only parses and validates: ``postOptions`` loads the typed
configuration, compiles its dialplan (:func:`pbxd.wiring_dialplan.compile_dialplan`)
and turns any :class:`~pbxd.errors.ConfigError` into a one-line
``UsageError`` naming the file and the key. The server itself is built in
:func:`makeService` by :func:`pbxd.service.make_service`.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.python import usage

from pbxd.config import load_config
from pbxd.errors import ConfigError
from pbxd.wiring_dialplan import compile_dialplan


class Options(usage.Options):
    """``twistd pbx [-c FILE]``."""

    synopsis = "[-c etc/config.yml]"
    longdesc = "Run the pbxd PBX: SIP over UDP, TCP and TLS as configured in a YAML file."
    optParameters = [
        ["config", "c", "etc/config.yml", "Path to the YAML configuration file."],
    ]

    def postOptions(self) -> None:
        """Load and validate the configuration; a bad one is a UsageError."""
        try:
            self.loaded = load_config(self["config"])
            compile_dialplan(self.loaded)  # unknown applications, bad patterns, bad args
        except ConfigError as e:
            raise usage.UsageError(str(e).splitlines()[0] if str(e) else repr(e)) from None


def makeService(options: Options) -> Any:
    """The server's ``MultiService`` for the loaded configuration.

    A configuration error found only while building (a certificate file that is
    readable but not a certificate, say) stops twistd with one line naming the
    file and the key, exit status 1, like the errors ``postOptions`` finds.
    """
    from pbxd.service import make_service

    try:
        service = make_service(options.loaded)
    except ConfigError as e:
        if e.file is None:
            e.file = options["config"]
        sys.stderr.write(f"twistd pbx: {e}\n")
        raise SystemExit(1) from None
    freeze_startup_objects()
    return service


#: Full (generation 2) collections only after this many generation-1 collections
#: (CPython's default is 10). See :func:`freeze_startup_objects`.
FULL_COLLECTION_THRESHOLD = 1000


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, configuration, the built server) to the
    garbage collector's permanent generation, and make full collections rare.

    The startup objects live as long as the process, yet each full collection would
    walk them all again: under call load that was about a tenth of pbxd's CPU time.
    Under load the live set is large for another reason too: every transaction is
    kept for Timer J/K/L/M (32 s on UDP) and every binding for its expiry, so a full
    collection walks hundreds of thousands of objects, and with CPython's default
    thresholds one ran every few seconds: 35-45 % of the CPU of a digest REGISTER at
    400/s (``bench/stack.py``, 4,000 registrations, GC on vs off). pbxd's hot paths
    leave no cyclic garbage (``tests/test_calls_gc.py``), so young collections, which
    still run as usual, free what little there is; a full collection still runs, 100
    times more rarely than by default.
    """
    import gc

    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_THRESHOLD)
