#!/usr/bin/env python3
"""Benchmark of REGISTER with digest authentication (not run by pytest).

SIPp registers N extensions (``-inf`` users, MD5 digest: REGISTER, 401, REGISTER with
credentials, 200) at a fixed offered rate, with ``tests/integration/scenarios/register_phase.xml``:

1. reference: the same SIPp UAC against a SIPp UAS (``register_uas.xml``) that sends the same
   401 and 200 without checking or storing anything. Its CPU time per registration is the cost
   of the bare SIP exchange in C on this machine, measured in the same invocation;
2. pbxd, first registration of every extension (new bindings: INSERT in SQLite);
3. pbxd, re-registration of every extension with the same Call-ID and a higher CSeq (the
   steady state of a registrar: refreshes, UPDATE in SQLite).

For each: completed registrations, failures, registrations per wall second and per CPU-second
of the serving process (utime+stime from /proc/PID/stat before and after the SIPp run), and
the ratio of pbxd's CPU cost per registration to the reference's. Rewrites its section of
docs/performance.md between the markers.

Usage: ``python bench/register.py [--count 12000] [--rate 1200] [--no-write]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    CpuMeter,
    SippBackground,
    SippRun,
    free_port,
    machine_line,
    run_sipp,
    start_pbxd,
    write_section,
)

SECTION = "bench/register.py"
TARGET = 2000.0  # completed digest registrations per CPU-second of pbxd
FIRST = 20000


def users_file(path: Path, count: int) -> Path:
    lines = ["SEQUENTIAL"] + [
        f"{n};[authentication username={n} password=pw-{n}]"
        for n in range(FIRST, FIRST + count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def phase(target: str, workdir: Path, users: Path, count: int, rate: float, limit: int,
          local_port: int, cseq: int) -> SippRun:
    return run_sipp(
        workdir, "register_phase.xml", target, calls=count, rate=rate, limit=limit,
        local_port=local_port, inf=users,
        keys={"expires": "3600", "first_cseq": str(cseq), "auth_cseq": str(cseq + 1)},
        extra=("-cid_str", "%u-bench@%s"),
    )


def row(label: str, run: SippRun, cpu: float) -> dict:
    done = run.successful
    return {
        "label": label,
        "ok": done,
        "failed": run.failed,
        "wall": run.elapsed,
        "rate": done / run.elapsed if run.elapsed else 0.0,
        "cpu": cpu,
        "per_cpu": done / cpu if cpu > 0 else float("inf"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=12000, help="extensions to register")
    parser.add_argument("--rate", type=float, default=1200, help="registrations offered per s")
    parser.add_argument("--limit", type=int, default=200, help="registrations in flight (-l)")
    parser.add_argument("--no-write", action="store_true", help="do not edit performance.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-register-"))
    users = users_file(work / "users.csv", args.count)
    rows = []

    # 1. reference: SIPp UAC -> SIPp UAS
    # (no -m limit on the UAS: it must still run when its CPU time is read)
    uas = SippBackground(work / "uas", "register_uas.xml", None, calls=0, timeout=300).start()
    ref = phase(f"127.0.0.1:{uas.local_port}", work / "ref", users, args.count, args.rate,
                args.limit, free_port(), 1)
    uas_run = uas.stop()
    rows.append(row("reference: SIPp UAC → SIPp UAS (same 401 + 200, no checks, no storage)",
                    ref, uas_run.cpu))

    # 2-3. pbxd
    server = start_pbxd(work / "pbxd",
                        extensions={str(n): f"pw-{n}" for n in range(FIRST, FIRST + args.count)})
    try:
        target = f"127.0.0.1:{server.udp_port}"
        port = free_port()
        for label, cseq in (("pbxd: first registration (new bindings)", 1),
                            ("pbxd: re-registration, same Call-ID (refresh)", 3)):
            meter = CpuMeter(server.pid).start()
            run = phase(target, work / f"pbxd-{cseq}", users, args.count, args.rate,
                        args.limit, port, cseq)
            rows.append(row(label, run, meter.stop()))
    finally:
        server.stop()

    ref_per_cpu = rows[0]["per_cpu"]
    lines = [
        f"Measured by `python bench/register.py --count {args.count} --rate {args.rate:g} "
        f"--limit {args.limit}` on {machine_line()}.",
        "",
        "| run | completed | failed | registrations/s | CPU s of server | "
        "registrations per CPU-s | CPU cost × reference |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = ref_per_cpu / r["per_cpu"] if r["per_cpu"] else float("inf")
        lines.append(
            f"| {r['label']} | {r['ok']:,} | {r['failed']:,} | {r['rate']:,.0f} | "
            f"{r['cpu']:.2f} | {r['per_cpu']:,.0f} | {ratio:.1f} |"
        )
    pbxd_rows = rows[1:]
    worst = min(r["per_cpu"] for r in pbxd_rows)
    verdict = "met" if worst >= TARGET else "missed"
    lines += [
        "",
        f"Target: at least {TARGET:,.0f} completed digest registrations per CPU-second of pbxd: "
        f"**{verdict}** (lowest pbxd figure {worst:,.0f}).",
    ]
    text = "\n".join(lines)
    print(text)
    for r in rows:
        if r["failed"] or r["ok"] != args.count:
            print(f"warning: {r['label']}: {r['ok']} completed, {r['failed']} failed",
                  file=sys.stderr)
    if not args.no_write:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
