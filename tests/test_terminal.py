"""The CLI as a person meets it: in a real pseudo-terminal.

rich draws its live display, hides the cursor and colours its tables only when
it sees a terminal, so each command that draws rich output runs here in a pty
(tests/terminal.py) and the test reads the screen a person would have seen.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.terminal import TAPYARD, plain, run, spawn

STREAMS = ("customers", "orders", "events")
LONG = json.dumps({"records_per_stream": 20000})
SHOW_CURSOR = "\x1b[?25h"


def _counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in STREAMS}


def _rows(db: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as con:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])


def _records_shown(screen: str) -> list[int]:
    """Every per-stream record count the progress display drew, in order."""
    return [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) records\s+[\d,]+ pages", plain(screen))]


def test_readme_first_command_in_a_terminal(tmp_path: Path) -> None:
    code, screen = run([TAPYARD, "sync", "sample", "--to", "sqlite:///sample.db"], cwd=tmp_path)
    text = plain(screen)
    assert code == 0, text
    assert "Traceback" not in text and "object does not support" not in text
    assert SHOW_CURSOR in screen  # the cursor was shown again
    assert _counts(tmp_path / "sample.db") == dict.fromkeys(STREAMS, 1000)
    assert re.search(r"customers\s+1,000\s+10\s+0\s+[\d.]+\s+ok", text), text  # the summary table


def test_the_progress_display_is_drawn_while_records_arrive(tmp_path: Path) -> None:
    term = spawn([TAPYARD, "sync", "sample", "--config", LONG, "--to", "sqlite:///long.db"], cwd=tmp_path)
    # a count between the first page and the end, drawn while the command still runs
    term.expect(lambda s: any(0 < n < 20000 for n in _records_shown(s)), timeout=60)
    assert term.process.poll() is None
    assert "\x1b[?25l" in term.screen  # the live display hid the cursor
    first = max(_records_shown(term.screen))
    term.expect(lambda s: max(_records_shown(s), default=0) > first, timeout=60)
    assert term.process.poll() is None, "the display was redrawn only once, at the end"
    assert term.wait(120) == 0, plain(term.screen)
    assert SHOW_CURSOR in term.screen
    assert _counts(tmp_path / "long.db") == dict.fromkeys(STREAMS, 20000)
    assert "60,000 records in" in plain(term.screen)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_mid_sync_stops_cleanly_and_a_rerun_finishes(tmp_path: Path, sig: int, code: int) -> None:
    """Ctrl-C is SIGINT to the terminal's foreground process group; the run stops
    with one line, exit 130 (SIGTERM: 143), the cursor back, a sound database,
    and the next run completes it to the same rows as a run never interrupted."""
    cmd = [TAPYARD, "sync", "sample", "--config", LONG, "--to", "sqlite:///cut.db"]
    term = spawn(cmd, cwd=tmp_path)
    term.expect(lambda s: any(n >= 1000 for n in _records_shown(s)), timeout=60)
    term.interrupt(sig)
    assert term.wait(60) == code, plain(term.screen)
    screen = term.screen
    tail = screen[screen.rindex(SHOW_CURSOR) :]  # after the live display let the cursor go
    lines = [line for line in plain(tail).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    found = re.fullmatch(r"interrupted; ([\d,]+) records committed, run again to resume", lines[0])
    assert found, lines
    db = tmp_path / "cut.db"
    assert _integrity(db) == "ok"
    counts = _counts(db)
    assert 0 < sum(counts.values()) < 60000
    assert int(found.group(1).replace(",", "")) == sum(counts.values())  # exactly what was committed

    again, screen = run(cmd, cwd=tmp_path)
    assert again == 0, plain(screen)
    assert _counts(db) == dict.fromkeys(STREAMS, 20000)
    clean, screen = run([TAPYARD, "sync", "sample", "--config", LONG, "--to", "sqlite:///clean.db"], cwd=tmp_path)
    assert clean == 0, plain(screen)
    for table in STREAMS:
        assert _rows(db, table) == _rows(tmp_path / "clean.db", table), table
