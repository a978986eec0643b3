"""SessionDescription.copy: equal to the original and sharing nothing mutable with it."""

from __future__ import annotations

import copy

from pbxd.sdp.session import SessionDescription

OFFER = (
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=call\r\n"
    "c=IN IP4 192.0.2.10\r\nt=0 0\r\na=sendrecv\r\nb=AS:64\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\nc=IN IP4 192.0.2.11\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
    "m=video 0 RTP/AVP 31\r\n"
)


def test_copy_equals_a_deepcopy_and_serializes_the_same():
    sdp = SessionDescription.parse(OFFER)
    dup = sdp.copy()
    assert dup == copy.deepcopy(sdp) and dup.serialize() == sdp.serialize()


def test_editing_the_copy_leaves_the_original_alone():
    sdp = SessionDescription.parse(OFFER)
    before = sdp.serialize()
    dup = sdp.copy()
    dup.origin.sess_version += 1
    dup.connection.address = "203.0.113.1"
    dup.attributes.append(("recvonly", None))
    dup.other_lines.append(("i", "x"))
    audio = dup.media[0]
    audio.port = 40000
    audio.formats.remove("8")
    audio.connection.address = "203.0.113.2"
    audio.attributes.clear()
    audio.other_lines.append(("i", "y"))
    dup.media.pop()
    assert sdp.serialize() == before
