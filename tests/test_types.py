"""Values without loss, one bad value never taking a run down, and dead letters
that hold the cursor until they are replayed (docs/types.md, docs/reliability.md).

A full-code connector hands the engine the values that break naive syncs;
what lands in SQLite and in JSON Lines is read back and compared with the
source value for value (``tapyard.testing.assert_same_value``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import tapyard
from tapyard.testing import assert_same_value, landed_rows

D = decimal.Decimal
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


class Value(BaseModel):
    id: int
    amount: D | None = None
    big: D | None = None
    ratio: float | None = None
    at: dt.datetime | None = None
    day: dt.date | None = None
    text: str | None = None
    blob: bytes | None = None
    doc: dict[str, Any] | None = None
    mixed: list[Any] | None = None


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": D("0.10")}
    for i in range(levels):
        value = {f"l{i}": value}
    return value


#: one record per awkward value (and a few all at once)
VALUES: list[dict[str, Any]] = [
    {"id": 1, "amount": D("10.10"), "big": D("100000000000000000000"), "ratio": 0.1},
    {"id": 2, "amount": D("12345678901234806.89"), "big": D("-99999999999999999999999"), "ratio": float("nan")},
    {"id": 3, "amount": D("1E+3"), "big": D("1234567890.1234567890123"), "ratio": float("inf")},
    {"id": 4, "amount": D("-0.000000000000000000001"), "ratio": float("-inf"), "text": ""},
    {"id": 5, "at": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=IST), "day": dt.date(1900, 1, 1), "text": None},
    {"id": 6, "at": dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC), "text": "e\u0301 👩\u200d👩\u200d👧 שלום"},
    {"id": 7, "at": dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=dt.UTC), "text": "a\x00b", "blob": b"\x00\xff\x80"},
    {"id": 8, "at": dt.datetime(1901, 1, 1), "blob": b""},
    {
        "id": 9,
        "doc": {"big": 10**20, "neg": -(10**20), "dec": D("10.10"), "e": D("1E+3"), "empty": {},
                "s": "x\x00y", "deep": _deep(300), "nothing": None},
        "mixed": [1, "a", None, 1.5, D("2.50"), True, {"x": []}, [10**30]],
    },
]


class ValuesConnector(tapyard.Connector):
    """Streams of given records; a stream named in ``broken_read`` fails while reading,
    one in ``broken_schema`` has a primary key its model lacks."""

    name = "values"

    def __init__(self, pages: dict[str, list[list[Any]]], model: type[BaseModel] = Value,
                 cursor_field: str | None = None, broken_read: tuple[str, ...] = (),
                 broken_schema: tuple[str, ...] = ()) -> None:
        self.pages = pages
        self.model = model
        self.cursor_field = cursor_field
        self.broken_read = broken_read
        self.broken_schema = broken_schema

    def streams(self, config: Any) -> list[tapyard.Stream]:
        return [
            tapyard.Stream(name=name, schema_model=self.model, cursor_field=self.cursor_field,
                           primary_key=("nope",) if name in self.broken_schema else ("id",))
            for name in self.pages
        ]

    def open(self, config: Any, context: Any) -> Any:
        connector = self

        class Source(tapyard.Source):
            def streams(self) -> list[tapyard.Stream]:
                return connector.streams(config)

            def read(self, stream: tapyard.Stream, state: tapyard.StreamState, partition: Any) -> Iterator[tapyard.Page]:
                for page in connector.pages[stream.name]:
                    yield tapyard.Page(records=[dict(r) if isinstance(r, dict) else r for r in page])
                if stream.name in connector.broken_read:
                    raise KeyError("an unexpected bug in the source")

        return contextlib.nullcontext(Source())


@pytest.mark.parametrize("target", ["sqlite", "jsonl"])
def test_awkward_values_land_exactly(tmp_path: Path, target: str) -> None:
    """Integers past 2^63 (in JSON), decimals with their digits, timestamps with
    offsets and before 1970, unicode, NUL, empty strings, bytes, NaN and the
    infinities, deep nesting and mixed arrays round-trip into SQLite and JSON Lines."""
    path = tmp_path / ("v.db" if target == "sqlite" else "v.jsonl")
    connector = ValuesConnector({"values": [VALUES[:4], VALUES[4:]]})
    result = tapyard.sync(connector, {}, to=f"{target}:///{path}")
    assert result.ok, [(s.name, s.error) for s in result.streams]
    assert result.records == len(VALUES) and result.streams[0].dead_letters == 0
    landed = landed_rows(f"{target}:///{path}", "values")
    assert sorted(landed) == [v["id"] for v in VALUES]
    for source in VALUES:
        row = landed[source["id"]]
        for field in Value.model_fields:
            assert_same_value(source.get(field), row[field], f"record {source['id']}.{field}")


#: vendor timestamps as text: offsets, 0 to 9 fractional digits, before 1970, one instant twice
STAMPS = [
    "2024-01-01T00:00:00Z",
    "2024-01-01T00:00:00.000000001Z",
    "2024-01-01T00:00:00.5Z",
    "2024-01-01T05:00:01+05:30",  # 23:30:01 the day before, in UTC
    "2024-01-01T00:00:00.123456789-08:00",
    "2024-01-01T08:00:00.123456789+00:00",  # the same instant as the one before
    "1960-06-01T00:00:00.1234567Z",
    "2024-01-01T00:00:00.999999999+01:00",
    "2024-01-01T00:00:00.25",  # naive
]


@pytest.mark.parametrize("target", ["sqlite", "jsonl"])
def test_timestamps_keep_their_offset_and_nanoseconds_in_one_sortable_form(tmp_path: Path, target: str) -> None:
    """A timestamp lands as its instant in UTC with nine fractional digits (whole
    seconds too: the issue found ``...:00Z`` stored beside ``...:00.500000Z``, which
    sorts after it), then its own offset as RFC 9557's ``[+05:30]`` suffix: text
    order is time order, and the offset and digits 7-9 come back."""
    from tapyard.base._values import nanoseconds_of, parse_timestamp

    path = tmp_path / ("t.db" if target == "sqlite" else "t.jsonl")
    connector = ValuesConnector({"values": [[{"id": i, "at": t} for i, t in enumerate(STAMPS)]]})
    assert tapyard.sync(connector, {}, to=f"{target}:///{path}").ok
    landed = landed_rows(f"{target}:///{path}", "values")
    for i, text in enumerate(STAMPS):
        source = parse_timestamp(text)
        assert_same_value(source, landed[i]["at"], f"{text}")
        back = parse_timestamp(landed[i]["at"])
        assert (back.utcoffset(), nanoseconds_of(back)) == (source.utcoffset(), nanoseconds_of(source))
    assert landed[3]["at"] == "2023-12-31T23:30:01.000000000Z[+05:30]"
    assert landed[0]["at"] == "2024-01-01T00:00:00.000000000Z"
    if target == "sqlite":
        con = sqlite3.connect(path)
        aware = [r[0] for r in con.execute('SELECT at FROM "values" WHERE id != 8 ORDER BY at, id')]
        instants = [parse_timestamp(s) for s in aware]
        keys = [(t.astimezone(dt.UTC).replace(microsecond=0), nanoseconds_of(t)) for t in instants]
        assert keys == sorted(keys)
        assert len({s.index("Z") for s in aware}) == 1  # one width for every instant


def test_timestamps_stored_with_six_digits_are_widened_once(tmp_path: Path) -> None:
    """A table written before nine digits (``...05.000000Z``) has its timestamps
    widened when the stream is next prepared, so old and new rows sort together."""
    db = tmp_path / "old.db"
    first = ValuesConnector({"values": [[{"id": 1, "at": "2024-01-01T00:00:00Z"}, {"id": 2, "at": "2024-01-01T00:00:01"}]]})
    assert tapyard.sync(first, {}, to=f"sqlite:///{db}").ok
    con = sqlite3.connect(db)
    with con:  # as the earlier form stored them
        con.execute('UPDATE "values" SET at = \'2024-01-01T00:00:00.000000Z\' WHERE id = 1')
        con.execute('UPDATE "values" SET at = \'2024-01-01T00:00:01.000000\' WHERE id = 2')
    later = ValuesConnector({"values": [[{"id": 3, "at": "2024-01-01T00:00:00.000000001Z"}]]})
    assert tapyard.sync(later, {}, to=f"sqlite:///{db}").ok
    assert con.execute('SELECT id, at FROM "values" ORDER BY at').fetchall() == [
        (1, "2024-01-01T00:00:00.000000000Z"), (3, "2024-01-01T00:00:00.000000001Z"), (2, "2024-01-01T00:00:01.000000000")]


class Counted(BaseModel):
    id: int
    n: int
    at: int = 0


def test_integers_past_64_bits_in_an_integer_field_are_stored_with_every_digit(tmp_path: Path) -> None:
    """An integer past 2^63 in a field the schema types as ``int`` used to end the
    whole run, then went to the dead letters; now its column becomes TEXT (every
    value as its digits, the rows already stored too), in the same transaction,
    and a later run keeps it so. The schema still declares an integer."""
    db = tmp_path / "big.db"
    first = ValuesConnector({"counts": [[{"id": 1, "n": 1}, {"id": 4, "n": 4}]], "other": [[{"id": 1, "n": 2**63 - 1}]]},
                            model=Counted)
    assert tapyard.sync(first, {}, to=f"sqlite:///{db}").ok
    con = sqlite3.connect(db)
    assert con.execute("SELECT typeof(n) FROM counts WHERE id = 1").fetchone() == ("integer",)
    values = [{"id": 1, "n": 1}, {"id": 2, "n": 10**20}, {"id": 3, "n": -(2**63) - 1}, {"id": 4, "n": 4},
              {"id": 5, "n": -(10**40)}]
    connector = ValuesConnector({"counts": [values], "other": [[{"id": 1, "n": 2**63 - 1}]]}, model=Counted)
    result = tapyard.sync(connector, {}, to=f"sqlite:///{db}", concurrency=1)
    assert result.ok, [(s.name, s.error) for s in result.streams]
    counts = {s.name: (s.records, s.dead_letters, s.inserted) for s in result.streams}
    assert counts == {"counts": (5, 0, 3), "other": (1, 0, 0)}
    assert con.execute("SELECT count(*) FROM _tapyard_dead_letters").fetchone() == (0,)
    landed = landed_rows(f"sqlite:///{db}", "counts")
    for source in values:
        assert_same_value(source["n"], landed[source["id"]]["n"], f"counts {source['id']}.n")
    assert {t for (t,) in con.execute("SELECT typeof(n) FROM counts")} == {"text"}
    assert con.execute("SELECT n FROM other").fetchall() == [(2**63 - 1,)]  # the other stream's column stays INTEGER
    # a later run with small values keeps the column as text, with the primary key still matching
    again = ValuesConnector({"counts": [[{"id": 1, "n": 7}, {"id": 6, "n": 6}]]}, model=Counted)
    assert tapyard.sync(again, {}, to=f"sqlite:///{db}").ok
    assert con.execute("SELECT n FROM counts WHERE id IN (1, 6) ORDER BY id").fetchall() == [("7",), ("6",)]
    assert con.execute("SELECT count(*) FROM counts").fetchone() == (6,)


def test_records_that_are_not_objects_go_to_the_dead_letters(tmp_path: Path) -> None:
    db = tmp_path / "odd.db"
    connector = ValuesConnector({"counts": [[{"id": 1, "n": 1, "at": 5}, 7, "text", None, [1, 2], {"id": 2, "n": 2, "at": 6}]]},
                                model=Counted, cursor_field="at")
    result = tapyard.sync(connector, {}, to=f"sqlite:///{db}")
    assert result.ok, [(s.name, s.error) for s in result.streams]
    assert (result.streams[0].records, result.streams[0].dead_letters) == (2, 4)
    raws = sorted(r for (r,) in sqlite3.connect(db).execute("SELECT raw FROM _tapyard_dead_letters"))
    assert raws == sorted(['7', '"text"', "null", "[1,2]"])


def test_one_failing_stream_does_not_fail_its_neighbours(tmp_path: Path, register_plugin: Any,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A stream whose schema cannot be built, and one whose source raises an
    unexpected error, fail alone: the other streams commit; the summary and
    the exit code say so."""
    pages = {"good": [[{"id": 1, "n": 1}]], "bad_schema": [[{"id": 1, "n": 1}]], "bad_read": [[{"id": 1, "n": 1}]]}
    connector = ValuesConnector(pages, model=Counted, broken_read=("bad_read",), broken_schema=("bad_schema",))
    db = tmp_path / "iso.db"
    result = tapyard.sync(connector, {}, to=f"sqlite:///{db}")
    statuses = {s.name: s.status for s in result.streams}
    assert statuses == {"good": "ok", "bad_schema": "failed", "bad_read": "failed"}
    assert not result.ok
    assert sqlite3.connect(db).execute("SELECT count(*) FROM good").fetchone() == (1,)

    class Plugin:
        @tapyard.hookimpl
        def tapyard_register_connectors(self, register: Any) -> None:
            register(connector)

    register_plugin(Plugin(), "values-plugin")
    from tapyard.cli import main

    code = main(["sync", "values", "--to", f"sqlite:///{tmp_path / 'cli.db'}", "--json"])
    out, err = capsys.readouterr()
    assert code != 0
    summary = json.loads(out)
    assert {s["name"]: s["status"] for s in summary["streams"]} == statuses
    assert "bad_schema" in err or "bad_read" in err


