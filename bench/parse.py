#!/usr/bin/env python3
"""Benchmark of the SIP message layer (not run by pytest).

Times, with time.perf_counter_ns over batches of iterations:
- parse + serialize of a typical INVITE with SDP, a REGISTER and a 200 OK;
- reading Via, From, To, CSeq and Call-ID of a freshly parsed INVITE;
- a reference run in the same invocation (``bytes.split`` of the same INVITE
  into lines and each line into name/value), since these machines are shared
  and noisy: the ratio to the reference is the figure that compares.

Prints median microseconds and messages per second, and rewrites its section
of docs/performance.md between the markers.  Usage: ``python bench/parse.py [--no-write]``.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import write_section  # noqa: E402

from pbxd.sip.parser import parse_message  # noqa: E402
from tests import sipmessages as golden  # noqa: E402

TARGETS = {"parse + serialize INVITE with SDP": 30.0, "read Via, From, To, CSeq, Call-ID": 10.0}


def measure(cases: dict[str, Callable[[], object]], batch: int = 200, rounds: int = 60) -> dict[str, float]:
    """Median time of one call of each case in µs, over ``rounds`` batches of ``batch`` calls.

    The cases are interleaved round by round, so load from other processes on a
    shared machine falls on all of them (and on the reference) alike.
    """
    samples: dict[str, list[float]] = {label: [] for label in cases}
    for fn in cases.values():
        for _ in range(batch):
            fn()
    for _ in range(rounds):
        for label, fn in cases.items():
            t0 = time.perf_counter_ns()
            for _ in range(batch):
                fn()
            samples[label].append((time.perf_counter_ns() - t0) / batch / 1000)
    return {label: statistics.median(values) for label, values in samples.items()}


def measure_reads(data: bytes, batch: int = 200, rounds: int = 60) -> float:
    """Median time of reading the five core headers of a message parsed just before."""
    samples = []
    for _ in range(rounds):
        msgs = [parse_message(data) for _ in range(batch)]
        t0 = time.perf_counter_ns()
        for m in msgs:
            m.top_via  # noqa: B018
            m.from_  # noqa: B018
            m.to  # noqa: B018
            m.cseq  # noqa: B018
            m.call_id  # noqa: B018
        samples.append((time.perf_counter_ns() - t0) / batch / 1000)
    return statistics.median(samples)


def reference(data: bytes) -> Callable[[], object]:
    """The same INVITE split into lines and name/value pairs with bytes methods only."""

    def split() -> object:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        return [line.partition(b":") for line in lines[1:]], body

    return split


def run() -> list[tuple[str, float]]:
    """Run every case; return (label, median µs), the reference last."""
    cases: dict[str, Callable[[], object]] = {}
    for label, data in (
        ("parse + serialize INVITE with SDP", golden.INVITE_SDP),
        ("parse + serialize REGISTER", golden.REGISTER),
        ("parse + serialize 200 OK", golden.OK_200),
    ):
        cases[label] = lambda d=data: parse_message(d).serialize()
    cases["parse only INVITE with SDP"] = lambda: parse_message(golden.INVITE_SDP)
    cases["reference: bytes split of the INVITE"] = reference(golden.INVITE_SDP)
    timed = measure(cases)
    ref = timed.pop("reference: bytes split of the INVITE")
    results = list(timed.items())
    results.append(("read Via, From, To, CSeq, Call-ID", measure_reads(golden.INVITE_SDP)))
    results.append(("reference: bytes split of the INVITE", ref))
    return results


def report(results: list[tuple[str, float]]) -> str:
    """A Markdown table of the results with the ratio to the reference."""
    ref = results[-1][1]
    rows = [
        f"Measured by `python bench/parse.py` on {platform.python_implementation()} "
        f"{platform.python_version()} ({platform.machine()}), {time.strftime('%Y-%m-%d')}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs.",
        "",
        "| case | median µs | messages/s | × reference | target |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, us in results:
        target = TARGETS.get(label)
        verdict = "" if target is None else f"< {target:g} µs {'met' if us < target else 'MISSED'}"
        rows.append(f"| {label} | {us:.2f} | {1e6 / us:,.0f} | {us / ref:.1f} | {verdict} |")
    return "\n".join(rows)


def main() -> None:
    results = run()
    text = report(results)
    print(text)
    if "--no-write" not in sys.argv:
        write_section("bench/parse.py", text)


if __name__ == "__main__":
    main()
