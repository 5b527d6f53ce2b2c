"""Schema drift: every field the sample server sends, in every stream and at
every point of its timeline (updates and deletions included), has a column of
its type; nothing is rejected or changed."""

from __future__ import annotations

import pytest

from tapyard.testing import schema_drift


@pytest.mark.parametrize("as_of", [None, "2024-03-01T00:00:00Z"])
def test_schema_drift_against_the_sample_server(as_of: str | None) -> None:
    config = {"records_per_stream": 400, "page_size": 100, "seed": 7, **({"as_of": as_of} if as_of else {})}
    assert [str(d) for d in schema_drift("sample", config)] == []
