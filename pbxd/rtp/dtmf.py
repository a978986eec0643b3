"""RFC 4733 telephone-events: payload codec, a de-duplicating detector, a generator.

An event is identified by the RTP timestamp of its packets (every packet of one
event carries the timestamp of its start).  Senders repeat the start packet,
send updates every packet interval and the end packet three times, and the
network may duplicate any of them; :class:`DtmfDetector` turns that into one
digit per key press.  Pure: no sockets, no Twisted.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from pbxd.rtp.packet import RtpPacket, RTPParseError

__all__ = [
    "DIGITS",
    "EVENT_CODES",
    "FLASH",
    "DtmfDetector",
    "DtmfGenerator",
    "TelephoneEvent",
    "digit_for_event",
    "event_for_digit",
]

_EVENT = struct.Struct("!BBH")

FLASH = "!"
"""The digit string used for hook flash (event 16), as in SIP INFO dtmf-relay."""

DIGITS = "0123456789*#ABCD" + FLASH
"""Index = RFC 4733 event code, for codes 0-16."""

EVENT_CODES: dict[str, int] = {digit: code for code, digit in enumerate(DIGITS)}
EVENT_CODES.update({"a": 12, "b": 13, "c": 14, "d": 15})

MAX_DURATION = 0xFFFF


def digit_for_event(event: int) -> str | None:
    """The digit for an event code (0-16), or None for other events."""
    return DIGITS[event] if 0 <= event < len(DIGITS) else None


def event_for_digit(digit: str) -> int:
    """The event code for a digit; raises ValueError for anything not in 0-9 * # A-D !."""
    try:
        return EVENT_CODES[digit]
    except KeyError:
        raise ValueError(f"not a DTMF digit: {digit!r}") from None


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3). ``volume`` is in -dBm0 (0-63)."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Parse the first 4 bytes of ``payload``; raises RTPParseError if shorter."""
        if len(payload) < 4:
            raise RTPParseError(f"telephone-event payload truncated: {len(payload)} bytes, needs 4")
        event, flags, duration = _EVENT.unpack_from(payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def serialize(self) -> bytes:
        """The 4-byte payload."""
        if not 0 <= self.event <= 255:
            raise ValueError(f"event code {self.event} out of range 0-255")
        flags = (0x80 if self.end else 0) | (self.volume & 0x3F)
        return _EVENT.pack(self.event, flags, min(self.duration, MAX_DURATION))

    @property
    def digit(self) -> str | None:
        """The DTMF digit this event stands for, or None."""
        return digit_for_event(self.event)


class DtmfDetector:
    """Turns successive telephone-event packets into digits, each exactly once.

    A digit is reported on the first packet seen for a new event (keyed by RTP
    timestamp), so the press is reported as early as possible and lost start
    packets do not lose it.  Updates, redundant end packets and retransmissions
    carry an already seen timestamp and are ignored.  Long events split into
    segments (RFC 4733 §2.5.1.3: a new timestamp, same event, no marker, the
    previous segment not ended) are not reported again.
    """

    __slots__ = ("_seen", "_last_ts", "_last_event", "_last_ended", "digits")

    def __init__(self, history: int = 32) -> None:
        self._seen: deque[int] = deque(maxlen=history)
        self._last_ts: int | None = None
        self._last_event: int | None = None
        self._last_ended = True
        self.digits: list[str] = []
        """Every digit reported so far, in order."""

    def feed(self, marker: bool, timestamp: int, payload: bytes) -> str | None:
        """Feed one packet; returns the digit when it starts a new key press.

        Malformed payloads (shorter than 4 bytes) and events that are not DTMF
        (codes above 16) return None.
        """
        if len(payload) < 4:
            return None
        event, flags, _duration = _EVENT.unpack_from(payload)
        end = bool(flags & 0x80)
        if timestamp == self._last_ts or timestamp in self._seen:
            if timestamp == self._last_ts and end:
                self._last_ended = True
            return None
        continuation = not marker and not self._last_ended and event == self._last_event
        self._seen.append(timestamp)
        self._last_ts = timestamp
        self._last_event = event
        self._last_ended = end
        if continuation:
            return None
        digit = digit_for_event(event)
        if digit is not None:
            self.digits.append(digit)
        return digit

    def feed_packet(self, packet: RtpPacket) -> str | None:
        """Same as :meth:`feed` for a parsed packet."""
        return self.feed(packet.marker, packet.timestamp, packet.payload)


class DtmfGenerator:
    """Builds the RTP packets that send a digit as telephone-events.

    The first packet has the marker bit; an update follows every ``interval_ms``
    with the growing duration; the end packet is sent three times. All packets of
    a digit carry its start timestamp; sequence numbers increase by one per
    packet and continue across digits.
    """

    def __init__(
        self,
        payload_type: int = 101,
        ssrc: int = 0,
        *,
        sequence: int = 0,
        clock_rate: int = 8000,
        interval_ms: int = 20,
        volume: int = 10,
    ) -> None:
        self.payload_type = payload_type
        self.ssrc = ssrc
        self.sequence = sequence & 0xFFFF
        self.clock_rate = clock_rate
        self.interval_ms = interval_ms
        self.volume = volume

    def events(self, digit: str, duration_ms: int = 100) -> list[TelephoneEvent]:
        """The payload sequence for one digit (updates, then three end packets)."""
        code = event_for_digit(digit)
        step = self.clock_rate * self.interval_ms // 1000
        total = min(self.clock_rate * duration_ms // 1000, MAX_DURATION)
        durations = list(range(step, total, step)) or [total]
        if durations[-1] != total and total > step:
            durations.append(total)
        updates = [TelephoneEvent(code, False, self.volume, d) for d in durations[:-1]]
        final = TelephoneEvent(code, True, self.volume, durations[-1])
        return updates + [final, final, final]

    def packets(self, digit: str, timestamp: int, duration_ms: int = 100) -> list[RtpPacket]:
        """RTP packets for one digit starting at RTP ``timestamp``."""
        packets = []
        for index, event in enumerate(self.events(digit, duration_ms)):
            packets.append(
                RtpPacket(
                    payload_type=self.payload_type,
                    sequence_number=self.sequence,
                    timestamp=timestamp & 0xFFFFFFFF,
                    ssrc=self.ssrc,
                    marker=index == 0,
                    payload=event.serialize(),
                )
            )
            self.sequence = (self.sequence + 1) & 0xFFFF
        return packets
