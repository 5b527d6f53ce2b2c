"""Schema drift against fake-gcs-server: every field the connector yields for what
fake-gcs-server sends, in every stream, has a column of its type; nothing is rejected
or changed. Seeded through google-cloud-storage with values that break naive syncs."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tapyard.testing import AWKWARD_ROW_SCHEMA, UNICODE, awkward_jsonl, schema_drift

pytest.importorskip("pyarrow", reason="the records stream reads Parquet too: pip install pyarrow")


def test_schema_drift_against_fake_gcs(gcs_endpoint: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    gcs = storage.Client(project="test-project", credentials=AnonymousCredentials(),
                         client_options={"api_endpoint": gcs_endpoint})
    bucket = gcs.create_bucket(f"drift-{uuid.uuid4().hex[:8]}")
    blob = bucket.blob(f"in/{UNICODE}.jsonl")
    blob.metadata = {"note": "x"}
    blob.upload_from_string(awkward_jsonl())
    bucket.blob("in/empty.csv").upload_from_string(b"")
    bucket.blob("in/plain.csv").upload_from_string(b"id,amount,note,nested\n4,1E+3,,\n")
    config: dict[str, Any] = {"endpoint_url": gcs_endpoint, "project": "test-project", "bucket": bucket.name,
                              "prefix": "in/", "page_size": 2, "retry_initial_s": 0.05, "retry_deadline_s": 10}
    assert [str(d) for d in schema_drift("gcp", config)] == []
    typed = {**config, "record_schema": AWKWARD_ROW_SCHEMA, "formats": ["jsonl"]}
    assert [str(d) for d in schema_drift("gcp", typed, streams=["blob_records"])] == []
