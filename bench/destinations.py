"""Scenario p: the PostgreSQL and DuckDB destinations against hand-written loaders.

::

    .venv/bin/python bench/destinations.py [--smoke] [--records 200000] [--repeat 3] [--output FILE]

The same records (``server.py``'s Stripe-like charges, ~480 bytes, three nested
objects) are loaded, in the same run, by:

- ``tapyard → PostgreSQL``: the destination as the sync engine drives it:
  ``prepare`` once, then one ``write`` per 2,000 rows (the engine's group commit)
  of 20 pages of 100 validated records, each page with its stream state;
  COPY into a load table, one ``INSERT ... SELECT ... ON CONFLICT`` merge (the
  upsert guard included), the state in the same transaction;
- ``baseline_copy``: a hand-written psycopg loop: ``COPY table FROM STDIN`` with
  ``write_row`` per record (nested values as JSON text into ``jsonb``), a commit
  per 2,000 rows, no upsert and no state;
- ``tapyard → DuckDB``: as for PostgreSQL, through Arrow;
- ``baseline_arrow``: a hand-written loop: the 2,000 records' columns as an
  Arrow table, ``INSERT INTO table SELECT * FROM`` it, a commit per 2,000 rows.

Both sides start from records in memory (tapyard's as validated models, what the
engine hands a destination; the baselines' as the parsed dicts), so what is
measured is the loading, not HTTP or validation (scenario a measures the whole
sync). A second tapyard pass over the same rows (every one unchanged: the merge
compares and writes nothing) is reported too, with no baseline.

The PostgreSQL server is started by ``tapyard.testing.postgres_server`` on a free
port, with its durability settings left as PostgreSQL ships them (fsync on). Each
client runs ``--repeat`` times, alternating, into a fresh table; the median is kept.
Results as JSON (default ``bench/results/destinations.json``), a table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from server import make_record  # noqa: E402

COMMIT_ROWS = 2000
PAGE = 100
NESTED = ("metadata", "billing_details", "payment_method_details")
SCALARS = ("id", "object", "amount", "created", "currency", "customer", "description",
           "livemode", "paid", "refunded", "status")


class Charge(BaseModel):
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


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- tapyard ---------------------------------------------------------------------------


def run_tapyard(url: str, table: str, models: list[Charge], passes: int = 1) -> list[float]:
    from tapyard.base._model import Stream, StreamState
    from tapyard.base._schema import columns_of
    from tapyard.destinations._base import Batch, open_destination

    stream = Stream(name=table, schema_model=Charge, primary_key=("id",), cursor_field="created")
    times = []
    destination = open_destination(url)
    try:
        destination.prepare(stream, columns_of(Charge))
        for _ in range(passes):
            started = time.perf_counter()
            for group in chunks(models, COMMIT_ROWS):
                batches = [
                    Batch(table, items=page, state=StreamState(cursor=page[-1].created))
                    for page in chunks(group, PAGE)
                ]
                destination.write("bench", batches)
            times.append(time.perf_counter() - started)
        count = destination.count(table)
    finally:
        destination.close()
    assert count == len(models), (count, len(models))
    return times


# -- the hand-written loaders -------------------------------------------------------------


def run_copy_baseline(url: str, table: str, records: list[dict[str, Any]]) -> list[float]:
    import orjson
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{table}" (id TEXT PRIMARY KEY, object TEXT, amount BIGINT, created BIGINT, '
            "currency TEXT, customer TEXT, description TEXT, livemode BOOLEAN, paid BOOLEAN, refunded BOOLEAN, "
            "status TEXT, metadata JSONB, billing_details JSONB, payment_method_details JSONB)"
        )
        dumps = orjson.dumps
        started = time.perf_counter()
        for group in chunks(records, COMMIT_ROWS):
            with conn.transaction(), conn.cursor() as cur, cur.copy(f'COPY "{table}" FROM STDIN') as copy:
                for r in group:
                    copy.write_row((
                        r["id"], r["object"], r["amount"], r["created"], r["currency"], r["customer"],
                        r["description"], r["livemode"], r["paid"], r["refunded"], r["status"],
                        dumps(r["metadata"]).decode(), dumps(r["billing_details"]).decode(),
                        dumps(r["payment_method_details"]).decode(),
                    ))
        elapsed = time.perf_counter() - started
        row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    assert row is not None and row[0] == len(records)
    return [elapsed]


def run_arrow_baseline(path: str, table: str, records: list[dict[str, Any]]) -> list[float]:
    import duckdb
    import orjson
    import pyarrow as pa

    conn = duckdb.connect(path)
    try:
        conn.execute(
            f'CREATE TABLE "{table}" (id VARCHAR PRIMARY KEY, object VARCHAR, amount BIGINT, created BIGINT, '
            "currency VARCHAR, customer VARCHAR, description VARCHAR, livemode BOOLEAN, paid BOOLEAN, "
            "refunded BOOLEAN, status VARCHAR, metadata JSON, billing_details JSON, payment_method_details JSON)"
        )
        dumps = orjson.dumps
        started = time.perf_counter()
        for group in chunks(records, COMMIT_ROWS):
            columns = {name: [r[name] for r in group] for name in SCALARS}
            for name in NESTED:
                columns[name] = [dumps(r[name]).decode() for r in group]
            arrow = pa.table(columns)  # noqa: F841 - read by DuckDB's replacement scan
            conn.begin()
            conn.execute(f'INSERT INTO "{table}" SELECT * FROM arrow')
            conn.commit()
        elapsed = time.perf_counter() - started
        row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    finally:
        conn.close()
    assert row is not None and row[0] == len(records)
    return [elapsed]


# -- the run ------------------------------------------------------------------------------


def median_rate(times: list[float], n: int) -> dict[str, Any]:
    seconds = statistics.median(times)
    return {"seconds": [round(t, 3) for t in times], "median_s": round(seconds, 3),
            "records_per_s": round(n / seconds)}


def measure(name: str, repeat: int, runs: dict[str, Callable[[int], list[float]]], n: int) -> dict[str, Any]:
    """Run each client ``repeat`` times, alternating (so that a slow minute of a
    shared machine falls on both), and keep each one's median."""
    times: dict[str, list[float]] = {client: [] for client in runs}
    for attempt in range(repeat):
        for client, run in runs.items():
            got = run(attempt)
            times[client].append(got[0])
            if len(got) > 1:
                times.setdefault(client + " (second pass, unchanged)", []).append(got[1])
    rows = {client: median_rate(t, n) for client, t in times.items()}
    base = next(c for c in runs if c.startswith("baseline"))
    for row in rows.values():
        row["x_baseline"] = round(row["records_per_s"] / rows[base]["records_per_s"], 3)
    return {"destination": name, "records": n, "clients": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="2,000 records, one run each: checks that it works")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "destinations.json")
    parser.add_argument("--only", choices=("postgresql", "duckdb"), default=None)
    args = parser.parse_args(argv)
    n, repeat = (2_000, 1) if args.smoke else (args.records, args.repeat)

    from tapyard.testing import ServiceUnavailable, postgres_server

    records = [make_record("charges", i) for i in range(n)]
    models = [Charge.model_validate(r) for r in records]
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "records": n, "commit_rows": COMMIT_ROWS, "page": PAGE, "repeat": repeat, "scenarios": [],
    }
    if args.only in (None, "postgresql"):
        try:
            with postgres_server(settings={"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}) as pg:
                def tapyard_pg(i: int) -> list[float]:
                    return run_tapyard(pg.create_database(f"tapyard_{i}"), "charges", models, passes=2)

                def baseline_pg(i: int) -> list[float]:
                    return run_copy_baseline(pg.create_database(f"baseline_{i}"), "charges", records)

                results["scenarios"].append(measure(
                    "postgresql", repeat, {"baseline_copy": baseline_pg, "tapyard": tapyard_pg}, n))
        except ServiceUnavailable as exc:
            results["scenarios"].append({"destination": "postgresql", "skipped": str(exc)})
    if args.only in (None, "duckdb"):
        with tempfile.TemporaryDirectory(prefix="tapyard-bench-") as tmp:
            def tapyard_duck(i: int) -> list[float]:
                return run_tapyard(f"duckdb:///{tmp}/tapyard_{i}.duckdb", "charges", models, passes=2)

            def baseline_duck(i: int) -> list[float]:
                return run_arrow_baseline(f"{tmp}/baseline_{i}.duckdb", "charges", records)

            results["scenarios"].append(measure(
                "duckdb", repeat, {"baseline_arrow": baseline_duck, "tapyard": tapyard_duck}, n))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    for scenario in results["scenarios"]:
        if "skipped" in scenario:
            print(f"{scenario['destination']}: skipped ({scenario['skipped']})")
            continue
        print(f"{scenario['destination']}, {scenario['records']:,} records:")
        for client, row in scenario["clients"].items():
            print(f"  {client:40s} {row['records_per_s']:>9,} rec/s  {row['x_baseline']:.2f}x  {row['seconds']}")
    with contextlib.suppress(Exception):
        print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
