"""A phone's SDP address of the other IP family is not used as a media destination.

Found by the live fuzz test: an offer with ``c=IN IP6 ::1`` to a PBX whose RTP ports are
IPv4 made the ring-back player write to ``::1`` through an IPv4 socket, and Twisted's
``InvalidAddressError`` failed the dial with a logged traceback.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pbxd.calls.media import LegSdp
from pbxd.sdp.session import SessionDescription


def offer(address: str, port: int = 40000) -> SessionDescription:
    kind = "IP6" if ":" in address else "IP4"
    text = (f"v=0\r\no=- 1 1 IN {kind} {address}\r\ns=-\r\nc=IN {kind} {address}\r\n"
            f"t=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\n")
    return SessionDescription.parse(text.encode())


class RecordingMedia:
    closed = False
    port = 30000
    dtmf_pt: Any = None

    def __init__(self) -> None:
        self.remotes: list[tuple[Any, tuple[str, ...]]] = []

    def set_remote(self, address: Any, allowed_ips: Any = ()) -> None:
        self.remotes.append((address, tuple(allowed_ips)))


class AddressFamilyTests(SynchronousTestCase):
    def test_same_family_is_used(self) -> None:
        media = RecordingMedia()
        LegSdp(media, "127.0.0.1").received(offer("127.0.0.7"), "127.0.0.8")
        self.assertEqual(media.remotes, [(("127.0.0.7", 40000), ("127.0.0.8",))])
        self.assertEqual(media.dtmf_pt, 101)

    def test_ipv6_offer_to_ipv4_media_is_not_used(self) -> None:
        media = RecordingMedia()
        sdp = LegSdp(media, "127.0.0.1")
        sdp.received(offer("::1"), "127.0.0.8")
        self.assertEqual(media.remotes, [])
        self.assertIsNotNone(sdp.remote_sdp)  # the offer is still known

    def test_ipv4_offer_to_ipv6_media_is_not_used(self) -> None:
        media = RecordingMedia()
        LegSdp(media, "::1").received(offer("127.0.0.7"))
        self.assertEqual(media.remotes, [])

    def test_ipv6_offer_to_ipv6_media_is_used(self) -> None:
        media = RecordingMedia()
        LegSdp(media, "::1").received(offer("::2"))
        self.assertEqual(media.remotes, [(("::2", 40000), ())])
