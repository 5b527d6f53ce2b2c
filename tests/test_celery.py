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
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapyard.jobs._clock import write_test_clock
from tapyard.testing import RedisServer
from tests.jobs_helpers import (
    _free_port,
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


def _add(env: dict[str, str], name: str, cron: str, dest: str, config: dict[str, object], *options: str) -> None:
    added = tapyard(env, "jobs", "add", name, "--connector", "sample", "--cron", cron, "--to", dest,
                    "--config", json.dumps(config), *options)
    assert added.returncode == 0, added.stderr


@pytest.mark.timeout(300)
def test_a_run_waiting_for_a_busy_worker_is_not_abandoned_and_runs_once_the_worker_is_free(
    tmp_path: Path, postgres_url: str, redis: RedisServer
) -> None:
    """One worker of concurrency 1 busy with a slow run; a second job comes due: its run
    waits in the broker far past the start allowance and the queue timeout (the worker
    is at work all along), is sent again meanwhile, is never abandoned, and runs once
    the worker is free: one run, attempt 1, ok."""
    heartbeat, allowance, queue_timeout = 0.5, 1.0, 3.0
    clock = tmp_path / "clock.json"
    write_test_clock(clock, TICK - dt.timedelta(minutes=5), rate=0)
    broker = f"redis://{redis.host}:{redis.port}/2"  # a queue of its own: no other test's messages
    env = tapyard_env(tmp_path / "home", postgres_url, TAPYARD_TEST_CLOCK=str(clock), TAPYARD_BROKER_URL=broker)
    slow = {"records_per_stream": 1500, "page_size": 10, "latency_ms": 60}
    _add(env, "slow", "0 12 * * *", f"sqlite:///{tmp_path / 'slow.db'}", slow)
    _add(env, "next", "1 12 * * *", f"sqlite:///{tmp_path / 'next.db'}", {"records_per_stream": 50})
    write_test_clock(clock, TICK, rate=0)
    port = _free_port()
    with workers(env, 1, tmp_path), schedulers(
        env, 1, "--executor", "celery", "--poll", "0.1", "--heartbeat", str(heartbeat),
        "--start-allowance", str(allowance), "--queue-timeout", str(queue_timeout), "--metrics-port", str(port),
        logs=tmp_path,
    ):
        wait_for(lambda: rows(postgres_url, "SELECT id FROM runs WHERE job = 'slow' AND status = 'running'"),
                 90, "the slow run on the worker")
        write_test_clock(clock, TICK + dt.timedelta(minutes=1), rate=0)  # the second job comes due
        (waiting,) = wait_for(lambda: rows(postgres_url, "SELECT * FROM runs WHERE job = 'next'"), 30, "the second run")
        # sent again while it waits (its heartbeat_at says when it was last sent)
        wait_for(lambda: rows(postgres_url, "SELECT id FROM runs WHERE job = 'next' AND status = 'starting' "
                                            "AND heartbeat_at > claimed_at + :a", a=allowance), 30, "a second sending")
        shown = tapyard(env, "runs", "show", str(waiting.id))
        assert shown.returncode == 0 and "status: starting" in shown.stdout, shown.stdout
        assert "for a worker to take it" in shown.stdout
        status = tapyard(env, "status", "--json")
        assert status.returncode == 0, status.stderr
        (entry,) = [j for j in json.loads(status.stdout)["jobs"] if j["job"] == "next"]
        assert (entry["running"], entry["running_status"]) == (waiting.id, "starting")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        (gauge,) = [x for x in metrics.splitlines() if x.startswith("tapyard_oldest_waiting_run_seconds ")]
        assert float(gauge.split()[-1]) > allowance
        assert 'tapyard_runs{status="starting"} 1.0' in metrics
        done = wait_for(lambda: len(rows(postgres_url, "SELECT id FROM runs WHERE status NOT IN "
                                                      "('queued','starting','running','cancelling')")) >= 2
                        and rows(postgres_url, "SELECT * FROM runs ORDER BY id"), 180, "both runs to end", step=0.5)
    first, second = done
    assert (first.job, first.status) == ("slow", "ok"), first.error
    assert (second.job, second.status, second.attempt, second.error) == ("next", "ok", 1, None)
    # it waited for the busy worker well past the allowance and the queue timeout, and
    # started only once the slow run had ended
    assert second.started_at - second.claimed_at > 1.5 * heartbeat + allowance + queue_timeout
    assert second.started_at >= first.ended_at
    assert len(rows(postgres_url, "SELECT id FROM runs WHERE job = 'next'")) == 1  # no retry


@pytest.mark.timeout(120)
def test_a_run_no_worker_takes_ends_by_the_queue_timeout_in_one_line(
    tmp_path: Path, postgres_url: str, redis: RedisServer
) -> None:
    import redis as redis_client

    queue_timeout = 2.0
    broker = f"redis://{redis.host}:{redis.port}/3"  # no worker listens here
    env, _ = _setup(tmp_path, postgres_url, broker, {"records_per_stream": 10}, "--retries", "0")
    with schedulers(env, 1, "--executor", "celery", "--poll", "0.1", "--heartbeat", "0.5",
                    "--start-allowance", "0.5", "--queue-timeout", str(queue_timeout), logs=tmp_path):
        (run,) = wait_for(
            lambda: rows(postgres_url, "SELECT * FROM runs WHERE status NOT IN ('queued','starting','running')"),
            60, "the run to end",
        )
    client = redis_client.Redis.from_url(broker)
    try:
        sent = client.llen("tapyard")  # the first sending and those sent again, none taken
        client.flushdb()
    finally:
        client.close()
    assert sent >= 2
    assert run.status == "timed_out" and run.started_at is None
    assert queue_timeout <= run.ended_at - run.claimed_at <= queue_timeout + 5
    assert re.match(r"waited \d+ s in the Celery queue with no worker taking it", run.error), run.error
    assert "start tapyard worker" in run.error and "--queue-timeout" in run.error and "\n" not in run.error
    assert len(rows(postgres_url, "SELECT id FROM runs")) == 1
    listed = tapyard(env, "runs", "list")
    assert listed.returncode == 0 and "timed_out" in listed.stdout and "Traceback" not in listed.stderr


@pytest.mark.timeout(120)
def test_cancelling_a_run_waiting_for_a_worker_ends_it_at_once_and_no_worker_starts_it(
    tmp_path: Path, postgres_url: str, redis: RedisServer
) -> None:
    import redis as redis_client

    broker = f"redis://{redis.host}:{redis.port}/4"
    env, _ = _setup(tmp_path, postgres_url, broker, {"records_per_stream": 10})
    sent = tapyard(env, "scheduler", "run", "--once", "--executor", "celery", timeout=60)
    assert sent.returncode == 0, sent.stderr
    (run,) = rows(postgres_url, "SELECT * FROM runs WHERE status = 'starting'")  # in the broker, no worker yet
    cancelled = tapyard(env, "runs", "cancel", str(run.id))
    assert cancelled.returncode == 0 and f"run {run.id} cancelled" in cancelled.stdout, cancelled.stderr
    client = redis_client.Redis.from_url(broker)
    try:
        assert client.llen("tapyard") == 1
        with workers(env, 1, tmp_path):  # a worker takes the message later: the run is not started
            wait_for(lambda: client.llen("tapyard") == 0, 60, "the worker to take the message")
            time.sleep(1.0)
    finally:
        client.close()
    (after,) = rows(postgres_url, "SELECT * FROM runs")
    assert (after.status, after.started_at, after.pid, after.error) == ("cancelled", None, None, "cancelled before it started")



@pytest.mark.timeout(120)
def test_a_broker_down_while_a_run_waits_does_not_stop_the_scheduler(
    tmp_path: Path, postgres_url: str, redis: RedisServer
) -> None:
    """The broker goes away after the run was sent (a redis-server of its own, stopped):
    sending it again fails, the scheduler says so and goes on, and the run still ends
    by the queue timeout."""
    from tapyard.testing import redis_server

    own_server = redis_server()
    own = own_server.__enter__()
    running = True
    try:
        env, _ = _setup(tmp_path, postgres_url, own.url, {"records_per_stream": 10}, "--retries", "0")
        env.update(TAPYARD_QUEUE_TIMEOUT="4", TAPYARD_START_ALLOWANCE="0.2")  # as the options say
        with schedulers(env, 1, "--executor", "celery", "--poll", "0.1", "--heartbeat", "0.5", logs=tmp_path) as procs:
            wait_for(lambda: rows(postgres_url, "SELECT id FROM runs WHERE status = 'starting'"), 60, "the run sent")
            own_server.__exit__(None, None, None)
            running = False
            (run,) = wait_for(
                lambda: rows(postgres_url, "SELECT * FROM runs WHERE status NOT IN ('queued','starting','running')"),
                60, "the run to end",
            )
            assert procs[0].poll() is None  # the scheduler goes on
    finally:
        if running:
            own_server.__exit__(None, None, None)
    assert run.status == "timed_out" and "with no worker taking it" in run.error
    assert 4 <= run.ended_at - run.claimed_at <= 9
    log = (tmp_path / "scheduler-0.log").read_text()
    assert "could not be sent to the broker" in log and "Traceback" not in log


@pytest.mark.timeout(120)
def test_a_run_whose_message_was_lost_is_sent_again_and_runs_once(
    tmp_path: Path, postgres_url: str, redis: RedisServer
) -> None:
    """The message of a run waiting for a worker is lost (as when a worker that had
    taken it dies before starting it: here the broker's list is emptied): the run is
    sent again, a worker started afterwards runs it, once, as attempt 1, and the
    copies it takes after that do nothing."""
    import redis as redis_client

    broker = f"redis://{redis.host}:{redis.port}/5"
    config = {"records_per_stream": 30}
    env, dest = _setup(tmp_path, postgres_url, broker, config)
    client = redis_client.Redis.from_url(broker)
    try:
        with schedulers(env, 1, "--executor", "celery", "--poll", "0.1", "--heartbeat", "0.5",
                        "--start-allowance", "0.5", logs=tmp_path):
            wait_for(lambda: client.llen("tapyard") >= 1, 60, "the run's message")
            client.delete("tapyard")  # lost
            wait_for(lambda: client.llen("tapyard") >= 1, 30, "the run sent again")
            with workers(env, 1, tmp_path):
                (run,) = wait_for(
                    lambda: rows(postgres_url, "SELECT * FROM runs WHERE status NOT IN ('queued','starting','running')"),
                    60, "the run to end",
                )
                time.sleep(2.0)  # the copies still queued are taken and fenced out
                assert rows(postgres_url, "SELECT status FROM runs") == [("ok",)]
    finally:
        client.flushdb()
        client.close()
    assert (run.status, run.attempt, run.error) == ("ok", 1, None)
    assert_destination_equals_source(dest, config)
