"""One run spread over several Celery workers (issue 18 item 3): a job with
``spread: partitions`` is split into one unit per partition, each a run of its own
(claimed, leased, fenced, heartbeating), handed to ``tapyard worker`` processes over
a real redis-server, each committing its own partition's state in a real
PostgreSQL destination; the run ends when its last unit does, with their figures
added up. A worker SIGKILLed mid-unit: that unit alone is abandoned and retried,
and the destination ends equal to the source. The source is bench/server.py, read
through the ``benchapi`` connector of bench/plugin (found by its entry point)."""

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
from typing import Any

import pytest

from tapyard.jobs._clock import write_test_clock
from tapyard.testing import RedisServer
from tests.jobs_helpers import rows, schedulers, stop_groups, tapyard, tapyard_env, wait_for
from tests.test_celery import workers

pytest.importorskip("celery")

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "bench" / "plugin"
TICK = dt.datetime(2026, 6, 1, 12, 0, 20, tzinfo=dt.UTC)
PARTITIONS = 8


@contextlib.contextmanager
def bench_server(records: int, latency_ms: float) -> Iterator[str]:
    """bench/server.py serving ``records`` charges, each response ``latency_ms`` late."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "server.py"), "--token", "t0k", "--streams", f"charges:{records}",
         "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        stop_groups([process], 10)  # type: ignore[list-item]


def source_ids(records: int) -> set[str]:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from server import record_id  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return {record_id("charges", i) for i in range(records)}


def _setup(tmp_path: Path, database: str, broker: str, base_url: str, page_size: int, *options: str) -> tuple[dict[str, str], str]:
    clock = tmp_path / "clock.json"
    write_test_clock(clock, TICK - dt.timedelta(minutes=5), rate=0)
    env = tapyard_env(
        tmp_path / "home", database, TAPYARD_TEST_CLOCK=str(clock), TAPYARD_BROKER_URL=broker,
        PYTHONPATH=os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    dest = f"{database}?schema=dest"
    config = {"base_url": base_url, "token": "t0k", "page_size": page_size}
    added = tapyard(env, "jobs", "add", "wide", "--connector", "benchapi", "--cron", "0 12 * * *", "--to", dest,
                    "--config", json.dumps(config), "--spread", "partitions", *options)
    assert added.returncode == 0, added.stderr
    write_test_clock(clock, TICK, rate=0)
    return env, dest


def _landed(database: str) -> dict[str, Any]:
    return {r.id: r for r in rows(database, "SELECT id, amount FROM dest.charges")}


def _assert_equal_to_source(database: str, records: int) -> None:
    landed = _landed(database)
    assert len(rows(database, "SELECT id FROM dest.charges")) == records  # no duplicates
    assert set(landed) == source_ids(records)
    states = rows(database, "SELECT stream FROM dest._tapyard_state")
    assert len(states) == PARTITIONS and all(s.stream.startswith("charges|") for s in states)


@pytest.mark.timeout(300)
def test_a_spread_run_goes_to_both_workers_a_unit_per_partition(
    tmp_path: Path, postgres_url: str, redis: RedisServer
) -> None:
    records = 1600
    with bench_server(records, latency_ms=20) as base_url:
        env, _ = _setup(tmp_path, postgres_url, redis.url, base_url, 20)
        with workers(env, 2, tmp_path), schedulers(env, 1, "--executor", "celery", "--poll", "0.1",
                                                     "--heartbeat", "1", logs=tmp_path):
            (parent,) = wait_for(
                lambda: rows(postgres_url, "SELECT * FROM runs WHERE parent_id IS NULL AND status NOT IN "
                             "('queued','starting','running','cancelling')"),
                180, "the spread run to end",
            )
    assert parent.status == "ok", parent.error
    assert parent.units == PARTITIONS
    units = rows(postgres_url, "SELECT * FROM runs WHERE parent_id = :p ORDER BY id", p=parent.id)
    assert len(units) == PARTITIONS and {u.status for u in units} == {"ok"}
    assert len({json.loads(u.unit)["partitions"][0] for u in units}) == PARTITIONS
    assert len({u.pid for u in units}) >= 2, "both workers took units"
    # the run's summary is its units' added up
    assert parent.records == records == sum(u.records for u in units)
    assert parent.requests == sum(u.requests for u in units) >= records // 20
    (charges,) = json.loads(parent.streams)
    assert charges["name"] == "charges" and charges["records"] == records and charges["status"] == "ok"
    _assert_equal_to_source(postgres_url, records)
    assert len(rows(postgres_url, "SELECT id FROM ticks")) == 1


@pytest.mark.timeout(600)
def test_a_worker_sigkilled_mid_unit_has_that_unit_retried_and_the_run_lands_everything(
    tmp_path: Path, postgres_url: str, redis: RedisServer
) -> None:
    heartbeat = 1.5
    records = 6400
    with bench_server(records, latency_ms=30) as base_url:
        env, _ = _setup(tmp_path, postgres_url, redis.url, base_url, 10, "--retries", "2", "--backoff", "0.2s")
        with workers(env, 2, tmp_path), schedulers(env, 1, "--executor", "celery", "--poll", "0.1",
                                                     "--heartbeat", str(heartbeat), logs=tmp_path):
            unit = wait_for(
                lambda: rows(postgres_url, "SELECT * FROM runs WHERE parent_id IS NOT NULL AND status = 'running' "
                             "AND pid IS NOT NULL AND heartbeat_at > started_at + 0.1"),
                120, "a unit on a worker, past its first heartbeat",
            )[0]
            os.kill(unit.pid, signal.SIGKILL)  # the worker's process running that unit dies
            killed = time.time()
            abandoned = wait_for(
                lambda: rows(postgres_url, "SELECT * FROM runs WHERE id = :i AND status = 'abandoned'", i=unit.id),
                4 * heartbeat + 10, "the unit to be marked abandoned",
            )[0]
            assert abandoned.ended_at - killed <= 2 * heartbeat + 1.0
            (parent,) = wait_for(
                lambda: rows(postgres_url, "SELECT * FROM runs WHERE parent_id IS NULL AND status NOT IN "
                             "('queued','starting','running','cancelling')"),
                300, "the spread run to end",
            )
    assert parent.status == "ok", parent.error
    (retry,) = rows(postgres_url, "SELECT * FROM runs WHERE retry_of = :i", i=unit.id)
    assert retry.status == "ok" and retry.attempt == 2 and retry.unit == unit.unit and retry.parent_id == parent.id
    others = rows(postgres_url, "SELECT * FROM runs WHERE parent_id = :p AND id NOT IN (:a, :b)",
                  p=parent.id, a=unit.id, b=retry.id)
    assert len(others) == PARTITIONS - 1 and all(o.attempt == 1 and o.status == "ok" for o in others)
    _assert_equal_to_source(postgres_url, records)


def test_a_spread_job_into_a_file_destination_is_refused_in_one_line(tmp_path: Path) -> None:
    env = tapyard_env(tmp_path / "home", f"sqlite:///{tmp_path / 'c.db'}")
    for to in (f"sqlite:///{tmp_path / 'd.db'}", f"duckdb:///{tmp_path / 'd.duckdb'}", f"jsonl://{tmp_path / 'out'}"):
        done = tapyard(env, "jobs", "add", "wide", "--connector", "sample", "--cron", "0 12 * * *", "--to", to,
                       "--spread", "streams")
        assert done.returncode == 1, done.stdout
        assert "spread needs a destination every worker writes at once" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    bad = tapyard(env, "jobs", "add", "wide", "--connector", "sample", "--cron", "0 12 * * *", "--spread", "rows")
    assert bad.returncode == 1 and "spread" in bad.stderr and "Traceback" not in bad.stderr


def _sample_job(tmp_path: Path, database: str, config: dict[str, object], *options: str) -> dict[str, str]:
    clock = tmp_path / "clock.json"
    write_test_clock(clock, TICK - dt.timedelta(minutes=5), rate=0)
    env = tapyard_env(tmp_path / "home", database, TAPYARD_TEST_CLOCK=str(clock))
    added = tapyard(env, "jobs", "add", "each", "--connector", "sample", "--cron", "0 12 * * *", "--to", database,
                    "--config", json.dumps(config), "--spread", "streams", *options)
    assert added.returncode == 0, added.stderr
    write_test_clock(clock, TICK, rate=0)
    return env


def _ended(database: str) -> list[Any]:
    return rows(database, "SELECT * FROM runs WHERE parent_id IS NULL AND status NOT IN "
                "('queued','starting','running','cancelling')")


@pytest.mark.timeout(300)
def test_spread_by_stream_on_the_local_executor_lands_every_stream(tmp_path: Path, postgres_url: str) -> None:
    from tests.jobs_helpers import assert_destination_equals_source

    config = {"records_per_stream": 400, "page_size": 50}
    env = _sample_job(tmp_path, postgres_url, config)
    with schedulers(env, 1, "--poll", "0.1", "--heartbeat", "1", logs=tmp_path):
        (parent,) = wait_for(lambda: _ended(postgres_url), 180, "the spread run to end")
    assert parent.status == "ok", parent.error
    units = rows(postgres_url, "SELECT * FROM runs WHERE parent_id = :p", p=parent.id)
    assert sorted(json.loads(u.unit)["streams"] for u in units) == [["customers"], ["events"], ["orders"]]
    assert all(u.status == "ok" and u.pid not in (None, parent.pid) for u in units)
    assert {s["name"] for s in json.loads(parent.streams)} == {"customers", "orders", "events"}
    assert parent.records == sum(u.records for u in units) > 0
    assert_destination_equals_source(postgres_url, config)
    shown = tapyard(env, "runs", "show", str(units[0].id))
    assert shown.returncode == 0 and f"parent_id: {parent.id}" in shown.stdout
    assert f"unit: {json.loads(units[0].unit)['streams'][0]}" in shown.stdout
    assert "units: 3" in tapyard(env, "runs", "show", str(parent.id)).stdout


@pytest.mark.timeout(300)
def test_cancelling_a_spread_run_stops_its_units(tmp_path: Path, postgres_url: str) -> None:
    config = {"records_per_stream": 3000, "page_size": 10, "latency_ms": 30}
    env = _sample_job(tmp_path, postgres_url, config)
    with schedulers(env, 1, "--poll", "0.1", "--heartbeat", "1", "--per-credential", "0", logs=tmp_path):
        wait_for(lambda: rows(postgres_url, "SELECT id FROM runs WHERE parent_id IS NOT NULL AND status = 'running'"),
                 120, "a unit running")
        (parent,) = rows(postgres_url, "SELECT * FROM runs WHERE parent_id IS NULL")
        cancelled = tapyard(env, "runs", "cancel", str(parent.id))
        assert cancelled.returncode == 0, cancelled.stderr
        (ended,) = wait_for(lambda: _ended(postgres_url), 60, "the spread run to end")
    assert ended.status == "cancelled"
    units = rows(postgres_url, "SELECT status FROM runs WHERE parent_id = :p", p=parent.id)
    assert units and {u.status for u in units} <= {"cancelled", "ok"} and "cancelled" in {u.status for u in units}


def test_postgresql_locks_a_partition_apart_from_the_others_and_from_the_whole_stream(postgres_url: str) -> None:
    import tapyard
    from tapyard.destinations import PostgreSQLDestination

    first, second = PostgreSQLDestination(postgres_url), PostgreSQLDestination(postgres_url)
    def busy() -> Any:
        return pytest.raises(tapyard.DestinationError, match="busy")

    try:
        with first.lock_partition("charges", 'charges|{"partition":0}', 0):
            with second.lock_partition("charges", 'charges|{"partition":1}', 0):
                pass  # another partition of the stream: written at once
            with busy(), second.lock_partition("charges", 'charges|{"partition":0}', 0):
                pass
            with busy(), second.lock("charges", 0):  # the whole stream waits for its partitions' runs
                pass
        with first.lock("charges", 0), busy(), second.lock_partition("charges", 'charges|{"partition":1}', 0):
            pass
        with second.lock("charges", 0):  # every lock was let go
            pass
    finally:
        first.close()
        second.close()
