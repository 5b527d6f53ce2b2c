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
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
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


@contextlib.contextmanager
def postgres_server() -> Iterator[str | None]:
    """A throwaway PostgreSQL on 127.0.0.1 (a URL), or None when its binaries are missing.

    Run as root (CI), the cluster belongs to the ``postgres`` user, as initdb
    refuses root. The server is stopped and its files removed afterwards.
    """
    import shutil
    import tempfile

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    bindir = found[-1].parent if found else None
    if bindir is None and shutil.which("initdb"):
        bindir = Path(shutil.which("initdb") or "").parent
    if bindir is None:
        yield None
        return
    base = Path(tempfile.mkdtemp(prefix="tapyard-pg-"))
    data = base / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
         f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start"],
        check=True, capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(server: str, name: str) -> str:
    """A new empty database on ``server``; its URL."""
    engine = sa.create_engine(server.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


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
