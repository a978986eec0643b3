"""pbxd.sip.dialog: dialogs as UAS and UAC, in-dialog requests, CSeq and target refresh."""

from __future__ import annotations

from pbxd.sip.dialog import Dialog, dialog_id_of, new_branch, new_call_id, new_tag
from pbxd.sip.parser import parse_message

INVITE = (
    "INVITE sip:1001@pbx.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKabc\r\n"
    "Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>\r\n"
    'From: "Alice" <sip:1000@pbx.test>;tag=alice\r\nTo: <sip:1001@pbx.test>\r\n'
    "Call-ID: call-1\r\nCSeq: 7 INVITE\r\nContact: <sip:1000@192.0.2.10:5062>\r\n"
    "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
OK = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"
    "Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>\r\n"
    'From: "Alice" <sip:1000@pbx.test>;tag=alice\r\nTo: <sip:1001@pbx.test>;tag=bob\r\n'
    "Call-ID: call-1\r\nCSeq: 7 INVITE\r\nContact: <sip:1001@192.0.2.20:5064>\r\n"
    "Content-Length: 0\r\n\r\n")


def uas() -> Dialog:
    return Dialog.as_uas(parse_message(INVITE.encode()), "ours", "<sip:pbx@192.0.2.1>",
                         None, ("192.0.2.10", 5062))


def test_identifiers_are_fresh_and_well_formed() -> None:
    assert new_tag() != new_tag() and len(new_tag()) >= 8
    assert new_branch().startswith("z9hG4bK") and new_branch() != new_branch()
    assert new_call_id("pbx.test").endswith("@pbx.test")


def test_uas_dialog_takes_the_callers_view_reversed() -> None:
    d = uas()
    assert d.id == ("call-1", "ours", "alice")
    assert str(d.remote_target) == "sip:1000@192.0.2.10:5062"
    assert [str(r.uri) for r in d.route_set] == ["sip:p2.example;lr", "sip:p1.example;lr"]
    assert d.remote_cseq == 7
    bye = d.make_request("BYE")
    assert bye.from_.tag == "ours" and bye.to.tag == "alice"
    assert bye.from_.uri.user == "1001" and bye.to.display == "Alice"
    assert str(bye.uri) == "sip:1000@192.0.2.10:5062"
    assert [str(r.uri) for r in bye.routes] == ["sip:p2.example;lr", "sip:p1.example;lr"]


def test_uac_dialog_reverses_the_record_route_and_targets_the_contact() -> None:
    invite = parse_message(INVITE.encode())
    d = Dialog.as_uac(invite, parse_message(OK.encode()), None, ("192.0.2.20", 5064))
    assert d.id == ("call-1", "alice", "bob")
    assert [str(r.uri) for r in d.route_set] == ["sip:p1.example;lr", "sip:p2.example;lr"]
    assert str(d.remote_target) == "sip:1001@192.0.2.20:5064"
    ack = d.make_request("ACK", cseq=7)
    assert (ack.cseq.seq, ack.cseq.method) == (7, "ACK")
    assert d.make_request("BYE").cseq.seq == 8  # ACK did not use a number


def test_local_cseq_increases_and_contact_only_on_target_refresh() -> None:
    d = uas()
    first, second = d.make_request("INFO"), d.make_request("INVITE", b"v=0\r\n", "application/sdp")
    assert second.cseq.seq == first.cseq.seq + 1
    assert first.get("Contact") is None and second.get("Contact") == "<sip:pbx@192.0.2.1>"
    assert second.get("Content-Type") == "application/sdp" and second.body == b"v=0\r\n"


def test_strict_route_goes_in_the_request_uri() -> None:
    d = uas()
    d.route_set = [d.route_set[0].__class__.parse("<sip:strict.example>")]
    req = d.make_request("BYE")
    assert str(req.uri) == "sip:strict.example"
    assert [str(r.uri) for r in req.routes] == ["sip:1000@192.0.2.10:5062"]


def test_remote_cseq_must_increase_except_ack_and_cancel() -> None:
    d = uas()
    later = parse_message(INVITE.replace("7 INVITE", "8 BYE").replace("INVITE sip", "BYE sip")
                          .encode())
    stale = parse_message(INVITE.replace("7 INVITE", "6 INFO").replace("INVITE sip", "INFO sip")
                          .encode())
    ack = parse_message(INVITE.replace("7 INVITE", "1 ACK").replace("INVITE sip", "ACK sip")
                        .encode())
    assert d.accept_remote_cseq(later) and d.remote_cseq == 8
    assert not d.accept_remote_cseq(stale)
    assert d.accept_remote_cseq(ack) and d.remote_cseq == 8


def test_target_refresh_moves_the_remote_target() -> None:
    d = uas()
    d.update_target(parse_message(OK.encode()))
    assert str(d.remote_target) == "sip:1001@192.0.2.20:5064"


def test_dialog_id_of_an_incoming_request_matches_our_dialog() -> None:
    d = uas()
    bye = parse_message(INVITE.replace("To: <sip:1001@pbx.test>", "To: <sip:1001@pbx.test>;tag=ours")
                        .encode())
    assert dialog_id_of(bye) == d.id


def test_from_and_to_follow_a_replaced_uri_or_tag() -> None:
    d = uas()
    assert d.make_request("INFO").get("To") == '"Alice" <sip:1000@pbx.test>;tag=alice'
    d.remote_tag = "alice2"
    d.remote_uri = parse_message(INVITE.encode()).to  # <sip:1001@pbx.test>, no tag
    info = d.make_request("INFO")
    assert info.get("To") == "<sip:1001@pbx.test>;tag=alice2"
    assert info.get("From") == "<sip:1001@pbx.test>;tag=ours"
    d.local_tag = "ours2"
    assert d.make_request("INFO").get("From") == "<sip:1001@pbx.test>;tag=ours2"
