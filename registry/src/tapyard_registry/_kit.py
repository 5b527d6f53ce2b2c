"""The publish gate's conformance run: the author kit, in a separate process, against the uploaded wheel.

The kit imports the connector's code, so it never runs inside the registry's
own process: a child Python with a scratch home directory, no inherited
secrets, a time limit, and the wheel (not an installed copy) as its target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tapyard_registry._service import KitResult

__all__ = ["kit_available", "run_kit_isolated"]

_SCRIPT = """
import json, sys
from tapyard.marketplace.kit import run_kits
reports = run_kits(sys.argv[1])
print(json.dumps([r.to_json() | {"text": r.render()} for r in reports]))
"""


def kit_available() -> bool:
    """Whether this core ships the conformance kit."""
    import importlib.util

    return importlib.util.find_spec("tapyard.marketplace.kit") is not None


def run_kit_isolated(wheel: Path, timeout: float = 600) -> KitResult:
    """Run the kit on ``wheel`` in a child process; a crash or a timeout is a failed run."""
    with tempfile.TemporaryDirectory(prefix="tapyard-kit-home-") as home:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
        env.update(TAPYARD_HOME=home, HOME=home, PYTHONDONTWRITEBYTECODE="1")
        try:
            done = subprocess.run(
                [sys.executable, "-c", _SCRIPT, str(wheel)],
                capture_output=True, text=True, timeout=timeout, env=env, cwd=home,
            )
        except subprocess.TimeoutExpired:
            return KitResult(False, None, None, f"the conformance kit did not finish within {timeout:.0f} s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return KitResult(False, None, None, f"the conformance kit could not run: {last}")
    try:
        reports = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return KitResult(False, None, None, "the conformance kit printed no report")
    failed = [r for r in reports if not r.get("ok")]
    score = min((float(r.get("score", 0)) for r in reports), default=0.0)
    levels = ("none", "community", "certified")
    level = min((r.get("support_level", "none") for r in reports), key=lambda v: levels.index(v) if v in levels else 0, default="none")
    if failed:
        first = failed[0]
        broken = [c for c in first.get("checks", []) if c.get("status") == "failed"]
        what = "; ".join(f"{c.get('id')}: {str(c.get('message') or c.get('title') or '')[:150]}" for c in broken[:3])
        return KitResult(False, score, level, f"{first.get('connector')}: {what or 'failed'}", details=reports)
    return KitResult(True, score, level, "\n".join(r.get("text", "") for r in reports), details=reports)
