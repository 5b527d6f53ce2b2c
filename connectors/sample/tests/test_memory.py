"""The sample data set is served a page at a time: memory does not grow with its size."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tracemalloc
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from tapyard_sample import MAX_RECORDS_PER_STREAM, SampleConfig
from tapyard_sample._data import T0, Dataset
from tapyard_sample._server import SampleServer

MOMENTS = [None, T0, T0 + timedelta(days=9), T0 + timedelta(days=33)]


@pytest.mark.parametrize("stream", Dataset.STREAMS)
def test_a_listing_pages_positions_and_cursors_agree_with_visible(stream: str) -> None:
    dataset = Dataset(700, seed=9)
    field = dataset.cursor_field(stream)
    for as_of in MOMENTS:
        expected = dataset.visible(stream, as_of)
        listing = dataset.listing(stream, as_of)
        assert len(listing) == len(expected)
        assert listing.records(0, 10**9) == expected
        assert listing.records(5, 9) == expected[5:9]
        assert listing.records(len(expected) + 3, len(expected) + 9) == []
        for position, record in enumerate(expected):
            assert listing.position(record["id"]) == position
            assert listing.cursor(position) == record[field]
            assert listing.after(record[field]) == position + 1
        assert listing.after(None) == 0
    # Ids that are not visible at that moment, or not ids of this stream, have no position.
    early = dataset.listing(stream, T0)
    last = dataset.visible(stream)[-1]["id"]
    assert early.position(last) is None
    assert early.position("nope") is None
    assert early.position("cus_" + "9" * 30) is None
    assert early.position("cus_" + "\u0660" * 5 + "\u0661") is None  # Arabic-Indic digits


def _retained(build: object) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build() if callable(build) else None
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before


def test_a_warm_server_holds_an_index_not_the_records() -> None:
    # 40,000 customers as dicts take tens of MB; their order as 4-byte indexes 160 kB.
    dataset = Dataset(40_000, seed=2)

    def warmed() -> SampleServer:
        server = SampleServer(dataset)
        server.warm()
        return server

    retained = _retained(warmed)
    assert retained < 2_000_000, f"a warm server retains {retained:,} bytes"


def test_serving_pages_keeps_nothing_behind() -> None:
    dataset = Dataset(20_000, seed=2)
    with SampleServer(dataset, max_page_size=1000) as server, httpx.Client(base_url=server.url) as client:
        server.warm()
        client.get("/v1/orders", params={"limit": 1000}).raise_for_status()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for offset in range(0, 20_000, 1000):
                client.get("/v1/orders", params={"limit": 1000, "offset": offset}).raise_for_status()
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert grown < 1_000_000, f"paging through 20,000 orders left {grown:,} bytes behind"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("records_per_stream", True),
        ("records_per_stream", False),
        ("records_per_stream", "100"),
        ("records_per_stream", 10.0),
        ("records_per_stream", MAX_RECORDS_PER_STREAM + 1),
        ("page_size", True),
        ("seed", 10**400),
        ("latency_ms", True),
        ("rate_limit_per_s", float("inf")),
    ],
)
def test_numbers_in_the_config_are_strict_and_bounded(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        SampleConfig.model_validate({field: value})


def test_the_largest_size_is_accepted() -> None:
    assert SampleConfig.model_validate({"records_per_stream": MAX_RECORDS_PER_STREAM})


def test_a_boolean_size_is_one_clear_line_from_the_cli(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tapyard", "sync", "sample", "--config", '{"records_per_stream": true}',
         "--to", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "records_per_stream" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_a_sync_of_30000_records_per_stream_stays_under_120_mb(tmp_path: Path) -> None:
    # The whole `tapyard sync` process, server included (it runs in-process).
    # Before pages were computed on demand this peaked near 200 MB.
    code = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    config = json.dumps({"records_per_stream": 30_000})
    command = [sys.executable, "-m", "tapyard", "-q", "sync", "sample", "--config", config,
               "--to", f"sqlite:///{tmp_path / 'm.db'}"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code, *command], capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    status, peak_kb = (int(part) for part in done.stdout.split())
    assert status == 0, done.stderr
    assert peak_kb * 1024 < 120 * 1024 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"
