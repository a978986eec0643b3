"""The call context (ICallContext) on real calls, on a fake clock: real controller,
transactions, UA, manager, dialplan runner, relay and player over fake UDP ports."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from test_calls_support import World, sdp
from twisted.internet.defer import Deferred

from pbxd.calls.sessions import SessionStarter
from pbxd.configschema import Rule, Step
from pbxd.dialplan import Dialplan, DialplanRunner, discover_applications
from pbxd.interfaces import CallHungUp, ICallContext, IVoicemailService
from pbxd.rtp.codecs import ulaw_decode, ulaw_encode
from pbxd.rtp.dtmf import DtmfGenerator
from pbxd.rtp.tones import has_tone, sine

A_ADDR = ("192.0.2.10", 5062)
A_RTP = ("192.0.2.10", 4000)
B_ADDR = ("192.0.2.20", 5064)
B2_ADDR = ("192.0.2.21", 5066)


class Seam:
    """The dialplan seam over the real runner; remembers every call context."""

    def __init__(self, dialplan: Dialplan) -> None:
        self.runner = DialplanRunner(dialplan)
        self.contexts: list[Any] = []
        self.results: list[Any] = []

    def matches(self, context: str, number: str) -> bool:
        return self.runner.dialplan.route(context, number) is not None

    def run(self, call: Any) -> Deferred:
        self.contexts.append(call)
        return self.runner.run(call).addCallback(self.results.append)


def make_world(rules: dict[str, list[tuple[str, list[tuple[str, Any]]]]],
               services: dict | None = None, extra_apps: dict | None = None) -> World:
    world = World()
    contexts = {name: tuple(Rule(match, tuple(Step(app, args) for app, args in steps))
                            for match, steps in entries) for name, entries in rules.items()}
    apps = discover_applications(())
    apps.update(extra_apps or {})
    world.seam = Seam(Dialplan.compile(contexts, apps))
    world.manager.sessions = SessionStarter(world.manager, world.seam, services)
    return world


def rtp(seq: int, payload: bytes, pt: int = 0, ssrc: int = 0x1234, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, seq * 160, ssrc) + payload


def session(world: World) -> Any:
    (s,) = world.manager.calls.values()
    return s


def to_pbx(world: World, s: Any, data: bytes, source: tuple[str, int] = A_RTP) -> None:
    port = s.counters_port = getattr(s, "counters_port", None) or s.media.port
    world.rtp_ports[port].protocol.datagramReceived(data, source)


def sent_to(world: World, port: int, dest: tuple[str, int]) -> list[bytes]:
    return [d for d, a in world.rtp_ports[port].written if a == dest]


def audio_of(packets: list[bytes]) -> np.ndarray:
    return np.concatenate([ulaw_decode(p[12:]) for p in packets if p[1] & 0x7F == 0])


def press_rfc4733(world: World, s: Any, digit: str, ts: int, seq: int) -> int:
    for n, packet in enumerate(DtmfGenerator(101, 0x1234).packets(digit, ts)):
        packet_bytes = rtp(seq + n, packet.payload, pt=101, marker=packet.marker)
        packet_bytes = packet_bytes[:4] + struct.pack("!I", ts) + packet_bytes[8:]
        to_pbx(world, s, packet_bytes)
    return seq + 10


def answer_call(world: World, a: Any) -> Any:
    ok = a.last(200)
    a.ack_2xx(ok)
    return ok


# -- entering the dialplan ---------------------------------------------------------


def test_number_without_rule_is_404() -> None:
    world = make_world({"default": [("*43", [("answer", None), ("echo", None)])]})
    a = world.phone("1000", A_ADDR, register=False)
    a.invite("5555")
    assert a.lines() == ["404 INVITE"]
    assert world.manager.calls == {} and world.seam.contexts == []


def test_echo_answers_with_our_sdp_and_returns_the_callers_audio() -> None:
    world = make_world({"default": [("*43", [("answer", None), ("echo", None)])]})
    a = world.phone("1000", A_ADDR, register=False)
    a.invite("*43")
    ok = a.last(200)
    s = session(world)
    # our own answer: one G.711 codec plus telephone-event, on the leg's port
    assert f"m=audio {s.media.port} RTP/AVP 0 101".encode() in ok.body
    assert b"c=IN IP4 192.0.2.1" in ok.body and b"PCMA" not in ok.body
    answer_call(world, a)
    ctx = world.seam.contexts[0]
    assert ICallContext.providedBy(ctx) and ctx.answered and ctx.exten == "*43"
    assert ctx.caller == "1000" and ctx.context == "default"
    tone = ulaw_encode(sine(1000, 0.02))
    to_pbx(world, s, rtp(1, tone))
    (back,) = sent_to(world, s.media.port, A_RTP)
    assert back[12:] == tone and back[8:12] != b"\x00\x00\x12\x34"  # our SSRC
    a.request("BYE", ok)
    assert world.seam.results[-1].status == "completed"  # echo ends with the call
    (cdr,) = world.cdrs
    assert cdr["disposition"] == "ANSWERED" and cdr["codecs"] == ["PCMU", "telephone-event"]
    assert cdr["hangup_side"] == "caller" and cdr["destination"] == "*43"


def test_playback_without_answer_is_early_media_then_the_cause_picks_the_status() -> None:
    world = make_world({"default": [("600", [
        ("playback", {"prompts": ["tone:beep"], "answer": False}), ("hangup", "busy")])]})
    a = world.phone("1000", A_ADDR, register=False)
    a.invite("600")
    s = session(world)
    port = s.media.port
    assert a.lines() == ["183 INVITE"]
    assert a.last(183).body.startswith(b"v=0")
    world.clock.pump([0.02] * 40)
    audio = audio_of(sent_to(world, port, A_RTP))
    assert has_tone(audio, 1000) or has_tone(audio, 880) or len(audio) > 1000
    assert "486 INVITE" in a.lines()
    (cdr,) = world.cdrs
    assert cdr["disposition"] == "BUSY" and cdr["answer"] is None


def test_menu_branch_chosen_by_rfc4733_digit() -> None:
    world = make_world({"default": [
        ("700", [("menu", {"prompt": "tone:beep", "options": {"1": "701", "2": "702"},
                           "timeout": 3})]),
        ("701", [("set", {"BRANCH": "one"}), ("hangup", None)]),
        ("702", [("set", {"BRANCH": "two"}), ("hangup", None)]),
    ]})
    a = world.phone("1000", A_ADDR, register=False)
    a.invite("700")
    answer_call(world, a)
    s = session(world)
    ctx = world.seam.contexts[0]
    press_rfc4733(world, s, "2", ts=8000, seq=10)
    world.clock.pump([0.02] * 10)
    assert ctx.variables["BRANCH"] == "two" and ctx.variables["MENU_DIGIT"] == "2"
    assert a.new()[-1].method == "BYE"


def collecting_app(results: list) -> Any:
    from twisted.plugin import IPlugin
    from zope.interface import implementer

    from pbxd.interfaces import IDialplanApplication

    @implementer(IPlugin, IDialplanApplication)
    class Collect:
        name = "collect"

        def execute(self, call: Any, args: Any) -> Deferred:
            async def run() -> None:
                await call.answer()
                try:
                    results.append(await call.collect_digits(**args))
                except CallHungUp as e:
                    results.append(e)

            return Deferred.fromCoroutine(run())

    return Collect()


def test_info_digits_are_type_ahead_buffered_and_collected_in_order() -> None:
    results: list = []
    world = make_world({"default": [("800", [("wait", 1), ("collect", {"max_digits": 4,
                                                                       "timeout": 3})])]},
                       extra_apps={"collect": collecting_app(results)})
    a = world.phone("1000", A_ADDR, register=False)
    a.invite("800")
    s = session(world)
    # digits pressed while "wait" runs, before anyone listens: type-ahead
    s.answer()
    ok = answer_call(world, a)
    for body, ctype in ((b"Signal=4\r\nDuration=160\r\n", "application/dtmf-relay"),
                        (b"7", "application/dtmf")):
        _send_info(a, ok, body, ctype)
    press_rfc4733(world, s, "#", ts=16000, seq=30)  # terminator, also buffered
    world.clock.advance(1.0)
    assert results == ["47"]


def _send_info(phone: Any, ok: Any, body: bytes, ctype: str) -> None:
    phone.cseq += 1
    host, port = phone.address
    text = (f"INFO sip:pbx@192.0.2.1:5060 SIP/2.0\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bKinfo{phone.cseq};rport\n"
            f"Max-Forwards: 70\nFrom: <{ok.from_.uri}>;tag={ok.from_.tag}\n"
            f"To: <{ok.to.uri}>;tag={ok.to.tag}\nCall-ID: {ok.call_id}\n"
            f"CSeq: {phone.cseq} INFO\nContent-Type: {ctype}\n"
            f"Content-Length: {len(body)}\n\n")
    phone.send_text(text, body)
    assert phone.new()[-1].status == 200


def test_collect_digits_times_out_and_fails_when_the_caller_hangs_up() -> None:
    results: list = []
    world = make_world({"default": [("800", [("collect", {"max_digits": 2, "timeout": 2,
                                                          "first_timeout": 4})]),
                                    ("801", [("collect", {"max_digits": 2, "timeout": 2})])]},
                       extra_apps={"collect": collecting_app(results)})
    a = world.phone("1000", A_ADDR, register=False)
    a.invite("800")
    answer_call(world, a)
    world.clock.advance(3.9)
    assert results == []
    world.clock.advance(0.2)
    assert results == [""]
    a.invite("801")
    ok = answer_call(world, a)
    a.request("BYE", ok)
    assert isinstance(results[-1], CallHungUp)


# -- dial ---------------------------------------------------------------------------


def dial_world(**dial: Any) -> World:
    return make_world({"default": [("_1XXX", [("dial", {"to": "${EXTEN}", **dial}),
                                              ("set", {"AFTER": "${DIALSTATUS}"})]),
                                   ("2000", [("dial", {"to": "1001&1002", "timeout": 10})]),
                                   ("3000", [("dial", {"to": ["1001", "1002"], "timeout": 5,
                                                       "strategy": "sequential"})])]})


def test_dial_plays_ringback_then_bridges_on_answer() -> None:
    world = dial_world(timeout=20)
    a = world.phone("1000", A_ADDR, register=False)
    b = world.phone("1001", B_ADDR)
    a.invite("1001")
    assert a.lines() == ["183 INVITE"]
    s = session(world)
    invite = b.new()[-1]
    assert invite.method == "INVITE" and b"m=audio" in invite.body
    assert b"PCMA" not in invite.body  # offered the caller's negotiated codec only
    b.answer(invite, 180)
    world.clock.pump([0.02] * 50)  # 1 s of ring-back generated by the PBX
    assert has_tone(audio_of(sent_to(world, s.media.port, A_RTP)), 440)
    b.answer(invite, 200, sdp(B_ADDR[0], 5000, codecs="0 101"))
    ok = answer_call(world, a)
    assert ok.body == a.last(183).body  # the same SDP as the early media
    before = len(sent_to(world, s.media.port, A_RTP))
    b_port = s.dialer.media.port
    world.rtp_ports[b_port].protocol.datagramReceived(rtp(1, b"\x55" * 160, ssrc=9),
                                                      (B_ADDR[0], 5000))
    ringback = sent_to(world, s.media.port, A_RTP)[before - 1]
    (relayed,) = sent_to(world, s.media.port, A_RTP)[before:]
    # the callee's payload, continuing the stream the caller heard (SSRC, next seq, marker)
    assert relayed[12:] == b"\x55" * 160 and relayed[8:12] == ringback[8:12]
    seq = struct.unpack("!H", relayed[2:4])[0]
    assert seq == (struct.unpack("!H", ringback[2:4])[0] + 1) & 0xFFFF and relayed[1] & 0x80
    world.clock.pump([0.02] * 5)
    assert len(sent_to(world, s.media.port, A_RTP)) == before + 1  # no more ring-back
    b.request("BYE", invite)
    ctx = world.seam.contexts[0]
    assert ctx.variables["DIALSTATUS"] == "ANSWER" and ctx.variables["AFTER"] == "ANSWER"
    assert a.new()[-1].method == "BYE"
    (cdr,) = world.cdrs
    assert cdr["disposition"] == "ANSWERED" and cdr["answered_by"].startswith(s.id)


def test_ring_group_first_answer_wins_and_the_other_is_cancelled() -> None:
    world = dial_world()
    a = world.phone("1000", A_ADDR, register=False)
    b1 = world.phone("1001", B_ADDR)
    b2 = world.phone("1002", B2_ADDR)
    a.invite("2000")
    inv1, inv2 = b1.new()[-1], b2.new()[-1]
    assert inv1.method == inv2.method == "INVITE"
    b1.answer(inv1, 180)
    b2.answer(inv2, 180)
    b2.answer(inv2, 200, sdp(B2_ADDR[0], 5002, codecs="0 101"))
    assert [m.method for m in b1.new() if getattr(m, "method", None)] == ["CANCEL"]
    assert "200 INVITE" in a.lines()


@pytest.mark.parametrize(("statuses", "expected", "a_status"), [
    ((486, 486), "BUSY", 486), ((486, 404), "BUSY", 486), ((404, 503), "CHANUNAVAIL", 480)])
def test_ring_group_failures_set_dialstatus(statuses: tuple, expected: str,
                                            a_status: int) -> None:
    world = dial_world()
    a = world.phone("1000", A_ADDR, register=False)
    b1 = world.phone("1001", B_ADDR)
    b2 = world.phone("1002", B2_ADDR)
    a.invite("2000")
    b1.answer(b1.new()[-1], statuses[0])
    b2.answer(b2.new()[-1], statuses[1])
    assert world.seam.contexts[0].variables["DIALSTATUS"] == expected
    assert f"{a_status} INVITE" in a.lines()


def test_hunt_group_tries_targets_in_order_after_no_answer() -> None:
    world = dial_world()
    a = world.phone("1000", A_ADDR, register=False)
    b1 = world.phone("1001", B_ADDR)
    b2 = world.phone("1002", B2_ADDR)
    a.invite("3000")
    inv1 = b1.new()[-1]
    assert inv1.method == "INVITE" and b2.new() == []
    b1.answer(inv1, 180)
    world.clock.advance(5.01)
    assert [getattr(m, "method", None) for m in b1.new()][-1] == "CANCEL"
    inv2 = b2.new()[-1]
    assert inv2.method == "INVITE"
    b2.answer(inv2, 200, sdp(B2_ADDR[0], 5002, codecs="0 101"))
    assert "200 INVITE" in a.lines()


def test_caller_cancel_while_ringing_cancels_forks() -> None:
    world = dial_world(timeout=20)
    a = world.phone("1000", A_ADDR, register=False)
    b = world.phone("1001", B_ADDR)
    a.invite("1001")
    invite = b.new()[-1]
    b.answer(invite, 180)
    a.cancel()
    assert "487 INVITE" in a.lines()
    assert b.new()[-1].method == "CANCEL"
    assert world.seam.results[-1].status == "hungup"
    (cdr,) = world.cdrs
    assert cdr["disposition"] == "CANCELLED"


def test_dial_unregistered_is_chanunavail_and_timeout_noanswer() -> None:
    world = dial_world(timeout=3)
    a = world.phone("1000", A_ADDR, register=False)
    world.phone("1001", B_ADDR)
    a.invite("1002")
    assert world.seam.contexts[0].variables["DIALSTATUS"] == "CHANUNAVAIL"
    assert "480 INVITE" in a.lines()
    a.invite("1001")
    world.clock.advance(3.01)
    assert world.seam.contexts[1].variables["DIALSTATUS"] == "NOANSWER"


# -- services, transfer, record, originate -----------------------------------------


def test_service_registry_and_lookup_error_naming_the_interface() -> None:
    provider = object()
    world = make_world({"default": [("*43", [("answer", None), ("echo", None)])]},
                       services={IVoicemailService: provider})
    a = world.phone("1000", A_ADDR, register=False)
    a.invite("*43")
    ctx = world.seam.contexts[0]
    assert ctx.service(IVoicemailService) is provider
    with pytest.raises(LookupError, match="ICallContext"):
        ctx.service(ICallContext)


def failure_of(d: Deferred) -> Any:
    box: list = []
    d.addErrback(box.append)
    (failure,) = box
    return failure


def test_play_unknown_prompt_fails_and_bad_cause_is_refused() -> None:
    world = make_world({"default": [("500", [("wait", 100)])]})
    a = world.phone("1000", A_ADDR, register=False)
    a.invite("500")
    ctx = world.seam.contexts[0]
    assert failure_of(ctx.play("no-such-prompt-here")).check(FileNotFoundError)
    assert failure_of(ctx.play("tone:nope")).check(ValueError)
    assert failure_of(ctx.hangup("whatever")).check(ValueError)
    assert a.lines() == []
    ctx.play("tone:busy")
    assert a.lines() == ["183 INVITE"]


def test_transfer_hands_the_caller_over_to_the_target() -> None:
    world = make_world({"default": [("*43", [("answer", None), ("echo", None)])]})
    a = world.phone("1000", A_ADDR, register=False)
    b = world.phone("1001", B_ADDR)
    a.invite("*43")
    ok = answer_call(world, a)
    ctx = world.seam.contexts[0]
    result = ctx.transfer("1001")
    invite = b.new()[-1]
    b.answer(invite, 200, sdp(B_ADDR[0], 5000, codecs="0 101"))
    assert result.result is True and ctx.hungup and ctx.hangup_cause == "normal"
    s = session(world)
    assert s.bridged and not s.ended
    a.request("BYE", ok)
    assert b.new()[-1].method == "BYE"
    assert world.cdrs[0]["disposition"] == "ANSWERED"


def test_record_writes_the_callers_audio_and_stops_on_a_digit(tmp_path) -> None:
    world = make_world({"default": [("*43", [("answer", None), ("echo", None)])]})
    a = world.phone("1000", A_ADDR, register=False)
    a.invite("*43")
    s = session(world)
    ctx = world.seam.contexts[0]
    ctx.session.stop_playing()
    path = str(tmp_path / "rec.wav")
    done = ctx.record(path, max_seconds=10)
    samples = sine(440, 1.0)
    for n in range(50):
        world.clock.advance(0.02)
        to_pbx(world, s, rtp(n, ulaw_encode(samples[n * 160:(n + 1) * 160])))
    press_rfc4733(world, s, "#", ts=99999, seq=200)
    world.clock.advance(0.2)
    result = done.result
    assert result["reason"] == "digit" and result["digit"] == "#"
    assert result["seconds"] > 0.5
    from pbxd.rtp.tones import read_wav

    _rate, recorded = read_wav(path)
    assert has_tone(recorded, 440)


def test_originate_rings_a_then_dials_b_and_bridges() -> None:
    world = make_world({"default": []})
    a = world.phone("1000", A_ADDR)
    b = world.phone("1001", B_ADDR)
    d = world.manager.originate("1000", "1001", timeout=10)
    call_id = d.result
    invite_a = a.new()[-1]
    assert invite_a.method == "INVITE" and b"PCMU" in invite_a.body
    assert b.new() == []
    a.answer(invite_a, 200, sdp(A_ADDR[0], 4000, codecs="8 101"))
    invite_b = b.new()[-1]
    assert invite_b.method == "INVITE" and b"RTP/AVP 8 101" in invite_b.body
    b.answer(invite_b, 200, sdp(B_ADDR[0], 5000, codecs="8 101"))
    s = world.manager.calls[call_id]
    assert s.bridged and s.answered
    b.request("BYE", invite_b)
    assert a.new()[-1].method == "BYE"
    assert world.cdrs[0]["pbx_call_id"] == call_id
    assert failure_of(world.manager.originate("1002", "1001")).check(LookupError)


# -- startup --------------------------------------------------------------------------


def test_bad_dialplan_stops_twistd_options_with_one_line_naming_the_rule(tmp_path) -> None:
    from twisted.python import usage

    from pbxd import tap

    config = tmp_path / "pbx.yml"
    config.write_text("pbx: {state_dir: state}\nsip: {listen: ['udp:25060']}\n"
                      "dialplan:\n  default:\n    - match: '_1XXX'\n"
                      "      do: [answer, {dail: {to: '${EXTEN}'}}]\n")
    options = tap.Options()
    with pytest.raises(usage.UsageError) as raised:
        options.parseOptions(["-c", str(config)])
    message = str(raised.value)
    assert "\n" not in message
    assert "dialplan.default[0].do[1]" in message and "'dail'" in message
