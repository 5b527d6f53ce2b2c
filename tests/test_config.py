"""Reading --config: inline JSON, JSON and YAML files, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapyard import ConfigError
from tapyard.base._config import load_config


def test_inline_json_and_files(tmp_path: Path) -> None:
    assert load_config('{"a": 1}') == {"a": 1}
    (tmp_path / "c.json").write_text('{"b": 2}')
    (tmp_path / "c.yml").write_text("c: 3\n")
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(str(tmp_path / "c.json")) == {"b": 2}
    assert load_config(str(tmp_path / "c.yml")) == {"c": 3}
    assert load_config(str(tmp_path / "empty.yaml")) == {}
    assert load_config(None) == {}


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ('{"a": }', ".json", "not valid JSON: Expecting value at line 1"),
        ("a: [1,\n", ".yaml", "not valid YAML"),
        ("- 1\n- 2\n", ".yaml", "must hold an object"),
        ("\xff\xfe", ".json", "cannot read"),
    ],
)
def test_errors_name_the_file_and_the_problem(tmp_path: Path, text: str, suffix: str, message: str) -> None:
    path = tmp_path / f"bad{suffix}"
    if text == "\xff\xfe":
        path.write_bytes(b"\xff\xfe\x00")
    else:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(str(path))
    assert str(path.name) in str(info.value)
