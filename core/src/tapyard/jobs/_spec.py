"""Job definitions: the model, durations, definition files, and the checks that
refuse a bad definition at ``jobs add`` / ``jobs apply`` with one line.

A definition file (YAML or TOML, kept in git) holds ``jobs``: either a list of
jobs each with a ``name``, or a table of jobs by name::

    jobs:
      - name: stripe-hourly
        connector: stripe
        creds: stripe-live
        to: postgresql://warehouse/raw
        cron: "5 * * * *"
        timezone: Europe/Paris

    [jobs.stripe-hourly]
    connector = "stripe"
    cron = "5 * * * *"
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from tapyard.jobs._cron import check_cron, check_timezone

__all__ = [
    "JobSpec",
    "format_duration",
    "load_definitions",
    "parse_duration",
    "spec_error",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"``; a ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        if not text:
            raise ValueError("an empty duration")
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _DURATION.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or pos == 0:
                shown = text if len(text) <= 40 else text[:37] + "..."
                raise ValueError(f"{shown!r} is not a duration: use seconds or units like 30s, 5m, 1h30m, 2d") from None
    if not seconds >= 0 or seconds > 366 * 86400:
        raise ValueError("a duration must be between 0 and 366 days")
    return seconds


def format_duration(seconds: float | None) -> str:
    """``seconds`` as ``1h30m`` (``-`` for None)."""
    if seconds is None:
        return "-"
    rest, out = round(seconds), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out + (f"{rest}s" if rest or not out else "")


Duration = Annotated[float, BeforeValidator(parse_duration)]


class JobSpec(BaseModel):
    """One job: what to sync, where to, when, and what to do when it fails."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    connector: str
    creds: str | None = Field(None, description="A vault credential the connector may use.")
    config: dict[str, Any] = Field(default_factory=dict)
    streams: list[str] | None = None
    to: str | None = Field(None, description="Destination URL (default: tapyard.db in the data directory).")
    cron: str
    timezone: str = "UTC"
    overlap: Literal["skip", "buffer-one", "cancel-other", "allow"] = "skip"
    catchup: Literal["none", "latest", "all"] = "latest"
    catchup_window: Duration = 3600.0
    retries: int = Field(2, ge=0, le=100)
    backoff: Duration = 30.0
    backoff_max: Duration = 3600.0
    timeout: Duration | None = 3600.0
    jitter: Duration = 0.0
    on_failure: list[str] = Field(default_factory=list)
    spread: Literal["none", "streams", "partitions"] = Field(
        "none",
        description=(
            "Spread a scheduled run over several workers: one unit per stream (streams) or per "
            "partition of each stream (partitions), each committing its own state. Needs a "
            "destination every worker can write at once (PostgreSQL)."
        ),
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "a job name is 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        check_timezone(value)
        return value

    @field_validator("streams")
    @classmethod
    def _streams(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not [s for s in value if s.strip()]:
            raise ValueError("names no stream; leave it out to sync every stream")
        return [s.strip() for s in value if s.strip()] if value is not None else None

    @field_validator("on_failure")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for target in value:
            kind, _, rest = target.partition(":")
            if kind not in ("webhook", "command") or not rest.strip():
                raise ValueError(f"{target[:60]!r} is not webhook:URL or command:CMD")
            if kind == "webhook" and not rest.startswith(("http://", "https://")):
                raise ValueError(f"webhook {rest[:60]!r} is not an http(s) URL")
        return value

    def to_json(self) -> dict[str, Any]:
        """The definition as stored and as ``jobs show --json`` prints it."""
        return self.model_dump(mode="json")

    def canonical(self) -> str:
        """A stable text of the definition: two specs are the same job when these match."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))


def spec_error(exc: ValidationError, name: str | None = None) -> str:
    """The first problem of a rejected definition, in one line (no values echoed)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "definition"
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = "is not a job field"
    elif first.get("type") == "missing":
        message = "is required"
    who = f"job {name!r}: " if name else ""
    if where.split(".")[-1].replace("_", " ") in message or message.startswith("unknown time zone"):
        where = ""  # the message names the field already
    return f"{who}{where} {message}".replace(": ", ": ", 1).replace("  ", " ").replace("\n", " ")[:300]


def load_definitions(path: str | Path) -> list[dict[str, Any]]:
    """The raw job definitions of a YAML or TOML file (``ValueError`` with one line when unreadable)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"no such definitions file: {str(path)[:200]}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {str(path)[:200]}: {getattr(exc, 'strerror', None) or exc}") from None
    data: Any
    if file.suffix.lower() == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{file.name} is not valid TOML: {str(exc).splitlines()[0]}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise ValueError(f"{file.name} is not valid YAML{where}") from None
    if data is None:
        data = {"jobs": []}
    if not isinstance(data, Mapping) or "jobs" not in data or set(data) - {"jobs"}:
        raise ValueError(f"{file.name}: expected one top-level key 'jobs' (a list of jobs, or a table of jobs by name)")
    jobs = data["jobs"] or []
    out: list[dict[str, Any]] = []
    if isinstance(jobs, Mapping):
        for name, body in jobs.items():
            if not isinstance(body, Mapping):
                raise ValueError(f"{file.name}: job {str(name)[:80]!r} is not a table of fields")
            if "name" in body and body["name"] != name:
                raise ValueError(f"{file.name}: job {str(name)[:80]!r} names itself {str(body['name'])[:80]!r}")
            out.append({"name": name, **body})
    elif isinstance(jobs, list):
        for i, body in enumerate(jobs):
            if not isinstance(body, Mapping) or "name" not in body:
                raise ValueError(f"{file.name}: job #{i + 1} is not a table of fields with a name")
            out.append(dict(body))
    else:
        raise ValueError(f"{file.name}: 'jobs' must be a list or a table")
    names = [str(j["name"]) for j in out]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{file.name}: job {duplicated[0][:80]!r} is defined twice")
    return out
