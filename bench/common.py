"""Shared helpers for the SIPp based benchmarks in ``bench/`` (not run by pytest).

- :func:`start_pbxd`: the real server (``twistd -n pbx``) on loopback ports with a generated
  configuration, through the integration harness (:class:`tests.integration.harness.PbxServer`).
- :func:`cpu_seconds` / :class:`CpuMeter`: user+system CPU time of a process from
  ``/proc/PID/stat`` (fields 14 and 15, clock ticks; all threads included, so the SQLite
  thread of adbapi is counted too).
- :func:`run_sipp` / :class:`SippBackground`: SIPp with ``-trace_stat`` only (no message trace,
  which would cost more than the load), returning the final counters and the wall time.
- :func:`write_section`: replace the text between a benchmark's markers in
  ``docs/performance.md``; :func:`machine_line`: what the figures were measured on.

Figures from one shared, noisy machine compare only as ratios to a reference run in the same
invocation: every benchmark here measures one beside its own figures.
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.harness import PbxServer  # noqa: E402
from tests.integration.ports import free_port  # noqa: E402

SCENARIOS = ROOT / "tests" / "integration" / "scenarios"
PERFORMANCE_MD = ROOT / "docs" / "performance.md"
TICKS = os.sysconf("SC_CLK_TCK")


# -- CPU time ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (every thread), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / TICKS


class CpuMeter:
    """CPU seconds a process spends between ``start()`` and ``stop()``."""

    def __init__(self, pid: int):
        self.pid = pid
        self.before = self.after = 0.0

    def start(self) -> CpuMeter:
        self.before = cpu_seconds(self.pid)
        return self

    def stop(self) -> float:
        self.after = cpu_seconds(self.pid)
        return self.used

    @property
    def used(self) -> float:
        return self.after - self.before


# -- the server --------------------------------------------------------------------------


def start_pbxd(
    workdir: Path,
    *,
    extensions: dict[str, str] | None = None,
    overrides: dict | None = None,
    transports: tuple[str, ...] = ("udp",),
    start_timeout: float = 60.0,
) -> PbxServer:
    """Start pbxd on loopback with ``extensions`` (number -> password) added to the test ones.

    The per-address flood limit and transaction cap are off (one SIPp socket stands for
    thousands of phones);
    pass ``overrides`` (deep-merged into the YAML) for anything else.
    """
    if workdir.exists():
        shutil.rmtree(workdir)
    config: dict = {
        "security": {"rate_limit": {"requests": 0}},
        "limits": {"max_transactions_per_source": 10_000_000},
    }
    if extensions:
        config["extensions"] = {n: {"password": pw} for n, pw in extensions.items()}
    server = PbxServer(
        workdir,
        overrides=_merge(config, overrides or {}),
        transports=transports,
        admin=False,
        start_timeout=start_timeout,
    )
    return server.start()


def _merge(base: dict, more: dict) -> dict:
    out = dict(base)
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# -- SIPp --------------------------------------------------------------------------------


@dataclass
class SippRun:
    returncode: int
    elapsed: float  # wall seconds of the run
    stats: dict[str, str] = field(default_factory=dict)
    stderr: str = ""
    cpu: float = 0.0  # CPU seconds of the SIPp process itself (SippBackground only)

    def counter(self, name: str) -> int:
        return int(self.stats.get(f"{name}(C)", "0") or 0)

    @property
    def successful(self) -> int:
        return self.counter("SuccessfulCall")

    @property
    def failed(self) -> int:
        return self.counter("FailedCall")


def sipp_command(
    scenario: str | Path,
    target: str | None,
    *,
    calls: int,
    rate: float | None = None,
    limit: int | None = None,
    local_port: int | None = None,
    inf: Path | None = None,
    keys: dict[str, str] | None = None,
    timeout: float = 120.0,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """A SIPp command line: UDP on 127.0.0.1, ``-trace_stat`` to ``stats.csv``, no message log."""
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SystemExit("sipp is not installed (Debian package sip-tester)")
    path = Path(scenario)
    if not path.is_absolute():
        path = SCENARIOS / path
    cmd = [sipp, "-sf", str(path)]
    if target:
        cmd.append(target)
    cmd += ["-t", "u1", "-i", "127.0.0.1", "-nostdin", "-trace_stat", "-stf", "stats.csv"]
    cmd += ["-fd", "1", "-timeout", f"{int(timeout)}s", "-timeout_error"]
    if calls:
        cmd += ["-m", str(calls)]  # 0: run until stopped (a UAS)
    cmd += ["-p", str(local_port or free_port())]
    if rate is not None:
        cmd += ["-r", str(rate)]
    if limit is not None:
        cmd += ["-l", str(limit)]
    if inf is not None:
        cmd += ["-inf", str(inf)]
    for name, value in (keys or {}).items():
        cmd += ["-key", name, str(value)]
    return cmd + list(extra)


def parse_stats(path: Path) -> dict[str, str]:
    """The last row of a ``-trace_stat`` CSV as a dict."""
    try:
        rows = [r for r in csv.reader(path.read_text().splitlines(), delimiter=";") if r]
    except OSError:
        return {}
    if len(rows) < 2:
        return {}
    return {k.strip(): v.strip() for k, v in zip(rows[0], rows[-1], strict=False) if k}


def run_sipp(workdir: Path, *args, timeout: float = 120.0, **kwargs) -> SippRun:
    """Run SIPp (arguments of :func:`sipp_command`) to completion in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "stats.csv").unlink(missing_ok=True)
    cmd = sipp_command(*args, timeout=timeout, **kwargs)
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        errors="replace", timeout=timeout + 30,
    )
    elapsed = time.monotonic() - t0
    return SippRun(proc.returncode, elapsed, parse_stats(workdir / "stats.csv"), proc.stderr)


