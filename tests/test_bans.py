"""Tests for pbxd.auth.bans: failure windows, bans on the clock, flood limiter, persistence."""

from __future__ import annotations

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pbxd.auth.bans import BanList
from pbxd.interfaces import IBanStore


@implementer(IBanStore)
class MemoryBanStore:
    """An in-memory IBanStore."""

    def __init__(self, rows=()):
        self.rows = {ip: (until, reason) for ip, until, reason in rows}

    def load(self):
        return succeed([(ip, u, r) for ip, (u, r) in self.rows.items()])

    def save(self, address, until, reason):
        self.rows[address] = (until, reason)
        return succeed(None)

    def remove(self, address):
        self.rows.pop(address, None)
        return succeed(None)


def make(clock=None, **kw):
    clock = clock or Clock()
    options = dict(max_failed_attempts=3, failure_window=60, ban_duration=300)
    options.update(kw)
    return clock, BanList(clock, **options)


class FailureTests(SynchronousTestCase):
    def test_ban_after_max_failures_within_window(self) -> None:
        clock, bans = make()
        self.assertFalse(bans.record_failure("192.0.2.1", "bad password"))
        self.assertFalse(bans.record_failure("192.0.2.1", "bad password"))
        self.assertFalse(bans.is_banned("192.0.2.1"))
        self.assertTrue(bans.record_failure("192.0.2.1", "bad password"))
        self.assertTrue(bans.is_banned("192.0.2.1"))
        self.assertFalse(bans.is_banned("192.0.2.2"))

    def test_failures_outside_the_sliding_window_do_not_add_up(self) -> None:
        clock, bans = make()
        bans.record_failure("192.0.2.1", "x")
        clock.advance(40)
        bans.record_failure("192.0.2.1", "x")
        clock.advance(30)  # the first failure is now 70 s old
        self.assertFalse(bans.record_failure("192.0.2.1", "x"))
        self.assertFalse(bans.is_banned("192.0.2.1"))
        clock.advance(1)
        self.assertTrue(bans.record_failure("192.0.2.1", "x"))

    def test_ban_expires_after_ban_duration(self) -> None:
        clock, bans = make()
        for _ in range(3):
            bans.record_failure("198.51.100.7", "x")
        clock.advance(299)
        self.assertTrue(bans.is_banned("198.51.100.7"))
        clock.advance(1)
        self.assertFalse(bans.is_banned("198.51.100.7"))
        self.assertEqual(bans.list(), [])
        # the count starts again from zero after a ban
        self.assertFalse(bans.record_failure("198.51.100.7", "x"))

    def test_trusted_network_is_never_banned(self) -> None:
        clock, bans = make(trusted_networks=["10.0.0.0/8", "2001:db8::/32"])
        for _ in range(10):
            bans.record_failure("10.1.2.3", "x")
            bans.record_failure("2001:db8::5", "x")
        self.assertFalse(bans.is_banned("10.1.2.3"))
        self.assertFalse(bans.ban("10.1.2.3", 60, "manual"))
        self.assertFalse(bans.is_banned("10.1.2.3"))
        self.assertFalse(bans.is_banned("2001:db8::5"))
        self.assertTrue(bans.is_trusted("::ffff:10.0.0.1"))
        self.assertFalse(bans.is_trusted("11.0.0.1"))

    def test_failures_and_bans_are_logged_with_source(self) -> None:
        clock, bans = make()
        with capturedLogs() as events:
            for _ in range(3):
                bans.record_failure("203.0.113.9", "wrong password for 1000")
        sources = [e.get("source") for e in events]
        self.assertEqual(sources.count("203.0.113.9"), 4)  # 3 failures + 1 ban
        self.assertIn("banned {source}", " ".join(e["log_format"] for e in events))


class ManualBanTests(SynchronousTestCase):
    def test_ban_list_and_lift(self) -> None:
        clock, bans = make()
        self.assertTrue(bans.ban("192.0.2.5", 100, "operator"))
        self.assertTrue(bans.ban("192.0.2.6", 50, "operator"))
        self.assertEqual(
            bans.list(), [("192.0.2.6", 50.0, "operator"), ("192.0.2.5", 100.0, "operator")]
        )
        self.assertTrue(bans.lift("192.0.2.5"))
        self.assertFalse(bans.is_banned("192.0.2.5"))
        self.assertFalse(bans.lift("192.0.2.5"))

    def test_not_an_address_is_not_banned(self) -> None:
        clock, bans = make()
        self.assertFalse(bans.ban("example.com", 10, "x"))
        self.assertEqual(bans.list(), [])

    def test_allow_message_refuses_banned_source(self) -> None:
        clock, bans = make()
        bans.ban("192.0.2.5", 10, "x")
        self.assertFalse(bans.allowMessage(("192.0.2.5", 5060)))
        self.assertTrue(bans.allowMessage(("192.0.2.50", 5060)))
        clock.advance(10)
        self.assertTrue(bans.allowMessage(("192.0.2.5", 5060)))


