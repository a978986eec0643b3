"""Voicemail to email: the MIME message and the sender (a fake SMTP send, no sockets)."""

from __future__ import annotations

import email
from email import policy

from test_voicemail_store import write_wav
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock

from pbxd.configschema import SMTPConfig
from pbxd.voicemail.email import EmailSender, build_email

MESSAGE = {"id": "msg-1700000000-0badcafe", "box": "1000", "caller": "2000",
           "caller_name": "Bob", "time": 1_700_000_000.0, "duration": 5.2, "folder": "new"}


def test_mail_has_the_wav_attached_and_says_who_called():
    raw = build_email(MESSAGE, "pbx@example.org", "alice@example.org", b"RIFFdata")
    mail = email.message_from_bytes(raw, policy=policy.default)
    assert mail["To"] == "alice@example.org" and mail["From"] == "pbx@example.org"
    assert "Bob <2000>" in mail["Subject"] and "1000" in mail["Subject"]
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_content_type() == "audio/wav"
    assert attachment.get_filename() == "msg-1700000000-0badcafe.wav"
    assert attachment.get_content() == b"RIFFdata"
    assert "2023-11-14 22:13:20 UTC" in mail.get_body(("plain",)).get_content()


def test_sender_sends_through_the_configured_server(tmp_path):
    calls = []

    def send(host, sender, to, mail, **kw):
        calls.append((host, sender, to, mail, kw))
        return succeed(None)

    path = write_wav(tmp_path / "m.wav", 0.5)
    smtp = SMTPConfig("mail.example.org", 2525, "pbx@example.org", "u", "p", True)
    sender = EmailSender(smtp, {"1000": "alice@example.org"}, Clock(), send=send)
    sender.message_saved({**MESSAGE, "path": path})
    sender.message_saved({**MESSAGE, "box": "1001", "path": path})  # no address: not sent
    ((host, frm, to, mail, kw),) = calls
    assert (host, frm, to) == ("mail.example.org", "pbx@example.org", ["alice@example.org"])
    assert kw["port"] == 2525 and kw["username"] == "u" and kw["requireTransportSecurity"]
    attachment = next(email.message_from_bytes(mail, policy=policy.default).iter_attachments())
    assert attachment.get_content() == open(path, "rb").read()
    assert sender.sent == 1


def test_a_failed_send_is_counted_not_raised(tmp_path):
    path = write_wav(tmp_path / "m.wav", 0.5)
    sender = EmailSender(SMTPConfig("mail"), {"1000": "a@b.c"}, Clock(),
                         send=lambda *a, **k: fail(ConnectionRefusedError()))
    d = sender.message_saved({**MESSAGE, "path": path})
    assert d.called and sender.failed == 1