class SippBackground:
    """SIPp in the background (a UAS for a reference run); its CPU time is measured."""

    def __init__(self, workdir: Path, *args, **kwargs):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "stats.csv").unlink(missing_ok=True)
        self.local_port = kwargs.setdefault("local_port", free_port())
        self.cmd = sipp_command(*args, **kwargs)
        self.proc: subprocess.Popen | None = None
        self.meter: CpuMeter | None = None

    def start(self) -> SippBackground:
        self._err = open(self.workdir / "stderr.txt", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.cmd, cwd=self.workdir, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._err,
        )
        time.sleep(0.3)  # let it bind (a benchmark, not a test: no poll needed)
        self.meter = CpuMeter(self.proc.pid).start()
        return self

    def cpu_so_far(self) -> float:
        assert self.meter is not None
        return self.meter.stop()

    def stop(self) -> SippRun:
        assert self.proc is not None
        cpu = self.cpu_so_far() if self.proc.poll() is None else self.meter.used
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()
        run = SippRun(self.proc.returncode, 0.0, parse_stats(self.workdir / "stats.csv"),
                      (self.workdir / "stderr.txt").read_text(errors="replace"))
        run.cpu = cpu
        return run


# -- reporting ---------------------------------------------------------------------------


def machine_line() -> str:
    """Interpreter, date, load average and CPU count, for the figures' heading."""
    load = os.getloadavg()[0]
    return (
        f"CPython {platform.python_version()} ({platform.machine()}), "
        f"{datetime.date.today().isoformat()}, load average {load:.2f} on {os.cpu_count()} CPUs"
    )


def write_section(name: str, text: str, path: Path = PERFORMANCE_MD) -> None:
    """Replace what lies between ``<!-- NAME: begin -->`` and ``<!-- NAME: end -->``
    in ``path`` (appending the markers at the end when they are missing)."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    doc = path.read_text() if path.exists() else "# Performance\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        doc = head + block + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(doc)
