"""The scheduler: DST under a test clock with three schedulers at once (SQLite and
PostgreSQL), exactly one run per tick."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tapyard.jobs._clock import write_test_clock
from tests.jobs_helpers import (
    rows,
    schedulers,
    tapyard,
    tapyard_env,
    wait_for,
)

UTC = dt.UTC


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The control plane's URL: SQLite in the test's folder, or a fresh database on
    a real PostgreSQL (tapyard.testing's fixture: skipped when PostgreSQL is not
    installed, failed under CI)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'control.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


CASES = {
    # 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC): 02:30 does not exist, fires once at 03:00 EDT
    "spring-forward": (
        _t("2026-03-08T06:57:30"), _t("2026-03-08T07:02:30"), 60.0,
        {
            "every-minute": ["06:58", "06:59", "07:00", "07:01", "07:02"],
            "at-0230": ["07:00"],
        },
    ),
    # 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC): 01:00-01:59 happens twice, fires once (the first)
    "fall-back": (
        _t("2026-11-01T05:57:30"), _t("2026-11-01T07:02:30"), 300.0,
        {
            "every-minute": ["05:58", "05:59", "07:00", "07:01", "07:02"],
            "at-0130": ["05:30"],  # before the window: never
        },
    ),
}
CRONS = {"every-minute": "* * * * *", "at-0230": "30 2 * * *", "at-0130": "30 1 * * *"}


@pytest.mark.timeout(600)  # three schedulers, each loading the connectors into its fork server
@pytest.mark.parametrize("case", sorted(CASES))
def test_dst_fires_at_the_right_instants_once_each_with_three_schedulers(case: str, database: str, tmp_path: Path) -> None:
    start, end, rate, expected = CASES[case]
    clock = tmp_path / "clock.json"
    write_test_clock(clock, start, rate=0)
    env = tapyard_env(tmp_path / "home", database, TAPYARD_TEST_CLOCK=str(clock))
    for name in expected:
        added = tapyard(env, "jobs", "add", name, "--connector", "sample", "--cron", CRONS[name], "--timezone",
                        "America/New_York", "--overlap", "allow", "--catchup", "all", "--config", '{"records_per_stream": 5}',
                        "--to", f"jsonl:///{tmp_path / (name + '.jsonl')}")
        assert added.returncode == 0, added.stderr
    with schedulers(env, 3, "--poll", "0.05", "--heartbeat", "5", "--max-runs", "4", logs=tmp_path) as procs:
        wait_for(lambda: len(rows(database, "SELECT name FROM leases")) == 3, 60, "three schedulers to start")
        write_test_clock(clock, start, rate=rate)
        wait_for(lambda: dt.datetime.fromtimestamp(json.loads(clock.read_text())["real"], UTC)
                 + (end - start) / rate <= dt.datetime.now(UTC), (end - start).total_seconds() / rate + 5, "the clock")
        write_test_clock(clock, end, rate=0)
        wait_for(
            lambda: not rows(database, "SELECT id FROM runs WHERE status IN ('queued','starting','running')"),
            120, "the runs to end",
        )
        assert all(p.poll() is None for p in procs), "a scheduler died"
    for name, instants in expected.items():
        want = [f"{start.date()}T{hm}" for hm in instants if f"{start.date()}T{hm}" > start.isoformat()[:16]]
        # Only the window under test: the sped-up clock may pass `end` by a tick (up to a
        # minute of schedule time at 300x) before the test freezes it there.
        ticks = rows(database, "SELECT scheduled_at, status, run_id FROM ticks WHERE job = :j AND scheduled_at <= :e "
                     "ORDER BY scheduled_at", j=name, e=end.timestamp())
        fired = [dt.datetime.fromtimestamp(t.scheduled_at, UTC).isoformat()[:16] for t in ticks]
        assert fired == want, f"{name}: {fired} != {want}"
        runs = rows(database, "SELECT scheduled_at, attempt, status FROM runs WHERE job = :j AND scheduled_at <= :e",
                    j=name, e=end.timestamp())
        assert sorted(r.scheduled_at for r in runs) == sorted(t.scheduled_at for t in ticks), "one run per tick"
        assert all(r.status == "ok" and r.attempt == 1 for r in runs), runs
