"""Values without loss: JSON text and column text that keep every digit.

The rules (docs/types.md has the whole table):

- integers of any size stay integers: JSON text holds all their digits (orjson
  stops at 64 bits, so a value past that takes the exact encoder below);
- :class:`decimal.Decimal` values keep their exact digits (``10.10``,
  ``1E+3``): a JSON number with the same text, or that text in a column;
- timestamps become one sortable text form: the instant in UTC, always nine
  fractional digits, ``Z``, then the vendor's offset when it was not UTC
  (``2024-01-02T01:04:05.123456789Z[+02:00]``, RFC 9557's suffix), so that
  text order is time order and nothing of the value is lost; naive ones keep
  no zone (:class:`Timestamp` carries digits 7-9 through validation);
- NaN and the infinities, which JSON cannot hold, become the strings ``"NaN"``,
  ``"Infinity"`` and ``"-Infinity"`` rather than ``null``;
- bytes become base64 text in JSON.

The fast path is orjson; the exact encoder runs only for a value orjson refuses
or would change (an integer past 64 bits, a lone surrogate, a non-finite float),
so records of ordinary values pay nothing for it.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic_core import from_json

__all__ = [
    "Timestamp", "decode_json", "json_bytes", "json_default", "json_text", "nanoseconds_of", "parse_timestamp",
    "timestamp_text", "value_text",
]

_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class Timestamp(dt.datetime):
    """A :class:`~datetime.datetime` that keeps a vendor's seventh to ninth
    fractional digits (:attr:`nanosecond`, 0-999, below :attr:`microsecond`).

    tapyard makes one where a record's text has them (validation, and
    :func:`parse_timestamp`); destinations store them. It compares, hashes
    and computes as the datetime it extends (to the microsecond); arithmetic
    and :meth:`replace` give a value without the extra digits.
    """

    __slots__ = ("_nanosecond",)
    _nanosecond: int

    @property
    def nanosecond(self) -> int:
        """The nanoseconds past :attr:`microsecond` (0-999)."""
        return getattr(self, "_nanosecond", 0)

    @classmethod
    def of(cls, value: dt.datetime, nanosecond: int) -> dt.datetime:
        """``value`` with ``nanosecond`` more (``value`` itself when that is 0)."""
        if not nanosecond:
            return value
        stamp = cls(
            value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond,
            value.tzinfo, fold=value.fold,
        )
        stamp._nanosecond = nanosecond
        return stamp

    def __reduce_ex__(self, protocol: Any) -> Any:
        fields = (self.year, self.month, self.day, self.hour, self.minute, self.second, self.microsecond, self.tzinfo)
        return (_restore, (fields, self.fold, self.nanosecond))

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        text = super().isoformat(sep, "microseconds" if timespec == "auto" else timespec)
        if timespec not in ("auto", "microseconds"):
            return text
        head = 26 if text[4] == "-" else len(text)
        return text[:head] + f"{self.nanosecond:03d}" + text[head:]

    def __str__(self) -> str:
        return self.isoformat(" ")

    def __repr__(self) -> str:
        return f"tapyard.Timestamp({super().isoformat()!r}, nanosecond={self.nanosecond})"


def _restore(fields: tuple[Any, ...], fold: int, nanosecond: int) -> dt.datetime:
    return Timestamp.of(dt.datetime(*fields, fold=fold), nanosecond)


def nanoseconds_of(value: dt.datetime) -> int:
    """The fraction of ``value``'s second in nanoseconds (digits 7-9 of a :class:`Timestamp` included)."""
    return value.microsecond * 1000 + getattr(value, "_nanosecond", 0)


def timestamp_text(value: dt.datetime) -> str:
    """A timestamp as tapyard stores it: fixed-width ISO 8601 text with nine fractional
    digits; an aware one as its instant in UTC with ``Z``, followed by its own
    offset in brackets when that is not zero (``2024-01-02T01:04:05.123456789Z[+02:00]``);
    a naive one with no zone. Text order is time order; :func:`parse_timestamp`
    gives the value back, offset and digits included."""
    # once per timestamp written: isoformat (C) does the work, and always pads the year
    digits = f"{value._nanosecond:03d}" if value.__class__ is Timestamp and hasattr(value, "_nanosecond") else "000"
    iso = dt.datetime.isoformat  # not Timestamp's, which adds the digits itself
    offset = value.utcoffset() if value.tzinfo is not None else None
    if offset is None:
        return iso(value, timespec="microseconds") + digits
    if not offset:
        return iso(value.replace(tzinfo=None), timespec="microseconds") + digits + "Z"
    utc = iso((value - offset).replace(tzinfo=None), timespec="microseconds")
    return f"{utc}{digits}Z[{_offset_text(offset)}]"


def _offset_text(offset: dt.timedelta) -> str:
    seconds = int(offset.total_seconds())
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")


#: an ISO 8601 / RFC 3339 timestamp with any number of fractional digits, an
#: optional offset and an optional RFC 9557 offset suffix (tapyard's stored form)
_STAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?"
    r"([Zz]|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?(?:\[([+-]\d{2}:\d{2}(?::\d{2})?)\])?"
)


def parse_timestamp(text: str) -> dt.datetime:
    """An ISO 8601 timestamp (RFC 3339 and tapyard's stored form alike) with its
    offset and up to nine fractional digits kept (a :class:`Timestamp` when digits
    7-9 are not zero; further digits are cut). Raises :class:`ValueError` for
    text that is not one."""
    match = _STAMP.fullmatch(text.strip())
    if match is None:
        raise ValueError("not an ISO 8601 timestamp")
    head, digits, zone, shown = match.groups()
    digits = ((digits or "") + "000000000")[:9]
    value = dt.datetime.fromisoformat(head.replace("t", "T") + (zone.upper() if zone else ""))
    value = value.replace(microsecond=int(digits[:6]))
    if shown is not None:
        if value.tzinfo is None:
            raise ValueError("an offset suffix needs a zone before it")
        value = value.astimezone(dt.datetime.fromisoformat("2000-01-01T00:00:00" + shown).tzinfo)
    return Timestamp.of(value, int(digits[6:]))


