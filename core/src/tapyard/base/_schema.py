"""Schema mapping: stream schemas as pydantic models, JSON Schema in and out,
columns for destinations, and validation of a whole page at a time.

Validation runs once per page through a ``TypeAdapter(list[Model])``: the fast
path validates the page in one call; only a page that fails is validated
record by record, so that the bad records go to dead letters and the rest are
written.
"""

from __future__ import annotations

import datetime as dt
import decimal
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from tapyard.base._exceptions import SchemaError
from tapyard.base._values import Timestamp

__all__ = [
    "Column",
    "PageValidator",
    "columns_of",
    "json_schema_of",
    "model_from_json_schema",
]

_SCALARS: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
}
_FORMATS: dict[str, Any] = {"date-time": dt.datetime, "date": dt.date, "decimal": decimal.Decimal}


def model_from_json_schema(name: str, schema: Mapping[str, Any]) -> type[BaseModel]:
    """Build a pydantic model from a JSON Schema object (the subset REST APIs use).

    Supports ``type`` (one, or a list with ``"null"``), ``properties``,
    ``required``, ``format`` ``date-time``/``date``, ``format: decimal`` on a
    number, integer or string (exact digits, as :class:`decimal.Decimal`),
    nested objects (kept as dicts) and arrays. Anything else raises :class:`SchemaError` naming the
    property, rather than being silently accepted.
    """
    if schema.get("type", "object") != "object" or not isinstance(schema.get("properties"), Mapping):
        raise SchemaError(f"schema of {name!r} must be a JSON Schema object with 'properties'")
    required = set(schema.get("required", ()))
    fields: dict[str, Any] = {}
    for prop, spec in schema["properties"].items():
        annotation = _annotation(f"{name}.{prop}", spec)
        if prop in required:
            fields[prop] = (annotation, ...)
        else:
            fields[prop] = (annotation | None, None)
    config = ConfigDict(extra="ignore")
    try:
        return create_model(name, __config__=config, **fields)
    except Exception as exc:  # pydantic raises several kinds here
        raise SchemaError(f"cannot build a model for {name!r}: {exc}") from exc


def _annotation(where: str, spec: Any) -> Any:
    if not isinstance(spec, Mapping):
        raise SchemaError(f"schema of {where!r} must be an object")
    kind = spec.get("type")
    nullable = False
    if isinstance(kind, list):
        nullable = "null" in kind
        rest = [k for k in kind if k != "null"]
        if len(rest) != 1:
            raise SchemaError(f"schema of {where!r}: only one non-null type is supported, got {kind}")
        kind = rest[0]
    annotation: Any
    if kind in ("object",):
        annotation = dict[str, Any]
    elif kind == "array":
        annotation = list[Any]
    elif kind in ("number", "integer", "string") and spec.get("format") == "decimal":
        annotation = decimal.Decimal
    elif kind == "string" and spec.get("format") in _FORMATS:
        annotation = _FORMATS[spec["format"]]
    elif kind in _SCALARS:
        annotation = _SCALARS[kind]
    elif kind is None and not spec:
        annotation = Any
    else:
        raise SchemaError(f"schema of {where!r}: unsupported type {kind!r}")
    return annotation | None if nullable else annotation


def json_schema_of(
    model: type[BaseModel], primary_key: Sequence[str], cursor_field: str | None
) -> dict[str, Any]:
    """The model's JSON Schema with ``x-primary-key`` and ``x-cursor-field`` added."""
    try:
        schema = model.model_json_schema(mode="serialization")
    except Exception as exc:
        raise SchemaError(f"cannot export the JSON Schema of {model.__name__}: {exc}") from exc
    schema["x-primary-key"] = list(primary_key)
    if cursor_field:
        schema["x-cursor-field"] = cursor_field
    return schema


@dataclass(frozen=True, slots=True)
class Column:
    """One destination column: its name, SQL affinity and whether values are stored as JSON."""

    name: str
    type: str  # "TEXT" | "INTEGER" | "REAL" | "BOOLEAN" | "JSON" | "BLOB" (docs/types.md)
    nullable: bool = True
    #: the JSON Schema ``format`` of a TEXT column (``date-time``, ``date``, ``uuid``,
    #: ``decimal`` for exact decimals kept as their digits, ...)
    format: str | None = None
    #: False when the model field always holds ``str`` (or None), so a
    #: destination need not convert its values to text
    convert: bool = True
    #: the attribute of a validated record that holds the value, when it is not
    #: ``name`` (a field with an alias: the column takes the vendor's name)
    attribute: str | None = None

    @property
    def is_json(self) -> bool:
        return self.type == "JSON"


