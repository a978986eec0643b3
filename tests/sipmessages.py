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

# ---- captured on loopback (see the module docstring) ----

#: SIPp 3.6.1 ``-sn uac``: INVITE with SDP (note the padded Content-Length)
SIPP_INVITE = (
    b'INVITE sip:service@127.0.0.1:15070 SIP/2.0\r\n'
    b'Via: SIP/2.0/UDP 127.0.0.1:15071;branch=z9hG4bK-23704-1-0\r\n'
    b'From: sipp <sip:sipp@127.0.0.1:15071>;tag=23704SIPpTag001\r\n'
    b'To: service <sip:service@127.0.0.1:15070>\r\n'
    b'Call-ID: 1-23704@127.0.0.1\r\n'
    b'CSeq: 1 INVITE\r\n'
    b'Contact: sip:sipp@127.0.0.1:15071\r\n'
    b'Max-Forwards: 70\r\n'
    b'Subject: Performance Test\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length:   129\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n'
    b's=-\r\n'
    b'c=IN IP4 127.0.0.1\r\n'
    b't=0 0\r\n'
    b'm=audio 6000 RTP/AVP 0\r\n'
    b'a=rtpmap:0 PCMU/8000\r\n'
)

#: SIPp 3.6.1 ``-sn uas``: 180 Ringing to INVITE_SDP
SIPP_180 = (
    b'SIP/2.0 180 Ringing\r\n'
    b'Via: SIP/2.0/UDP 127.0.0.1:5062;rport;branch=z9hG4bK776asdhds\r\n'
    b'From: "Alice" <sip:1000@127.0.0.1>;tag=1928301774\r\n'
    b'To: "Bob" <sip:1001@127.0.0.1>;tag=24227SIPpTag011\r\n'
    b'Call-ID: a84b4c76e66710@127.0.0.1\r\n'
    b'CSeq: 314159 INVITE\r\n'
    b'Contact: <sip:127.0.0.1:15072;transport=UDP>\r\n'
    b'Content-Length: 0\r\n'
    b'\r\n'
)

#: SIPp 3.6.1 ``-sn uas``: 200 OK with SDP to INVITE_SDP
SIPP_200 = (
    b'SIP/2.0 200 OK\r\n'
    b'Via: SIP/2.0/UDP 127.0.0.1:5062;rport;branch=z9hG4bK776asdhds\r\n'
    b'From: "Alice" <sip:1000@127.0.0.1>;tag=1928301774\r\n'
    b'To: "Bob" <sip:1001@127.0.0.1>;tag=24227SIPpTag011\r\n'
    b'Call-ID: a84b4c76e66710@127.0.0.1\r\n'
    b'CSeq: 314159 INVITE\r\n'
    b'Contact: <sip:127.0.0.1:15072;transport=UDP>\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length:   129\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n'
    b's=-\r\n'
    b'c=IN IP4 127.0.0.1\r\n'
    b't=0 0\r\n'
    b'm=audio 6000 RTP/AVP 0\r\n'
    b'a=rtpmap:0 PCMU/8000\r\n'
)

#: baresip 1.0.0: REGISTER (Via params after branch, bare rport)
BARESIP_REGISTER = (
    b'REGISTER sip:127.0.0.1:15070;transport=udp SIP/2.0\r\n'
    b'Via: SIP/2.0/UDP 127.0.0.1:15080;branch=z9hG4bKed7b24a0cb15f147;rport\r\n'
    b'Contact: <sip:1000-0x55b503e92410@127.0.0.1:15080>;expires=300\r\n'
    b'Max-Forwards: 70\r\n'
    b'To: <sip:1000@127.0.0.1:15070>\r\n'
    b'From: <sip:1000@127.0.0.1:15070>;tag=60c156591fd997e4\r\n'
    b'Call-ID: 4efbedf6279c923e\r\n'
    b'CSeq: 62976 REGISTER\r\n'
    b'User-Agent: baresip v1.0.0 (x86_64/linux)\r\n'
    b'Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,REFER\r\n'
    b'Content-Length: 0\r\n'
    b'\r\n'
)

