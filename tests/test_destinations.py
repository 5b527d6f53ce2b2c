"""Destinations: atomic writes, upserts, schema evolution, bad URLs."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tapyard import DestinationError, Stream, StreamState, columns_of, open_destination
from tapyard.base._schema import DeadLetter
from tapyard.destinations._base import Batch


class Row(BaseModel):
    id: int
    name: str
    meta: dict[str, Any] | None = None


STREAM = Stream(name="things", schema_model=Row)


def test_sqlite_upserts_and_state_in_one_transaction(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    dest = open_destination(f"sqlite:///{db}")
    dest.prepare(STREAM, columns_of(Row))
    dest.write("k", [Batch("things", [{"id": 1, "name": "a", "meta": {"x": 1}}], state=StreamState(cursor="c1"))])
    dest.write("k", [Batch("things", [{"id": 1, "name": "b", "meta": None}, {"id": 2, "name": "c"}],
                          dead=[DeadLetter(raw={"id": "?"}, error="bad")], state=StreamState(cursor="c2"))])
    assert dest.load_state("k")["things"].cursor == "c2"
    assert dest.count("things") == 2
    dest.close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT id, name, meta FROM things ORDER BY id").fetchall() == [(1, "b", None), (2, "c", None)]
    assert con.execute("SELECT error FROM _tapyard_dead_letters").fetchall() == [("bad",)]


def test_sqlite_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    db = tmp_path / "atomic.db"
    dest = open_destination(f"sqlite:///{db}")
    dest.prepare(STREAM, columns_of(Row))
    dest.write("k", [Batch("things", [{"id": 1, "name": "a"}], state=StreamState(cursor="c1"))])
    # the database itself fails on the third row, after two good ones were inserted
    con = sqlite3.connect(db)
    con.execute("CREATE TRIGGER boom BEFORE INSERT ON things WHEN NEW.id = 3 BEGIN INSERT INTO gone VALUES (1); END")
    con.commit()
    con.close()
    rows = [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}, {"id": 4, "name": "d"}]
    broken = Batch("things", rows, state=StreamState(cursor="c9"))
    with pytest.raises(DestinationError):
        dest.write("k", [broken])
    assert dest.count("things") == 1
    assert dest.load_state("k")["things"].cursor == "c1"


def test_sqlite_a_value_it_cannot_hold_goes_to_the_dead_letters(tmp_path: Path) -> None:
    """One unbindable value (a lone surrogate, an object SQLite has no type for)
    dead-letters its record; an integer past 64 bits, even before it in the batch,
    is stored (its column becomes TEXT); the rest of the transaction commits."""
    db = tmp_path / "rows.db"
    dest = open_destination(f"sqlite:///{db}")
    dest.prepare(STREAM, columns_of(Row))
    rows = [{"id": 1, "name": "a"}, {"id": 3, "name": "x\ud800y"}, {"id": 2**70, "name": "big"},
            {"id": 4, "name": object()}, {"id": 5, "name": "e"}]
    batch = Batch("things", rows, state=StreamState(cursor="c9"))
    dest.write("k", [batch])
    assert dest.count("things") == 3
    assert dest.load_state("k")["things"].cursor == "c9"
    assert batch.count == 3 and len(batch.dead) == 2
    dest.close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT id, name FROM things ORDER BY name").fetchall() == [
        ("1", "a"), ("1180591620717411303424", "big"), ("5", "e")]
    dead = con.execute("SELECT raw, error FROM _tapyard_dead_letters ORDER BY id").fetchall()
    assert len(dead) == 2
    assert "\\ud800" in dead[0][0] and "lone surrogate" in dead[0][1] and "\ud800" not in dead[0][1]
    assert "cannot be written" in dead[1][1]


def test_sqlite_adds_new_columns(tmp_path: Path) -> None:
    db = tmp_path / "evolve.db"
    dest = open_destination(f"sqlite:///{db}")
    dest.prepare(STREAM, columns_of(Row))

    class Row2(Row):
        colour: str | None = None

    dest.prepare(Stream(name="things", schema_model=Row2), columns_of(Row2))
    dest.write("k", [Batch("things", [{"id": 1, "name": "a", "colour": "red"}])])
    assert sqlite3.connect(db).execute("SELECT colour FROM things").fetchone() == ("red",)


def test_jsonl_cuts_an_uncommitted_tail(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    dest = open_destination(f"jsonl:///{out}")
    dest.write("k", [Batch("things", [{"id": 1}], state=StreamState(cursor="a"))])
    dest.close()
    committed = out.read_bytes()
    with out.open("ab") as fh:
        fh.write(b'{"stream":"things","record":{"id":2}')  # a write killed half-way
    dest = open_destination(f"jsonl:///{out}")
    assert dest.load_state("k")["things"].cursor == "a"
    dest.close()
    assert out.read_bytes() == committed


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://host/x.db", "not a host"),
        ("sqlite:///", "names no file"),
        ("ftp://x", "unsupported destination"),
        ("postgresql://user:hunter2@127.0.0.1:1/db", "cannot connect to postgresql://user:\\*\\*\\*@127.0.0.1:1/db"),
        ("duckdb://host/x.duckdb", "not a host"),
    ],
)
def test_bad_destination_urls(url: str, message: str) -> None:
    with pytest.raises(DestinationError, match=message) as info:
        open_destination(url)
    assert "hunter2" not in str(info.value)


def test_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(DestinationError, match="directory"):
        open_destination(f"sqlite:///{tmp_path}")


def test_sqlite_stores_validated_items_as_text_and_json(tmp_path: Path) -> None:
    import datetime as dt
    import uuid
    from decimal import Decimal

    class Inner(BaseModel):
        a: int

    class Typed(BaseModel):
        id: uuid.UUID
        at: dt.datetime
        day: dt.date
        inner: Inner
        amount: Decimal | None = None

    stream = Stream(name="typed", schema_model=Typed)
    dest = open_destination(f"sqlite:///{tmp_path / 't.db'}")
    dest.prepare(stream, columns_of(Typed))
    item = Typed(id=uuid.UUID(int=1), at=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
                 day=dt.date(2024, 1, 2), inner=Inner(a=1), amount=Decimal("1.50"))
    dest.write("k", [Batch("typed", items=[item])])
    dest.close()
    row = sqlite3.connect(tmp_path / "t.db").execute("SELECT id, at, day, inner, amount FROM typed").fetchone()
    # timestamps in one fixed-width UTC form (text order is time order), decimals with their digits
    assert row == (str(uuid.UUID(int=1)), "2024-01-02T03:04:05.000000000Z", "2024-01-02", '{"a":1}', "1.50")


def test_sqlite_reads_computed_fields_and_odd_column_names(tmp_path: Path) -> None:
    """Validated items are read from ``__dict__`` by a generated function; a computed
    field (not in ``__dict__``) falls back to ``getattr``, and column names that are
    not identifiers (quotes, spaces) still land in their columns."""
    from pydantic import Field, computed_field

    class Odd(BaseModel):
        id: int
        quoted: str = Field(alias="it's \"odd\"")
        spaced: dict[str, Any] | None = Field(default=None, alias="a b")

        @computed_field  # type: ignore[prop-decorator]
        @property
        def doubled(self) -> int:
            return self.id * 2

    stream = Stream(name="odd", schema_model=Odd)
    columns = columns_of(Odd)
    assert [c.name for c in columns] == ["id", "it's \"odd\"", "a b", "doubled"]
    dest = open_destination(f"sqlite:///{tmp_path / 'o.db'}")
    dest.prepare(stream, columns)
    items = [Odd.model_validate({"id": 1, "it's \"odd\"": "x", "a b": {"k": [1]}}),
             Odd.model_validate({"id": 2, "it's \"odd\"": "y"})]
    dest.write("k", [Batch("odd", items=list(items))])
    dest.close()
    rows = sqlite3.connect(tmp_path / "o.db").execute('SELECT * FROM odd ORDER BY id').fetchall()
    assert rows == [(1, "x", '{"k":[1]}', 2), (2, "y", None, 4)]


def _wal_frames_left(db: Path) -> int:
    """Frames of the write-ahead log not yet copied back into the database."""
    con = sqlite3.connect(db)
    try:
        _busy, log, done = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(log - done)
    finally:
        con.close()


def test_sqlite_checkpoints_from_its_own_thread_and_the_writer_only_as_a_backstop(tmp_path: Path) -> None:
    import threading
    import time

    db = tmp_path / "w.db"
    dest = open_destination(f"sqlite:///{db}")
    dest.prepare(STREAM, columns_of(Row))
    checkpointer = dest._checkpointer  # type: ignore[attr-defined]
    assert checkpointer._thread is None  # started by the first commit
    with dest.engine.connect() as conn:  # type: ignore[attr-defined]
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 20_000
    rows = [{"id": i, "name": "x" * 200} for i in range(2_000)]
    for n in range(20):
        dest.write("k", [Batch("things", rows[n * 100:(n + 1) * 100])])
    deadline = time.monotonic() + 5
    while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checkpointer.checkpoints >= 1 and checkpointer.error is None
    assert checkpointer._thread in threading.enumerate()
    dest.close()
    assert not checkpointer._thread.is_alive()
    # closed: the whole log is back in the database, and every row is there
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    assert sqlite3.connect(db).execute("SELECT count(*) FROM things").fetchone() == (2_000,)


def test_sqlite_checkpointer_keeps_up_with_a_steady_writer(tmp_path: Path) -> None:
    import time

    db = tmp_path / "s.db"
    dest = open_destination(f"sqlite:///{db}")
    dest.prepare(STREAM, columns_of(Row))
    rows = [{"id": i, "name": "y" * 400} for i in range(100)]
    for n in range(60):
        dest.write("k", [Batch("things", [{**r, "id": r["id"] + 100 * n} for r in rows])])
        time.sleep(0.01)
    time.sleep(0.3)
    # about 1,500 frames were written; what is left uncopied is the last interval's at most
    assert _wal_frames_left(db) < 600
    dest.close()


def test_a_failing_checkpointer_never_fails_a_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tapyard.destinations._sqlite

    real_connect = sqlite3.connect

    def refusing(path: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if kwargs.get("check_same_thread") is False:  # the checkpointer's connection
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(path, *args, **kwargs)

    monkeypatch.setattr(tapyard.destinations._sqlite.sqlite3, "connect", refusing)
    db = tmp_path / "f.db"
    dest = open_destination(f"sqlite:///{db}")
    dest.prepare(STREAM, columns_of(Row))
    dest.write("k", [Batch("things", [{"id": 1, "name": "a"}])])
    dest.close()
    assert "unable to open database file" in (dest._checkpointer.error or "")  # type: ignore[attr-defined]
    assert real_connect(db).execute("SELECT count(*) FROM things").fetchone() == (1,)


def test_a_destination_dropped_without_close_stops_its_checkpointer(tmp_path: Path) -> None:
    import gc

    dest = open_destination(f"sqlite:///{tmp_path / 'g.db'}")
    dest.prepare(STREAM, columns_of(Row))
    dest.write("k", [Batch("things", [{"id": 1, "name": "a"}])])
    thread = dest._checkpointer._thread  # type: ignore[attr-defined]
    assert thread is not None and thread.is_alive()
    del dest
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_each_sqlite_destination_has_its_own_metadata(tmp_path: Path) -> None:
    """No process-wide registry of tables (issue 14 item 6): two SQLite destinations
    in one process hold their tables on MetaData of their own, and nothing lands on
    sqlmodel's global one (a worker running many syncs shares nothing through it)."""
    import sqlmodel

    first = open_destination(f"sqlite:///{tmp_path / 'a.db'}")
    second = open_destination(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        assert first.metadata is not second.metadata  # type: ignore[attr-defined]
        assert "_tapyard_state" in first.metadata.tables  # type: ignore[attr-defined]
        assert not any(name.startswith("_tapyard") for name in sqlmodel.SQLModel.metadata.tables)
    finally:
        first.close()
        second.close()
