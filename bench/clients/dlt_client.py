"""dlt: the ``rest_api`` source into DuckDB, with the default loader or the parquet loader.

The source is configuration only, as dlt's documentation writes it: bearer
auth, ``data_selector: data``, the ``cursor`` paginator with
``cursor_path: data[-1].id``, ``cursor_param: starting_after`` and
``has_more_path: has_more``, primary key ``id``, ``replace`` disposition.
``options.loader`` is ``default`` (dlt's preferred format for DuckDB) or
``parquet``. dlt retries 429 and 5xx itself (``Retry-After`` is honoured only
when it is a whole number of seconds or a date); with ``options.faults`` the
session also gets dlt's documented ``retry_condition`` predicate for a 200
whose body is not JSON (without it the pipeline fails on the first malformed
page). Partitions are separate resources; ``concurrency`` > 1 sets
``parallelized``.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from _common import PATHS, Timer, emit, load_job, version_of

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")

import dlt
from dlt.sources.helpers.requests import Client
from dlt.sources.rest_api import rest_api_source


def malformed(response: Any, exception: Any) -> bool:
    if response is None or response.status_code != 200:
        return False
    try:
        response.json()
    except ValueError:
        return True
    return False


def main() -> None:
    job = load_job()
    options = job.get("options", {})
    loader = options.get("loader", "default")
    if job.get("variant", "cursor") != "cursor":
        raise SystemExit("dlt client: only the cursor variant is written")
    client: dict[str, Any] = {
        "base_url": job["base_url"],
        "auth": {"type": "bearer", "token": job["token"]},
        "paginator": {
            "type": "cursor",
            "cursor_path": "data[-1].id",
            "cursor_param": "starting_after",
            "has_more_path": "has_more",
        },
    }
    notes = [f"loader: {loader}"]
    if options.get("faults"):
        client["session"] = Client(retry_condition=malformed, raise_for_status=False).session
        notes.append("retry_condition for malformed JSON")
    config: dict[str, Any] = {
        "client": client,
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": "replace",
            "endpoint": {"params": {"limit": job["page_size"]}, "data_selector": "data"},
        },
        "resources": [
            {
                "name": s["name"],
                "endpoint": {
                    "path": PATHS["cursor"].lstrip("/") + s["stream"],
                    "params": {"limit": job["page_size"], **s["params"]},
                    "data_selector": "data",
                },
            }
            for s in job["streams"]
        ],
    }
    workdir = os.path.join(job["workdir"], f"dlt_{loader}")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    with Timer() as timer:
        source = rest_api_source(config, parallelized=int(job.get("concurrency", 1)) > 1)
        pipeline = dlt.pipeline(
            pipeline_name="bench",
            destination=dlt.destinations.duckdb(os.path.join(workdir, "dlt.duckdb")),
            dataset_name="bench_data",
            pipelines_dir=os.path.join(workdir, "pipelines"),
        )
        pipeline.run(source, loader_file_format=None if loader == "default" else loader)
    counts = dict(pipeline.last_trace.last_normalize_info.row_counts)
    streams = {s["name"]: counts.get(s["name"], 0) for s in job["streams"]}
    emit(
        f"dlt_{loader}",
        timer,
        sum(streams.values()),
        streams=streams,
        tables={k: v for k, v in counts.items() if not k.startswith("_dlt")},
        notes=notes,
        versions={"dlt": version_of("dlt"), "duckdb": version_of("duckdb"),
                  "pyarrow": version_of("pyarrow"), "requests": version_of("requests")},
    )


if __name__ == "__main__":
    main()
