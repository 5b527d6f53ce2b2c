"""Values that break naive syncs, seeded into moto through boto3 and read back
from SQLite and JSON Lines value for value (docs/types.md): DynamoDB numbers
past 2^63 and with 20+ significant digits (boto3's Decimal, never float),
binary, sets, unicode, NUL, empty strings and NULLs, deep and mixed nesting;
the same shapes in a JSON Lines object read by the file reader, untyped and
with a typed row schema. Live against moto's server, as CI runs it.
"""

from __future__ import annotations

import decimal
import json
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard.testing import assert_same_value, landed_rows
from tapyard_aws.testing import dynamodb_table

D = decimal.Decimal


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": {"N": "0.10"}}
    for i in range(levels):
        value = {f"l{i}": {"M": value}}
    return value


#: DynamoDB items in the wire format, and the values boto3 hands back for them
ITEMS: list[dict[str, Any]] = [
    {
        "pk": {"S": "numbers"},
        "big": {"N": "100000000000000000000"},
        "neg": {"N": "-100000000000000000000"},
        "past64": {"N": "18446744073709551617"},
        "dec": {"N": "12345678901234806.89"},
        "money": {"N": "10.10"},
        "long": {"N": "1234567890.1234567890123456789"},
        "tiny": {"N": "-0.000000000000000000001"},
        "set": {"NS": ["1", "10.10", "100000000000000000000"]},
    },
    {
        "pk": {"S": "text"},
        "combining": {"S": "e\u0301 n\u0303"},
        "emoji": {"S": "👩\u200d👩\u200d👧 🏳️\u200d🌈"},
        "rtl": {"S": "שלום مرحبا"},
        "nul": {"S": "a\x00b"},
        "empty": {"S": ""},
        "nothing": {"NULL": True},
        "yes": {"BOOL": True},
        "bin": {"B": b"\x00\xff\x80binary"},
        "bins": {"BS": [b"\x01", b"\x02\x03"]},
        "strings": {"SS": ["b", "a"]},
    },
    {
        "pk": {"S": "nested"},
        "deep": {"M": _deep(30)},
        "empty_map": {"M": {}},
        "empty_list": {"L": []},
        "mixed": {"L": [{"N": "1"}, {"S": "a"}, {"NULL": True}, {"N": "1.5"}, {"M": {"x": {"L": []}}},
                        {"N": "100000000000000000000"}, {"BOOL": False}]},
    },
]

#: a JSON Lines object: its lines as written (the source values are what they say, exactly)
LINES = [
    '{"id": 1, "big": 100000000000000000000, "neg": -100000000000000000000, "dec": 12345678901234806.89, '
    '"money": 10.10, "e": 1E+3, "long": 1234567890.1234567890123456789, '
    '"ts": "2024-01-02T03:04:05.123456789+05:30"}',
    # (the third line's ts: whole seconds before 1970, in UTC)
    '{"id": 2, "s": "e\\u0301 \\ud83d\\udc69\\u200d\\ud83d\\udc67 \\u05e9\\u05dc\\u05d5\\u05dd", "nul": "a\\u0000b", '
    '"empty": "", "none": null, "t": true, "nan": NaN, "inf": -Infinity}',
    '{"id": 3, "ts": "1969-12-31T23:59:59Z", "mixed": [1, "a", null, 1.5, {"x": []}, [100000000000000000000]], "deep": '
    + "".join('{"a": ' for _ in range(40)) + "0.10" + "}" * 40 + "}",
]


@pytest.fixture
def seeded(moto_endpoint: str) -> str:
    import boto3

    urllib.request.urlopen(urllib.request.Request(moto_endpoint + "/moto-api/reset", method="POST"), timeout=10)
    dynamodb_table(moto_endpoint, "vals", ITEMS)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="vals")
    s3.put_object(Bucket="vals", Key="in/values.jsonl", Body=("\n".join(LINES) + "\n").encode())
    return moto_endpoint


def _source_items() -> dict[str, dict[str, Any]]:
    """What boto3 itself gives for the items: the values the destination must hold."""
    from boto3.dynamodb.types import TypeDeserializer

    deserialize = TypeDeserializer().deserialize
    out = {}
    for item in ITEMS:
        values = {k: deserialize(v) for k, v in item.items()}
        out[values["pk"]] = {k: (v.value if hasattr(v, "value") and isinstance(v.value, bytes) else v)
                             for k, v in values.items()}
        for k, v in list(out[values["pk"]].items()):
            if isinstance(v, set) and all(hasattr(b, "value") for b in v):
                out[values["pk"]][k] = {b.value for b in v}
    return out


