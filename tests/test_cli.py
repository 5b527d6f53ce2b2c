"""The CLI: listings, runs, and one clear line for every kind of bad input."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tapyard.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_connectors_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "connectors", "list", "--json")
    assert code == 0
    sample = next(c for c in json.loads(out) if c["name"] == "sample")
    assert sample["version"] == "0.1.0"
    assert sample["distribution"] == "tapyard-sample"
    assert sample["streams"] == ["customers", "orders", "events"]
    assert sample["auth_kinds"] == ["none", "api_key", "oauth2_client_credentials"]


def test_connectors_list_and_info_tables(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "connectors", "list")
    assert code == 0 and "sample" in out and "customers" in out
    code, out, _ = run(capsys, "connectors", "info", "sample")
    assert code == 0 and "records_per_stream" in out and "1000" in out


def test_discover_json_shows_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "discover", "sample", "--json")
    assert code == 0
    streams = {s["name"]: s for s in json.loads(out)["streams"]}
    customers = streams["customers"]
    assert customers["primary_key"] == ["id"]
    assert customers["cursor_field"] == "updated_at"
    assert customers["json_schema"]["x-primary-key"] == ["id"]
    assert "address" in customers["json_schema"]["properties"]


def test_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "sample")
    assert code == 0 and "ok" in out


def test_sync_json_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    code, out, err = run(
        capsys, "sync", "sample", "--config", '{"records_per_stream": 50}', "--to", f"sqlite:///{db}",
        "--streams", "customers,events", "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["ok"] and summary["records"] == 100
    assert {s["name"] for s in summary["streams"]} == {"customers", "events"}
    for key in ("requests", "retries", "throttled"):
        assert key in summary["http"]
    assert sqlite3.connect(db).execute("SELECT count(*) FROM customers").fetchone()[0] == 50


def test_sync_table_summary_and_yaml_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("records_per_stream: 30\npage_size: 7\n")
    code, out, err = run(capsys, "sync", "sample", "-c", str(config), "--to", f"sqlite:///{tmp_path / 'y.db'}")
    assert code == 0, err
    assert "customers" in out and "90 records" in out


def test_sync_default_destination_is_in_data_dir(capsys: pytest.CaptureFixture[str]) -> None:
    import os

    code, _, err = run(capsys, "sync", "sample", "-c", '{"records_per_stream": 5}')
    assert code == 0, err
    assert (Path(os.environ["TAPYARD_HOME"]) / "tapyard.db").exists()


BAD_INPUTS = [
    (["sync", "nope"], "unknown connector 'nope'"),
    (["connectors", "info", "nope"], "unknown connector 'nope'"),
    (["sync", "sample", "--config", "{not json"], "not valid JSON"),
    (["sync", "sample", "--config", "/does/not/exist.yaml"], "does not exist"),
    (["sync", "sample", "--config", '{"records_per_stream": "many"}'], "records_per_stream"),
    (["sync", "sample", "--config", '{"colour": "red"}'], "colour: unknown field"),
    (["sync", "sample", "--streams", "customers,nope"], "no stream named 'nope'"),
    (["sync", "sample", "--to", "mysql://x/y"], "unsupported destination"),
    (["sync", "sample", "--to", "sqlite:////proc/tapyard/x.db"], "cannot"),
    (["discover", "sample", "--config", "[1, 2]"], "config"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_input_is_one_clear_line(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, _, err = run(capsys, *args)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ")
    assert message in lines[0]
    assert "Traceback" not in err


def test_malformed_yaml_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("records_per_stream: [1, 2\n")
    code, _, err = run(capsys, "sync", "sample", "-c", str(bad))
    assert code == 1
    assert "not valid YAML" in err and "line" in err and len(err.strip().splitlines()) == 1


def test_destination_that_is_not_sqlite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("this is not a database")
    code, _, err = run(capsys, "sync", "sample", "--to", f"sqlite:///{junk}")
    assert code == 1 and "not a SQLite database" in err
    assert junk.read_text() == "this is not a database"


def test_debug_shows_the_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tapyard", "--debug", "sync", "nope"], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "ConnectorNotFoundError" in done.stderr


def test_usage_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "sync")
    assert code == 2 and "Missing argument" in err
