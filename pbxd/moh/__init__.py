"""Music on hold (layer 4): :class:`~pbxd.moh.hold.HoldMusic` plays music to the party a
phone puts on hold. ``default/`` holds pbxd's own music, made by ``scripts/make-moh``."""

import os

DEFAULT_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default")
