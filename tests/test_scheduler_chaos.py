"""Chaos: three schedulers and 20 jobs of the sample connector under a fast test
clock, with schedulers and runs killed with SIGKILL at random for a bounded time.
Afterwards: no tick ran twice, no tick is missing, no run is left running, and
every destination holds exactly what its source holds.

TAPYARD_CHAOS_SECONDS sets how long the killing lasts (default 40);
TAPYARD_CHAOS_DATABASE=postgresql runs it against a real PostgreSQL control
plane instead of SQLite."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from tapyard.jobs._clock import write_test_clock
from tapyard.jobs._cron import Schedule
from tests.jobs_helpers import (
    assert_destination_equals_source,
    rows,
    start_scheduler,
    tapyard,
    tapyard_env,
    wait_for,
)

pytestmark = pytest.mark.reliability

UTC = dt.UTC
JOBS = 20
RATE = 6.0  # clock seconds per real second: a "*/3" job ticks every 30 s


@pytest.mark.timeout(int(os.environ.get("TAPYARD_CHAOS_SECONDS", "40")) + 600)
def test_chaos_three_schedulers_twenty_jobs_random_sigkills(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    seconds = float(os.environ.get("TAPYARD_CHAOS_SECONDS", "40"))
    rng = random.Random(int(os.environ.get("TAPYARD_CHAOS_SEED", "17")))
    start = dt.datetime(2026, 7, 1, 9, 0, 30, tzinfo=UTC)
    clock = tmp_path / "clock.json"
    write_test_clock(clock, start, rate=0)
    if os.environ.get("TAPYARD_CHAOS_DATABASE") == "postgresql":
        database = str(request.getfixturevalue("postgres_url"))
    else:
        database = f"sqlite:///{tmp_path / 'control.db'}"
    env = tapyard_env(tmp_path / "home", database, TAPYARD_TEST_CLOCK=str(clock))
    configs = {}
    definitions = []
    for i in range(JOBS):
        configs[f"job{i:02d}"] = {"records_per_stream": 150 + 10 * i, "page_size": 10, "latency_ms": 5, "seed": i}
        definitions.append({
            "name": f"job{i:02d}", "connector": "sample", "cron": f"{i % 3}-59/3 * * * *",
            "timezone": "Europe/Berlin", "to": f"sqlite:///{tmp_path / f'dest{i:02d}.db'}",
            "config": configs[f"job{i:02d}"], "overlap": "allow", "catchup": "all", "catchup_window": "1h",
            "retries": 20, "backoff": "0.2s", "backoff_max": "1s", "timeout": "5m",
        })
    (tmp_path / "jobs.json").write_text(json.dumps({"jobs": definitions}))
    applied = tapyard(env, "jobs", "apply", str(tmp_path / "jobs.json"))  # JSON is YAML
    assert applied.returncode == 0, applied.stderr

    args = ("--poll", "0.1", "--heartbeat", "1", "--max-runs", "4", "--drain", "0")
    procs = [start_scheduler(env, *args, log=tmp_path / f"s{i}.log") for i in range(3)]
    kills = {"scheduler": 0, "run": 0}
    try:
        wait_for(lambda: len(rows(database, "SELECT name FROM leases")) == 3, 60, "three schedulers")
        write_test_clock(clock, start, rate=RATE)
        began = time.time()
        while time.time() - began < seconds:
            time.sleep(rng.uniform(1.0, 3.0))
            if rng.random() < 0.4:
                i = rng.randrange(3)
                os.kill(procs[i].pid, signal.SIGKILL)
                procs[i].wait()
                kills["scheduler"] += 1
                procs[i] = start_scheduler(env, *args, log=tmp_path / f"s{i}.log")
            else:
                running = rows(database, "SELECT pid FROM runs WHERE status = 'running' AND pid IS NOT NULL")
                if running:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(rng.choice(running).pid, signal.SIGKILL)
                        kills["run"] += 1
        # A loaded machine may start few runs while the dice roll: kill what is
        # missing (the test's point is runs and schedulers killed mid-flight), within a bound.
        catch_up = time.time() + 2 * seconds
        while kills["run"] < 3 and time.time() < catch_up:
            running = rows(database, "SELECT pid FROM runs WHERE status = 'running' AND pid IS NOT NULL")
            if not running:
                time.sleep(0.2)
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(rng.choice(running).pid, signal.SIGKILL)
                kills["run"] += 1
            time.sleep(rng.uniform(0.5, 1.5))
        while kills["scheduler"] < 3:
            i = rng.randrange(3)
            os.kill(procs[i].pid, signal.SIGKILL)
            procs[i].wait()
            kills["scheduler"] += 1
            procs[i] = start_scheduler(env, *args, log=tmp_path / f"s{i}.log")
            time.sleep(1.0)
        end_at = start + dt.timedelta(seconds=(time.time() - began) * RATE)
        write_test_clock(clock, end_at, rate=0)
        wait_for(
            lambda: not rows(database, "SELECT id FROM runs WHERE status IN ('queued','starting','running','cancelling')"),
            240, "every run to end",
        )
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(60)
    assert kills["scheduler"] >= 3 and kills["run"] >= 3, kills

    ticks = rows(database, "SELECT id, job, scheduled_at, status FROM ticks")
    runs = rows(database, "SELECT * FROM runs")
    assert not [r for r in runs if r.status in ("queued", "starting", "running", "cancelling")], "runs left running"
    for definition in definitions:
        name = definition["name"]
        schedule = Schedule(definition["cron"], definition["timezone"])
        expected = {int(t.timestamp()) for t in schedule.between(start, end_at)}
        fired = {t.scheduled_at for t in ticks if t.job == name}
        assert fired == expected, f"{name}: missing {sorted(expected - fired)}, unexpected {sorted(fired - expected)}"
        for tick in (t for t in ticks if t.job == name):
            attempts = sorted((r for r in runs if r.tick_id == tick.id), key=lambda r: r.attempt)
            assert [r.status for r in attempts].count("ok") == 1, (name, tick.scheduled_at, [(r.attempt, r.status) for r in attempts])
            assert [r.attempt for r in attempts] == list(range(1, len(attempts) + 1))
            for earlier, later in itertools.pairwise(attempts):
                assert later.created_at >= earlier.ended_at, "a retry began before the attempt it follows ended"
        assert_destination_equals_source(definition["to"], configs[name])
    print(f"chaos: {kills}, {len(ticks)} ticks, {len(runs)} runs, "
          f"{sum(1 for r in runs if r.status == 'abandoned')} abandoned")
