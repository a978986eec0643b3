"""The registrar: RFC 3261 section 10.3 over the location service (layer 3).

The controller authenticates a REGISTER and calls :meth:`Registrar.register`.
Rules, in the order they are checked:

- ``Contact: *`` needs ``Expires: 0`` and no other Contact (else 400); it
  removes every binding of the AOR.
- Each contact's expiry is its ``expires`` parameter, else the Expires header,
  else ``default_expires`` (a malformed value counts as absent). 0 removes the
  binding; 0 < expiry < ``min_expires`` rejects the whole request with
  ``423 Interval Too Brief`` and ``Min-Expires``; above ``max_expires`` it is
  clamped. ``q`` must be 0..1 (else 400).
- A contact matches an existing binding with the same Contact URI, or (RFC
  5626) the same ``+sip.instance`` and ``reg-id``: the new registration
  replaces it. Call-ID/CSeq ordering (step 7): with the same Call-ID the CSeq
  must be higher, otherwise the update is aborted with ``500 Out of order
  request`` (RFC 3261 only says "the request fails"; 500 is what Kamailio
  answers for it, and UAs retry a 5xx later with a fresh CSeq).
- At most ``extension.max_contacts`` (or ``max_contacts``) bindings per AOR.
  When a registration would exceed it, the least recently (re)registered
  bindings not named in this request are evicted (like Asterisk's
  ``remove_existing``): a phone that is replaced or reset never locks itself
  out. A request that alone names more contacts than the limit gets
  ``403 Too many registrations``.
- A REGISTER without Contact just lists the current bindings.

The 200 OK lists every current binding with ``;expires=N`` (and q,
+sip.instance, reg-id) and a Date header; it is sent only once the location
store has the change durably (:meth:`LocationService.commit`); a store error is
logged and answered 500. REGISTERs for one AOR are handled one at a time.
"""

from __future__ import annotations

import email.utils
import secrets
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, maybeDeferred, succeed
from twisted.logger import Logger

from pbxd import debuglog
from pbxd.sip.message import make_response

_DATE: list[Any] = [None, ""]  # (second, its RFC 1123 date): one formatdate per second


def _http_date(now: float) -> str:
    """``Date`` header value for ``now`` (formatted once per second)."""
    second = int(now)
    if _DATE[0] != second:
        _DATE[:] = [second, email.utils.formatdate(second, usegmt=True)]
    return _DATE[1]


