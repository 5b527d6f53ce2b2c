"""The object-store configs (aws, azure, gcp) share tapyard.sources.ObjectStoreConfig:
each still speaks of its own objects and records stream, in its JSON Schema and its
fields, and checks its endpoint URL the same way."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tapyard.sources import ObjectStoreConfig


def _configs() -> list[tuple[type[ObjectStoreConfig], str, str, str]]:
    from tapyard_aws._models import AwsConfig
    from tapyard_azure._models import AzureConfig
    from tapyard_gcp._models import GcpConfig

    return [
        (AwsConfig, "Only objects whose key starts with this.", "s3_records", "endpoint_url"),
        (GcpConfig, "Only objects whose name starts with this.", "blob_records", "endpoint_url"),
        (AzureConfig, "Only blobs whose name starts with this.", "blob_records", "account_url"),
    ]


@pytest.mark.parametrize("index", range(3))
def test_each_store_keeps_its_own_words(index: int) -> None:
    model, prefix, records, url = _configs()[index]
    properties = model.model_json_schema()["properties"]
    assert properties["prefix"]["description"] == prefix
    assert properties["records_page_size"]["description"] == f"Rows of {records} per page."
    assert properties["formats"]["description"].startswith(f"File formats {records} reads")
    assert properties["record_schema"]["description"].startswith(f"A JSON Schema of one row: {records} then")
    assert model.model_fields["prefix"].description == prefix
    assert not any("{" in (spec.get("description") or "") for spec in properties.values())

    assert getattr(model(**{url: "http://127.0.0.1:9/x/"}), url) == "http://127.0.0.1:9/x"
    with pytest.raises(ValidationError, match=f"{url} must start with http:// or https://"):
        model(**{url: "ftp://example.test"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model(**{"no_such_field": 1})


def test_the_base_keeps_its_templates() -> None:
    _configs()  # every store's subclass made
    assert ObjectStoreConfig.model_fields["prefix"].description == "Only {objects} whose {key} starts with this."