class PersistenceTests(SynchronousTestCase):
    def test_store_provides_interface(self) -> None:
        verifyObject(IBanStore, MemoryBanStore())

    def test_bans_are_saved_and_removed(self) -> None:
        store = MemoryBanStore()
        clock, bans = make(store=store)
        clock.advance(1000)
        bans.ban("192.0.2.1", 60, "manual")
        self.assertEqual(store.rows, {"192.0.2.1": (1060.0, "manual")})
        bans.ban("192.0.2.2", 60, "manual")
        bans.lift("192.0.2.2")
        self.assertNotIn("192.0.2.2", store.rows)
        clock.advance(60)
        bans.sweep()
        self.assertEqual(store.rows, {})

    def test_restore_skips_expired_and_trusted(self) -> None:
        store = MemoryBanStore(
            [("192.0.2.1", 500.0, "old"), ("192.0.2.2", 2000.0, "live"), ("10.0.0.1", 2000.0, "t")]
        )
        clock = Clock()
        clock.advance(1000)
        _, bans = make(clock, store=store, trusted_networks=["10.0.0.0/8"])
        self.assertEqual(self.successResultOf(bans.load()), 1)
        self.assertEqual(bans.list(), [("192.0.2.2", 2000.0, "live")])
        self.assertTrue(bans.is_banned("192.0.2.2"))
        self.assertFalse(bans.is_banned("192.0.2.1"))

    def test_store_failure_is_logged_not_raised(self) -> None:
        from twisted.internet.defer import fail

        class Broken(MemoryBanStore):
            def save(self, address, until, reason):
                return fail(RuntimeError("disk full"))

        clock, bans = make(store=Broken())
        with capturedLogs() as events:
            self.assertTrue(bans.ban("192.0.2.1", 60, "x"))
        self.assertTrue(any(e.get("log_failure") for e in events))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(bans.is_banned("192.0.2.1"))


class RateLimitTests(SynchronousTestCase):
    def test_flood_is_banned_without_affecting_another_source(self) -> None:
        clock, bans = make(rate_limit_requests=20, rate_limit_window=1.0)
        results = [bans.allowMessage(("192.0.2.66", 5060)) for _ in range(25)]
        self.assertEqual(results.count(True), 20)
        self.assertTrue(bans.is_banned("192.0.2.66"))
        self.assertTrue(bans.allowMessage(("192.0.2.67", 5060)))
        self.assertFalse(bans.is_banned("192.0.2.67"))
        reasons = [reason for _, _, reason in bans.list()]
        self.assertEqual(reasons, ["request flood"])

    def test_steady_rate_below_limit_is_allowed(self) -> None:
        clock, bans = make(rate_limit_requests=10, rate_limit_window=1.0)
        for _ in range(100):
            for _ in range(5):
                self.assertTrue(bans.allowMessage(("192.0.2.1", 5060)))
            clock.advance(0.5)
        self.assertFalse(bans.is_banned("192.0.2.1"))

    def test_trusted_source_is_not_rate_limited(self) -> None:
        clock, bans = make(rate_limit_requests=5, trusted_networks=["127.0.0.0/8"])
        self.assertTrue(all(bans.allowMessage(("127.0.0.1", 5060)) for _ in range(100)))
        self.assertFalse(bans.is_banned("127.0.0.1"))

    def test_memory_bounded_after_many_distinct_sources(self) -> None:
        clock, bans = make(rate_limit_requests=10, rate_limit_window=1.0)
        for i in range(5000):
            ip = f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"
            bans.allowMessage((ip, 5060))
            bans.record_failure(ip, "scan")
        for i in range(3):  # a few get banned too
            bans.ban(f"192.0.2.{i}", 30, "x")
        self.assertGreater(bans.tracked(), 5000)
        clock.advance(400)  # past failure window, rate window and ban duration
        self.assertTrue(bans.allowMessage(("198.51.100.1", 5060)))
        self.assertLessEqual(bans.tracked(), 1)

    def test_hard_cap_on_tracked_sources(self) -> None:
        clock, bans = make(rate_limit_requests=10, max_sources=100)
        for i in range(1000):
            bans.record_request(f"10.0.{i // 256}.{i % 256}")
        self.assertEqual(bans.tracked(), 100)
