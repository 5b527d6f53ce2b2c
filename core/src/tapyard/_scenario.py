"""The object-store scenario that the aws, azure and gcp tests share (exported by
:mod:`tapyard.testing`): a bucket of CSV, JSON Lines and Parquet objects with a bad
row in each text file, an unreadable Parquet object, a file of another format
and an object outside the prefix; then one object changed and one added.

The seed is the same for every store; what lands is checked the same way
(:func:`check_seeded`, :func:`check_changed`), against the store's own table names.
"""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "CHANGED_OBJECTS",
    "check_changed",
    "check_seeded",
    "parquet_bytes",
    "seeded_objects",
    "sqlite_rows",
]

A_CSV_1 = b"id,name,score\n1,ann,10\n2,bob,20\n3,cid,30,extra\n"
A_CSV_2 = b"id,name,score\n1,ann,11\n4,dee,40\n"
B_JSONL = b'{"id": 5, "name": "eve"}\n{not json\n{"id": 6, "name": "fay"}\n[1, 2]\n'
D_JSONL = b'{"id": 8, "name": "hal"}\n{"id": 9, "name": "ivy"}\n'
BROKEN_PARQUET = b"PAR1 this is not parquet"
README = b"not a data file"
#: what the scenario changes between the two syncs: one object rewritten, one added
CHANGED_OBJECTS = {"in/a.csv": A_CSV_2, "in/d.jsonl": D_JSONL}


def parquet_bytes() -> bytes:
    """A Parquet object of two rows (needs pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.table({"id": [7, 70], "name": ["gus", "gil"]}), out)
    return out.getvalue()


def seeded_objects() -> Iterator[tuple[str, bytes]]:
    """The objects to put, in order, as ``(key, body)``. An incremental sync reads again
    what is stamped at the committed cursor (``>=``; stores stamp whole seconds), so
    the last two are put early in a second of their own, both in it."""
    yield "in/a.csv", A_CSV_1
    yield "in/b.jsonl", B_JSONL
    yield "in/c.parquet", parquet_bytes()
    time.sleep(2.05 - time.time() % 1)
    yield "in/broken.parquet", BROKEN_PARQUET
    yield "in/readme.txt", README
    yield "out/x.csv", b"id\n99\n"


def sqlite_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows ``sql`` selects from the SQLite file ``db``."""
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def check_seeded(db: Path, objects: str, key: str, records: str) -> None:
    """What a full sync of the seeded store wrote: the objects under the prefix (table
    ``objects``, keyed by column ``key``), the rows in them (table ``records``), and a
    dead letter for each row or object that cannot be read."""
    assert sqlite_rows(db, f"SELECT {key}, size FROM {objects} ORDER BY {key}") == [
        ("in/a.csv", len(A_CSV_1)),
        ("in/b.jsonl", len(B_JSONL)),
        ("in/broken.parquet", len(BROKEN_PARQUET)),
        ("in/c.parquet", len(parquet_bytes())),
        ("in/readme.txt", len(README)),
    ]
    assert sqlite_rows(db, f"SELECT source_key, source_line, data FROM {records} ORDER BY 1, 2") == [
        ("in/a.csv", 1, '{"id":"1","name":"ann","score":"10"}'),
        ("in/a.csv", 2, '{"id":"2","name":"bob","score":"20"}'),
        ("in/b.jsonl", 1, '{"id":5,"name":"eve"}'),
        ("in/b.jsonl", 3, '{"id":6,"name":"fay"}'),
        ("in/c.parquet", 1, '{"id":7,"name":"gus"}'),
        ("in/c.parquet", 2, '{"id":70,"name":"gil"}'),
    ]
    errors = [e for (e,) in sqlite_rows(db, "SELECT error FROM _tapyard_dead_letters")]
    assert len(errors) == 4, errors
    for expected in (
        "'in/a.csv' row 3: 4 fields where the header has 3",
        "'in/b.jsonl' line 2: not JSON",
        "'in/b.jsonl' line 4: a JSON list, not an object",
        "'in/broken.parquet': unreadable Parquet",
    ):
        assert any(expected in e for e in errors), (expected, errors)


def check_changed(db: Path, objects: str, records: str) -> None:
    """What the incremental sync after :data:`CHANGED_OBJECTS` wrote: the new rows of
    the changed object and the added one, and one more object."""
    assert sqlite_rows(
        db,
        f"SELECT source_key, source_line, data FROM {records} "
        "WHERE source_key IN ('in/a.csv', 'in/d.jsonl') ORDER BY 1, 2",
    ) == [
        ("in/a.csv", 1, '{"id":"1","name":"ann","score":"11"}'),
        ("in/a.csv", 2, '{"id":"4","name":"dee","score":"40"}'),
        ("in/d.jsonl", 1, '{"id":8,"name":"hal"}'),
        ("in/d.jsonl", 2, '{"id":9,"name":"ivy"}'),
    ]
    assert len(sqlite_rows(db, f"SELECT 1 FROM {objects}")) == 6
