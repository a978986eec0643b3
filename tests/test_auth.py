"""Tests for pbxd.auth: credentials, checker, realm and the SIP authenticator."""

from __future__ import annotations

import hashlib
import re

import pytest
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pbxd.auth.bans import BanList
from pbxd.auth.checker import ExtensionChecker
from pbxd.auth.credentials import ISIPDigestCredentials, SIPDigestCredentials
from pbxd.auth.realm import ExtensionRealm
from pbxd.auth.sipauth import AuthResult, SIPAuthenticator
from pbxd.configschema import Extension
from pbxd.sip.digest import NonceSource
from pbxd.sip.message import Request
from pbxd.store.extensions import ConfigExtensionStore

REALM = "pbxd.local"
SECRET = b"test-secret-0123456789abcdef"
SOURCE = ("192.0.2.10", 5062)


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


EXTENSIONS = {
    "1000": Extension("1000", password="secret1000"),
    "1001": Extension(
        "1001",
        ha1=md5(f"1001:{REALM}:pw1001"),
        ha1_sha256=sha256(f"1001:{REALM}:pw1001"),
    ),
    "1002": Extension("1002", ha1=md5(f"1002:{REALM}:pw1002")),
}


def request(
    method: str = "REGISTER",
    user: str = "1000",
    *,
    to_user: str | None = None,
    auth: str | None = None,
    header: str = "Authorization",
    call_id: str = "a84b4c76e66710@192.0.2.10",
    ruri: str | None = None,
) -> Request:
    """A request from ``user`` (To ``to_user``, default the same as REGISTER does)."""
    to_user = to_user or user
    headers = [
        ("Via", "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK776asdhds;rport"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:{user}@{REALM}>;tag=1928301774"),
        ("To", f"<sip:{to_user}@{REALM}>"),
        ("Call-ID", call_id),
        ("CSeq", f"2 {method}"),
        ("Contact", f"<sip:{user}@192.0.2.10:5062>"),
    ]
    if auth is not None:
        headers.append((header, auth))
    default_ruri = f"sip:{REALM}" if method == "REGISTER" else f"sip:{to_user}@{REALM}"
    return Request(method, ruri or default_ruri, headers)


def param(challenge: str, name: str) -> str | None:
    m = re.search(rf'{name}="?([^",]+)"?', challenge)
    return m.group(1) if m else None


def answer(
    challenge: str,
    user: str,
    password: str,
    method: str = "REGISTER",
    uri: str = f"sip:{REALM}",
    nc: str = "00000001",
    cnonce: str = "0a4f113b",
    realm: str | None = None,
) -> str:
    """What a phone computes from a challenge, written out with hashlib."""
    algorithm = param(challenge, "algorithm")
    nonce = param(challenge, "nonce")
    realm = realm or param(challenge, "realm")
    h = sha256 if algorithm == "SHA-256" else md5
    ha1 = h(f"{user}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm}, cnonce="{cnonce}", qop=auth, nc={nc}'
    )


class AuthenticatorTestCase(SynchronousTestCase):
    algorithms: tuple[str, ...] = ("MD5",)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = ConfigExtensionStore(EXTENSIONS)
        self.portal = Portal(ExtensionRealm(self.store), [ExtensionChecker(self.store)])
        self.bans = BanList(self.clock, max_failed_attempts=3, failure_window=60, ban_duration=300)
        self.auth = SIPAuthenticator(
            self.portal,
            NonceSource(SECRET, lifetime=30),
            self.bans,
            self.clock,
            REALM,
            self.algorithms,
        )

    def run_auth(self, req: Request, *, proxy: bool = False) -> AuthResult:
        # an AuthResult when decided at once, else a Deferred firing with one
        result = self.auth.authenticate(req, SOURCE, proxy=proxy)
        if isinstance(result, AuthResult):
            return result
        return self.successResultOf(result)

    def challenge_header(self, req: Request | None = None, **kw) -> str:
        result = self.run_auth(req or request(), **kw)
        self.assertEqual(result.response.status, 401)
        return result.response.getall("WWW-Authenticate")[0]

    def failures(self) -> int:
        window = self.bans._failures.get(SOURCE[0])
        return len(window) if window else 0


class RegisterTests(AuthenticatorTestCase):
    def test_no_credentials_get_a_challenge_and_are_not_failures(self) -> None:
        for _ in range(10):
            result = self.run_auth(request())
            self.assertIsNone(result.extension)
            self.assertEqual(result.response.status, 401)
        values = result.response.getall("WWW-Authenticate")
        self.assertEqual(len(values), 1)
        self.assertRegex(
            values[0], r'^Digest realm="pbxd.local", nonce="[\w-]+", algorithm=MD5, qop="auth"$'
        )
        self.assertIsNotNone(result.response.to.tag)
        self.assertFalse(self.bans.is_banned(SOURCE[0]))
        self.assertEqual(self.failures(), 0)

    def test_full_register_round_trip(self) -> None:
        challenge = self.challenge_header()
        result = self.run_auth(request(auth=answer(challenge, "1000", "secret1000")))
        self.assertIsNone(result.response)
        self.assertEqual(result.extension.number, "1000")

    def test_ha1_only_extension_authenticates(self) -> None:
        challenge = self.challenge_header(request(user="1001"))
        result = self.run_auth(request(user="1001", auth=answer(challenge, "1001", "pw1001")))
        self.assertEqual(result.extension.number, "1001")

    def test_wrong_password_is_rechallenged_and_counted_until_ban(self) -> None:
        for i in range(3):
            challenge = self.challenge_header()
            result = self.run_auth(request(auth=answer(challenge, "1000", "guess")))
            self.assertEqual(result.response.status, 401)
            self.assertNotIn("stale", result.response.get("WWW-Authenticate"))
            self.assertEqual(self.bans.is_banned(SOURCE[0]), i == 2)

    def test_stale_nonce_with_right_password_gets_stale_challenge(self) -> None:
        challenge = self.challenge_header()
        self.clock.advance(31)
        result = self.run_auth(request(auth=answer(challenge, "1000", "secret1000")))
        self.assertEqual(result.response.status, 401)
        fresh = result.response.get("WWW-Authenticate")
        self.assertIn("stale=true", fresh)
        self.assertNotEqual(param(fresh, "nonce"), param(challenge, "nonce"))
        self.assertEqual(self.failures(), 0)
        ok = self.run_auth(request(auth=answer(fresh, "1000", "secret1000")))
        self.assertEqual(ok.extension.number, "1000")

    def test_stale_nonce_with_wrong_password_is_a_plain_failure(self) -> None:
        challenge = self.challenge_header()
        self.clock.advance(31)
        result = self.run_auth(request(auth=answer(challenge, "1000", "guess")))
        self.assertNotIn("stale", result.response.get("WWW-Authenticate"))
        self.assertEqual(self.failures(), 1)

    def test_forged_nonce_never_authenticates(self) -> None:
        forged = (
            'Digest realm="pbxd.local", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", algorithm=MD5'
        )
        result = self.run_auth(request(auth=answer(forged, "1000", "secret1000")))
        self.assertIsNone(result.extension)
        self.assertIn("stale=true", result.response.get("WWW-Authenticate"))

    def test_replayed_nonce_count_is_rejected(self) -> None:
        challenge = self.challenge_header()
        first = request(auth=answer(challenge, "1000", "secret1000"))
        self.assertIsNotNone(self.run_auth(first).extension)
        replay = self.run_auth(request(auth=answer(challenge, "1000", "secret1000")))
        self.assertIsNone(replay.extension)
        self.assertEqual(replay.response.status, 401)
        nc2 = self.run_auth(request(auth=answer(challenge, "1000", "secret1000", nc="00000002")))
        self.assertEqual(nc2.extension.number, "1000")

    def test_auth_user_other_than_registered_extension_is_forbidden(self) -> None:
        challenge = self.challenge_header()
        req = request(user="1000", auth=answer(challenge, "1001", "pw1001"))
        result = self.run_auth(req)
        self.assertEqual(result.response.status, 403)
        self.assertEqual(result.response.getall("WWW-Authenticate"), [])
        self.assertEqual(self.failures(), 1)

    def test_unknown_and_known_extension_get_identical_answers(self) -> None:
        def attempt(user: str) -> bytes:
            challenge = self.challenge_header(request(user=user))
            resp = self.run_auth(request(user=user, auth=answer(challenge, user, "guess"))).response
            text = resp.serialize().decode()
            text = re.sub(r'nonce="[^"]+"', 'nonce="N"', text)
            return text.replace(user, "USER").encode()

        self.assertEqual(attempt("1000"), attempt("9999"))
        self.assertIn(b"401", attempt("9999").split(b"\r\n")[0])

    def test_digest_uri_must_match_request_uri(self) -> None:
        challenge = self.challenge_header()
        auth = answer(challenge, "1000", "secret1000", uri="sip:evil.example")
        result = self.run_auth(request(auth=auth))
        self.assertEqual(result.response.status, 401)
        self.assertEqual(self.failures(), 1)

    def test_credentials_for_another_realm_are_ignored(self) -> None:
        challenge = self.challenge_header()
        auth = answer(challenge, "1000", "secret1000", realm="other.example")
        result = self.run_auth(request(auth=auth))
        self.assertEqual(result.response.status, 401)
        self.assertEqual(self.failures(), 0)

    def test_algorithm_not_offered_is_rechallenged(self) -> None:
        challenge = self.challenge_header().replace("MD5", "SHA-256")
        result = self.run_auth(request(auth=answer(challenge, "1000", "secret1000")))
        self.assertEqual(result.response.status, 401)
        self.assertEqual(self.failures(), 0)

    def test_malformed_credentials_are_rechallenged(self) -> None:
        result = self.run_auth(request(auth='Digest username="1000", realm="pbxd.local'))
        self.assertEqual(result.response.status, 401)

    def test_store_failure_gives_500(self) -> None:
        self.store.getExtension = lambda number: fail(RuntimeError("db down"))
        challenge = self.challenge_header()
        result = self.run_auth(request(auth=answer(challenge, "1000", "secret1000")))
        self.assertEqual(result.response.status, 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class InviteTests(AuthenticatorTestCase):
    def test_proxy_challenge_and_from_user_binding(self) -> None:
        result = self.run_auth(request("INVITE", "1000", to_user="1001"), proxy=True)
        self.assertEqual(result.response.status, 407)
        self.assertEqual(result.response.getall("WWW-Authenticate"), [])
        challenge = result.response.get("Proxy-Authenticate")
        uri = f"sip:1001@{REALM}"
        auth = answer(challenge, "1000", "secret1000", method="INVITE", uri=uri)
        req = request("INVITE", "1000", to_user="1001", auth=auth, header="Proxy-Authorization")
        ok = self.run_auth(req, proxy=True)
        self.assertEqual(ok.extension.number, "1000")

    def test_invite_authenticated_as_someone_else_is_forbidden(self) -> None:
        result = self.run_auth(request("INVITE", "1000", to_user="1001"))
        uri = f"sip:1001@{REALM}"
        auth = answer(result.response.get("WWW-Authenticate"), "1001", "pw1001", "INVITE", uri)
        forbidden = self.run_auth(request("INVITE", "1000", to_user="1001", auth=auth))
        self.assertEqual(forbidden.response.status, 403)


class TwoAlgorithmTests(AuthenticatorTestCase):
    algorithms = ("SHA-256", "MD5")

    def test_one_challenge_per_algorithm_in_config_order(self) -> None:
        result = self.run_auth(request())
        values = result.response.getall("WWW-Authenticate")
        self.assertEqual([param(v, "algorithm") for v in values], ["SHA-256", "MD5"])
        self.assertEqual(len({param(v, "nonce") for v in values}), 1)

    def test_sha256_and_md5_answers_both_accepted(self) -> None:
        sha, md = self.run_auth(request(user="1001")).response.getall("WWW-Authenticate")
        r1 = self.run_auth(request(user="1001", auth=answer(sha, "1001", "pw1001")))
        self.assertEqual(r1.extension.number, "1001")
        r2 = self.run_auth(request(user="1001", auth=answer(md, "1001", "pw1001", nc="00000002")))
        self.assertEqual(r2.extension.number, "1001")

    def test_md5_only_secret_cannot_answer_sha256(self) -> None:
        sha = self.run_auth(request(user="1002")).response.getall("WWW-Authenticate")[0]
        result = self.run_auth(request(user="1002", auth=answer(sha, "1002", "pw1002")))
        self.assertEqual(result.response.status, 401)


# ---------------------------------------------------------- unit pieces


def rfc2617_credentials(response: str = "6629fae49393a05397450978507c4ef1"):
    return SIPDigestCredentials(
        "Mufasa", "testrealm@host.com", "GET", "/dir/index.html",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b", "auth", "MD5", response,
    )  # fmt: skip


def test_credentials_check_rfc2617_vector() -> None:
    creds = rfc2617_credentials()
    verifyObject(ISIPDigestCredentials, creds)
    assert creds.checkHA1(md5("Mufasa:testrealm@host.com:Circle Of Life"))
    assert not creds.checkHA1(md5("Mufasa:testrealm@host.com:circle of life"))
    assert not rfc2617_credentials("6629FAE4" + "0" * 24).checkHA1(
        md5("Mufasa:testrealm@host.com:Circle Of Life")
    )


def checker_credentials(user: str, password: str, algorithm: str = "MD5") -> CountingCredentials:
    """Credentials answering nonce ``n`` for ``user``/``password``, counting their checks."""
    h = sha256 if algorithm.startswith("SHA") else md5
    ha1 = h(f"{user}:{REALM}:{password}")
    if algorithm.endswith("-sess"):
        ha1 = h(f"{ha1}:n:c")
    resp = h(f"{ha1}:n:00000001:c:auth:{h('REGISTER:sip:pbxd.local')}")
    return CountingCredentials(
        user, REALM, "REGISTER", "sip:pbxd.local", "n", "00000001", "c", "auth", algorithm, resp
    )


class CheckerTests(SynchronousTestCase):
    def credentials(self, user: str, password: str, algorithm: str = "MD5"):
        return checker_credentials(user, password, algorithm)

    def test_known_user_right_password(self) -> None:
        checker = ExtensionChecker(ConfigExtensionStore(EXTENSIONS))
        d = checker.requestAvatarId(self.credentials("1000", "secret1000"))
        self.assertEqual(self.successResultOf(d), "1000")

    def test_sess_variant_against_stored_ha1(self) -> None:
        checker = ExtensionChecker(ConfigExtensionStore(EXTENSIONS))
        for algorithm in ("MD5-sess", "SHA-256-sess"):
            d = checker.requestAvatarId(self.credentials("1001", "pw1001", algorithm))
            self.assertEqual(self.successResultOf(d), "1001")

    def test_unknown_and_wrong_fail_alike_after_the_same_work(self) -> None:
        checker = ExtensionChecker(ConfigExtensionStore(EXTENSIONS))
        wrong, unknown = self.credentials("1000", "x"), self.credentials("4242", "x")
        self.failureResultOf(checker.requestAvatarId(wrong), UnauthorizedLogin)
        self.failureResultOf(checker.requestAvatarId(unknown), UnauthorizedLogin)
        self.assertEqual((wrong.checks, unknown.checks), (1, 1))


class CountingCredentials(SIPDigestCredentials):
    checks = 0

    def checkHA1(self, ha1: str) -> bool:
        self.checks += 1
        return super().checkHA1(ha1)


def test_auth_result_holds_exactly_one() -> None:
    with pytest.raises(ValueError):
        AuthResult()
    with pytest.raises(ValueError):
        AuthResult(extension=object(), response=object())


class CheckerHA1CacheTests(SynchronousTestCase):
    """The checker remembers the HA1 of a plaintext password, never a stale one."""

    def test_a_changed_password_is_checked_afresh(self) -> None:
        store = ConfigExtensionStore({"1000": Extension("1000", password="old")})
        checker = ExtensionChecker(store)
        old = checker_credentials("1000", "old")
        self.assertEqual(self.successResultOf(checker.requestAvatarId(old)), "1000")
        store.replace({"1000": Extension("1000", password="new")})
        again = checker_credentials("1000", "old")
        self.failureResultOf(checker.requestAvatarId(again), UnauthorizedLogin)
        new = checker_credentials("1000", "new")
        self.assertEqual(self.successResultOf(checker.requestAvatarId(new)), "1000")

    def test_the_table_stays_bounded(self) -> None:
        import pbxd.auth.checker as checker_module

        self.patch(checker_module, "_HA1_CACHE_SIZE", 3)
        store = ConfigExtensionStore(
            {str(n): Extension(str(n), password=f"pw{n}") for n in range(2000, 2010)}
        )
        checker = ExtensionChecker(store)
        for n in range(2000, 2010):
            d = checker.requestAvatarId(checker_credentials(str(n), f"pw{n}"))
            self.assertEqual(self.successResultOf(d), str(n))
            self.assertLessEqual(len(checker._ha1s), 3)

    def test_unknown_users_share_one_dummy_ha1(self) -> None:
        checker = ExtensionChecker(ConfigExtensionStore(EXTENSIONS))
        for user in ("4242", "4243", "4244"):
            unknown = CountingCredentials(*self._args(user))
            self.failureResultOf(checker.requestAvatarId(unknown), UnauthorizedLogin)
            self.assertEqual(unknown.checks, 1)  # checked against the dummy, as a known one
        self.assertEqual(len(checker._ha1s), 1)

    @staticmethod
    def _args(user: str) -> tuple[str, ...]:
        return (user, REALM, "REGISTER", "sip:pbxd.local", "n", "00000001", "c", "auth", "MD5",
                "0" * 32)
