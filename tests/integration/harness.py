"""Start the real pbxd server for integration tests, and talk raw SIP to it.

``PbxServer`` writes a temporary YAML configuration (loopback-only listeners on
free ports, a temporary ``state_dir``, test extensions), starts
``twistd --pidfile= -n pbx -c CONFIG`` as a subprocess, waits until every
listener answers, and stops it at teardown, checking that its log holds no
``Traceback``. Use it through the fixtures in ``conftest.py`` (``pbx``,
``pbx_factory``) or directly::

    with PbxServer(tmp_path, overrides={"security": {"rate_limit": {"requests": 0}}}) as srv:
        srv.udp_port, srv.tcp_port, srv.tls_port, srv.admin_port, srv.log_text()

Raw SIP helpers (``options_request``, ``udp_exchange``, ``StreamClient``) send
hand-written messages for the tests that need bytes SIPp would not send.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

from .ports import free_port, free_port_range

REPO_ROOT = Path(__file__).resolve().parents[2]
TWISTD = [
    sys.executable,
    "-c",
    "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()",
]

#: Extensions every test server has: number -> password.
EXTENSIONS = {"1000": "pw-1000", "1001": "pw-1001", "1002": "pw-1002"}
ADMIN_TOKEN = "test-admin-token"


def twistd_command(*args: str) -> list[str]:
    """``twistd ARGS`` run by this interpreter (whatever venv the tests run in)."""
    return [*TWISTD, *args]


def deep_merge(base: dict, overrides: dict) -> dict:
    """A copy of ``base`` with ``overrides`` merged in; a value of None deletes the key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class ServerError(AssertionError):
    pass


