"""The sample connector's cassette: what the conformance kit replays (tapyard connectors test
connectors/sample), recorded against the connector's own server, and a replay of it."""

from __future__ import annotations

from pathlib import Path

import pytest

import tapyard
from tapyard.testing import cassette, fake_credentials

CASSETTE = Path(__file__).resolve().parents[3] / "cassettes" / "sample" / "full.yaml"
#: the server listens on a free port each run: match requests without their host
MATCH = ["method", "path", "query"]
#: the same as [tool.tapyard.conformance.sample] in pyproject.toml
CONFIG = {
    "records_per_stream": 6,
    "page_size": 4,
    "as_of": "2024-02-01T00:00:00Z",
    "auth": "api_key",
    "server_api_key": "fake-api_key",
}


def _credentials() -> tapyard.Credentials:
    return fake_credentials("sample", "api_key")  # type: ignore[return-value]


@pytest.mark.record
def test_record_the_conformance_cassette(tmp_path: Path) -> None:
    """A full read, an incremental read right after it, and a read stopped after its first page then resumed."""
    CASSETTE.unlink(missing_ok=True)  # vcr would add to an old cassette
    with cassette(CASSETTE, record_mode="all", match_on=MATCH):
        db = f"sqlite:///{tmp_path / 'full.db'}"
        full = tapyard.sync("sample", CONFIG, credentials=_credentials(), to=db, concurrency=1)
        again = tapyard.sync("sample", CONFIG, credentials=_credentials(), to=db, concurrency=1)
        stopped_db = f"sqlite:///{tmp_path / 'stopped.db'}"
        tapyard.sync("sample", CONFIG, credentials=_credentials(), to=stopped_db, concurrency=1, max_pages=1)
        resumed = tapyard.sync("sample", CONFIG, credentials=_credentials(), to=stopped_db, concurrency=1)
    assert full.ok and again.ok and resumed.ok
    assert again.records == 0


def test_replay_full_then_incremental(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'replay.db'}"
    with cassette(CASSETTE, match_on=MATCH):
        full = tapyard.sync("sample", CONFIG, credentials=_credentials(), to=db, concurrency=1)
        again = tapyard.sync("sample", CONFIG, credentials=_credentials(), to=db, concurrency=1)
    assert full.ok, [s.error for s in full.streams]
    assert {s.name: s.records for s in full.streams} == {"customers": 6, "orders": 6, "events": 6}
    assert again.ok and again.records == 0
