"""A disk that fills mid-sync: the sync fails with one line, space is freed, the
source moves on, and the resumed sync loses nothing and leaves nothing stale.

Each trial mounts a small tmpfs (root, as in CI), syncs the sample connector
into it until the file system is full (the size varies, so the failure lands
at a different point each time: creating the database, a record page, the
state, the write-ahead log, a JSON Lines line), remounts it larger, moves the
sample's ``as_of`` forward, resumes, and compares with the source.
``TAPYARD_DISK_FULL_TRIALS`` sets the number of trials per destination
(default 2, 10 with ``--nightly``; the measured run in docs/reliability.md used
20).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tapyard_sample import SampleConfig
from tapyard_sample._data import T0

if __name__ == "__main__":  # run as a script to measure: the repository root holds the tests package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_kill_and_move import ENV, Tally, sample_tally

TRIALS = int(os.environ.get("TAPYARD_DISK_FULL_TRIALS", "2"))

pytestmark = [pytest.mark.reliability, pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")]


def trial(folder: Path, kind: str, size_kb: int, seed: int) -> tuple[int, str, Tally]:
    """One fill, free, move, resume; returns the first run's exit code, its last
    line, and the tally after the resume."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)], check=True)
    try:
        url = f"sqlite:///{folder / 'out.db'}" if kind == "sqlite" else f"jsonl:///{folder / 'out.jsonl'}"
        as_of = T0 + dt.timedelta(days=rng.uniform(20, 40))
        config = {"records_per_stream": 8000, "page_size": 100, "as_of": as_of.isoformat()}
        cmd = [sys.executable, "-m", "tapyard", "sync", "sample", "--to", url, "--concurrency", str(rng.choice((1, 3)))]
        full = subprocess.run([*cmd, "--config", json.dumps(config)], env=ENV, capture_output=True, text=True,
                              timeout=300)
        subprocess.run(["mount", "-o", "remount,size=256m", str(folder)], check=True)
        config["as_of"] = (as_of + dt.timedelta(days=rng.uniform(0.5, 10))).isoformat()
        resumed = subprocess.run([*cmd, "--config", json.dumps(config)], env=ENV, capture_output=True, text=True,
                                 timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        result = sample_tally(url, SampleConfig(**config), ("customers", "orders", "events"))
        return full.returncode, full.stderr.strip(), result
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
def test_disk_full_then_freed_then_resumed_loses_nothing(tmp_path: Path, kind: str) -> None:
    rng = random.Random(kind)
    failed = 0
    for n in range(TRIALS):
        size = rng.randint(200, 5000) if kind == "sqlite" else rng.randint(100, 4000)
        code, line, result = trial(tmp_path / f"fs{n}", kind, size, seed=n)
        if code != 0:
            failed += 1
            assert len(line.splitlines()) == 1 and "Traceback" not in line, line
            assert "full" in line or "No space" in line or "cannot" in line, line
        assert result.clean, (size, line, result)
    assert failed >= TRIALS // 2  # the disk did fill in most trials


def main() -> None:
    """Measure: ``python tests/test_disk_full.py TRIALS`` runs TRIALS trials per
    destination at random fill points and prints each."""
    import tempfile

    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    rng = random.Random(trials)
    total, fills = Tally(), 0
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(trials):
            kind = ("sqlite", "jsonl")[n % 2]
            size = rng.randint(200, 5000)
            code, line, result = trial(Path(tmp) / f"fs{n}", kind, size, seed=n)
            fills += code != 0
            total.add(result)
            print(f"{n:3} {kind:6} {size:5}k first exit {code} {line[-70:]!r:72} {result}", flush=True)
    print(f"{trials} trials, {fills} filled the disk: {total}")


if __name__ == "__main__":
    main()
