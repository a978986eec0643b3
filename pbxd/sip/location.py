"""The location service: where each extension can be reached (layer 3).

A :class:`Binding` ties an address-of-record (the extension number) to one
Contact URI and to the *flow* the REGISTER came on (transport name, source
host and port, and for TCP/TLS the live connection object).

NAT (:meth:`LocationService.target`, like Asterisk's rewrite_contact or
Kamailio's fix_nated_register): ``always`` sends to the flow, ``never`` to the
Contact; ``auto`` sends to the flow when the binding was flagged NAT at
registration (:func:`nat_detected`) or was made over a TCP/TLS connection still
open (connection reuse), otherwise to the Contact. A TCP/TLS binding restored
after a restart has no connection: target() then names the transport and the
flow address, and the caller's IConnector opens a new connection there; it is
kept until it expires or the phone re-registers.

Persistence: :meth:`LocationService.commit` saves one REGISTER's changes in the
ILocationStore first and applies them in memory only then, so a 200 OK sent
from its callback is never for a binding a crash would lose. Expiry,
connection loss and removals change memory first, then the store (failures
logged). Expiry: one clock timer per binding, named by AOR and contact, reset
(not replaced) when the binding is refreshed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger

from pbxd.sip.uri import URI, NameAddr

NAT_MODES = ("auto", "always", "never")
#: Contact addresses a phone behind NAT would write: RFC 1918, CGNAT (RFC 6598),
#: IPv6 ULA (RFC 4193); loopback, link-local and unspecified are tested apart.
_PRIVATE_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
_STREAM = frozenset({"TCP", "TLS", "WS", "WSS"})


@dataclass(eq=False, slots=True)
class Binding:
    """One registered contact of an extension.

    ``flow`` is ``(transport name, source host, source port)``; ``transport``
    the live ISIPTransport it came over (not persisted; None after a restart).
    ``nat`` is the NAT verdict made at registration; ``reachable`` and ``rtt``
    are kept by the qualifier. ``contact`` (str of ``uri``) is the key of a
    binding within its AOR.
    """

    aor: str
    contact: str
    uri: URI
    expires_at: float
    call_id: str
    cseq: int
    q: float | None = None
    instance: str | None = None
    reg_id: int | None = None
    user_agent: str | None = None
    flow: tuple[str, str, int] = ("UDP", "", 0)
    transport: Any = field(default=None, repr=False)
    path: tuple[str, ...] = ()
    nat: bool = False
    registered_at: float = 0.0
    reachable: bool = True
    rtt: float | None = None
    restored: bool = False
    timer: Any = field(default=None, repr=False)

    @property
    def stream(self) -> bool:
        """True when the flow is a connection (TCP, TLS)."""
        return self.flow[0] in _STREAM

    def expires_in(self, now: float) -> int:
        """Whole seconds left (never negative), as put in ``;expires=``."""
        return max(0, int(self.expires_at - now + 0.5))

    def to_record(self) -> dict[str, Any]:
        """The persisted fields (see pbxd.store.location.RECORD_FIELDS)."""
        return {
            "aor": self.aor,
            "contact": self.contact,
            "expires_at": self.expires_at,
            "q": self.q,
            "call_id": self.call_id,
            "cseq": self.cseq,
            "instance": self.instance,
            "reg_id": self.reg_id,
            "user_agent": self.user_agent,
            "transport": self.flow[0],
            "source_host": self.flow[1],
            "source_port": self.flow[2],
            "path": tuple(self.path),
            "nat": self.nat,
            "registered_at": self.registered_at,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Binding:
        """Rebuild a stored binding (no live transport; ``restored=True``)."""
        return cls(
            aor=record["aor"],
            contact=record["contact"],
            uri=URI.parse(record["contact"]),
            expires_at=float(record["expires_at"]),
            call_id=record["call_id"],
            cseq=int(record["cseq"]),
            q=record.get("q"),
            instance=record.get("instance"),
            reg_id=record.get("reg_id"),
            user_agent=record.get("user_agent"),
            flow=(record["transport"], record["source_host"] or "", record["source_port"] or 0),
            path=tuple(record.get("path") or ()),
            nat=bool(record.get("nat")),
            registered_at=float(record.get("registered_at") or 0.0),
            restored=True,
        )


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def nat_detected(uri: URI, source_host: str, rport: bool) -> bool:
    """The registration-time NAT test: Via had rport, or the Contact host is a
    private (RFC 1918/4193), loopback, link-local or CGNAT IP literal that
    differs from the source host. A hostname Contact is taken at its word."""
    if rport:
        return True
    contact_ip = _ip(uri.host)
    if contact_ip is None:
        return False
    source_ip = _ip(source_host)
    if source_ip is not None and source_ip == contact_ip:
        return False
    return (
        contact_ip.is_loopback
        or contact_ip.is_link_local
        or contact_ip.is_unspecified
        or any(contact_ip in net for net in _PRIVATE_NETS if net.version == contact_ip.version)
    )


def _order(binding: Binding) -> tuple[float, float]:
    """Sort key of :meth:`LocationService.bindings`: best q first, then newest."""
    q = binding.q
    return (-1.0 if q is None else -q, -binding.registered_at)


class LocationService:
    """Bindings by AOR, with expiry timers, NAT targets and persistence.

    ``store`` provides ILocationStore (a ``replace(aor, save, remove)`` method,
    if present, makes one REGISTER's changes atomic). ``nat`` is 'auto',
    'always' or 'never' and may be changed on reload.
    """

    log = Logger()

    def __init__(self, clock: Any, store: Any = None, *, nat: str = "auto") -> None:
        if nat not in NAT_MODES:
            raise ValueError(f"nat must be one of {NAT_MODES}, not {nat!r}")
        self.clock = clock
        self.store = store
        self.nat = nat
        self._by_aor: dict[str, list[Binding]] = {}
        self._observers: list[Callable[[str, Binding], None]] = []

    # -- reading ----------------------------------------------------------------

    def bindings(self, aor: str) -> list[Binding]:
        """All current bindings of ``aor`` (reachable or not), best q first, then newest."""
        bindings = self._by_aor.get(aor)
        if not bindings:
            return []
        if len(bindings) == 1:
            return [bindings[0]]
        return sorted(bindings, key=_order)

    def lookup(self, aor: str) -> list[Binding]:
        """The unexpired, reachable bindings of ``aor`` to try, best q first."""
        now = self.clock.seconds()
        return [b for b in self.bindings(aor) if b.reachable and b.expires_at > now]

    def aors(self) -> list[str]:
        """The AORs that have bindings, sorted."""
        return sorted(self._by_aor)

    def all_bindings(self) -> list[Binding]:
        """Every binding of every AOR (for the qualifier and the admin API)."""
        return [b for aor in self.aors() for b in self.bindings(aor)]

    def subscribe(self, observer: Callable[[str, Binding], None]) -> None:
        """Call ``observer(event, binding)``; events: 'added', 'refreshed', 'removed',
        'restored', 'reachable', 'unreachable'."""
        self._observers.append(observer)

    # -- building ---------------------------------------------------------------

    def make_binding(self, **fields: Any) -> Binding:
        """A new :class:`Binding` (so callers need not import this module)."""
        fields.setdefault("registered_at", self.clock.seconds())
        return Binding(**fields)

    def nat_detected(self, uri: URI, source_host: str, rport: bool) -> bool:
        """See :func:`nat_detected`."""
        return nat_detected(uri, source_host, rport)

    # -- changing ---------------------------------------------------------------

    def commit(self, aor: str, save: Iterable[Binding], remove: Iterable[Binding]) -> Deferred:
        """Persist, then apply, the changes of one registration.

        Fires with the current bindings of ``aor`` once the store has them
        durably; fails (memory untouched) if the store fails.
        """
        save, remove = list(save), list(remove)
        d = self._persist(aor, save, remove)
        d.addCallback(self._applied, aor, save, remove)
        return d

    def _applied(
        self, _: Any, aor: str, save: list[Binding], remove: list[Binding]
    ) -> list[Binding]:
        """Apply the changes the store has (the callback of :meth:`commit`)."""
        if remove:
            for binding in remove:
                self._forget(self._find(aor, binding.contact), "removed")
        by_aor = self._by_aor
        for binding in save:
            # as _forget(old) then _remember(binding), without leaving the AOR
            bindings = by_aor.get(aor)
            old = None
            if bindings is not None:
                contact = binding.contact
                for b in bindings:
                    if b.contact == contact:
                        old = b
                        break
            if old is None:
                self._remember(binding, "added")
                continue
            if old is not binding:
                bindings.remove(old)  # type: ignore[union-attr]
                # the expiry timer names (aor, contact), not the binding: it moves
                # to the new binding and is reset (no new DelayedCall, no cancel)
                timer, old.timer = old.timer, None
                if binding.timer is None:
                    binding.timer = timer
                elif timer is not None and timer.active():
                    timer.cancel()
            self._remember(binding, "refreshed")
        for binding in save:
            transport = binding.transport
            if (
                transport is not None
                and binding.flow[0] in _STREAM
                and not transport.connected
            ):
                self.log.info(
                    "binding {contact} of {aor} dropped: its connection closed meanwhile",
                    contact=binding.contact,
                    aor=aor,
                )
                self.remove(binding)
        return self.bindings(aor)

    def _persist(self, aor: str, save: list[Binding], remove: list[Binding]) -> Deferred:
        if self.store is None or not (save or remove):
            return succeed(None)
        if hasattr(self.store, "replace"):
            return self.store.replace(aor, save, [b.contact for b in remove])
        ops = [self.store.remove(aor, b.contact) for b in remove]
        ops += [self.store.save(b) for b in save]
        return gatherResults(ops, consumeErrors=True)

    def _find(self, aor: str, contact: str) -> Binding | None:
        for binding in self._by_aor.get(aor, ()):
            if binding.contact == contact:
                return binding
        return None

    def _remember(self, binding: Binding, event: str) -> None:
        bindings = self._by_aor.get(binding.aor)
        if bindings is None:
            self._by_aor[binding.aor] = [binding]
        elif binding not in bindings:
            bindings.append(binding)
        clock = self.clock
        delay = max(0.0, binding.expires_at - clock.seconds())
        timer = binding.timer
        if timer is not None and timer.active() and timer.func == self._expired:
            timer.reset(delay)  # ours, moved from the binding refreshed: move its time
        else:
            if timer is not None and timer.active():
                timer.cancel()
            binding.timer = clock.callLater(delay, self._expired, binding.aor, binding.contact)
        if self._observers:
            self._notify(event, binding)

    def _forget(self, binding: Binding | None, event: str | None) -> bool:
        if binding is None:
            return False
        bindings = self._by_aor.get(binding.aor, [])
        if binding not in bindings:
            return False
        bindings.remove(binding)
        if not bindings:
            del self._by_aor[binding.aor]
        if binding.timer is not None and binding.timer.active():
            binding.timer.cancel()
        binding.timer = None
        if event is not None:
            self._notify(event, binding)
        return True

    def _notify(self, event: str, binding: Binding) -> None:
        for observer in list(self._observers):
            try:
                observer(event, binding)
            except Exception:
                self.log.failure("location observer failed on {event}", event=event)

    def _expired(self, aor: str, contact: str) -> None:
        """The expiry timer of the binding of ``aor`` with ``contact`` has fired."""
        binding = self._find(aor, contact)
        if binding is not None:
            self._expire(binding)

    def _expire(self, binding: Binding) -> None:
        binding.timer = None
        self.log.info(
            "binding {contact} of {aor} expired", contact=binding.contact, aor=binding.aor
        )
        self.remove(binding)

    def remove(self, binding: Binding) -> Deferred:
        """Drop one binding now (memory first, then the store). Fires when stored."""
        if not self._forget(binding, "removed"):
            return succeed(None)
        if self.store is None:
            return succeed(None)
        d = self.store.remove(binding.aor, binding.contact)
        d.addErrback(
            lambda f: self.log.failure(
                "could not delete binding {contact} of {aor}",
                f,
                contact=binding.contact,
                aor=binding.aor,
            )
        )
        return d

    def transport_closed(self, transport: Any) -> list[Binding]:
        """A TCP/TLS connection closed: remove the bindings made over it."""
        gone = [b for bs in self._by_aor.values() for b in bs if b.transport is transport]
        for binding in gone:
            self.log.info(
                "binding {contact} of {aor} removed: its {transport} connection closed",
                contact=binding.contact,
                aor=binding.aor,
                transport=binding.flow[0],
            )
            self.remove(binding)
        return gone

    def set_reachable(self, binding: Binding, reachable: bool, rtt: float | None = None) -> None:
        """Record a qualify result; logs and notifies on a change of state."""
        binding.rtt = rtt if reachable else None
        if binding.reachable == reachable:
            return
        binding.reachable = reachable
        self.log.info(
            "binding {contact} of {aor} is now {state}",
            contact=binding.contact,
            aor=binding.aor,
            state="reachable" if reachable else "unreachable",
        )
        self._notify("reachable" if reachable else "unreachable", binding)

    def restore(self) -> Deferred:
        """Load the stored bindings (at start); expired ones are dropped.

        Fires with the number of bindings restored.
        """
        if self.store is None:
            return succeed(0)

        def loaded(records: list[dict[str, Any]]) -> int:
            now = self.clock.seconds()
            count = 0
            for record in records:
                try:
                    binding = Binding.from_record(record)
                except Exception:
                    self.log.failure("unreadable stored binding {record}", record=record)
                    continue
                if binding.expires_at <= now:
                    continue
                self._forget(self._find(binding.aor, binding.contact), None)
                self._remember(binding, "restored")
                count += 1
            self.log.info("restored {count} bindings", count=count)
            return count

        return self.store.load().addCallback(loaded)

    # -- NAT --------------------------------------------------------------------

    def target(self, binding: Binding) -> tuple[Any, tuple[str, int]]:
        """Where to send a request for ``binding``: ``(transport, (host, port))``.

        ``transport`` is the live ISIPTransport when the flow's connection/port
        is known, else a transport name ('UDP', 'TCP', 'TLS') for an IConnector.
        With a Path (RFC 3327) the first Path hop is the target (the caller adds
        the Path as Route headers).
        """
        name, host, port = binding.flow
        live = binding.transport
        if live is not None and not getattr(live, "connected", True):
            live = None
        if binding.path:
            hop = NameAddr.parse(binding.path[0]).uri
            hop_name = hop.transport or ("TLS" if hop.scheme == "sips" else name)
            if live is not None and hop.host == host and hop_name == name:
                return live, (host, port)
            return hop_name, (hop.host, hop.port or (5061 if hop_name == "TLS" else 5060))
        if self._use_flow(binding, live):
            return (live if live is not None else name), (host, port)
        uri = binding.uri
        contact_name = uri.transport or ("TLS" if uri.scheme == "sips" else "UDP")
        contact_port = uri.port or (5061 if contact_name == "TLS" else 5060)
        if live is not None and contact_name == name and not binding.stream:
            return live, (uri.host, contact_port)  # same UDP socket, direct address
        return contact_name, (uri.host, contact_port)

    def _use_flow(self, binding: Binding, live: Any) -> bool:
        if self.nat == "always":
            return True
        if self.nat == "never":
            return False
        return binding.nat or (binding.stream and live is not None)
