"""Runs on Celery workers: the scheduler claims, a worker anywhere runs.

With ``tapyard scheduler run --executor celery`` (or ``TAPYARD_EXECUTOR=celery``)
the scheduler does everything it does for a local run (the tick, the claim with
its fencing token, retries, abandoned-run detection) except start the process:
it sends the claimed run's id and token to the ``tapyard`` queue of a Celery
broker (``TAPYARD_BROKER_URL``, e.g. ``redis://host:6379/0``), and a
``tapyard worker`` on any machine runs it exactly as a local run does
(:func:`tapyard.jobs._worker.run_claimed`): it takes the run only if the token
still matches, heartbeats into the control plane, enforces the timeout, resumes
from the destination's committed state, and records the outcome.

The guarantees stay the control plane's, not the broker's: a task is acked when a
worker takes it (never redelivered), a worker that dies stops heartbeating and
any scheduler marks its run ``abandoned`` and queues the retry, and a worker that
wakes after its lease was lost cannot record anything (its token no longer
matches). A run no worker has taken yet (every worker busy) waits in the
broker as ``starting``, is sent again now and then and is not abandoned; it
ends by its deadline or by the scheduler's queue timeout when no worker works
at all (:meth:`tapyard.jobs._scheduler.Scheduler._waiting`). Only the run id, the token and the heartbeat interval cross the broker:
each worker reads the control plane's URL (``TAPYARD_DATABASE_URL``, PostgreSQL
for several machines) and its credentials from its own environment.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from tapyard.base import ConfigError

__all__ = ["BROKER_ENV", "QUEUE", "celery_app", "send", "worker"]

BROKER_ENV = "TAPYARD_BROKER_URL"
QUEUE = "tapyard"

_apps: dict[str, Any] = {}


def broker_url(url: str | None = None) -> str:
    found = url or os.environ.get(BROKER_ENV) or os.environ.get("CELERY_BROKER_URL")
    if not found:
        raise ConfigError(
            f"the Celery executor needs a broker: set {BROKER_ENV}=redis://HOST:6379/0 (or pass --broker)"
        )
    return found


def celery_app(url: str | None = None) -> Any:
    """The Celery application of ``url``'s broker, with the ``tapyard.run`` task."""
    broker = broker_url(url)
    app = _apps.get(broker)
    if app is not None:
        return app
    try:
        from celery import Celery
    except ImportError:
        raise ConfigError("the Celery executor needs Celery: pip install 'tapyard[celery]'") from None
    app = Celery("tapyard", broker=broker)
    app.conf.update(
        task_acks_late=False,  # taken is taken: a lost run is the control plane's to retry
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name="tapyard.run")  # type: ignore[untyped-decorator]
    def run(run_id: int, token: int, heartbeat: float) -> int:
        from tapyard.jobs._worker import run_claimed

        return run_claimed(run_id, token, heartbeat)

    _apps[broker] = app
    return app


def send(run_id: int, token: int, heartbeat: float, broker: str | None = None) -> None:
    """Queue a claimed run for a worker."""
    celery_app(broker).send_task("tapyard.run", args=[run_id, token, heartbeat], queue=QUEUE)


def worker(concurrency: int, broker: str | None = None, loglevel: str = "WARNING") -> None:
    """Run a Celery worker of the ``tapyard`` queue in the foreground (``tapyard worker``).

    The sync engine, the control plane's modules and the installed connectors are
    loaded here, before the pool's processes are forked, as the scheduler's fork
    server does: each process then takes its first run (or unit) at once instead
    of loading them first. Connectors installed later need a worker restart."""
    app = celery_app(broker)
    import tapyard.jobs._preload  # noqa: F401 - loaded for the pool's processes to inherit
    app.worker_main([
        "worker", f"--concurrency={concurrency}", "--pool=prefork", "-Q", QUEUE,
        "--without-gossip", "--without-mingle", f"--loglevel={loglevel}",
        "-n", f"tapyard-{os.getpid()}@{socket.gethostname()}",
    ])
