"""The hand-written baseline plus PostgreSQL: psycopg 3 ``COPY ... FROM STDIN`` with
``write_row`` per record, a commit per 1,000 rows.

Each stream gets a table with ``id`` as primary key, the scalar columns typed
and the three nested objects as ``jsonb``. Rows are inserted, not upserted
(``COPY`` cannot upsert): what a hand-written loader into an empty table does.
The database URL comes from the job's options (``url``), made by ``run.py``.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
import psycopg
from baseline_httpx import run

COMMIT_EVERY = 1000
NESTED = ("metadata", "billing_details", "payment_method_details")

state: dict[str, Any] = {"pending": 0}
lock = threading.Lock()


def setup(job: dict[str, Any]) -> None:
    conn = psycopg.connect(job["options"]["url"])
    for stream in job["streams"]:
        conn.execute(
            f'CREATE TABLE "{stream["name"]}" (id TEXT PRIMARY KEY, object TEXT, amount BIGINT, created BIGINT, '
            "currency TEXT, customer TEXT, description TEXT, livemode BOOLEAN, paid BOOLEAN, refunded BOOLEAN, "
            "status TEXT, metadata JSONB, billing_details JSONB, payment_method_details JSONB)"
        )
    conn.commit()
    state["conn"] = conn
    state["tables"] = [s["name"] for s in job["streams"]]


def sink(table: str, records: list[dict[str, Any]]) -> None:
    dumps = orjson.dumps
    with lock:
        conn: psycopg.Connection[Any] = state["conn"]
        with conn.cursor() as cur, cur.copy(f'COPY "{table}" FROM STDIN') as copy:
            for r in records:
                copy.write_row((
                    r["id"], r["object"], r["amount"], r["created"], r["currency"], r["customer"],
                    r["description"], r["livemode"], r["paid"], r["refunded"], r["status"],
                    dumps(r["metadata"]).decode(), dumps(r["billing_details"]).decode(),
                    dumps(r["payment_method_details"]).decode(),
                ))
        state["pending"] += len(records)
        if state["pending"] >= COMMIT_EVERY:
            conn.commit()
            state["pending"] = 0


def finish() -> dict[str, Any]:
    conn: psycopg.Connection[Any] = state["conn"]
    conn.commit()
    rows = {}
    for name in state["tables"]:
        row = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()
        rows[name] = row[0] if row else 0
    conn.close()
    return {"rows": rows}


if __name__ == "__main__":
    run("baseline_postgresql", sink=sink, setup=setup, finish=finish)