def _column_type(spec: Mapping[str, Any], defs: Mapping[str, Any]) -> tuple[str, bool]:
    if "$ref" in spec:
        return "JSON", False
    if "anyOf" in spec:
        options = [s for s in spec["anyOf"] if s.get("type") != "null"]
        nullable = len(options) != len(spec["anyOf"])
        if len(options) == 1:
            single, _ = _column_type(options[0], defs)
            return single, nullable
        return "JSON", nullable
    kind: Any = spec.get("type")
    if isinstance(kind, list):
        rest = [k for k in kind if k != "null"]
        kind = rest[0] if len(rest) == 1 else None
    mapping = {
        "string": "TEXT",
        "integer": "INTEGER",
        "number": "REAL",
        "boolean": "BOOLEAN",
        "object": "JSON",
        "array": "JSON",
    }
    return mapping.get(str(kind), "JSON"), False


def columns_of(model: type[BaseModel]) -> list[Column]:
    """The destination columns of a record model, in field order.

    Scalars map to SQL types; nested objects, arrays and unions are JSON;
    decimals are TEXT with format ``decimal``; bytes are BLOB.
    """
    schema = model.model_json_schema(mode="serialization")
    defs = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    # The schema names properties by their serialization alias; records hold them by attribute.
    attributes: dict[str, str] = {}
    for attr, info in model.model_fields.items():
        attributes[info.serialization_alias or info.alias or attr] = attr
    for attr, computed in model.model_computed_fields.items():
        attributes[computed.alias or attr] = attr
    columns = []
    for name, spec in schema.get("properties", {}).items():
        kind, nullable = _column_type(spec, defs)
        attribute = attributes.get(name, name)
        field = model.model_fields.get(attribute)
        fmt = _format(spec)
        if field is not None and kind == "TEXT" and _holds(field.annotation, decimal.Decimal):
            fmt = "decimal"
        elif kind == "TEXT" and fmt == "binary":
            kind = "BLOB"
        column = Column(
            name=name,
            type=kind,
            nullable=nullable or name not in required,
            format=fmt,
            convert=not (field is not None and _holds_only_str(field.annotation)),
            attribute=attribute if attribute != name else None,
        )
        columns.append(column)
    return columns


def declares_decimals(model: type[BaseModel]) -> bool:
    """Whether any field of ``model``, or of a model nested in it, may hold a
    :class:`decimal.Decimal`: its source should then parse JSON numbers exactly."""
    seen: set[Any] = set()

    def walk(annotation: Any) -> bool:
        if annotation is decimal.Decimal:
            return True
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                return False
            seen.add(annotation)
            return any(walk(f.annotation) for f in annotation.model_fields.values())
        return any(walk(arg) for arg in typing.get_args(annotation))

    return walk(model)


def _holds(annotation: Any, kind: type) -> bool:
    """True when ``annotation`` is ``kind``, or a union of it with None."""
    if annotation is kind:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and _holds(args[0], kind)
    return False


def _holds_only_str(annotation: Any) -> bool:
    """True for ``str``, ``str | None`` and literals of strings."""
    if annotation is str or annotation is type(None):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return all(_holds_only_str(arg) for arg in typing.get_args(annotation))
    return False


def _format(spec: Mapping[str, Any]) -> str | None:
    if "format" in spec:
        return str(spec["format"])
    options = [s for s in spec.get("anyOf", ()) if s.get("type") != "null"]
    return str(options[0]["format"]) if len(options) == 1 and "format" in options[0] else None


#: The pydantic error type of a record that could not even be read (a malformed
#: CSV line, say): no schema change can fix it, so its dead letter does not hold
#: the stream's cursor. Raise ``PydanticCustomError(UNREADABLE, "...")`` for one.
UNREADABLE = "tapyard_unreadable"


