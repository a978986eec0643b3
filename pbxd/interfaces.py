"""Interfaces between the layers (layer 0).

Lower layers talk to upper ones only through these, so ``pbxd.sip`` never
imports ``pbxd.calls`` and applications never import ``pbxd.sip``/``pbxd.rtp``.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

# --------------------------------------------------------------------------
# SIP transport and controller
# --------------------------------------------------------------------------


class ISIPTransport(Interface):
    """Something SIP bytes can be sent over: a UDP port or one TCP/TLS connection."""

    name = Attribute("'UDP', 'TCP' or 'TLS'")
    reliable = Attribute("True for stream transports (TCP, TLS)")
    secure = Attribute("True for TLS")
    connected = Attribute("False once a stream connection has closed; always True for UDP")
    local_address = Attribute("(host, port) this transport listens on / is bound to")
    peer = Attribute("(host, port) of the remote end for a stream connection, None for UDP")

    def send(data: bytes, address: tuple[str, int]) -> bool:  # type: ignore[misc]
        """Send one serialized message. ``address`` is ignored by stream
        connections (they have one peer). Returns False if it could not be sent."""


class ISIPMessageReceiver(Interface):
    """The SIP controller as seen by the transports."""

    def messageReceived(message, transport, source) -> None:  # type: ignore[misc]
        """A parsed request or response arrived from ``source`` (host, port)."""

    def malformedReceived(error, transport, source) -> None:  # type: ignore[misc]
        """Input from ``source`` failed to parse (a SIPParseError)."""

    def connectionLost(transport) -> None:  # type: ignore[misc]
        """A stream connection closed (bindings and transactions on it may go)."""


class IConnector(Interface):
    """Finds or opens a transport to reach a SIP destination (used for requests we originate)."""

    def transportFor(transport_name: str, address: tuple[str, int]):  # type: ignore[misc]
        """Return an ISIPTransport for ``transport_name`` ('UDP'/'TCP'/'TLS') to ``address``:
        an existing connection from/to that peer if there is one, the UDP port,
        or a Deferred firing with a new outbound connection."""


class IRequestHandler(Interface):
    """Upper layer (calls) that takes dialog-creating and in-dialog requests from the controller."""

    def requestReceived(request, server_transaction) -> None:  # type: ignore[misc]
        """A request that is not REGISTER/OPTIONS and passed validation and authentication."""

    def ackReceived(request, transport, source) -> None:  # type: ignore[misc]
        """An ACK for a 2xx (it has no transaction of its own)."""


# --------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------


class IExtensionStore(Interface):
    """Where extensions and their credentials are found."""

    def getExtension(number: str):  # type: ignore[misc]
        """Deferred firing with an Extension or None."""


class ILocationStore(Interface):
    """Durable copy of registrar bindings."""

    def load():  # type: ignore[misc]
        """Deferred firing with the list of stored bindings (expired ones already dropped)."""

    def save(binding):  # type: ignore[misc]
        """Deferred: insert or replace one binding."""

    def remove(aor: str, contact: str):  # type: ignore[misc]
        """Deferred: delete one binding."""


class IBanStore(Interface):
    """Durable copy of IP bans."""

    def load():  # type: ignore[misc]
        """Deferred firing with a list of (address, until_epoch, reason)."""

    def save(address: str, until: float, reason: str):  # type: ignore[misc]
        """Deferred."""

    def remove(address: str):  # type: ignore[misc]
        """Deferred."""


class ICDRStore(Interface):
    """Call detail records."""

    def write(cdr) -> object:  # type: ignore[misc]
        """Deferred firing once the record is durable."""


# --------------------------------------------------------------------------
# Dialplan and applications (DESIGN.md section 6)
# --------------------------------------------------------------------------


class ICallContext(Interface):
    """What a dialplan application sees of a call. Never SIP or RTP objects."""

    exten = Attribute("the dialled number")
    caller = Attribute("the caller's number")
    caller_name = Attribute("the caller's display name")
    variables = Attribute("dict of channel variables")

    def answer():  # type: ignore[misc]
        """Deferred firing when the call is answered."""

    def hangup(cause: str = "normal"):  # type: ignore[misc]
        """Deferred firing when the call has ended."""


class IDialplanApplication(Interface):
    """A dialplan application, built-in or from a plugin."""

    name = Attribute("the name used in the dialplan, e.g. 'dial'")

    def execute(call, args):  # type: ignore[misc]
        """Run on ``call`` (an ICallContext) with ``args`` from the dialplan; return a Deferred."""
