"""tapyard's sync into SQLite, through the public API only.

A :class:`tapyard.RestConnector` with one :class:`tapyard.RestStream` per job
stream (pydantic record model, the stock paginator of the job's variant),
bearer auth from a credentials model, ``tapyard.sync(..., to="sqlite:///...")``.
Records and requests come from the returned ``SyncResult``.

Partitions: with ``options.partitions == "native"`` and a core whose
``RestStream`` has a ``partitions`` field, the job's partition entries of one
server stream become one RestStream with that many partitions; otherwise each
partition is a RestStream of its own over ``?partition=i&partitions=n``.
``options.profile`` writes a cProfile of the sync, every thread merged, to that path;
``options.rate_limit`` is passed to ``tapyard.sync(rate_limit=...)`` (a rate set in config);
``options.sforce_usage`` registers a plugin that maps Salesforce's ``Sforce-Limit-Info`` to the limiter.
``options.limiters`` (a ``redis://`` URL) hands the sync a ``RedisLimiterStore`` there, and
``options.credential`` names the credential (``options.go_file``: say ready in ``<go_file>.<pid>``, start once ``go_file`` exists) (a named credential's budget is shared by every
process using the store: bench/fleet.py runs several such clients at once).
"""

from __future__ import annotations

import os
import re
import sqlite3
from typing import Any

from _common import PATHS, Timer, emit, load_job, version_of
from pydantic import BaseModel, SecretStr

import tapyard
import tapyard.destinations._sqlite
import tapyard.engine._sync

# tapyard imports what a sync needs on first use (so that the CLI starts fast);
# import it here, before the timer, as the baselines import httpx and sqlite3
# before theirs. The import cost still shows in the wall time.
import tapyard.http._engine
from tapyard import RestConnector, RestStream


class Record(BaseModel):
    id: str
    object: str
    amount: int
    created: int
    currency: str
    customer: str | None = None
    description: str | None = None
    livemode: bool
    paid: bool
    refunded: bool
    status: str
    metadata: dict[str, Any] = {}
    billing_details: dict[str, Any] | None = None
    payment_method_details: dict[str, Any] | None = None


class BearerCredentials(BaseModel):
    kind: str = "bearer"
    token: SecretStr
    name: str | None = None


class SforceUsage:
    """Maps ``Sforce-Limit-Info: api-usage=USED/LIMIT`` (a rolling 24 hours) to the limiter,
    as a Salesforce connector would: the requests left, spread over a day.
    The bench scales the day down; its server says how long it is (``X-Bench-Day``)."""

    @tapyard.hookimpl
    def tapyard_rate_limit_learn(self, connector: Any, response: Any, limiter: Any) -> None:
        found = re.search(r"api-usage=(\d+)/(\d+)", response.headers.get("sforce-limit-info", ""))
        if not found:
            return
        used, limit = int(found.group(1)), int(found.group(2))
        day = float(response.headers.get("x-bench-day", "86400"))
        limiter.learn({"RateLimit-Policy": f"{limit};w={day:g}", "RateLimit": f"r={max(0, limit - used)};t={day:g}"})


def paginator(variant: str, page_size: int) -> dict[str, Any]:
    if variant == "cursor":
        return {"kind": "cursor", "page_size": page_size}
    if variant == "offset":
        return {"kind": "offset", "page_size": page_size, "total_path": "total"}
    if variant == "token":
        return {"kind": "page_token", "token_path": "nextPageToken", "token_param": "page_token",
                "limit_param": "limit", "page_size": page_size}
    return {"kind": "next_url", "next_path": "next"}


def build_streams(job: dict[str, Any], notes: list[str]) -> list[RestStream]:
    variant = job.get("variant", "cursor")
    extra = {"limit": job["page_size"]} if variant == "next" else {}
    native = job.get("options", {}).get("partitions") == "native"
    has_partitions = "partitions" in RestStream.model_fields
    streams: list[RestStream] = []
    if native and has_partitions:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for s in job["streams"]:
            grouped.setdefault(s["stream"], []).append(s)
        for server_stream, entries in grouped.items():
            parts = [dict(e["params"]) for e in entries if e["params"]]
            streams.append(RestStream(
                name=server_stream, path=PATHS[variant] + server_stream, schema_model=Record,
                params=extra, partitions=parts,
            ))
        notes.append("partitions: RestStream.partitions (native)")
        return streams
    if native:
        notes.append("partitions: this core's RestStream has no partitions; one RestStream per partition")
    elif any(s["params"] for s in job["streams"]):
        notes.append("partitions modelled as one RestStream per partition (?partition=i&partitions=n)")
    for s in job["streams"]:
        streams.append(RestStream(
            name=s["name"], path=PATHS[variant] + s["stream"], schema_model=Record,
            params={**extra, **s["params"]},
        ))
    return streams


