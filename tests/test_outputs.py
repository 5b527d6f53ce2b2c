"""Output that cannot be written (TESTING.md): ``> /dev/full`` (ENOSPC), ``>&-``
(no standard output at all). The command says so in one line and exits 1; what
it did before is kept, and nothing irreversible depends on the failed write
(the key commands: tests/test_creds_cli.py)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

STREAMS = ("customers", "orders", "events")


def _cli(*args: str, shell_redirect: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = '"$0" -m tapyard "$@" ' + shell_redirect
    return subprocess.run(
        ["sh", "-c", command, sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("redirect", ["> /dev/full", ">&-"])
def test_a_sync_whose_summary_cannot_be_written_says_so(tmp_path: Path, redirect: str) -> None:
    done = _cli("sync", "sample", "--json", "--to", "sqlite:///out.db", shell_redirect=redirect, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot write the output: "), done.stderr
    assert "unexpected" not in done.stderr and "Traceback" not in done.stderr
    with sqlite3.connect(tmp_path / "out.db") as con:  # the sync itself was done and kept
        for table in STREAMS:
            assert con.execute(f'SELECT count(*) FROM "{table}"').fetchone() == (1000,)


@pytest.mark.parametrize("redirect", ["> /dev/full", ">&-", "> /dev/null"])
def test_keygen_never_claims_a_key_it_could_not_show(tmp_path: Path, redirect: str) -> None:
    done = _cli("creds", "keygen", shell_redirect=redirect, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot hand the new key over: "), done.stderr
    assert "nothing was made" in lines[0] and "export it as TAPYARD_VAULT_KEY" not in done.stderr


def test_a_listing_to_a_closed_output_fails_in_one_line(tmp_path: Path) -> None:
    done = _cli("connectors", "list", "--json", shell_redirect=">&-", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: cannot write the output: standard output is closed"
    ok = _cli("connectors", "list", "--json", shell_redirect="", cwd=tmp_path)
    assert ok.returncode == 0 and any(c["name"] == "sample" for c in json.loads(ok.stdout))


def test_a_closed_standard_input_is_no_crash(tmp_path: Path) -> None:
    import os

    from tapyard_credentials import generate_key

    env = {**os.environ, "TAPYARD_VAULT": str(tmp_path / "vault.db"), "TAPYARD_VAULT_KEY": generate_key()}
    listing = subprocess.run(
        ["sh", "-c", '"$0" -m tapyard creds list <&-', sys.executable], env=env, capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0 and "No credentials stored" in listing.stdout, listing.stderr
    adding = subprocess.run(
        ["sh", "-c", '"$0" -m tapyard creds add x --connector sample --kind api_key --from-json - <&-', sys.executable],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert adding.returncode == 1
    assert adding.stderr.strip() == "Error: standard input is closed: give --from-json a file, or pipe the JSON in"