class PbxServer:
    """One pbxd process on loopback. Ports are chosen once and kept across restarts."""

    def __init__(
        self,
        workdir: Path,
        *,
        overrides: dict | None = None,
        transports: tuple[str, ...] = ("udp", "tcp", "tls"),
        admin: bool = True,
        allow_traceback: bool = False,
        start_timeout: float = 20.0,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.workdir / "state"
        self.config_path = self.workdir / "config.yml"
        self.log_path = self.workdir / "server.log"
        self.transports = tuple(t.lower() for t in transports)
        self.udp_port = free_port() if "udp" in self.transports or "tcp" in self.transports else 0
        self.tcp_port = self.udp_port
        self.tls_port = free_port() if "tls" in self.transports else 0
        self.admin_port = free_port() if admin else 0
        self.rtp_range = free_port_range(200)
        self.allow_traceback = allow_traceback
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._log_offset = 0
        self.config = deep_merge(self.base_config(), overrides or {})
        self.write_config()

    # -- configuration -----------------------------------------------------------
    def base_config(self) -> dict:
        listen = []
        if "udp" in self.transports:
            listen.append(f"udp:{self.udp_port}:interface=127.0.0.1")
        if "tcp" in self.transports:
            listen.append(f"tcp:{self.tcp_port}:interface=127.0.0.1")
        if "tls" in self.transports:
            listen.append(f"tls:{self.tls_port}:interface=127.0.0.1")
        return {
            "pbx": {"realm": "pbxd.local", "state_dir": str(self.state_dir)},
            "sip": {"listen": listen, "tls": {"certificate": "auto", "private_key": "auto"}},
            "rtp": {"address": "127.0.0.1", "port_range": list(self.rtp_range)},
            # SIPp's phones do not answer OPTIONS: a qualify round would mark them
            # unreachable mid-test. Tests of qualifying turn it on (test_qualify_live.py).
            "registrar": {"qualify_interval": 0},
            "extensions": {
                number: {"password": password, "name": f"Test {number}"}
                for number, password in EXTENSIONS.items()
            },
            "admin": {
                "listen": f"tcp:{self.admin_port}:interface=127.0.0.1" if self.admin_port else None,
                "tokens": [{"name": "test", "token": ADMIN_TOKEN}],
            },
        }

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    @property
    def tls_certificate(self) -> Path:
        """The server's certificate (for a TLS client's CA file) once it has started."""
        configured = self.config.get("sip", {}).get("tls", {}).get("certificate", "auto")
        if configured != "auto":
            return Path(configured)
        candidates = sorted(self.state_dir.rglob("*.crt")) + sorted(self.state_dir.rglob("*.pem"))
        certs = [p for p in candidates if "key" not in p.name]
        if not certs:
            raise FileNotFoundError(f"no certificate in {self.state_dir}")
        return certs[0]

    # -- process -------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> PbxServer:
        assert not self.running, "already running"
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115
        self._log_offset = self.log_path.stat().st_size
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            twistd_command("--pidfile=", "-n", "pbx", "-c", str(self.config_path)),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.wait_ready(self.start_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Poll (bounded) until every listener answers: UDP with a SIP reply, TCP/TLS accept."""
        end = time.monotonic() + timeout
        pending = set(self.transports)
        while pending:
            if not self.running:
                raise ServerError(
                    f"pbxd exited with {self.proc.returncode} during startup:\n{self.log_text()}"
                )
            if time.monotonic() > end:
                self.kill9()
                raise ServerError(
                    f"pbxd not ready within {timeout}s ({pending}):\n{self.log_text()}"
                )
            for transport in sorted(pending):
                if self._probe(transport):
                    pending.discard(transport)
            if pending:
                time.sleep(0.05)

    def _probe(self, transport: str) -> bool:
        if transport == "udp":
            try:
                reply = udp_exchange(self.udp_port, options_request(self.udp_port, "udp"), 0.3)
            except OSError:
                return False
            return reply is not None and reply.startswith(b"SIP/2.0 ")
        port = self.tcp_port if transport == "tcp" else self.tls_port
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close_log()
                raise ServerError(
                    f"pbxd ignored SIGTERM for {timeout}s:\n{self.log_text()}"
                ) from None
        self._close_log()
        return self.proc.returncode

    def kill9(self) -> None:
        """Crash it: SIGKILL, no cleanup (for persistence tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def restart(self) -> PbxServer:
        """Stop (gracefully if running) and start again with the same config and ports."""
        if self.running:
            self.stop()
        self.write_config()
        return self.start()

    def reload(self) -> None:
        """SIGHUP (if the server implements reload on HUP)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -- log -----------------------------------------------------------------------
    def log_text(self) -> str:
        """The whole server log (all runs of this server)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> re.Match:
        """Poll (bounded) until ``pattern`` (a regex) appears in the log."""
        regex = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text())
            if match:
                return match
            if time.monotonic() > end:
                raise ServerError(
                    f"{pattern!r} not in the log within {timeout}s:\n{self.log_text()}"
                )
            time.sleep(0.05)

    def check_log(self) -> None:
        """Raise when the log holds a Traceback (unless allow_traceback)."""
        text = self.log_text()
        if not self.allow_traceback and "Traceback" in text:
            at = text.index("Traceback")
            raise ServerError(f"pbxd logged a Traceback:\n{text[max(0, at - 2000):at + 6000]}")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.check_log()

    def __enter__(self) -> PbxServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.kill9()


# -- raw SIP -------------------------------------------------------------------------


def options_request(
    port: int,
    transport: str = "udp",
    *,
    local_port: int = 9,
    call_id: str | None = None,
    cseq: int = 1,
    user: str = "probe",
) -> bytes:
    """A well-formed OPTIONS to 127.0.0.1:``port``."""
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    call_id = call_id or uuid.uuid4().hex
    return (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:{local_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{user}@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:127.0.0.1:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} OPTIONS\r\n"
        "Accept: application/sdp\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def udp_exchange(port: int, data: bytes, timeout: float = 2.0) -> bytes | None:
    """Send one datagram to 127.0.0.1:``port``; the first reply, or None on timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        sock.send(data)
        try:
            return sock.recv(65536)
        except TimeoutError:
            return None


def status_of(message: bytes | None) -> int | None:
    """The status code of a response (None for a request or nothing)."""
    if not message or not message.startswith(b"SIP/2.0 "):
        return None
    return int(message.split(b" ", 2)[1])


def header_of(message: bytes, name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive, no compact forms)."""
    head = message.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


class StreamClient:
    """A TCP (or TLS, ``tls=True``) connection that reads whole SIP messages."""

    def __init__(self, port: int, *, tls: bool = False, timeout: float = 5.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            raw = context.wrap_socket(raw)
        self.sock = raw
        self.buffer = b""

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_message(self) -> bytes:
        """The next complete message (Content-Length framing); raises TimeoutError."""
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end >= 0:
                head = self.buffer[:head_end]
                length = 0
                match = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
                if match:
                    length = int(match.group(1))
                total = head_end + 4 + length
                if len(self.buffer) >= total:
                    message, self.buffer = self.buffer[:total], self.buffer[total:]
                    return message
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; buffered {self.buffer!r}")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
