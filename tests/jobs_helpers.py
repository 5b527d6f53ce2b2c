"""Helpers of the scheduler tests: start schedulers as processes, read the control plane."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa


def tapyard_env(home: Path, database: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"TAPYARD_HOME": str(home), "TAPYARD_DATABASE_URL": database, "TAPYARD_QUIET": "1", **extra})
    return env


def start_scheduler(env: dict[str, str], *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    out: Any = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "tapyard", "scheduler", "run", *args],
        env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
    )


def tapyard(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tapyard", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@contextlib.contextmanager
def schedulers(env: dict[str, str], count: int, *args: str, logs: Path | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [start_scheduler(env, *args, log=(logs / f"scheduler-{i}.log") if logs else None) for i in range(count)]
    try:
        yield procs
    finally:
        stop_groups(procs)


def stop_groups(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """SIGTERM each process's group, then SIGKILL what is left after ``timeout`` seconds."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def rows(database: str, query: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(database.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(query), params).all())
    finally:
        engine.dispose()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_destination_equals_source(url: str, config: dict[str, Any]) -> None:
    """Every record the sample source holds under ``config`` landed in ``url`` as its
    latest version, once, and nothing else is live there."""
    from tapyard.testing import landed_rows
    from tapyard_sample import SampleConfig, source_records

    cfg = SampleConfig(**config)
    for stream in ("customers", "orders", "events"):
        source = {r["id"]: r for r in source_records(cfg, stream)}
        landed = landed_rows(url, stream)
        live = {k: v for k, v in landed.items() if not v.get("_tapyard_deleted_at")}
        missing = set(source) - set(landed)
        assert not missing, f"{stream}: {len(missing)} records lost"
        cursor = "updated_at" if stream != "events" else "created_at"
        stale = [k for k, r in source.items() if _moment(landed[k][cursor]) != _moment(r[cursor])]
        assert not stale, f"{stream}: {len(stale)} records stale"
        extra = set(live) - set(source)
        assert not extra, f"{stream}: {len(extra)} records that the source does not hold"


def _moment(value: Any) -> str:
    return str(value).replace(" ", "T")[:19]