#: baresip 1.0.0: INVITE with SDP (empty Supported header)
BARESIP_INVITE = (
    b'INVITE sip:1001@127.0.0.1:15070;transport=udp SIP/2.0\r\n'
    b'Via: SIP/2.0/UDP 127.0.0.1:15080;branch=z9hG4bK16d9abae8d7f1a86;rport\r\n'
    b'Contact: <sip:1000-0x55b503e92410@127.0.0.1:15080>\r\n'
    b'Max-Forwards: 70\r\n'
    b'To: <sip:1001@127.0.0.1:15070;transport=udp>\r\n'
    b'From: <sip:1000@127.0.0.1:15070>;tag=894334c104e579b1\r\n'
    b'Call-ID: 27d4376d62bb2a64\r\n'
    b'CSeq: 380 INVITE\r\n'
    b'User-Agent: baresip v1.0.0 (x86_64/linux)\r\n'
    b'Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,REFER\r\n'
    b'Supported:\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length: 344\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=- 3878953905 1279680659 IN IP4 127.0.0.1\r\n'
    b's=-\r\n'
    b'c=IN IP4 127.0.0.1\r\n'
    b't=0 0\r\n'
    b'a=tool:baresip 1.0.0\r\n'
    b'm=audio 16004 RTP/AVP 0 8 101\r\n'
    b'a=rtpmap:0 PCMU/8000\r\n'
    b'a=rtpmap:8 PCMA/8000\r\n'
    b'a=rtpmap:101 telephone-event/8000\r\n'
    b'a=fmtp:101 0-15\r\n'
    b'a=sendrecv\r\n'
    b'a=label:1\r\n'
    b'a=rtcp-rsize\r\n'
    b'a=ssrc:2862016776 cname:sip:1000@127.0.0.1:15070\r\n'
    b'a=minptime:20\r\n'
    b'a=ptime:20\r\n'
)

#: baresip 1.0.0: REGISTER with expires=0 at shutdown
BARESIP_UNREGISTER = (
    b'REGISTER sip:127.0.0.1:15070;transport=udp SIP/2.0\r\n'
    b'Via: SIP/2.0/UDP 127.0.0.1:15080;branch=z9hG4bK906b6440f82f58f1;rport\r\n'
    b'Contact: <sip:1000-0x55b503e92410@127.0.0.1:15080>;expires=0\r\n'
    b'Max-Forwards: 70\r\n'
    b'To: <sip:1000@127.0.0.1:15070>\r\n'
    b'From: <sip:1000@127.0.0.1:15070>;tag=60c156591fd997e4\r\n'
    b'Call-ID: 4efbedf6279c923e\r\n'
    b'CSeq: 62977 REGISTER\r\n'
    b'User-Agent: baresip v1.0.0 (x86_64/linux)\r\n'
    b'Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,REFER\r\n'
    b'Content-Length: 0\r\n'
    b'\r\n'
)

#: baresip 1.0.0 (answermode=auto): 180 Ringing to INVITE_SDP
BARESIP_180 = (
    b'SIP/2.0 180 Ringing\r\n'
    b'Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK776asdhds;rport=5062;received=127.0.0.1\r\n'
    b'To: "Bob" <sip:1001@127.0.0.1>;tag=9a8345553bead488\r\n'
    b'From: "Alice" <sip:1000@127.0.0.1>;tag=1928301774\r\n'
    b'Call-ID: a84b4c76e66710@127.0.0.1\r\n'
    b'CSeq: 314159 INVITE\r\n'
    b'Server: baresip v1.0.0 (x86_64/linux)\r\n'
    b'Contact: <sip:1001-0x55ac736c6410@127.0.0.1:15080>\r\n'
    b'Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,REFER\r\n'
    b'Content-Length: 0\r\n'
    b'\r\n'
)

#: baresip 1.0.0 (answermode=auto): 200 Answering with SDP to INVITE_SDP
BARESIP_200 = (
    b'SIP/2.0 200 Answering\r\n'
    b'Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK776asdhds;rport=5062;received=127.0.0.1\r\n'
    b'To: "Bob" <sip:1001@127.0.0.1>;tag=9a8345553bead488\r\n'
    b'From: "Alice" <sip:1000@127.0.0.1>;tag=1928301774\r\n'
    b'Call-ID: a84b4c76e66710@127.0.0.1\r\n'
    b'CSeq: 314159 INVITE\r\n'
    b'Server: baresip v1.0.0 (x86_64/linux)\r\n'
    b'Contact: <sip:1001-0x55ac736c6410@127.0.0.1:15080>\r\n'
    b'Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,REFER\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length: 265\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=- 401665357 255284636 IN IP4 127.0.0.1\r\n'
    b's=-\r\n'
    b'c=IN IP4 127.0.0.1\r\n'
    b't=0 0\r\n'
    b'a=tool:baresip 1.0.0\r\n'
    b'm=audio 16002 RTP/AVP 0 8\r\n'
    b'a=rtpmap:0 PCMU/8000\r\n'
    b'a=rtpmap:8 PCMA/8000\r\n'
    b'a=sendrecv\r\n'
    b'a=label:1\r\n'
    b'a=ssrc:614228862 cname:sip:1001@127.0.0.1\r\n'
    b'a=minptime:20\r\n'
    b'a=ptime:20\r\n'
)

#: every golden message, by name
ALL = {
    name: value for name, value in globals().items() if name.isupper() and isinstance(value, bytes)
}
