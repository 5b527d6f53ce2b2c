"""The reliability suite, part two: fuzzing what users and files hand tapyard.

Hypothesis generates configs, command lines, destination URLs, saved stream
state, manifests, vault files and job definitions. Whatever it makes, the
answer is success or one of tapyard's own errors: through the CLI an exit code
of 0, 1 or 2, no traceback, every line bounded and free of raw control
characters, and never the catch-all "unexpected ... (a bug in tapyard or a
plugin)". Sizes follow ``TAPYARD_FUZZ_EXAMPLES`` (default 25 per property; the
nightly run sets more).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sqlite3
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapyard.testing import run_cli

pytestmark = pytest.mark.reliability

_dbs = itertools.count()
EXAMPLES = int(os.environ.get("TAPYARD_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=os.environ.get("TAPYARD_FUZZ_RANDOM") != "1",
)
MAX_LINE = 1000
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
hostile_text = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)), max_size=60
) | st.sampled_from(["\x1b[2J", "\x1b]0;pwned\x07", "A" * 5000, "-1", "1e309", "\u202e", "\x00", "..", "../../etc"])


def assert_clean(result: Any) -> None:
    """The CLI's answer to bad input: an exit code it means, one clear line, no traceback."""
    out = result.stdout + result.stderr
    assert result.exit_code in (0, 1, 2), (result.exit_code, out[-2000:])
    assert "Traceback" not in out, out[-3000:]
    assert "a bug in tapyard" not in out, out[-2000:]
    for line in result.stderr.splitlines():
        assert len(line) <= MAX_LINE, len(line)
        assert not CONTROL.search(line), repr(line[:200])
    if result.exit_code != 0:
        assert any(line.startswith(("Error:", "Usage:", "Try ")) or "Error" in line for line in result.stderr.splitlines()), result.stderr[-2000:]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAPYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TAPYARD_VAULT_KEY", "")


@FUZZ
@given(config=st.dictionaries(st.sampled_from(["records_per_stream", "page_size", "seed", "as_of", "x", ""]), json_values, max_size=3))
def test_configs(config: dict[str, Any], tmp_path: Path) -> None:
    """The sample connector's config, any JSON: checked, or refused in one line."""
    if isinstance(config.get("records_per_stream"), int) and not isinstance(config["records_per_stream"], bool):
        config["records_per_stream"] = max(-5, min(config["records_per_stream"], 3))
    result = run_cli("check", "sample", "--config", json.dumps(config))
    assert_clean(result)


COMMANDS = ["sync", "check", "discover", "connectors", "creds", "state", "deadletters", "jobs", "runs", "status", "search"]
OPTIONS = ["--to", "--config", "--streams", "--rate", "--max-pages", "--json", "--debug", "-v", "--wait", "--policy", "--full-refresh", "list", "show", "info", "sample"]


@FUZZ
@given(argv=st.lists(st.sampled_from(COMMANDS + OPTIONS) | hostile_text, min_size=1, max_size=5))
def test_command_lines(argv: list[str], tmp_path: Path) -> None:
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]  # --debug shows tracebacks on purpose
    if argv and argv[0] == "sync":
        argv = [*argv, "--config", '{"records_per_stream": 2}']
    result = run_cli(*argv)
    assert_clean(result)


@FUZZ
@given(url=st.sampled_from(["sqlite:", "sqlite://", "sqlite:///", "jsonl:", "jsonl://", "jsonl:///", "postgresql://", "duckdb:///", "file:", "", "http://"])
       .flatmap(lambda scheme: st.builds(lambda tail: scheme + tail, hostile_text)))
def test_destination_urls(url: str, tmp_path: Path) -> None:
    result = run_cli("sync", "sample", "--config", '{"records_per_stream": 2}', "--to", url)
    assert_clean(result)


