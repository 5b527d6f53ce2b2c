"""The destination contract (tapyard/destinations/_tables.py), checked the same way
for every table destination: SQLite, PostgreSQL and DuckDB.

Each test takes the ``url`` fixture, parametrised over the three: a fresh SQLite
file, a fresh database on a real PostgreSQL server (``tapyard.testing.postgres``:
started from the machine's binaries; skipped without them, failed under CI), a
fresh DuckDB file. A new table destination joins by adding its scheme to
``DESTINATIONS`` and a branch to ``url``.

What is checked: tables made from stream schemas and values landing value for
value; a batch, its dead letters and its state in one transaction; the upsert
guard; deletes marked or removed by a complete pass; a full refresh replacing
the stream's rows in one transaction (a reader sees the old rows until the end,
a killed refresh leaves them); per-stream locks; schema evolution; a record the
database cannot hold going to the dead letters while its page lands; and
kill-and-resume: a real ``tapyard sync`` SIGKILLed mid-run, resumed, and equal
to the source with no duplicates.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import tapyard
from tapyard.base._exceptions import DestinationError
from tapyard.base._model import Stream, StreamState
from tapyard.base._schema import columns_of
from tapyard.destinations._base import Batch, Destination, open_destination
from tapyard.testing import assert_same_value, landed_rows
from tapyard_sample import SampleConfig, source_records
from tapyard_sample._data import T0

DESTINATIONS = ("sqlite", "postgresql", "duckdb")
ENV = {**os.environ, "TAPYARD_QUIET": "1"}
TAPYARD = [sys.executable, "-m", "tapyard"]


@pytest.fixture(params=DESTINATIONS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'contract.duckdb'}"
    return str(request.getfixturevalue("postgres_url"))


class Thing(BaseModel):
    id: str
    count: int
    ratio: float
    amount: decimal.Decimal
    at: dt.datetime
    day: dt.date
    flag: bool
    note: str | None = None
    meta: dict[str, Any] = {}
    tags: list[Any] = []


STREAM = Stream(name="things", schema_model=Thing, primary_key=("id",), cursor_field="at")
LISTED = Stream(name="listed", schema_model=Thing, primary_key=("id",), cursor_field="at", deletes="listing")
AT = dt.datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


def thing(i: int, *, at: dt.datetime = AT, note: str | None = None, count: int | None = None) -> Thing:
    return Thing(
        id=f"t{i:04d}", count=i if count is None else count, ratio=i / 3, amount=decimal.Decimal("10.10") * i,
        at=at, day=dt.date(1900 + i % 200, 1, 1), flag=i % 2 == 0, note=note,
        meta={"big": 10**20 + i, "exact": decimal.Decimal("12345678901234806.89"), "nested": {"i": i}},
        tags=["a", i, None],
    )


def opened(url: str, *streams: Stream) -> Destination:
    destination = open_destination(url)
    for stream in streams or (STREAM,):
        destination.prepare(stream, columns_of(stream.schema_model))
    return destination


def write(destination: Destination, *batches: Batch, key: str = "k") -> None:
    destination.write(key, list(batches))


def rows(url: str, stream: str = "things") -> dict[Any, dict[str, Any]]:
    return landed_rows(url, stream)


# -- tables from schemas; values land as they are ----------------------------------------


def test_tables_from_schemas_and_values_land_value_for_value(url: str) -> None:
    things = [thing(i, note=n) for i, n in enumerate(["", "e\u0301 \U0001f600 \u05d0\u05d1", None, "x" * 10_000])]
    with opened(url) as destination:
        write(destination, Batch("things", items=things, state=StreamState(cursor=AT.isoformat())))
        assert destination.count("things") == len(things)
    landed = rows(url)
    for record in things:
        got = landed[record.id]
        for name, value in record.model_dump().items():
            assert_same_value(value, got[name], f"{record.id}.{name}")


def test_timestamps_keep_their_offset_and_nanoseconds(url: str) -> None:
    """A vendor's offset, digits 7-9 and a naive timestamp land whole: in SQLite's
    text, and beside PostgreSQL's and DuckDB's TIMESTAMPTZ (``<name>__exact``)."""
    from tapyard import parse_timestamp

    class Stamped(BaseModel):
        id: str
        at: dt.datetime | None = None

    stream = Stream(name="stamped", schema_model=Stamped, primary_key=("id",))
    values = {
        "offset-ns": parse_timestamp("2024-01-02T03:04:05.123456789+02:00"),
        "utc": dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC),
        "naive": dt.datetime(1969, 7, 20, 20, 17, 40),
        "negative": parse_timestamp("2024-06-30T23:59:59.000000001-09:30"),
        "none": None,
    }
    with opened(url, stream) as destination:
        write(destination, Batch("stamped", items=[Stamped(id=k, at=v) for k, v in values.items()]))
    landed = rows(url, "stamped")
    for key, value in values.items():
        assert_same_value(value, landed[key]["at"], key)


# -- one transaction -----------------------------------------------------------------------


def test_a_batch_and_its_state_commit_together_or_not_at_all(url: str) -> None:
    with opened(url) as destination:
        write(destination, Batch("things", items=[thing(1)], state=StreamState(cursor="a")))
        with pytest.raises(KeyError):
            # the second batch names a stream never prepared: the first must not land either
            write(destination, Batch("things", items=[thing(2)], state=StreamState(cursor="b")),
                  Batch("unprepared", items=[thing(3)]))
        assert destination.load_state("k")["things"].cursor == "a"
        assert destination.count("things") == 1


# -- the upsert guard ----------------------------------------------------------------------


def test_an_older_version_never_replaces_a_newer_one(url: str) -> None:
    later, earlier = AT + dt.timedelta(hours=1), AT - dt.timedelta(hours=1)
    with opened(url) as destination:
        write(destination, Batch("things", items=[thing(1, count=100)]))
        old = Batch("things", items=[thing(1, at=earlier, count=99)])
        write(destination, old)
        assert old.changed == 0 and rows(url)["t0001"]["count"] == 100
        new = Batch("things", items=[thing(1, at=later, count=101)])
        write(destination, new)
        assert new.changed == 1 and rows(url)["t0001"]["count"] == 101
        same = Batch("things", items=[thing(1, at=later, count=101)])
        write(destination, same)
        assert same.changed == 0
        # two versions of one record in one write: the newer wins whatever their order
        write(destination, Batch("things", items=[thing(2, at=later, count=7), thing(2, at=earlier, count=6)]))
        assert rows(url)["t0002"]["count"] == 7
        # a full refresh writes what the source holds now, older or not
        forced = Batch("things", items=[thing(1, at=earlier, count=98)], replace=True)
        write(destination, forced)
        assert rows(url)["t0001"]["count"] == 98


# -- deletes -------------------------------------------------------------------------------


def test_a_complete_pass_marks_or_removes_what_it_did_not_see(url: str) -> None:
    with opened(url, LISTED) as destination:
        first = Batch("listed", items=[thing(i) for i in range(5)], pass_id=1, tracked=True)
        write(destination, first, Batch("listed", pass_id=1, tracked=True, sweep=1, pages=0))
        second = Batch("listed", items=[thing(0), thing(1, count=50)], pass_id=2, tracked=True,
                       seen=[{"id": "t0002"}])
        end = Batch("listed", pass_id=2, tracked=True, sweep=2, pages=0)
        write(destination, second, end)
        assert end.deleted == 2
        landed = rows(url, "listed")
        assert len(landed) == 5
        assert {k for k, r in landed.items() if r["_tapyard_deleted_at"] is not None} == {"t0003", "t0004"}
        # seen again: the mark goes; a hard delete removes what the pass did not see
        back = Batch("listed", items=[thing(3)], pass_id=3, tracked=True, seen=[{"id": "t0000"}])
        write(destination, back, Batch("listed", pass_id=3, tracked=True, sweep=3, hard_delete=True, pages=0))
        assert set(rows(url, "listed")) == {"t0000", "t0003"}
        assert rows(url, "listed")["t0003"]["_tapyard_deleted_at"] is None


def test_a_partition_s_pass_marks_only_that_partition_s_rows(url: str) -> None:
    with opened(url, LISTED) as destination:
        for part, ids in (("p1", (0, 1)), ("p2", (2, 3))):
            write(destination, Batch("listed", items=[thing(i) for i in ids], pass_id=1, tracked=True, scope=part),
                  Batch("listed", pass_id=1, tracked=True, sweep=1, scope=part, pages=0))
        # p1 is listed again without t0001; p2 is not read at all in this pass
        end = Batch("listed", pass_id=2, tracked=True, sweep=2, scope="p1", pages=0)
        write(destination, Batch("listed", items=[thing(0)], pass_id=2, tracked=True, scope="p1"), end)
        assert end.deleted == 1
    marked = {k for k, r in rows(url, "listed").items() if r["_tapyard_deleted_at"] is not None}
    assert marked == {"t0001"}


# -- full refresh: replaced in one transaction ---------------------------------------------


def test_a_full_refresh_replaces_the_rows_in_one_transaction(url: str) -> None:
    with opened(url) as destination:
        write(destination, Batch("things", items=[thing(i) for i in range(6)], state=StreamState(cursor="old")))
        before = rows(url)
        # the refresh's pages go to the staging table: readers still see every old row
        for page in ([thing(0, count=70), thing(1)], [thing(2)]):
            write(destination, Batch("things", items=page, pass_id=9, tracked=True, replace=True, stage=True,
                                     state=StreamState(cursor="old", pass_id=9, refresh=True)))
            assert rows(url) == before
        # an abandoned refresh's staged rows do not count: a later pass stages its own
        end = Batch("things", pass_id=9, tracked=True, swap=9, pages=0, state=StreamState(cursor="new"))
        write(destination, end)
        after = rows(url)
        assert set(after) == {"t0000", "t0001", "t0002"} and after["t0000"]["count"] == 70
        assert end.deleted == 3
        assert destination.load_state("k")["things"].cursor == "new"


def test_a_refresh_abandoned_then_started_again_keeps_only_the_new_pass(url: str) -> None:
    later = AT + dt.timedelta(days=1)
    with opened(url) as destination:
        write(destination, Batch("things", items=[thing(i) for i in range(3)]))
        # pass 1 stages a newer version of t0000 and t0001, then is abandoned
        write(destination, Batch("things", items=[thing(0, at=later, count=5), thing(1, at=later)],
                                 pass_id=1, tracked=True, replace=True, stage=True))
        # pass 2 (a new --full-refresh) sees t0000 at an older cursor and not t0001
        write(destination, Batch("things", items=[thing(0, count=4), thing(2)], pass_id=2, tracked=True,
                                 replace=True, stage=True))
        write(destination, Batch("things", pass_id=2, tracked=True, swap=2, pages=0))
    landed = rows(url)
    assert set(landed) == {"t0000", "t0002"} and landed["t0000"]["count"] == 4


def test_a_refresh_that_meets_a_key_again_in_a_later_commit_keeps_its_last_version(url: str) -> None:
    """Staged pages go straight into an empty staging table without asking which keys
    it holds; a record listed again on a later page (it moved while the source was
    listed) then meets its own key there: that commit is written again, merging."""
    with opened(url) as destination:
        write(destination, Batch("things", items=[thing(i) for i in range(4)]))
        state = StreamState(pass_id=3, refresh=True)
        write(destination, Batch("things", items=[thing(0), thing(1, count=10)], pass_id=3, tracked=True,
                                 replace=True, stage=True, state=state))
        write(destination, Batch("things", items=[thing(1, count=11), thing(2)], pass_id=3, tracked=True,
                                 replace=True, stage=True, state=state))
        write(destination, Batch("things", items=[thing(5)], pass_id=3, tracked=True, replace=True, stage=True,
                                 state=state))
        end = Batch("things", pass_id=3, tracked=True, swap=3, pages=0, state=StreamState(cursor="done"))
        write(destination, end)
        assert end.deleted == 1
    landed = rows(url)
    assert set(landed) == {"t0000", "t0001", "t0002", "t0005"}
    assert landed["t0001"]["count"] == 11


def test_a_full_refresh_sync_removes_stale_rows_and_readers_never_see_it_half_done(url: str) -> None:
    big = SampleConfig(records_per_stream=300, page_size=50)
    assert tapyard.sync("sample", big, to=url, streams=["customers"]).ok
    assert len(rows(url, "customers")) == 300
    seen: list[int] = []

    def progress(kind: str, result: Any) -> None:
        if kind == "page":  # after each committed page of the refresh, a reader looks
            seen.append(len(rows(url, "customers")))

    small = SampleConfig(records_per_stream=120, page_size=20)
    result = tapyard.sync("sample", small, to=url, streams=["customers"], full_refresh=True, progress=progress)
    assert result.ok
    assert seen and all(n == 300 for n in seen[:-1]), seen
    assert set(rows(url, "customers")) == {r["id"] for r in source_records(small, "customers")}
    customers = result.streams[0]
    assert customers.deleted == 180 and customers.inserted == 0
    # the same source again: the swap changes nothing, and the summary says so
    again = tapyard.sync("sample", small, to=url, streams=["customers"], full_refresh=True).streams[0]
    assert (again.records, again.inserted, again.updated, again.deleted) == (120, 0, 0, 0)


def test_an_interrupted_full_refresh_leaves_the_table_and_its_resume_replaces_it(url: str) -> None:
    before = SampleConfig(records_per_stream=200, page_size=20)
    assert tapyard.sync("sample", before, to=url, streams=["customers"]).ok
    old = rows(url, "customers")
    pages = 0

    def interrupt(kind: str, result: Any) -> None:
        nonlocal pages
        pages += kind == "page"
        if pages == 3:
            raise KeyboardInterrupt

    after = SampleConfig(records_per_stream=90, page_size=20, as_of=T0 + dt.timedelta(days=40))
    with pytest.raises(KeyboardInterrupt):
        tapyard.sync("sample", after, to=url, streams=["customers"], full_refresh=True, progress=interrupt)
    assert rows(url, "customers") == old  # three pages committed, all staged: the table as it was
    # the next run (no --full-refresh) resumes the refresh pass and replaces the rows at its end
    assert tapyard.sync("sample", after, to=url, streams=["customers"]).ok
    expected = {r["id"]: r for r in source_records(after, "customers")}
    landed = rows(url, "customers")
    assert set(landed) == set(expected)
    for key, record in expected.items():
        assert_same_value(_parsed(record["updated_at"]), landed[key]["updated_at"], key)


# -- locks ---------------------------------------------------------------------------------


def test_one_run_per_stream(url: str) -> None:
    with opened(url) as first, first.lock("things", 0):
        second = open_destination(url) if not url.startswith("duckdb") else first
        try:
            with pytest.raises(DestinationError, match="busy") as info, second.lock("things", 0.3):
                pass
            assert len(str(info.value).splitlines()) == 1
            with second.lock("other", 0):
                pass
        finally:
            if second is not first:
                second.close()


def test_a_second_process_is_told_busy_in_one_line_or_waits(url: str) -> None:
    slow = {"records_per_stream": 4000, "page_size": 20, "latency_ms": 25}
    first = subprocess.Popen([*TAPYARD, "sync", "sample", "-c", json.dumps(slow), "--to", url, "-s", "customers"],
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _began_committing(url, small=True):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        quick = [*TAPYARD, "sync", "sample", "-c", '{"records_per_stream": 50}', "--to", url, "-s", "customers"]
        busy = subprocess.run(quick, env=ENV, capture_output=True, text=True, timeout=120)
        assert busy.returncode == 1 and "busy" in busy.stderr, busy.stderr
        assert len(busy.stderr.strip().splitlines()) == 1, busy.stderr
        waited = subprocess.run([*quick, "--wait", "120"], env=ENV, capture_output=True, text=True, timeout=180)
        assert waited.returncode == 0, waited.stderr
        assert first.wait(timeout=120) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


# -- schema evolution ----------------------------------------------------------------------


class ThingV2(Thing):
    extra: str | None = None


class ThingRetyped(BaseModel):
    id: str
    count: dict[str, Any]
    at: dt.datetime


def test_a_new_field_adds_a_column_and_an_incompatible_change_is_one_line(url: str) -> None:
    with opened(url) as destination:
        write(destination, Batch("things", items=[thing(1)]))
    evolved = Stream(name="things", schema_model=ThingV2, primary_key=("id",), cursor_field="at")
    with opened(url, evolved) as destination:
        write(destination, Batch("things", items=[ThingV2(**thing(2).model_dump(), extra="new")]))
    landed = rows(url)
    assert landed["t0002"]["extra"] == "new" and landed["t0001"]["extra"] is None
    retyped = Stream(name="things", schema_model=ThingRetyped, primary_key=("id",), cursor_field="at")
    if url.startswith("sqlite"):
        return  # SQLite columns hold any value: the table is kept (docs/types.md)
    destination = open_destination(url)
    try:
        with pytest.raises(DestinationError) as info:
            destination.prepare(retyped, columns_of(ThingRetyped))
    finally:
        destination.close()
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "'count'" in message and "--full-refresh" in message


# -- a record the database cannot hold -----------------------------------------------------


def test_a_value_the_database_cannot_hold_goes_to_the_dead_letters_and_the_page_lands(url: str) -> None:
    things = [thing(1), thing(2, note="lone \udc80 surrogate"), thing(3)]
    batch = Batch("things", items=things, state=StreamState(cursor="c"))
    with opened(url) as destination:
        write(destination, batch)
        assert [d.raw["id"] for d in batch.dead] == ["t0002"]
        assert "\udc80" not in batch.dead[0].error
        assert set(rows(url)) == {"t0001", "t0003"}
        assert destination.load_state("k")["things"].cursor == "c"
        kept = destination.dead_letters("k")
        assert [json.loads(d.raw)["id"] for d in kept] == ["t0002"]
        destination.mark_replayed([kept[0].id])
        assert destination.dead_letters("k") == []


def test_an_integer_past_64_bits_keeps_every_digit_and_the_column_stays_wide(url: str) -> None:
    big = 10**20 + 7
    with opened(url) as destination:
        write(destination, Batch("things", items=[thing(1)]))
        batch = Batch("things", items=[thing(2, count=big), thing(3, count=-big)])
        write(destination, batch)
        assert batch.dead == []
    with opened(url) as destination:  # the next run takes the widened column as it is
        write(destination, Batch("things", items=[thing(4), thing(5, count=big + 1)]))
    landed = rows(url)
    for key, count in (("t0001", 1), ("t0002", big), ("t0003", -big), ("t0004", 4), ("t0005", big + 1)):
        assert_same_value(count, landed[key]["count"], key)


def test_a_write_rolled_back_forgets_the_column_it_widened(url: str) -> None:
    """A write that widened a column for an integer past 64 bits, then failed, leaves
    the column as it was in the database and in what the destination knows of it:
    the next value past 64 bits widens it again and lands."""
    big = 10**20 + 7
    with opened(url) as destination:
        write(destination, Batch("things", items=[thing(1)]))
        with pytest.raises(KeyError):
            write(destination, Batch("things", items=[thing(2, count=big)]), Batch("unprepared", items=[thing(3)]))
        batch = Batch("things", items=[thing(4, count=big)], state=StreamState(cursor="d"))
        write(destination, batch)
        assert batch.dead == []
        assert destination.load_state("k")["things"].cursor == "d"
    landed = rows(url)
    assert set(landed) == {"t0001", "t0004"}
    assert_same_value(big, landed["t0004"]["count"], "t0004")


def test_rows_loaded_straight_into_a_new_table_then_met_again_are_merged(url: str) -> None:
    """A table found empty takes its first rows without a lookup of their keys; a
    later write of the same run that meets one of them (DuckDB: the write is rolled
    back and written again, as it has no savepoints) merges it, with the state, once,
    even when the same write also widens a column."""
    later, big = AT + dt.timedelta(hours=1), 10**20 + 7
    with opened(url) as destination:
        write(destination, Batch("things", items=[thing(1), thing(2)], state=StreamState(cursor="a")))
        again = Batch("things", items=[thing(2, at=later, count=20), thing(3), thing(4, count=big)],
                      state=StreamState(cursor="b"))
        write(destination, again)
        assert again.dead == [] and again.changed == 3
        assert destination.load_state("k")["things"].cursor == "b"
        assert destination.count("things") == 4
    landed = rows(url)
    for key, count in (("t0001", 1), ("t0002", 20), ("t0003", 3), ("t0004", big)):
        assert_same_value(count, landed[key]["count"], key)


def test_a_write_written_again_keeps_each_dead_letter_once(url: str) -> None:
    """A record the database cannot hold, then a key stored by an earlier write of
    the run (DuckDB writes the whole write again): one dead letter, the rest lands."""
    later = AT + dt.timedelta(hours=1)
    with opened(url) as destination:
        write(destination, Batch("things", items=[thing(1)]))
        batch = Batch("things", items=[thing(2, note="lone \udc80 surrogate"), thing(1, at=later, count=10), thing(3)],
                      state=StreamState(cursor="c"))
        write(destination, batch)
        assert [d.raw["id"] for d in batch.dead] == ["t0002"]
        assert [json.loads(d.raw)["id"] for d in destination.dead_letters("k")] == ["t0002"]
        assert destination.load_state("k")["things"].cursor == "c"
    landed = rows(url)
    assert set(landed) == {"t0001", "t0003"}
    assert_same_value(10, landed["t0001"]["count"], "t0001")


# -- kill and resume -----------------------------------------------------------------------


def test_sigkill_mid_sync_then_resume_equals_the_source(url: str) -> None:
    """A real `tapyard sync` killed with SIGKILL at a random moment after it began
    committing, then run again: every record of the source, in its version, once."""
    config = {"records_per_stream": 2000, "page_size": 25, "latency_ms": 15,
              "as_of": (T0 + dt.timedelta(days=30)).isoformat()}
    args = [*TAPYARD, "sync", "sample", "-c", json.dumps(config), "--to", url, "-s", "customers,orders"]
    rng = random.Random(os.environ.get("PYTEST_XDIST_WORKER", "") + url.split(":", 1)[0])
    process = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not _began_committing(url):
        assert process.poll() is None, "the sync ended before it could be killed: make it longer"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 0.8))
    assert process.poll() is None, "the sync ended before it could be killed: make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    with open_destination(url) as destination:  # killed mid-sync: some rows committed, not all
        partial = [destination.count(s) or 0 for s in ("customers", "orders")]
    assert 0 < sum(partial) < 2 * config["records_per_stream"], partial
    done = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    source = SampleConfig(**{**config, "as_of": dt.datetime.fromisoformat(config["as_of"])})
    for stream in ("customers", "orders"):
        expected = {r["id"]: r for r in source_records(source, stream)}
        landed = rows(url, stream)
        assert set(landed) == set(expected), stream
        with open_destination(url) as destination:
            assert destination.count(stream) == len(expected)  # no duplicates
        for key, record in expected.items():
            for name in ("updated_at", "email", "amount", "address", "items"):
                if name in record:
                    assert_same_value(_parsed(record[name]), landed[key][name], f"{stream}.{key}.{name}")


def _began_committing(url: str, *, small: bool = False) -> bool:
    """Whether a sync writing ``url`` from another process has committed records yet.
    A DuckDB file cannot be opened while its writer holds it: its write-ahead log
    growing past the tables' creation says so instead."""
    if url.startswith("duckdb"):
        wal = Path(url[len("duckdb:///"):] + ".wal")
        return wal.exists() and wal.stat().st_size > (32 if small else 256) * 1024
    try:
        with open_destination(url) as destination:
            return bool(destination.count("customers") or destination.count("orders"))
    except DestinationError:
        return False


def _parsed(value: Any) -> Any:
    if isinstance(value, str) and value.endswith("Z") and "T" in value:
        return dt.datetime.fromisoformat(value)
    return value
