"""Schema drift: what a vendor (or its emulator) really sends, compared with
each stream's schema, for connector tests.

A record model with ``extra="ignore"`` drops any field it does not declare
without a word, and a field typed narrower than the vendor's values either
rejects them (the record goes to the dead letters) or changes them (a float
for a decimal). :func:`schema_drift` reads each stream from the start, as a
first sync would, and reports every such field.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from tapyard.plugins import Plugins

__all__ = ["AWKWARD_ROWS", "AWKWARD_ROW_SCHEMA", "UNICODE", "Drift", "awkward_jsonl", "schema_drift"]

#: Text that breaks naive syncs: a combining mark, an emoji, right-to-left script.
UNICODE = "Zoe\u0301 \U0001f680 \u05e2\u05d1\u05e8\u05d9\u05ea"

#: Rows of values that break naive syncs, for seeding files into an emulator:
#: integers past 2**64 and at -2**63, a decimal of 23 digits and one with a
#: trailing zero (as text, which JSON readers keep exact), unicode, an empty
#: string beside a null, empty and nested objects, a list of mixed types.
AWKWARD_ROWS: list[dict[str, Any]] = [
    {"id": 2**64 + 1, "amount": "12345678901234567890.123", "note": UNICODE, "nested": {"a": [1, "x", None]}},
    {"id": -(2**63), "amount": "10.10", "note": "", "nested": {}},
    {"id": 3, "amount": None, "note": None, "nested": None},
]

#: The JSON Schema of :data:`AWKWARD_ROWS` (for a typed records stream).
AWKWARD_ROW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "amount": {"type": ["string", "null"]},
        "note": {"type": ["string", "null"]},
        "nested": {"type": ["object", "null"]},
    },
}


def awkward_jsonl() -> bytes:
    """:data:`AWKWARD_ROWS` as a JSON Lines file."""
    import json

    return "\n".join(json.dumps(row) for row in AWKWARD_ROWS).encode()

#: The name of a record model's class variable listing the vendor fields it
#: leaves out on purpose (a secret such as ``client_secret``, a list fetched by
#: another stream): those are not reported as dropped.
UNSYNCED = "UNSYNCED"
#: The name of a record model's class variable naming the field where it keeps
#: every field it does not declare (as JSON): those are reported as ``undeclared``
#: (kept, but without a column of their own), not as dropped.
UNDECLARED = "UNDECLARED"


@dataclass(frozen=True, order=True)
class Drift:
    """One field of one stream that the schema does not carry as sent."""

    stream: str
    field: str
    #: ``dropped`` (not in the schema), ``undeclared`` (not in the schema, kept in
    #: the model's catch-all field: see ``UNDECLARED``), ``rejected`` (fails validation) or
    #: ``changed`` (validated to less than was sent: a float for a decimal, a
    #: timestamp cut to microseconds)
    problem: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.stream}.{self.field}: {self.problem}" + (f" ({self.detail})" if self.detail else "")


def schema_drift(
    connector: Any,
    config: Mapping[str, Any] | BaseModel | None = None,
    *,
    credentials: BaseModel | None = None,
    streams: Sequence[str] | None = None,
    ignore: Mapping[str, Iterable[str]] | None = None,
    limit: int = 2000,
    plugins: Plugins | None = None,
) -> list[Drift]:
    """Read each stream of ``connector`` from the start (every partition, at most
    ``limit`` records each) and compare the records its source yields, after the
    ``tapyard_map_records`` hook, with the stream's schema.

    Reported, once per stream and field: a field the schema would drop (not
    declared, and not in the model's ``UNSYNCED`` nor in ``ignore[stream]``; keys
    of nested models too, as ``address.line2``);
    a value it would reject; a number it would change (compared digit for digit);
    a timestamp whose fractional digits past microseconds it would cut.
    An empty list means the schema carries what the vendor sent. ``plugins`` is
    the plugin set to read with (default: the process default set).
    """
    from tapyard.base import RunContext, StreamState
    from tapyard.engine._sync import select_streams
    from tapyard.plugins import default_plugins

    pm = plugins if plugins is not None else default_plugins()
    conn = pm.get_connector(connector) if isinstance(connector, str) else connector
    cfg = config if isinstance(config, BaseModel) else conn.parse_config(config or {})
    found: dict[tuple[str, str, str], Drift] = {}
    with conn.open(cfg, RunContext(plugins=pm, credentials=credentials)) as source:
        for stream in select_streams(source.streams(), streams):
            skip = set((ignore or {}).get(stream.name, ())) | set(getattr(stream.schema_model, UNSYNCED, ()))
            for partition in source.partitions(stream):
                seen = 0
                for page in source.read(stream, StreamState(), partition):
                    mapped = pm.hook.tapyard_map_records(connector=conn, stream=stream, records=page.records)
                    records = page.records if mapped is None else mapped
                    for record in records:
                        for drift in record_drift(stream.name, stream.schema_model, record, skip):
                            found.setdefault((drift.stream, drift.field, drift.problem), drift)
                    seen += len(records)
                    if seen >= limit:
                        break
    return sorted(found.values())


def record_drift(stream: str, model: type[BaseModel], record: Any, skip: Iterable[str] = ()) -> list[Drift]:
    """What of one ``record`` the ``model`` would drop, reject or change."""
    if not isinstance(record, Mapping):
        return [Drift(stream, "(record)", "rejected", f"a {type(record).__name__}, not an object")]
    names = _names(model)
    ignored = set(skip) | set(getattr(model, UNSYNCED, ()))
    kept = "undeclared" if isinstance(getattr(model, UNDECLARED, None), str) else "dropped"
    drifts = [Drift(stream, str(key), kept) for key in record if key not in names and key not in ignored]
    drifts.extend(_nested_drift(stream, model, record, names))
    try:
        validated = model.model_validate(record)
    except ValidationError as exc:
        for error in exc.errors(include_input=False):
            where = ".".join(str(p) for p in error.get("loc", ())) or "(record)"
            drifts.append(Drift(stream, where.split(".")[0], "rejected", str(error.get("msg", "invalid"))))
        return drifts
    for key, attribute in names.items():
        if key in record and not _same_value(record[key], getattr(validated, attribute, None)):
            drifts.append(Drift(stream, key, "changed", f"sent {record[key]!r}, kept {getattr(validated, attribute)!r}"))
    return drifts


def _nested_drift(stream: str, model: type[BaseModel], record: Mapping[str, Any], names: Mapping[str, str]) -> list[Drift]:
    """Keys that nested models (a field typed as a model, or a list of them) would drop."""
    drifts: list[Drift] = []
    for key, attribute in names.items():
        inner = _nested_model(model.model_fields[attribute].annotation)
        value = record.get(key)
        if inner is None or value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            for drift in record_drift(stream, inner, item):
                if drift.problem == "dropped":
                    drifts.append(Drift(stream, f"{key}.{drift.field}", "dropped"))
    return drifts


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``annotation`` (``Model``, ``Model | None``, ``list[Model]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _names(model: type[BaseModel]) -> dict[str, str]:
    """The keys a record of ``model`` may carry, each with its attribute."""
    names: dict[str, str] = {}
    for attribute, info in model.model_fields.items():
        names[attribute] = attribute
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                names[alias] = attribute
    return names


_FRACTION = re.compile(r"T\d\d:\d\d:\d\d[.,](\d+)")


def _same_value(sent: Any, kept: Any) -> bool:
    """False only when a value was kept with less than was sent: a number as a
    different number (digits lost), a timestamp with fewer fractional digits."""
    if isinstance(sent, str) and isinstance(kept, dt.datetime):
        found = _FRACTION.search(sent)
        return found is None or found.group(1)[6:].strip("0") == ""
    numbers = (int, float, decimal.Decimal)
    if isinstance(sent, bool) or not isinstance(sent, numbers) or not isinstance(kept, numbers):
        return True
    try:
        return decimal.Decimal(str(sent)) == decimal.Decimal(str(kept))
    except decimal.InvalidOperation:
        return True
