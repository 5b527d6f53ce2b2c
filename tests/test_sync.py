"""End-to-end syncs of the sample connector over real local HTTP into real SQLite and JSONL."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard_sample import SampleConfig, source_records

STREAMS = ("customers", "orders", "events")


def rows(db: Path, table: str) -> dict[str, dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return {r["id"]: dict(r) for r in con.execute(f'SELECT * FROM "{table}"')}
    finally:
        con.close()


def assert_matches_source(db: Path, config: SampleConfig) -> None:
    for stream in STREAMS:
        expected = source_records(config, stream)
        got = rows(db, stream)
        assert len(got) == len(expected), stream
        cursor = "created_at" if stream == "events" else "updated_at"
        for record in expected:
            row = got[record["id"]]
            assert _ts(row[cursor]) == _ts(record[cursor]), (stream, record["id"])
            if stream != "events":
                assert bool(row["deleted"]) == record["deleted"]


def _ts(value: str) -> dt.datetime:
    return tapyard.parse_timestamp(value)


def test_full_sync_writes_every_record(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    config = SampleConfig(records_per_stream=250, page_size=40)
    result = tapyard.sync("sample", config, to=f"sqlite:///{db}")
    assert result.ok, result.to_json()
    assert result.records == 750
    assert_matches_source(db, config)
    customers = rows(db, "customers")
    first = customers["cus_000001"] if "cus_000001" in customers else next(iter(customers.values()))
    assert json.loads(first["address"])["country"]  # nested objects stored as JSON
    assert result.http["requests"] >= 750 // 40


def test_incremental_sync_fetches_only_changes(tmp_path: Path) -> None:
    db = tmp_path / "inc.db"
    early = SampleConfig(records_per_stream=300, page_size=50, as_of=dt.datetime(2024, 1, 20, tzinfo=dt.UTC))
    later = early.model_copy(update={"as_of": dt.datetime(2024, 2, 10, tzinfo=dt.UTC)})

    first = tapyard.sync("sample", early, to=f"sqlite:///{db}")
    assert first.ok
    assert_matches_source(db, early)

    again = tapyard.sync("sample", early, to=f"sqlite:///{db}")
    assert again.records == 0, "nothing changed, nothing fetched"

    second = tapyard.sync("sample", later, to=f"sqlite:///{db}")
    assert second.ok
    for stream in STREAMS:
        before = {r["id"]: r for r in source_records(early, stream)}
        after = source_records(later, stream)
        changed = [r for r in after if r["id"] not in before or r != before[r["id"]]]
        got = next(s for s in second.streams if s.name == stream)
        assert got.records == len(changed), stream
        assert len(changed) > 0
    assert_matches_source(db, later)
    deleted = [r for r in rows(db, "customers").values() if r["deleted"]]
    assert deleted, "soft deletes arrive as updates"


def test_jsonl_destination_and_state(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    config = SampleConfig(records_per_stream=120, page_size=25)
    result = tapyard.sync("sample", config, to=f"jsonl:///{out}")
    assert result.ok
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 360
    assert {line["stream"] for line in lines} == set(STREAMS)
    assert tapyard.sync("sample", config, to=f"jsonl:///{out}").records == 0
    assert len(out.read_text().splitlines()) == 360


def test_full_refresh_reads_everything_again(tmp_path: Path) -> None:
    db = tmp_path / "fr.db"
    config = SampleConfig(records_per_stream=60, page_size=25)
    tapyard.sync("sample", config, to=f"sqlite:///{db}")
    result = tapyard.sync("sample", config, to=f"sqlite:///{db}", full_refresh=True, streams=["events"])
    assert [s.name for s in result.streams] == ["events"]
    assert result.records == 60
    assert len(rows(db, "events")) == 60


class CorruptEveryTenth:
    """A plugin that breaks every tenth customer so that validation sends it to dead letters."""

    @tapyard.hookimpl
    def tapyard_map_records(self, connector: Any, stream: Any, records: list[dict[str, Any]]) -> Any:
        if connector.name != "sample" or stream.name != "customers":
            return None
        out = []
        for record in records:
            if int(record["id"].split("_")[1]) % 10 == 0:
                record = {**record, "balance": "lots"}
            out.append(record)
        return out


def test_invalid_records_go_to_dead_letters(tmp_path: Path, register_plugin: Any) -> None:
    register_plugin(CorruptEveryTenth(), name="corrupt")
    db = tmp_path / "dl.db"
    config = SampleConfig(records_per_stream=100, page_size=30)
    result = tapyard.sync("sample", config, to=f"sqlite:///{db}", streams=["customers"])
    assert result.ok
    customers = next(s for s in result.streams if s.name == "customers")
    assert customers.dead_letters == 10
    assert customers.records == 90
    con = sqlite3.connect(db)
    dead = con.execute("SELECT stream, raw, error FROM _tapyard_dead_letters").fetchall()
    assert len(dead) == 10
    assert all(stream == "customers" and "balance" in error for stream, _, error in dead)
    assert all(json.loads(raw)["balance"] == "lots" for _, raw, _ in dead)
    assert con.execute("SELECT count(*) FROM customers").fetchone()[0] == 90


class ConcurrencyProbe:
    """A full-code connector whose streams (or partitions) record how many of them run at once."""

    def __init__(self, streams: int, partitions: int = 1) -> None:
        import threading

        from pydantic import BaseModel

        class Row(BaseModel):
            id: int
            at: int

        self.lock = threading.Lock()
        self.seen: list[Any] = []
        self.active = 0
        self.peak = 0
        probe = self

        class ProbeSource(tapyard.Source):
            def streams(self) -> list[tapyard.Stream]:
                return [tapyard.Stream(name=f"s{i}", schema_model=Row, cursor_field="at") for i in range(streams)]

            def partitions(self, stream: tapyard.Stream) -> list[dict[str, Any]]:
                return [{"part": p} for p in range(partitions)] if partitions > 1 else [{}]

            def read(self, stream: tapyard.Stream, state: tapyard.StreamState, partition: Any) -> Any:
                probe.seen.append((stream.name, dict(partition), state.cursor))
                with probe.lock:
                    probe.active += 1
                    probe.peak = max(probe.peak, probe.active)
                time.sleep(0.05)
                with probe.lock:
                    probe.active -= 1
                base = 10 * partition.get("part", 0)
                yield tapyard.Page(records=[{"id": base + 1, "at": base + 1}, {"id": base + 2, "at": base + 2}])

        class ProbeConnector(tapyard.Connector):
            name = "probe"

            def streams(self, config: Any) -> list[tapyard.Stream]:
                return ProbeSource().streams()

            def open(self, config: Any, context: Any) -> Any:
                import contextlib

                return contextlib.nullcontext(ProbeSource())

        self.connector = ProbeConnector()


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_is_bounded(tmp_path: Path, concurrency: int) -> None:
    probe = ConcurrencyProbe(streams=6)
    result = tapyard.sync(probe.connector, {}, to=f"sqlite:///{tmp_path / 'p.db'}", concurrency=concurrency)
    assert result.ok and result.records == 12
    assert probe.peak == concurrency


def test_partitions_run_concurrently_with_their_own_state(tmp_path: Path) -> None:
    probe = ConcurrencyProbe(streams=1, partitions=4)
    db = tmp_path / "parts.db"
    result = tapyard.sync(probe.connector, {}, to=f"sqlite:///{db}", concurrency=4)
    assert result.ok and result.records == 8
    assert probe.peak == 4
    states = _state(db)
    assert set(states) == {f's0|{{"part":{p}}}' for p in range(4)}
    assert sorted(s["cursor"] for s in states.values()) == [2, 12, 22, 32]
    probe.seen.clear()
    tapyard.sync(probe.connector, {}, to=f"sqlite:///{db}", concurrency=4)
    assert sorted((p["part"], cursor) for _, p, cursor in probe.seen) == [(0, 2), (1, 12), (2, 22), (3, 32)]


def _state(db: Path) -> dict[str, Any]:
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            found = con.execute("SELECT stream, state FROM _tapyard_state").fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:
        return {}
    return {stream: json.loads(text) for stream, text in found}


@pytest.mark.parametrize("destination", ["sqlite", "jsonl"])
def test_sigkill_mid_stream_then_resume_loses_and_duplicates_nothing(tmp_path: Path, destination: str) -> None:
    config = {"records_per_stream": 400, "page_size": 10, "latency_ms": 15}
    db = tmp_path / "kill.db"
    out = tmp_path / "kill.jsonl"
    url = f"sqlite:///{db}" if destination == "sqlite" else f"jsonl:///{out}"
    env = {**os.environ, "TAPYARD_QUIET": "1"}
    cmd = [sys.executable, "-m", "tapyard", "sync", "sample", "--config", json.dumps(config), "--to", url]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    state_file = out.with_name(out.name + ".state.json")

    def in_progress() -> bool:
        if destination == "sqlite":
            states = _state(db)
        else:
            try:
                states = json.loads(state_file.read_text())["states"].get("sample", {})
            except (OSError, ValueError):
                return False
        return sum(1 for s in states.values() if s.get("resume") or s.get("pending")) >= 2

    while not in_progress():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    sample = SampleConfig(**config)
    if destination == "sqlite":
        assert_matches_source(db, sample)
        con = sqlite3.connect(db)
        for stream in STREAMS:
            total, distinct = con.execute(f'SELECT count(*), count(DISTINCT id) FROM "{stream}"').fetchone()
            assert total == distinct == 400
    else:
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        for stream in STREAMS:
            ids = [line["record"]["id"] for line in lines if line["stream"] == stream]
            assert len(ids) == len(set(ids)) == 400, stream
            assert set(ids) == {r["id"] for r in source_records(sample, stream)}


class ThresholdProbe:
    """Records the collector's gen-0 threshold while pages stream through."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    @tapyard.hookimpl
    def tapyard_map_records(self, connector: Any, stream: Any, records: list[dict[str, Any]]) -> None:
        import gc

        self.seen.append(gc.get_threshold()[0])


def test_collector_runs_about_once_a_commit_during_a_sync_and_is_put_back(
    tmp_path: Path, register_plugin: Any
) -> None:
    """A commit's batch (2,000 records, some 20,000 containers) stays below the
    gen-0 threshold during a sync, so the collector does not walk it page after
    page; the host process gets its own threshold back afterwards."""
    import gc

    probe = ThresholdProbe()
    register_plugin(probe, name="threshold-probe")
    before = gc.get_threshold()
    gc.set_threshold(700, before[1], before[2])
    try:
        result = tapyard.sync("sample", SampleConfig(records_per_stream=60, page_size=20), to=f"sqlite:///{tmp_path / 'gc.db'}")
        assert result.ok
        assert probe.seen and min(probe.seen) >= 100_000
        assert gc.get_threshold()[0] == 700
    finally:
        gc.set_threshold(*before)
