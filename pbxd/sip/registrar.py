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
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbxd import debuglog
from pbxd.sip.message import make_response
from pbxd.sip.tokens import random_hex

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
        self._locks: dict[str, list[tuple[Any, ...]]] = {}

    # ------------------------------------------------------------------ entry
    #
    # REGISTERs of one AOR are handled one at a time: while one waits for the store,
    # ``_locks[aor]`` lists the ones that came meanwhile; they run, in order, once it
    # has been answered. A REGISTER that finds its AOR idle runs at once, and one that
    # completes without waiting (a refusal, a listing, an already-fired store) leaves
    # no entry behind.

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
        if transport is None:
            transport = txn.transport
        if source is None:
            source = txn.source
        if extension is None:
            d = self._resolve(request)
            d.addCallback(self._resolved, request, txn, transport, source)
            d.addErrback(self._failed, request, txn)
            return d
        try:
            done = self._start(request, txn, extension, transport, source)
        except Exception:
            self._failed(Failure(), request, txn)
            done = None
        return succeed(None) if done is None else done

    def connectionLost(self, transport: Any) -> None:
        """The controller's hook: a TCP/TLS connection closed."""
        self.location.transport_closed(transport)

    def _resolve(self, request: Any) -> Deferred:
        user = request.to.uri.user if request.to is not None else None
        if not user:
            return succeed(None)
        if self.extensions is None:
            return succeed(_Anonymous(user))
        return maybeDeferred(self.extensions.getExtension, user)

    def _resolved(
        self, ext: Any, request: Any, txn: Any, transport: Any, source: tuple[str, int]
    ) -> Deferred | None:
        if ext is None:
            self._answer(request, txn, 404, "Not Found")
            return None
        return self._start(request, txn, ext, transport, source)

    def _start(
        self, request: Any, txn: Any, extension: Any, transport: Any, source: tuple[str, int]
    ) -> Deferred | None:
        """Run the REGISTER now, or queue it behind the one of its AOR in flight.

        Returns None when it has been answered already, else a Deferred firing then.
        """
        aor = extension.number
        to = request.to
        if to is None or to.uri.user != aor:
            self._answer(request, txn, 403, "To does not match the extension")
            return None
        waiting = self._locks.get(aor)
        if waiting is not None:
            done: Deferred = Deferred()
            waiting.append((done, request, txn, extension, transport, source))
            return done
        return self._run(aor, request, txn, extension, transport, source)

    def _run(
        self,
        aor: str,
        request: Any,
        txn: Any,
        extension: Any,
        transport: Any,
        source: tuple[str, int],
    ) -> Deferred | None:
        try:
            d = self._register(request, txn, extension, transport, source)
        except Exception:
            self._failed(Failure(), request, txn)
            return None
        if d is None or d.called:
            return None
        self._locks[aor] = []
        d.addBoth(self._next, aor)
        return d

    def _next(self, result: Any, aor: str) -> Any:
        """The REGISTER of ``aor`` in flight has been answered: run the waiting ones."""
        waiting = self._locks.pop(aor, None)
        while waiting:
            done, request, txn, extension, transport, source = waiting.pop(0)
            d = self._run(aor, request, txn, extension, transport, source)
            if d is None:
                done.callback(None)
                continue
            self._locks[aor].extend(waiting)  # the rest wait for this one
            d.addBoth(_fire, done)
            break
        return result

    # ------------------------------------------------------------------ rules

    def _register(
        self, request: Any, txn: Any, extension: Any, transport: Any, source: tuple[str, int]
    ) -> Deferred | None:
        aor = extension.number
        limit = getattr(extension, "max_contacts", None) or self.max_contacts
        location = self.location
        existing = location.bindings(aor)
        try:
            save, remove = self._plan(request, aor, limit, transport, source, existing)
        except _Reject as reject:
            self.log.info(
                "{txn} REGISTER {aor} from {peer} refused: {status} {reason}",
                txn=getattr(txn, "id", None),
                aor=aor,
                peer=source,
                status=reject.status,
                reason=reject.reason,
            )
            self._answer(request, txn, reject.status, reject.reason, **reject.headers)
            return None
        if not save and not remove:
            self._ok(request, txn, existing)
            return None
        d = location.commit(aor, save, remove)
        d.addCallbacks(
            self._committed,
            self._store_failed,
            (request, txn, aor, save, remove, existing, source),
            None,
            (request, txn, aor),
        )
        return d

    def _committed(
        self,
        current: list[Any],
        request: Any,
        txn: Any,
        aor: str,
        save: list[Any],
        remove: list[Any],
        existing: list[Any],
        source: tuple[str, int],
    ) -> None:
        try:
            for b in save:
                # a new binding is worth an info line; a refresh of a known one is
                # routine (every phone, every few minutes): debug, with PBXD_DEBUG only
                contact = b.contact
                known = False
                for e in existing:
                    if e.contact == contact:
                        known = True
                        break
                if known and not debuglog.ENABLED:
                    continue
                (self.log.debug if known else self.log.info)(
                    "{txn} REGISTER {aor}: {contact} for {expires}s via {transport} {peer}",
                    txn=getattr(txn, "id", None),
                    aor=aor,
                    contact=b.contact,
                    expires=b.expires_in(self.clock.seconds()),
                    transport=b.flow[0],
                    peer=source,
                )
            for b in remove:
                self.log.info("{txn} unregistered {aor}: {contact}", txn=getattr(txn, "id", None),
                              aor=aor, contact=b.contact)
            self._ok(request, txn, current)
        except Exception:
            self._failed(Failure(), request, txn)

    def _store_failed(self, failure: Any, request: Any, txn: Any, aor: str) -> None:
        try:
            self.log.failure("REGISTER {aor}: could not save the bindings", failure, aor=aor)
            self._answer(request, txn, 500, "Registration not saved")
        except Exception:
            self._failed(Failure(), request, txn)

    def _plan(
        self,
        request: Any,
        aor: str,
        limit: int,
        transport: Any,
        source: tuple[str, int],
        existing: list[Any],
    ) -> tuple[list[Any], list[Any]]:
        """What this REGISTER changes: (bindings to save, bindings to remove)."""
        call_id, cseq = request.call_id, request.cseq.seq
        contacts = request.contacts
        if not contacts and request.contact_star:
            if request.expires != 0 or len(request.getall("Contact")) > 1:
                raise _Reject(400, "Contact: * needs Expires: 0 and no other Contact")
            for binding in existing:
                self._check_order(binding, call_id, cseq)
            return [], existing
        header = request.expires
        planned: dict[str, tuple[Any, int]] = {}
        for contact in contacts:
            planned[str(contact.uri)] = (contact, self._expiry(contact, header))
        save: list[Any] = []
        remove: list[Any] = []
        if not planned:
            return save, remove
        now = self.clock.seconds()
        common: dict[str, Any] | None = None
        for key, (contact, expires) in planned.items():
            params = contact.params
            instance = params.get("+sip.instance")
            reg_id = params.get("reg-id")
            if reg_id is not None:
                reg_id = _int_param(reg_id)
            if existing:
                matches = [
                    b
                    for b in existing
                    if b.contact == key
                    or (instance and (b.instance, b.reg_id) == (instance, reg_id))
                ]
                for binding in matches:
                    if binding.call_id == call_id and cseq <= binding.cseq:
                        raise _Reject(500, "Out of order request")
                if expires == 0:
                    remove += [b for b in matches if b not in remove]
                    continue
                remove += [b for b in matches if b.contact != key and b not in remove]
            elif expires == 0:
                continue
            if common is None:
                common = self._common(request, call_id, cseq, transport, source)
            save.append(
                self._binding(common, aor, contact, key, now, expires, instance, reg_id, source)
            )
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
        params = contact.params
        expires = params.get("expires")
        if expires is not None:
            expires = _int_param(expires)
        if expires is None:
            expires = header if header is not None else self.default_expires
        if 0 < expires < self.min_expires:
            raise _Reject(423, None, **{"Min-Expires": str(self.min_expires)})
        if params:  # (most phones send none of these)
            q = params.get("q")
            if q is not None:
                try:
                    value = float(q)
                except ValueError:
                    value = -1.0
                if not 0.0 <= value <= 1.0:
                    raise _Reject(400, "Bad q value")
            if "reg-id" in params and _int_param(params["reg-id"]) is None:
                raise _Reject(400, "Bad reg-id")
        max_expires = self.max_expires
        return expires if expires < max_expires else max_expires

    @staticmethod
    def _check_order(binding: Any, call_id: str, cseq: int) -> None:
        if binding.call_id == call_id and cseq <= binding.cseq:
            raise _Reject(500, "Out of order request")

    def _common(
        self, request: Any, call_id: str, cseq: int, transport: Any, source: tuple[str, int]
    ) -> dict[str, Any]:
        """The fields every binding made by ``request`` shares."""
        via = request.top_via
        # User-Agent (the first), Supported and Path are plain text headers: one pass
        user_agent = None
        supported_path = False
        for key, _, value in request.headers.entries:
            if key == "user-agent":
                if user_agent is None:
                    user_agent = value
            elif key == "supported" and not supported_path:
                supported_path = "path" in value.lower()
        return {
            "call_id": call_id,
            "cseq": cseq,
            "user_agent": user_agent,
            "flow": (getattr(transport, "name", "UDP"), source[0], source[1]),
            "transport": transport,
            "path": tuple(request.getall("Path")) if supported_path else (),
            "rport": via is not None and "rport" in via.params,
        }

    def _binding(
        self,
        common: dict[str, Any],
        aor: str,
        contact: Any,
        key: str,
        now: float,
        expires: int,
        instance: str | None,
        reg_id: int | None,
        source: tuple[str, int],
    ) -> Any:
        q = contact.params.get("q")
        location = self.location
        return location.make_binding(
            aor=aor,
            contact=key,
            uri=contact.uri,
            expires_at=now + expires,
            call_id=common["call_id"],
            cseq=common["cseq"],
            q=float(q) if q is not None else None,
            instance=instance,
            reg_id=reg_id,
            user_agent=common["user_agent"],
            flow=common["flow"],
            transport=common["transport"],
            path=common["path"],
            nat=location.nat_detected(contact.uri, source[0], common["rport"]),
            registered_at=now,
        )

    # ------------------------------------------------------------------ answers

    def _ok(self, request: Any, txn: Any, bindings: list[Any]) -> None:
        now = self.clock.seconds()
        response = make_response(request, 200, to_tag=random_hex(12))
        # a fresh response has no Contact, Path, Date or Server: append the lines
        # (what Headers.add/set would do, without their lookups)
        entries = response.headers.entries
        paths: set[str] = set()
        for binding in bindings:
            value = f"<{binding.contact}>;expires={max(0, int(binding.expires_at - now + 0.5))}"
            if binding.q is not None:
                value += f";q={binding.q:g}"
            if binding.instance is not None:
                value += f";+sip.instance={binding.instance}"
            if binding.reg_id is not None:
                value += f";reg-id={binding.reg_id}"
            entries.append(("contact", "Contact", value))
            if binding.path:
                paths.update(binding.path)
        if paths:
            for path in request.getall("Path"):
                if path in paths:
                    entries.append(("path", "Path", path))
        entries.append(("date", "Date", _http_date(now)))
        if self.server:
            entries.append(("server", "Server", self.server))
        txn.respond(response)

    def _answer(
        self, request: Any, txn: Any, status: int, reason: str | None = None, **headers: str
    ) -> None:
        response = make_response(request, status, reason, to_tag=random_hex(12))
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


def _fire(result: Any, done: Deferred) -> Any:
    done.callback(None)
    return result


class _Anonymous:
    """The extension of an unauthenticated REGISTER when no store is given."""

    max_contacts = None

    def __init__(self, number: str) -> None:
        self.number = number