@pytest.mark.parametrize("target", ["sqlite", "jsonl"])
def test_dynamodb_and_jsonl_values_land_exactly(seeded: str, tmp_path: Path, target: str) -> None:
    url = f"{target}:///{tmp_path / ('v.db' if target == 'sqlite' else 'v.jsonl')}"
    config = {"endpoint_url": seeded, "bucket": "vals", "prefix": "in/", "dynamodb_tables": ["vals"]}
    result = tapyard.sync("aws", config, to=url, streams=["dynamodb_items", "s3_records"])
    assert result.ok, [(s.name, s.error) for s in result.streams]
    assert {s.name: s.dead_letters for s in result.streams} == {"dynamodb_items": 0, "s3_records": 0}

    items = landed_rows(url, "dynamodb_items", key="key")
    source = _source_items()
    assert len(items) == len(source)
    for row in items.values():
        item = row["item"] if isinstance(row["item"], dict) else json.loads(row["item"], parse_float=D)
        assert_same_value(source[item["pk"]], row["item"], f"dynamodb item {item['pk']}")

    records = landed_rows(url, "s3_records", key="source_line")
    assert sorted(records) == [1, 2, 3]
    for number, line in enumerate(LINES, start=1):
        assert_same_value(json.loads(line, parse_float=D), records[number]["data"], f"line {number}")


def test_a_typed_row_schema_keeps_decimals_and_integers_past_64_bits(seeded: str, tmp_path: Path) -> None:
    """With a row schema, ``format: decimal`` columns keep every digit, and an
    ``integer`` column that meets 100000000000000000000 keeps it too (stored as
    its digits: the column becomes TEXT); nothing is dead-lettered."""
    db = tmp_path / "typed.db"
    config = {
        "endpoint_url": seeded, "bucket": "vals", "prefix": "in/",
        "record_schema": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "big": {"type": ["integer", "null"]},
                "neg": {"type": ["integer", "null"]},
                "dec": {"type": ["number", "null"], "format": "decimal"},
                "money": {"type": ["number", "null"], "format": "decimal"},
                "e": {"type": ["number", "null"], "format": "decimal"},
                "s": {"type": ["string", "null"]},
                "nul": {"type": ["string", "null"]},
                "empty": {"type": ["string", "null"]},
                "ts": {"type": ["string", "null"], "format": "date-time"},
            },
        },
    }
    result = tapyard.sync("aws", config, to=f"sqlite:///{db}", streams=["s3_records"])
    assert result.ok, [(s.name, s.error) for s in result.streams]
    assert (result.streams[0].records, result.streams[0].dead_letters) == (3, 0)
    con = sqlite3.connect(db)
    row = con.execute("SELECT big, neg, dec, money, e FROM s3_records WHERE id = 1").fetchone()
    assert row == ("100000000000000000000", "-100000000000000000000", "12345678901234806.89", "10.10", "1E+3")
    rows = {r[0]: r[1:] for r in con.execute("SELECT id, s, nul, empty FROM s3_records")}
    source = json.loads(LINES[1])
    assert rows[2] == (source["s"], "a\x00b", "")
    landed = landed_rows(f"sqlite:///{db}", "s3_records", key="id")
    for number, line in enumerate(LINES, start=1):
        values = json.loads(line, parse_float=D)
        for name in ("big", "neg", "dec", "money", "e", "s", "nul", "empty"):
            if name in values:
                assert_same_value(values[name], landed[number][name], f"line {number}.{name}")
        if "ts" in values:  # its offset and its nanoseconds land too
            assert_same_value(tapyard.parse_timestamp(values["ts"]), landed[number]["ts"], f"line {number}.ts")
    assert landed[1]["ts"] == "2024-01-01T21:34:05.123456789Z[+05:30]"
    assert landed[3]["ts"] == "1969-12-31T23:59:59.000000000Z"


def test_a_dynamodb_number_key_past_64_bits_lands_exactly(seeded: str, tmp_path: Path) -> None:
    """A DynamoDB number key of 10^20 (boto3's Decimal) keys its row with every
    digit, and the item keeps it as a number, in SQLite and JSON Lines alike."""
    items = [{"n": {"N": "100000000000000000000"}, "v": {"N": "-100000000000000000001"}},
             {"n": {"N": "1"}, "v": {"N": "18446744073709551616"}}]
    dynamodb_table(seeded, "numbers", items, key="n", key_type="N")
    for target in ("sqlite", "jsonl"):
        url = f"{target}:///{tmp_path / ('n.db' if target == 'sqlite' else 'n.jsonl')}"
        config = {"endpoint_url": seeded, "dynamodb_tables": ["numbers"]}
        result = tapyard.sync("aws", config, to=url, streams=["dynamodb_items"])
        assert result.ok, [(s.name, s.error) for s in result.streams]
        landed = landed_rows(url, "dynamodb_items", key="key")
        assert set(landed) == {'{"n":1}', '{"n":100000000000000000000}'}
        row = landed['{"n":100000000000000000000}']
        assert_same_value({"n": 10**20, "v": -(10**20) - 1}, row["item"], target)
        assert_same_value({"n": 1, "v": 2**64}, landed['{"n":1}']["item"], target)
