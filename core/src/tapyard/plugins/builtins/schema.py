"""Built-in schema mapping: the stream's own model, records unchanged, and the
model's JSON Schema with the stream's keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tapyard.base import Connector, Stream

hookimpl = pluggy.HookimplMarker("tapyard")


@hookimpl(trylast=True)
def tapyard_stream_schema(connector: Connector, stream: Stream) -> type[BaseModel] | None:
    return stream.schema_model


@hookimpl(trylast=True)
def tapyard_map_records(
    connector: Connector, stream: Stream, records: Sequence[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    return records if isinstance(records, list) else list(records)


@hookimpl(trylast=True)
def tapyard_json_schema(
    connector: Connector, stream: Stream, model: type[BaseModel]
) -> dict[str, Any] | None:
    from tapyard.base import json_schema_of

    return json_schema_of(model, stream.primary_key, stream.cursor_field)