def main() -> None:
    job = load_job()
    options = job.get("options", {})
    notes: list[str] = []
    connector = RestConnector(
        name="bench",
        base_url=job["base_url"],
        auth_kinds=["bearer"],
        paginator=paginator(job.get("variant", "cursor"), job["page_size"]),
        streams=build_streams(job, notes),
    )
    db = os.path.join(job["workdir"], "tapyard.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    # options.to: "postgresql" (options.url names the database) or "duckdb"; default SQLite
    to = {"postgresql": options.get("url"), "duckdb": f"duckdb:///{job['workdir']}/tapyard.duckdb"}.get(
        options.get("to", ""), f"sqlite:///{db}"
    )
    # the database drivers too, before the timer, as baseline_postgresql and
    # baseline_duckdb import psycopg, duckdb and pyarrow at their top
    if to.startswith("postgresql"):
        import psycopg  # noqa: F401

        from tapyard.destinations import _postgresql  # noqa: F401 (not "import tapyard....": that makes tapyard local)
    elif to.startswith("duckdb"):
        import duckdb  # noqa: F401
        import pyarrow  # noqa: F401

        from tapyard.destinations import _duckdb  # noqa: F401
    credentials = BearerCredentials(token=SecretStr(job["token"]), name=options.get("credential"))
    limiters = None
    if options.get("limiters"):
        from tapyard.http import RedisLimiterStore

        limiters = RedisLimiterStore(options["limiters"])
    profiler = None
    thread_profiles: list[Any] = []
    if options.get("profile"):
        import cProfile
        import sys
        import threading

        profiler = cProfile.Profile()

        def start_thread_profile(frame: Any, event: str, arg: Any) -> None:
            # Runs once in each new thread (the sync engine's workers): hand
            # the thread over to a profiler of its own.
            sys.setprofile(None)
            thread_profile = cProfile.Profile()
            thread_profiles.append(thread_profile)
            thread_profile.enable()

        threading.setprofile(start_thread_profile)
    if options.get("sforce_usage"):
        tapyard.register_plugin(SforceUsage(), "bench-sforce-usage")
    if options.get("go_file"):
        # a fleet starts together, whatever each process took to import
        import pathlib
        import time

        pathlib.Path(options["go_file"] + "." + str(os.getpid())).touch()
        while not os.path.exists(options["go_file"]):
            time.sleep(0.001)
    with Timer() as timer:
        if profiler is not None:
            profiler.enable()
        result = tapyard.sync(
            connector,
            {},
            to=to,
            credentials=credentials,
            concurrency=int(job.get("concurrency", 1)),
            full_refresh=True,
            http=options.get("http") or None,
            limiters=limiters,
            **({"rate_limit": options["rate_limit"]} if options.get("rate_limit") else {}),
        )
        if profiler is not None:
            profiler.disable()
    if profiler is not None:
        import pstats

        stats = pstats.Stats(profiler)
        for thread_profile in thread_profiles:
            stats.add(thread_profile)
        stats.dump_stats(options["profile"])
    if to.startswith("sqlite"):
        con = sqlite3.connect(db)
        rows = {s.name: con.execute(f'SELECT count(*) FROM "{s.name}"').fetchone()[0] for s in result.streams}
        con.close()
    else:
        from tapyard.destinations import open_destination

        with open_destination(to) as destination:
            rows = {s.name: destination.count(s.name) for s in result.streams}
    errors = {s.name: s.error for s in result.streams if s.status != "ok"}
    emit(
        "tapyard_" + (to.split(":", 1)[0]),
        timer,
        result.records,
        ok=result.ok,
        errors=errors or None,
        streams={s.name: s.records for s in result.streams},
        rows=rows,
        requests=result.http.get("requests"),
        throttled=result.http.get("throttled"),
        retries=result.http.get("retries"),
        http=result.http,
        notes=notes,
        versions={"tapyard": tapyard.__version__, "httpx": version_of("httpx"),
                  "pydantic": version_of("pydantic")},
    )
    if not result.ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
