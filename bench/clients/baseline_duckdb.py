"""The hand-written baseline plus DuckDB: each 1,000 records' columns as an Arrow
table, ``INSERT INTO table SELECT * FROM`` it, a commit per 1,000 rows.

Each stream gets a table with ``id`` as primary key, the scalar columns typed
and the three nested objects as ``JSON``; rows are inserted, not upserted.
The database file is ``baseline.duckdb`` in the job's folder.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import duckdb
import orjson
import pyarrow as pa
from baseline_httpx import run

COMMIT_EVERY = 1000
SCALARS = ("id", "object", "amount", "created", "currency", "customer", "description",
           "livemode", "paid", "refunded", "status")
NESTED = ("metadata", "billing_details", "payment_method_details")

state: dict[str, Any] = {}
lock = threading.Lock()


def setup(job: dict[str, Any]) -> None:
    path = os.path.join(job["workdir"], "baseline.duckdb")
    conn = duckdb.connect(path)
    for stream in job["streams"]:
        conn.execute(
            f'CREATE TABLE "{stream["name"]}" (id VARCHAR PRIMARY KEY, object VARCHAR, amount BIGINT, '
            "created BIGINT, currency VARCHAR, customer VARCHAR, description VARCHAR, livemode BOOLEAN, "
            "paid BOOLEAN, refunded BOOLEAN, status VARCHAR, metadata JSON, billing_details JSON, "
            "payment_method_details JSON)"
        )
    state.update(conn=conn, tables=[s["name"] for s in job["streams"]], pending={})


def _flush(table: str) -> None:
    records = state["pending"].pop(table, [])
    if not records:
        return
    dumps = orjson.dumps
    columns: dict[str, list[Any]] = {name: [r[name] for r in records] for name in SCALARS}
    for name in NESTED:
        columns[name] = [dumps(r[name]).decode() for r in records]
    arrow = pa.table(columns)  # noqa: F841 - read by DuckDB by its name
    conn: duckdb.DuckDBPyConnection = state["conn"]
    conn.begin()
    conn.execute(f'INSERT INTO "{table}" SELECT * FROM arrow')
    conn.commit()


def sink(table: str, records: list[dict[str, Any]]) -> None:
    with lock:
        pending = state["pending"].setdefault(table, [])
        pending.extend(records)
        if len(pending) >= COMMIT_EVERY:
            _flush(table)


def finish() -> dict[str, Any]:
    conn: duckdb.DuckDBPyConnection = state["conn"]
    for table in list(state["pending"]):
        _flush(table)
    rows = {}
    for name in state["tables"]:
        row = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()
        rows[name] = row[0] if row else 0
    conn.close()
    return {"rows": rows}


if __name__ == "__main__":
    run("baseline_duckdb", sink=sink, setup=setup, finish=finish)
