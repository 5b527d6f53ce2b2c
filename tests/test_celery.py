"""Runs on Celery workers (issue 18 item 3): the scheduler hands claimed runs to
``tapyard worker`` processes over a real redis-server, the control plane on a real
PostgreSQL; the same end-to-end as the in-process path, and a worker SIGKILLed
mid-run: its run is marked abandoned, retried on a worker, and the destination
ends equal to the source."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapyard.jobs._clock import write_test_clock
from tapyard.testing import RedisServer
from tests.jobs_helpers import (
    assert_destination_equals_source,
    rows,
    schedulers,
    stop_groups,
    tapyard,
    tapyard_env,
    wait_for,
)

pytest.importorskip("celery")

UTC = dt.UTC
TICK = dt.datetime(2026, 6, 1, 12, 0, 20, tzinfo=UTC)


@contextlib.contextmanager
def workers(env: dict[str, str], count: int, logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    for i in range(count):
        out = open(logs / f"worker-{i}.log", "ab")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tapyard", "worker", "--concurrency", "1"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
        ))
    try:
        yield procs
    finally:
        stop_groups(procs, 20)


def _setup(tmp_path: Path, database: str, broker: str, config: dict[str, object], *options: str) -> tuple[dict[str, str], str]:
    clock = tmp_path / "clock.json"
    write_test_clock(clock, TICK - dt.timedelta(minutes=5), rate=0)
    env = tapyard_env(tmp_path / "home", database, TAPYARD_TEST_CLOCK=str(clock), TAPYARD_BROKER_URL=broker)
    dest = f"sqlite:///{tmp_path / 'dest.db'}"
    added = tapyard(env, "jobs", "add", "remote", "--connector", "sample", "--cron", "0 12 * * *", "--to", dest,
                    "--config", json.dumps(config), *options)
    assert added.returncode == 0, added.stderr
    write_test_clock(clock, TICK, rate=0)
    return env, dest


@pytest.mark.timeout(300)
def test_a_run_on_a_celery_worker_lands_like_a_local_one(tmp_path: Path, postgres_url: str, redis: RedisServer) -> None:
    config = {"records_per_stream": 300, "page_size": 50}
    env, dest = _setup(tmp_path, postgres_url, redis.url, config)
    with workers(env, 2, tmp_path):
        done = tapyard(env, "scheduler", "run", "--once", "--executor", "celery", "--heartbeat", "1", timeout=60)
        assert done.returncode == 0, done.stderr
        (run,) = wait_for(
            lambda: rows(postgres_url, "SELECT * FROM runs WHERE status NOT IN ('queued','starting','running')"),
            120, "the run to end on a worker",
        )
    assert run.status == "ok", run.error
    assert run.pid not in (None, os.getpid())
    assert_destination_equals_source(dest, config)
    assert len(rows(postgres_url, "SELECT id FROM ticks")) == 1


@pytest.mark.timeout(600)
def test_a_worker_sigkilled_mid_run_is_abandoned_and_its_retry_lands_everything(
    tmp_path: Path, postgres_url: str, redis: RedisServer
) -> None:
    heartbeat = 1.5
    config = {"records_per_stream": 1500, "page_size": 10, "latency_ms": 20}
    env, dest = _setup(tmp_path, postgres_url, redis.url, config, "--retries", "2", "--backoff", "0.2s")
    with workers(env, 2, tmp_path), schedulers(env, 1, "--executor", "celery", "--poll", "0.1",
                                                 "--heartbeat", str(heartbeat), logs=tmp_path):
        run = wait_for(lambda: rows(postgres_url, "SELECT * FROM runs WHERE status = 'running' AND pid IS NOT NULL"),
                       90, "the run on a worker")[0]
        wait_for(lambda: rows(postgres_url, "SELECT id FROM runs WHERE heartbeat_at > :t", t=run.started_at + 0.1),
                 20, "a heartbeat")
        time.sleep(0.7)  # some pages committed
        os.kill(run.pid, signal.SIGKILL)  # the worker's process running it dies
        killed = time.time()
        abandoned = wait_for(
            lambda: rows(postgres_url, "SELECT * FROM runs WHERE id = :i AND status = 'abandoned'", i=run.id),
            4 * heartbeat + 10, "the run to be marked abandoned",
        )[0]
        assert abandoned.ended_at - killed <= 2 * heartbeat + 1.0
        retry = wait_for(
            lambda: rows(postgres_url, "SELECT * FROM runs WHERE retry_of = :i AND status NOT IN ('queued','starting','running')", i=run.id),
            180, "the retry to end",
        )[0]
    assert retry.status == "ok", retry.error
    assert retry.attempt == 2 and retry.pid != run.pid
    assert_destination_equals_source(dest, config)


def test_the_celery_executor_without_a_broker_is_one_line(tmp_path: Path) -> None:
    env = tapyard_env(tmp_path / "home", f"sqlite:///{tmp_path / 'c.db'}")
    env.pop("TAPYARD_BROKER_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    done = tapyard(env, "scheduler", "run", "--once", "--executor", "celery")
    assert done.returncode == 1 and "TAPYARD_BROKER_URL" in done.stderr and "Traceback" not in done.stderr
