"""The CLI as a person meets it: in a real pseudo-terminal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.terminal import TAPYARD, plain, run


def test_readme_first_command_in_a_terminal(tmp_path: Path) -> None:
    code, screen = run([TAPYARD, "sync", "sample", "--to", "sqlite:///sample.db"], cwd=tmp_path)
    text = plain(screen)
    assert code == 0, text
    assert "Traceback" not in text and "object does not support" not in text
    assert "\x1b[?25h" in screen  # the cursor was shown again
    with sqlite3.connect(tmp_path / "sample.db") as db:
        for table in ("customers", "orders", "events"):
            assert db.execute(f"select count(*) from {table}").fetchone() == (1000,)
