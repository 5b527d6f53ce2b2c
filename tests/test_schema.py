"""Schema mapping: JSON Schema to models, columns, page validation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tapyard import SchemaError, columns_of, model_from_json_schema
from tapyard.base._schema import PageValidator, json_schema_of


def test_model_from_json_schema_types_and_nullability() -> None:
    model = model_from_json_schema(
        "Widget",
        {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": ["string", "null"]},
                "price": {"type": "number"},
                "active": {"type": "boolean"},
                "made_at": {"type": "string", "format": "date-time"},
                "dims": {"type": "object"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
        },
    )
    item = model.model_validate({"id": "7", "made_at": "2024-01-02T03:04:05Z", "tags": ["a"], "extra": 1})
    assert item.id == 7  # type: ignore[attr-defined]
    assert item.made_at == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        model.model_validate({"name": "no id"})
    columns = {c.name: c.type for c in columns_of(model)}
    assert columns == {
        "id": "INTEGER", "name": "TEXT", "price": "REAL", "active": "BOOLEAN",
        "made_at": "TEXT", "dims": "JSON", "tags": "JSON",
    }


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array"},
        {"type": "object", "properties": {"x": {"type": "weird"}}},
        {"type": "object", "properties": {"x": {"type": ["string", "integer"]}}},
    ],
)
def test_unsupported_json_schema_is_a_clear_error(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        model_from_json_schema("Bad", schema)


class Inner(BaseModel):
    a: int


class Record(BaseModel):
    id: str
    n: int
    when: dt.datetime
    inner: Inner | None = None


def test_page_validator_fast_path_and_dead_letters() -> None:
    validator = PageValidator(Record, ("id",))
    good = [{"id": "a", "n": 1, "when": "2024-01-01T00:00:00Z", "inner": {"a": 2}}]
    items, dead = validator.validate(good)
    assert dead == []
    assert [i.model_dump(mode="json") for i in items] == [
        {"id": "a", "n": 1, "when": "2024-01-01T00:00:00Z", "inner": {"a": 2}}
    ]

    mixed = [*good, {"id": "b", "n": "x", "when": "2024-01-01T00:00:00Z"}, {"id": None, "n": 1, "when": "2024-01-01T00:00:00Z"}]
    items, dead = validator.validate(mixed)
    assert [i.id for i in items] == ["a"]  # type: ignore[attr-defined]
    assert len(dead) == 2 and "n:" in dead[0].error and dead[0].raw["n"] == "x"


def test_primary_key_must_be_a_field() -> None:
    with pytest.raises(SchemaError, match="primary key"):
        PageValidator(Record, ("nope",))


def test_json_schema_export_marks_keys() -> None:
    schema = json_schema_of(Record, ("id",), "when")
    assert schema["x-primary-key"] == ["id"] and schema["x-cursor-field"] == "when"
    assert schema["properties"]["when"]["format"] == "date-time"
