"""The CLI: listings, runs, and one clear line for every kind of bad input."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import tapyard
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


# -- the surface: --version, root options anywhere, help, hints -------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"tapyard {version('tapyard')}"
    # no plugin is imported to say it
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from tapyard.cli import main; code = main(['--version']);"
         "print(sorted(m for m in sys.modules if m.startswith('tapyard_') and m != 'tapyard_credentials'"
         " and not m.startswith('tapyard_credentials.')), file=sys.stderr); sys.exit(code)"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0 and done.stderr.strip().splitlines()[-1] == "[]", done.stderr


def test_root_options_after_the_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(tapyard.ConnectorNotFoundError):  # --debug after the command: the traceback
        main(["sync", "nope", "--debug"])
    code, out, err = run(capsys, "connectors", "list", "-q", "--json", "--strict-plugins")
    assert code == 0, err
    assert any(c["name"] == "sample" for c in json.loads(out))
    assert "TAPYARD_STRICT_PLUGINS" not in os.environ  # the flag is this command line's, not the process's
    code, out, err = run(capsys, "--json", "connectors", "list")  # --json before the command
    assert code == 0 and json.loads(out), err
    db = tmp_path / "q.db"
    code, out, err = run(
        capsys, "sync", "sample", "-c", '{"records_per_stream": 5}', "--to", f"sqlite:///{db}", "--quiet", "--json"
    )
    assert code == 0 and json.loads(out)["ok"], err


def test_debug_shows_no_http_logs_but_verbose_does(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["sync", "sample", "-c", '{"records_per_stream": 5}', "--to", f"sqlite:///{tmp_path / 'd.db'}"]
    code, _, err = run(capsys, *args, "--debug")
    assert code == 0, err
    assert "httpx" not in err and "httpcore" not in err and "DEBUG" not in err
    code, _, err = run(capsys, *args, "-vv", "--full-refresh")
    assert code == 0
    assert "DEBUG" in err and ("httpcore" in err or "httpx" in err)
    code, _, err = run(capsys, *args, "--log-level", "info", "--full-refresh")
    assert code == 0 and "DEBUG" not in err
    code, _, err = run(capsys, *args, "--log-level", "loud")
    assert code == 2 and "--log-level" in err


def _commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in getattr(group, "commands", {}).items():
        found += _commands(command, (*path, name))
    return found


def test_help_has_no_internal_metavars_and_promises_what_exists(capsys: pytest.CaptureFixture[str]) -> None:
    import typer.main

    from tapyard.cli import _plugin_commands, app

    _plugin_commands()  # as main() does: the commands of the plugins registered now, and only those
    paths = _commands(typer.main.get_command(app))
    assert ("creds", "add") in paths and ("sync",) in paths
    for path in paths:
        code, out, err = run(capsys, *path, "--help")
        assert code == 0, (path, err)
        usage = out.splitlines()[0]
        for internal in ("{", "<str>", "<int", "<list", "<float", "<path"):
            assert internal not in out, (path, out)
        assert usage.startswith("Usage: tapyard")
    _, out, _ = run(capsys, "sync", "--help")
    assert "Usage: tapyard sync [OPTIONS] NAME" in out and "--to URL" in out
    destinations = set(tapyard.collect_destinations())
    assert {"sqlite", "jsonl", "postgresql", "duckdb"} <= destinations


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sync", "sampel"], "did you mean 'sample'?"),
        (["sync", "sample", "--streams", "custmers"], "did you mean 'customers'?"),
        (["sync", "sample", "--stream", "customers"], "did you mean '--streams'?"),
        (["sync", "sample", "-c", '{"records_per_stram": 5}'], "did you mean 'records_per_stream'?"),
        (["conectors", "list"], "Did you mean 'connectors'?"),
    ],
)
def test_did_you_mean(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, _, err = run(capsys, *args)
    assert code in (1, 2) and message in err, err
    assert "Traceback" not in err


def test_install_hint_is_true(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPYARD_LOAD_PLUGINS", "sample")
    code, _, err = run(capsys, "sync", "stripe")
    assert code == 1
    assert "pip install ./connectors/stripe" in err and "pip install tapyard-stripe" not in err
    code, _, err = run(capsys, "sync", "zyxwv")
    assert code == 1 and "pip install tapyard-zyxwv" not in err and "install the package that provides it" in err


def test_a_stream_that_needs_config_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "sync", "aws", "--streams", "s3_objects", "--to", f"sqlite:///{tmp_path / 'a.db'}")
    assert code == 1
    assert "stream 's3_objects' needs configuration: set 'bucket'" in err and "no stream named" not in err
    code, _, err = run(capsys, "sync", "gcp", "--streams", "blobs", "--to", f"sqlite:///{tmp_path / 'g.db'}")
    assert code == 1 and "'bucket'" in err, err


def test_connectors_info_shows_credential_fields_and_stream_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "connectors", "info", "sample")
    assert code == 0
    assert "api_key: api_key (secret)" in out and "client_secret (secret)" in out
    assert "access_token" not in out  # obtained by the strategy, not given
    code, out, _ = run(capsys, "connectors", "info", "aws", "--json")
    details = json.loads(out)
    assert details["stream_config"]["s3_objects"] == ["bucket"]
    assert details["stream_config"]["dynamodb_items"] == ["dynamodb_tables"]
    fields = {f["name"]: f for f in details["credentials"]["aws"]}
    assert fields["secret_access_key"]["secret"] and not fields["secret_access_key"]["required"]
    code, out, _ = run(capsys, "connectors", "info", "aws")
    assert "s3_objects (needs bucket)" in out


def test_did_you_mean_an_auth_kind(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPYARD_VAULT_KEY", "k" * 43 + "=")
    monkeypatch.setenv("ZZ_API_KEY", "k3y")
    code, _, err = run(capsys, "creds", "add", "x", "--connector", "sample", "--kind", "api_kye", "--from-env", "ZZ_")
    assert code == 1 and "did you mean 'api_key'?" in err, err


def test_streams_repeated_or_comma_separated_sync_each_one(tmp_path: Path) -> None:
    from tapyard.testing import landed_rows, run_cli

    for argv, name in ((["-s", "customers", "-s", "orders"], "a"), (["-s", "customers,orders"], "b")):
        url = f"sqlite:///{tmp_path / name}.db"
        done = run_cli("sync", "sample", "-c", '{"records_per_stream": 4}', *argv, "--to", url)
        assert done.exit_code == 0, done.stderr
        assert len(landed_rows(url, "customers")) == 4 and len(landed_rows(url, "orders")) == 4
        assert "events" not in done.stdout
