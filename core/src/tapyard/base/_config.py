"""Reading configuration: a JSON or YAML file, or inline JSON, validated by a
pydantic model into one clear error line."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tapyard.base._exceptions import ConfigError
from tapyard.base._hints import did_you_mean

__all__ = ["describe_validation_error", "load_config", "validate_model"]

M = TypeVar("M", bound=BaseModel)


def load_config(value: str | None) -> dict[str, Any]:
    """Parse ``--config``: inline JSON (starts with ``{``), or a path to a JSON or YAML file.

    Raises :class:`ConfigError` with the file name and the line of a syntax
    error; never returns anything but a mapping.
    """
    if value is None or not value.strip():
        return {}
    text = value.strip()
    if text.startswith("{"):
        source = "inline --config JSON"
        data = _parse_json(text, source)
    else:
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"config file {value!r} does not exist; pass a JSON/YAML file or inline JSON like '{{\"key\": 1}}'"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {value!r}: {exc}") from exc
        source = f"config file {value!r}"
        if path.suffix.lower() in (".yaml", ".yml"):
            data = _parse_yaml(text, source)
        elif path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
            data = _parse_json(text, source)
        else:
            data = _parse_yaml(text, source)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold an object (key: value pairs), not {type(data).__name__}")
    return data


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


def _parse_yaml(text: str, source: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"{source} is not valid YAML: {problem}{where}") from exc


def describe_validation_error(
    exc: ValidationError, limit: int = 3, model: type[BaseModel] | None = None
) -> str:
    """One line naming each failing field and why; input values are left out (they may be secret).

    With ``model``, an unknown top-level field gets a "did you mean" for the
    closest field of the model.
    """
    parts = []
    fields = list(model.model_fields) if model is not None else []
    for error in exc.errors()[:limit]:
        loc = error.get("loc", ())
        where = ".".join(str(p) for p in loc) or "(root)"
        message = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            hint = did_you_mean(str(loc[0]), fields) if len(loc) == 1 else ""
            message = f"unknown field; {hint}" if hint else "unknown field"
        elif error.get("type") == "missing":
            message = "required field is missing"
        parts.append(f"{where}: {message}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def validate_model(model: type[M], raw: Mapping[str, Any], *, what: str) -> M:
    """Validate ``raw`` against ``model``; a failure is one :class:`ConfigError` line.

    Numbers are strict about booleans whatever the model says: pydantic reads
    ``true`` as 1 for an ``int`` field, so ``"records_per_stream": true`` ran
    one record and ``"scan_segments": true`` one segment; both are refused.
    """
    where = _boolean_for_number(model, raw, "")
    if where is not None:
        raise ConfigError(f"invalid {what}: {where}: a number is needed, not true or false")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(f"invalid {what}: {describe_validation_error(exc, model=model)}") from exc


def _boolean_for_number(model: type[BaseModel], raw: Any, prefix: str) -> str | None:
    """The dotted name of the first field of ``model`` typed as a number (``int`` or
    ``float``, optional or not) that ``raw`` gives a boolean, or of a number in a
    list of them; nested models are looked into."""
    if not isinstance(raw, Mapping):
        return None
    for name, info in model.model_fields.items():
        key = next((k for k in (info.alias, name) if k is not None and k in raw), None)
        if key is None:
            continue
        value, kinds = raw[key], _kinds(info.annotation)
        if isinstance(value, bool) and kinds & {int, float} and bool not in kinds:
            return prefix + key
        if isinstance(value, list):
            items = {k for a in typing.get_args(info.annotation) for k in _kinds(a)}
            if items & {int, float} and bool not in items and any(isinstance(v, bool) for v in value):
                return prefix + key
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found = _boolean_for_number(kind, value, f"{prefix}{key}.")
                if found is not None:
                    return found
    return None


def _kinds(annotation: Any) -> set[Any]:
    """The types a field may hold: ``int | None`` gives {int, NoneType}; ``Annotated`` is looked through."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _kinds(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return {k for arg in typing.get_args(annotation) for k in _kinds(arg)}
    return {annotation}
