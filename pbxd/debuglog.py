"""Whether the per-message and per-transition debug events are emitted (layer 0).

twistd writes every event it is given, debug ones included, and building,
formatting and writing one costs about as much as handling a SIP message.
The events that every call produces several times (leg state changes,
transactions ending) are therefore emitted only when the environment
variable ``PBXD_DEBUG`` is set to anything but ``0`` when pbxd starts::

    PBXD_DEBUG=1 twistd -n pbx -c etc/config.yml

Rare debug events (retransmissions, strays, dropped datagrams) are emitted
always.
"""

from __future__ import annotations

import os

__all__ = ["ENABLED"]

ENABLED: bool = os.environ.get("PBXD_DEBUG", "").strip() not in ("", "0")
"""True when the per-call debug events are wanted (read once, at import)."""
