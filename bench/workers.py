"""Scenario w: one run's partitions spread over Celery workers, one worker against two.

::

    .venv/bin/python bench/workers.py [--smoke] [--records 64000] [--latency-ms 50]
        [--page-size 100] [--repeat 1] [--output FILE]

bench/server.py serves ``--records`` Stripe-like charges, each response
``--latency-ms`` late; the ``benchapi`` connector (bench/plugin, found by its
entry point) reads them as one stream in 8 partitions. A job with
``spread: partitions`` syncs them into PostgreSQL on the Celery executor: a
``tapyard scheduler run --executor celery`` fires it, its first worker splits it
into 8 units, and ``tapyard worker --concurrency 1`` processes (one, then two, on
this machine) run the units. Each trial has a fresh control plane and destination
(a database of its own on one PostgreSQL, started here by
``tapyard.testing.postgres_server``) on one redis-server (``redis_server``).

The wall time of a trial is the run's, as its control plane recorded it: from the
moment its tick queued it to the moment its last unit ended (the split, every
unit's claim, start-up, sync and commit included). Each trial checks that the run
ended ok with every record, and counts the worker processes that ran units.
With ``--repeat`` the trials alternate (1, 2, 1, 2, ...) and the medians are
compared. Target (issue 18): two workers >= 1.8x one.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PLUGIN = BENCH / "plugin"
TICK = dt.datetime(2026, 6, 1, 12, 0, 20, tzinfo=dt.UTC)
SIZE = 64_000
SMOKE_SIZE = 1_600
TARGET = 1.8


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    out = open(log, "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        out.close()


@contextlib.contextmanager
def _bench_server(records: int, latency_ms: float) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "server.py"), "--token", "bench", "--streams", f"charges:{records}",
         "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"bench/server.py did not start: {line[:200]!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(10)


def _rows(url: str, sql: str, **params: Any) -> list[Any]:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())
    finally:
        engine.dispose()


def _wait_for_workers(broker: str, count: int, timeout: float = 120.0) -> None:
    from tapyard.jobs import celery_app

    app = celery_app(broker)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=0.5) or []) >= count:
            return
    raise RuntimeError(f"{count} Celery workers did not answer within {timeout:.0f} s")


def trial(workers: int, *, database: str, broker: str, base_url: str, records: int, page_size: int,
          workdir: Path) -> dict[str, Any]:
    """One spread run on ``workers`` single-process Celery workers; its figures."""
    from tapyard.jobs._clock import write_test_clock

    home = workdir / f"home-{workers}-{time.monotonic_ns()}"
    home.mkdir(parents=True)
    clock = home / "clock.json"
    write_test_clock(clock, TICK - dt.timedelta(minutes=5), rate=0)
    env = dict(os.environ)
    env.update({
        "TAPYARD_HOME": str(home), "TAPYARD_DATABASE_URL": database, "TAPYARD_BROKER_URL": broker,
        "TAPYARD_TEST_CLOCK": str(clock), "TAPYARD_QUIET": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(PLUGIN), os.environ.get("PYTHONPATH", "")) if p),
    })
    config = {"base_url": base_url, "token": "bench", "page_size": page_size}
    added = subprocess.run(
        [sys.executable, "-m", "tapyard", "jobs", "add", "wide", "--connector", "benchapi", "--cron", "0 12 * * *",
         "--to", f"{database}?schema=dest", "--config", json.dumps(config), "--spread", "partitions",
         "--timeout", "30m"],
        env=env, capture_output=True, text=True, check=False,
    )
    if added.returncode:
        raise RuntimeError(f"jobs add failed: {added.stderr.strip()[:300]}")
    with contextlib.ExitStack() as stack:
        for i in range(workers):
            stack.enter_context(_process([sys.executable, "-m", "tapyard", "worker", "--concurrency", "1"], env,
                                         home / f"worker-{i}.log"))
        _wait_for_workers(broker, workers)
        write_test_clock(clock, TICK, rate=0)
        stack.enter_context(_process(
            [sys.executable, "-m", "tapyard", "scheduler", "run", "--executor", "celery", "--poll", "0.1",
             "--heartbeat", "2"], env, home / "scheduler.log"))
        deadline = time.monotonic() + 1800
        parent = None
        while time.monotonic() < deadline:
            done = _rows(database, "SELECT * FROM runs WHERE parent_id IS NULL AND status NOT IN "
                         "('queued','starting','running','cancelling')")
            if done:
                parent = done[0]
                break
            time.sleep(0.2)
    if parent is None:
        raise RuntimeError("the spread run did not end within 30 minutes")
    units = _rows(database, "SELECT * FROM runs WHERE parent_id = :p", p=parent.id)
    landed = _rows(database, "SELECT count(*) AS n FROM dest.charges")[0].n
    return {
        "workers": workers,
        "status": parent.status,
        "error": parent.error,
        "wall_s": round(parent.ended_at - parent.created_at, 3),
        "records": parent.records,
        "landed": landed,
        "requests": parent.requests,
        "units": len(units),
        "unit_s_median": round(statistics.median(u.ended_at - u.started_at for u in units if u.started_at), 3),
        # tick to units queued (the parent's claim, its worker's start-up, the split),
        # then to the first unit's start, and from the last unit's end to the run's
        "split_s": round(min(u.created_at for u in units) - parent.created_at, 3),
        "first_start_s": round(min(u.started_at for u in units if u.started_at) - min(u.created_at for u in units), 3),
        "units_s": round(max(u.ended_at for u in units) - min(u.started_at for u in units if u.started_at), 3),
        "worker_processes": len({u.pid for u in units}),
    }


def run(records: int, latency_ms: float, page_size: int, repeat: int, workdir: Path,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """The scenario: ``repeat`` trials each of one and two workers, alternating."""
    from tapyard.testing import postgres_server, redis_server

    trials: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    failures: list[str] = []
    with _bench_server(records, latency_ms) as base_url, redis_server() as redis, postgres_server() as pg:
        for i in range(max(1, repeat)):
            for workers in (1, 2):
                database = pg.create_database(f"w{workers}_{i}")
                log(f"w: {records:,} records in 8 partitions, {latency_ms:g} ms latency, {workers} worker(s)")
                row = trial(workers, database=database, broker=redis.url, base_url=base_url, records=records,
                            page_size=page_size, workdir=workdir)
                if row["status"] != "ok" or row["landed"] != records or row["records"] != records:
                    failures.append(f"w: {workers} worker(s): {row['status']}, {row['landed']} of {records} landed")
                trials[workers].append(row)
    rows = []
    for workers, found in trials.items():
        found.sort(key=lambda r: r["wall_s"])
        row = dict(found[len(found) // 2])
        row["label"] = f"{workers} worker{'s' if workers > 1 else ''} (concurrency 1 each)"
        row["walls"] = [r["wall_s"] for r in trials[workers]]
        rows.append(row)
    speedup = rows[0]["wall_s"] / rows[1]["wall_s"] if rows[1]["wall_s"] else None
    rows[1]["x_one_worker"] = None if speedup is None else round(speedup, 2)
    missed = [] if speedup is None or speedup >= TARGET else [f"w: two workers {speedup:.2f}x one, under the {TARGET}x target"]
    return {
        "title": "one run's partitions over Celery workers: one worker against two",
        "tables": [{"records": records, "latency_ms": latency_ms, "page_size": page_size, "partitions": 8,
                    "rows": rows}],
        "failures": failures,  # a run that did not land everything
        "missed": missed,  # the target (not a failure at smoke size, which measures nothing)
    }


def markdown(scenario: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for table in scenario["tables"]:
        lines += [f"### {table['records']:,} records, {table['partitions']} partitions, pages of "
                  f"{table['page_size']}, {table['latency_ms']:g} ms per response", "",
                  "| workers | wall s | runs wall s | x one worker | split s | to first unit s | units s | units | "
                  "worker processes | unit s (median) | records | requests | status |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in table["rows"]:
            lines.append(
                f"| {r['label']} | {r['wall_s']:.2f} | {', '.join(f'{w:.2f}' for w in r['walls'])} | "
                f"{r.get('x_one_worker') or '-'} | {r['split_s']:.2f} | {r['first_start_s']:.2f} | "
                f"{r['units_s']:.2f} | {r['units']} | {r['worker_processes']} | {r['unit_s_median']:.2f} | "
                f"{r['records']:,} | {r['requests']:,} | {r['status']} |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_SIZE:,} records: checks the scenario works")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    records = SMOKE_SIZE if args.smoke else (args.records or SIZE)
    workdir = Path(tempfile.mkdtemp(prefix="tapyard-bench-w-"))
    try:
        out = run(records, args.latency_ms, args.page_size, args.repeat, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out["load"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(out, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    print("\n".join(markdown(out)), file=sys.stderr)
    return 1 if out["failures"] or (out["missed"] and not args.smoke) else 0


if __name__ == "__main__":
    sys.exit(main())
