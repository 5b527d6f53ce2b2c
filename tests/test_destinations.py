"""Destinations: atomic writes, upserts, schema evolution, bad URLs."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tapyard import DestinationError, Stream, StreamState, columns_of, open_destination
from tapyard._destinations import Batch
from tapyard._schema import DeadLetter


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
    # the third row cannot be bound, after two good ones were inserted
    rows = [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}, {"id": object(), "name": "d"}]
    broken = Batch("things", rows, state=StreamState(cursor="c9"))
    with pytest.raises(DestinationError):
        dest.write("k", [broken])
    assert dest.count("things") == 1
    assert dest.load_state("k")["things"].cursor == "c1"


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
        ("postgresql://user:hunter2@localhost/db", "unsupported destination"),
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
    assert row[:4] == (str(uuid.UUID(int=1)), "2024-01-02T03:04:05Z", "2024-01-02", '{"a":1}')
    assert row[4] in ('"1.50"', "1.50", 1.5)


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
