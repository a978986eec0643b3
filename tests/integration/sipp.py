"""Drive SIPp (Debian package ``sip-tester``) from integration tests.

``run_sipp(scenario, target, ...)`` runs one SIPp process to completion and
returns a :class:`SippResult` (exit code, the final statistics counters,
stdout/stderr, the message trace). ``SippProcess`` is the same in the
background (for a SIPp UAS a test calls through the server).

Scenarios are files in ``tests/integration/scenarios`` (pass the bare name,
e.g. ``"options.xml"``), any path, or a built-in (``"sn:uas"``).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .ports import free_port
from .tlscert import write_self_signed

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
TRANSPORTS = {"udp": "u1", "tcp": "t1", "tls": "l1", "u1": "u1", "t1": "t1", "l1": "l1"}


@dataclass
class SippResult:
    returncode: int
    stats: dict[str, str] = field(default_factory=dict)
    stdout: str = ""
    stderr: str = ""
    messages: str = ""  # -trace_msg output
    errors: str = ""  # -trace_err output (unexpected messages)

    def counter(self, name: str) -> int:
        """A cumulative counter, e.g. ``counter("SuccessfulCall")`` reads ``SuccessfulCall(C)``."""
        value = self.stats.get(f"{name}(C)", self.stats.get(name, "0"))
        return int(value or 0)

    @property
    def successful(self) -> int:
        return self.counter("SuccessfulCall")

    @property
    def failed(self) -> int:
        return self.counter("FailedCall")

    def explain(self) -> str:
        """Everything useful for an assertion message."""
        return (
            f"sipp exit {self.returncode}; successful={self.successful} failed={self.failed}\n"
            f"--- stderr ---\n{self.stderr[-3000:]}\n--- unexpected ---\n{self.errors[-3000:]}\n"
            f"--- messages (tail) ---\n{self.messages[-4000:]}"
        )


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise RuntimeError("sipp is not installed (Debian package sip-tester)")
    return path


def sipp_supports_tls() -> bool:
    """Debian's sip-tester 3.6.1 is built without OpenSSL: ``-t l1`` is refused."""
    try:
        out = subprocess.run(
            [sipp_binary(), "-v"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return False
    return "TLS" in out.upper()


def _scenario_args(scenario: str | Path) -> list[str]:
    text = str(scenario)
    if text.startswith("sn:"):
        return ["-sn", text[3:]]
    path = Path(scenario)
    if not path.is_absolute() and not path.exists():
        path = SCENARIOS / path
    if not path.exists():
        raise FileNotFoundError(f"SIPp scenario not found: {scenario}")
    return ["-sf", str(path)]


def build_command(
    scenario: str | Path,
    target: str | None,
    workdir: Path,
    *,
    transport: str = "udp",
    calls: int | None = 1,
    rate: float | None = None,
    limit: int | None = None,
    local_port: int | None = None,
    local_ip: str = "127.0.0.1",
    inf: Path | str | None = None,
    keys: dict[str, str] | None = None,
    service: str | None = None,
    timeout: float = 20.0,
    extra: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """The SIPp command line; TLS gets a throwaway client certificate in ``workdir``."""
    mode = TRANSPORTS[transport.lower()]
    cmd = [sipp_binary(), *_scenario_args(scenario)]
    if target:
        cmd.append(target)
    cmd += ["-t", mode, "-i", local_ip, "-nostdin", "-trace_stat", "-stf", "stats.csv"]
    cmd += ["-trace_msg", "-message_file", "messages.log"]
    cmd += ["-trace_err", "-error_file", "errors.log"]
    cmd += ["-timeout", f"{max(1, int(timeout))}s", "-timeout_error"]
    if mode == "l1":
        if not sipp_supports_tls():
            raise RuntimeError("this sipp is built without TLS (Debian's sip-tester is)")
        cert, key = write_self_signed(workdir, "sipp-client")
        cmd += ["-tls_cert", str(cert), "-tls_key", str(key)]
    cmd += ["-p", str(local_port if local_port is not None else free_port(local_ip))]
    if calls is not None:
        cmd += ["-m", str(calls)]
    if rate is not None:
        cmd += ["-r", str(rate)]
    if limit is not None:
        cmd += ["-l", str(limit)]
    if inf is not None:
        cmd += ["-inf", str(inf)]
    if service is not None:
        cmd += ["-s", service]
    if not any(arg == "-d" for arg in extra):
        cmd += ["-d", "500"]
    for name, value in {"expires": "300", **(keys or {})}.items():
        cmd += ["-key", name, str(value)]
    cmd += list(extra)
    return cmd


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def parse_stats(path: Path) -> dict[str, str]:
    """The last row of a ``-trace_stat`` CSV (``;``-separated) as a dict."""
    text = _read(path)
    rows = [row for row in csv.reader(text.splitlines(), delimiter=";") if row]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name.strip(): value.strip() for name, value in zip(header, last, strict=False) if name}


def _collect(workdir: Path, returncode: int, stdout: str, stderr: str) -> SippResult:
    return SippResult(
        returncode=returncode,
        stats=parse_stats(workdir / "stats.csv"),
        stdout=stdout,
        stderr=stderr,
        messages=_read(workdir / "messages.log"),
        errors=_read(workdir / "errors.log"),
    )


def write_inf(path: Path, rows: list[list[str]], order: str = "SEQUENTIAL") -> Path:
    """An injection file (``-inf``): first line the order, then ``;``-separated fields."""
    path.write_text(order + "\n" + "".join(";".join(row) + "\n" for row in rows))
    return path


def users_inf(path: Path, users: dict[str, str], order: str = "SEQUENTIAL") -> Path:
    """An injection file for register.xml: ``USER;[authentication username=USER password=PW]``."""
    rows = [[user, f"[authentication username={user} password={pw}]"] for user, pw in users.items()]
    return write_inf(path, rows, order)


def run_sipp(
    scenario: str | Path,
    target: str | None,
    workdir: Path,
    *,
    timeout: float = 20.0,
    **options,
) -> SippResult:
    """Run SIPp to completion in ``workdir`` (its files land there) and collect the result.

    ``options`` are those of :func:`build_command` (transport, calls, rate, limit,
    local_port, inf, keys, service, extra). SIPp exits 0 when every call
    succeeded, 1 when at least one failed, 97/99 on internal errors.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("stats.csv", "messages.log", "errors.log"):
        (workdir / name).unlink(missing_ok=True)
    cmd = build_command(scenario, target, workdir, timeout=timeout, **options)
    try:
        proc = subprocess.run(
            cmd,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout + 10,
        )
    except subprocess.TimeoutExpired as exc:
        return _collect(
            workdir, -9, _text(exc.stdout), _text(exc.stderr) + "\n[harness] sipp timed out"
        )
    return _collect(workdir, proc.returncode, proc.stdout, proc.stderr)


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class SippProcess:
    """SIPp in the background (e.g. a UAS): ``start()``, then ``wait()`` or ``stop()``."""

    def __init__(self, scenario, target, workdir: Path, *, timeout: float = 30.0, **options):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.local_port = options.pop("local_port", None) or free_port()
        self.cmd = build_command(
            scenario, target, self.workdir, timeout=timeout, local_port=self.local_port, **options
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> SippProcess:
        self._out = open(self.workdir / "stdout.txt", "w")  # noqa: SIM115
        self._err = open(self.workdir / "stderr.txt", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.cmd, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err
        )
        return self

    def wait_ready(self, deadline: float = 5.0) -> None:
        """Wait until SIPp has bound its local port (it is then ready to receive)."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"sipp exited early:\n{self.result().explain()}")
            if _udp_or_tcp_bound(self.local_port):
                return
            time.sleep(0.05)
        raise TimeoutError(f"sipp did not bind port {self.local_port}")

    def wait(self, timeout: float | None = None) -> SippResult:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout if timeout is not None else self.timeout + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.result()

    def stop(self) -> SippResult:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.result()

    def result(self) -> SippResult:
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f is not None:
                f.flush()
        code = self.proc.returncode if self.proc is not None else -1
        return _collect(
            self.workdir,
            code if code is not None else -1,
            _read(self.workdir / "stdout.txt"),
            _read(self.workdir / "stderr.txt"),
        )


def _udp_or_tcp_bound(port: int) -> bool:
    """True when something holds UDP or TCP ``port`` on 127.0.0.1 (binding it fails)."""
    import socket

    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        finally:
            sock.close()
    return False
