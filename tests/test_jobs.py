"""Jobs: definitions refused in one line, apply idempotent with a diff, foreground
runs recorded in the control plane, runs/state/status listings with --json."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tapyard.testing import run_cli


def _add(name: str, *extra: str, to: str | None = None) -> None:
    args = ["jobs", "add", name, "--connector", "sample", "--cron", "*/5 * * * *",
            "--config", '{"records_per_stream": 30, "page_size": 10}', *extra]
    if to:
        args += ["--to", to]
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--cron", "61 * * * *"], "bad cron expression '61 * * * *'"),
        (["--cron", "* * * *"], "it needs five fields"),
        (["--cron", "5 * * * *", "--timezone", "Mars/Olympus_Mons"], "unknown time zone 'Mars/Olympus_Mons'"),
        (["--cron", "5 * * * *", "--timezone", "../../etc/passwd"], "unknown time zone"),
        (["--cron", "5 * * * *", "--connector", "nosuchvendor"], "unknown connector 'nosuchvendor'"),
        (["--cron", "5 * * * *", "--creds", "missing"], "no credential named 'missing'"),
        (["--cron", "5 * * * *", "--overlap", "sometimes"], "overlap"),
        (["--cron", "5 * * * *", "--timeout", "soon"], "'soon' is not a duration"),
        (["--cron", "5 * * * *", "--on-failure", "email:ops@example.com"], "is not webhook:URL or command:CMD"),
        (["--cron", "5 * * * *", "--to", "mongodb://x/y"], "no destination handles 'mongodb' URLs"),
        (["--cron", "5 * * * *", "--config", '{"records_per_stream": "lots"}'], "records_per_stream"),
    ],
)
def test_a_bad_definition_is_refused_at_add_with_one_line(options: list[str], expected: str) -> None:
    args = ["jobs", "add", "nightly"]
    if "--connector" not in options:
        args += ["--connector", "sample"]
    result = run_cli(*args, *options)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: job 'nightly'")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    # nothing was stored
    listed = run_cli("jobs", "list", "--json")
    assert json.loads(listed.stdout) == []


def test_a_credential_the_connector_may_not_use_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPYARD_VAULT_KEY", "k" * 43 + "=")
    added = run_cli("creds", "add", "stripe-key", "--kind", "api_key", "--connector", "stripe", "--from-json", "-",
                    input='{"api_key": "sk_test_secretvalue"}')
    if added.exit_code != 0:
        pytest.skip(f"cannot store a credential here: {added.stderr.strip()}")
    result = run_cli("jobs", "add", "x", "--connector", "sample", "--cron", "5 * * * *", "--creds", "stripe-key")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: job 'x': ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "sk_test_secretvalue" not in result.stderr


def test_apply_shows_the_diff_applies_it_and_changes_nothing_the_second_time(tmp_path: Path) -> None:
    defs = tmp_path / "jobs.yaml"
    defs.write_text(
        "jobs:\n"
        "  - name: a\n    connector: sample\n    cron: '*/5 * * * *'\n    timezone: Europe/Paris\n"
        "  - name: b\n    connector: sample\n    cron: '0 3 * * *'\n    retries: 5\n"
    )
    first = run_cli("jobs", "apply", str(defs))
    assert first.exit_code == 0, first.stderr
    assert "+ a" in first.stdout and "+ b" in first.stdout
    assert "2 created" in first.stdout
    second = run_cli("jobs", "apply", str(defs), "--json")
    assert json.loads(second.stdout)["unchanged"] == ["a", "b"]
    assert not json.loads(second.stdout)["created"] and not json.loads(second.stdout)["changed"]
    run_cli("jobs", "add", "c", "--connector", "sample", "--cron", "1 1 * * *")
    toml = tmp_path / "jobs.toml"
    toml.write_text(
        '[jobs.a]\nconnector = "sample"\ncron = "*/10 * * * *"\ntimezone = "Europe/Paris"\n'
        '[jobs.b]\nconnector = "sample"\ncron = "0 3 * * *"\nretries = 5\n'
    )
    dry = run_cli("jobs", "apply", str(toml), "--prune", "--dry-run")
    assert "~ a" in dry.stdout and "cron: '*/5 * * * *' -> '*/10 * * * *'" in dry.stdout
    assert "- c" in dry.stdout and "would apply" in dry.stdout
    assert {j["name"] for j in json.loads(run_cli("jobs", "list", "--json").stdout)} == {"a", "b", "c"}
    pruned = run_cli("jobs", "apply", str(toml), "--prune", "--json")
    assert json.loads(pruned.stdout)["removed"] == ["c"]
    jobs = {j["name"]: j for j in json.loads(run_cli("jobs", "list", "--json").stdout)}
    assert set(jobs) == {"a", "b"} and jobs["a"]["cron"] == "*/10 * * * *"
    again = run_cli("jobs", "apply", str(toml), "--prune")
    assert "no changes" in again.stdout


def test_apply_refuses_the_whole_file_when_one_definition_is_bad(tmp_path: Path) -> None:
    defs = tmp_path / "jobs.yaml"
    defs.write_text(
        "jobs:\n"
        "  - name: good\n    connector: sample\n    cron: '*/5 * * * *'\n"
        "  - name: bad\n    connector: sample\n    cron: '*/5 * * * *'\n    timezone: Europe/Atlantis\n"
    )
    result = run_cli("jobs", "apply", str(defs))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: job 'bad': unknown time zone 'Europe/Atlantis': use an IANA name such as UTC, Europe/Paris or America/New_York"
    )
    assert json.loads(run_cli("jobs", "list", "--json").stdout) == []
    defs.write_text("jobs:\n  - name: x\n    connector: sample\n    cron: '5 * * * *'\n    colour: blue\n")
    result = run_cli("jobs", "apply", str(defs))
    assert result.stderr.strip() == "Error: job 'x': colour is not a job field"


def test_jobs_run_records_the_run_and_every_listing_has_json(tmp_path: Path) -> None:
    dest = f"sqlite:///{tmp_path / 'dest.db'}"
    _add("sample-job", to=dest)
    result = run_cli("jobs", "run", "sample-job", "--json")
    assert result.exit_code == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "ok" and run["records"] == 90 and run["trigger"] == "manual"
    assert {s["name"]: s["records"] for s in run["streams"]} == {"customers": 30, "orders": 30, "events": 30}
    with sqlite3.connect(tmp_path / "dest.db") as con:
        assert con.execute("SELECT count(*) FROM customers").fetchone()[0] == 30

    listed = json.loads(run_cli("runs", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [run["id"]]
    assert json.loads(run_cli("runs", "list", "--status", "failed", "--json").stdout) == []
    shown = json.loads(run_cli("runs", "show", str(run["id"]), "--json").stdout)
    assert shown["status"] == "ok"
    logs = run_cli("runs", "logs", str(run["id"])).stdout.splitlines()
    assert logs and all(json.loads(line)["run_id"] == run["id"] for line in logs)
    assert any(json.loads(line).get("stream") == "orders" for line in logs)

    status = json.loads(run_cli("status", "--json").stdout)
    (job,) = status["jobs"]
    assert job["last_run"]["status"] == "ok" and job["health"] == "ok" and job["next_run_at"]
    shown_job = json.loads(run_cli("jobs", "show", "sample-job", "--json").stdout)
    assert shown_job["cron"] == "*/5 * * * *" and shown_job["paused"] is False

    state = json.loads(run_cli("state", "show", "sample-job", "--json").stdout)
    assert set(state) == {"customers", "orders", "events"} and state["orders"]["cursor"]
    refused = run_cli("state", "reset", "sample-job", "orders")
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    assert json.loads(run_cli("state", "show", "sample-job", "orders", "--json").stdout)["orders"]["cursor"]
    done = run_cli("state", "reset", "sample-job", "orders", "--yes")
    assert done.exit_code == 0, done.stderr
    assert json.loads(run_cli("state", "show", "sample-job", "orders", "--json").stdout)["orders"]["cursor"] is None
    run_cli("state", "set", "sample-job", "customers", "--cursor", '"2020-01-01T00:00:00Z"', "--yes")
    assert json.loads(run_cli("state", "show", dest, "--connector", "sample", "--json").stdout)["customers"]["cursor"] == "2020-01-01T00:00:00Z"


def test_pause_resume_rm_and_unknown_names() -> None:
    _add("p")
    assert "paused" in run_cli("jobs", "pause", "p").stdout
    assert json.loads(run_cli("jobs", "list", "--json").stdout)[0]["paused"] is True
    assert json.loads(run_cli("jobs", "list", "--json").stdout)[0]["next_run_at"] is None
    assert "resumed" in run_cli("jobs", "resume", "p").stdout
    edited = run_cli("jobs", "edit", "p", "--cron", "0 * * * *", "--timezone", "Asia/Tokyo")
    assert edited.exit_code == 0, edited.stderr
    assert json.loads(run_cli("jobs", "show", "p", "--json").stdout)["timezone"] == "Asia/Tokyo"
    bad = run_cli("jobs", "edit", "p", "--cron", "0 25 * * *")
    assert bad.exit_code == 1 and "bad cron expression" in bad.stderr
    assert run_cli("jobs", "rm", "p").exit_code == 0
    for args in (("jobs", "show", "p"), ("jobs", "run", "p"), ("runs", "show", "99"), ("runs", "cancel", "99")):
        result = run_cli(*args)
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_a_control_plane_of_an_older_revision_is_migrated_on_open(tmp_path: Path) -> None:
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    import tapyard.jobs._db as db
    from tapyard.jobs._store import ControlPlane

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(sa.text(
            "INSERT INTO runs (job, attempt, trigger, status, created_at, not_before, token, records, dead_letters, "
            "requests, http_retries) VALUES ('old', 1, 'manual', 'ok', 1.0, 1.0, 1, 5, 0, 0, 0)"
        ))
    engine.dispose()
    cp = ControlPlane(url)
    (run,) = cp.runs()
    assert run.job == "old" and run.records == 5 and run.claimed_at is None
    with cp.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == db.HEAD
