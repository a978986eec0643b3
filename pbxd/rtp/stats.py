"""RTP reception statistics (RFC 3550 §6.4.1, appendix A.1, A.3 and A.8).

:class:`ReceiveStats` is fed once per received packet and keeps the counters a
receiver report needs: extended highest sequence number (with wraparound),
expected and lost packets, the fraction lost in the last interval and the
interarrival jitter.  It is on the relay's per-packet path, so ``update`` is
plain attribute arithmetic on a ``__slots__`` object.
"""

from __future__ import annotations

__all__ = ["ReceiveStats", "RTP_SEQ_MOD", "MAX_DROPOUT", "MAX_MISORDER"]

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100


class ReceiveStats:
    """Counters for one received RTP stream (one SSRC).

    The source is accepted from its first packet (no probation).  A jump of
    more than ``MAX_DROPOUT`` sequence numbers is taken as a restart of the
    sender only when the next packet follows it, as in RFC 3550 A.1.
    """

    __slots__ = (
        "packets",
        "bytes",
        "base_seq",
        "max_seq",
        "cycles",
        "bad_seq",
        "jitter",
        "clock_rate",
        "_transit",
        "_last_ts",
        "_last_arrival",
        "_expected_prior",
        "_received_prior",
    )

    def __init__(self, clock_rate: int = 8000) -> None:
        self.packets = 0
        """Packets received and accepted (duplicates included, as in RFC 3550)."""
        self.bytes = 0
        """Sum of the ``size`` arguments of accepted packets."""
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.jitter = 0.0
        """Interarrival jitter estimate in timestamp units (RFC 3550 A.8)."""
        self.clock_rate = clock_rate
        self._transit: float | None = None
        self._last_ts = 0
        self._last_arrival = 0.0
        self._expected_prior = 0
        self._received_prior = 0

    def _restart(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.packets = 0
        self.bytes = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._transit = None

    def update(
        self,
        seq: int,
        timestamp: int,
        arrival: float,
        clock_rate: int | None = None,
        size: int = 0,
    ) -> bool:
        """Account one packet: sequence number, RTP timestamp, arrival time in seconds.

        ``clock_rate`` overrides the rate given at construction (for the
        payload type of this packet); ``size`` is added to :attr:`bytes`.
        Returns False when the packet was discarded as a large jump in the
        sequence (a possible restart still to be confirmed), True otherwise.
        """
        if self.packets == 0 and self._transit is None:
            self._restart(seq)
        else:
            udelta = (seq - self.max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if seq < self.max_seq:
                    self.cycles += RTP_SEQ_MOD
                self.max_seq = seq
            elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
                if seq != self.bad_seq:
                    self.bad_seq = (seq + 1) & 0xFFFF
                    return False
                self._restart(seq)
            # else: duplicate or reordered packet, counted but max_seq kept
        self.packets += 1
        self.bytes += size
        rate = clock_rate or self.clock_rate
        arrival_units = arrival * rate
        if self._transit is None:
            self._transit = 0.0
        else:
            ts_delta = (timestamp - self._last_ts) & 0xFFFFFFFF
            if ts_delta >= 0x80000000:
                ts_delta -= 0x100000000
            d = (arrival_units - self._last_arrival * rate) - ts_delta
            if d < 0:
                d = -d
            self.jitter += (d - self.jitter) / 16.0
        self._last_ts = timestamp
        self._last_arrival = arrival
        return True

    @property
    def extended_max_seq(self) -> int:
        """Highest sequence number received, extended with the wraparound count."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected from the first to the highest sequence number seen."""
        if self.packets == 0:
            return 0
        return self.extended_max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (negative when duplicates outnumber losses)."""
        return self.expected - self.packets

    @property
    def loss_ratio(self) -> float:
        """Fraction of expected packets lost since the start, 0.0-1.0."""
        expected = self.expected
        return max(self.lost, 0) / expected if expected else 0.0

    @property
    def jitter_seconds(self) -> float:
        """The jitter estimate converted to seconds."""
        return self.jitter / self.clock_rate

    def fraction_lost(self) -> int:
        """The 8-bit fraction lost since the previous call (RFC 3550 A.3); starts a new interval."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.packets - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.packets
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            return 0
        return (lost_interval << 8) // expected_interval
