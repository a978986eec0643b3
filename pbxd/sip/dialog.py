"""SIP dialogs (RFC 3261 section 12) and the identifiers they are made of (layer 3).

A :class:`Dialog` holds what is needed to send requests inside a dialog and
to recognise requests that belong to it: Call-ID, both tags, the remote
target, the route set and both CSeq counters. It builds requests; sending is
the user agent's job (:mod:`pbxd.sip.ua`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pbxd.sip.message import Request, Response
from pbxd.sip.tokens import random_below, random_hex
from pbxd.sip.uri import URI, CSeq, NameAddr

BRANCH_MAGIC = "z9hG4bK"


def new_tag() -> str:
    """A random From/To tag (RFC 3261 19.3: at least 32 bits of randomness)."""
    return random_hex(12)


def new_branch() -> str:
    """A random branch with the RFC 3261 magic cookie."""
    return BRANCH_MAGIC + random_hex(16)


def new_call_id(host: str) -> str:
    """A globally unique Call-ID."""
    return f"{random_hex(24)}@{host}"


DialogId = tuple[str, str, str]
"""(Call-ID, local tag, remote tag)."""


@dataclass
class Dialog:
    """One dialog, from our side (UAC or UAS)."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: URI
    route_set: list[NameAddr] = field(default_factory=list)
    local_cseq: int = 1
    remote_cseq: int | None = None
    local_contact: str = ""
    transport: Any = None
    address: tuple[str, int] | None = None
    secure: bool = False
    # From and To of our requests as last rendered: (local_uri, local_tag, remote_uri,
    # remote_tag, From, To); rendered again when one of the four is replaced
    _rendered: tuple[Any, ...] | None = field(default=None, init=False, repr=False,
                                             compare=False)

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    # -- creation -------------------------------------------------------

    @classmethod
    def as_uas(
        cls, request: Request, local_tag: str, local_contact: str, transport: Any, source: tuple[str, int]
    ) -> Dialog:
        """The dialog a UAS creates when it answers ``request`` (RFC 3261 12.1.1)."""
        call_id, from_, to, cseq = mandatory(request)
        contacts = request.contacts
        target = contacts[0].uri if contacts else from_.uri
        return cls(
            call_id=call_id,
            local_tag=local_tag,
            remote_tag=from_.tag or "",
            local_uri=_without_tag(to),
            remote_uri=_without_tag(from_),
            remote_target=target,
            route_set=list(request.record_routes),
            local_cseq=random_below(2**20) + 1,
            remote_cseq=cseq.seq,
            local_contact=local_contact,
            transport=transport,
            address=source,
            secure=request.uri.scheme == "sips",
        )

    @classmethod
    def as_uac(
        cls, request: Request, response: Response, transport: Any, address: tuple[str, int]
    ) -> Dialog:
        """The dialog a UAC creates from a 2xx/101-199 with a To tag (RFC 3261 12.1.2)."""
        call_id, from_, to, cseq = mandatory(request)
        remote_tag = mandatory(response)[2].tag or ""
        contacts = response.contacts
        target = contacts[0].uri if contacts else request.uri
        return cls(
            call_id=call_id,
            local_tag=from_.tag or "",
            remote_tag=remote_tag,
            local_uri=_without_tag(from_),
            remote_uri=_without_tag(to),
            remote_target=target,
            route_set=list(reversed(response.record_routes)),
            local_cseq=cseq.seq,
            remote_cseq=None,
            local_contact=request.get("Contact") or "",
            transport=transport,
            address=address,
            secure=request.uri.scheme == "sips",
        )

    # -- in-dialog requests --------------------------------------------

    def make_request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        cseq: int | None = None,
    ) -> Request:
        """A request inside this dialog (RFC 3261 12.2.1.1). No Via and no Max-Forwards:
        the sender adds them (:meth:`pbxd.sip.ua.UserAgent.add_via`).

        ``cseq`` is given for ACK and CANCEL, which reuse the INVITE's number;
        any other method takes the next local CSeq.
        """
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        routes = list(self.route_set)
        if routes and "lr" not in routes[0].uri.params:
            # strict router: it goes in the Request-URI, the target last in Route
            ruri = routes[0].uri.copy()
            routes = routes[1:] + [NameAddr(self.remote_target)]
        else:
            ruri = self.remote_target.copy()
        req = Request(method, ruri)
        for route in routes:
            req.add("Route", str(route))
        from_to = self._from_to()
        req.add("From", from_to[4])
        req.add("To", from_to[5])
        req.add("Call-ID", self.call_id)
        req.add("CSeq", f"{cseq} {method}")
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER") and self.local_contact:
            req.add("Contact", self.local_contact)
        for name, value in headers:
            req.add(name, value)
        if content_type and body:
            req.add("Content-Type", content_type)
        req.body = body
        return req

    def _from_to(self) -> tuple[Any, ...]:
        """The From and To values of our requests (rendered once per dialog: their
        NameAddrs are not changed in place once the dialog exists)."""
        cached = self._rendered
        local, local_tag, remote, remote_tag = (self.local_uri, self.local_tag,
                                                self.remote_uri, self.remote_tag)
        if cached is None or cached[0] is not local or cached[1] != local_tag or \
                cached[2] is not remote or cached[3] != remote_tag:
            cached = self._rendered = (local, local_tag, remote, remote_tag,
                                       f"{local};tag={local_tag}", f"{remote};tag={remote_tag}")
        return cached

    def accept_remote_cseq(self, request: Request) -> bool:
        """Check and record the CSeq of a request from the peer (RFC 3261 12.2.2).

        False means it is out of order and must be answered 500.
        """
        seq = mandatory(request)[3].seq
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_cseq is not None and seq <= self.remote_cseq:
            return False
        self.remote_cseq = seq
        return True

    def update_target(self, message: Request | Response) -> None:
        """A target-refresh request or its 2xx may move the remote target (RFC 3261 12.2)."""
        contacts = message.contacts
        if contacts:
            self.remote_target = contacts[0].uri


def _without_tag(addr: NameAddr) -> NameAddr:
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    return NameAddr(addr.uri.copy(), addr.display, params)


def dialog_id_of(request: Request) -> DialogId:
    """The id of the dialog an incoming request belongs to, seen from our side."""
    call_id, from_, to, _ = mandatory(request)
    return (call_id, to.tag or "", from_.tag or "")


def mandatory(message: Request | Response) -> tuple[str, NameAddr, NameAddr, CSeq]:
    """Call-ID, From, To and CSeq of a message that passed validation.

    The controller answers 400 to a request missing any of them before a dialog
    sees it; a message that still lacks one here is a ValueError.
    """
    call_id, from_, to, cseq = message.call_id, message.from_, message.to, message.cseq
    if call_id is None or from_ is None or to is None or cseq is None:
        raise ValueError("a dialog message needs Call-ID, From, To and CSeq")
    return call_id, from_, to, cseq
