"""What every benchmark client shares: reading its job, timing it, printing its result.

Standard library only: the peers' clients import this from their own
virtual environments, where nothing of tapyard is installed.

A client is run as ``python bench/clients/<name>.py JOB`` where ``JOB`` is a
JSON file written by the runner::

    {
      "base_url": "http://127.0.0.1:41234",
      "token": "...",
      "page_size": 100,
      "concurrency": 1,
      "variant": "cursor",              # cursor | offset | token | next
      "streams": [                       # what to read, each fully
        {"name": "charges", "stream": "charges", "params": {}, "expected": 100000}
      ],
      "workdir": "/tmp/...",            # scratch space (databases, pipelines)
      "options": {}                      # client-specific switches
    }

``name`` is the table or stream name the client uses; ``stream`` the server's
stream (several names may read partitions of one server stream, with
``params`` ``{"partition": i, "partitions": n}``). The client prints one JSON
line, last on stdout, starting ``{"bench":``; see :func:`emit`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

#: the server's paths for each pagination variant
PATHS = {"cursor": "/v1/", "offset": "/offset/", "token": "/token/", "next": "/next/"}

#: the record fields every client declares (the server's records, see bench/server.py)
SCALARS = {
    "id": "string",
    "object": "string",
    "amount": "integer",
    "created": "integer",
    "currency": "string",
    "customer": "string",
    "description": "string",
    "livemode": "boolean",
    "paid": "boolean",
    "refunded": "boolean",
    "status": "string",
}
NESTED = ("metadata", "billing_details", "payment_method_details")

_STDOUT_FD = os.dup(1)


def load_job() -> dict[str, Any]:
    with open(sys.argv[1], encoding="utf-8") as fh:
        job: dict[str, Any] = json.load(fh)
    for stream in job["streams"]:
        stream.setdefault("params", {})
        stream.setdefault("stream", stream["name"])
    return job


def path_of(job: dict[str, Any], stream: dict[str, Any]) -> str:
    return PATHS[job.get("variant", "cursor")] + stream["stream"]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a record, for the clients whose framework wants one."""
    props: dict[str, Any] = {k: {"type": [t, "null"]} for k, t in SCALARS.items()}
    props["id"] = {"type": "string"}
    for name in NESTED:
        props[name] = {"type": ["object", "null"]}
    return {"type": "object", "properties": props, "required": ["id"]}


class Timer:
    """Wall and CPU time of the measured part of a client (after its imports)."""

    def __enter__(self) -> Timer:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.wall0
        self.cpu_seconds = time.process_time() - self.cpu0


def emit(client: str, timer: Timer, records: int, **extra: Any) -> None:
    """Print the result line on the original stdout (even if the client redirected fd 1)."""
    line = {
        "bench": client,
        "records": records,
        "seconds": round(timer.seconds, 4),
        "cpu_seconds": round(timer.cpu_seconds, 4),
        **extra,
    }
    os.write(_STDOUT_FD, (json.dumps(line, default=str) + "\n").encode())


def version_of(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
