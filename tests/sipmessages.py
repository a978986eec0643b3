"""Golden SIP messages used by the parser, message and benchmark code.

``INVITE_SDP``, ``REGISTER`` and ``OK_200`` are typical messages written by
hand after RFC 3665; the ``SIPP_*`` and ``BARESIP_*`` constants are real
messages captured on loopback from SIPp 3.6.1 and baresip 1.0.0.
"""

INVITE_SDP = (
    b"INVITE sip:1001@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5062;rport;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob" <sip:1001@127.0.0.1>\r\n'
    b'From: "Alice" <sip:1000@127.0.0.1>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@127.0.0.1\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:1000@127.0.0.1:5062;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: pbxd-test/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 138\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

REGISTER = (
    b"REGISTER sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5062;rport;branch=z9hG4bKnashds7\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:1000@127.0.0.1>\r\n"
    b"From: <sip:1000@127.0.0.1>;tag=456248\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"Contact: <sip:1000@127.0.0.1:5062>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"\r\n"
    b"Expires: 7200\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5062;rport=5062;received=127.0.0.1;branch=z9hG4bK776asdhds\r\n"
    b"Record-Route: <sip:127.0.0.1;lr>\r\n"
    b'To: "Bob" <sip:1001@127.0.0.1>;tag=a6c85cf\r\n'
    b'From: "Alice" <sip:1000@127.0.0.1>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@127.0.0.1\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:1001@127.0.0.1:5064>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
