"""Schema drift against Azurite: every field the connector yields for what
Azurite sends, in every stream, has a column of its type; nothing is rejected
or changed. Seeded through azure-storage-blob with values that break naive syncs."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from tapyard.testing import AWKWARD_ROW_SCHEMA, UNICODE, awkward_jsonl, schema_drift

pytest.importorskip("pyarrow", reason="the records stream reads Parquet too: pip install pyarrow")


def test_schema_drift_against_azurite(azurite_endpoint: str) -> None:
    from azure.storage.blob import BlobServiceClient

    from tapyard_azure import AzureConnectionStringAuth
    from tapyard_azure.testing import connection_string

    text = connection_string(azurite_endpoint)
    service = BlobServiceClient.from_connection_string(text)
    with contextlib.suppress(Exception):
        service.delete_container("drift")
    container = service.create_container("drift")
    container.upload_blob(f"in/{UNICODE}.jsonl", awkward_jsonl(),
                          metadata={"note": "x"}, content_settings=None)
    container.upload_blob("in/empty.csv", b"")
    container.upload_blob("in/plain.csv", b"id,amount,note,nested\n4,1E+3,,\n")
    credentials = AzureConnectionStringAuth.Options(connection_string=text)
    config: dict[str, Any] = {"container": "drift", "prefix": "in/", "page_size": 2, "max_attempts": 2}
    assert [str(d) for d in schema_drift("azure", config, credentials=credentials)] == []
    typed = {**config, "record_schema": AWKWARD_ROW_SCHEMA, "formats": ["jsonl"]}
    assert [str(d) for d in schema_drift("azure", typed, credentials=credentials, streams=["blob_records"])] == []
