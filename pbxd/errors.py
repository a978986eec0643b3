"""Exception types shared by every layer (layer 0: imports nothing of pbxd)."""

from __future__ import annotations

from typing import Any


class PBXError(Exception):
    """Base class of pbxd's own errors."""


class ConfigError(PBXError):
    """A configuration value is missing, unknown or invalid.

    ``str()`` gives one line naming the file and the dotted key, e.g.
    ``etc/config.yml: sip.listen[0]: port 70000 is out of range 1-65535``.
    """

    def __init__(self, key: str, message: str, file: str | None = None) -> None:
        self.key = key
        self.message = message
        self.file = file
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        return f"{where}{self.key}: {self.message}"


class SIPParseError(PBXError):
    """A SIP message (or a stream of them) could not be parsed.

    ``reason`` is a short human text suitable for a 400 reason phrase.
    ``request`` is a best-effort :class:`pbxd.sip.message.Request` holding the
    request line, Via, From, To, Call-ID and CSeq that could be recovered, so a
    400 can be formed with ``make_response(error.request, 400, error.reason)``;
    it is ``None`` when no response can be formed (then the input is dropped).
    ``fatal`` is true for stream framing errors after which the connection
    cannot be resynchronised and must be closed. ``status`` is the response
    code to answer with when one can be formed: 400, or 513 when a size limit
    (message size, header count or length) was exceeded.
    """

    def __init__(self, reason: str, request: Any = None, fatal: bool = False,
                 status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request = request
        self.fatal = fatal
        self.status = status


class AuthenticationError(PBXError):
    """Credentials were presented and are wrong (counts toward bans)."""


class StaleNonce(AuthenticationError):
    """The credentials were right but the nonce has expired: re-challenge with stale=true."""
