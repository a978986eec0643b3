"""SDP parsing/serialization (RFC 4566) and offer/answer helpers (RFC 3264)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxd.errors import PBXError
from pbxd.sdp.negotiate import (
    answer_direction,
    answer_for,
    has_active_media,
    hold_direction,
    is_hold,
    negotiated_codec,
    remote_media,
    remote_rtp_address,
    rewrite_for_leg,
    telephone_event_pt,
)
from pbxd.sdp.session import MediaDescription, SDPParseError, SessionDescription

# A Linphone/baresip-style offer, in RFC 4566 order (round-trips byte for byte).
PHONE_OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844527 IN IP4 192.0.2.10\r\n"
    b"s=Talk\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"b=AS:80\r\n"
    b"t=0 0\r\n"
    b"a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n"
    b"m=audio 49170 RTP/AVP 96 0 8 101\r\n"
    b"a=rtpmap:96 opus/48000/2\r\n"
    b"a=fmtp:96 useinbandfec=1\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=rtcp:49171\r\n"
    b"y=0123456789\r\n"
)

# SIPp's uac.xml body shape: a static-only offer, no rtpmap at all.
SIPP_OFFER = (
    b"v=0\r\n"
    b"o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

IPV6_TWO_STREAMS = (
    "v=0\n"
    "o=- 1 1 IN IP6 2001:db8::1\n"
    "s=-\n"
    "t=0 0\n"
    "m=audio 5004 RTP/AVP 8 0\n"
    "c=IN IP6 2001:db8::1\n"
    "a=sendonly\n"
    "m=video 5006 RTP/AVP 97\n"
    "c=IN IP6 2001:db8::1\n"
    "a=rtpmap:97 H264/90000\n"
)


def test_parse_reads_every_field_of_a_phone_offer():
    sd = SessionDescription.parse(PHONE_OFFER)
    assert sd.version == 0
    o = sd.origin
    assert (o.username, o.sess_id, o.sess_version) == ("alice", "2890844526", 2890844527)
    assert (o.nettype, o.addrtype, o.address) == ("IN", "IP4", "192.0.2.10")
    assert sd.name == "Talk"
    assert (sd.connection.address, sd.connection.addrtype) == ("192.0.2.10", "IP4")
    assert sd.timing == (0, 0)
    assert sd.attributes[0][0] == "rtcp-xr"
    (m,) = sd.media
    assert (m.media, m.port, m.proto, m.formats) == (
        "audio",
        49170,
        "RTP/AVP",
        ["96", "0", "8", "101"],
    )
    assert m.connection is None
    assert m.rtpmap == {
        96: ("opus", 48000, 2),
        0: ("PCMU", 8000, 1),
        8: ("PCMA", 8000, 1),
        101: ("telephone-event", 8000, 1),
    }
    assert m.fmtp == {96: "useinbandfec=1", 101: "0-15"}
    assert m.ptime == 20
    assert m.direction == "sendrecv"
    assert m.get_attribute("rtcp") == "49171"
    assert m.other_lines == [("y", "0123456789")]
    assert sd.other_lines == [("b", "AS:80")]


@pytest.mark.parametrize("body", [PHONE_OFFER, SIPP_OFFER])
def test_serialize_round_trips_rfc_ordered_bodies_byte_for_byte(body):
    assert SessionDescription.parse(body).serialize() == body


def test_parse_accepts_lf_line_ends_and_str_and_writes_crlf():
    sd = SessionDescription.parse(IPV6_TWO_STREAMS)
    assert sd.serialize() == IPV6_TWO_STREAMS.replace("\n", "\r\n").encode()


def test_ipv6_connection_lines_are_per_media():
    sd = SessionDescription.parse(IPV6_TWO_STREAMS)
    assert sd.connection is None
    audio, video = sd.media
    assert (audio.connection.addrtype, audio.connection.address) == ("IP6", "2001:db8::1")
    assert audio.direction == "sendonly"
    assert video.rtpmap == {97: ("H264", 90000, 1)}


def test_port_count_and_multicast_ttl_survive_round_trip():
    body = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 224.2.1.1/127\r\n"
        b"t=0 0\r\nm=audio 49170/2 RTP/AVP 0\r\n"
    )
    sd = SessionDescription.parse(body)
    assert sd.media[0].port_count == 2
    assert remote_rtp_address(sd) == ("224.2.1.1", 49170)
    assert sd.serialize() == body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "v="),
        ("o=- 1 1 IN IP4 1.2.3.4\r\n", "must start with a v= line"),
        ("v=1\r\n", "unsupported SDP version"),
        ("v=0\r\ns=-\r\nc=IN IP4 1.2.3.4\r\n", "missing o= line"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\n", "missing s= line"),
        ("v=0\r\no=- 1 IN IP4 1.2.3.4\r\ns=-\r\n", "line 2: o= needs 6 fields"),
        ("v=0\r\no=- 1 x IN IP4 1.2.3.4\r\ns=-\r\n", "session version 'x'"),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4\r\n", "line 4: c= needs"),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP6 1.2.3.4\r\n", "not an IP6 address"),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 ::1\r\n", "not an IP4 address"),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IPX x\r\n", "expected IP4 or IP6"),
        (
            "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 a\r\nm=audio 70000 RTP/AVP 0\r\n",
            "line 5: m= port '70000'",
        ),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 a\r\nm=audio x RTP/AVP 0\r\n", "m= port 'x'"),
        (
            "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 a\r\nm=audio 5 RTP/AVP PCMU\r\n",
            "payload type 'PCMU'",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 a\r\nm=audio 5 RTP/AVP 128\r\n",
            "payload type '128'",
        ),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 a\r\nm=audio 5 RTP/AVP\r\n", "m= needs"),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 5 RTP/AVP 0\r\n", "has no c= line"),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nnonsense\r\n", "line 4: expected '<letter>=<value>'"),
        ("v=0\r\no=- 1 1 IN IP4 a\r\no=- 1 1 IN IP4 a\r\ns=-\r\n", "line 3: unexpected o= line"),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nt=now\r\n", "t= needs"),
        (b"v=0\r\no=\xff\r\n", "not valid UTF-8"),
    ],
)
def test_malformed_sdp_raises_sdp_parse_error_saying_what_is_wrong(body, message):
    with pytest.raises(SDPParseError, match=message):
        SessionDescription.parse(body)


def test_sdp_parse_error_is_a_pbx_error_and_a_value_error():
    assert issubclass(SDPParseError, PBXError) and issubclass(SDPParseError, ValueError)


def test_rejected_media_without_connection_is_accepted():
    body = "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"
    sd = SessionDescription.parse(body)
    assert sd.media[0].rejected
    assert not has_active_media(sd)


def test_non_rtp_media_may_have_text_formats():
    body = "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 a\r\nm=image 0 udptl t38\r\n"
    assert SessionDescription.parse(body).media[0].formats == ["t38"]


def test_direction_setter_replaces_existing_attribute_in_place():
    sd = SessionDescription.parse(PHONE_OFFER)
    m = sd.media[0]
    m.direction = "recvonly"
    m.direction = "inactive"
    assert [k for k, _ in m.attributes].count("inactive") == 1
    assert m.direction == "inactive"
    with pytest.raises(ValueError):
        m.direction = "sideways"


def test_session_level_direction_applies_to_media_without_one():
    sd = SessionDescription.parse(SIPP_OFFER)
    sd.direction = "sendonly"
    assert sd.media[0].direction == "sendrecv"
    assert sd.media_direction(sd.media[0]) == "sendonly"
    assert is_hold(sd)


def test_ptime_setter_replaces_and_removes():
    m = MediaDescription(port=1, formats=["0"])
    m.ptime = 30
    m.ptime = 20
    assert m.attributes == [("ptime", "20")]
    m.ptime = None
    assert m.ptime is None and m.attributes == []


# -- offer/answer --------------------------------------------------------


def test_answer_keeps_offerer_payload_numbers_in_our_preference_order():
    offer = SessionDescription.parse(PHONE_OFFER)
    answer = answer_for(offer, [("PCMA", 8000), ("PCMU", 8000)], "198.51.100.1", 20000)
    m = answer.media[0]
    assert m.port == 20000 and answer.connection.address == "198.51.100.1"
    assert m.formats == ["8", "0", "101"]
    assert m.rtpmap[101] == ("telephone-event", 8000, 1)
    assert m.fmtp[101] == "0-16"
    assert m.ptime == 20
    assert m.direction == "sendrecv"
    # the answer is valid SDP
    reparsed = SessionDescription.parse(answer.serialize())
    assert reparsed.media[0].formats == ["8", "0", "101"]
    assert negotiated_codec(offer, answer) == (8, "PCMA")
    assert telephone_event_pt(answer) == 101


def test_answer_without_telephone_event_in_offer_has_none():
    answer = answer_for(SessionDescription.parse(SIPP_OFFER), [("PCMU", 8000)], "10.0.0.1", 4000)
    assert answer.media[0].formats == ["0"]
    assert telephone_event_pt(answer) is None


def test_answer_rejects_media_without_common_codec_and_extra_streams():
    offer = SessionDescription.parse(IPV6_TWO_STREAMS)
    answer = answer_for(offer, [("PCMU", 8000)], "2001:db8::2", 30000)
    audio, video = answer.media
    assert (audio.port, audio.formats) == (30000, ["0"])
    assert answer.connection.addrtype == "IP6"
    assert (video.media, video.port) == ("video", 0)
    nothing = answer_for(offer, [("G722", 8000)], "2001:db8::2", 30000)
    assert [m.port for m in nothing.media] == [0, 0]
    assert not has_active_media(nothing)
    assert negotiated_codec(offer, nothing) is None


@pytest.mark.parametrize(
    ("offered", "wanted", "answered"),
    [
        ("sendrecv", None, "sendrecv"),
        ("sendonly", None, "recvonly"),
        ("recvonly", None, "sendonly"),
        ("inactive", None, "inactive"),
        ("sendrecv", "sendonly", "sendonly"),
        ("sendonly", "sendonly", "inactive"),
        ("recvonly", "recvonly", "inactive"),
    ],
)
def test_answer_direction_mirrors_the_offer(offered, wanted, answered):
    assert answer_direction(offered, wanted) == answered


def test_answer_to_held_offer_is_recvonly():
    offer = SessionDescription.parse(IPV6_TWO_STREAMS)  # audio is sendonly
    answer = answer_for(offer, [("PCMA", 8000)], "2001:db8::2", 30000)
    assert answer.media[0].direction == "recvonly"
    assert is_hold(offer) and not is_hold(answer)


def test_rewrite_for_leg_points_at_relay_and_keeps_codecs():
    offer = SessionDescription.parse(PHONE_OFFER)
    leg = rewrite_for_leg(offer, "203.0.113.5", 16000)
    assert remote_rtp_address(leg) == ("203.0.113.5", 16000)
    assert leg.origin.address == "203.0.113.5"
    assert leg.origin.sess_version == offer.origin.sess_version + 1
    assert leg.origin.sess_id == offer.origin.sess_id
    m = leg.media[0]
    assert m.formats == offer.media[0].formats
    assert m.rtpmap == offer.media[0].rtpmap and m.fmtp == offer.media[0].fmtp
    assert m.get_attribute("rtcp") is None  # the phone's own RTCP port is not ours
    # the original is untouched
    assert remote_rtp_address(offer) == ("192.0.2.10", 49170)


def test_rewrite_for_leg_moves_media_level_connection_and_disables_other_streams():
    sd = SessionDescription.parse(IPV6_TWO_STREAMS)
    leg = rewrite_for_leg(sd, "10.1.1.1", 12000, session_version_bump=False)
    assert leg.connection.addrtype == "IP4"
    assert all(m.connection is None for m in leg.media)
    assert [m.port for m in leg.media] == [12000, 0]
    assert leg.origin.sess_version == sd.origin.sess_version
    assert leg.media[0].direction == "sendonly"  # hold passes through
    SessionDescription.parse(leg.serialize())


@pytest.mark.parametrize(
    ("current", "held"),
    [
        ("sendrecv", "sendonly"),
        ("recvonly", "inactive"),
        ("sendonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_hold_direction(current, held):
    assert hold_direction(current) == held


def test_rfc2543_zero_address_is_hold():
    sd = SessionDescription.parse(SIPP_OFFER.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0"))
    assert is_hold(sd)
    assert not is_hold(SessionDescription.parse(SIPP_OFFER))


def test_negotiated_codec_skips_telephone_event_and_matches_by_name():
    offer = SessionDescription.parse(PHONE_OFFER)
    answer = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 a\r\nt=0 0\r\n"
        "m=audio 7 RTP/AVP 101 0\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    assert negotiated_codec(offer, answer) == (0, "PCMU")


# -- robustness ------------------------------------------------------------

_sdp_line = st.sampled_from("vosctamibkzxy").flatmap(
    lambda k: st.text(max_size=40).map(lambda v: f"{k}={v}")
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_sdp_parse_error(data):
    try:
        SessionDescription.parse(data)
    except SDPParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(_sdp_line, max_size=12))
def test_random_sdp_like_lines_parse_or_raise_sdp_parse_error_and_reparse(lines):
    text = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\n" + "\r\n".join(lines)
    try:
        sd = SessionDescription.parse(text)
    except SDPParseError:
        return
    again = SessionDescription.parse(sd.serialize())
    assert again.serialize() == sd.serialize()


_HEAD = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"


@pytest.mark.parametrize("body", [
    _HEAD + "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0 101\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n",
    _HEAD + "c=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n",
    _HEAD + "a=sendonly\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1/127\r\n",
    _HEAD + "c=IN IP6 ::\r\nm=audio 4000 RTP/AVP 0\r\na=inactive\r\n",
    _HEAD + "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0 96 97\r\n"
    "a=rtpmap:96 telephone-event/16000\r\na=rtpmap:97 telephone-event/8000\r\n",
    _HEAD + "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n"
    "m=audio 0 RTP/AVP 8\r\n",
    _HEAD + "c=IN IP4 192.0.2.1\r\nm=audio 0 RTP/AVP 0\r\nm=video 5000 RTP/AVP 31\r\n",
])
def test_remote_media_is_hold_address_and_telephone_event_at_once(body: str) -> None:
    sd = SessionDescription.parse(body)
    assert remote_media(sd) == (is_hold(sd), remote_rtp_address(sd), telephone_event_pt(sd))


def test_remote_media_of_a_stream_without_connection_has_no_address() -> None:
    sd = SessionDescription.parse(_HEAD + "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n")
    sd.connection = None
    assert remote_media(sd) == (False, None, None)
    assert (is_hold(sd), remote_rtp_address(sd)) == (False, None)
