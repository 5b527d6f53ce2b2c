"""The scheduler under faults: a run past its timeout, a run killed with SIGKILL
(its scheduler too), a scheduler drained by SIGTERM."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tapyard.jobs._clock import write_test_clock
from tests.jobs_helpers import (
    assert_destination_equals_source,
    rows,
    schedulers,
    tapyard,
    tapyard_env,
    wait_for,
)

UTC = dt.UTC
TICK = dt.datetime(2026, 6, 1, 12, 0, 20, tzinfo=UTC)  # 20 s after a minute's tick


def _setup(tmp_path: Path, name: str, config: dict[str, object], *options: str) -> tuple[dict[str, str], str, str]:
    """A job firing at TICK's minute under a frozen test clock; (env, control plane URL, destination URL)."""
    clock = tmp_path / "clock.json"
    write_test_clock(clock, TICK - dt.timedelta(minutes=5), rate=0)
    database = f"sqlite:///{tmp_path / 'control.db'}"
    env = tapyard_env(tmp_path / "home", database, TAPYARD_TEST_CLOCK=str(clock))
    dest = f"sqlite:///{tmp_path / 'dest.db'}"
    added = tapyard(env, "jobs", "add", name, "--connector", "sample", "--cron", "0 12 * * *", "--to", dest,
                    "--config", json.dumps(config), *options)
    assert added.returncode == 0, added.stderr
    write_test_clock(clock, TICK, rate=0)
    return env, database, dest


def test_a_run_past_its_timeout_is_stopped_within_5_s_and_marked_timed_out(tmp_path: Path) -> None:
    config = {"records_per_stream": 3000, "page_size": 10, "latency_ms": 100}
    env, database, _ = _setup(tmp_path, "slow", config, "--timeout", "3s", "--retries", "0")
    done = tapyard(env, "scheduler", "run", "--once", "--heartbeat", "1", timeout=60)
    assert done.returncode == 0, done.stderr
    (run,) = rows(database, "SELECT * FROM runs")
    assert run.status == "timed_out", (run.status, run.error)
    assert run.deadline - run.started_at == pytest.approx(3.0, abs=0.01)
    assert run.ended_at - run.deadline < 5.0, f"stopped {run.ended_at - run.deadline:.1f} s after its deadline"
    assert "timed out after 3s" in run.error
    logs = tapyard(env, "runs", "logs", str(run.id)).stdout
    assert "did not stop within 4 s" not in logs, "stopped by force, not by its interrupt"
    # what it committed before the deadline is kept, with the state to resume from
    states = json.loads(tapyard(env, "state", "show", "slow", "--json").stdout)
    assert any(s["resume"] or s["cursor"] for s in states.values())
    status = json.loads(tapyard(env, "runs", "list", "--status", "timed_out", "--json").stdout)
    assert [r["id"] for r in status] == [run.id]


@pytest.mark.timeout(600)
def test_a_sigkilled_run_is_abandoned_within_two_heartbeats_and_its_retry_lands_everything(tmp_path: Path) -> None:
    heartbeat = 1.5
    config = {"records_per_stream": 1500, "page_size": 10, "latency_ms": 20}
    env, database, dest = _setup(tmp_path, "killed", config, "--retries", "2", "--backoff", "0.2s")
    with schedulers(env, 2, "--poll", "0.1", "--heartbeat", str(heartbeat), logs=tmp_path):
        run = wait_for(lambda: rows(database, "SELECT * FROM runs WHERE status = 'running' AND pid IS NOT NULL"), 60, "the run")[0]
        wait_for(lambda: rows(database, "SELECT id FROM runs WHERE heartbeat_at > :t", t=run.started_at + 0.1), 10, "a heartbeat")
        time.sleep(0.7)  # some pages committed
        # the run's machine loses power: the run and the scheduler that started it die at once
        owner_pid = int(run.owner.split(":")[1])
        os.kill(run.pid, signal.SIGKILL)
        os.kill(owner_pid, signal.SIGKILL)
        killed = time.time()
        abandoned = wait_for(
            lambda: rows(database, "SELECT * FROM runs WHERE id = :i AND status = 'abandoned'", i=run.id),
            4 * heartbeat + 10, "the run to be marked abandoned",
        )[0]
        assert abandoned.ended_at - killed <= 2 * heartbeat + 0.3, f"abandoned {abandoned.ended_at - killed:.2f} s after the kill"
        assert "no heartbeat" in abandoned.error
        retry = wait_for(
            lambda: rows(database, "SELECT * FROM runs WHERE retry_of = :i AND status NOT IN ('queued','starting','running')", i=run.id),
            120, "the retry to end",
        )[0]
    assert retry.status == "ok", retry.error
    assert retry.attempt == 2 and retry.scheduled_at == run.scheduled_at
    assert_destination_equals_source(dest, config)
    assert len(rows(database, "SELECT id FROM ticks")) == 1


def test_sigterm_drains_the_scheduler_and_its_runs_finish(tmp_path: Path) -> None:
    config = {"records_per_stream": 400, "page_size": 10, "latency_ms": 20}
    env, database, dest = _setup(tmp_path, "drained", config)
    with schedulers(env, 1, "--poll", "0.1", "--heartbeat", "1", "--drain", "60", logs=tmp_path) as (proc,):
        wait_for(lambda: rows(database, "SELECT id FROM runs WHERE status = 'running'"), 60, "the run")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(90) == 143
    (run,) = rows(database, "SELECT * FROM runs")
    assert run.status == "ok", run.error
    assert not rows(database, "SELECT name FROM leases"), "the scheduler's lease is released"
    assert_destination_equals_source(dest, config)
