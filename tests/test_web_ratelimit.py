"""The admin API's per-source request rate limit (``admin.rate_limit``)."""

from __future__ import annotations

import ipaddress

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest
from webhelpers import Env

from pbxd.auth.bans import TokenBuckets
from pbxd.config import ConfigError, parse_config
from pbxd.configschema import RateLimit
from pbxd.web.auth import RequestLimiter
from pbxd.web.resources import JSONError


def test_a_source_over_the_limit_gets_429_with_retry_after_then_is_served_again():
    env = Env(rate_limit_requests=3, rate_limit_window=6.0)
    assert [env.call("GET", "/api/v1/bans").status for _ in range(3)] == [200] * 3
    refused = env.call("GET", "/api/v1/bans")
    assert refused.status == 429
    assert refused.json == {"error": {"code": "rate_limited", "message":
                                      "too many requests from this address; try again later"}}
    assert refused.header("retry-after") == "2"  # one token per 2 s
    assert refused.header("content-type") == "application/json"
    env.clock.advance(2)
    assert env.call("GET", "/api/v1/bans").status == 200
    assert env.call("GET", "/api/v1/bans").status == 429


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/openapi.json", "/metrics", "/nowhere"])
def test_the_limit_covers_unauthenticated_paths_too(path):
    env = Env(rate_limit_requests=2, rate_limit_window=10.0)
    for _ in range(2):
        assert env.call("GET", path, token=None).status != 429
    assert env.call("GET", path, token=None).status == 429


def test_a_limited_source_is_refused_before_authentication_counts_a_failure():
    env = Env(rate_limit_requests=1, rate_limit_window=10.0, max_failures=2)
    assert env.call("GET", "/api/v1/bans", token="wrong").status == 401
    for _ in range(5):
        assert env.call("GET", "/api/v1/bans", token="wrong").status == 429
    env.clock.advance(10)
    assert env.call("GET", "/api/v1/bans").status == 200  # not locked out by the refused ones


def test_trusted_networks_are_exempt():
    env = Env(rate_limit_requests=2, rate_limit_window=10.0)
    env.bans.trusted_networks = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
    assert {env.call("GET", "/api/v1/health", token=None).status for _ in range(20)} == {200}


def test_zero_requests_disables_the_limit():
    env = Env(rate_limit_requests=0)
    assert {env.call("GET", "/api/v1/health", token=None).status for _ in range(200)} == {200}


def _from(ip: str) -> DummyRequest:
    request = DummyRequest([b"api", b"v1", b"health"])
    request.client = IPv4Address("TCP", ip, 40000)
    return request


def test_the_limit_is_per_source_address():
    env = Env(rate_limit_requests=2, rate_limit_window=10.0)
    root = env.site.resource
    flooder, other = "198.51.100.7", "198.51.100.8"
    for _ in range(2):
        assert not isinstance(root.getChildWithDefault(b"api", _from(flooder)), JSONError)
    refused = root.getChildWithDefault(b"api", _from(flooder))
    assert isinstance(refused, JSONError) and refused.error.status == 429
    assert not isinstance(root.getChildWithDefault(b"api", _from(other)), JSONError)


def test_reload_applies_new_limits():
    env = Env(rate_limit_requests=1, rate_limit_window=10.0)
    env.call("GET", "/api/v1/health", token=None)
    assert env.call("GET", "/api/v1/health", token=None).status == 429
    env.site.replace_rate_limit(RateLimit(requests=0, window=10.0))
    assert env.call("GET", "/api/v1/health", token=None).status == 200


def test_limiter_memory_is_bounded_and_swept():
    clock = Clock()
    limiter = RequestLimiter(clock, requests=1, window=5.0, max_sources=50)
    for i in range(500):
        limiter.check(f"192.0.2.{i % 250}")
        limiter.check(f"192.0.2.{i % 250}")
    assert len(limiter.buckets) <= 50
    clock.advance(11)
    limiter.check("203.0.113.1")
    assert limiter.tracked() == 1


def test_token_bucket_says_how_long_to_wait():
    buckets = TokenBuckets(requests=4, window=2.0)
    assert [buckets.take("a", 0.0) for _ in range(4)] == [0.0] * 4
    assert buckets.take("a", 0.0) == pytest.approx(0.5)
    assert buckets.take("a", 0.25) == pytest.approx(0.25)
    assert buckets.take("a", 0.5) == 0.0


def test_config_default_and_custom_rate_limit():
    assert parse_config({}).admin.rate_limit == RateLimit(100, 10.0)
    custom = parse_config({"admin": {"rate_limit": {"requests": 20, "window": "1m"}}})
    assert custom.admin.rate_limit == RateLimit(20, 60.0)


@pytest.mark.parametrize("limit, key", [
    ({"requests": -1}, "admin.rate_limit.requests"),
    ({"requests": "many"}, "admin.rate_limit.requests"),
    ({"window": 0}, "admin.rate_limit.window"),
    ({"burst": 5}, "admin.rate_limit"),
])
def test_config_rejects_a_bad_rate_limit(limit, key):
    with pytest.raises(ConfigError) as error:
        parse_config({"admin": {"rate_limit": limit}})
    assert key in str(error.value)
