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
    # the summary table: read, inserted, updated, deleted, dead letters, seconds, status
    assert re.search(r"customers\s+1,000\s+1,000\s+0\s+0\s+0\s+[\d.]+\s+ok", text), text


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


# --- the other commands that draw rich output -------------------------------------------------


def test_connector_listings_and_discover_in_a_terminal(tmp_path: Path) -> None:
    code, screen = run([TAPYARD, "connectors", "list"], cwd=tmp_path)
    text = plain(screen)
    assert code == 0 and "Traceback" not in text, text
    assert re.search(r"^sample\s", text, re.M), text
    code, screen = run([TAPYARD, "connectors", "info", "sample"], cwd=tmp_path)
    text = plain(screen)
    assert code == 0 and "Traceback" not in text, text
    assert "records_per_stream" in text and "api_key" in text, text
    code, screen = run([TAPYARD, "discover", "sample"], cwd=tmp_path)
    text = plain(screen)
    assert code == 0 and "Traceback" not in text, text
    for stream in STREAMS:
        assert re.search(rf"^{stream}\s+id\s", text, re.M), text


SECRET = "k3y-" + "5e3c7e75" * 3


def _vault_env(tmp_path: Path, key: str | None) -> dict[str, str]:
    env = {"TAPYARD_VAULT": str(tmp_path / "vault.db"), "TAPYARD_HOME": str(tmp_path)}
    env["TAPYARD_VAULT_KEY"] = key or ""
    env["TAPYARD_VAULT_PASSPHRASE"] = ""
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"  # never the real keyring
    return env


def _answer(term: object, prompt: str, answer: str) -> None:
    from tests.terminal import Terminal

    assert isinstance(term, Terminal)
    seen = len(plain(term.screen))
    term.expect(lambda s: re.search(prompt, s[seen:]) is not None, timeout=30)
    term.send(answer + "\r")


def test_creds_add_asks_at_the_prompts_with_secrets_hidden(tmp_path: Path) -> None:
    """A new vault: its passphrase is asked for (twice, hidden) before any field;
    then each field, the secret one hidden, the others echoed as typed."""
    env = _vault_env(tmp_path, None)
    term = spawn([TAPYARD, "creds", "add", "sk", "--connector", "sample", "--kind", "api_key"], cwd=tmp_path, env=env)
    _answer(term, r"Creating a new vault[^\n]*\n[^\n]*Vault passphrase: $", "correct horse battery")
    _answer(term, r"Repeat for confirmation: $", "correct horse battery")
    _answer(term, r"api_key \(.*\): $", SECRET)
    _answer(term, r"location .*: $", "")
    _answer(term, r"key_name .*: $", "X-Sample-Key")
    _answer(term, r"prefix .*: $", "")
    assert term.wait(30) == 0, plain(term.screen)
    text = plain(term.screen)
    assert "stored credential 'sk': api_key for sample (fields: api_key, key_name;" in text
    assert SECRET not in term.screen and "correct horse" not in term.screen  # never echoed
    assert "X-Sample-Key" in text  # a field that is no secret is echoed

    env["TAPYARD_VAULT_PASSPHRASE"] = "correct horse battery"
    code, screen = run([TAPYARD, "creds", "list"], cwd=tmp_path, env=env)
    text = plain(screen)
    assert code == 0, text
    assert re.search(r"^name\s+kind\s+connector\s+allowed\s+last used\s*$", text, re.M), text
    assert re.search(r"^sk\s+api_key\s+sample\s+sample\s+never\s*$", text, re.M), text
    code, screen = run([TAPYARD, "creds", "audit"], cwd=tmp_path, env=env)
    text = plain(screen)
    assert code == 0, text
    assert re.search(r"^id\s+at\s+actor\s+action\s+credential", text, re.M), text
    assert re.search(r"\bcli\s+put\s+sk\s+sample\s+ok\b", text), text
    assert SECRET not in screen


def test_creds_add_with_a_wrong_key_asks_for_nothing(tmp_path: Path) -> None:
    from tapyard_credentials import generate_key

    env = _vault_env(tmp_path, generate_key())
    done = run(
        [TAPYARD, "creds", "add", "sk", "--connector", "sample", "--kind", "api_key", "--from-env", "SAMPLE_"],
        cwd=tmp_path, env={**env, "SAMPLE_API_KEY": SECRET}, timeout=30,
    )
    assert done[0] == 0, plain(done[1])
    env["TAPYARD_VAULT_KEY"] = generate_key()
    term = spawn([TAPYARD, "creds", "add", "other", "--connector", "sample", "--kind", "api_key"], cwd=tmp_path, env=env)
    assert term.wait(30) == 1
    text = plain(term.screen).strip()
    assert text.startswith("Error: the vault key does not open") and "api_key (" not in text, text


def test_creds_rotate_key_in_a_terminal(tmp_path: Path) -> None:
    from tapyard_credentials import generate_key

    old = generate_key()
    env = _vault_env(tmp_path, old)
    code, screen = run(
        [TAPYARD, "creds", "add", "sk", "--connector", "sample", "--kind", "api_key", "--from-env", "SAMPLE_"],
        cwd=tmp_path, env={**env, "SAMPLE_API_KEY": SECRET},
    )
    assert code == 0, plain(screen)
    code, screen = run([TAPYARD, "creds", "rotate-key"], cwd=tmp_path, env=env)
    text = plain(screen)
    assert code == 0 and "Traceback" not in text, text
    keys = re.findall(r"^([A-Za-z0-9_-]{43}=)$", text, re.M)
    assert len(keys) == 1, text
    assert "re-encrypted the vault under the new key" in text
    assert not screen.rstrip().endswith("\x1b[?25l")  # the cursor is not left hidden
    assert run([TAPYARD, "creds", "list"], cwd=tmp_path, env=env)[0] == 1  # the old key is done
    code, screen = run([TAPYARD, "creds", "list"], cwd=tmp_path, env={**env, "TAPYARD_VAULT_KEY": keys[0]})
    assert code == 0 and re.search(r"^sk\s+api_key", plain(screen), re.M), plain(screen)


def test_ctrl_c_at_a_prompt_stores_nothing_and_gives_the_terminal_back(tmp_path: Path) -> None:
    import termios

    from tapyard_credentials import generate_key

    env = _vault_env(tmp_path, generate_key())
    term = spawn([TAPYARD, "creds", "add", "sk", "--connector", "sample", "--kind", "api_key"], cwd=tmp_path, env=env)
    term.expect(r"api_key \(.*\): $")  # a hidden prompt: echo is off now
    term.send("half-typed")
    term.interrupt(signal.SIGINT)
    assert term.wait(30) == 130, plain(term.screen)
    assert "Aborted." in plain(term.screen) and "Traceback" not in plain(term.screen)
    assert termios.tcgetattr(term.master)[3] & termios.ECHO  # echo is back on
    code, screen = run([TAPYARD, "creds", "list", "--json"], cwd=tmp_path, env=env)
    assert code == 0 and json.loads(plain(screen)) == [], plain(screen)


def test_rich_objects_are_handed_the_real_console() -> None:
    """rich's Progress and Live enter their console as a context manager and look
    special methods up on its type: the CLI's lazy proxy console crashed them in a
    terminal (the README's first command did). Every ``console=`` is ``.real``."""
    import tapyard.cli

    handed = []
    for path in sorted(Path(tapyard.cli.__file__).parent.glob("*.py")):
        handed += [(path.name, m.group(1)) for m in re.finditer(r"\bconsole=([\w.]+)", path.read_text())]
    assert handed, "no rich object found to check"
    assert [h for h in handed if not h[1].endswith(".real")] == []
