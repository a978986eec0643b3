"""Offer/answer helpers for the B2BUA (RFC 3264). Pure: works on SessionDescription.

pbxd anchors media: each leg is offered (and answered) the PBX's own relay
address and port, with the codecs of the other leg left untouched so what the
two phones share passes straight through the relay (:func:`rewrite_for_leg`).
When pbxd itself terminates media (prompts, voicemail, menus) it answers with
:func:`answer_for`.  Only the first active audio stream is used; other
streams are rejected (port 0) because one relay port pair carries one stream.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from pbxd.sdp.session import (
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
)

__all__ = [
    "NON_AUDIO_ENCODINGS",
    "answer_direction",
    "answer_for",
    "audio_stream",
    "has_active_media",
    "hold_direction",
    "is_hold",
    "negotiated_codec",
    "remote_media",
    "remote_rtp_address",
    "rewrite_for_leg",
    "telephone_event_pt",
]

TELEPHONE_EVENT = "telephone-event"
NON_AUDIO_ENCODINGS = frozenset({"telephone-event", "cn"})
"""Encodings that never count as the call's codec (lower case)."""

# Attributes that describe the original endpoint's transport, not the relay's.
_TRANSPORT_ATTRIBUTES = frozenset(
    {
        "rtcp",
        "rtcp-mux",
        "candidate",
        "remote-candidates",
        "end-of-candidates",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
        "ice-mismatch",
    }
)

_FLIP = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly"}
_FLIP["inactive"] = "inactive"


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _is_usable_audio(media: MediaDescription) -> bool:
    return media.media == "audio" and media.port != 0 and media.proto.upper() == "RTP/AVP"


def audio_stream(sd: SessionDescription) -> MediaDescription | None:
    """The first active (port != 0) RTP/AVP audio stream, or None."""
    for m in sd.media:  # _is_usable_audio, inlined: this runs a dozen times per call
        if m.media == "audio" and m.port != 0 and (m.proto == "RTP/AVP"
                                                     or m.proto.upper() == "RTP/AVP"):
            return m
    return None


def has_active_media(sd: SessionDescription) -> bool:
    """True when at least one stream is not rejected (an answer worth sending, not a 488)."""
    return any(m.port != 0 for m in sd.media)


def remote_rtp_address(sd: SessionDescription) -> tuple[str, int] | None:
    """Where to send RTP for the audio stream: (host, port), or None.

    Multicast ``/ttl`` suffixes are stripped; the address may be the RFC 2543
    hold address 0.0.0.0 (check :func:`is_hold`).
    """
    return remote_media(sd)[1]


def remote_media(sd: SessionDescription) -> tuple[bool, tuple[str, int] | None, int | None]:
    """What a relay needs of a phone's SDP, its audio stream looked up once:
    ``(is_hold(sd), remote_rtp_address(sd), telephone_event_pt(sd))``."""
    media = audio_stream(sd)
    if media is None:
        return True, None, None
    connection = media.connection or sd.connection
    if connection is None:
        return sd.media_direction(media) in ("sendonly", "inactive"), None, \
            _telephone_event_pt(media)
    host = connection.address.split("/", 1)[0]
    hold = host in ("0.0.0.0", "::") or sd.media_direction(media) in ("sendonly", "inactive")
    return hold, (host, media.port), _telephone_event_pt(media)


def answer_direction(offered: str, wanted: str | None = None) -> str:
    """The answer's direction for an offered one, limited by what we want to do.

    sendonly -> recvonly, recvonly -> sendonly, inactive -> inactive; with
    ``wanted`` (our own wish, e.g. 'sendonly' to hold) the result allows a
    direction only if both sides allow it.
    """
    flipped = _FLIP.get(offered, "sendrecv")
    if wanted is None:
        return flipped
    send = flipped in ("sendrecv", "sendonly") and wanted in ("sendrecv", "sendonly")
    recv = flipped in ("sendrecv", "recvonly") and wanted in ("sendrecv", "recvonly")
    return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}.get(
        (send, recv), "inactive"
    )


def _rejected(media: MediaDescription) -> MediaDescription:
    return MediaDescription(
        media=media.media, port=0, proto=media.proto, formats=list(media.formats) or ["0"]
    )


def _choose(offered: MediaDescription, supported: Iterable[tuple[str, int]],
            rtpmap: dict[int, tuple[str, int, int]] | None = None) -> list[int]:
    """Offered payload types matching ``supported``, in ``supported`` order
    (``rtpmap``: ``offered.rtpmap`` when the caller has it already)."""
    if rtpmap is None:
        rtpmap = offered.rtpmap
    chosen: list[int] = []
    lowered = [(pt, name.lower(), rate) for pt, (name, rate, _channels) in rtpmap.items()]
    for encoding, clock in supported:
        wanted = encoding.lower()
        for pt, name, rate in lowered:
            if name == wanted and rate == clock and pt not in chosen:
                chosen.append(pt)
                break
    return chosen


def _rtpmap_value(encoding: str, clock: int, channels: int) -> str:
    return f"{encoding}/{clock}" + (f"/{channels}" if channels != 1 else "")


