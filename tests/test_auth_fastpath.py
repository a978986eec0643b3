"""The synchronous fast path of SIPAuthenticator.authenticate and the pieces
made faster under it (nonce MAC, challenge parts, hashes)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed

from pbxd.auth.realm import NOT_YET, fired_value
from pbxd.auth.sipauth import AuthResult
from pbxd.sip.digest import (
    NonceSource,
    challenge_parts,
    compute_response,
    format_challenge,
)
from tests.test_auth import (
    EXTENSIONS,
    SOURCE,
    AuthenticatorTestCase,
    answer,
    request,
)


class SynchronousAnswerTests(AuthenticatorTestCase):
    """An in-memory store answers at once: so does the authenticator."""

    def test_challenge_success_and_failure_are_plain_results(self) -> None:
        challenge = self.auth.authenticate(request(), SOURCE)
        self.assertIsInstance(challenge, AuthResult)
        self.assertEqual(challenge.response.status, 401)
        header = challenge.response.get("WWW-Authenticate")
        ok = self.auth.authenticate(request(auth=answer(header, "1000", "secret1000")), SOURCE)
        self.assertIsInstance(ok, AuthResult)
        self.assertEqual(ok.extension.number, "1000")
        wrong = self.auth.authenticate(
            request(auth=answer(header, "1000", "guess", nc="00000002")), SOURCE
        )
        self.assertIsInstance(wrong, AuthResult)
        self.assertEqual(wrong.response.status, 401)
        self.assertEqual(self.failures(), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_store_raising_gives_500_not_an_exception(self) -> None:
        def broken(number: str) -> Deferred:
            raise RuntimeError("db down")

        header = self.challenge_header()
        self.store.getExtension = broken
        result = self.auth.authenticate(request(auth=answer(header, "1000", "secret1000")), SOURCE)
        self.assertIsInstance(result, AuthResult)
        self.assertEqual(result.response.status, 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class LaterStore:
    """An extension store whose answers come later (like a database)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Deferred, str]] = []

    def getExtension(self, number: str) -> Deferred:
        d: Deferred = Deferred()
        self.pending.append((d, number))
        return d

    def answer_all(self, error: Exception | None = None) -> None:
        while self.pending:
            d, number = self.pending.pop(0)
            if error is not None:
                d.errback(error)
            else:
                d.callback(EXTENSIONS.get(number))


