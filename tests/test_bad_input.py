"""Bad input meets one clear line (issue 19): destination paths that are not
files, hand-edited state rows, config numbers given as booleans, and error text
that quotes hostile input (bounded, escaped).

The cases run the CLI through its own entry point in this process
(``tapyard.testing.run_cli``: the same exit code and ``Error:`` line a shell
sees, in the test's folder as the current one); a few run the real ``tapyard``
in a child process, as a person or a cron job would, where the process is the
point: no traceback reaches a terminal, escape sequences are escaped on the
real stderr, a device as the destination is refused to cron as to a test,
and the command a refusal names works as pasted. (A child process costs
seconds of imports on a loaded CI machine: 6 here instead of 37.)
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tapyard.testing import run_cli

pytestmark = pytest.mark.reliability

TAPYARD = [sys.executable, "-m", "tapyard"]
SMALL = json.dumps({"records_per_stream": 30, "page_size": 10})


@dataclass(frozen=True)
class Done:
    code: int
    stderr: str


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's folder is the current one (relative destinations land there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAPYARD_QUIET", "1")


def run(*args: str) -> Done:
    """``tapyard ARGS`` through the CLI's entry point, in this process."""
    done = run_cli(*args)
    return Done(done.exit_code, done.stderr)


def run_process(*args: str) -> Done:
    """``tapyard ARGS`` in a child process (this test's environment and folder)."""
    done = subprocess.run([*TAPYARD, *args], env=os.environ, capture_output=True, text=True, timeout=120)
    return Done(done.returncode, done.stderr)


def one_line(done: Done) -> str:
    """The run failed with exactly one line on stderr, no traceback; that line."""
    assert done.code == 1, (done.code, done.stderr[-2000:])
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "unexpected" not in done.stderr
    return lines[0]


@pytest.mark.parametrize("scheme", ["jsonl", "sqlite"])
def test_three_slashes_before_a_root_folder_is_refused_not_created_here(tmp_path: Path, scheme: str) -> None:
    """``jsonl:///dev/full`` used to write ./dev/full quietly: three slashes make a
    relative path (SQLAlchemy's rule), and /dev was meant. Now that case (a first
    folder missing here but present at the root) names both forms."""
    line = one_line(run("sync", "sample", "-c", SMALL, "--to", f"{scheme}:///dev/full"))
    assert f"{scheme}:////dev/full" in line and "current folder" in line
    assert not (tmp_path / "dev").exists()
    # a relative path whose folder exists here, or exists nowhere, is still relative
    (tmp_path / "out").mkdir()
    assert run("sync", "sample", "-c", SMALL, "--to", f"{scheme}:///out/a").code == 0
    assert run("sync", "sample", "-c", SMALL, "--to", f"{scheme}:///fresh-folder/a").code == 0
    assert (tmp_path / "out" / "a").is_file() and (tmp_path / "fresh-folder" / "a").is_file()


@pytest.mark.parametrize("scheme", ["jsonl", "sqlite"])
def test_a_device_a_directory_or_a_symlink_is_one_clear_line(tmp_path: Path, scheme: str) -> None:
    real = tmp_path / "real"
    assert run("sync", "sample", "-c", SMALL, "--to", f"{scheme}:///{real}").code == 0
    link = tmp_path / "link"
    link.symlink_to(real)
    (tmp_path / "folder").mkdir()
    cases = {"/dev/full": "device", "/dev/null": "device", str(tmp_path / "folder"): "directory",
             str(link): "symbolic link"}
    for path, kind in cases.items():
        line = one_line(run("sync", "sample", "-c", SMALL, "--to", f"{scheme}:///{path}"))
        assert kind in line and path in line, line
    # and from a real process, as cron would run it
    line = one_line(run_process("sync", "sample", "-c", SMALL, "--to", f"{scheme}:////dev/full"))
    assert "device" in line and "/dev/full" in line, line
    assert not Path("/dev/full.lock").exists() and not Path("/dev/full.state.json").exists()