class _Reject(Exception):
    """Stop handling a REGISTER and answer ``status reason`` (with ``headers``)."""

    def __init__(self, status: int, reason: str | None = None, **headers: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.headers = headers


def _int_param(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


class Registrar:
    """Handles authenticated REGISTER requests (see the module docstring).

    :param location: the :class:`~pbxd.sip.location.LocationService`.
    :param extensions: an IExtensionStore used when the controller passes no
        extension (authentication off): an unknown AOR then gets 404. Without
        it, any To user is accepted.
    :param server: value of the ``Server`` header of our responses, if any.
    """

    log = Logger()

    def __init__(
        self,
        location: Any,
        clock: Any,
        *,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        max_contacts: int = 10,
        extensions: Any = None,
        server: str | None = None,
    ) -> None:
        self.location = location
        self.clock = clock
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_contacts = max_contacts
        self.extensions = extensions
        self.server = server
        self._locks: dict[str, DeferredLock] = {}

    # ------------------------------------------------------------------ entry

    def register(
        self,
        request: Any,
        server_transaction: Any,
        extension: Any = None,
        transport: Any = None,
        source: tuple[str, int] | None = None,
    ) -> Deferred:
        """Handle one REGISTER; fires once it has been answered.

        ``transport``/``source`` default to the server transaction's.
        """
        txn = server_transaction
        transport = transport if transport is not None else txn.transport
        source = source if source is not None else txn.source
        d = self._resolve(request, extension)

        def resolved(ext: Any) -> Any:
            if ext is None:
                return self._answer(request, txn, 404, "Not Found")
            aor = ext.number
            if request.to is None or request.to.uri.user != aor:
                return self._answer(request, txn, 403, "To does not match the extension")
            lock = self._locks.setdefault(aor, DeferredLock())
            locked = lock.run(self._register, request, txn, ext, transport, source)
            locked.addBoth(self._release, aor, lock)
            return locked

        d.addCallback(resolved)
        d.addErrback(self._failed, request, txn)
        return d

    def connectionLost(self, transport: Any) -> None:
        """The controller's hook: a TCP/TLS connection closed."""
        self.location.transport_closed(transport)

    def _resolve(self, request: Any, extension: Any) -> Deferred:
        if extension is not None:
            return succeed(extension)
        user = request.to.uri.user if request.to is not None else None
        if not user:
            return succeed(None)
        if self.extensions is None:
            return succeed(_Anonymous(user))
        return maybeDeferred(self.extensions.getExtension, user)

    def _release(self, result: Any, aor: str, lock: DeferredLock) -> Any:
        if not lock.locked and not lock.waiting and self._locks.get(aor) is lock:
            del self._locks[aor]
        return result

    # ------------------------------------------------------------------ rules

    def _register(
        self, request: Any, txn: Any, extension: Any, transport: Any, source: tuple[str, int]
    ) -> Any:
        aor = extension.number
        limit = getattr(extension, "max_contacts", None) or self.max_contacts
        try:
            save, remove = self._plan(request, aor, limit, transport, source)
        except _Reject as reject:
            self.log.info(
                "{txn} REGISTER {aor} from {peer} refused: {status} {reason}",
                txn=getattr(txn, "id", None),
                aor=aor,
                peer=source,
                status=reject.status,
                reason=reject.reason,
            )
            return self._answer(request, txn, reject.status, reject.reason, **reject.headers)
        if not save and not remove:
            return self._ok(request, txn, self.location.bindings(aor))
        known = {b.contact for b in self.location.bindings(aor)}
        d = self.location.commit(aor, save, remove)

        def committed(current: list[Any]) -> None:
            now = self.clock.seconds()
            for b in save:
                # a new binding is worth an info line; a refresh of a known one is
                # routine (every phone, every few minutes): debug, with PBXD_DEBUG only
                if b.contact in known and not debuglog.ENABLED:
                    continue
                (self.log.debug if b.contact in known else self.log.info)(
                    "{txn} REGISTER {aor}: {contact} for {expires}s via {transport} {peer}",
                    txn=getattr(txn, "id", None),
                    aor=aor,
                    contact=b.contact,
                    expires=b.expires_in(now),
                    transport=b.flow[0],
                    peer=source,
                )
            for b in remove:
                self.log.info("{txn} unregistered {aor}: {contact}", txn=getattr(txn, "id", None),
                              aor=aor, contact=b.contact)
            self._ok(request, txn, current)

        def store_failed(failure: Any) -> None:
            self.log.failure("REGISTER {aor}: could not save the bindings", failure, aor=aor)
            self._answer(request, txn, 500, "Registration not saved")

        d.addCallbacks(committed, store_failed)
        return d

    def _plan(
        self, request: Any, aor: str, limit: int, transport: Any, source: tuple[str, int]
    ) -> tuple[list[Any], list[Any]]:
        """What this REGISTER changes: (bindings to save, bindings to remove)."""
        existing = self.location.bindings(aor)
        call_id, cseq = request.call_id, request.cseq.seq
        if request.contact_star:
            if request.expires != 0 or len(request.getall("Contact")) > 1:
                raise _Reject(400, "Contact: * needs Expires: 0 and no other Contact")
            for binding in existing:
                self._check_order(binding, call_id, cseq)
            return [], existing
        header = request.expires
        now = self.clock.seconds()
        planned: dict[str, tuple[Any, int]] = {}
        for contact in request.contacts:
            planned[str(contact.uri)] = (contact, self._expiry(contact, header))
        save: list[Any] = []
        remove: list[Any] = []
        for key, (contact, expires) in planned.items():
            instance = contact.params.get("+sip.instance")
            reg_id = _int_param(contact.params.get("reg-id"))
            matches = [
                b
                for b in existing
                if b.contact == key or (instance and (b.instance, b.reg_id) == (instance, reg_id))
            ]
            for binding in matches:
                self._check_order(binding, call_id, cseq)
            if expires == 0:
                remove += [b for b in matches if b not in remove]
                continue
            remove += [b for b in matches if b.contact != key and b not in remove]
            save.append(self._binding(request, aor, contact, key, now + expires, transport, source))
        if len(save) > limit:
            raise _Reject(403, "Too many registrations")
        kept = [b for b in existing if b not in remove and b.contact not in planned]
        overflow = len(kept) + len(save) - limit
        if overflow > 0:
            oldest = sorted(kept, key=lambda b: (b.registered_at, b.expires_at))[:overflow]
            for binding in oldest:
                self.log.info(
                    "{aor} has {limit} contacts: evicting {contact}",
                    aor=aor,
                    limit=limit,
                    contact=binding.contact,
                )
            remove += oldest
        return save, remove

    def _expiry(self, contact: Any, header: int | None) -> int:
        if contact.uri.scheme not in ("sip", "sips"):
            raise _Reject(400, "Contact must be a sip: or sips: URI")
        expires = _int_param(contact.params.get("expires"))
        if expires is None:
            expires = header if header is not None else self.default_expires
        if 0 < expires < self.min_expires:
            raise _Reject(423, None, **{"Min-Expires": str(self.min_expires)})
        q = contact.params.get("q")
        if q is not None:
            try:
                value = float(q)
            except ValueError:
                value = -1.0
            if not 0.0 <= value <= 1.0:
                raise _Reject(400, "Bad q value")
        if "reg-id" in contact.params and _int_param(contact.params["reg-id"]) is None:
            raise _Reject(400, "Bad reg-id")
        return min(expires, self.max_expires)

    @staticmethod
    def _check_order(binding: Any, call_id: str, cseq: int) -> None:
        if binding.call_id == call_id and cseq <= binding.cseq:
            raise _Reject(500, "Out of order request")

    def _binding(
        self,
        request: Any,
        aor: str,
        contact: Any,
        key: str,
        expires_at: float,
        transport: Any,
        source: tuple[str, int],
    ) -> Any:
        via = request.top_via
        rport = via is not None and "rport" in via.params
        supported = ",".join(request.getall("Supported")).lower()
        path = tuple(request.getall("Path")) if "path" in supported else ()
        q = contact.params.get("q")
        return self.location.make_binding(
            aor=aor,
            contact=key,
            uri=contact.uri,
            expires_at=expires_at,
            call_id=request.call_id,
            cseq=request.cseq.seq,
            q=float(q) if q is not None else None,
            instance=contact.params.get("+sip.instance"),
            reg_id=_int_param(contact.params.get("reg-id")),
            user_agent=request.get("User-Agent"),
            flow=(getattr(transport, "name", "UDP"), source[0], source[1]),
            transport=transport,
            path=path,
            nat=self.location.nat_detected(contact.uri, source[0], rport),
        )

    # ------------------------------------------------------------------ answers

    def _ok(self, request: Any, txn: Any, bindings: list[Any]) -> None:
        now = self.clock.seconds()
        response = make_response(request, 200, to_tag=secrets.token_hex(6))
        for binding in bindings:
            value = f"<{binding.contact}>;expires={binding.expires_in(now)}"
            if binding.q is not None:
                value += f";q={binding.q:g}"
            if binding.instance is not None:
                value += f";+sip.instance={binding.instance}"
            if binding.reg_id is not None:
                value += f";reg-id={binding.reg_id}"
            response.add("Contact", value)
        paths = {p for b in bindings for p in b.path}
        for path in request.getall("Path"):
            if path in paths:
                response.add("Path", path)
        response.set("Date", _http_date(now))
        self._send(txn, response)

    def _answer(
        self, request: Any, txn: Any, status: int, reason: str | None = None, **headers: str
    ) -> None:
        response = make_response(request, status, reason, to_tag=secrets.token_hex(6))
        for name, value in headers.items():
            response.set(name, value)
        self._send(txn, response)

    def _send(self, txn: Any, response: Any) -> None:
        if self.server:
            response.set("Server", self.server)
        txn.respond(response)

    def _failed(self, failure: Any, request: Any, txn: Any) -> None:
        self.log.failure("REGISTER failed", failure)
        self._answer(request, txn, 500)


class _Anonymous:
    """The extension of an unauthenticated REGISTER when no store is given."""

    max_contacts = None

    def __init__(self, number: str) -> None:
        self.number = number
