"""The scheduler bench: 1,000 jobs on one scheduler.

::

    chrt -f 50 .venv/bin/python bench/scheduler.py [--jobs 1000] [--minutes 3]
        [--idle-seconds 60] [--smoke] [--output DIR]

Two measurements, each with a fresh control plane (SQLite) and one
``tapyard scheduler run`` process on the real clock:

1. **tick-to-start lag.** ``--jobs`` jobs of the sample connector (no records),
   spread over the minutes (job *i* fires at minutes ``i % 20`` + 20k, so a
   twentieth of them fire together at each minute's tick). For every run that
   came due in ``--minutes`` minutes: *dispatch lag* is from the instant it was
   due (its tick, plus its jitter: 0 unless ``--jitter``) to the moment the scheduler
   claimed it and started its process; *start lag* is to the moment that
   process began the sync (Python and the connector loaded: the machine's
   speed more than the scheduler's).
2. **idle CPU.** ``--jobs`` jobs that fire once a year, and the scheduler left
   alone for ``--idle-seconds``: its CPU time (user + system, from
   /proc/PID/stat) over the wall time.

Results: a JSON object on stdout and ``scheduler.json`` in ``--output``.
Targets (issue 17): dispatch lag p99 < 1 s; idle CPU < 1%.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"TAPYARD_HOME": str(home), "TAPYARD_DATABASE_URL": f"sqlite:///{home / 'control.db'}", "TAPYARD_QUIET": "1"})
    env.pop("TAPYARD_TEST_CLOCK", None)
    return env


def _define(env: dict[str, str], count: int, cron: Any, jitter: float = 0.0) -> None:
    """``count`` jobs stored through the control plane's own apply (checked like the CLI's)."""
    code = (
        "import json, sys\n"
        "from tapyard.jobs._checks import check_job\n"
        "from tapyard.jobs._store import ControlPlane\n"
        "defs = json.load(sys.stdin)\n"
        "first = check_job(defs[0])\n"
        "from tapyard.jobs._spec import JobSpec\n"
        "ControlPlane().apply([first] + [JobSpec.model_validate(d) for d in defs[1:]], prune=False)\n"
    )
    home = Path(env["TAPYARD_HOME"])
    defs = [
        {
            "name": f"job{i:04d}", "connector": "sample", "cron": cron(i), "config": {"records_per_stream": 0},
            "to": f"jsonl:///{home / 'out' / f'job{i:04d}.jsonl'}", "overlap": "allow", "catchup": "none",
            "retries": 0, "timeout": "10m", "jitter": jitter,
        }
        for i in range(count)
    ]
    (home / "out").mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code], input=json.dumps(defs), text=True, env=env, check=True)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _scheduler(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tapyard", "scheduler", "run", *args], env=env,
        stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(400)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def lag(jobs: int, minutes: float, workdir: Path, jitter: float = 0.0) -> dict[str, Any]:
    home = workdir / "lag"
    env = _env(home)
    home.mkdir(parents=True)
    _define(env, jobs, lambda i: f"{i % 20}-59/20 * * * *", jitter)
    # start 30 s before a minute's tick, and stop 30 s after the last one measured:
    # every run that comes due has its tick, and time to end before the stop
    time.sleep((30 - time.time() % 60) % 60)
    began = time.time()
    proc = _scheduler(env, home / "scheduler.log", "--max-runs", "200", "--poll", "1", "--drain", "300")
    time.sleep(minutes * 60)
    stopped = time.time()
    _stop(proc)
    import sqlite3

    con = sqlite3.connect(home / "control.db")
    rows = con.execute(
        "SELECT scheduled_at, not_before, claimed_at, started_at, status FROM runs "
        "WHERE scheduled_at >= ? AND not_before < ? - 5",
        (began, stopped),
    ).fetchall()
    con.close()
    dispatch = [c - nb for _, nb, c, _, _ in rows if c is not None]
    start = [s - nb for _, nb, _, s, _ in rows if s is not None]
    statuses: dict[str, int] = {}
    for *_, status in rows:
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "jobs": jobs, "minutes": minutes, "jitter_s": jitter, "runs_due": len(rows), "statuses": statuses,
        "dispatch_lag_s": {"p50": _percentile(dispatch, 0.5), "p99": _percentile(dispatch, 0.99), "max": max(dispatch, default=float("nan"))},
        "start_lag_s": {"p50": _percentile(start, 0.5), "p99": _percentile(start, 0.99), "max": max(start, default=float("nan"))},
    }


def idle(jobs: int, seconds: float, workdir: Path) -> dict[str, Any]:
    home = workdir / "idle"
    env = _env(home)
    home.mkdir(parents=True)
    _define(env, jobs, lambda i: f"{i % 60} {i % 24} 1 1 *")
    proc = _scheduler(env, home / "scheduler.log", "--poll", "1")
    time.sleep(5)  # start-up (imports, first read of the jobs) is not idle time
    cpu0, wall0 = _cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, wall1 = _cpu_seconds(proc.pid), time.monotonic()
    _stop(proc)
    return {"jobs": jobs, "seconds": round(wall1 - wall0, 1), "cpu_seconds": round(cpu1 - cpu0, 3),
            "cpu_percent": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="0: skip the idle measurement")
    parser.add_argument("--smoke", action="store_true", help="50 jobs, one minute, 10 s idle: checks the bench runs")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--jitter", type=float, default=0.0, help="each job's jitter, seconds (spreads a tick's runs)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (control planes, scheduler logs)")
    args = parser.parse_args()
    if args.smoke:
        args.jobs, args.minutes, args.idle_seconds = 50, 1.0, 10.0
    tmp = tempfile.mkdtemp(prefix="tapyard-sched-bench-")
    try:
        result = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_before": os.getloadavg(),
            "idle": idle(args.jobs, args.idle_seconds, Path(tmp)) if args.idle_seconds > 0 else None,
            "lag": lag(args.jobs, args.minutes, Path(tmp), args.jitter),
            "load_after": os.getloadavg(),
        }
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "scheduler.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    ok = result["lag"]["runs_due"] > 0 and result["lag"]["statuses"].get("ok", 0) == result["lag"]["runs_due"]

    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
