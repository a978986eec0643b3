"""Tests for pbxd.sip.digest: auth-param syntax, RFC test vectors, nonces, nonce-counts."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbxd.sip.digest import (
    DigestParseError,
    NonceCounter,
    NonceSource,
    canonical_algorithm,
    compute_ha1,
    compute_response,
    format_auth_params,
    format_challenge,
    parse_auth_header,
    quote_string,
    session_ha1,
)

# RFC 2617 section 3.5
RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa",\r\n realm="testrealm@host.com",\r\n'
    ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n uri="/dir/index.html",\r\n'
    ' qop=auth,\r\n nc=00000001,\r\n cnonce="0a4f113b",\r\n'
    ' response="6629fae49393a05397450978507c4ef1",\r\n'
    ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)

# RFC 7616 section 3.9.1 (SHA-256)
RFC7616_SHA256 = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "nc": "00000001",
    "response": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


def test_rfc2617_example_parses_and_verifies() -> None:
    scheme, p = parse_auth_header(RFC2617_AUTHORIZATION)
    assert scheme == "Digest"
    assert p["username"] == "Mufasa"
    assert p["qop"] == "auth" and p["nc"] == "00000001"
    ha1 = compute_ha1("MD5", p["username"], p["realm"], "Circle Of Life")
    got = compute_response(
        "MD5", ha1, p["nonce"], "GET", p["uri"], qop=p["qop"], nc=p["nc"], cnonce=p["cnonce"]
    )
    assert got == p["response"]


def test_rfc7616_sha256_example() -> None:
    v = RFC7616_SHA256
    ha1 = compute_ha1("SHA-256", v["username"], v["realm"], v["password"])
    assert ha1 == hashlib.sha256(b"Mufasa:http-auth@example.org:Circle of Life").hexdigest()
    got = compute_response(
        "sha-256", ha1, v["nonce"], "GET", v["uri"], nc=v["nc"], cnonce=v["cnonce"]
    )
    assert got == v["response"]


def test_rfc7616_md5_example() -> None:
    v = RFC7616_SHA256
    ha1 = compute_ha1("MD5", v["username"], v["realm"], v["password"])
    got = compute_response("MD5", ha1, v["nonce"], "GET", v["uri"], nc=v["nc"], cnonce=v["cnonce"])
    assert got == "8ca523f5e9506fed4657c9700eebdbec"


def test_sess_variant_hashes_nonce_and_cnonce_into_ha1() -> None:
    ha1 = compute_ha1("MD5", "u", "r", "p")
    expected = hashlib.md5(f"{ha1}:n:c".encode()).hexdigest()
    assert session_ha1("MD5-sess", ha1, "n", "c") == expected
    assert session_ha1("MD5", ha1, "n", "c") == ha1
    sess = compute_response("MD5-sess", ha1, "n", "REGISTER", "sip:x", nc="00000001", cnonce="c")
    plain = compute_response("MD5", ha1, "n", "REGISTER", "sip:x", nc="00000001", cnonce="c")
    assert sess != plain


def test_rfc2069_response_without_qop() -> None:
    ha1 = compute_ha1("MD5", "u", "r", "p")
    ha2 = hashlib.md5(b"INVITE:sip:1000@r").hexdigest()
    assert compute_response("MD5", ha1, "n", "INVITE", "sip:1000@r", qop=None) == (
        hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    )


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError):
        canonical_algorithm("SHA-1")
    assert canonical_algorithm(None) == "MD5"
    assert canonical_algorithm("sha-256-SESS") == "SHA-256-sess"


def test_quoted_strings_with_escapes_and_commas() -> None:
    _, p = parse_auth_header(r'Digest username="a\"b\\c, d", realm = "x" ,nc=00000002')
    assert p == {"username": 'a"b\\c, d', "realm": "x", "nc": "00000002"}


@pytest.mark.parametrize(
    "bad",
    [
        "",
        'Digest username="unterminated',
        "Digest username",
        'Digest username="a" realm="b"',
        'Digest realm="a", realm="b"',
        "Digest =x",
    ],
)
def test_malformed_auth_headers_raise(bad: str) -> None:
    with pytest.raises(DigestParseError):
        parse_auth_header(bad)


def test_challenge_format_quotes_strings_and_not_tokens() -> None:
    value = format_challenge("pbxd.local", "abc", "sha-256", stale=True)
    assert value == (
        'Digest realm="pbxd.local", nonce="abc", algorithm=SHA-256, qop="auth", stale=true'
    )
    assert "stale" not in format_challenge("r", "n", "MD5")


@given(st.dictionaries(st.sampled_from(["username", "realm", "uri", "cnonce", "nc"]), st.text()))
def test_format_then_parse_round_trips(params: dict[str, str]) -> None:
    params = {k: v for k, v in params.items() if k != "nc"}  # nc is a token
    assert parse_auth_header(format_auth_params("Digest", params)) == ("Digest", params)


def test_quote_string_escapes() -> None:
    assert quote_string('a"b\\') == '"a\\"b\\\\"'


# ---------------------------------------------------------------- nonces

SECRET = b"0123456789abcdef0123456789abcdef"


def fixed_random(n: int) -> bytes:
    return b"\x07" * n


def test_nonce_is_ok_within_lifetime_then_stale() -> None:
    src = NonceSource(SECRET, lifetime=30, random=fixed_random)
    nonce = src.make(1000.0)
    assert src.check(nonce, 1000.0) == "ok"
    assert src.check(nonce, 1030.0) == "ok"
    assert src.check(nonce, 1030.5) == "stale"
    assert src.issued_at(nonce) == 1000.0


def test_nonce_from_another_secret_or_tampered_is_invalid() -> None:
    src = NonceSource(SECRET, lifetime=30)
    other = NonceSource(b"x" * 32, lifetime=30)
    nonce = src.make(5.0)
    assert other.check(nonce, 5.0) == "invalid"
    flipped = nonce[:3] + ("A" if nonce[3] != "A" else "B") + nonce[4:]
    assert src.check(flipped, 5.0) == "invalid"
    assert src.check("not base64 !!", 5.0) == "invalid"
    assert src.check("", 5.0) == "invalid"
    assert src.check("dcd98b7102dd2f0e8b11d0f600bfb0c093", 5.0) == "invalid"


def test_nonce_from_the_future_is_invalid() -> None:
    src = NonceSource(SECRET, lifetime=30)
    assert src.check(src.make(100.0), 50.0) == "invalid"


def test_nonces_differ_and_are_token_safe() -> None:
    src = NonceSource(SECRET, lifetime=30)
    a, b = src.make(1.0), src.make(1.0)
    assert a != b
    assert all(c.isalnum() or c in "-_" for c in a)


def test_short_secret_refused() -> None:
    with pytest.raises(ValueError):
        NonceSource(b"short", lifetime=30)


# ---------------------------------------------------------- nonce counts


def test_reused_nonce_count_is_a_replay() -> None:
    counter = NonceCounter()
    assert counter.use("n", 1, 0.0) == "ok"
    assert counter.use("n", 1, 0.0) == "replay"
    assert counter.use("n", 2, 0.0) == "ok"
    assert counter.use("n", 2, 0.0) == "replay"
    assert counter.use("other", 1, 0.0) == "ok"


def test_out_of_order_counts_accepted_once_within_window() -> None:
    counter = NonceCounter()
    assert counter.use("n", 5, 0.0) == "ok"
    assert counter.use("n", 3, 0.0) == "ok"
    assert counter.use("n", 3, 0.0) == "replay"
    assert counter.use("n", 100, 0.0) == "ok"
    assert counter.use("n", 5, 0.0) == "replay"  # fell out of the window
    assert counter.use("n", 0, 0.0) == "replay"


def test_counter_table_is_bounded_and_evicted_nonces_cannot_be_replayed() -> None:
    counter = NonceCounter(max_nonces=3)
    for i in range(10):
        assert counter.use(f"n{i}", 1, float(i)) == "ok"
    assert len(counter) == 3
    # n0 was evicted: replaying it must not succeed
    assert counter.use("n0", 1, 0.0) == "stale"
    # a nonce issued after everything evicted is fine
    assert counter.use("new", 1, 50.0) == "ok"


def test_nonce_random_parts_are_read_in_batches_and_never_reused() -> None:
    import base64
    import itertools
    import struct

    counter = itertools.count()
    asked: list[int] = []

    def random(n: int) -> bytes:  # distinct 8-byte blocks: a reused part would repeat one
        asked.append(n)
        return b"".join(struct.pack(">Q", next(counter)) for _ in range(n // 8))

    src = NonceSource(SECRET, lifetime=30, random=random)
    nonces = [src.make(1000.0) for _ in range(600)]
    assert all(src.check(n, 1000.0) == "ok" for n in nonces)
    assert asked == [8 * 256] * 3  # 256 nonces' worth at a time
    parts = [base64.urlsafe_b64decode(n + "=")[8:16] for n in nonces]
    assert parts == [struct.pack(">Q", i) for i in range(600)]


def test_a_forked_child_does_not_reuse_the_parents_random_parts() -> None:
    from pbxd.sip import digest

    asked: list[int] = []

    def random(n: int) -> bytes:
        asked.append(n)
        return bytes([len(asked)]) * n

    src = NonceSource(SECRET, lifetime=30, random=random)
    first = src.make(1000.0)
    digest._forget_pools()  # what os.register_at_fork runs in the child
    second = src.make(1000.0)
    assert len(asked) == 2 and first != second
    assert src.check(second, 1000.0) == "ok"
