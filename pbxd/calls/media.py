"""The SDP side of an anchored leg (layer 4).

:class:`LegSdp` pairs a leg's :class:`~pbxd.rtp.relay.LegMedia` (our RTP/RTCP
port pair facing that phone) with the SDP we exchange with that phone:

- :meth:`LegSdp.received` parses what the phone sent, points the relay at
  the address it names (accepting packets also from the phone's signalling
  IP, for a phone behind NAT) and notes its telephone-event payload type;
- :meth:`LegSdp.outgoing` turns the other leg's SDP into the body for this
  phone: our address and port, the codecs and direction attributes as they
  were (so sendonly/recvonly/inactive hold maps end to end), one origin per
  leg whose version goes up only when the content changes (RFC 3264 §8).
"""

from __future__ import annotations

from typing import Any

from pbxd.sdp.negotiate import (
    answer_for,
    audio_stream,
    negotiated_codec,
    remote_media,
    rewrite_for_leg,
    telephone_event_pt,
)
from pbxd.sdp.session import Origin, SDPParseError, SessionDescription
from pbxd.sip.tokens import random_below

SDP = "application/sdp"

__all__ = ["G711", "SDP", "LegSdp", "SDPParseError", "parse_sdp"]

G711 = [("PCMU", 8000), ("PCMA", 8000)]
"""The codecs the PBX terminates itself (prompts, recording, echo, ringback), preferred first."""


def parse_sdp(message: Any) -> SessionDescription | None:
    """The SDP body of ``message``, None without one; raises SDPParseError if malformed."""
    if not message.body:
        return None
    content_type = (message.get("Content-Type") or SDP).split(";", 1)[0].strip().lower()
    if content_type != SDP:
        return None
    return SessionDescription.parse(message.body)


class LegSdp:
    """Our media endpoint and SDP state towards one phone."""

    def __init__(self, media: Any, address: str, signalling_ip: str | None = None) -> None:
        self.media = media
        self.address = address
        self.signalling_ip = signalling_ip
        self.origin = Origin("pbxd", str(random_below(2**31)), 1, "IN",
                             "IP6" if ":" in address else "IP4", address)
        self.last_sent: SessionDescription | None = None
        self.last_body = b""
        self.remote_sdp: SessionDescription | None = None
        self.on_hold = False

    def received(self, sdp: SessionDescription, signalling_ip: str | None = None) -> None:
        """The phone's offer or answer (from ``signalling_ip``): point the relay at it."""
        if signalling_ip:
            self.signalling_ip = signalling_ip
        self.remote_sdp = sdp
        self.on_hold, target, dtmf_pt = remote_media(sdp)
        media = self.media
        if (target is not None and target[0] not in ("0.0.0.0", "::") and not media.closed
                and (":" in target[0]) == (":" in self.address)):
            # an address of the other family (IPv6 in the SDP of a phone whose media port is
            # IPv4, or the reverse) cannot be sent to from this leg's sockets: no media to it
            allowed = (self.signalling_ip,) if self.signalling_ip else ()
            media.set_remote(target, allowed)
        media.dtmf_pt = dtmf_pt

    def outgoing(self, sdp: SessionDescription) -> bytes:
        """The other leg's ``sdp`` rewritten for this phone (our address and port)."""
        out = rewrite_for_leg(sdp, self.address, self.media.port if not self.media.closed else 0,
                              origin=self.origin)
        return self._sent(out)

    def answer(self, offer: SessionDescription) -> bytes:
        """Our own answer to the phone's ``offer`` (G.711 on our port), for media the PBX
        terminates; raises ValueError when the offer has no G.711."""
        # one codec (plus telephone-event): what the PBX plays and records
        out = answer_for(offer, G711, self.address,
                         self.media.port if not self.media.closed else 0, origin=self.origin,
                         codecs=1)
        if audio_stream(out) is None:
            raise ValueError("no G.711 codec in the offer")
        return self._sent(out)

    def offer(self) -> bytes:
        """Our own offer (PCMU, PCMA, telephone-event) for a call the PBX originates."""
        port = self.media.port if not self.media.closed else 0
        ip = "IP6" if ":" in self.address else "IP4"
        text = ("v=0\r\n" f"o=pbxd 0 0 IN {ip} {self.address}\r\n" "s=pbxd\r\n"
                f"c=IN {ip} {self.address}\r\n" "t=0 0\r\n"
                f"m=audio {port} RTP/AVP 0 8 101\r\n" "a=rtpmap:0 PCMU/8000\r\n"
                "a=rtpmap:8 PCMA/8000\r\n" "a=rtpmap:101 telephone-event/8000\r\n"
                "a=fmtp:101 0-16\r\n" "a=ptime:20\r\n" "a=sendrecv\r\n")
        sdp = SessionDescription.parse(text)
        sdp.origin = self.origin.copy()
        return self._sent(sdp)

    def _sent(self, out: SessionDescription) -> bytes:
        if self.last_sent is not None and _same_content(out, self.last_sent):
            return self.last_body
        if self.last_sent is not None:
            self.origin = self.origin.copy(self.origin.sess_version + 1)
            out.origin = self.origin.copy()
        self.last_sent = out
        self.last_body = out.serialize()
        return self.last_body

    def codecs(self, answer_to: SessionDescription | None) -> list[str]:
        """Codec names agreed between ``answer_to`` (the offer) and this phone's SDP."""
        remote = self.remote_sdp
        if remote is None:
            return []
        names: list[str] = []
        if answer_to is not None:
            chosen = negotiated_codec(answer_to, remote)
            if chosen is not None:
                names.append(chosen[1])
        if not names:
            stream = audio_stream(remote)
            if stream is not None:
                names += [e for e, _c, _n in stream.rtpmap.values()][:1]
        if telephone_event_pt(remote) is not None:
            names.append("telephone-event")
        return names


def _same_content(a: SessionDescription, b: SessionDescription) -> bool:
    a2, b2 = a.copy(), b.copy()
    a2.origin = b2.origin = Origin()
    return a2.serialize() == b2.serialize()