@dataclass(slots=True)
class DeadLetter:
    """A record that failed validation: the raw payload and why.

    ``holds_cursor``: whether the stream's cursor should stay before it (see
    ``tapyard.sync(skip_dead_letters=...)``): False for a record that could not
    be read at all, which no schema change and no replay would ever write.
    """

    raw: Any
    error: str
    holds_cursor: bool = True


def _error_text(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for error in exc.errors(include_input=False)[:limit]:
        loc = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{loc or '(record)'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


class PageValidator:
    """Validates a page of records against a model.

    ``validate(records)`` returns ``(items, dead_letters)``: the validated
    model instances and the records that failed, with why. Records missing a
    primary-key value fail too. The whole page is validated in one call; only
    a page with a bad record is validated record by record.
    """

    def __init__(self, model: type[BaseModel], primary_key: Sequence[str]) -> None:
        self.model = model
        self.primary_key = tuple(primary_key)
        self._stamps = _timestamp_fields(model)
        self._page = TypeAdapter(list[model])  # type: ignore[valid-type]
        missing = [k for k in self.primary_key if k not in model.model_fields]
        if missing:
            raise SchemaError(
                f"primary key {', '.join(missing)} is not a field of {model.__name__}"
            )

    def validate(self, records: Sequence[Any]) -> tuple[list[BaseModel], list[DeadLetter]]:
        try:
            items: list[BaseModel] = self._page.validate_python(records)
        except ValidationError:
            return self._one_by_one(records)
        for key in self.primary_key:
            if any(getattr(item, key) is None for item in items):
                return self._one_by_one(records)
        if self._stamps:
            _keep_nanoseconds(records, items, self._stamps)
        return items, []

    def _one_by_one(self, records: Sequence[Any]) -> tuple[list[BaseModel], list[DeadLetter]]:
        items: list[BaseModel] = []
        dead: list[DeadLetter] = []
        for raw in records:
            try:
                item = self.model.model_validate(raw)
            except ValidationError as exc:
                unreadable = all(e.get("type") == UNREADABLE for e in exc.errors(include_input=False))
                dead.append(DeadLetter(raw=raw, error=_error_text(exc), holds_cursor=not unreadable))
                continue
            missing = [k for k in self.primary_key if getattr(item, k) is None]
            if missing:
                dead.append(DeadLetter(raw=raw, error=f"primary key {', '.join(missing)} is null"))
                continue
            if self._stamps:
                _keep_nanoseconds((raw,), (item,), self._stamps)
            items.append(item)
        return items, dead


def _timestamp_fields(model: type[BaseModel]) -> list[tuple[str, str]]:
    """The (record key, attribute) of each of ``model``'s own datetime fields."""
    fields = []
    for attr, info in model.model_fields.items():
        if _holds(info.annotation, dt.datetime):
            alias = info.validation_alias
            fields.append((alias if isinstance(alias, str) else (info.alias or attr), attr))
    return fields


def _keep_nanoseconds(records: Sequence[Any], items: Sequence[BaseModel], fields: Sequence[tuple[str, str]]) -> None:
    """Give each of ``items`` back the digits 7-9 that pydantic cut from its
    timestamps' text in ``records`` (as :class:`~tapyard.base._values.Timestamp`).
    This runs for every record and timestamp field, so it looks at two
    characters of ISO 8601 text only (``YYYY-MM-DDTHH:MM:SS.ffffff`` puts the
    point at 19 and a seventh digit at 26) before anything else."""
    digits_ = _DIGITS
    for raw, item in zip(records, items, strict=True):
        if raw.__class__ is not dict:
            continue
        for key, attr in fields:
            text = raw.get(key)
            if text.__class__ is str and len(text) > 26 and text[26] in digits_ and text[19] in ".,":
                _stamp(text, item, attr)


def _stamp(text: str, item: BaseModel, attr: str) -> None:
    digits = text[26:29]
    while not digits.isdigit():
        digits = digits[:-1]
    nanos = int(digits.ljust(3, "0"))
    value = item.__dict__.get(attr)
    if nanos and isinstance(value, dt.datetime) and text[20:26].isdigit():
        item.__dict__[attr] = Timestamp.of(value, nanos)


_DIGITS = frozenset("0123456789")
