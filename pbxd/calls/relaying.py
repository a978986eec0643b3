"""Relaying an in-dialog request between the two confirmed legs of a bridge (layer 4).

Shared by :class:`~pbxd.calls.call.Call` and dialplan sessions: a re-INVITE,
UPDATE or INFO from one leg is sent to the other and its answer comes back;
SDP is rewritten on the way (each phone sees the PBX's relay port), an
offer-less re-INVITE/UPDATE (a session refresh) is answered locally with the
SDP the leg already has, and glare gets 491.
"""

from __future__ import annotations

from typing import Any

from pbxd.calls.media import SDP, LegSdp, SDPParseError, parse_sdp

DTMF_TYPES = ("application/dtmf-relay", "application/dtmf")


def info_digit(content_type: str | None, body: bytes) -> str | None:
    """The digit of a SIP INFO body (``Signal=5`` or a bare ``5``), None if there is none."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in DTMF_TYPES:
        return None
    text = body.decode("utf-8", "replace").strip()
    if kind == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                text = value.strip()
                break
        else:
            return None
    if text == "10":
        text = "*"
    elif text == "11":
        text = "#"
    return text.upper() if len(text) == 1 and text.upper() in "0123456789*#ABCD" else None


def relay_request(leg: Any, other: Any, mine: LegSdp, theirs: LegSdp, request: Any,
                  txn: Any) -> None:
    """Send ``request`` (received on ``leg``) to ``other`` and answer it with what comes back.

    ``mine``/``theirs`` are the SDP states of ``leg`` and ``other``."""
    if request.method == "INFO":
        def info_back(resp: Any) -> None:
            leg.answer_request(txn, resp.status, resp.body, resp.get("Content-Type"),
                               resp.reason)

        if not other.send_request("INFO", request.body, request.get("Content-Type"), info_back):
            leg.answer_request(txn, 481)
        return
    try:
        sdp = parse_sdp(request)
    except SDPParseError:
        leg.answer_request(txn, 400, reason="Bad SDP")
        return
    if sdp is None:  # session refresh: answer here with what the leg already has
        if request.method == "INVITE":
            leg.answer_request(txn, 200, mine.last_body, SDP)
        else:
            leg.answer_request(txn, 200)
        return
    mine.received(sdp, leg.address[0] if leg.address else None)
    hold = getattr(getattr(getattr(leg, "call", None), "deps", None), "hold", None)
    if hold is not None and hold(mine, theirs):
        # hold or resume with music on hold: answered here, the other phone is not told
        try:
            leg.answer_request(txn, 200, mine.answer(sdp), SDP)
        except ValueError:
            leg.answer_request(txn, 488)
        return
    body = theirs.outgoing(sdp)

    def relayed(resp: Any) -> None:
        if leg.done:
            return
        if 200 <= resp.status < 300:
            try:
                answer = parse_sdp(resp)
            except SDPParseError:
                answer = None
            if answer is not None:
                theirs.received(answer, other.address[0] if other.address else None)
                leg.answer_request(txn, resp.status, mine.outgoing(answer), SDP)
            else:
                leg.answer_request(txn, resp.status, mine.last_body, SDP)
        else:
            leg.answer_request(txn, resp.status, reason=resp.reason)

    if not other.send_request(request.method, body, SDP, relayed):
        leg.answer_request(txn, 491)
