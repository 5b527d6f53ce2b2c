"""Alerts when runs fail: to a webhook (signed with HMAC-SHA256) or a command.

A job's ``on_failure`` targets hear about:

- ``failure``: a run failed, timed out or was abandoned and no retry follows;
- ``repeated_failure``: the same, when the job's last 3 ended runs all failed;
- ``credential``: a run failed because its credential was refused or its
  OAuth refresh failed (sent at once, retry or not: a retry will not fix it).

A webhook receives a JSON body with headers ``X-Tapyard-Timestamp`` (epoch
seconds) and ``X-Tapyard-Signature: sha256=<hex>``, the HMAC-SHA256 of
``"<timestamp>." + body`` under the alert key: ``TAPYARD_ALERT_KEY``, else
``alert.key`` in the data directory (32 random bytes, made once, mode 0600;
give its hex to the receiver). A command gets the same JSON on standard input
and in ``TAPYARD_ALERT``; it is split like a shell would (no shell runs it).
Each delivery is recorded in the control plane's ``alerts`` table.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shlex
import subprocess
import time
from typing import Any

import sqlalchemy as sa

from tapyard.jobs import _db as db
from tapyard.jobs._store import ControlPlane, Job, Run, iso

__all__ = ["alert_failure", "alert_key", "sign"]

REPEATED = 3


def alert_key() -> bytes:
    """The key that signs webhook alerts."""
    env = os.environ.get("TAPYARD_ALERT_KEY")
    if env:
        return env.encode()
    from tapyard_credentials import data_dir

    path = data_dir() / "alert.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"alert.key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(os.urandom(32).hex())
        try:
            os.link(tmp, path)  # first writer wins; the others read its key
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip().encode()


def sign(body: bytes, timestamp: str, key: bytes | None = None) -> str:
    """The ``X-Tapyard-Signature`` of ``body`` sent at ``timestamp``."""
    digest = hmac.new(key or alert_key(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _kind(cp: ControlPlane, run: Run, retry_id: int | None, credential: bool) -> str | None:
    if credential:
        return "credential"
    if retry_id:
        return None
    with cp.engine.connect() as conn:
        last = conn.execute(
            sa.select(db.runs.c.status)
            .where(db.runs.c.job == run.job, db.runs.c.status.in_(("ok", "failed", "timed_out", "abandoned")))
            .order_by(db.runs.c.id.desc())
            .limit(REPEATED)
        ).scalars().all()
    if len(last) == REPEATED and all(s != "ok" for s in last):
        return "repeated_failure"
    return "failure"


def alert_failure(cp: ControlPlane, job: Job, run: Run, *, retry_id: int | None, credential: bool = False) -> None:
    """Tell ``job``'s targets that ``run`` failed (see the module docstring for when)."""
    if not job.spec.on_failure or run.status in ("ok", "cancelled"):
        return
    kind = _kind(cp, run, retry_id, credential)
    if kind is None:
        return
    payload = {
        "kind": kind, "job": job.name, "run_id": run.id, "status": run.status, "attempt": run.attempt,
        "error": run.error, "scheduled_at": iso(run.scheduled_at), "ended_at": iso(run.ended_at),
        "retry_run_id": retry_id,
    }
    for target in job.spec.on_failure:
        ok, error = deliver(target, payload)
        with cp.engine.begin() as conn:
            conn.execute(
                db.alerts.insert().values(
                    job=job.name, run_id=run.id, kind=kind, target=_shown_target(target), at=time.time(), ok=ok,
                    error=error,
                )
            )


def _shown_target(target: str) -> str:
    """A target as recorded: a webhook without any user or password in its URL."""
    kind, _, rest = target.partition(":")
    if kind == "webhook":
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(rest)
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return "webhook:" + urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return target[:200]


def deliver(target: str, payload: dict[str, Any]) -> tuple[bool, str | None]:
    """Send ``payload`` to one target; whether it was taken, and why not."""
    body = json.dumps(payload, sort_keys=True).encode()
    kind, _, rest = target.partition(":")
    try:
        if kind == "webhook":
            import httpx

            stamp = str(int(time.time()))
            response = httpx.post(
                rest, content=body, timeout=10.0,
                headers={
                    "Content-Type": "application/json", "X-Tapyard-Timestamp": stamp,
                    "X-Tapyard-Signature": sign(body, stamp), "User-Agent": "tapyard-alerts",
                },
            )
            if response.status_code >= 300:
                return False, f"webhook answered HTTP {response.status_code}"
            return True, None
        argv = shlex.split(rest)
        done = subprocess.run(
            argv, input=body, timeout=30, capture_output=True, env={**os.environ, "TAPYARD_ALERT": body.decode()},
            check=False,
        )
        if done.returncode != 0:
            return False, f"command exited {done.returncode}"
        return True, None
    except Exception as exc:  # an alert that cannot be sent must not fail the run's bookkeeping
        return False, f"{type(exc).__name__}: {str(exc)[:200]}"
