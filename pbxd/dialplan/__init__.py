"""The dialplan (layer 5): match expressions, variables, routing, running calls, and
finding the applications. It sees calls only as ``pbxd.interfaces.ICallContext``.

- :class:`Dialplan` (``Dialplan.compile(config.dialplan, applications)``, ``route``)
- :class:`DialplanRunner` (``run(call) -> Deferred[RunResult]``)
- :func:`discover_applications` (``twisted.plugin`` over ``pbxd.plugins`` and ``plugins:``)
"""

from pbxd.dialplan.engine import Dialplan, Match
from pbxd.dialplan.registry import discover_applications
from pbxd.dialplan.runner import DialplanRunner, RunResult

__all__ = ["Dialplan", "DialplanRunner", "Match", "RunResult", "discover_applications"]
