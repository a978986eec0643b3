"""Shared fixtures of the admin API tests: a full site over real stores on an
in-memory SQLite database, driven in memory with treq's StubTreq (no sockets)."""

from __future__ import annotations

import hashlib
import json
import tempfile
import wave
from dataclasses import dataclass
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from pbxd.auth.bans import BanList
from pbxd.configschema import AdminToken, Extension, VoicemailConfig
from pbxd.sip.location import LocationService
from pbxd.sip.uri import URI
from pbxd.store.audit import SQLiteAuditStore
from pbxd.store.cdr import SQLiteCDRStore
from pbxd.store.extensions import ConfigExtensionStore
from pbxd.store.extensions_db import SQLiteExtensionStore
from pbxd.store.recordings import RecordingStore
from pbxd.store.testing import memory_database
from pbxd.store.voicemail import VoicemailStore
from pbxd.voicemail.service import VoicemailService
from pbxd.web import calls as calls_api
from pbxd.web import recordings as recordings_api
from pbxd.web import reload as reload_api
from pbxd.web import voicemail as voicemail_api
from pbxd.web.api import make_admin_site
from pbxd.web.metrics import Metrics

TOKEN = "s3cret-admin-token-0123456789"
OTHER_TOKEN = "another-token-abcdefghijklmnop"
NOW = 1_700_000_000.0


def fired(d: Any) -> Any:
    """The result of an already-fired Deferred (raises its failure)."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


class FakeCallManager:
    """The CallManager's API-facing methods over a dict of ``Call.info()``-shaped calls."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.calls: dict[str, dict[str, Any]] = {}
        self.ended: list[tuple[str, str]] = []
        self.stopping = False
        self.refuse: Exception | None = None
        self._next = 1

    def add(self, caller: str, destination: str, *, answered: bool = True) -> str:
        """A call in progress (as the B2BUA would hold it); its id."""
        call_id = f"00a{self._next:05d}"
        self._next += 1
        now = self.clock.seconds()
        self.calls[call_id] = {
            "id": call_id, "caller": caller, "destination": destination,
            "state": "ANSWERED" if answered else "RINGING", "start": now,
            "answer": now if answered else None, "duration": 0.0,
            "codecs": ["PCMU"] if answered else [], "on_hold": False,
            "legs": [{"id": f"{call_id}-a", "role": "caller", "state": "CONFIRMED"}],
            "media": {"a": {"packets_in": 50, "lost": 0}} if answered else {},
        }
        return call_id

    def active_calls(self) -> list[dict[str, Any]]:
        now = self.clock.seconds()
        return [dict(c, duration=round(now - c["start"], 3)) for c in self.calls.values()]

    def hangup(self, call_id: str, cause: str = "admin hangup") -> bool:
        if self.calls.pop(call_id, None) is None:
            return False
        self.ended.append((call_id, cause))
        return True

    def originate(self, ext_a: str, ext_b: str, *, timeout: float = 30,
                  caller_id: str | None = None) -> Any:
        if self.refuse is not None:
            raise self.refuse
        return succeed(self.add(ext_a, ext_b, answered=False))


