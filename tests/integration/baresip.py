"""Drive baresip (headless) from integration tests.

A :class:`Baresip` is one phone: it writes a config folder (``config`` and
``accounts``), starts ``baresip -f DIR``, and talks to it over ``ctrl_tcp``
(netstring JSON) to dial, answer, hang up and wait for events. Audio: it sends
``tone_wav`` (``aufile``) and ``sndfile`` writes what it receives to
``dump-*-dec.wav`` in its folder (``received_wavs()``).

    phone = Baresip(tmp_path / "a", user="1000", password="pw",
                    server=("127.0.0.1", 5060), transport="udp",
                    tone_wav=write_tone_wav(tmp_path / "a.wav", 440, 30))
    phone.start(); phone.wait_registered()
    phone.dial("sip:1001@127.0.0.1:5060"); phone.wait_event("CALL_ESTABLISHED")
    ...
    phone.stop()

Without ``server`` the account does not register (peer-to-peer calls).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from .ports import free_port, free_port_range

MODULES = ("g711.so", "account.so", "menu.so", "aufile.so", "sndfile.so")


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class Baresip:
    def __init__(
        self,
        workdir: Path,
        *,
        user: str,
        password: str | None = None,
        server: tuple[str, int] | None = None,
        transport: str = "udp",
        tone_wav: Path | None = None,
        cafile: Path | None = None,
        answer: bool = True,
        regint: int = 300,
        account_params: str = "",
        extra_config: tuple[str, ...] = (),
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.password = password
        self.server = server
        self.transport = transport.lower()
        self.tone_wav = tone_wav
        self.cafile = cafile
        self.answer = answer
        self.regint = regint if server else 0
        self.account_params = account_params
        self.extra_config = extra_config
        self._pick_ports()
        self.proc: subprocess.Popen | None = None
        self.events: list[dict] = []
        self.responses: list[dict] = []
        self._cond = threading.Condition()
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None

    # -- configuration -------------------------------------------------------------
    @property
    def uri(self) -> str:
        """Where this phone can be called directly (no server)."""
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    def account_line(self) -> str:
        if self.server:
            host, port = self.server
            aor = f"sip:{self.user}@{host}:{port};transport={self.transport}"
        else:
            aor = f"sip:{self.user}@127.0.0.1:{self.sip_port}"
        params = [f"regint={self.regint}"]
        if self.password is not None:
            params.append(f"auth_pass={self.password}")
        if self.answer:
            params.append("answermode=auto")
        if self.account_params:
            params.append(self.account_params.lstrip(";"))
        return f"<{aor}>;" + ";".join(params)

    def write_config(self) -> None:
        lines = [
            "poll_method\tepoll",
            f"sip_listen\t127.0.0.1:{self.sip_port}",
            "net_interface\t127.0.0.1",
            f"rtp_ports\t{self.rtp_range[0]}-{self.rtp_range[1]}",
            "rtcp_mux\tno",
            "jitter_buffer_delay\t1-5",
            "audio_player\taufile,/dev/null",
            "audio_alert\taufile,/dev/null",
            "ausrc_srate\t8000",
            "auplay_srate\t8000",
            "ausrc_channels\t1",
            "auplay_channels\t1",
            "module_path\t/usr/lib/baresip/modules",
            *(f"module\t{m}" for m in MODULES),
            "module_app\tctrl_tcp.so",
            f"ctrl_tcp_listen\t127.0.0.1:{self.ctrl_port}",
            f"snd_path\t{self.workdir}",
        ]
        if self.tone_wav is not None:
            lines.append(f"audio_source\taufile,{self.tone_wav}")
        if self.cafile is not None:
            lines.append(f"sip_cafile\t{self.cafile}")
        lines += list(self.extra_config)
        (self.workdir / "config").write_text("\n".join(lines) + "\n")
        (self.workdir / "accounts").write_text(self.account_line() + "\n")
        (self.workdir / "contacts").write_text("")

    def _pick_ports(self) -> None:
        # baresip listens on sip_listen for UDP/TCP and on the next port for TLS:
        # both must be free, so take them as a pair
        self.sip_port = free_port_range(2)[0]
        self.ctrl_port = free_port()
        self.rtp_range = free_port_range(10)

    # -- process -------------------------------------------------------------------
    def start(self, deadline: float = 10.0, attempts: int = 3) -> Baresip:
        """Start baresip; when a port was taken between choosing and binding it (another
        process's ephemeral port), start again on fresh ports, at most ``attempts`` times."""
        for attempt in range(attempts):
            try:
                return self._start(deadline)
            except RuntimeError as e:
                if "Address already in use" not in str(e) or attempt == attempts - 1:
                    raise
                self._close_log()
                self._pick_ports()
        raise AssertionError("unreachable")

    def _close_log(self) -> None:
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()

    def _start(self, deadline: float) -> Baresip:
        binary = shutil.which("baresip")
        if binary is None:
            raise RuntimeError("baresip is not installed (Debian package baresip)")
        self.write_config()
        self._log = open(self.workdir / "baresip.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [binary, "-f", str(self.workdir)],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        end = time.monotonic() + deadline
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"baresip exited ({self.proc.returncode}):\n{self.log_text()}")
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                break
            except OSError:
                if time.monotonic() > end:
                    raise TimeoutError(f"baresip ctrl_tcp not up:\n{self.log_text()}") from None
                time.sleep(0.05)
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        return self

    def _read_loop(self) -> None:
        buf = b""
        sock = self._sock
        while sock is not None:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            buf += data
            while True:
                colon = buf.find(b":")
                if colon < 0:
                    break
                length = int(buf[:colon] or b"0")
                if len(buf) < colon + 1 + length + 1:
                    break
                payload = buf[colon + 1 : colon + 1 + length]
                buf = buf[colon + 2 + length :]
                try:
                    message = json.loads(payload)
                except ValueError:
                    continue
                with self._cond:
                    if message.get("event"):
                        self.events.append(message)
                    else:
                        self.responses.append(message)
                    self._cond.notify_all()

    def log_text(self) -> str:
        try:
            return (self.workdir / "baresip.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, deadline: float = 2.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.command("quit", timeout=1)
            except Exception:  # noqa: BLE001 - it may be gone already
                pass
            try:
                self.proc.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                # e.g. waiting for an un-REGISTER nobody answers: SIGTERM would wait again
                self.proc.kill()
                self.proc.wait()
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
        self._log.close()

    # -- control ---------------------------------------------------------------------
    def command(self, command: str, params: str | None = None, timeout: float = 5.0) -> dict:
        """Send a ctrl_tcp command (``dial``, ``hangup``, ``accept``, ``quit``, ...)."""
        assert self._sock is not None, "start() first"
        token = f"t{time.monotonic_ns()}"
        body = {"command": command, "token": token}
        if params is not None:
            body["params"] = params
        self._sock.sendall(_netstring(json.dumps(body).encode()))
        if command == "quit":
            return {}
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for response in self.responses:
                    if response.get("token") == token:
                        return response
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no response to {command!r}:\n{self.log_text()[-3000:]}")
                self._cond.wait(left)

    def wait_event(self, kind: str, timeout: float = 10.0, *, since: int = 0) -> dict:
        """Wait for an event of type ``kind`` (REGISTER_OK, CALL_ESTABLISHED, CALL_CLOSED...)."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[since:]:
                    if event.get("type") == kind:
                        return event
                left = end - time.monotonic()
                if left <= 0 or (self.proc is not None and self.proc.poll() is not None):
                    seen = [e.get("type") for e in self.events]
                    raise TimeoutError(
                        f"baresip {self.user}: no {kind} within {timeout}s; events {seen}\n"
                        f"{self.log_text()[-3000:]}"
                    )
                self._cond.wait(min(left, 0.2))

    def event_types(self) -> list[str]:
        with self._cond:
            return [e.get("type", "") for e in self.events]

    def registration_state(self) -> str:
        """``OK`` when registered, ``ERR`` after a failure, ``zzz`` before or without (reginfo)."""
        data = self.command("reginfo").get("data", "")
        plain = re.sub(r"\x1b\[[0-9;]*m", "", data)
        match = re.search(r"^> \S+\s+(OK|ERR|zzz)\b", plain, re.MULTILINE)
        return match.group(1) if match else plain.strip()

    def wait_registered(self, timeout: float = 10.0) -> None:
        """Poll (bounded) until the account is registered; raise with the log otherwise."""
        end = time.monotonic() + timeout
        state = ""
        while time.monotonic() < end:
            state = self.registration_state()
            if state == "OK":
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"baresip {self.user} not registered within {timeout}s (state {state!r}):\n"
            f"{self.log_text()[-3000:]}"
        )

    def dial(self, uri: str) -> dict:
        return self.command("dial", uri)

    def hangup(self) -> dict:
        return self.command("hangup")

    def received_wavs(self) -> list[Path]:
        """What sndfile wrote for received (decoded) audio, oldest first."""
        return sorted(self.workdir.glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)

    def __enter__(self) -> Baresip:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