@FUZZ
@given(state=json_values)
def test_saved_state_edited_by_hand(state: Any, tmp_path: Path) -> None:
    """A state row replaced with any JSON: the next sync runs, or refuses in one line
    that names how to clear it (issue 19: validated on load)."""
    db = tmp_path / f"x{next(_dbs)}.db"
    first = run_cli("sync", "sample", "--config", '{"records_per_stream": 3}', "--to", f"sqlite:///{db}")
    assert first.exit_code == 0, first.stderr
    con = sqlite3.connect(db)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '%state%'")]
    assert tables, "no state table to edit"
    table = tables[0]
    columns = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
    column = next((c for c in columns if c in ("state", "value", "data", "cursor")), columns[-1])
    con.execute(f'UPDATE "{table}" SET "{column}" = ?', (json.dumps(state),))
    con.commit()
    con.close()
    again = run_cli("sync", "sample", "--config", '{"records_per_stream": 3}', "--to", f"sqlite:///{db}")
    assert_clean(again)


@FUZZ
@given(text=st.text(max_size=300) | st.sampled_from([
    '[[connector]]\nname = 1\n', '[[connector]]\nname="x"\nentry_point = "a:b"\n[connector.permissions]\nhosts = 5\n',
    "\x00\x00", "[[connector]]\n" * 50, 'plugin_api = "99"\n',
]))
def test_manifests(text: str, tmp_path: Path) -> None:
    from tapyard.base import ManifestError
    from tapyard.base.manifest import load_manifest

    path = tmp_path / "tapyard-manifest.toml"
    path.write_text(text, errors="surrogatepass") if "\ud800" not in text else path.write_bytes(b"\xff")
    try:
        load_manifest(path)
    except ManifestError as exc:
        line = str(exc)
        assert "\n" not in line.strip() or len(line) <= MAX_LINE
        assert not CONTROL.search(line), repr(line[:200])


@FUZZ
@given(offset=st.integers(min_value=0, max_value=1 << 20), data=st.binary(min_size=1, max_size=64), truncate=st.booleans())
def test_vault_files(offset: int, data: bytes, truncate: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vault file damaged anywhere: every creds command answers with one line, and a
    damage to real data is reported, never a wrong secret."""
    home = tmp_path / "v"
    home.mkdir(exist_ok=True)
    vault = home / "vault.db"
    monkeypatch.setenv("TAPYARD_VAULT", str(vault))
    key_file = home / "key"
    if not key_file.exists():
        key_file.write_text(run_cli("creds", "keygen").stdout.strip())
    monkeypatch.setenv("TAPYARD_VAULT_KEY", key_file.read_text())
    vault.unlink(missing_ok=True)
    added = run_cli("creds", "add", "one", "--connector", "sample", "--kind", "api_key",
                    "--from-json", "-", input=json.dumps(CANARY_FIELDS))
    assert added.exit_code == 0, added.stderr
    raw = bytearray(vault.read_bytes())
    at = offset % max(1, len(raw))
    if truncate:
        raw = raw[:at]
    else:
        raw[at:at + len(data)] = data
    vault.write_bytes(bytes(raw))
    for argv in (["creds", "list"], ["creds", "show", "one"], ["creds", "audit"]):
        result = run_cli(*argv)
        assert_clean(result)
        assert "sk_test_fuzzcanary" not in result.stdout + result.stderr


CANARY_FIELDS = {"api_key": "sk_test_fuzzcanary0123456789"}

job_names = st.text(alphabet=string.ascii_lowercase + "-_.", min_size=0, max_size=12) | hostile_text


@FUZZ
@given(job=st.fixed_dictionaries({}, optional={
    "name": job_names, "connector": st.sampled_from(["sample", "nope", ""]) | hostile_text,
    "cron": st.sampled_from(["* * * * *", "61 * * * *", "@hourly", "", "* * *", "0 0 31 2 *"]) | hostile_text,
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "Mars/Olympus", ""]) | hostile_text,
    "to": st.sampled_from(["sqlite:///x.db", "nope://", ""]) | hostile_text,
    "overlap": st.sampled_from(["skip", "allow", "sometimes"]), "retries": json_values, "timeout": json_values,
}))
def test_job_definitions(job: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"jobs": [job]}))
    result = run_cli("jobs", "apply", str(path), "--yes")
    assert_clean(result)
