"""The reliability suite catches what it guards against: planted regressions.

Each test plants one regression in a child process (a monkeypatch there, the
code on disk unchanged) and runs the suite's own check against it; the check
must fail. A suite that passes with the regression planted proves nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tapyard_sample import SampleConfig
from tapyard_sample._data import T0, Dataset
from tests.scripted_server import Reply, ScriptedServer
from tests.test_kill_and_move import _KILL_AFTER, ENV, _instant, destination, sample_tally
from tests.test_reliability_hostile import BOUND, check_error_line

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parent.parent

#: the cursor paginator claiming its id-based resume points survive source changes
TRUSTING = (
    "import sys\n"
    "from tapyard.sources._paginators import CursorPaginator\n"
    "CursorPaginator.resume_survives_changes = lambda self: True\n"
    "from tapyard.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_a_resume_point_that_trusts_a_moved_record_is_caught(tmp_path: Path) -> None:
    """The issue's case, with the fix planted out: the tally sees the lost rows."""
    records = 20_000
    dataset = Dataset(records_per_stream=records)
    as_of = T0 + dt.timedelta(days=15)
    named = dataset.visible("customers", as_of)[3999]
    later = [v for v in dataset.history("customers", named["id"]) if _instant(v["updated_at"]) > as_of]
    moved_to = _instant(later[0]["updated_at"]) + dt.timedelta(hours=6)
    url = destination(tmp_path, "sqlite")
    config = {"records_per_stream": records, "page_size": 100, "as_of": as_of.isoformat()}
    killed = subprocess.run([sys.executable, "-c", _KILL_AFTER.format(config=repr(config), url=url)],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = {"records_per_stream": records, "page_size": 100, "as_of": moved_to.isoformat()}
    done = subprocess.run(
        [sys.executable, "-c", TRUSTING, "sync", "sample", "--config", json.dumps(resumed), "--to", url,
         "--streams", "customers"],
        env=ENV, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = sample_tally(url, SampleConfig(**resumed), ("customers",))
    assert not result.clean and result.lost > 0, result


UNBOUNDED = (
    "import sys, tapyard\n"
    "sys.path.insert(0, {root!r})\n"
    "from tests.test_reliability_hostile import connector\n"
    "tapyard.sync(connector({url!r}), {{}}, to={dest!r}, http={{'max_retry_after': 1e9}})\n"
)


def test_an_unbounded_wait_is_caught(tmp_path: Path) -> None:
    """A day's Retry-After obeyed (the cap planted out): the run outlives the hostile
    suite's bound, which is what fails that suite."""
    with ScriptedServer() as server:
        server.always("/items", Reply(429, [("Retry-After", "86400")]))
        script = UNBOUNDED.format(root=str(ROOT), url=server.url, dest=f"sqlite:///{tmp_path / 'x.db'}")
        child = subprocess.Popen([sys.executable, "-c", script], env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        try:
            child.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            pass
        finally:
            still_running = child.poll() is None
            child.kill()
            child.wait()
    assert still_running and time.monotonic() - started >= BOUND


def test_an_unescaped_error_is_caught() -> None:
    for planted in ("bad \x1b[2J value", "unexpected KeyError (a bug in tapyard)", "a\nb", "x" * 1001):
        with pytest.raises(AssertionError):
            check_error_line(planted)
