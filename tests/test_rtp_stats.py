"""RTP receive statistics: loss with sequence wraparound, jitter (RFC 3550 A.3, A.8)."""

from __future__ import annotations

import pytest

from pbxd.rtp.stats import ReceiveStats


def _feed(stats: ReceiveStats, seqs, step_ts=160, step_s=0.02):
    for index, seq in enumerate(seqs):
        stats.update(seq & 0xFFFF, (index * step_ts) & 0xFFFFFFFF, index * step_s, size=172)


def test_in_order_stream_counts_packets_and_bytes_without_loss():
    stats = ReceiveStats()
    _feed(stats, range(1000, 1050))
    assert (stats.packets, stats.bytes) == (50, 50 * 172)
    assert (stats.expected, stats.lost) == (50, 0)
    assert stats.extended_max_seq == 1049
    assert stats.jitter == pytest.approx(0.0, abs=1e-9)
    assert stats.fraction_lost() == 0


def test_sequence_wraparound_extends_the_sequence_number():
    stats = ReceiveStats()
    _feed(stats, range(65530, 65530 + 12))  # 65530..65535, 0..5
    assert stats.cycles == 65536
    assert stats.max_seq == 5
    assert stats.extended_max_seq == 65536 + 5
    assert (stats.expected, stats.lost) == (12, 0)


def test_losses_across_wraparound_are_counted():
    stats = ReceiveStats()
    seqs = [s for s in range(65530, 65530 + 20) if s not in (65534, 65536, 65537)]
    _feed(stats, seqs)
    assert stats.expected == 20
    assert stats.lost == 3
    assert stats.loss_ratio == pytest.approx(3 / 20)


def test_fraction_lost_is_per_interval_in_256ths():
    stats = ReceiveStats()
    _feed(stats, [0, 1, 3, 4])  # 1 lost of 5 expected
    assert stats.fraction_lost() == (1 << 8) // 5
    stats.update(5, 800, 0.1)
    stats.update(6, 960, 0.12)
    assert stats.fraction_lost() == 0  # nothing lost in this interval
    assert stats.lost == 1


def test_reordered_and_duplicated_packets_do_not_move_the_highest_sequence():
    stats = ReceiveStats()
    for seq, ts in [(10, 0), (12, 320), (11, 160), (12, 320), (13, 480)]:
        stats.update(seq, ts, ts / 8000)
    assert stats.max_seq == 13 and stats.cycles == 0
    assert stats.expected == 4
    assert stats.packets == 5
    assert stats.lost == -1  # a duplicate, as RFC 3550 counts it


def test_large_jump_is_a_restart_only_when_confirmed_by_the_next_packet():
    stats = ReceiveStats()
    _feed(stats, range(100, 110))
    assert stats.update(40000, 1600, 0.2) is False  # a stray packet is ignored
    assert stats.packets == 10 and stats.max_seq == 109
    assert stats.update(110, 1600, 0.2) is True
    assert stats.update(50000, 1760, 0.22) is False
    assert stats.update(50001, 1920, 0.24) is True  # sender restarted its sequence
    assert (stats.base_seq, stats.packets, stats.expected) == (50001, 1, 1)


def test_jitter_follows_the_rfc3550_a8_estimator():
    stats = ReceiveStats(clock_rate=8000)
    # packets every 20 ms of media; the second arrives 10 ms late, the rest on time
    arrivals = [0.0, 0.030, 0.040, 0.060]
    for index, arrival in enumerate(arrivals):
        stats.update(index, index * 160, arrival)
    # transit differences in timestamp units: |80|, |-80|, 0
    expected = 0.0
    for d in (80, 80, 0):
        expected += (d - expected) / 16
    assert stats.jitter == pytest.approx(expected)
    assert stats.jitter_seconds == pytest.approx(expected / 8000)


def test_jitter_handles_rtp_timestamp_wraparound():
    stats = ReceiveStats()
    start = 0xFFFFFFFF - 200
    for index in range(5):
        stats.update(index, (start + index * 160) & 0xFFFFFFFF, index * 0.02)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_constant_clock_skew_gives_converging_jitter():
    stats = ReceiveStats()
    for index in range(400):
        stats.update(index, index * 160, index * 0.021)  # each packet 1 ms (8 units) later
    assert stats.jitter == pytest.approx(8.0, rel=1e-3)


def test_per_packet_clock_rate_overrides_the_default():
    stats = ReceiveStats(clock_rate=8000)
    stats.update(0, 0, 0.0, clock_rate=48000)
    stats.update(1, 960, 0.030, clock_rate=48000)  # 10 ms late at 48 kHz = 480 units
    assert stats.jitter == pytest.approx(480 / 16)


def test_empty_stats_report_nothing():
    stats = ReceiveStats()
    assert (stats.packets, stats.expected, stats.lost, stats.loss_ratio) == (0, 0, 0, 0.0)
    assert stats.fraction_lost() == 0
