"""Admin API authentication: bearer tokens through twisted.cred, lockout per source IP."""

from __future__ import annotations

import hashlib

import pytest
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest
from webhelpers import OTHER_TOKEN, TOKEN, Env, fired

from pbxd.configschema import AdminToken
from pbxd.web.auth import AdminTokenChecker, BearerToken, FailureLimiter, make_authenticator
from pbxd.web.resources import APIError


def _token(name: str, secret: str) -> AdminToken:
    return AdminToken(name, hashlib.sha256(secret.encode()).hexdigest())


def test_checker_names_the_token_that_matches():
    checker = AdminTokenChecker([_token("ops", TOKEN), _token("noc", OTHER_TOKEN)])
    assert fired(checker.requestAvatarId(BearerToken(OTHER_TOKEN))) == "noc"
    assert fired(checker.requestAvatarId(BearerToken(TOKEN))) == "ops"


def test_checker_refuses_a_wrong_token_and_the_hash_itself():
    checker = AdminTokenChecker([_token("ops", TOKEN)])
    with pytest.raises(UnauthorizedLogin):
        fired(checker.requestAvatarId(BearerToken(TOKEN + "x")))
    with pytest.raises(UnauthorizedLogin):
        fired(checker.requestAvatarId(BearerToken(hashlib.sha256(TOKEN.encode()).hexdigest())))


def test_checker_replace_drops_old_tokens():
    checker = AdminTokenChecker([_token("ops", TOKEN)])
    checker.replace([_token("noc", OTHER_TOKEN)])
    with pytest.raises(UnauthorizedLogin):
        fired(checker.requestAvatarId(BearerToken(TOKEN)))


@pytest.mark.parametrize("header", [None, "Basic abc", "Bearer", "Bearer wrong-token"])
def test_api_answers_401_with_a_challenge_without_a_good_token(header):
    env = Env()
    headers = {} if header is None else {"Authorization": header}
    d = env.stub.get("http://pbxd.test/api/v1/bans", headers=headers)
    env.stub.flush()
    response = fired(d)
    body = env.stub.json_content(response)
    env.stub.flush()
    assert response.code == 401
    assert fired(body)["error"]["code"] == "unauthorized"
    assert response.headers.getRawHeaders("www-authenticate") == ['Bearer realm="pbxd"']


def test_health_and_openapi_need_no_token():
    env = Env()
    assert env.call("GET", "/api/v1/health", token=None).status == 200
    assert env.call("GET", "/api/v1/openapi.json", token=None).status == 200


def test_lockout_after_repeated_wrong_tokens_even_with_the_right_one():
    env = Env(max_failures=3, failure_window=60, lockout=120)
    assert env.call("GET", "/api/v1/bans", token="wrong-1").status == 401
    assert env.call("GET", "/api/v1/bans", token="wrong-2").status == 401
    locked = env.call("GET", "/api/v1/bans", token="wrong-3")
    assert locked.status == 429
    assert locked.json["error"]["code"] == "locked_out"
    assert locked.header("retry-after") == "120"
    assert env.call("GET", "/api/v1/bans").status == 429
    env.clock.advance(121)
    assert env.call("GET", "/api/v1/bans").status == 200


def test_failures_outside_the_window_do_not_add_up():
    env = Env(max_failures=3, failure_window=60, lockout=120)
    for _ in range(2):
        assert env.call("GET", "/api/v1/bans", token="wrong").status == 401
        env.clock.advance(61)
    assert env.call("GET", "/api/v1/bans", token="wrong").status == 401


def test_a_good_token_resets_the_failure_count():
    env = Env(max_failures=2)
    assert env.call("GET", "/api/v1/bans", token="wrong").status == 401
    assert env.call("GET", "/api/v1/bans").status == 200
    assert env.call("GET", "/api/v1/bans", token="wrong").status == 401


def test_failures_are_counted_in_the_metrics():
    env = Env()
    env.call("GET", "/api/v1/bans", token="wrong")
    env.call("GET", "/api/v1/bans", token=None)
    value = env.metrics.registry.get_sample_value("pbxd_auth_failures_total", {"surface": "admin"})
    assert value == 2


def _request(ip: str, token: str) -> DummyRequest:
    request = DummyRequest([b"bans"])
    request.client = IPv4Address("TCP", ip, 40000)
    request.requestHeaders.addRawHeader(b"authorization", f"Bearer {token}".encode())
    return request


def test_lockout_is_per_source_address():
    clock = Clock()
    authenticate = make_authenticator([_token("ops", TOKEN)], clock, max_failures=2)
    for _ in range(2):
        d = authenticate(_request("198.51.100.1", "wrong"))
        d.addErrback(lambda f: f.trap(APIError))
    with pytest.raises(APIError) as locked:
        fired(authenticate(_request("198.51.100.1", TOKEN)))
    assert locked.value.status == 429
    assert fired(authenticate(_request("198.51.100.2", TOKEN))) == "ops"


def test_limiter_memory_is_bounded():
    limiter = FailureLimiter(Clock(), max_failures=3, max_sources=10)
    for i in range(100):
        limiter.failure(f"192.0.2.{i}")
    assert limiter.tracked() <= 10


def test_replace_tokens_on_reload():
    env = Env()
    env.site.replace_tokens([_token("noc", OTHER_TOKEN)])
    assert env.call("GET", "/api/v1/bans").status == 401
    assert env.call("GET", "/api/v1/bans", token=OTHER_TOKEN).status == 200
