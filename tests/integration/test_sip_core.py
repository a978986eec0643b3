"""The SIP core against the real server (issue 2, "Must show").

OPTIONS over UDP, TCP and TLS; two requests on one TCP connection answered on
it; a malformed datagram answered with 400 without hurting the server; the
twistd plugin's --help; configuration errors that stop startup with one clear
line; the shipped etc/config.yml starts.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time

import pytest
import yaml

from .harness import (
    EXTENSIONS,
    REPO_ROOT,
    PbxServer,
    StreamClient,
    header_of,
    options_request,
    status_of,
    twistd_command,
    udp_exchange,
)
from .sipp import run_sipp, users_inf


@pytest.mark.needs_sipp
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_options_answered_sipp(pbx, tmp_path, transport):
    result = run_sipp(
        "options.xml",
        f"127.0.0.1:{pbx.udp_port}",
        tmp_path / "sipp",
        transport=transport,
        calls=5,
        rate=50,
        timeout=10,
    )
    assert result.returncode == 0 and result.successful == 5, result.explain()
    assert "SIP/2.0 200" in result.messages


def test_options_answered_over_tls(pbx):
    # Debian's SIPp is built without OpenSSL, so TLS is driven from Python's ssl module.
    with StreamClient(pbx.tls_port, tls=True) as client:
        client.send(options_request(pbx.tls_port, "tls", local_port=client.local_port))
        reply = client.read_message()
    assert status_of(reply) == 200, reply


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_two_requests_on_one_connection(pbx, tls):
    port = pbx.tls_port if tls else pbx.tcp_port
    transport = "tls" if tls else "tcp"
    with StreamClient(port, tls=tls) as client:
        first = options_request(port, transport, local_port=client.local_port, cseq=1)
        client.send(first)
        reply1 = client.read_message()
        second = options_request(port, transport, local_port=client.local_port, cseq=2)
        third = options_request(port, transport, local_port=client.local_port, cseq=3)
        client.send(second + third)  # pipelined in one segment: framing by Content-Length
        reply2 = client.read_message()
        reply3 = client.read_message()
    assert [status_of(r) for r in (reply1, reply2, reply3)] == [200, 200, 200]
    assert [header_of(r, "CSeq") for r in (reply1, reply2, reply3)] == [
        "1 OPTIONS",
        "2 OPTIONS",
        "3 OPTIONS",
    ]


MALFORMED = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKmalformed1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:probe@127.0.0.1>;tag=1\r\n"
    b"To: <sip:127.0.0.1>\r\n"
    b"Call-ID: malformed-1\r\n"
    b"CSeq: notanumber OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_malformed_datagram_gets_400_and_server_keeps_answering(pbx):
    reply = udp_exchange(pbx.udp_port, MALFORMED)
    assert status_of(reply) == 400, reply
    # garbage that cannot be answered is dropped silently
    assert udp_exchange(pbx.udp_port, b"\x00\xffnot sip at all\r\n\r\n", timeout=0.5) is None
    assert udp_exchange(pbx.udp_port, b"SIP/2.0 200 OK\r\n\r\n", timeout=0.5) is None
    for _ in range(3):
        assert status_of(udp_exchange(pbx.udp_port, options_request(pbx.udp_port))) == 200
    assert pbx.running


def test_twistd_pbx_help_documents_config():
    result = subprocess.run(
        twistd_command("pbx", "--help"), capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "-c, --config=" in result.stdout, result.stdout


def _start_fails(tmp_path, config: dict) -> tuple[int, str]:
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        twistd_command("--pidfile=", "-n", "pbx", "-c", str(path)),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    return result.returncode, result.stdout + result.stderr


def _base(tmp_path) -> dict:
    server = PbxServer(tmp_path / "cfg", admin=False)
    return server.config


def test_unknown_key_stops_startup_with_one_clear_line(tmp_path):
    config = _base(tmp_path)
    config["sip"]["lisen"] = ["udp:5060"]
    code, output = _start_fails(tmp_path, config)
    assert code != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "sip.lisen" in line]
    assert len(lines) == 1 and "bad.yml" in lines[0], output


def test_bad_port_stops_startup_with_one_clear_line(tmp_path):
    config = _base(tmp_path)
    config["sip"]["listen"] = ["udp:70000:interface=127.0.0.1"]
    code, output = _start_fails(tmp_path, config)
    assert code != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "sip.listen" in line]
    assert len(lines) == 1 and "bad.yml" in lines[0] and "70000" in lines[0], output


def _port_in_use(port: int, kind: int) -> bool:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.bind(("0.0.0.0", port))
    except OSError:
        return True
    finally:
        sock.close()
    return False


def test_default_config_starts(tmp_path):
    """etc/config.yml as shipped (copied, so its state_dir lands in tmp_path)."""
    busy = [
        f"{name} {port}"
        for name, port, kind in (
            ("udp", 5060, socket.SOCK_DGRAM),
            ("tcp", 5060, socket.SOCK_STREAM),
            ("tcp", 5061, socket.SOCK_STREAM),
            ("tcp", 8080, socket.SOCK_STREAM),
        )
        if _port_in_use(port, kind)
    ]
    if busy:
        pytest.skip(f"the default ports are taken on this machine: {', '.join(busy)}")
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(REPO_ROOT / "etc" / "config.yml", etc / "config.yml")
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            twistd_command("--pidfile=", "-n", "pbx", "-c", "etc/config.yml"),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            reply = None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    reply = udp_exchange(5060, options_request(5060), timeout=0.3)
                except OSError:
                    reply = None
                if reply is not None:
                    break
                time.sleep(0.05)
            text = log.read_text(errors="replace")
            if proc.poll() is not None and "Address already in use" in text:
                pytest.skip("a default port was taken while starting")
            assert status_of(reply) == 200, text
            for transport, port in (("UDP", 5060), ("TCP", 5060), ("TLS", 5061)):
                pattern = rf"listening on {transport} \S*:{port}\b"
                assert re.search(pattern, text), f"no {pattern!r} in the log:\n{text}"
            assert (etc / "var").is_dir(), "state_dir (etc/var) was not created"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text


@pytest.mark.needs_sipp
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_with_digest_sipp(pbx, tmp_path, transport):
    inf = users_inf(tmp_path / "users.csv", EXTENSIONS)
    result = run_sipp(
        "register.xml",
        f"127.0.0.1:{pbx.udp_port}",
        tmp_path / "sipp",
        transport=transport,
        calls=len(EXTENSIONS),
        inf=inf,
        timeout=10,
    )
    assert result.returncode == 0 and result.successful == len(EXTENSIONS), result.explain()
    assert "401 Unauthorized" in result.messages  # challenged first, then accepted


@pytest.mark.needs_baresip
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_baresip_registers(pbx, baresip_factory, transport):
    port = pbx.tls_port if transport == "tls" else pbx.udp_port
    phone = baresip_factory(
        f"phone-{transport}",
        user="1001",
        password=EXTENSIONS["1001"],
        server=("127.0.0.1", port),
        transport=transport,
        cafile=pbx.tls_certificate if transport == "tls" else None,
    )
    phone.wait_registered()


@pytest.mark.needs_baresip
def test_baresip_wrong_password_is_refused(pbx, baresip_factory):
    phone = baresip_factory(
        "intruder", user="1002", password="wrong", server=("127.0.0.1", pbx.udp_port)
    )
    with pytest.raises(TimeoutError):
        phone.wait_registered(timeout=1.5)