class AsynchronousAnswerTests(AuthenticatorTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.later = LaterStore()
        self.portal.realm.store = self.later
        for checker in self.portal.checkers.values():
            checker.store = self.later

    def later_result(self, req, error: Exception | None = None) -> AuthResult:
        d = self.auth.authenticate(req, SOURCE)
        self.assertIsInstance(d, Deferred)
        self.assertNoResult(d)
        self.later.answer_all(error)
        return self.successResultOf(d)

    def test_success_after_the_store_answers(self) -> None:
        header = self.challenge_header()  # no store needed for a challenge
        result = self.later_result(request(auth=answer(header, "1000", "secret1000")))
        self.assertEqual(result.extension.number, "1000")
        replay = self.later_result(request(auth=answer(header, "1000", "secret1000")))
        self.assertIn("stale=true", replay.response.get("WWW-Authenticate"))

    def test_wrong_password_and_unknown_user_after_the_store_answers(self) -> None:
        header = self.challenge_header()
        wrong = self.later_result(request(auth=answer(header, "1000", "guess")))
        self.assertEqual(wrong.response.status, 401)
        header = self.challenge_header(request(user="9999"))
        unknown = self.later_result(request(user="9999", auth=answer(header, "9999", "guess")))
        self.assertEqual(unknown.response.status, 401)
        self.assertEqual(self.failures(), 2)

    def test_store_failure_after_a_while_gives_500(self) -> None:
        header = self.challenge_header()
        req = request(auth=answer(header, "1000", "secret1000"))
        result = self.later_result(req, RuntimeError("db down"))
        self.assertEqual(result.response.status, 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


def test_fired_value() -> None:
    assert fired_value(succeed(None)) is None
    assert fired_value(succeed(3)) == 3
    assert fired_value(Deferred()) is NOT_YET
    failed = fail(RuntimeError("x"))
    assert fired_value(failed) is NOT_YET
    failed.addErrback(lambda f: None)  # the failure was left for the errbacks
    waiting = succeed(1)
    waiting.addCallback(lambda _: Deferred())
    assert fired_value(waiting) is NOT_YET


# ---------------------------------------------------------------- digest pieces

SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("length", [16, 32, 63, 64, 65, 200])
def test_nonce_mac_is_hmac_sha256(length: int) -> None:
    secret = bytes(range(length))
    src = NonceSource(secret, lifetime=30)
    for head in (b"", b"x", bytes(16), b"y" * 100):
        assert src._mac(head) == hmac.digest(secret, head, "sha256")[:16]


def test_only_the_issued_spelling_of_a_nonce_is_accepted() -> None:
    src = NonceSource(SECRET, lifetime=30, random=lambda n: b"\xfb\xff" * (n // 2))
    nonce = src.make(1000.0)
    assert src.verify(nonce, 1000.0) == ("ok", 1000.0)
    assert src.check(nonce, 1000.0) == "ok"
    # same bytes, other spellings: standard alphabet, padding, non-zero spare bits, junk
    assert "-" in nonce or "_" in nonce
    variants = [
        nonce.replace("-", "+").replace("_", "/"),
        nonce + "=",
        nonce[:-1] + chr(ord(nonce[-1]) + 1),
        nonce[:10] + "!" + nonce[10:],
        " " + nonce,
    ]
    for variant in variants:
        assert variant != nonce
        assert src.issued_at(variant) is None, variant
        assert src.verify(variant, 1000.0) == ("invalid", None)


def test_verify_states() -> None:
    src = NonceSource(SECRET, lifetime=30)
    nonce = src.make(100.0)
    assert src.verify(nonce, 130.0) == ("ok", 100.0)
    assert src.verify(nonce, 130.5) == ("stale", 100.0)
    assert src.verify(nonce, 94.0) == ("invalid", 100.0)  # from the future


@given(
    st.text(max_size=12),
    st.sampled_from(["MD5", "SHA-256", "md5-sess", "SHA-256-sess"]),
    st.booleans(),
    st.one_of(st.none(), st.text(max_size=6)),
)
def test_challenge_parts_match_format_challenge(
    realm: str, algorithm: str, stale: bool, opaque: str | None
) -> None:
    nonce = NonceSource(SECRET, lifetime=30).make(5.0)
    before, after = challenge_parts(realm, algorithm, stale=stale, opaque=opaque)
    assert before + nonce + after == format_challenge(
        realm, nonce, algorithm, stale=stale, opaque=opaque
    )


def _reference_response(algorithm, ha1, nonce, method, uri, qop, nc, cnonce) -> str:
    h = hashlib.sha256 if algorithm.upper().startswith("SHA-256") else hashlib.md5

    def hx(text: str) -> str:
        return h(text.encode()).hexdigest()

    if algorithm.lower().endswith("-sess"):
        ha1 = hx(f"{ha1.lower()}:{nonce}:{cnonce}")
    ha2 = hx(f"{method}:{uri}")
    if qop:
        return hx(f"{ha1.lower()}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return hx(f"{ha1.lower()}:{nonce}:{ha2}")


@given(
    st.sampled_from(["MD5", "md5", "MD5-sess", "SHA-256", "sha-256", "SHA-256-SESS"]),
    st.sampled_from([hashlib.md5(b"x").hexdigest(), hashlib.md5(b"x").hexdigest().upper()]),
    st.text(max_size=8),
    st.text(max_size=8),
    st.sampled_from(["auth", None, ""]),
)
def test_compute_response_matches_the_formula(algorithm, ha1, nonce, uri, qop) -> None:
    got = compute_response(algorithm, ha1, nonce, "INVITE", uri, qop=qop, nc="00000001", cnonce="c")
    want = _reference_response(algorithm, ha1, nonce, "INVITE", uri, qop, "00000001", "c")
    assert got == want
