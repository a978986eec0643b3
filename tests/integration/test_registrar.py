"""The registrar, digest authentication and bans against the real server (issue 3, "Must show").

- 500 extensions (2000-2499) register with MD5 digest from SIPp, re-register (same Call-ID,
  higher CSeq) and unregister, with no failure; the SQLite location table follows each phase.
- A Python client registers with SHA-256 (RFC 8760) when ``digest_algorithms`` is
  ``[SHA-256, MD5]``; the 401 offers SHA-256 first and MD5 second, with one nonce.
- A REGISTER without Contact lists the bindings, before and after a server restart.
- One baresip registers three accounts over UDP, TCP and TLS (trusting the server's automatic
  certificate); the three bindings are listed.
- ``max_failed_attempts`` wrong passwords from 127.0.0.1 ban it (no answer at all) while
  127.0.0.2 is served; after ``ban_duration`` 127.0.0.1 is served again.
- Enumeration: without credentials and with wrong ones, an existing and a non-existing
  extension get the same answers apart from tags and nonces.

The raw SIP client here (:class:`SipUdpClient`) computes digests with :mod:`hashlib` only, so
it checks the server's digest code rather than sharing it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import sqlite3
import time
import uuid

from .harness import EXTENSIONS, PbxServer, options_request, status_of
from .ports import free_port
from .sipp import run_sipp, write_inf

REALM = "pbxd.local"
HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


# -- a raw SIP client over UDP ---------------------------------------------------------


def headers_of(message: bytes, name: str) -> list[str]:
    """Every value of header ``name`` (one per header line; no comma splitting)."""
    head = message.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    return [
        value.strip()
        for key, _, value in (line.partition(":") for line in head.split("\r\n")[1:])
        if key.strip().lower() == name.lower()
    ]


def contact_uris(message: bytes) -> list[str]:
    """The URIs of the Contact header values of a response (comma-separated or repeated)."""
    return [m for v in headers_of(message, "Contact") for m in re.findall(r"<([^>]*)>", v)]


def digest_params(challenge: str) -> dict[str, str]:
    """``Digest realm="x", nonce="y", algorithm=MD5`` -> {'realm': 'x', ...}."""
    assert challenge.startswith("Digest "), challenge
    return {
        k.lower(): v1 if v1 else v2
        for k, v1, v2 in re.findall(r'(\w[\w-]*)=(?:"([^"]*)"|([^\s,]+))', challenge[7:])
    }


def digest_response(
    algorithm: str, user: str, password: str, method: str, uri: str, nonce: str, nc: str, cnonce: str
) -> str:
    """RFC 8760 / RFC 7616 request-digest with qop=auth, computed with hashlib only."""
    h = HASHES[algorithm]

    def hx(text: str) -> str:
        return h(text.encode()).hexdigest()

    ha1 = hx(f"{user}:{REALM}:{password}")
    ha2 = hx(f"{method}:{uri}")
    return hx(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


class SipUdpClient:
    """A phone over UDP, bound to ``local_ip`` (so a test chooses its source address)."""

    def __init__(self, server_port: int, local_ip: str = "127.0.0.1", timeout: float = 5.0):
        self.server = ("127.0.0.1", server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_ip, 0))
        self.local_ip, self.local_port = self.sock.getsockname()
        self.timeout = timeout
        self.call_id = uuid.uuid4().hex
        self.from_tag = uuid.uuid4().hex[:8]
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SipUdpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def request_uri(self) -> str:
        return f"sip:{self.server[0]}:{self.server[1]}"

    def register_request(
        self,
        user: str,
        *,
        contact: str | None = "default",
        expires: int | None = 300,
        authorization: str | None = None,
    ) -> bytes:
        self.cseq += 1
        lines = [
            f"REGISTER {self.request_uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local_ip}:{self.local_port};"
            f"branch=z9hG4bK{uuid.uuid4().hex[:16]};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@127.0.0.1>;tag={self.from_tag}",
            f"To: <sip:{user}@127.0.0.1>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
        ]
        if contact == "default":
            contact = f"sip:{user}@{self.local_ip}:{self.local_port}"
        if contact is not None:
            lines.append(f"Contact: <{contact}>")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        lines += ["User-Agent: pbxd-test-client", "Content-Length: 0"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def exchange(self, data: bytes, timeout: float | None = None) -> bytes | None:
        """Send ``data``; the final response to it (1xx skipped), or None on timeout."""
        self.sock.sendto(data, self.server)
        end = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                reply = self.sock.recv(65536)
            except TimeoutError:
                return None
            status = status_of(reply)
            if status is not None and status >= 200:
                return reply

    def authorization(
        self, challenge_response: bytes, user: str, password: str, algorithm: str = "MD5"
    ) -> str:
        """Credentials answering the challenge for ``algorithm`` in a 401."""
        offers = [digest_params(v) for v in headers_of(challenge_response, "WWW-Authenticate")]
        offer = next(o for o in offers if o.get("algorithm", "MD5").upper() == algorithm.upper())
        cnonce = uuid.uuid4().hex[:16]
        uri = self.request_uri
        response = digest_response(
            algorithm, user, password, "REGISTER", uri, offer["nonce"], "00000001", cnonce
        )
        return (
            f'Digest username="{user}", realm="{offer["realm"]}", nonce="{offer["nonce"]}", '
            f'uri="{uri}", response="{response}", algorithm={algorithm}, qop=auth, '
            f'nc=00000001, cnonce="{cnonce}"'
        )

    def register(
        self, user: str, password: str, *, algorithm: str = "MD5", **kwargs
    ) -> tuple[bytes, bytes | None]:
        """REGISTER, answer the 401: ``(the 401, the final answer to the credentials)``."""
        challenge = self.exchange(self.register_request(user, **kwargs))
        assert status_of(challenge) == 401, challenge
        auth = self.authorization(challenge, user, password, algorithm)
        return challenge, self.exchange(self.register_request(user, authorization=auth, **kwargs))

    def options(self, timeout: float = 0.5) -> bytes | None:
        self.cseq += 1
        return self.exchange(
            options_request(self.server[1], local_port=self.local_port, cseq=self.cseq), timeout
        )


# -- helpers ------------------------------------------------------------------------------


def stored_bindings(server: PbxServer, columns: str = "aor, contact, transport") -> list[tuple]:
    """Rows of the SQLite location table (opened read-only), ordered by AOR and contact."""
    path = server.state_dir / "pbxd.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(
            f"SELECT {columns} FROM location_bindings ORDER BY aor, contact"
        ).fetchall()
    finally:
        db.close()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)


# -- 500 extensions with SIPp -------------------------------------------------------------

FIRST, COUNT = 2000, 500


def test_500_extensions_register_reregister_unregister_with_sipp(pbx_factory, tmp_path):
    numbers = [str(n) for n in range(FIRST, FIRST + COUNT)]
    server = pbx_factory(
        overrides={
            "extensions": {n: {"password": f"secret-{n}"} for n in numbers},
            # One SIPp socket stands for 500 phones: lift the per-address flood limit and the
            # per-address cap on live transactions (answered UDP transactions stay live for
            # Timer J, 32 s, so the default 1000 allows ~31 requests/s from one address).
            "security": {"rate_limit": {"requests": 0}},
            "limits": {"max_transactions_per_source": 100_000},
        },
        transports=("udp",),
        admin=False,
    )
    users = write_inf(
        tmp_path / "users.csv",
        [[n, f"[authentication username={n} password=secret-{n}]"] for n in numbers],
    )
    sipp_port = free_port()
    phases = [("register", 300, 1), ("re-register", 600, 3), ("unregister", 0, 5)]
    for name, expires, cseq in phases:
        result = run_sipp(
            "register_phase.xml",
            f"127.0.0.1:{server.udp_port}",
            tmp_path / f"sipp-{name}",
            calls=COUNT,
            rate=200,
            limit=100,
            inf=users,
            local_port=sipp_port,  # the same Contact in every phase
            keys={"expires": str(expires), "first_cseq": str(cseq), "auth_cseq": str(cseq + 1)},
            extra=["-cid_str", "%u-phase@%s"],  # the same Call-ID per phone in every phase
            timeout=30,
        )
        assert result.returncode == 0, f"{name}: {result.explain()}"
        assert (result.successful, result.failed) == (COUNT, 0), f"{name}: {result.explain()}"
        rows = stored_bindings(server, "aor, contact, call_id, cseq, expires_at")
        if expires:
            assert len(rows) == COUNT, f"{name}: {len(rows)} bindings stored"
            assert sorted(r[0] for r in rows) == numbers
            assert all(f"@127.0.0.1:{sipp_port}" in r[1] for r in rows), rows[:3]
            # one binding per phone, updated in place: same Call-ID, the authenticated CSeq
            assert {r[2] for r in rows} == {f"{i}-phase@127.0.0.1" for i in range(1, COUNT + 1)}
            assert {r[3] for r in rows} == {cseq + 1}, rows[:3]
            left = min(r[4] for r in rows) - time.time()
            assert expires - 60 < left <= expires, (name, left)
        else:
            assert rows == [], f"{name}: {len(rows)} bindings left, e.g. {rows[:3]}"
    assert "Out of order" not in server.log_text()


# -- SHA-256, queries, restart -------------------------------------------------------------


def test_sha256_registration_when_offered_first(pbx_factory):
    server = pbx_factory(
        overrides={"security": {"digest_algorithms": ["SHA-256", "MD5"]}},
        transports=("udp",),
        admin=False,
    )
    with SipUdpClient(server.udp_port) as phone:
        challenge, answer = phone.register("1000", EXTENSIONS["1000"], algorithm="SHA-256")
        offers = [digest_params(v) for v in headers_of(challenge, "WWW-Authenticate")]
        assert [o.get("algorithm") for o in offers] == ["SHA-256", "MD5"], challenge
        assert len({o["nonce"] for o in offers}) == 1, "one nonce for both challenges"
        assert all(o["realm"] == REALM and o.get("qop") == "auth" for o in offers), offers
        assert status_of(answer) == 200, answer
        assert contact_uris(answer) == [f"sip:1000@127.0.0.1:{phone.local_port}"], answer

        # MD5 is still accepted from a phone that only knows MD5
        with SipUdpClient(server.udp_port) as old_phone:
            _, answer = old_phone.register("1001", EXTENSIONS["1001"], algorithm="MD5")
            assert status_of(answer) == 200, answer

        # a query (no Contact) lists the binding, without changing it
        _, listed = phone.register("1000", EXTENSIONS["1000"], algorithm="SHA-256", contact=None,
                                   expires=None)
        assert status_of(listed) == 200, listed
        assert contact_uris(listed) == [f"sip:1000@127.0.0.1:{phone.local_port}"], listed
        expires = int(re.search(r"expires=(\d+)", headers_of(listed, "Contact")[0]).group(1))
        assert 290 <= expires <= 300, listed


def test_register_query_lists_bindings_after_restart(pbx_factory):
    server = pbx_factory(transports=("udp",), admin=False)
    with SipUdpClient(server.udp_port) as a, SipUdpClient(server.udp_port) as b:
        for phone in (a, b):
            _, answer = phone.register("1002", EXTENSIONS["1002"], expires=1800)
            assert status_of(answer) == 200, answer
        expected = sorted(f"sip:1002@127.0.0.1:{p.local_port}" for p in (a, b))
        _, listed = a.register("1002", EXTENSIONS["1002"], contact=None, expires=None)
        assert sorted(contact_uris(listed)) == expected, listed

    server.restart()
    with SipUdpClient(server.udp_port) as c:
        _, listed = c.register("1002", EXTENSIONS["1002"], contact=None, expires=None)
        assert status_of(listed) == 200, listed
        assert sorted(contact_uris(listed)) == expected, (listed, server.log_text()[-3000:])
        for value in headers_of(listed, "Contact"):
            assert 1700 <= int(re.search(r"expires=(\d+)", value).group(1)) <= 1800, value


# -- baresip over UDP, TCP and TLS ----------------------------------------------------------


def test_baresip_registers_over_udp_tcp_and_tls(pbx_factory, tmp_path):
    from cryptography import x509

    from .baresip import Baresip

    server = pbx_factory(admin=False)
    cert_path = server.state_dir / "tls" / "pbxd-cert.pem"
    assert cert_path.exists(), sorted(server.state_dir.rglob("*"))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)

    accounts = [
        ("1000", "udp", server.udp_port),
        ("1001", "tcp", server.tcp_port),
        ("1002", "tls", server.tls_port),
    ]

    class ThreeAccounts(Baresip):
        def account_line(self) -> str:
            return "\n".join(
                f"<sip:{user}@127.0.0.1:{port};transport={transport}>;"
                f"auth_pass={EXTENSIONS[user]};regint=600"
                for user, transport, port in accounts
            )

    phone = ThreeAccounts(
        tmp_path / "baresip",
        user="1000",
        password=EXTENSIONS["1000"],
        server=("127.0.0.1", server.udp_port),
        cafile=cert_path,
    )
    phone.start()
    try:
        def registered() -> set[str]:
            text = re.sub(r"\x1b\[[0-9;]*m", "", phone.command("reginfo").get("data", ""))
            return {m for m in re.findall(r"sip:(\d+)@\S*\s+OK\b", text)}

        wait_until(lambda: registered() == {"1000", "1001", "1002"}, 20,
                   f"three accounts registered; {phone.log_text()[-3000:]}")
        rows = stored_bindings(server)
        by_aor = {aor: transport for aor, _, transport in rows}
        assert by_aor == {"1000": "UDP", "1001": "TCP", "1002": "TLS"}, rows

        # and a REGISTER query lists each one
        for user, transport, _ in accounts:
            with SipUdpClient(server.udp_port) as probe:
                _, listed = probe.register(user, EXTENSIONS[user], contact=None, expires=None)
            assert status_of(listed) == 200, listed
            (uri,) = contact_uris(listed)
            params = dict(re.findall(r";([^;=]+)=?([^;]*)", uri.lower()))
            assert params.get("transport", "udp") == transport, uri
    finally:
        phone.stop()


# -- bans ------------------------------------------------------------------------------------

BAN_SECONDS = 3


def test_wrong_passwords_ban_one_address_only_and_the_ban_expires(pbx_factory):
    server = pbx_factory(
        overrides={"security": {"max_failed_attempts": 3, "ban_duration": BAN_SECONDS}},
        transports=("udp",),
        admin=False,
    )
    with SipUdpClient(server.udp_port, "127.0.0.1") as attacker, \
            SipUdpClient(server.udp_port, "127.0.0.2") as neighbour:
        for attempt in range(3):
            _, answer = attacker.register("1000", "wrong-password")
            # alwaysauthreject: a wrong password gets a fresh challenge, never a 403
            assert status_of(answer) == 401, (attempt, answer)
        banned_at = time.monotonic()
        # everything from 127.0.0.1 is now dropped, even OPTIONS and a right password
        assert attacker.options(timeout=0.5) is None
        assert attacker.exchange(attacker.register_request("1000"), timeout=0.5) is None
        # 127.0.0.2 is served
        assert status_of(neighbour.options(timeout=2)) == 200
        _, answer = neighbour.register("1001", EXTENSIONS["1001"])
        assert status_of(answer) == 200, answer
        # after ban_duration 127.0.0.1 is served again
        wait_until(lambda: attacker.options(timeout=0.3) is not None, BAN_SECONDS + 10,
                   "127.0.0.1 served again after the ban")
        waited = time.monotonic() - banned_at
        assert waited >= BAN_SECONDS - 0.5, f"ban lifted after {waited:.1f}s"
        _, answer = attacker.register("1000", EXTENSIONS["1000"])
        assert status_of(answer) == 200, answer
    log = server.log_text()
    assert "banned 127.0.0.1" in log and "banned 127.0.0.2" not in log, log[-3000:]


# -- enumeration -----------------------------------------------------------------------------


def normalised(response: bytes, user: str) -> list[str]:
    """A response's status line and headers with the per-request values blanked: tags,
    nonces, Via branch/rport, Call-ID, CSeq number and the user name."""
    assert response is not None
    head = response.split(b"\r\n\r\n", 1)[0].decode()
    out = []
    for line in head.split("\r\n"):
        line = re.sub(r"tag=[^;>\s,]+", "tag=*", line)
        line = re.sub(r'nonce="[^"]*"', 'nonce="*"', line)
        line = re.sub(r"branch=[^;\s,]+", "branch=*", line)
        line = re.sub(r"rport=\d+", "rport=*", line)
        line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:*", line)
        line = re.sub(r"^(Call-ID:).*", r"\1 *", line, flags=re.I)
        line = re.sub(r"^(CSeq:) \d+", r"\1 *", line, flags=re.I)
        line = line.replace(f"sip:{user}@", "sip:USER@")
        out.append(line)
    return out


def test_unknown_and_known_extensions_get_the_same_answers(pbx_factory):
    server = pbx_factory(transports=("udp",), admin=False)
    answers = {}
    for user in ("1000", "1999"):  # 1999 does not exist
        with SipUdpClient(server.udp_port) as phone:
            bare = phone.exchange(phone.register_request(user))
            auth = phone.authorization(bare, user, "wrong-password")
            wrong = phone.exchange(phone.register_request(user, authorization=auth))
            answers[user] = (normalised(bare, user), normalised(wrong, user))
    assert answers["1000"][0] == answers["1999"][0]
    assert answers["1000"][1] == answers["1999"][1]
    assert answers["1000"][0][0].startswith("SIP/2.0 401"), answers
    assert answers["1000"][1][0].startswith("SIP/2.0 401"), answers
    assert any(line.startswith("WWW-Authenticate:") for line in answers["1999"][1])