def answer_for(
    offer: SessionDescription,
    supported: list[tuple[str, int]],
    local_address: str,
    local_port: int,
    direction: str | None = None,
    *,
    origin: Origin | None = None,
    telephone_events: str = "0-16",
    codecs: int | None = None,
) -> SessionDescription:
    """Answer ``offer`` for media pbxd terminates itself (RFC 3264 §6).

    ``supported`` is our codecs as (encoding, clock rate) in our preference
    order; the answer lists the common ones in that order with the offerer's
    payload type numbers, plus telephone-event/8000 when offered.  The first
    usable audio stream gets ``local_address``/``local_port``; every other
    stream, and that one too when nothing is common, is rejected with port 0.
    ``direction`` is what we want (None: whatever the offer allows); ``codecs`` limits
    the common codecs answered to the first ones (telephone-event comes on top).
    """
    addrtype = _addrtype(local_address)
    answer = SessionDescription(
        origin=origin
        or Origin("pbxd", str(secrets.randbelow(2**31)), 1, "IN", addrtype, local_address),
        name="pbxd",
        connection=Connection(local_address, addrtype),
        timing=offer.timing or (0, 0),
    )
    accepted = False
    for offered in offer.media:
        rtpmap = offered.rtpmap if not accepted and _is_usable_audio(offered) else {}
        chosen = _choose(offered, supported, rtpmap) if rtpmap else []
        if accepted or not chosen:
            answer.media.append(_rejected(offered))
            continue
        accepted = True
        if codecs is not None:
            chosen = chosen[:codecs]
        fmtp = offered.fmtp
        dtmf = _choose(offered, [(TELEPHONE_EVENT, 8000)], rtpmap)
        media = MediaDescription(media="audio", port=local_port, proto=offered.proto, formats=[])
        for pt in chosen + dtmf:
            media.formats.append(str(pt))
            media.attributes.append(("rtpmap", f"{pt} {_rtpmap_value(*rtpmap[pt])}"))
            if pt in dtmf:
                media.attributes.append(("fmtp", f"{pt} {telephone_events}"))
            elif pt in fmtp:
                media.attributes.append(("fmtp", f"{pt} {fmtp[pt]}"))
        if offered.ptime is not None:
            media.ptime = offered.ptime
        media.direction = answer_direction(offer.media_direction(offered), direction)
        answer.media.append(media)
    return answer


def rewrite_for_leg(
    sdp: SessionDescription,
    address: str,
    port: int,
    session_version_bump: bool = True,
    *,
    origin: Origin | None = None,
) -> SessionDescription:
    """A copy of ``sdp`` (an offer or answer from one leg) to send to the other leg.

    The connection and the audio stream's port become the PBX relay's
    ``address``/``port``; codecs, fmtp, ptime and direction pass through
    untouched.  Transport attributes of the original endpoint (a=rtcp, ICE)
    are dropped, and streams other than the first active audio one are
    disabled (port 0).  The origin keeps the source's session id with the
    PBX's address and a version bumped by one, unless ``origin`` (the origin
    this leg has seen so far, managed by the caller) is given.
    """
    out = sdp.copy()
    addrtype = _addrtype(address)
    out.connection = Connection(address, addrtype)
    if origin is not None:
        out.origin = origin.copy()
    else:
        out.origin.address, out.origin.addrtype = address, addrtype
        if session_version_bump:
            out.origin.sess_version += 1
    out.attributes = [a for a in out.attributes if a[0] not in _TRANSPORT_ATTRIBUTES]
    audio = audio_stream(out)
    for media in out.media:
        media.connection = None
        media.attributes = [a for a in media.attributes if a[0] not in _TRANSPORT_ATTRIBUTES]
        if media is audio:
            media.port = port
            media.port_count = None
        else:
            media.port = 0
    return out


def hold_direction(direction: str) -> str:
    """The direction to offer to put a call on hold (RFC 3264 §8.4, RFC 6337).

    sendrecv -> sendonly, recvonly -> inactive; sendonly and inactive stay.
    """
    return {"sendrecv": "sendonly", "recvonly": "inactive"}.get(direction, direction)


def is_hold(sd: SessionDescription) -> bool:
    """True when ``sd`` puts the call on hold.

    The audio stream is sendonly or inactive, or its connection address is
    0.0.0.0 (RFC 2543 style), or there is no active audio stream at all.
    """
    media = audio_stream(sd)
    if media is None:
        return True
    connection = sd.media_connection(media)
    if connection is not None and connection.address.split("/", 1)[0] in ("0.0.0.0", "::"):
        return True
    return sd.media_direction(media) in ("sendonly", "inactive")


def negotiated_codec(
    offer: SessionDescription, answer: SessionDescription
) -> tuple[int, str] | None:
    """(payload type, encoding) of the first answered codec the offer also has.

    Telephone-event and comfort noise are skipped; None when nothing is common.
    """
    offered_media, answered_media = audio_stream(offer), audio_stream(answer)
    if offered_media is None or answered_media is None:
        return None
    offered = {(e.lower(), c) for e, c, _ in offered_media.rtpmap.values()}
    for pt, (encoding, clock, _channels) in answered_media.rtpmap.items():
        if encoding.lower() not in NON_AUDIO_ENCODINGS and (encoding.lower(), clock) in offered:
            return pt, encoding
    return None


def telephone_event_pt(sd: SessionDescription) -> int | None:
    """The telephone-event payload type of the audio stream (8000 Hz preferred), or None."""
    media = audio_stream(sd)
    return None if media is None else _telephone_event_pt(media)


def _telephone_event_pt(media: MediaDescription) -> int | None:
    events = [
        (clock != 8000, pt)
        for pt, (encoding, clock, _) in media.rtpmap.items()
        if encoding.lower() == TELEPHONE_EVENT
    ]
    return min(events)[1] if events else None