class Strict(BaseModel):
    id: int
    at: int
    amount: int


class Loose(BaseModel):
    id: int
    at: int
    amount: D


def _cursor(db: Path, stream: str) -> Any:
    row = sqlite3.connect(db).execute("SELECT state FROM _tapyard_state WHERE stream = ?", (stream,)).fetchone()
    return json.loads(row[0]).get("cursor") if row else None


def test_dead_letters_hold_the_cursor_until_replayed(tmp_path: Path, register_plugin: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A stream that dead-letters a record keeps its cursor (the next run reads the
    record again) unless --skip-dead-letters; ``deadletters replay`` writes the
    record once the schema takes it and marks its dead letter replayed."""
    from tapyard.cli import main

    first = [[{"id": 1, "at": 10, "amount": 1}, {"id": 2, "at": 20, "amount": "12.50"}, {"id": 3, "at": 30, "amount": 3}]]
    connector = ValuesConnector({"pays": first}, model=Strict, cursor_field="at")

    class Plugin:
        @tapyard.hookimpl
        def tapyard_register_connectors(self, register: Any) -> None:
            register(connector)

    register_plugin(Plugin(), "values-plugin")
    db = tmp_path / "held.db"
    to = f"sqlite:///{db}"
    assert main(["sync", "values", "--to", to]) == 0
    out = capsys.readouterr().out
    assert "cursor held for pays" in out
    assert _cursor(db, "pays") is None  # it started with none, and stays there

    result = tapyard.sync(connector, {}, to=to)
    assert result.streams[0].cursor_held and _cursor(db, "pays") is None
    assert main(["deadletters", "list", "--to", to, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 1 and listed[0]["stream"] == "pays" and "amount" in listed[0]["error"]
    assert json.loads(listed[0]["raw"])["amount"] == "12.50"

    # the schema is still the same: nothing fits, the command says so
    assert main(["deadletters", "replay", "values", "--to", to]) == 1
    assert "still" in capsys.readouterr().err

    # asked to, the cursor moves past the dead letter
    assert main(["sync", "values", "--to", to, "--skip-dead-letters"]) == 0
    assert _cursor(db, "pays") == 30

    # the connector's schema is fixed: the replay writes the record, exactly
    connector.model = Loose
    capsys.readouterr()
    assert main(["deadletters", "replay", "values", "--to", to, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"stream": "pays", "replayed": 1, "still_dead": 0, "reasons": []}]
    con = sqlite3.connect(db)
    assert con.execute("SELECT amount FROM pays WHERE id = 2").fetchone() == ("12.50",)
    assert main(["deadletters", "list", "--to", to, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["deadletters", "list", "--to", to, "--json", "--replayed"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["replayed_at"] is not None


def test_a_vendor_body_keeps_big_integers_and_declared_decimals(tmp_path: Path) -> None:
    """The HTTP engine parses numbers exactly for a stream that declares decimals,
    and never turns an integer past 64 bits into a float."""
    from tests.scripted_server import Reply, ScriptedServer

    class Priced(BaseModel):
        id: int
        price: D
        count: int
        extra: dict[str, Any] = {}

    body = (b'{"data": [{"id": 1, "price": 98765432109876.54, "count": 123456789012345678901, '
            b'"extra": {"n": 123456789012345678901, "d": 0.10}}, '
            b'{"id": 2, "price": 10.10, "count": 2, "extra": {"s": "\\ud800"}}]}')
    with ScriptedServer() as server:
        server.always("/v1/things", Reply(200, [("Content-Type", "application/json")], body))
        connector = tapyard.RestConnector(
            name="things", base_url=server.url,
            streams=[tapyard.RestStream(name="things", path="/v1/things", record_path="data", schema_model=Priced)],
        )
        db = tmp_path / "h.db"
        result = tapyard.sync(connector, {}, to=f"sqlite:///{db}")
    assert result.ok, [(s.name, s.error) for s in result.streams]
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM _tapyard_dead_letters").fetchone() == (0,)
    rows = {r[0]: r[1:] for r in con.execute("SELECT id, price, count, extra FROM things")}
    # a count past 64 bits keeps every digit (its column is TEXT now), nested ones too
    assert rows[1][:2] == ("98765432109876.54", "123456789012345678901")
    assert json.loads(rows[1][2]) == {"n": 123456789012345678901, "d": 0.10}
    assert '"n":123456789012345678901' in rows[1][2]
    # the decimal keeps its digits; a lone surrogate inside JSON survives as its escape
    assert rows[2][:2] == ("10.10", "2")
    assert json.loads(rows[2][2]) == {"s": "\ud800"}


@pytest.mark.parametrize("target", ["sqlite", "jsonl"])
def test_a_vendor_body_without_decimals_keeps_integers_past_64_bits(tmp_path: Path, target: str) -> None:
    """A stream that declares no decimal is parsed by the fast path, which used to
    read ``123456789012345678901`` as a float: an ``int`` field then held
    123456789012345683968, silently. Every digit lands now, in SQLite and JSON Lines."""
    from tests.scripted_server import Reply, ScriptedServer

    class Counter(BaseModel):
        id: int
        count: int
        extra: dict[str, Any] = {}

    body = (b'{"data": [{"id": 1, "count": 123456789012345678901, "extra": {"n": -9223372036854775809}}, '
            b'{"id": 2, "count": 100000000000000000000}, {"id": 3, "count": 3}]}')
    source = json.loads(body)["data"]
    with ScriptedServer() as server:
        server.always("/v1/counters", Reply(200, [("Content-Type", "application/json")], body))
        connector = tapyard.RestConnector(
            name="counters", base_url=server.url,
            streams=[tapyard.RestStream(name="counters", path="/v1/counters", record_path="data",
                                        schema_model=Counter)],
        )
        url = f"{target}:///{tmp_path / ('c.db' if target == 'sqlite' else 'c.jsonl')}"
        result = tapyard.sync(connector, {}, to=url)
    assert result.ok, [(s.name, s.error) for s in result.streams]
    assert (result.records, result.streams[0].dead_letters) == (3, 0)
    landed = landed_rows(url, "counters")
    for record in source:
        assert_same_value(record["count"], landed[record["id"]]["count"], f"record {record['id']}.count")
        assert_same_value(record.get("extra", {}), landed[record["id"]]["extra"], f"record {record['id']}.extra")


def test_a_vendor_page_with_records_that_are_not_objects_pages_on(tmp_path: Path) -> None:
    """A number or a string in a vendor's record list is a dead letter; the page's
    objects are written and the id cursor moves on from the last object."""
    from tests.scripted_server import Reply, ScriptedServer

    class Item(BaseModel):
        id: str

    def page(request: Any) -> Reply:
        if request.query.get("starting_after") == ["b"]:
            return Reply.json({"data": [{"id": "c"}], "has_more": False})
        return Reply.json({"data": [{"id": "a"}, 7, {"id": "b"}, "text"], "has_more": True})

    with ScriptedServer() as server:
        server.always("/v1/items", page)
        connector = tapyard.RestConnector(
            name="items", base_url=server.url,
            streams=[tapyard.RestStream(name="items", path="/v1/items", record_path="data", schema_model=Item,
                                        paginator={"kind": "cursor"})],
        )
        result = tapyard.sync(connector, {}, to=f"sqlite:///{tmp_path / 'i.db'}")
    assert result.ok, [(s.name, s.error) for s in result.streams]
    assert (result.records, result.streams[0].dead_letters) == (3, 2)


@pytest.mark.parametrize("target", ["sqlite", "jsonl"])
def test_a_value_nested_past_any_encoder_is_one_dead_letter(tmp_path: Path, target: str) -> None:
    """Nesting deeper than the interpreter's recursion limit dead-letters its record
    (with the reason; the payload cannot be kept); the record beside it is written."""
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(5000):
        cursor["a"] = {}
        cursor = cursor["a"]
    connector = ValuesConnector({"values": [[{"id": 1, "doc": deep}, {"id": 2, "text": "ok"}]]})
    result = tapyard.sync(connector, {}, to=f"{target}:///{tmp_path / ('d.' + target)}")
    assert result.ok, [(s.name, s.error) for s in result.streams]
    assert (result.records, result.streams[0].dead_letters) == (1, 1)
    assert sorted(landed_rows(f"{target}:///{tmp_path / ('d.' + target)}", "values")) == [2]