class FakeReloader:
    """``reload()`` answering a canned result, or failing with ``error``."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.count = 0

    def reload(self) -> Any:
        if self.error is not None:
            return fail(self.error)
        self.count += 1
        return succeed({"source": "/etc/pbxd/config.yml", "applied": ["extensions", "security"],
                        "listeners": {"added": [], "removed": []}, "restart_required": []})


@dataclass
class Reply:
    """An HTTP answer as the tests look at it."""

    status: int
    headers: Any
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


class Env:
    """A full admin site with its collaborators."""

    def __init__(self, **site_args: Any) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.database = memory_database()
        self.location = LocationService(self.clock)
        self.bans = BanList(self.clock, trusted_networks=["10.0.0.0/8"])
        self.config_extensions = ConfigExtensionStore(
            {"1000": Extension("1000", name="Alice", password="alice-password")}
        )
        self.extensions = SQLiteExtensionStore(
            self.database, self.config_extensions, realm="pbxd.local", contexts={"default"}
        )
        fired(self.extensions.prepare())
        self.cdr = SQLiteCDRStore(self.database)
        fired(self.cdr.prepare())
        self.audit = SQLiteAuditStore(self.database, self.clock)
        fired(self.audit.prepare())
        self.metrics = Metrics()
        self.calls = FakeCallManager(self.clock)
        self.reloader = FakeReloader()
        self.vm_store = VoicemailStore(self.database, tempfile.mkdtemp(prefix="pbxd-vm-"),
                                       self.clock)
        fired(self.vm_store.prepare())
        self.voicemail = VoicemailService(self.vm_store, self.extensions, VoicemailConfig())
        self.recordings = RecordingStore(tempfile.mkdtemp(prefix="pbxd-rec-"))
        site_args.setdefault("extra_routes", [
            *calls_api.routes(self.calls, self.audit, self.extensions),
            *reload_api.routes(self.reloader, self.audit),
            *voicemail_api.routes(self.voicemail, self.vm_store, self.audit),
            *recordings_api.routes(self.recordings, self.audit),
        ])
        self.site = make_admin_site(
            tokens=[
                AdminToken("ops", hashlib.sha256(TOKEN.encode()).hexdigest()),
                AdminToken("noc", hashlib.sha256(OTHER_TOKEN.encode()).hexdigest()),
            ],
            clock=self.clock,
            location=self.location,
            bans=self.bans,
            extensions=self.extensions,
            cdr_store=self.cdr,
            audit_store=self.audit,
            metrics=self.metrics,
            **site_args,
        )
        self.stub = StubTreq(self.site.resource)

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = TOKEN,
        body: Any = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        """Make one request and return its answer (everything runs synchronously)."""
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        url = "http://pbxd.test" + path
        d = self.stub.request(method, url, headers=headers, data=data, params=params)
        self.stub.flush()
        response = fired(d)
        content = self.stub.content(response)
        self.stub.flush()
        return Reply(response.code, response.headers, fired(content))

    def register(self, aor: str, contact: str, *, expires: float = 3600, ua: str = "Phone/1.0"):
        """Add a binding as the registrar would."""
        binding = self.location.make_binding(
            aor=aor, contact=contact, uri=URI.parse(contact), expires_at=self.clock.seconds()
            + expires, call_id=f"c-{aor}-{contact}", cseq=1, user_agent=ua,
            flow=("UDP", "192.0.2.10", 5060),
        )
        return fired(self.location.commit(aor, [binding], []))

    def add_voicemail(self, box: str = "1000", message_id: str = "msg-1700000000-0000abcd",
                      seconds: float = 1.0) -> dict[str, Any]:
        """A message of ``seconds`` of a constant level in ``box``."""
        path = self.vm_store.temp_path(box)
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x00\x10" * int(seconds * 8000))
        return fired(self.vm_store.add_message(box, "2000", seconds, path, "Bob",
                                               message_id=message_id))

    def add_recording(self, call_id: str = "00a00001", start: float = NOW,
                      seconds: float = 1.0, *, finished: bool = True) -> str:
        """A recording of ``seconds`` of a constant level between 1000 and 2000; its id."""
        rec_id, path = self.recordings.begin(call_id, start, {
            "caller": "1000", "callee": "2000", "channels": 1})
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x00\x10" * int(seconds * 8000))
        if finished:
            fired(self.recordings.finish(rec_id, {"seconds": seconds, "reason": "hangup"}))
        return rec_id

    def audit_entries(self) -> list[dict[str, Any]]:
        return fired(self.audit.query(limit=1000))[0]

    def add_cdr(self, call_id: str, start: float, source: str, destination: str,
                disposition: str = "answered") -> int:
        return fired(self.cdr.write({
            "call_id": call_id, "start": start, "answer": start + 2, "end": start + 60,
            "source": source, "destination": destination, "disposition": disposition,
            "codecs": ["PCMU"], "media": {"a": {"packets": 3000}},
        }))
