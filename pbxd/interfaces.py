"""Interfaces between the layers (layer 0).

Lower layers talk to upper ones only through these, so ``pbxd.sip`` never
imports ``pbxd.calls`` and applications never import ``pbxd.sip``/``pbxd.rtp``.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def send(data: bytes, address: tuple[str, int]) -> bool:  # type: ignore[misc, empty-body]
        """Send one serialized message. ``address`` is ignored by stream
        connections (they have one peer). Returns False if it could not be sent."""


class ISIPMessageReceiver(Interface):
    """The SIP controller as seen by the transports."""

    def messageReceived(message, transport, source) -> None:  # type: ignore[misc, empty-body]
        """A parsed request or response arrived from ``source`` (host, port)."""

    def malformedReceived(error, transport, source) -> None:  # type: ignore[misc, empty-body]
        """Input from ``source`` failed to parse (a SIPParseError)."""

    def connectionLost(transport) -> None:  # type: ignore[misc, empty-body]
        """A stream connection closed (bindings and transactions on it may go)."""


class IConnector(Interface):
    """Finds or opens a transport to reach a SIP destination (used for requests we originate)."""

    def transportFor(transport_name: str, address: tuple[str, int]):  # type: ignore[misc, empty-body]
        """Return an ISIPTransport for ``transport_name`` ('UDP'/'TCP'/'TLS') to ``address``:
        an existing connection from/to that peer if there is one, the UDP port,
        or a Deferred firing with a new outbound connection."""


class IRequestHandler(Interface):
    """Upper layer (calls) that takes dialog-creating and in-dialog requests from the controller."""

    def requestReceived(request, server_transaction) -> None:  # type: ignore[misc, empty-body]
        """A request that is not REGISTER/OPTIONS and passed validation and authentication."""

    def ackReceived(request, transport, source) -> None:  # type: ignore[misc, empty-body]
        """An ACK for a 2xx (it has no transaction of its own)."""


# --------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------


class IExtensionStore(Interface):
    """Where extensions and their credentials are found."""

    def getExtension(number: str):  # type: ignore[misc, empty-body]
        """Deferred firing with an Extension or None."""


class ILocationStore(Interface):
    """Durable copy of registrar bindings."""

    def load():  # type: ignore[misc, empty-body]
        """Deferred firing with the list of stored bindings (expired ones already dropped)."""

    def save(binding):  # type: ignore[misc, empty-body]
        """Deferred: insert or replace one binding."""

    def remove(aor: str, contact: str):  # type: ignore[misc, empty-body]
        """Deferred: delete one binding."""


class IBanStore(Interface):
    """Durable copy of IP bans."""

    def load():  # type: ignore[misc, empty-body]
        """Deferred firing with a list of (address, until_epoch, reason)."""

    def save(address: str, until: float, reason: str):  # type: ignore[misc, empty-body]
        """Deferred."""

    def remove(address: str):  # type: ignore[misc, empty-body]
        """Deferred."""


class ICDRStore(Interface):
    """Call detail records."""

    def write(cdr) -> object:  # type: ignore[misc, empty-body]
        """Deferred firing once the record is durable."""


# --------------------------------------------------------------------------
# Dialplan and applications (DESIGN.md section 6)
# --------------------------------------------------------------------------


#: What ``ICallContext.dial`` fires with (Asterisk's ``${DIALSTATUS}`` values).
DIAL_STATUSES = ("ANSWER", "BUSY", "NOANSWER", "CHANUNAVAIL", "CANCEL")

#: Hangup causes and the SIP final response they become when the call was not answered
#: (an answered call always ends with BYE).
HANGUP_CAUSES = {
    "normal": 480,  # not answered and nothing more to do: Temporarily Unavailable
    "busy": 486,
    "no_answer": 480,
    "unavailable": 480,
    "not_found": 404,
    "rejected": 603,
    "congestion": 503,
    "failure": 500,
}


class CallHungUp(Exception):  # noqa: N818 - the name reads as what happened
    """The call ended while an operation was waiting on it.

    Every pending Deferred of an :class:`ICallContext` operation (play,
    collect_digits, record, echo, dial, bridge, answer) fails with this when the
    caller hangs up; operations started after the end fail with it at once.
    ``cause`` is the hangup cause. The dialplan runner stops quietly on it.
    """

    def __init__(self, cause: str = "normal") -> None:
        super().__init__(cause)
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Goto:
    """Returned (as the Deferred's result) by an application to continue the dialplan
    at ``number`` in ``context`` (``None``: the context the call is in now)."""

    number: str
    context: str | None = None


class ICallContext(Interface):
    """What a dialplan application sees of a call (the plugin API contract).

    One ICallContext is the caller's side of one call, from the moment the
    dialplan starts until it ends. It never exposes SIP or RTP objects.

    Every operation returns a Deferred. While the call lives they fire as
    documented; once the caller hangs up, pending ones fail with
    :class:`CallHungUp` and new ones fail with it immediately (``hangup``
    and ``when_hungup`` excepted). Digits (RFC 4733 telephone-events and SIP
    INFO ``application/dtmf-relay`` alike) pressed while no operation is
    listening are buffered in order ("type-ahead") and consumed by the next
    ``play(..., interrupt_digits=...)`` or ``collect_digits``.
    """

    call_id = Attribute("str: a unique id of the call, for logs and CDRs (${UNIQUEID})")
    exten = Attribute("str: the number the caller dialled (what the dialplan was entered with)")
    caller = Attribute("str: the caller's number (${CALLERID(num)})")
    caller_name = Attribute("str: the caller's display name, '' if none (${CALLERID(name)})")
    context = Attribute("str: the dialplan context the call entered (the caller's extension's)")
    variables = Attribute(
        "dict[str, str]: channel variables. Applications read and set them; the dialplan"
        " substitutes ${NAME} in step arguments. The runner keeps EXTEN and CONTEXT current;"
        " dial sets DIALSTATUS."
    )
    clock = Attribute("IReactorTime for timers, so applications never import the reactor")
    answered = Attribute("bool: True once the call is answered")
    hungup = Attribute("bool: True once the call has ended (either side)")
    hangup_cause = Attribute("str | None: why it ended, a key of HANGUP_CAUSES, once ended")

    def answer():  # type: ignore[misc, empty-body]
        """Answer the call (200 OK with media). Deferred firing with None once answered
        (at once if it already is)."""

    def hangup(cause: str = "normal"):  # type: ignore[misc, empty-body]
        """End the call with ``cause`` (a key of HANGUP_CAUSES): BYE if answered, else the
        final response the cause maps to. Deferred firing with None once ended;
        idempotent (a second call fires at once)."""

    def when_hungup():  # type: ignore[misc, empty-body]
        """A new Deferred firing with the hangup cause (str) when the call ends (at once
        if it has). Never fails. Use it to stop timers or race a long operation."""

    def play(prompt: str, interrupt_digits: str = ""):  # type: ignore[misc, empty-body]
        """Play one prompt to the caller, paced in real time: a prompt name (see
        :func:`pbxd.prompts.resolve_prompt`), a path to an 8 kHz mono 16-bit WAV file, or a
        tone ``tone:ringback`` / ``tone:busy`` / ``tone:beep`` (played for one cadence).
        It does not answer: playing on an unanswered call sends early media (183).

        Fires with ``""`` when the prompt has finished, or with the digit that stopped it
        if ``interrupt_digits`` is non-empty and the caller pressed one of them (a
        buffered digit counts; other digits stay buffered). Fails with
        ``FileNotFoundError``/``ValueError`` for an unknown prompt or unusable file."""

    def collect_digits(max_digits: int = 1, timeout: float = 5.0,  # type: ignore[misc, empty-body]
                       terminators: str = "#", first_timeout: float | None = None):
        """Collect up to ``max_digits`` digits. Fires with the digits collected (without a
        terminator) when ``max_digits`` are in, a terminator is pressed, or ``timeout``
        seconds pass without a digit (``first_timeout`` for the first one, if given);
        ``""`` if nothing was pressed."""

    def record(path: str, max_seconds: float = 60.0,  # type: ignore[misc, empty-body]
               silence_seconds: float = 0.0, stop_digits: str = "#"):
        """Record the caller to ``path`` (8 kHz mono 16-bit WAV; parent directories must
        exist). Stops after ``max_seconds``, after ``silence_seconds`` of silence (0:
        never), on one of ``stop_digits``, or at hangup (the file is kept then). Fires with
        ``{"path": str, "seconds": float, "reason": "max"|"silence"|"digit"|"hangup",
        "digit": str}``; it does not fail on hangup."""

    def echo():  # type: ignore[misc, empty-body]
        """Send the caller's own audio back to them until the call ends. Fires with None
        when the call ends (it does not fail with CallHungUp)."""

    def dial(targets, timeout: float = 30.0):  # type: ignore[misc, empty-body]
        """Ring ``targets`` (a sequence of extension numbers or SIP URIs) all at once for
        at most ``timeout`` seconds; the caller hears ring-back meanwhile. The first to
        answer is bridged with the caller (the others are cancelled) and the Deferred
        fires with ``"ANSWER"`` when that bridge ends (the caller may still be up,
        e.g. the callee hung up). Otherwise it fires with ``"BUSY"`` (every target
        busy), ``"NOANSWER"`` (the timeout, or a target rang and refused),
        ``"CHANUNAVAIL"`` (no target reachable: not registered, unknown, errors) or
        ``"CANCEL"`` (the caller hung up while ringing). Never fails with CallHungUp."""

    def bridge(other):  # type: ignore[misc, empty-body]
        """Connect this call's audio with ``other`` (another ICallContext, answered).
        Fires with None when either side hangs up."""

    def transfer(target: str):  # type: ignore[misc, empty-body]
        """Blind-transfer the caller to ``target`` (number or SIP URI). Fires with True if
        the caller was handed over (this call then ends with cause ``normal``), False if
        the transfer was refused."""

    def service(interface):  # type: ignore[misc, empty-body]
        """The provider of ``interface`` (a layer-0 interface such as
        :class:`IVoicemailService`) that the server makes available to applications, so an
        application reaches shared services without importing lower layers. Raises
        ``LookupError`` naming the interface when the server has none."""


class IDialplanApplication(Interface):
    """A dialplan application, built-in or from a plugin.

    Provide it (and ``twisted.plugin.IPlugin``) on an object at module level in a
    plugin package (``pbxd.plugins`` or a package named in ``plugins:``). An
    application may also have an optional ``check_args(args)`` method: the
    dialplan calls it at startup and reload with each step's raw arguments and
    stops with the rule's name if it raises ``ValueError``.
    """

    name = Attribute("the name used in the dialplan, e.g. 'dial' (letters, digits, _ . -)")

    def execute(call, args):  # type: ignore[misc, empty-body]
        """Run on ``call`` (an ICallContext) with ``args`` from the dialplan (any YAML value,
        ``${...}`` already substituted). Return a Deferred firing with None to go on with the
        next step or a :class:`Goto` to jump. A failure ends the call with cause
        ``failure``."""


#: Greeting kinds a voicemail box may record (``voicemail: {greeting: ...}``).
GREETING_KINDS = ("unavailable", "busy", "name")


class IVoicemailService(Interface):
    """Voicemail boxes, as dialplan applications see them (issue: voicemail).

    Reached with ``call.service(IVoicemailService)``. A box is named by its
    extension number. Messages are WAV files in ``state_dir/voicemail/<box>/``
    plus an index in the store; a message is durable (file and directory
    fsync'ed, index committed) before :meth:`save` fires. A message is a dict
    ``{"id": str, "box": str, "caller": str, "caller_name": str, "time": float
    (epoch), "duration": float, "folder": "new"|"old", "path": str}``.
    Every method returning a Deferred fails with ``KeyError`` for an unknown box
    (``box_exists`` excepted) and ``ValueError`` for a malformed one.
    """

    max_message_seconds = Attribute("float: a message stops recording after this")
    min_message_seconds = Attribute("float: shorter messages are discarded, not saved")
    silence_seconds = Attribute("float: a message stops after this much silence (0: never)")
    max_messages = Attribute("int: messages a box holds at most (new and old)")

    def box_exists(box: str):  # type: ignore[misc, empty-body]
        """Deferred[bool]: True if ``box`` is a voicemail box (an extension)."""

    def recording_path(box: str):  # type: ignore[misc, empty-body]
        """A fresh temporary WAV path on the box's file system (its directory exists) for
        ``ICallContext.record``; hand it to :meth:`save` or :meth:`set_greeting`, or to
        :meth:`discard`."""

    def discard(path: str):  # type: ignore[misc, empty-body]
        """Delete a temporary recording that will not be kept (no error if gone)."""

    def save(box: str, caller: str, duration: float, temp_path: str,  # type: ignore[misc, empty-body]
             caller_name: str = ""):
        """Move the recording at ``temp_path`` into ``box`` as a new message. Fires with
        the message dict once the file is in place and fsync'ed and the index row
        committed; then message-waiting listeners are told the new counts."""

    def counts(box: str):  # type: ignore[misc, empty-body]
        """Deferred[tuple[int, int]]: (new, old) messages of ``box``."""

    def messages(box: str):  # type: ignore[misc, empty-body]
        """Deferred[list[message]]: new messages first, then old, each oldest first."""

    def mark_old(box: str, message_id: str):  # type: ignore[misc, empty-body]
        """Deferred[bool]: move a new message to the old folder (False if unknown);
        listeners hear the new counts."""

    def delete(box: str, message_id: str):  # type: ignore[misc, empty-body]
        """Deferred[bool]: delete a message, index and file (False if unknown)."""

    def greeting(box: str, kind: str):  # type: ignore[misc, empty-body]
        """Deferred[str | None]: the path of the box's own ``kind`` greeting (one of
        :data:`GREETING_KINDS`), None when it has none (play a default prompt)."""

    def set_greeting(box: str, kind: str, temp_path: str):  # type: ignore[misc, empty-body]
        """Deferred[str]: keep the recording at ``temp_path`` as the box's ``kind``
        greeting (durably, replacing the old one); fires with its path."""

    def check_pin(box: str, pin: str):  # type: ignore[misc, empty-body]
        """Deferred[bool]: True if ``pin`` opens ``box`` (constant-time comparison).
        A box without a PIN cannot be opened."""

    def set_pin(box: str, pin: str):  # type: ignore[misc, empty-body]
        """Deferred[None]: change the box's PIN (4-12 digits, else ValueError)."""

    def report_failed_login(box: str, call_id: str):  # type: ignore[misc, empty-body]
        """A wrong PIN was entered on call ``call_id``: counted like a failed SIP
        authentication from the caller's address (bans)."""

    def subscribe(listener):  # type: ignore[misc, empty-body]
        """Call ``listener(box, new, old)`` after every change of a box's counts.
        Returns a callable that removes the listener."""


class IRecordingService(Interface):
    """Call recording, as dialplan applications see it (``record_call``).

    Reached with ``call.service(IRecordingService)``. A marked call has every
    bridge made after the mark (``dial`` answered) recorded to a WAV file in
    ``recording.folder``: both parties mixed into one track, or in stereo one
    party per channel (left: the caller, right: the callee). With ``announce``
    both parties first hear the ``call-recorded`` prompt. The CDR names the
    recording (``recording``: its id in the admin API's ``/recordings``).
    """

    def record(call_id: str, stereo: bool | None = None,  # type: ignore[misc, empty-body]
               announce: bool | None = None) -> None:
        """Mark call ``call_id`` (``ICallContext.call_id``) for recording; None takes the
        ``recording:`` section's default. Marking again replaces the options."""

    def unmark(call_id: str) -> bool:  # type: ignore[misc, empty-body]
        """Bridges made from now on are not recorded (one already recording goes on);
        False if the call was not marked."""

    def is_marked(call_id: str) -> bool:  # type: ignore[misc, empty-body]
        """True if ``call_id`` was marked with :meth:`record`."""