def value_text(value: Any) -> str:
    """A scalar as column text: timestamps as :func:`timestamp_text`, decimals with
    their exact digits, dates and times in ISO form, anything else as ``str``."""
    if isinstance(value, dt.datetime):
        return timestamp_text(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE[repr(value)]
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def json_default(value: Any) -> Any:
    """What orjson cannot encode itself, as tapyard encodes it (pass as ``default=``
    with ``option=orjson.OPT_PASSTHROUGH_DATETIME``)."""
    if isinstance(value, dt.datetime):
        return timestamp_text(value)
    if isinstance(value, decimal.Decimal):
        if value.is_finite():
            return orjson.Fragment(str(value))
        return "NaN" if value.is_nan() else ("-Infinity" if value.is_signed() else "Infinity")
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)


def json_bytes(value: Any, *, sort_keys: bool = False) -> bytes:
    """``value`` as compact UTF-8 JSON, every number exact (see the module's rules).

    Raises :class:`ValueError` only for a value no JSON can hold (nesting deeper
    than the interpreter's recursion limit).
    """
    try:
        options = orjson.OPT_PASSTHROUGH_DATETIME | (orjson.OPT_SORT_KEYS if sort_keys else 0)
        out = orjson.dumps(value, default=json_default, option=options)
    except TypeError:
        # past 64 bits, a lone surrogate, or nesting past orjson's limit
        return _exact(value, sort_keys).encode()
    if b"null" in out and _has_non_finite(value):
        return _exact(value, sort_keys).encode()
    return out


def json_text(value: Any, *, sort_keys: bool = False) -> str:
    """:func:`json_bytes` as text."""
    return json_bytes(value, sort_keys=sort_keys).decode()


def _has_non_finite(value: Any) -> bool:
    # orjson writes NaN and the infinities as null: look for them only when a
    # null came out, and only in the containers and floats that can hold one.
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


def _exact(value: Any, sort_keys: bool = False) -> str:
    parts: list[str] = []
    try:
        _encode(value, parts.append, sort_keys)
    except RecursionError:
        raise ValueError("a value nested too deeply to encode as JSON") from None
    return "".join(parts)


def _encode(value: Any, out: Any, sort_keys: bool = False) -> None:
    if value is None or value is True or value is False or isinstance(value, str):
        # json.dumps escapes a lone surrogate as \udXXX, which orjson refuses
        out(json.dumps(value))
    elif isinstance(value, int):
        out(str(int(value)))
    elif isinstance(value, float):
        out(repr(value) if math.isfinite(value) else json.dumps(_NON_FINITE[repr(value)]))
    elif isinstance(value, Mapping):
        out("{")
        items = [(k if isinstance(k, str) else str(k), v) for k, v in value.items()]
        for i, (k, v) in enumerate(sorted(items, key=lambda kv: kv[0]) if sort_keys else items):
            if i:
                out(",")
            out(json.dumps(k))
            out(":")
            _encode(v, out, sort_keys)
        out("}")
    elif isinstance(value, list | tuple):
        out("[")
        for i, v in enumerate(value):
            if i:
                out(",")
            _encode(v, out, sort_keys)
        out("]")
    elif isinstance(value, dt.datetime):
        out(json.dumps(timestamp_text(value)))
    elif isinstance(value, dt.date | dt.time | uuid.UUID):
        out(orjson.dumps(value).decode())
    else:
        converted = json_default(value)
        if isinstance(converted, orjson.Fragment):
            out(str(value))
        else:
            _encode(converted, out, sort_keys)


def decode_json(content: bytes | str, *, exact: bool = False) -> Any:
    """Parse a JSON document; integers of any size always keep every digit.

    The fast path is orjson, which reads an integer past 64 bits as a float
    (``123456789012345678901`` became ``123456789012345683968`` in an ``int``
    field, silently). So a body with a run of 19 digits or more anywhere (found
    by a byte translation, a quarter of orjson's time; a regular expression
    took twice orjson's) is parsed by pydantic-core's parser instead, which
    reads integers of any length as ``int``. With ``exact`` (a stream whose
    schema declares decimals) the standard library parses, and numbers with a
    fraction or an exponent become :class:`decimal.Decimal`. The standard
    library also takes a document the fast parsers refuse for a lone surrogate
    escape. Raises :class:`ValueError` for a document that is not JSON.
    """
    if not exact:
        try:
            if isinstance(content, bytes | bytearray) and _LONG_DIGITS not in content.translate(_DIGIT_CLASSES):
                return orjson.loads(content)
            return from_json(content, allow_inf_nan=False)
        except ValueError:  # orjson.JSONDecodeError is one
            pass  # the standard library accepts lone surrogates; it says what is wrong otherwise
    try:
        return json.loads(content, parse_float=decimal.Decimal if exact else float, parse_constant=_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


#: every digit as ``0``, every other byte as ``x``: a run of 19 zeros is a number
#: orjson may not hold exactly (beyond -2^63 .. 2^64-1), or digits inside a string
_DIGIT_CLASSES = bytes(0x30 if 0x30 <= b <= 0x39 else 0x78 for b in range(256))
_LONG_DIGITS = b"0" * 19


def _constant(name: str) -> Any:
    # NaN and Infinity are not JSON: refuse them as orjson does
    raise ValueError(f"{name} is not a JSON value")
