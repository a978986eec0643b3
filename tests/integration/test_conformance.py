"""RFC 4475 (SIP torture tests) and RFC 5118 (IPv6 torture tests) against the live server.

Every message of both corpora is sent to a real pbxd over UDP and over TCP,
and the first answer is checked against what the RFC says a conforming
element does with it (the ``EXPECTED`` table): a status code, or ``None`` for
"never answered" (responses, and input no response can be formed for).

What the RFCs leave to the element, and what pbxd picks:

- the server authenticates before it looks deeper, so valid REGISTERs are
  answered ``401`` and valid INVITEs ``407`` (the RFC's "process normally": an
  unauthenticated request is challenged, as Asterisk does);
- §3.3.6 ``invut`` (unknown Content-Type, RFC: 415) and §3.3.15 ``sdp01``
  (unacceptable Accept, RFC: 406) get ``407`` first: the body is only looked at
  once the caller is authenticated; 415/406 are the calls layer's answer then;
- §3.1.2.8-10 ``lwsruri``, ``lwsstart``, ``trws`` are in the RFC's *invalid*
  group (3.1.2) and are answered ``400``, which the RFC allows;
- §3.3.2 ``novelsc`` (a soap.beep: Request-URI) and ``unkscm`` get ``416``.

The sent-by of the top Via is rewritten to the test's own socket (the
messages name hosts such as 192.0.2.2) so UDP responses come back here; no
other byte changes. Over TCP, RFC 3261 §18.3 makes Content-Length mandatory:
messages without a usable one close the connection unanswered
(``TCP_EXPECTED``). Files come from ``../shared/testdata`` (skipped if absent).
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import testdata_dir

from .harness import PbxServer, status_of

NONE = None
EXPECTED: dict[str, dict[str, int | None]] = {
    "rfc4475": {
        # 3.1.1 valid
        "wsinv": 407, "intmeth": 501, "esc01": 407, "escnull": 401, "esc02": 501,
        "lwsdisp": 200, "longreq": 407, "dblreq": 401, "semiuri": 200, "transports": 200,
        "mpart01": 405, "unreason": NONE, "noreason": NONE,
        # 3.1.2 invalid
        "badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "scalarlg": NONE,
        "quotbal": 400, "ltgtruri": 400, "lwsruri": 400, "lwsstart": 400, "trws": 400,
        "escruri": 407, "baddate": 407, "regbadct": 400, "badaspec": 400, "baddn": 400,
        "badvers": 505, "mismatch01": 400, "mismatch02": 400, "bigcode": NONE,
        # 3.2 transaction layer
        "badbranch": 200,
        # 3.3 application layer
        "insuf": 400, "unkscm": 416, "novelsc": 416, "unksm2": 400, "bext01": 420,
        "invut": 407, "regaut01": 401, "multi01": 400, "mcl01": 400, "bcast": NONE,
        "zeromf": 483, "cparam01": 401, "cparam02": 401, "regescrt": 401, "sdp01": 407,
        # 3.4 backward compatibility
        "inv2543": 407,
        # test.dat: a line without a colon and no Via: dropped
        "test": NONE,
    },
    "rfc5118": {
        "ipv6-good": 401, "ipv6-bad": 400, "port-ambiguous": 401, "port-unambiguous": 401,
        "via-received-param-with-delim": 481, "via-received-param-no-delim": 200,
        "ipv6-in-sdp": 407, "mult-ip-in-header": 481, "mult-ip-in-sdp": 407,
        "ipv4-mapped-ipv6": 407, "ipv6-correct-abnf-2-colons": 200, "ipv6-bug-abnf-3-colons": 200,
    },
}
#: over TCP, where it differs: no usable Content-Length closes the connection (RFC 3261 §18.3)
TCP_EXPECTED: dict[str, int | None] = {
    "baddn": NONE,    # no empty line ends the header section: incomplete, closed after incomplete_timeout
    "clerr": NONE,    # Content-Length beyond the bytes sent: waits for the rest (incomplete_timeout)
    "ncl": NONE,      # negative Content-Length: framing lost, connection closed
    "mcl01": NONE,    # conflicting Content-Lengths: framing lost, connection closed
    "inv2543": NONE,  # no Content-Length on a stream: connection closed
}

_VIA = re.compile(rb"(?im)^((?:via|v)\s*:\s*SIP\s*/\s*\d\.\d\s*/\s*)(\w+)(\s+)([^;,\s]+)")
WAIT = 0.6  # seconds to wait for "no answer"


def _corpus() -> list[tuple[str, str]]:
    return [(folder, name) for folder, table in EXPECTED.items() for name in sorted(table)]


def _retarget(data: bytes, port: int, transport: bytes) -> bytes:
    return _VIA.sub(lambda m: m.group(1) + transport + m.group(3) + b"127.0.0.1:%d" % port,
                    data, count=1)


def _udp_first_answer(server_port: int, data: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(WAIT)
        sock.sendto(_retarget(data, sock.getsockname()[1], b"UDP"), ("127.0.0.1", server_port))
        try:
            return sock.recv(65536)
        except TimeoutError:
            return None


def _tcp_first_answer(server_port: int, data: bytes) -> bytes | None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=WAIT) as sock:
        sock.sendall(_retarget(data, sock.getsockname()[1], b"TCP"))
        try:
            return sock.recv(65536) or None
        except (TimeoutError, ConnectionResetError):
            return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if testdata_dir() is None:
        pytest.skip("../shared/testdata (RFC 4475/5118 corpus) is absent")
    srv = PbxServer(tmp_path_factory.mktemp("conformance"), transports=("udp", "tcp"), admin=False,
                    overrides={"security": {"rate_limit": {"requests": 0}},
                               "limits": {"max_transactions_per_source": 100000}})
    srv.start()
    yield srv
    srv.close()


def _data(folder: str, name: str) -> bytes:
    root = testdata_dir()
    assert root is not None
    return Path(root, folder, f"{name}.sip").read_bytes()


def test_table_covers_both_corpora() -> None:
    root = testdata_dir()
    if root is None:
        pytest.skip("../shared/testdata is absent")
    for folder, table in EXPECTED.items():
        assert {p.stem for p in Path(root, folder).glob("*.sip")} == set(table)


@pytest.mark.parametrize(("folder", "name"), _corpus())
def test_udp(server: PbxServer, folder: str, name: str) -> None:
    answer = _udp_first_answer(server.udp_port, _data(folder, name))
    assert status_of(answer) == EXPECTED[folder][name], answer


@pytest.mark.parametrize(("folder", "name"), _corpus())
def test_tcp(server: PbxServer, folder: str, name: str) -> None:
    expected = TCP_EXPECTED.get(name, EXPECTED[folder][name])
    answer = _tcp_first_answer(server.tcp_port, _data(folder, name))
    assert status_of(answer) == expected, answer


def test_server_is_healthy_afterwards(server: PbxServer) -> None:
    time.sleep(0.2)
    assert server.running
    assert "Traceback" not in server.log_text()