@pytest.mark.parametrize("scheme", ["sqlite", "jsonl"])
def test_a_state_row_that_does_not_fit_its_cursor_is_refused_naming_state_reset(tmp_path: Path, scheme: str) -> None:
    """``{"pending": "garbage"}`` was accepted, committed as the cursor, and every
    later run failed with a 400 from the server. Now the stream is refused on load
    with one line naming ``tapyard state reset``; running what it says recovers."""
    path = tmp_path / ("out.db" if scheme == "sqlite" else "out.jsonl")
    url = f"{scheme}:///{path}"
    assert run("sync", "sample", "-c", SMALL, "--to", url, "--streams", "customers").code == 0
    if scheme == "sqlite":
        with sqlite3.connect(path) as con:
            con.execute("UPDATE _tapyard_state SET state = ? WHERE stream = 'customers'", ('{"pending": "garbage"}',))
    else:
        state_file = Path(f"{path}.state.json")
        saved = json.loads(state_file.read_text())
        saved["states"]["sample"]["customers"] = {"pending": "garbage"}
        state_file.write_text(json.dumps(saved))
    line = one_line(run("sync", "sample", "-c", SMALL, "--to", url, "--streams", "customers"))
    assert "does not fit" in line and '"garbage"' in line and "updated_at" in line
    command = line.split("`")[1]
    assert command.startswith("tapyard state reset ")
    reset = run_process(*command.split()[1:], "--yes")  # as a person would paste it
    assert reset.code == 0, reset.stderr
    again = run("sync", "sample", "-c", SMALL, "--to", url, "--streams", "customers")
    assert again.code == 0, again.stderr


def test_a_state_row_of_another_shape_is_one_line_and_full_refresh_recovers(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    url = f"sqlite:///{db}"
    assert run("sync", "sample", "-c", SMALL, "--to", url, "--streams", "customers").code == 0
    for state in ('{"pass_id": "x"}', '{"resume": {"url": 5}}', '{"cursor": {"a": 1}}', '{"started": "soon"}', "[1]"):
        with sqlite3.connect(db) as con:
            con.execute("UPDATE _tapyard_state SET state = ? WHERE stream = 'customers'", (state,))
        line = one_line(run("sync", "sample", "-c", SMALL, "--to", url, "--streams", "customers"))
        assert "unreadable" in line and "--full-refresh" in line, (state, line)
    fixed = run("sync", "sample", "-c", SMALL, "--to", url, "--streams", "customers", "--full-refresh")
    assert fixed.code == 0, fixed.stderr


def test_a_boolean_for_a_number_in_any_connectors_config_is_refused(tmp_path: Path) -> None:
    """pydantic reads ``true`` as 1 for an ``int``: ``"scan_segments": true`` scanned
    in one segment. The config is refused before anything runs."""
    line = one_line(run("sync", "aws", "-c", json.dumps({"scan_segments": True, "dynamodb_tables": ["t"]}),
                        "--to", f"sqlite:///{tmp_path / 'x.db'}"))
    assert "scan_segments" in line and "not true or false" in line
    line = one_line(run("sync", "sample", "-c", '{"records_per_stream": true}', "--to", "jsonl:-"))
    assert "records_per_stream" in line
    line = one_line(run("sync", "sample", "-c", '{"records_per_stream": 10000000000}', "--to", "jsonl:-"))
    assert "records_per_stream" in line and "1000000" in line


def test_error_text_is_bounded_and_escaped(tmp_path: Path) -> None:
    """A 10 MB config key came back as a 10,000,052-byte error line, and escape
    sequences in keys reached the terminal as they were. Every error line is now
    bounded and escaped where errors are printed (the CLI's one place)."""
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"k" * 10_000_000: 1}))
    line = one_line(run("sync", "sample", "-c", str(huge), "--to", "jsonl:-"))
    assert len(line) < 1100 and "[10,000,00" in line and "characters]" in line and "unknown field" in line
    hostile = "\x1b]0;owned\x07\x1b[2J\u202egnp.exe\r\nfake line"
    escaped = tmp_path / "escape.json"
    escaped.write_text(json.dumps({hostile: 1}))
    done = run_process("sync", "sample", "-c", str(escaped), "--to", "jsonl:-")  # a real stderr
    line = one_line(done)
    assert not any(c in done.stderr[:-1] for c in "\x1b\x07\r\u202e\n")
    assert "\\x1b]0;owned\\x07\\x1b[2J\\u202egnp.exe\\r\\nfake line" in line
    # a usage error quoting a hostile argument is escaped too
    done = run_process("sync", "sample", "--no-such-\x1b[31m-option")
    assert done.code == 2 and "\x1b" not in done.stderr and "\\x1b" in done.stderr
