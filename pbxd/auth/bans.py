"""IP bans, failed-authentication counting and a per-source flood limiter (layer 3).

The SIP controller asks :meth:`BanList.allowMessage` (or :meth:`is_banned`
and :meth:`record_request`) for every message before doing any work; the
authenticator calls :meth:`record_failure` for every wrong credential.

Memory is bounded: failure windows, rate buckets and bans all expire on the
injected clock, and expired entries are swept lazily (at most once every
``sweep_interval`` seconds, on the next call), so a scan from a million
addresses leaves nothing behind once the clock has moved on. ``max_sources``
is a hard cap on each tracking table on top of that (oldest dropped first).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from twisted.logger import Logger

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(items: Iterable[str | Network]) -> tuple[Network, ...]:
    return tuple(
        item
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network)
        else ipaddress.ip_network(item, strict=False)
        for item in items
    )


class TokenBuckets:
    """Per-source token buckets: ``requests`` per ``window`` seconds, bursts up
    to ``requests`` (``0`` lets everything through). Memory bounded: at most
    ``max_sources`` buckets (oldest dropped first), idle ones dropped by
    :meth:`sweep`. Shared by the SIP flood limiter (:class:`BanList`) and the
    admin API's request limiter.
    """

    def __init__(self, requests: int, window: float, max_sources: int = 100_000) -> None:
        self.requests = requests
        self.window = window
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # ip -> [tokens, last]

    def take(self, source: str, now: float) -> float:
        """Spend one token of ``source``: 0.0 when it had one, else the
        seconds until its next token (the request is refused)."""
        if not self.requests:
            return 0.0
        capacity = float(self.requests)
        rate = capacity / self.window
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = [capacity, now]
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        else:
            bucket[0] = min(capacity, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return 0.0
        return (1.0 - bucket[0]) / rate

    def forget(self, source: str) -> None:
        """Drop the bucket of ``source``."""
        self._buckets.pop(source, None)

    def sweep(self, now: float) -> None:
        """Drop the buckets idle for a whole window (they are full again)."""
        idle = now - self.window
        for ip in [ip for ip, (_, last) in self._buckets.items() if last <= idle]:
            del self._buckets[ip]

    def __len__(self) -> int:
        return len(self._buckets)


class BanList:
    """Who may talk to us.

    :param clock: an ``IReactorTime`` (``task.Clock`` in tests); its
        ``seconds()`` are stored as ban expiry times, so use the real
        reactor's epoch time when a store persists them.
    :param max_failed_attempts: failures within ``failure_window`` seconds
        that ban a source for ``ban_duration`` seconds.
    :param trusted_networks: CIDRs (strings or ``ipaddress`` networks) that
        are never banned nor rate limited.
    :param rate_limit_requests: messages a source may send per
        ``rate_limit_window`` seconds (token bucket, bursts up to that many);
        ``0``/``None`` disables the flood limiter. A flood bans the source.
    :param store: an optional :class:`pbxd.interfaces.IBanStore`; bans are
        saved and removed through it (fire and forget, failures logged).
    """

    log = Logger()
    metrics: Any = None  # a pbxd.web.metrics.Metrics (ban_added), set by composition

    def __init__(
        self,
        clock: Any,
        *,
        max_failed_attempts: int = 5,
        failure_window: float = 60.0,
        ban_duration: float = 300.0,
        trusted_networks: Iterable[str | Network] = (),
        rate_limit_requests: int | None = None,
        rate_limit_window: float = 1.0,
        store: Any = None,  # IBanStore
        max_sources: int = 100_000,
        sweep_interval: float | None = None,
    ) -> None:
        self.clock = clock
        self.max_failed_attempts = max_failed_attempts
        self.failure_window = failure_window
        self.ban_duration = ban_duration
        self.trusted_networks = _networks(trusted_networks)
        self._buckets = TokenBuckets(rate_limit_requests or 0, rate_limit_window, max_sources)
        self.store = store
        self.max_sources = max_sources
        self.sweep_interval = (
            sweep_interval
            if sweep_interval is not None
            else max(1.0, min(failure_window, rate_limit_window * 10, ban_duration))
        )
        self._bans: dict[str, tuple[float, str]] = {}  # ip -> (until, reason)
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._next_sweep = clock.seconds() + self.sweep_interval

    @property
    def rate_limit_requests(self) -> int:
        """Messages a source may send per :attr:`rate_limit_window` (0: no limit)."""
        return self._buckets.requests

    @rate_limit_requests.setter
    def rate_limit_requests(self, value: int) -> None:
        self._buckets.requests = value

    @property
    def rate_limit_window(self) -> float:
        """The flood limiter's window in seconds."""
        return self._buckets.window

    @rate_limit_window.setter
    def rate_limit_window(self, value: float) -> None:
        self._buckets.window = value

    # ------------------------------------------------------------ queries

    def is_banned(self, ip: str) -> bool:
        """True while ``ip`` is banned. O(1)."""
        entry = self._bans.get(ip)
        if entry is None:
            return False
        if entry[0] > self.clock.seconds():
            return True
        self._expire(ip)
        return False

    def is_trusted(self, ip: str) -> bool:
        """True when ``ip`` is inside one of the trusted networks."""
        if not self.trusted_networks:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in net for net in self.trusted_networks)

    def list(self) -> list[tuple[str, float, str]]:
        """Current bans as ``(ip, until, reason)``, soonest expiry first."""
        now = self.clock.seconds()
        return sorted(
            ((ip, until, reason) for ip, (until, reason) in self._bans.items() if until > now),
            key=lambda item: item[1],
        )

    def tracked(self) -> int:
        """How many addresses are held in memory (bans, failures, buckets)."""
        return len(self._bans) + len(self._failures) + len(self._buckets)

    # ------------------------------------------------------------ hot path

    def allowMessage(self, source: tuple[str, int]) -> bool:
        """The controller's gate: False (drop silently) for a banned or flooding source."""
        ip = source[0]
        now = self.clock.seconds()
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_interval
            self.sweep()
        # is_banned and record_request inlined: this runs for every message
        entry = self._bans.get(ip)
        if entry is not None:
            if entry[0] > now:
                return False
            self._expire(ip)
        if not self._buckets.requests:
            return True
        return self.record_request(ip)

    def record_request(self, ip: str) -> bool:
        """Count one message from ``ip``; False (and a ban) when it floods."""
        if not self.rate_limit_requests:
            return True
        now = self.clock.seconds()
        self._maybe_sweep(now)
        if not self._buckets.take(ip, now):
            return True
        if self.is_trusted(ip):
            return True
        self.log.warn(
            "flood from {source}: over {limit} requests in {window}s",
            source=ip,
            limit=self.rate_limit_requests,
            window=self.rate_limit_window,
        )
        self.ban(ip, self.ban_duration, "request flood")
        return False

    # ------------------------------------------------------------ failures

    def record_failure(self, ip: str, reason: str) -> bool:
        """Count a failed authentication from ``ip``; True if it got banned by it."""
        now = self.clock.seconds()
        self._maybe_sweep(now)
        self.log.warn("auth failure from {source}: {reason}", source=ip, reason=reason)
        if self.max_failed_attempts <= 0 or self.is_trusted(ip):
            return False
        window = self._failures.get(ip)
        if window is None:
            window = self._failures[ip] = deque(maxlen=self.max_failed_attempts)
            self._cap(self._failures)
        horizon = now - self.failure_window
        while window and window[0] <= horizon:
            window.popleft()
        window.append(now)
        if len(window) >= self.max_failed_attempts:
            return self.ban(
                ip, self.ban_duration, f"{len(window)} failed authentications: {reason}"
            )
        return False

    # ------------------------------------------------------------ bans

    def ban(self, ip: str, seconds: float, reason: str) -> bool:
        """Ban ``ip`` for ``seconds``. Returns False (and bans nothing) for a
        trusted or malformed address."""
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            self.log.warn("not banning {source}: not an IP address", source=ip)
            return False
        if self.is_trusted(ip):
            self.log.warn("not banning trusted {source} ({reason})", source=ip, reason=reason)
            return False
        until = self.clock.seconds() + seconds
        self._bans[ip] = (until, reason)
        self._failures.pop(ip, None)
        self._buckets.forget(ip)
        self.log.warn(
            "banned {source} for {seconds}s: {reason}", source=ip, seconds=seconds, reason=reason
        )
        if self.metrics is not None:
            self.metrics.ban_added()
        if self.store is not None:
            self._stored(self.store.save(ip, until, reason), "save", ip)
        return True

    def lift(self, ip: str) -> bool:
        """Remove a ban (and the failure count). True if ``ip`` was banned."""
        self._failures.pop(ip, None)
        if ip not in self._bans:
            return False
        del self._bans[ip]
        self.log.info("ban on {source} lifted", source=ip)
        if self.store is not None:
            self._stored(self.store.remove(ip), "remove", ip)
        return True

    def restore(self, entries: Iterable[tuple[str, float, str]]) -> int:
        """Load bans from the store at start (expired and trusted ones skipped).
        Returns how many were restored."""
        now = self.clock.seconds()
        count = 0
        for ip, until, reason in entries:
            if until > now and not self.is_trusted(ip):
                self._bans[ip] = (float(until), reason)
                count += 1
        self.log.info("restored {count} bans", count=count)
        return count

    def load(self) -> Any:
        """Deferred: ``store.load()`` then :meth:`restore` (None without a store)."""
        if self.store is None:
            return None
        return self.store.load().addCallback(self.restore)

    # ------------------------------------------------------------ housekeeping

    def _expire(self, ip: str) -> None:
        self._bans.pop(ip, None)
        self.log.info("ban on {source} expired", source=ip)
        if self.store is not None:
            self._stored(self.store.remove(ip), "remove", ip)

    def _stored(self, d: Any, what: str, ip: str) -> None:
        if d is not None and hasattr(d, "addErrback"):
            d.addErrback(
                lambda f: self.log.failure(
                    "ban store {what} failed for {source}", f, what=what, source=ip
                )
            )

    def _cap(self, table: OrderedDict[str, Any]) -> None:
        while len(table) > self.max_sources:
            table.popitem(last=False)

    def _maybe_sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_interval
        self.sweep()

    def sweep(self) -> None:
        """Drop every expired ban, failure window and full rate bucket."""
        now = self.clock.seconds()
        for ip in [ip for ip, (until, _) in self._bans.items() if until <= now]:
            self._expire(ip)
        horizon = now - self.failure_window
        for ip in [ip for ip, w in self._failures.items() if not w or w[-1] <= horizon]:
            del self._failures[ip]
        self._buckets.sweep(now)
