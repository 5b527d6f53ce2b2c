"""Scenario m: peak memory of the README's main job as the data set grows.

::

    .venv/bin/python bench/memory.py [--smoke] [--sizes 20000,100000] [--output FILE]

Runs ``tapyard -q sync sample --config '{"records_per_stream": N}' --to
sqlite:///...`` as a child process for each size and reads its peak RSS from
``os.wait4`` (the whole command: the sample connector's HTTP server runs in
the same process). The targets (issue 11): under 120 MB at every size, and
less than 1.3x from the smallest size to the largest (20,000 to 100,000
records per stream; ``--smoke``: 2,000 to 10,000, the same ratio, in seconds).

Run on its own it writes JSON (default ``bench/results/memory.json``) and
exits non-zero when a target is missed; ``bench/run.py`` runs it as scenario
``m``. Peak RSS is a property of the process, not of the machine's load, so
these numbers hold on a busy machine; the wall times do not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

#: peak RSS of the whole `tapyard sync` process, in MB, at any size
PEAK_MB = 120.0
#: how much the peak may grow from the smallest size to the largest
GROWTH = 1.3
SIZES = (20_000, 100_000)
SMOKE_SIZES = (2_000, 10_000)


def _remove_database(workdir: Path, records: int) -> None:
    """The run's SQLite file, its WAL and its ``-locks`` folder, if there."""
    for leftover in workdir.glob(f"memory_{records}.db*"):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()


def measure(records: int, workdir: Path, *, python: str = sys.executable, timeout: float = 1800) -> dict[str, Any]:
    """One sync of ``records`` per stream into a fresh SQLite file: exit, peak RSS, wall time."""
    database = workdir / f"memory_{records}.db"
    _remove_database(workdir, records)
    config = json.dumps({"records_per_stream": records})
    command = [python, "-m", "tapyard", "-q", "sync", "sample", "--config", config,
               "--to", f"sqlite:///{database}"]
    started = time.perf_counter()
    with open(workdir / f"memory_{records}.err", "wb") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                cwd=str(workdir), start_new_session=True)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    row: dict[str, Any] = {
        "records_per_stream": records,
        "records": 3 * records,
        "exit": code,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "command": f"tapyard -q sync sample --config '{config}' --to sqlite:///...",
    }
    if code != 0:
        tail = (workdir / f"memory_{records}.err").read_text(errors="replace").strip().splitlines()[-2:]
        row["error"] = " | ".join(tail) or f"exit {code}"
    if wall > timeout:
        row["error"] = f"took {wall:.0f}s, over {timeout:.0f}s"
    _remove_database(workdir, records)
    return row


def judge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rows against the targets: every peak under :data:`PEAK_MB`, growth under :data:`GROWTH`."""
    failures = [f"{r['records_per_stream']:,} per stream: {r['error']}" for r in rows if r.get("error")]
    peaks = [r["peak_rss_mb"] for r in rows]
    over = [r for r in rows if r["peak_rss_mb"] >= PEAK_MB]
    failures += [f"{r['records_per_stream']:,} per stream: peak RSS {r['peak_rss_mb']} MB, target < {PEAK_MB:g} MB"
                 for r in over]
    growth = round(peaks[-1] / peaks[0], 3) if len(peaks) > 1 and peaks[0] else None
    if growth is not None and growth >= GROWTH:
        failures.append(f"peak RSS grew {growth}x from {rows[0]['records_per_stream']:,} to "
                        f"{rows[-1]['records_per_stream']:,} per stream, target < {GROWTH}x")
    return {
        "targets": {"peak_rss_mb_below": PEAK_MB, "growth_below": GROWTH},
        "growth": growth,
        "ok": not failures,
        "failures": failures,
    }


def run(sizes: tuple[int, ...], workdir: Path, log: Any = None) -> dict[str, Any]:
    """Scenario m as :mod:`bench.run` reports it: one table of rows and the verdict."""
    rows = []
    for size in sizes:
        if log:
            log(f"m: tapyard sync sample, {size:,} records per stream")
        row = measure(size, workdir)
        if log:
            log(f"    peak RSS {row['peak_rss_mb']} MB, {row['wall_s']} s" + (f" [{row['error']}]" if row.get("error") else ""))
        rows.append(row)
    verdict = judge(rows)
    return {
        "title": "Memory: peak RSS of `tapyard sync sample` (server in-process) as the data set grows",
        "tables": [{"rows": rows, **verdict}],
    }


def markdown(scenario: dict[str, Any]) -> list[str]:
    """The scenario's table for bench/results/latest.md."""
    lines: list[str] = []
    for table in scenario["tables"]:
        targets = table["targets"]
        lines += [f"Targets: peak RSS under {targets['peak_rss_mb_below']:g} MB at every size; growth under "
                  f"{targets['growth_below']}x from the smallest size to the largest. Growth: "
                  f"{table['growth'] if table['growth'] is not None else '-'}x; "
                  f"{'met' if table['ok'] else 'MISSED: ' + '; '.join(table['failures'])}.", "",
                  "| records per stream | records | peak RSS MB | wall s | CPU s | exit |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r in table["rows"]:
            lines.append(f"| {r['records_per_stream']:,} | {r['records']:,} | {r['peak_rss_mb']} | {r['wall_s']} | "
                         f"{r['cpu_s']} | {r['exit']} |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Peak RSS of `tapyard sync sample` as the data set grows.")
    parser.add_argument("--smoke", action="store_true", help=f"sizes {SMOKE_SIZES} instead of {SIZES}")
    parser.add_argument("--sizes", default=None, help="comma-separated records per stream, smallest first")
    parser.add_argument("--output", default=str(RESULTS / "memory.json"))
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else (SMOKE_SIZES if args.smoke else SIZES)
    with tempfile.TemporaryDirectory(prefix="tapyard-memory-") as scratch:
        scenario = run(sizes, Path(scratch), log=lambda m: print(m, file=sys.stderr, flush=True))
    scenario.update(
        finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        smoke=args.smoke,
        machine={"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
    )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(scenario, indent=2) + "\n")
    table = scenario["tables"][0]
    print("\n".join(markdown(scenario)))
    for failure in table["failures"]:
        print(f"FAILED {failure}", file=sys.stderr)
    return 0 if table["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
