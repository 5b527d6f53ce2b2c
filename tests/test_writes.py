"""What a sync does to its destination: versions never go back, one writer per
stream, deletes, full refresh, refused resume points, files tapyard did not
write, URL forms that are easy to get wrong, and the summary of a run."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import tapyard
from tapyard.destinations._base import cursor_sort_key
from tapyard.testing import run_cli
from tapyard_sample import SampleConfig, source_records
from tapyard_sample._data import T0
from tests.moving_server import MovingServer, connector
from tests.test_sync import rows as table

pytestmark = pytest.mark.reliability

ENV = {**os.environ, "TAPYARD_QUIET": "1"}
TAPYARD = [sys.executable, "-m", "tapyard"]


def test_cursor_sort_key_orders_timestamps_as_time() -> None:
    same = [
        "2024-01-03T04:05:06.123456Z",
        "2024-01-03T05:05:06.123456+01:00",
        "2024-01-03T04:05:06.123456000+00:00",
        dt.datetime(2024, 1, 3, 4, 5, 6, 123456, tzinfo=dt.UTC),
    ]
    assert len({cursor_sort_key(v) for v in same}) == 1
    # as text these sort the other way round
    assert cursor_sort_key("2024-01-03T04:05:06.123456789Z") > cursor_sort_key("2024-01-03T04:05:06.123456Z")
    assert cursor_sort_key("2024-01-03T06:00:00+05:00") < cursor_sort_key("2024-01-03T02:00:00Z")
    assert cursor_sort_key(17) == 17 and cursor_sort_key("not a time") == "not a time"


# -- versions never go back -----------------------------------------------------


def test_an_older_view_of_the_source_never_replaces_a_newer_version(tmp_path: Path) -> None:
    """Two syncs of one stream (two jobs with their own state) seeing the sample at
    different moments: the one that saw it later wins, whichever writes last."""
    db = tmp_path / "two.db"
    late = SampleConfig(records_per_stream=400, page_size=50, as_of=T0 + dt.timedelta(days=50))
    early = SampleConfig(records_per_stream=400, page_size=50, as_of=T0 + dt.timedelta(days=25))
    first = tapyard.sync("sample", late, to=f"sqlite:///{db}", streams=["customers"], state_key="late")
    assert first.ok
    second = tapyard.sync("sample", early, to=f"sqlite:///{db}", streams=["customers"], state_key="early")
    assert second.ok
    customers = next(s for s in second.streams if s.name == "customers")
    assert customers.records > 0 and customers.updated == 0 and customers.inserted == 0
    got = table(db, "customers")
    for record in source_records(late, "customers"):
        assert got[record["id"]]["updated_at"].startswith(record["updated_at"][:19]), record["id"]


def test_overlapping_syncs_of_one_stream_the_later_view_wins(tmp_path: Path) -> None:
    """Two CLI syncs of one stream at once, the second seeing the source later: it
    waits for the first (--wait) and no row ends older than what it saw."""
    db = tmp_path / "overlap.db"
    url = f"sqlite:///{db}"
    slow = {"records_per_stream": 1500, "page_size": 10, "latency_ms": 40,
            "as_of": (T0 + dt.timedelta(days=20)).isoformat()}
    later = {"records_per_stream": 1500, "page_size": 20, "as_of": (T0 + dt.timedelta(days=45)).isoformat()}
    first = subprocess.Popen([*TAPYARD, "sync", "sample", "-c", json.dumps(slow), "--to", url, "-s", "customers"],
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (db.exists() and _committed(db)):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    busy = subprocess.run([*TAPYARD, "sync", "sample", "-c", json.dumps(later), "--to", url, "-s", "customers"],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert busy.returncode == 1
    assert "is busy" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1, busy.stderr
    waited = subprocess.run(
        [*TAPYARD, "sync", "sample", "-c", json.dumps(later), "--to", url, "-s", "customers", "--wait", "120"],
        env=ENV, capture_output=True, text=True, timeout=180,
    )
    assert waited.returncode == 0, waited.stderr
    assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
    got = table(db, "customers")
    expected = source_records(SampleConfig(**later), "customers")
    assert len(got) == len(expected)
    stale = [r["id"] for r in expected if not got[r["id"]]["updated_at"].startswith(r["updated_at"][:19])]
    assert stale == []


def _committed(db: Path) -> bool:
    try:
        with sqlite3.connect(db) as con:
            return bool(con.execute("SELECT count(*) FROM _tapyard_state").fetchone()[0])
    except sqlite3.Error:
        return False


# -- deletes and full refresh -----------------------------------------------------


def test_discover_says_how_deletes_arrive() -> None:
    shown = run_cli("discover", "sample", "--json")
    assert shown.exit_code == 0, shown.stderr
    deletes = {s["name"]: s["deletes"] for s in json.loads(shown.stdout)["streams"]}
    assert deletes == {"customers": "vendor", "orders": "vendor", "events": "none"}
    table_view = run_cli("discover", "sample")
    assert "by vendor" in table_view.stdout and "not supported" in table_view.stdout


@contextlib.contextmanager
def synced_then_removed(db: Path, stream: str, records: int, every: int) -> Iterator[tuple[MovingServer, Any, list[str]]]:
    """A moving server synced once into ``db``, then every ``every``-th record of
    ``stream`` removed at the source for good."""
    with MovingServer(records=records) as server:
        source = connector(server.url, page_size=25)
        assert tapyard.sync(source, to=f"sqlite:///{db}", streams=[stream]).ok
        gone = sorted(server.snapshot(stream))[::every]
        server.remove(stream, gone)
        yield server, source, gone


def test_rows_a_complete_listing_did_not_see_are_marked_then_removed(tmp_path: Path) -> None:
    db = tmp_path / "listing.db"
    with synced_then_removed(db, "objects", 120, 10) as (server, source, gone):
        result = tapyard.sync(source, to=f"sqlite:///{db}", streams=["objects"])
        objects = next(s for s in result.streams if s.name == "objects")
        assert objects.deleted == len(gone)
        rows = table(db, "objects")
        assert sorted(k for k, r in rows.items() if r["_tapyard_deleted_at"]) == gone
        assert len(rows) == 120
        # one comes back: unmarked
        with server.lock:
            server.collections["objects"].put({"id": gone[0], "name": "back", "version": 9,
                                               "updated_at": "2030-01-01T00:00:00.000000Z", "deleted": False})
        assert tapyard.sync(source, to=f"sqlite:///{db}", streams=["objects"]).ok
        assert table(db, "objects")[gone[0]]["_tapyard_deleted_at"] is None
        removed = tapyard.sync(source, to=f"sqlite:///{db}", streams=["objects"], hard_delete=True)
        assert next(s for s in removed.streams if s.name == "objects").deleted == len(gone) - 1
        assert set(table(db, "objects")) == set(server.snapshot("objects"))


def test_full_refresh_removes_stale_rows_and_never_shows_a_half_empty_table(tmp_path: Path) -> None:
    db = tmp_path / "refresh.db"
    with synced_then_removed(db, "customers", 600, 7) as (server, source, gone):
        counts: list[int] = []
        stop = threading.Event()

        def watch() -> None:
            con = sqlite3.connect(db)
            while not stop.is_set():
                counts.append(con.execute("SELECT count(*) FROM customers").fetchone()[0])
            con.close()

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            result = tapyard.sync(source, to=f"sqlite:///{db}", streams=["customers"], full_refresh=True)
        finally:
            stop.set()
            watcher.join()
        assert result.ok
        assert next(s for s in result.streams if s.name == "customers").deleted == len(gone)
        assert set(table(db, "customers")) == set(server.snapshot("customers"))
        assert counts and min(counts) >= 600 - len(gone)  # every row throughout, old or new, until the swap


def test_a_page_token_the_vendor_refuses_restarts_the_read_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tapyard.engine._sync as engine

    monkeypatch.setattr(engine, "COMMIT_ROWS", 25)  # one page per transaction: stopped mid-stream
    db = tmp_path / "token.db"

    class Stop(Exception):
        pass

    def stop_after_three_pages(event: str, result: tapyard.StreamResult) -> None:
        if result.pages >= 3:
            raise Stop

    with MovingServer(records=300) as server:
        source = connector(server.url, page_size=25)
        with pytest.raises(Stop):
            tapyard.sync(source, to=f"sqlite:///{db}", streams=["tokens"], concurrency=1,
                         progress=stop_after_three_pages)
        server.restart()  # the saved token is refused from now on (400)
        server.move(changes=20)
        result = tapyard.sync(source, to=f"sqlite:///{db}", streams=["tokens"])
        assert result.ok, [s.error for s in result.streams]
        tokens = next(s for s in result.streams if s.name == "tokens")
        assert any("refused" in w for w in tokens.warnings), tokens.warnings
        expected = server.snapshot("tokens")
        got = table(db, "tokens")
        assert {k: r["version"] for k, r in got.items()} == {k: r["version"] for k, r in expected.items()}


# -- destinations refuse to clobber ---------------------------------------------------


def test_jsonl_refuses_a_file_it_did_not_write_and_appends_to_its_own(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# a file the user wrote\n")
    refused = run_cli("sync", "sample", "--to", f"jsonl:///{readme}")
    assert refused.exit_code == 1
    assert "tapyard did not write it" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert readme.read_text() == "# a file the user wrote\n"

    out = tmp_path / "out.jsonl"
    config = {"records_per_stream": 50, "as_of": (T0 + dt.timedelta(days=20)).isoformat()}
    first = run_cli("sync", "sample", "-c", json.dumps(config), "--to", f"jsonl:///{out}")
    assert first.exit_code == 0, first.stderr
    written = out.read_text()
    config["as_of"] = None
    again = run_cli("sync", "sample", "-c", json.dumps(config), "--to", f"jsonl:///{out}")
    assert again.exit_code == 0, again.stderr
    assert out.read_text().startswith(written) and len(out.read_text()) > len(written)  # appended


def test_a_sqlite_url_with_one_slash_is_refused_naming_the_right_forms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done = run_cli("sync", "sample", "--to", "sqlite:/tapyard-out-test.db")
    assert done.exit_code == 1
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "sqlite:///tapyard-out-test.db" in line and "sqlite:////tapyard-out-test.db" in line
    assert not Path("/tapyard-out-test.db").exists() and not (tmp_path / "tapyard-out-test.db").exists()


# -- the summary says what happened ---------------------------------------------------


def test_the_summary_counts_inserted_updated_and_says_when_nothing_changed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    early = json.dumps({"records_per_stream": 200, "as_of": (T0 + dt.timedelta(days=15)).isoformat()})
    first = run_cli("sync", "sample", "-c", early, "--to", url, "--json")
    assert first.exit_code == 0, first.stderr
    streams = {s["name"]: s for s in json.loads(first.stdout)["streams"]}
    assert streams["customers"]["inserted"] == streams["customers"]["read"] > 0
    assert streams["customers"]["updated"] == 0

    same = run_cli("sync", "sample", "-c", early, "--to", url)
    assert same.exit_code == 0, same.stderr
    assert "nothing changed" in same.stdout

    later = run_cli("sync", "sample", "-c", json.dumps({"records_per_stream": 200}), "--to", url, "--json")
    streams = {s["name"]: s for s in json.loads(later.stdout)["streams"]}
    customers = streams["customers"]
    assert customers["updated"] > 0 and customers["inserted"] > 0
    assert customers["inserted"] + customers["updated"] == customers["read"]


class _CorruptSome:
    @tapyard.hookimpl
    def tapyard_map_records(self, connector: Any, stream: Any, records: list[dict[str, Any]]) -> Any:
        if stream.name != "customers":
            return None
        return [{**r, "balance": "lots"} if r["id"].endswith("7") else r for r in records]


def test_dead_letters_are_flagged_and_fail_the_run_when_asked(tmp_path: Path, register_plugin: Any) -> None:
    register_plugin(_CorruptSome(), name="corrupt")
    url = f"sqlite:///{tmp_path / 'd.db'}"
    shown = run_cli("sync", "sample", "-s", "customers", "--to", url)
    assert shown.exit_code == 0, shown.stderr
    assert "100 records went to the dead letters (customers)" in shown.stdout
    failed = run_cli("sync", "sample", "-s", "customers", "--to", f"sqlite:///{tmp_path / 'e.db'}",
                     "--fail-on-dead-letters")
    assert failed.exit_code == 1
    assert "--fail-on-dead-letters" in failed.stderr and len(failed.stderr.strip().splitlines()) == 1


def test_an_incremental_read_asks_again_from_the_boundary_less_its_lookback() -> None:
    from pydantic import BaseModel

    class Row(BaseModel):
        id: int
        at: str

    stream = tapyard.Stream(name="rows", schema_model=Row, cursor_field="at", cursor_lookback=1.0, is_sorted=True)
    assert stream.since(tapyard.StreamState(cursor="2024-01-01T00:00:05Z")) == "2024-01-01T00:00:04Z"
    # an interrupted pass of a sorted listing goes on from what it wrote, less the lookback too
    resumed = tapyard.StreamState(cursor="2024-01-01T00:00:05Z", pending="2024-01-01T00:00:09.250000+02:00")
    assert stream.since(resumed) == "2024-01-01T00:00:08.250000+02:00"
    unsorted = stream.model_copy(update={"is_sorted": False})
    assert unsorted.since(resumed) == "2024-01-01T00:00:04Z"
    numbered = stream.model_copy(update={"cursor_lookback": 10})
    assert numbered.since(tapyard.StreamState(cursor=1000)) == 990
    assert stream.model_copy(update={"cursor_lookback": 0}).since(resumed) == resumed.pending


class Parted(tapyard.Connector):
    """One stream (``deletes="listing"``) read in one partition per key of ``data``;
    a partition named in ``broken`` fails after its first record."""

    name = "parted"

    class Thing(BaseModel):
        id: int
        label: str

    def __init__(self, data: dict[str, dict[int, str]]) -> None:
        self.data = data
        self.broken: set[str] = set()

    def streams(self, config: Any) -> list[tapyard.Stream]:
        return [tapyard.Stream(name="things", schema_model=self.Thing, deletes="listing")]

    def open(self, config: Any, context: Any) -> Any:
        connector = self

        class Source(tapyard.Source):
            def streams(self) -> list[tapyard.Stream]:
                return connector.streams(config)

            def partitions(self, stream: tapyard.Stream) -> list[dict[str, Any]]:
                return [{"part": p} for p in sorted(connector.data)]

            def read(self, stream: tapyard.Stream, state: tapyard.StreamState, partition: Any) -> Iterator[tapyard.Page]:
                part = partition["part"]
                records = [{"id": k, "label": v} for k, v in sorted(connector.data[part].items())]
                if part in connector.broken:
                    yield tapyard.Page(records=records[:1])
                    raise tapyard.ResponseError(f"partition {part} failed")
                yield tapyard.Page(records=records)

        return contextlib.nullcontext(Source())


def test_a_complete_pass_of_one_partition_marks_that_partitions_absent_rows(tmp_path: Path) -> None:
    """A stream read in partitions used to skip listing-detected deletes (rows did
    not say which partition wrote them). Now each row carries its partition, and a
    full pass of a partition marks that partition's absent rows only: a row that
    moved to another partition is not marked, and a partition whose pass failed
    marks nothing while the partition beside it does."""
    db = tmp_path / "parted.db"
    connector = Parted({"a": {1: "x", 2: "x", 3: "x"}, "b": {11: "y", 12: "y", 13: "y"}})
    first = tapyard.sync(connector, {}, to=f"sqlite:///{db}")
    assert first.ok and first.records == 6

    def marked() -> set[int]:
        return {k for k, r in table(db, "things").items() if r["_tapyard_deleted_at"]}

    del connector.data["a"][2], connector.data["b"][12]
    connector.data["b"][3] = connector.data["a"].pop(3)  # moved from partition a to b
    second = tapyard.sync(connector, {}, to=f"sqlite:///{db}")
    assert second.ok, [s.error for s in second.streams]
    assert second.streams[0].deleted == 2
    assert marked() == {2, 12}

    # a's pass fails after its first record, while 13 goes from b
    del connector.data["b"][13]
    connector.data["a"][4] = "new"
    connector.broken = {"a"}
    third = tapyard.sync(connector, {}, to=f"sqlite:///{db}")
    assert not third.ok and third.streams[0].deleted == 1
    assert marked() == {2, 12, 13}  # 4 was never seen, nothing of a's was marked

    connector.broken = set()
    removed = tapyard.sync(connector, {}, to=f"sqlite:///{db}", hard_delete=True)
    assert removed.ok and removed.streams[0].deleted == 3
    assert set(table(db, "things")) == {1, 3, 4, 11}
    assert {k: r["label"] for k, r in table(db, "things").items()} == {1: "x", 3: "x", 4: "new", 11: "y"}
