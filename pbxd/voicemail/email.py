"""Voicemail to email: each new message sent with its WAV attached (layer 4).

:func:`build_email` makes the MIME message (stdlib :mod:`email`);
:class:`EmailSender` sends it through ``voicemail.smtp`` with Twisted's SMTP
client (:func:`twisted.mail.smtp.sendmail`: AUTH when a username is set,
STARTTLS required when ``starttls`` is on) to the address ``voicemail.email``
gives for the box. A failed send is logged; the message stays in the box.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger

__all__ = ["EmailSender", "build_email"]

Send = Callable[..., Deferred]


def build_email(message: Mapping[str, Any], sender: str, to: str, audio: bytes) -> bytes:
    """The mail for a saved voicemail ``message`` (a message dict), WAV ``audio`` attached."""
    caller = message.get("caller") or "unknown"
    name = message.get("caller_name") or ""
    who = f"{name} <{caller}>" if name else caller
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(message["time"])))
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = f"New voicemail from {who} in box {message['box']}"
    mail["Date"] = formatdate(float(message["time"]))
    mail["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1])
    mail.set_content(
        f"Box {message['box']} has a new message.\n\n"
        f"From:     {who}\nReceived: {when}\nLength:   {float(message['duration']):.0f} s\n")
    mail.add_attachment(audio, maintype="audio", subtype="wav",
                        filename=f"{message['id']}.wav")
    return mail.as_bytes()


class EmailSender:
    """Sends saved messages of the boxes in ``addresses`` (``voicemail.email``).

    ``send`` defaults to :func:`twisted.mail.smtp.sendmail`; tests give a fake.
    """

    log = Logger()

    def __init__(self, smtp: Any, addresses: Mapping[str, str], reactor: Any, *,
                 send: Send | None = None) -> None:
        self.smtp = smtp
        self.addresses = dict(addresses)
        self.reactor = reactor
        self._send = send
        self.sent = 0
        self.failed = 0

    def message_saved(self, message: Mapping[str, Any]) -> Deferred:
        """The voicemail service's ``on_saved`` hook; fires when sent (never fails)."""
        to = self.addresses.get(message["box"])
        if to is None:
            return succeed(None)
        try:
            with open(message["path"], "rb") as f:
                audio = f.read()
        except OSError as e:
            self.log.warn("voicemail {id}: cannot attach {path}: {error}", id=message["id"],
                          path=message["path"], error=e)
            return succeed(None)
        mail = build_email(message, self.smtp.sender, to, audio)
        d = maybeDeferred(self._sender(), self.smtp.host, self.smtp.sender, [to], mail,
                          port=self.smtp.port, reactor=self.reactor,
                          username=self.smtp.username, password=self.smtp.password,
                          requireAuthentication=self.smtp.username is not None,
                          requireTransportSecurity=self.smtp.starttls)

        def sent(_: Any) -> None:
            self.sent += 1
            self.log.info("voicemail {id} mailed to {to}", id=message["id"], to=to)

        def failed(failure: Any) -> None:
            self.failed += 1
            self.log.warn("voicemail {id} not mailed to {to}: {error}", id=message["id"], to=to,
                          error=failure.getErrorMessage())

        return d.addCallbacks(sent, failed)

    def _sender(self) -> Send:
        if self._send is not None:
            return self._send
        from twisted.mail.smtp import sendmail

        return sendmail
