#!/usr/bin/env python3
"""Call-rate benchmark of the B2BUA (not run by pytest).

Starts a real pbxd (``twistd -n pbx``, UDP only, rate limit off) with the
integration harness, registers a SIPp UAS as extension 1001 and has a SIPp
UAC (digest auth against 1000) call it through pbxd: every call is
challenged, re-sent with credentials, forked to the UAS with anchored media
(two RTP port pairs, SDP rewritten both ways), answered, held ``--hold`` ms
and hung up, and writes its CDR to SQLite.

For each offered rate (``--rates``) it runs ``--seconds`` seconds of calls and
records the failures and pbxd's CPU time (utime+stime from /proc/PID/stat),
giving completed calls per CPU-second of pbxd. The reference, in the same
invocation, is SIPp's UAC calling the SIPp UAS directly (no pbxd), whose
SIPp-side CPU is not comparable, so the reference figure is its sustained
rate and the ratio compares sustained rates.

With ``--sippy PYTHON`` (an interpreter with the ``sippy`` package installed, e.g.
``python3 -m venv /tmp/sippy && /tmp/sippy/bin/pip install sippy==2.5.0``) the same UAC
load also goes through sippy's ``b2bua_simple`` (the Python B2BUA the issue measures pbxd
against: no authentication, no media anchoring, no CDR) to its own SIPp UAS, and sippy's
CPU time gives its calls per CPU-second in the same invocation: pbxd's figure divided by
sippy's compares the two on whatever machine runs them. That UAS is SIPp's built-in
``uas`` scenario with ``transport=udp`` in its Contact instead of ``UDP``: sippy 2.5.0
compares the transport parameter case-sensitively and drops the in-dialog requests of
some calls otherwise (RFC 3261 s19.1.4: it is case-insensitive). sippy sends the 180 of
some calls after their 200 (its worker threads race); SIPp's UAC counts those calls as
failed, but sippy did their work, so its figure counts them as handled.

Usage: ``python bench/calls.py [--rates 100,200,300] [--seconds 10] [--sippy PYTHON] [--no-write]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import cpu_seconds, write_section  # noqa: E402

from tests.integration.harness import EXTENSIONS, PbxServer, ServerError  # noqa: E402
from tests.integration.ports import free_port, free_port_range  # noqa: E402
from tests.integration.sipp import SippProcess, run_sipp, users_inf  # noqa: E402

SCENARIOS = ROOT / "tests" / "integration" / "scenarios"
TARGET = 600  # completed calls per CPU-second of pbxd (issue 4)


def run_rate(target: str, workdir: Path, rate: int, seconds: int, hold: int, inf: Path | None,
             auth: list[str], scenario: str) -> tuple[int, int, float]:
    """(successful, failed, wall seconds) of ``rate`` calls/s for ``seconds`` seconds."""
    calls = rate * seconds
    t0 = time.monotonic()
    result = run_sipp(scenario, target, workdir, calls=calls, rate=rate, limit=rate * 10,
                      inf=inf, service="1001", timeout=seconds * 4 + 30,
                      extra=["-d", str(hold), *auth])
    return result.successful, result.failed, time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="100,200,300")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--hold", type=int, default=500, help="ms each call stays up")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--sippy", metavar="PYTHON",
                        help="also measure sippy's b2bua_simple, run by this interpreter")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    low, high = free_port_range(4000)
    rows = []
    warnings: list[str] = []
    try:
        with PbxServer(work / "pbx", transports=("udp",), admin=False, overrides={
                "security": {"rate_limit": {"requests": 0}, "max_failed_attempts": 0},
                # one SIPp process plays every phone: per-source and overload limits off
                "limits": {"max_transactions_per_source": 10_000_000,
                           "max_dialogs_per_source": 10_000_000,
                           "overload": {"max_call_rate": 0, "max_loop_lag": 0}},
                "rtp": {"port_range": [low, high]}}) as pbx:
            pid = pbx.pid
            assert pid is not None
            uas_port = free_port()
            inf = users_inf(work / "reg.csv", {"1001": EXTENSIONS["1001"]})
            run_sipp("register.xml", f"127.0.0.1:{pbx.udp_port}", work / "reg", calls=1, inf=inf,
                     local_port=uas_port, timeout=10, keys={"expires": "3600"})
            uas = SippProcess("sn:uas", None, work / "uas", local_port=uas_port, calls=None,
                              timeout=3600).start()
            uas.wait_ready()
            caller = users_inf(work / "caller.csv", {"1000": EXTENSIONS["1000"]})
            auth = ["-auth_uri", f"1001@127.0.0.1:{pbx.udp_port}"]
            for rate in rates:
                cpu0 = cpu_seconds(pid)
                ok, failed, wall = run_rate(f"127.0.0.1:{pbx.udp_port}", work / f"pbx{rate}", rate,
                                            args.seconds, args.hold, caller, auth,
                                            str(SCENARIOS / "call_uac_auth.xml"))
                cpu = cpu_seconds(pid) - cpu0
                rows.append(("pbxd", rate, ok, failed, wall, cpu))
                print(f"pbxd rate {rate}/s: {ok} ok, {failed} failed, {wall:.1f}s, pbxd cpu {cpu:.2f}s"
                      f" -> {ok / cpu if cpu else 0:.0f} calls/cpu-s", flush=True)
            uas.stop()
    except ServerError as e:  # figures are kept; the log problem is reported, not hidden
        print(f"warning: {str(e).splitlines()[0]} (see {work / 'pbx'})", file=sys.stderr)
        warnings.append(str(e).splitlines()[0])
    # reference: the same UAC load straight at a SIPp UAS
    ref_port = free_port()
    ref_uas = SippProcess("sn:uas", None, work / "ref-uas", local_port=ref_port, calls=None,
                          timeout=3600).start()
    ref_uas.wait_ready()
    for rate in rates:
        ok, failed, wall = run_rate(f"127.0.0.1:{ref_port}", work / f"ref{rate}", rate,
                                    args.seconds, args.hold, caller, [], "sn:uac")
        rows.append(("reference", rate, ok, failed, wall, 0.0))
        print(f"reference rate {rate}/s: {ok} ok, {failed} failed, {wall:.1f}s", flush=True)
    ref_uas.stop()
    if args.sippy:
        for rate, ok, failed, wall, cpu in run_sippy(args.sippy, work / "sippy", rates,
                                                     args.seconds, args.hold):
            rows.append(("sippy", rate, ok, failed, wall, cpu))
            print(f"sippy rate {rate}/s: {ok} ok, {failed} failed, {wall:.1f}s, sippy cpu "
                  f"{cpu:.2f}s -> {ok / cpu if cpu else 0:.0f} calls/cpu-s", flush=True)
    report = render(rows, args)
    for warning in warnings:
        report += f"\n\nDuring this run pbxd's log showed: {warning}"
    print(report)
    if not args.no_write:
        write_section("bench/calls.py", report)


def run_sippy(python: str, workdir: Path, rates: list[int], seconds: int,
              hold: int) -> list[tuple[int, int, int, float, float]]:
    """(rate, successful, failed, wall seconds, sippy CPU seconds) of SIPp's UAC calling a
    SIPp UAS through sippy's b2bua_simple, for each rate."""
    workdir.mkdir(parents=True, exist_ok=True)
    uas_xml = workdir / "uas.xml"
    # SIPp prints its built-in scenario and exits 99
    scenario = subprocess.run(["sipp", "-sd", "uas"], capture_output=True, text=True).stdout
    if "transport=[transport]" not in scenario:
        raise SystemExit("sipp -sd uas did not print the expected UAS scenario")
    uas_xml.write_text(scenario.replace("transport=[transport]", "transport=udp"))
    uas_port, b2bua_port = free_port(), free_port()
    uas = SippProcess(str(uas_xml), None, workdir / "uas", local_port=uas_port, calls=None,
                      timeout=3600).start()
    uas.wait_ready()
    log = open(workdir / "b2bua.out", "w")  # noqa: SIM115 (closed below)
    b2bua = subprocess.Popen(
        [python, "-m", "sippy.b2bua_simple", "-f", "-l", "127.0.0.1", "-p", str(b2bua_port),
         "-n", f"127.0.0.1:{uas_port}", "-L", str(workdir / "b2bua.log")],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    results = []
    try:
        time.sleep(2)  # sippy prints nothing when it is ready; it binds within a second
        if b2bua.poll() is not None:
            raise SystemExit(f"sippy exited at once: see {workdir / 'b2bua.out'}")
        for rate in rates:
            cpu0 = cpu_seconds(b2bua.pid)
            ok, failed, wall = run_rate(f"127.0.0.1:{b2bua_port}", workdir / f"run{rate}", rate,
                                        seconds, hold, None, [], "sn:uac")
            results.append((rate, ok, failed, wall, cpu_seconds(b2bua.pid) - cpu0))
    finally:
        b2bua.terminate()
        b2bua.wait()
        log.close()
        uas.stop()
    return results


def render(rows, args) -> str:
    load = os.getloadavg()[0]
    lines = [
        f"Measured by `python bench/calls.py --rates {args.rates} --seconds {args.seconds} "
        f"--hold {args.hold}` on CPython {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}, load average {load:.2f} on {os.cpu_count()} CPUs.",
        "",
        "| run | offered calls/s | completed | failed | failure % | CPU s of pbxd (sippy) "
        "| calls per CPU-s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    best = {"pbxd": 0, "reference": 0, "sippy": 0}
    for run, rate, ok, failed, _wall, cpu in rows:
        total = ok + failed
        pct = 100.0 * failed / total if total else 100.0
        if pct < 0.5 and total >= rate * args.seconds * 0.995:
            best[run] = max(best[run], rate)
        # sippy: calls handled (its failures are its own reordering, see run_sippy)
        per_cpu = f"{(ok + failed if run == 'sippy' else ok) / cpu:,.0f}" if cpu else "n/a"
        cpu_text = f"{cpu:.2f}" if cpu else "n/a"
        lines.append(f"| {run} | {rate} | {ok:,} | {failed:,} | {pct:.2f} | {cpu_text} | {per_cpu} |")
    ratio = best["pbxd"] / best["reference"] if best["reference"] else 0.0
    lines += ["", f"Highest offered rate with < 0.5 % failures: pbxd {best['pbxd']}/s, "
              f"reference (SIPp to SIPp) {best['reference']}/s, ratio {ratio:.2f} "
              "(only rates in the list were tried)."]
    clean = [ok / cpu for run, rate, ok, failed, _w, cpu in rows
             if run == "pbxd" and cpu and failed <= 0.005 * (ok + failed)]
    best_per_cpu = max(clean, default=0.0)
    # sippy's failures are 180s it sends after the 200 (its worker threads race), which
    # SIPp's UAC counts as errors although sippy did the call's work: counted as handled
    sippy = {rate: (ok + failed) / cpu for run, rate, ok, failed, _w, cpu in rows
             if run == "sippy" and cpu}
    if sippy:
        pbxd = {rate: ok / cpu for run, rate, ok, _f, _w, cpu in rows if run == "pbxd" and cpu}
        same = ", ".join(f"{rate}/s {pbxd[rate] / sippy[rate]:.2f}×" for rate in sorted(sippy)
                         if rate in pbxd)
        best_sippy = max(sippy.values())
        lines += ["", f"sippy's b2bua_simple (no authentication, no media, no CDR): "
                  f"{min(sippy.values()):,.0f}-{best_sippy:,.0f} calls handled per CPU-second "
                  f"of sippy. pbxd per CPU-second ÷ sippy's at the same offered rate: {same}; "
                  f"best ÷ best: {best_per_cpu / best_sippy:.2f}× (the issue's target, 600 where "
                  "sippy managed about 200, is 3×)."]
    lines += ["", f"Target: at least {TARGET} calls per CPU-second of pbxd: "
              f"**{'met' if best_per_cpu >= TARGET else 'missed'}** (best figure at < 0.5 % "
              f"failures: {best_per_cpu:,.0f})."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
