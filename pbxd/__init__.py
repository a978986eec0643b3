"""pbxd: a PBX and telephony server framework built on Twisted."""

__version__ = "0.1.0"
