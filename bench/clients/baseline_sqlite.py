"""The hand-written baseline plus SQLite: ``executemany`` into a table, a commit per 1,000 rows.

Each stream gets a table with ``id`` as primary key, a few typed columns and
one JSON text column for the nested fields. The database runs in WAL mode
with ``synchronous=NORMAL``, the durability tapyard's SQLite destination has,
and rows are upserted (``INSERT OR REPLACE``) so a page read twice does no harm.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

import orjson
from baseline_httpx import run

COMMIT_EVERY = 1000
COLUMNS = ("id", "object", "amount", "currency", "created", "customer", "description",
           "livemode", "paid", "refunded", "status")
NESTED = ("metadata", "billing_details", "payment_method_details")

state: dict[str, Any] = {"pending": 0}
lock = threading.Lock()


def setup(job: dict[str, Any]) -> None:
    path = os.path.join(job["workdir"], "baseline.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for stream in job["streams"]:
        db.execute(
            f'CREATE TABLE "{stream["name"]}" (id TEXT PRIMARY KEY, object TEXT, amount INTEGER, '
            "currency TEXT, created INTEGER, customer TEXT, description TEXT, livemode INTEGER, "
            "paid INTEGER, refunded INTEGER, status TEXT, nested TEXT)"
        )
    db.commit()
    state["db"] = db
    state["path"] = path
    state["sql"] = {
        s["name"]: f'INSERT OR REPLACE INTO "{s["name"]}" VALUES ({", ".join("?" * (len(COLUMNS) + 1))})'
        for s in job["streams"]
    }


def sink(table: str, records: list[dict[str, Any]]) -> None:
    dumps = orjson.dumps
    rows = [
        (
            r["id"], r["object"], r["amount"], r["currency"], r["created"], r["customer"],
            r["description"], r["livemode"], r["paid"], r["refunded"], r["status"],
            dumps({k: r.get(k) for k in NESTED}).decode(),
        )
        for r in records
    ]
    with lock:
        db: sqlite3.Connection = state["db"]
        db.executemany(state["sql"][table], rows)
        state["pending"] += len(rows)
        if state["pending"] >= COMMIT_EVERY:
            db.commit()
            state["pending"] = 0


def finish() -> dict[str, Any]:
    db: sqlite3.Connection = state["db"]
    db.commit()
    rows = {name: db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in state["sql"]}
    db.close()
    return {"rows": rows}


if __name__ == "__main__":
    run("baseline_sqlite", sink=sink, setup=setup, finish=finish)
